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
The wheel a user installs: built from this checkout, installed with its dependencies into a fresh virtual environment,
and used from a directory outside the checkout, with nothing of the checkout on the path. It holds the library alone
(no benchmark, no test), and `import trl_spo`, `trl-spo --help`, `trl-spo pair_weights` and a short `SPOTrainer` run
work from it. Costs about two minutes, most of it `pip install` (torch from the pinned CPU wheel, as .ci/run does).
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parents[1]
# Everything setuptools could pick up as a package: the wheel must take trl_spo/ and leave the rest.
SOURCES = ("pyproject.toml", "README.md", "trl_spo", "benchmarks", "tests")
TINY_TOKENIZER = REPO_ROOT / "recipes" / "tiny" / "model"
TINY_PAIRS = REPO_ROOT / "recipes" / "tiny" / "data" / "preferences.jsonl"
# Torch as .ci/run installs it: the CPU build (an unpinned torch would pull a multi-GB CUDA build).
TORCH = "torch==2.13.0"

# Run by the fresh environment's Python, from outside the checkout: a model built here, two SPO steps on it.
TRAIN_SCRIPT = """
import json, sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer

import trl_spo
from trl_spo import SPOConfig, SPOTrainer
from trl_spo.tiny_models import tiny_qwen2

work = Path(sys.argv[1])
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
model = tiny_qwen2(tokenizer, seed=0)
model.save_pretrained(work / "model")
tokenizer.save_pretrained(work / "model")
rows = [json.loads(line) for line in Path(sys.argv[3]).read_text().splitlines()[:8]]
before = {name: p.detach().clone() for name, p in model.named_parameters()}
args = SPOConfig(
    output_dir=str(work / "run"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-2, report_to="none",
    use_cpu=True, bf16=False, save_strategy="no", logging_steps=1, max_length=64, max_completion_length=8,
    generation_interval=2, disable_tqdm=True, seed=0,
)
trainer = SPOTrainer(model=str(work / "model"), args=args, train_dataset=Dataset.from_list(rows),
                     processing_class=tokenizer)
trainer.train()
logged = [entry for entry in trainer.state.log_history if "loss" in entry]
changed = sum(not torch.equal(before[name], p.detach()) for name, p in trainer.model.named_parameters())
print(json.dumps({"module": trl_spo.__file__, "steps": trainer.state.global_step, "losses": [e["loss"] for e in logged],
                  "kl": [e.get("kl/global") for e in logged], "changed": changed, "parameters": len(before)}))
"""


def _run(command: list, cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow
def test_the_built_wheel_installs_alone_and_trains_outside_the_checkout(tmp_path):
    # Every variable that could put the checkout on the path goes; the hub stays off (nothing here downloads a model).
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONNOUSERSITE="1")
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO_ROOT / name, source / name)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(source)],
        tmp_path,
        env,
    )
    (wheel,) = (tmp_path / "dist").glob("trl_spo-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"trl_spo", wheel.name.split("-py3")[0] + ".dist-info"}, f"expected trl_spo alone: {top_level}"
    for needed in ("trl_spo/trainer.py", "trl_spo/pair_weights.py", "trl_spo/templates/test_spo_trainer.py.tmpl"):
        assert needed in names, f"{needed} is missing from {wheel.name}"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python, trl_spo_command = venv / "bin" / "python", venv / "bin" / "trl-spo"
    _run([python, "-m", "pip", "install", "--quiet", TORCH], tmp_path, env)
    _run([python, "-m", "pip", "install", "--quiet", str(wheel)], tmp_path, env)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    # Neither the benchmarks nor the tests came with the package.
    probe = "import importlib.util as u; print([m for m in ('benchmarks', 'tests', 'trl_spo.benchmarks') if u.find_spec(m)])"
    assert _run([python, "-c", probe], outside, env).stdout.strip() == "[]"

    usage = _run([trl_spo_command, "--help"], outside, env).stdout
    assert "trl-spo pair_weights" in usage and "--alpha" in usage and "--generation_interval" in usage

    (outside / "train.py").write_text(TRAIN_SCRIPT)
    report = json.loads(
        _run([python, "train.py", outside, TINY_TOKENIZER, TINY_PAIRS], outside, env).stdout.splitlines()[-1]
    )
    assert Path(report["module"]).is_relative_to(venv), f"trl_spo came from {report['module']}, not the wheel"
    assert report["steps"] == 2 and len(report["losses"]) == 2
    assert all(loss == loss and abs(loss) < 1e6 for loss in report["losses"]), report["losses"]  # finite
    assert report["kl"][0] is not None and report["kl"][0] >= 0, report["kl"]  # the global KL ran on samples
    assert report["changed"] == report["parameters"], f"{report['changed']} of {report['parameters']} changed"

    pairs = _run(
        [
            trl_spo_command,
            "pair_weights",
            "--model",
            outside / "model",
            "--dataset",
            TINY_PAIRS,
            "--num_pairs",
            "6",
            "--alphas",
            "1",
            "0.01",
            "--output",
            outside / "weights.json",
        ],
        outside,
        env,
    )
    weights = json.loads((outside / "weights.json").read_text())
    assert weights["num_pairs"] == 6 and [p["alpha"] for p in weights["profile"]] == [1.0, 0.01]
    assert "| 0.01 |" in pairs.stdout
    # Eq. 8's weight sigmoid(-alpha * gap) lies in (0, 1), and at alpha = 0.01 it is within 0.01 * |gap| / 4 of 0.5.
    small = weights["profile"][1]["mean_weight"]
    assert abs(small - 0.5) <= 0.01 * max(abs(g) for g in weights["gaps"]) / 4 + 1e-12

    removed = subprocess.run(
        [trl_spo_command, "bench", "answers"], cwd=outside, env=env, capture_output=True, text=True
    )
    assert removed.returncode == 2 and "python -m benchmarks.answers" in removed.stderr
