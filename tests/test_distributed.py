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

"""Multi-process SPO on CPU through `accelerate launch` (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


SCRIPT = Path(__file__).parent / "scripts" / "train_spo_multiprocess.py"
CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "accelerate_configs"


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, distributed_type, overrides",
    [
        ("multi_gpu", "MULTI_CPU", []),
        ("zero2", "DEEPSPEED", []),
        ("zero3", "DEEPSPEED", []),
        ("zero3", "DEEPSPEED", ["ds3_gather_for_generation=false"]),  # generation streams the sharded weights
    ],
    ids=["ddp", "zero2", "zero3-gathered", "zero3-streamed"],
)
def test_two_processes_keep_ranks_identical_and_compute_the_kl_everywhere(
    tmp_path, config, distributed_type, overrides
):
    if config.startswith("zero"):
        pytest.importorskip("deepspeed")
    # The repository's own config, with only the process count and the precision overridden for 2 CPU processes
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{config}.yaml")),
        *("--num_processes", "2", "--mixed_precision", "no", str(SCRIPT), str(tmp_path), *overrides),
    ]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [r["num_processes"] for r in reports] == [2, 2]
    assert {r["distributed_type"] for r in reports} == {f"DistributedType.{distributed_type}"}
    assert reports[0]["num_parameters"] == reports[1]["num_parameters"] > 100_000
    # The replicas stay identical: same parameters on both ranks after 4 optimizer steps
    assert reports[0]["parameters"] == reports[1]["parameters"]
    assert reports[0]["parameters_abs"] == reports[1]["parameters_abs"]
    # Every rank refreshed its samples at steps 0 and 2 and computed the KL at every step
    for report in reports:
        assert report["refreshes"] == 2
        assert report["kl_steps"] == [0, 1, 2, 3]
    kl = [entry["kl/global"] for entry in reports[0]["log_history"] if "kl/global" in entry]
    assert len(kl) == 4 and kl[0] == pytest.approx(0.0, abs=1e-6) and max(kl) > 0


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # Preference term only: with the KL on, each process draws its own samples from its own RNG stream, so the runs
    # legitimately differ. mu's batch mean is gathered across processes, so it must match too.
    overrides = ['regularizer="none"', "gamma=0.5"]
    runs = {
        "one": (
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--dynamo_backend",
            "no",
            "per_device_train_batch_size=8",
        ),
        "two": ("--config_file", str(CONFIGS / "multi_gpu.yaml"), "--num_processes", "2"),
    }
    reports = {}
    for name, launch in runs.items():
        batch = [arg for arg in launch if "=" in arg]
        launch = [arg for arg in launch if "=" not in arg]
        command = [
            *(sys.executable, "-m", "accelerate.commands.launch", *launch, "--mixed_precision", "no"),
            *(str(SCRIPT), str(tmp_path / name), *overrides, *batch),
        ]
        result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        reports[name] = json.loads((tmp_path / name / "rank0.json").read_text())
    one, two = ([e for e in reports[n]["log_history"] if "loss" in e] for n in ("one", "two"))
    assert len(one) == len(two) == 4
    # Tolerance: the same sums in another order (fp32); alpha = 0.01 puts the loss near log(2) / alpha = 69.3.
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
        assert b["mu/mean"] == pytest.approx(a["mu/mean"], rel=1e-6)
        assert b["rewards/accuracies"] == a["rewards/accuracies"]
    assert reports["two"]["parameters"] == pytest.approx(reports["one"]["parameters"], rel=1e-6)
