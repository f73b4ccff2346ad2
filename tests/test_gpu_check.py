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
recipes/gpu: the GPU check's code path on a CPU at a tiny size, its environment check, and the checks of the wheels
it carries (without the network). No timing is asserted: that is what the check reports.
"""

import importlib
import importlib.metadata
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch


GPU_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "gpu"
sys.path.insert(0, str(GPU_RECIPE))  # the scripts import each other as the machine runs them: from their folder
fetch_wheels = importlib.import_module("fetch_wheels")
gpu_check = importlib.import_module("gpu_check")

MIB = 2**20
TINY = ["--tiny", "--generation-interval", "2", "--measure-steps", "2", "--warmup-steps", "1"]
RUN_FIELDS = {
    "step_seconds",
    "step_seconds_each",
    "tokens_per_second",
    "peak_memory_mib",
    "generation_share",
    "generated_tokens_per_second",
    "refreshes",
    "last_kl",
    "setup_seconds",
}


# ----------------------------------------------------------------------------------------------------------------------
# The check on a CPU


@pytest.fixture
def no_cuda(monkeypatch):
    """The CPU path, also on a machine that has a GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_the_check_runs_the_gpu_preset_on_a_cpu_and_writes_every_field(tmp_path, no_cuda):
    assert gpu_check.main(["--out", str(tmp_path), *TINY]) == 0

    result = json.loads((tmp_path / "step_cost_gpu.json").read_text())
    assert set(result) == {
        "benchmark",
        "command",
        "complete",
        "environment",
        "model",
        "data",
        "schedule",
        "runs",
        "wall_seconds",
    }
    assert result["complete"] is True and result["command"].startswith(
        "python -m benchmarks.step_cost --preset gpu --tiny"
    )
    assert set(result["environment"]) == {
        "device",
        "cuda",
        "python",
        "torch",
        "transformers",
        "accelerate",
        "datasets",
        "trl",
        "trl_spo",
    }
    assert result["environment"]["device"].startswith("CPU") and result["environment"]["trl"].startswith("1.16.")
    assert result["model"]["parameters"] > 0 and result["model"]["vocab_size"] == 1024
    assert result["schedule"] == {"warmup_steps": 1, "measured_steps": 2, "generation_interval": 2, "kl_batch_size": 1}
    tokens_per_step = result["data"]["training_tokens_per_step"]
    # 2 pairs of a 16-token prompt and ~15-token completions, each side with its EOS: about 128 tokens.
    assert 100 < tokens_per_step < 140

    assert list(result["runs"]) == ["SPO", "DPO", "DPO-precomputed"]
    for kind, run in result["runs"].items():
        assert set(run) == RUN_FIELDS, kind
        assert len(run["step_seconds_each"]) == 2 and run["step_seconds"] > 0 and run["setup_seconds"] > 0
        # tokens/s is tokens per step over the mean step time, computed another way round: only float rounding apart.
        assert run["tokens_per_second"] == pytest.approx(tokens_per_step / run["step_seconds"], rel=1e-9)
        assert run["peak_memory_mib"] is None  # no CUDA allocator on a CPU
    spo = result["runs"]["SPO"]
    assert spo["refreshes"] == 1  # steps 1-2 with a refresh every 2 steps: the one at step 2
    assert 0 < spo["generation_share"] < 1 and spo["generated_tokens_per_second"] > 0
    assert math.isfinite(spo["last_kl"])
    for kind in ("DPO", "DPO-precomputed"):
        run = result["runs"][kind]
        assert run["refreshes"] == 0 and run["generation_share"] == 0 and run["generated_tokens_per_second"] is None
        assert run["last_kl"] is None

    table = (tmp_path / "step_cost_gpu.md").read_text()
    assert "| trainer | s/step | training tokens/s | peak CUDA memory MiB | generation share |" in table
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["trainer", "SPO", "DPO", "DPO-precomputed"]

    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["cuda_available"] is False and environment["requirements"]["fatal"] == []
    assert set(environment["imports"]) == set(gpu_check.IMPORTS)


def test_the_environment_check_fails_at_once_when_cuda_is_asked_for_and_absent(tmp_path, no_cuda):
    with pytest.raises(SystemExit) as raised:
        gpu_check.main(["--out", str(tmp_path), "--require-cuda", *TINY])
    message = str(raised.value.code)
    assert message.startswith("GPU check: environment: CUDA was asked for (--require-cuda)")
    assert "sees no GPU" in message and "nvidia-smi" in message
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["cuda_available"] is False and environment["error"] == message
    assert not (tmp_path / "step_cost_gpu.json").exists()  # nothing was measured


def test_the_environment_check_names_a_missing_requirement_before_importing_it(tmp_path, monkeypatch, no_cuda):
    installed = gpu_check.installed_distributions()
    monkeypatch.setattr(
        gpu_check, "installed_distributions", lambda: {k: v for k, v in installed.items() if k != "multiprocess"}
    )
    with pytest.raises(SystemExit) as raised:
        gpu_check.main(["--out", str(tmp_path), "--check-only"])
    message = str(raised.value.code)
    assert "requirements not met: multiprocess" in message and "(required by datasets " in message
    assert "recipes/gpu/fetch_wheels.py" in message
    assert "imports" not in json.loads((tmp_path / "environment.json").read_text())


