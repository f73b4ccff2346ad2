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
A short SPO run for `accelerate launch` tests:
`python train_spo_multiprocess.py OUTPUT_DIR [--save_parameters] [FIELD=JSON_VALUE ...]`, the optional pairs
overriding `SPOConfig` fields (e.g. `ds3_gather_for_generation=false`).

Each rank writes `OUTPUT_DIR/rank{N}.json`: its final parameters' checksum, the optimizer steps at which it computed
the global KL, its generation count, and the per-step sequence log-probs of the whole (gathered) batch on pairwise data,
so the test can check every rank did the same work. With `--save_parameters`, each rank also writes
`OUTPUT_DIR/rank{N}.pt`: `{"initial": {name: tensor}, "final": {name: tensor}}`, the full fp32 parameters before and
after training.
"""

import contextlib
import json
import os
import sys
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from datasets import load_dataset  # noqa: E402

import trl_spo.metrics  # noqa: E402
import trl_spo.trainer  # noqa: E402
from trl_spo import SPOTrainer  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "recipes" / "tiny"
sys.path.insert(0, str(REPO_ROOT))  # `accelerate launch` runs this file as a script, outside the test package

from tests.helpers import make_args  # noqa: E402


def named_parameters(trainer: SPOTrainer) -> dict[str, torch.Tensor]:
    """Full copies of the parameters, also under ZeRO-3 (which keeps only a shard of each parameter on each rank)."""
    model = trainer.accelerator.unwrap_model(trainer.model) if trainer.accelerator is not None else trainer.model
    gathered = contextlib.nullcontext()
    if trainer.is_deepspeed_enabled:
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(list(model.parameters()))
    with gathered:
        return {name: param.detach().float().clone().cpu() for name, param in model.named_parameters()}


def main(output_dir: str, overrides: dict, save_parameters: bool) -> None:
    dataset = load_dataset(str(ASSETS / "data"), split="train").select(range(64))
    args = make_args(output_dir, **{"max_steps": 4, "learning_rate": 1e-3, **overrides})
    trainer = SPOTrainer(model=str(ASSETS / "model"), args=args, train_dataset=dataset)
    initial = named_parameters(trainer) if save_parameters else None

    kl_steps = []
    per_sample_kl = trl_spo.trainer.global_kl_per_sample

    def counting_kl(*a, **kw):
        kl_steps.append(trainer.state.global_step)
        return per_sample_kl(*a, **kw)

    trl_spo.trainer.global_kl_per_sample = counting_kl
    pair_logps = []  # per step: the (chosen, rejected) log-probs of every row of the global batch, as logged
    preference_statistics = trl_spo.metrics.preference_statistics

    def recording_preference_statistics(terms, batch, *args, **kwargs):
        # Every rank gathers (a collective call, here on every step: the test's own, not the trainer's).
        pair_logps.append(trainer.accelerator.gather(terms.response_logps).tolist())
        return preference_statistics(terms, batch, *args, **kwargs)

    trl_spo.metrics.preference_statistics = recording_preference_statistics
    trainer.train()
    final = named_parameters(trainer)
    parameters = torch.cat([param.flatten() for param in final.values()])
    report = {
        "parameters": parameters.double().sum().item(),
        "parameters_abs": parameters.double().abs().sum().item(),
        "kl_steps": kl_steps,
        "refreshes": trainer.kl_sampler.num_refreshes if trainer.kl_sampler else 0,
        "num_processes": trainer.accelerator.num_processes,
        "num_parameters": parameters.numel(),
        "distributed_type": str(trainer.accelerator.distributed_type),
        "num_threads": torch.get_num_threads(),
        "pair_logps": pair_logps,
        "log_history": trainer.state.log_history,
    }
    rank = trainer.accelerator.process_index
    Path(output_dir, f"rank{rank}.json").write_text(json.dumps(report))
    if save_parameters:
        torch.save({"initial": initial, "final": final}, Path(output_dir, f"rank{rank}.pt"))
    # Destroy the process group before the interpreter exits: left to shutdown, gloo's threads were once torn down
    # mid-flight ("terminate called without an active exception", SIGABRT on rank 1 after both reports were written).
    trainer.end()


if __name__ == "__main__":
    flags = {arg for arg in sys.argv[2:] if arg.startswith("--")}
    if flags - {"--save_parameters"}:
        raise SystemExit(f"unknown flags {sorted(flags - {'--save_parameters'})}; the only flag is --save_parameters")
    pairs = [arg for arg in sys.argv[2:] if not arg.startswith("--")]
    overrides = {key: json.loads(value) for key, value in (arg.split("=", 1) for arg in pairs)}
    main(sys.argv[1], overrides, save_parameters="--save_parameters" in flags)
