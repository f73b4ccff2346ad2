# Copyright 2026 The trl-spo developers. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
`trl-spo upstream --trl-source DIR --output DIR`: SPO as a TRL pull request, generated from this package.

It copies a TRL source tree (a git checkout, or the sdist of the pinned release: `pip download --no-binary :all:
--no-deps trl==1.16.0`) and adds SPO in TRL's layout for an experimental trainer:

- `trl/experimental/spo/`: `spo_config.py`, `spo_trainer.py` and the modules they use, transformed from this
  package's own (`MODULES`): TRL's license header, TRL's relative imports instead of `trl_spo`'s and `trl`'s, the
  `_trl_compat` wrapper renamed `utils` (inside TRL its private names are just TRL's), and the lines marked
  `# upstream: drop` (or between `# upstream: drop-begin` and `# upstream: drop-end`) left out. One source of truth:
  nothing is written twice by hand.
- `tests/experimental/test_spo_trainer.py`: TRL-style tests, including the drift guard (`utils.seam_problems`), which
  fails naming the `DPOTrainer` seam that changed.
- `docs/source/spo.md`, a section of `docs/source/paper_index.md`, and an entry under "Experimental" in
  `docs/source/_toctree.yml` (created if the tree has no docs, as the sdist has none).

It then formats the added files with ruff under TRL's own configuration (when ruff is installed) and writes a unified
diff of the whole change next to the tree. `docs/upstream.md` says what to do with it.
"""

import argparse
import difflib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path


PACKAGE_DIR = Path(__file__).resolve().parent
# The pull request's tests: a template read as text (package data), since it imports `trl.experimental.spo`, which
# exists only in the generated tree.
TESTS_TEMPLATE = PACKAGE_DIR / "templates" / "test_spo_trainer.py.tmpl"
TARGET = "trl/experimental/spo"
PAPER_ID = "2405.00747"

# This package's module -> the file it becomes in TRL. Everything SPOTrainer needs, and nothing that is this package's
# own tooling (command line, evaluation, benchmarks, model card, the DPO-family baselines).
MODULES = {
    "config.py": "spo_config.py",
    "trainer.py": "spo_trainer.py",
    "_trl_compat.py": "utils.py",
    "losses.py": "losses.py",
    "kl.py": "kl.py",
    "forward.py": "forward.py",
    "sampling.py": "sampling.py",
    "responses.py": "responses.py",
    "metrics.py": "metrics.py",
    "nonfinite.py": "nonfinite.py",
    "checkpoints.py": "checkpoints.py",
    "preemption.py": "preemption.py",
    "data/__init__.py": "data/__init__.py",
    "data/formats.py": "data/formats.py",
    "data/tokenization.py": "data/tokenization.py",
    "data/preparation.py": "data/preparation.py",
    "data/collator.py": "data/collator.py",
    "data/conversions.py": "data/conversions.py",
}

TRL_HEADER = "# Copyright 2020-2026 The HuggingFace Team. All rights reserved."
OUR_HEADER = "# Copyright 2026 The trl-spo developers. All rights reserved."

# Names `trl_spo` imports from `trl`'s top level, and the module of TRL that defines them.
TRL_TOP_LEVEL = {
    "DPOTrainer": "trainer.dpo_trainer",
    "DPOConfig": "trainer.dpo_config",
    "is_conversational": "data_utils",
}


class UpstreamError(ValueError):
    """The TRL tree or a source file is not what the generator expects; the message says what was found."""


# ---------------------------------------------------------------------------------------------------------------------
# Source transformation
# ---------------------------------------------------------------------------------------------------------------------


def _drop_marked(text: str, name: str) -> str:
    out, dropping = [], False
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if "# upstream: drop-begin" in line:
            dropping = True
        elif "# upstream: drop-end" in line:
            if not dropping:
                raise UpstreamError(f"{name}:{number}: `# upstream: drop-end` without a drop-begin")
            dropping = False
        elif not dropping and not line.rstrip().endswith("# upstream: drop"):
            out.append(line)
    if dropping:
        raise UpstreamError(f"{name}: `# upstream: drop-begin` is never closed")
    return "".join(out)


def _relative(module: str, depth: int) -> str:
    """`trl.<module>` as a relative import from a file `depth` packages below `trl` (spo/ is 2: experimental.spo)."""
    return "." * (depth + 1) + module


def transform_module(text: str, source_name: str) -> str:
    """
    This package's module `source_name` (e.g. `"data/formats.py"`), as the file it becomes in TRL.

    Raises:
        `UpstreamError`: if the file lacks this package's license header, or a `trl_spo` import survives.
    """
    if not text.startswith(OUR_HEADER):
        raise UpstreamError(f"{source_name} does not start with the license header `{OUR_HEADER}`")
    text = TRL_HEADER + text[len(OUR_HEADER) :]
    text = _drop_marked(text, source_name)
    depth = 2 + source_name.count("/")  # trl/experimental/spo[/data]/file.py
    # `trl.x.y` -> `...x.y` (the whole of trl is reachable by relative imports from inside it).
    text = re.sub(
        r"^from trl\.([\w.]+) import", lambda m: f"from {_relative(m.group(1), depth)} import", text, flags=re.M
    )

    def top_level(match: re.Match) -> str:
        names = [name.strip() for name in match.group(1).split(",")]
        unknown = [name for name in names if name not in TRL_TOP_LEVEL]
        if unknown:
            raise UpstreamError(f"{source_name}: add {unknown} to TRL_TOP_LEVEL (the TRL module that defines them)")
        return "\n".join(f"from {_relative(TRL_TOP_LEVEL[name], depth)} import {name}" for name in names)

    text = re.sub(r"^from trl import ([\w, ]+)$", top_level, text, flags=re.M)
    text = re.sub(r"^import trl\n", "", text, flags=re.M)
    # The wrapper of TRL's internals becomes the trainer's `utils`; the config and trainer get TRL's file names.
    text = re.sub(r"\b_trl_compat\b", "utils", text)
    text = re.sub(r"^(from \.+)config import", r"\1spo_config import", text, flags=re.M)
    text = re.sub(r"^(from \.+)trainer import", r"\1spo_trainer import", text, flags=re.M)
    # Prose: this package's names are TRL's now.
    text = text.replace("trl_spo.", "trl.experimental.spo.").replace("`trl_spo`", "`trl.experimental.spo`")
    text = text.replace("from trl_spo import", "from trl.experimental.spo import")
    leftover = [line for line in text.splitlines() if re.search(r"\btrl_spo\b", line)]
    if leftover:
        raise UpstreamError(f"{source_name}: `trl_spo` is still named in {leftover[:3]}")
    return text


INIT = f"""{TRL_HEADER}
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

from .spo_config import SPOConfig
from .spo_trainer import SPOTrainer


__all__ = ["SPOConfig", "SPOTrainer"]
"""


# ---------------------------------------------------------------------------------------------------------------------
# Docs
# ---------------------------------------------------------------------------------------------------------------------

USAGE = """```python
from datasets import load_dataset
from trl.experimental.spo import SPOConfig, SPOTrainer

dataset = load_dataset("trl-lib/ultrafeedback_binarized", split="train")
training_args = SPOConfig(output_dir="Qwen2.5-0.5B-SPO", alpha=0.01, beta=0.01)
trainer = SPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=training_args, train_dataset=dataset)
trainer.train()
```"""

DOC_PAGE = f"""# SPO

Soft Preference Optimization (SPO) was introduced in [Soft Preference Optimization: Aligning Language Models to
Expert Distributions](https://huggingface.co/papers/{PAPER_ID}) by Arsalan Sharifnassab, Saber Salehkaleybar, Sina
Ghiassian, Surya Kanoria and Dale Schuurmans.

> DPO's loss drives the policy towards a deterministic argmax of the preference reward. SPO replaces it with a
> preference loss whose fixed point is `Softmax(reward / alpha)`, plus `beta` times a KL divergence between the policy
> and the reference model measured on completions sampled from the policy during training.

[`SPOTrainer`] takes the arguments of [`DPOTrainer`] and the same preference datasets (standard or conversational,
explicit or implicit prompt), and also best-of-n (`prompt`, `completions`, `best_index`) and ranked (`prompt`,
`completions`, `ranking`) data. What changes:

- `alpha` is the softness of the preference loss: `1` targets the Bradley-Terry expert distribution itself, smaller is
  sharper, `0` is argmax. The loss is DPO's log-loss divided by `alpha`; `loss/preference_normalized` is on DPO's
  scale.
- `beta` weights a token-wise KL(policy || reference) on completions sampled every `generation_interval` steps and
  reused in between. The paper gives grids, not defaults; the defaults `alpha = beta = 0.01` are the best of its grid
  {0.001, 0.01} on Llama-2-7B (Table 7), `gamma = 0.01` is its untuned value and `generation_interval = 8` its T on
  TinyStories (App. E.3).
- `gamma` is the exponent of a stop-gradient sample weight that speeds learning without moving the fixed point.

## Usage

{USAGE}

## SPOConfig

[[autodoc]] experimental.spo.SPOConfig

## SPOTrainer

[[autodoc]] experimental.spo.SPOTrainer
    - train
    - save_model
    - push_to_hub
"""

PAPER_INDEX_SECTION = f"""### Soft Preference Optimization: Aligning Language Models to Expert Distributions

**📜 Paper**: https://huggingface.co/papers/{PAPER_ID}

Soft Preference Optimization (SPO) replaces DPO's loss with a preference loss whose fixed point is `Softmax(r / alpha)`,
plus a KL to the reference model measured on completions sampled from the policy, so that the policy's output entropy
is controlled instead of collapsing. To reproduce the paper's setting, use this configuration:

{USAGE}
"""

TOCTREE_ENTRY = "    - local: spo\n      title: SPO\n"


def _add_paper_index_section(text: str | None) -> str:
    if text is None:
        return "# Paper Index\n\n" + PAPER_INDEX_SECTION
    if PAPER_ID in text:
        return text
    return text.rstrip("\n") + "\n\n" + PAPER_INDEX_SECTION


def _add_toctree_entry(text: str | None) -> str:
    """The `spo` entry, in alphabetical order, in the `sections` of the "Experimental" part of `_toctree.yml`."""
    if text is None:
        return "- sections:\n" + TOCTREE_ENTRY + "  title: Experimental\n"
    if "local: spo\n" in text:
        return text
    lines = text.splitlines(keepends=True)
    title = next((i for i, line in enumerate(lines) if re.match(r"\s*title: Experimental\s*$", line)), None)
    if title is None:
        raise UpstreamError("docs/source/_toctree.yml has no `title: Experimental` part to add SPO to")
    # The part's entries are the `- local: x` / `title: y` pairs between its `- sections:` line and its title.
    start = max(i for i in range(title) if lines[i].lstrip().startswith("- sections:"))
    entries = [i for i in range(start + 1, title) if lines[i].lstrip().startswith("- local:")]
    for i in entries:
        if lines[i].split("local:")[1].strip() > "spo":
            return "".join(lines[:i] + [TOCTREE_ENTRY] + lines[i:])
    return "".join(lines[:title] + [TOCTREE_ENTRY] + lines[title:])


# ---------------------------------------------------------------------------------------------------------------------
# The pull request tree
# ---------------------------------------------------------------------------------------------------------------------


def ruff_command() -> list[str] | None:
    """How to run ruff: the one installed with this Python (also when its `bin/` is not on `PATH`), else `PATH`'s."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    return [found] if found else None


def generate(trl_source: Path, output: Path, diff_path: Path | None = None, format_with_ruff: bool = True) -> dict:
    """
    Write `output`, a copy of `trl_source` with SPO added, and the unified diff of the change to `diff_path`
    (default: `output` with `.diff` appended).

    Returns:
        `dict`: `added` and `changed` (paths relative to the tree) and `diff` (the diff's path).

    Raises:
        `UpstreamError`: if `trl_source` is not a TRL source tree, already has SPO, or `output` exists.
    """
    trl_source, output = Path(trl_source), Path(output)
    if (
        not (trl_source / "trl" / "trainer" / "dpo_trainer.py").is_file()
        or not (trl_source / "pyproject.toml").is_file()
    ):
        raise UpstreamError(
            f"{trl_source} is not a TRL source tree: expected trl/trainer/dpo_trainer.py and pyproject.toml (a git "
            "checkout, or `pip download --no-binary :all: --no-deps trl==1.16.0` unpacked)"
        )
    if (trl_source / TARGET).exists():
        raise UpstreamError(f"{trl_source / TARGET} already exists: this tree has SPO")
    if output.exists():
        raise UpstreamError(f"{output} exists; give a new directory")
    shutil.copytree(trl_source, output, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info"))

    files: dict[str, str] = {f"{TARGET}/__init__.py": INIT}
    for source, target in MODULES.items():
        files[f"{TARGET}/{target}"] = transform_module((PACKAGE_DIR / source).read_text(), source)
    tests = TESTS_TEMPLATE.read_text().replace(OUR_HEADER, TRL_HEADER, 1)
    files["tests/experimental/test_spo_trainer.py"] = _drop_marked(tests, TESTS_TEMPLATE.name)
    files["docs/source/spo.md"] = DOC_PAGE
    for relative, edit in (
        ("docs/source/paper_index.md", _add_paper_index_section),
        ("docs/source/_toctree.yml", _add_toctree_entry),
    ):
        existing = output / relative
        files[relative] = edit(existing.read_text() if existing.exists() else None)

    before = {
        relative: (output / relative).read_text() if (output / relative).exists() else None for relative in files
    }
    for relative, text in files.items():
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    python_files = [output / relative for relative in files if relative.endswith(".py")]
    ruff = ruff_command()
    if format_with_ruff and ruff:
        # TRL's own configuration: its rule sets, isort sections and line length.
        config = ["--config", str(output / "pyproject.toml")]
        subprocess.run([*ruff, "check", "--fix", "--quiet", *config, *map(str, python_files)], check=False)
        subprocess.run([*ruff, "format", "--quiet", *config, *map(str, python_files)], check=True)
    elif format_with_ruff:
        print("ruff is not installed (`pip install ruff`): the added files are written unformatted.", file=sys.stderr)

    diff = []
    for relative in sorted(files):
        old = before[relative]
        new = (output / relative).read_text()
        diff += difflib.unified_diff(
            [] if old is None else old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            "/dev/null" if old is None else f"a/{relative}",
            f"b/{relative}",
        )
    diff_path = Path(diff_path) if diff_path is not None else output.with_name(output.name + ".diff")
    diff_path.write_text("".join(diff))
    return {
        "added": sorted(r for r in files if before[r] is None),
        "changed": sorted(r for r in files if before[r] is not None),
        "diff": str(diff_path),
    }


def main(argv: list[str] | None = None, prog: str = "trl-spo upstream") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--trl-source", type=Path, required=True, help="a TRL source tree (checkout or sdist)")
    parser.add_argument("--output", type=Path, required=True, help="where the copy with SPO added is written")
    parser.add_argument("--diff", type=Path, help="where the unified diff goes (default: OUTPUT.diff)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = generate(args.trl_source, args.output, args.diff)
    except UpstreamError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {args.output}: {len(result['added'])} files added, {len(result['changed'])} changed.")
    print(f"The diff: {result['diff']}. What to do with it: docs/upstream.md.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m trl_spo.upstream"))
