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

"""The upstream kit: SPO as a TRL pull request, generated from this package and checked against TRL's own rules."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import trl

from trl_spo import upstream
from trl_spo.upstream import TRL_HEADER, UpstreamError, generate, ruff_command, transform_module


CACHE = Path(os.environ.get("TRL_SPO_CACHE", Path.home() / ".cache" / "trl-spo")) / "trl-sdist"


@pytest.fixture(scope="module")
def trl_source(tmp_path_factory) -> Path:
    """The sdist of the installed TRL release, downloaded once through pip (PyPI, not the hub) and unpacked."""
    version = trl.__version__
    archive = CACHE / f"trl-{version}.tar.gz"
    if not archive.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
        result = subprocess.run([*command, f"trl=={version}", "-d", str(CACHE)], capture_output=True, text=True)
        if result.returncode != 0 or not archive.is_file():
            pytest.skip(f"cannot download the TRL {version} sdist from PyPI: {result.stderr.strip()[-300:]}")
    root = tmp_path_factory.mktemp("trl-sdist")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root / f"trl-{version}"


@pytest.fixture(scope="module")
def pull_request(trl_source, tmp_path_factory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("pr") / "trl"
    return output, generate(trl_source, output)


def test_the_pull_request_has_trls_layout(pull_request):
    output, result = pull_request
    for path in (
        "trl/experimental/spo/__init__.py",
        "trl/experimental/spo/spo_config.py",
        "trl/experimental/spo/spo_trainer.py",
        "tests/experimental/test_spo_trainer.py",
        "docs/source/spo.md",
        "docs/source/paper_index.md",
        "docs/source/_toctree.yml",
    ):
        assert path in result["added"] + result["changed"], path
    page = (output / "docs/source/spo.md").read_text()
    assert "[[autodoc]] experimental.spo.SPOTrainer" in page and "https://huggingface.co/papers/2405.00747" in page
    diff = Path(result["diff"]).read_text()
    assert "+++ b/trl/experimental/spo/spo_trainer.py" in diff and "+class SPOTrainer(DPOTrainer):" in diff


def test_every_added_python_file_is_trls_and_passes_its_ruff(pull_request):
    output, result = pull_request
    added = [output / path for path in result["added"] if path.endswith(".py")]
    assert len(added) >= 15
    for path in added:
        text = path.read_text()
        assert text.startswith(TRL_HEADER), path
        assert "trl_spo" not in text and "trl-spo" not in text, path
        assert "upstream: drop" not in text, path
    ruff = ruff_command()
    assert ruff, "ruff is a dev dependency"
    config = ["--config", str(output / "pyproject.toml")]
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run([*ruff, *command, *config, *map(str, added)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_package_imports_and_its_tests_pass(pull_request):
    output, _ = pull_request
    env = {**os.environ, "PYTHONPATH": str(output), "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    probe = "import trl, trl.experimental.spo as spo; print(trl.__file__); print(spo.SPOTrainer.__module__)"
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [str(output / "trl" / "__init__.py"), "trl.experimental.spo.spo_trainer"]
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/experimental/test_spo_trainer.py",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=output, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "6 passed" in result.stdout


def test_transformation_rules():
    source = (
        "# Copyright 2026 The trl-spo developers. All rights reserved.\n"
        "from trl import DPOTrainer, is_conversational\n"
        "from trl.trainer.utils import pad\n"
        "from ._trl_compat import flush_left  # pragma\n"
        "from .config import SPOConfig\n"
        "x = 1  # upstream: drop\n"
        "# upstream: drop-begin\n"
        "y = 2\n"
        "# upstream: drop-end\n"
        '"""See `trl_spo.losses`."""\n'
    )
    assert transform_module(source, "data/formats.py") == (
        f"{TRL_HEADER}\n"
        "from ....trainer.dpo_trainer import DPOTrainer\n"
        "from ....data_utils import is_conversational\n"
        "from ....trainer.utils import pad\n"
        "from .utils import flush_left  # pragma\n"
        "from .spo_config import SPOConfig\n"
        '"""See `trl.experimental.spo.losses`."""\n'
    )
    with pytest.raises(UpstreamError, match="does not start with the license header"):
        transform_module("import torch\n", "kl.py")
    with pytest.raises(UpstreamError, match="is never closed"):
        transform_module(upstream.OUR_HEADER + "\n# upstream: drop-begin\n", "kl.py")
    with pytest.raises(UpstreamError, match=r"add \['GRPOTrainer'\] to TRL_TOP_LEVEL"):
        transform_module(upstream.OUR_HEADER + "\nfrom trl import GRPOTrainer\n", "kl.py")


def test_docs_entries_go_in_order_into_an_existing_tree(tmp_path):
    toctree = (
        "- sections:\n  - local: index\n    title: TRL\n  title: Getting started\n"
        "- sections:\n  - local: gkd_trainer\n    title: GKD\n  - local: xpo_trainer\n    title: XPO\n"
        "  title: Experimental\n"
    )
    updated = upstream._add_toctree_entry(toctree)
    assert updated.index("local: gkd_trainer") < updated.index("local: spo") < updated.index("local: xpo_trainer")
    assert upstream._add_toctree_entry(updated) == updated  # idempotent
    index = upstream._add_paper_index_section("# Paper Index\n\n## DPO\n")
    assert index.startswith("# Paper Index\n\n## DPO\n") and "2405.00747" in index
    with pytest.raises(UpstreamError, match="not a TRL source tree"):
        generate(tmp_path, tmp_path / "out")