# ----------------------------------------------------------------------------------------------------------------------
# The wheels


def test_the_closure_walks_carried_wheels_with_the_machines_markers():
    closure = fetch_wheels.requirement_closure(
        roots=["trl>=1.16,<1.17", "torch>=2.4"],
        carried={
            "trl": (
                "1.16.0",
                [
                    "datasets>=4.7",
                    "pyarrow>=21",
                    "jinja2",
                    'deepspeed>=0.18.6; extra == "deepspeed"',  # an extra nobody asked for
                    'tomli>=1.1; python_version < "3.11"',  # false on the machine's 3.12, whatever runs the test
                    'harbor>=0.13; python_version >= "3.12" and extra == "harbor"',
                ],
            ),
            "unneeded": ("1.0", []),
        },
        there={"torch": "2.11.0", "pyarrow": None, "jinja2": None},
    )
    assert [str(f) for f in closure.missing] == ["datasets>=4.7 (required by trl 1.16.0)"]
    assert [str(f) for f in closure.unverified] == ["pyarrow>=21 (required by trl 1.16.0)"]  # jinja2: no version asked
    assert closure.conflicts == [] and closure.unused == ["unneeded"] and not closure.ok


def test_the_closure_reports_versions_outside_what_is_required():
    closure = fetch_wheels.requirement_closure(
        roots=["trl>=1.16,<1.17", "torch>=2.4"],
        carried={"trl": ("1.17.0", [])},
        there={"torch": "2.3.1"},
    )
    assert [str(f) for f in closure.conflicts] == [
        "trl<1.17,>=1.16 (required by trl-spo): carried trl 1.17.0",
        "torch>=2.4 (required by trl-spo): the machine has torch 2.3.1",
    ]


def test_the_pinned_wheels_close_trl_spos_requirements_on_the_machine():
    """The real list, read from the installed copies of the pinned versions (their METADATA is the wheels')."""
    carried = {}
    for name, version in fetch_wheels.WHEELS.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            pytest.skip(f"{name} {installed} is installed here, not the pinned {version}")
        carried[name] = (version, importlib.metadata.requires(name) or [])
    there = {name: v for name, v in fetch_wheels.DEVICE_PACKAGES.items() if name not in carried}
    closure = fetch_wheels.requirement_closure(fetch_wheels.project_requirements(), carried, there)
    assert closure.ok, closure
    assert "deepspeed" not in fetch_wheels.DEVICE_PACKAGES  # and yet nothing requires it: a one-GPU step runs without


def _fake_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        metadata += "".join(f"Requires-Dist: {line}\n" for line in requires)
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
        archive.writestr(f"{name}/__init__.py", "")
    return path


def test_wheels_are_read_from_their_metadata_and_two_versions_are_an_error(tmp_path):
    _fake_wheel(tmp_path, "multiprocess", "0.70.19", ["dill>=0.4.1"])
    wheels, errors = fetch_wheels.read_wheels(tmp_path)
    assert errors == [] and wheels["multiprocess"].version == "0.70.19"
    assert wheels["multiprocess"].requires == ["dill>=0.4.1"]
    _fake_wheel(tmp_path, "multiprocess", "0.70.18", [])
    _, errors = fetch_wheels.read_wheels(tmp_path)
    assert errors == [
        "two versions of multiprocess: multiprocess-0.70.18-py3-none-any.whl and multiprocess-0.70.19-py3-none-any.whl"
    ]


def test_the_size_budget_counts_the_tree_and_the_wheels_in_mib():
    assert fetch_wheels.budget_error(60 * MIB, 4 * MIB) is None  # exactly the 64 MiB a call carries
    message = fetch_wheels.budget_error(60 * MIB, 4 * MIB + 1)
    assert message.startswith("over budget: the working tree (60.00 MiB) and the wheels (4.00 MiB) weigh 64.00 MiB")
    assert "more than the 64 MiB a call carries" in message


def test_the_tree_weighs_tracked_and_untracked_files_but_not_ignored_ones(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text(".whl/\n")  # 6 bytes
    (tmp_path / "tracked.txt").write_bytes(b"x" * 10)
    git("add", ".gitignore", "tracked.txt")
    (tmp_path / "untracked.txt").write_bytes(b"x" * 20)
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "big.whl").write_bytes(b"x" * 1000)
    assert fetch_wheels.tree_bytes(tmp_path) == 6 + 10 + 20


def test_the_docs_hold_the_block_that_receives_the_gpu_table(tmp_path):
    """recipes/gpu/README.md pastes step_cost_gpu.md into docs/benchmarks.md's `step-cost-gpu` block."""
    from benchmarks.reporting import update_doc

    doc = tmp_path / "benchmarks.md"
    doc.write_text((Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md").read_text())
    update_doc(doc, "| trainer | s/step |\n", name="step-cost-gpu")
    assert "<!-- step-cost-gpu:begin -->\n| trainer | s/step |\n<!-- step-cost-gpu:end -->" in doc.read_text()
