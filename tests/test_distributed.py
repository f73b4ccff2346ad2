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
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .helpers import GLOO_TEARDOWN_ABORT, died_in_gloo_teardown


SCRIPT = Path(__file__).parent / "scripts" / "train_spo_multiprocess.py"
CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "accelerate_configs"


def _free_port() -> str:
    # accelerate's default rendezvous port (29500) may still be held by the previous launch, or by another job on a
    # shared machine; the OS hands out one that is free now.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


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
        *("--num_processes", "2", "--main_process_port", _free_port(), "--mixed_precision", "no"),
        *(str(SCRIPT), str(tmp_path), *overrides),
    ]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    if died_in_gloo_teardown(result.returncode, result.stderr):
        result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [r["num_processes"] for r in reports] == [2, 2]
    assert {r["distributed_type"] for r in reports} == {f"DistributedType.{distributed_type}"}
    assert reports[0]["num_parameters"] == reports[1]["num_parameters"] > 100_000
    # The replicas stay identical: same parameters on both ranks after 4 optimizer steps. Bitwise, so exact equality:
    # every rank applies the same all-reduced gradient to the same weights (ZeRO: updates a shard, then shares it).
    assert reports[0]["parameters"] == reports[1]["parameters"], "sum of the final parameters: rank 0 vs rank 1"
    assert reports[0]["parameters_abs"] == reports[1]["parameters_abs"], "sum of |final parameters|: rank 0 vs rank 1"
    # Every rank refreshed its samples at steps 0 and 2 and computed the KL at every step
    for report in reports:
        assert report["refreshes"] == 2
        assert report["kl_steps"] == [0, 1, 2, 3]
    kl = [entry["kl/global"] for entry in reports[0]["log_history"] if "kl/global" in entry]
    # Step 0: pi_theta = pi_ref. The KL is then exactly 0 when both hidden states are computed alike; rounding either
    # would leave ~eps * |log p| ~ 1e-6 per position over <= 8 positions.
    assert len(kl) == 4 and kl[0] == pytest.approx(0.0, abs=1e-5) and max(kl) > 0, f"kl/global per step: {kl}"


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # Preference term only: with the KL on, each process draws its own samples from its own RNG stream, so the runs
    # legitimately differ. mu's batch mean is gathered across processes, so it must match too. Plain SGD makes the
    # update linear in the gradients (Adam's m / sqrt(v) would blow rounding noise on near-zero gradients up to
    # O(lr)), and a large learning rate makes it large against the rounding of the fp32 parameters it is added to.
    overrides = ["beta=0", "gamma=0.5", 'optim="sgd"', "learning_rate=0.1"]
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
    reports, parameters = {}, {}
    for name, launch in runs.items():
        batch = [arg for arg in launch if "=" in arg]
        launch = [arg for arg in launch if "=" not in arg]
        command = [
            *(sys.executable, "-m", "accelerate.commands.launch", *launch, "--mixed_precision", "no"),
            *("--main_process_port", _free_port()),
            *(str(SCRIPT), str(tmp_path / name), "--save_parameters", *overrides, *batch),
        ]
        result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        reports[name] = json.loads((tmp_path / name / "rank0.json").read_text())
        parameters[name] = torch.load(tmp_path / name / "rank0.pt")
    one, two = ([e for e in reports[n]["log_history"] if "loss" in e] for n in ("one", "two"))
    assert len(one) == len(two) == 4
    # Bitwise: DDP applies the same all-reduced gradient to the same weights on both ranks.
    rank1 = torch.load(tmp_path / "two" / "rank1.pt")["final"]
    assert all(torch.equal(rank1[n], p) for n, p in parameters["two"]["final"].items()), "ranks 0 and 1 differ"

    # The sample weight must vary across rows, or a per-process batch mean of s would pass as well: with logps near
    # -2, gamma = 0.5 spreads mu over 0.91-1.07, and taking mu's batch mean per process instead moves mu/min and
    # mu/max by 3e-3 to 1e-2, the sequence log-probs from step 1 on by up to 5e-3 and the update by 5e-3 (relative):
    # each far outside the tolerances below.
    for step, a in enumerate(one):
        assert a["mu/max"] - a["mu/min"] > 0.05, f"mu is nearly constant at step {step}: {a['mu/min']}..{a['mu/max']}"
    for step, (a, b) in enumerate(zip(one, two, strict=False)):
        what = f"at step {step}: two processes of 4 rows vs one process of 8"
        # The loss is a mean of 8 fp32 terms near log(2) / alpha = 69.3: ~69 * 1.2e-7 * sqrt(8) = 2.3e-5 of rounding,
        # 3.4e-7 relative (observed: 1 ulp, 1.1e-7).
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-6), f"loss {what}"
        # mu = 2 sigmoid(s - mean(s)) near 1, s = exp(gamma * logsumexp(logps)): the ~2e-6 log-prob differences below
        # move it by ~gamma * s / 2 times that, plus ulps of 1 (observed: 1 ulp, 1.2e-7).
        for key in ("mu/mean", "mu/min", "mu/max"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), f"{key} {what}"
    # Per row and step: fp32 sums of <= 8 token log-probs of the same sequences, padded to other lengths in batches
    # of other shapes, so summed in another order: a few ulps of |logp| <= 5, ~1e-6 (observed 1.9e-6).
    logps = {name: torch.tensor(reports[name]["pair_logps"], dtype=torch.float64) for name in runs}
    assert logps["one"].shape == logps["two"].shape == (4, 8, 2)
    logp_tolerance = 2e-5
    torch.testing.assert_close(
        logps["two"],
        logps["one"],
        rtol=0,
        atol=logp_tolerance,
        msg=lambda m: f"(chosen, rejected) log-probs per step and row, two processes vs one: {m}",
    )
    # `rewards/accuracies` counts chosen > rejected: equal in both runs only if no pair is within rounding of a tie.
    margin = (logps["one"][..., 0] - logps["one"][..., 1]).abs().min().item()
    assert margin > 2 * logp_tolerance, f"a pair's log-probs differ by only {margin}: the accuracy is a coin flip"
    assert [b["rewards/accuracies"] for b in two] == [a["rewards/accuracies"] for a in one]

    # The weights moved by the same SGD update. The gradient is a sum over 8 rows, once as one fp32 sum and once as 2
    # sums of 4 all-reduced, through matmuls of other shapes: ~eps * sqrt(terms) ~ 1e-6 relative per step, plus an
    # ulp of the parameter (7.5e-9 at |p| ~ 0.2) where fp32 rounds p + update the other way. Observed: 1.3e-6 of the
    # update's norm over 4 steps (elementwise: 1 or 2 ulps of p); a per-process mean of s gives 5e-3.
    initial = parameters["one"]["initial"]
    assert all(torch.equal(parameters["two"]["initial"][n], p) for n, p in initial.items()), "initial weights differ"
    update = {name: {n: (parameters[name]["final"][n] - p).double() for n, p in initial.items()} for name in runs}
    difference = {n: (update["two"][n] - update["one"][n]).norm().item() for n in initial}
    update_norm = math.sqrt(sum(u.norm().item() ** 2 for u in update["one"].values()))
    relative = math.sqrt(sum(d**2 for d in difference.values())) / update_norm
    worst = sorted(difference, key=difference.get, reverse=True)[:3]
    assert relative < 5e-5, (
        f"the 4-step SGD update of two processes differs from one process's by {relative:.2e} of its norm; "
        "largest differences: " + ", ".join(f"{n} ({difference[n]:.2e})" for n in worst)
    )


def test_only_the_gloo_teardown_abort_is_retried():
    abort = f"{GLOO_TEARDOWN_ABORT}\n  exitcode  : -6 (pid: 7)  (SIGABRT)"
    assert died_in_gloo_teardown(1, abort)
    assert not died_in_gloo_teardown(0, abort)  # a run that succeeded is never rerun
    assert not died_in_gloo_teardown(1, "  exitcode  : -6 (pid: 7)  (SIGABRT)")  # another abort is a failure
    assert not died_in_gloo_teardown(1, f"{GLOO_TEARDOWN_ABORT}\n  exitcode  : 1 (pid: 7)")  # so is an error
