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
The one place where the benchmarks train "these settings from the same reference, data, steps and seed".

`benchmarks.expert_distribution` and `benchmarks.answers` each compare SPO and DPO settings trained one after
another in one process. What a setting is (`Setting`), what every setting of one benchmark shares (`TrainingPlan`), how the two become
an `SPOConfig` or a `DPOConfig` (`training_arguments`), and how a setting is trained (`train_setting`) live here, so
the comparison is the same in every benchmark: only `method`, `alpha`, `beta`, the data and the regulariser differ
between the rows of a table.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


METHODS = ("spo", "dpo", "s_dpo", "pl_dpo", "br_sft")
DATA = ("pairs", "rankings", "best_of_n")
REGULARIZERS = ("global_kl", "dataset_kl")
# The data each method trains on: DPO on pairs; the paper's n-ary baselines (Tables 4-5) on best-of-n (S-DPO,
# Best-response SFT, which learns the best answer of each row) or rankings (Plackett-Luce DPO); SPO on any.
METHOD_DATA = {
    "spo": DATA,
    "dpo": ("pairs",),
    "s_dpo": ("best_of_n",),
    "pl_dpo": ("rankings",),
    "br_sft": ("best_of_n",),
}
METHOD_NAMES = {"dpo": "DPO", "s_dpo": "S-DPO", "pl_dpo": "PL-DPO"}


@dataclass(frozen=True)
class Setting:
    """
    One trained policy: a method and its knobs.

    Args:
        method (`str`): `"spo"`, `"dpo"`, or one of the paper's n-ary baselines: `"s_dpo"` (S-DPO on best-of-n),
            `"pl_dpo"` (Plackett-Luce DPO on rankings), `"br_sft"` (Best-response SFT: TRL's `SFTTrainer` on the best
            answer of each best-of-n row).
        beta (`float`): SPO's weight of the KL term, or the DPO family's beta; `0` for Best-response SFT.
        alpha (`float`, *optional*): SPO's softness (its target is `Softmax(r / alpha)`); `None` for the others.
        data (`str`): `"pairs"`, `"rankings"` (SPO's Eq. 15) or `"best_of_n"` (SPO's Eq. 14).
        regularizer (`str`): SPO's `"global_kl"` (Eq. 13), or `"dataset_kl"` (the paper's Table 6 ablation).
        label (`str`, *optional*): the table's name for it; by default built from the fields (`name`).
    """

    method: str
    beta: float
    alpha: float | None = None
    data: str = "pairs"
    regularizer: str = "global_kl"
    label: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if (self.method == "spo") != (self.alpha is not None):
            raise ValueError(
                f"alpha is required for SPO and meaningless for DPO, got method={self.method!r}, alpha={self.alpha}"
            )
        if self.data not in DATA:
            raise ValueError(f"data must be one of {DATA}, got {self.data!r}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.data not in METHOD_DATA[self.method]:
            raise ValueError(
                f"{self.method} trains on {' or '.join(METHOD_DATA[self.method])} data, got data={self.data!r}"
            )
        if self.method != "spo" and self.regularizer != "global_kl":
            raise ValueError(f"the regularizer is SPO's knob; {self.method} has its own, got {self.regularizer!r}")
        if self.method == "br_sft" and self.beta != 0:
            raise ValueError(f"Best-response SFT has no beta: leave it at 0, got {self.beta}")

    @property
    def name(self) -> str:
        if self.label is not None:
            return self.label
        if self.method == "br_sft":
            name = "Best-response SFT"
        elif self.method != "spo":
            name = f"{METHOD_NAMES[self.method]} β={self.beta:g}"
        else:
            name = f"SPO α={self.alpha:g} β={self.beta:g}"
        if self.regularizer == "dataset_kl":
            name += ", dataset KL (Table 6)"
        if self.data == "rankings" and self.method == "spo":
            name += ", rankings (Eq. 15)"
        if self.data == "best_of_n" and self.method == "spo":
            name += ", best-of-n (Eq. 14)"
        return name

    def summary(self) -> dict[str, Any]:
        """The columns every results file stores for the setting."""
        return {
            "name": self.name,
            "method": self.method,
            "alpha": self.alpha,
            "beta": self.beta,
            "data": self.data,
            "regularizer": self.regularizer if self.method == "spo" else None,
        }


@dataclass
class TrainingPlan:
    """
    What every setting of one benchmark shares.

    Args:
        seed (`int`): seeds every trainer and its data order.
        max_steps (`int`): optimizer steps per setting.
        batch_size (`int`): pairs per optimizer step. Rankings of `ranking_size` responses take
            `2 * batch_size // ranking_size` rows, the same number of sequences.
        learning_rate (`float`): peak learning rate.
        lr_scheduler_type (`str`): transformers' schedule name (`"linear"` decays to zero, `"constant"` does not).
        warmup_steps (`int`): optimizer steps of linear warmup before the schedule.
        gamma (`float`): SPO's mu exponent (Eq. 12).
        generation_interval (`int`): SPO's optimizer steps between refreshes of the KL samples.
        kl_batch_size (`int`, *optional*): SPO's completions per refresh (`None`: SPOConfig's default).
        max_length (`int`): tokens of a training sequence (prompt and completion).
        max_completion_length (`int`): tokens of an SPO KL sample.
        logging_steps (`int`): optimizer steps between two logged metric averages.
        ranking_size (`int`): responses per ranking row, for the batch size of rankings.
        extra_arguments (`dict`): further `TrainingArguments` fields, the same for every setting.
    """

    seed: int
    max_steps: int
    batch_size: int
    learning_rate: float
    max_length: int
    max_completion_length: int
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    gamma: float = 0.01
    generation_interval: int = 8
    kl_batch_size: int | None = None
    logging_steps: int = 1
    ranking_size: int = 4
    extra_arguments: dict[str, Any] = field(default_factory=dict)


def benchmark_arguments(output_dir: str, seed: int) -> dict[str, Any]:
    """The `TrainingArguments` fields of every benchmark run: seeded, on the CPU in float32, quiet, nothing saved."""
    return dict(
        output_dir=output_dir,
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def training_arguments(setting: Setting, plan: TrainingPlan, output_dir: str):
    """
    The config of `setting` under `plan`: `SPOConfig` (SPO), `DPOConfig` (DPO), `NaryDPOConfig` (S-DPO, PL-DPO) or
    `SFTConfig` (Best-response SFT), with the same fields but for the method's own.
    """
    from trl import DPOConfig, SFTConfig

    from trl_spo import NaryDPOConfig, SPOConfig

    batch_size = plan.batch_size
    if setting.data in ("rankings", "best_of_n"):
        # Rows of `ranking_size` answers: the same number of sequences as `batch_size` pairs (Best-response SFT takes
        # the same rows, one answer each).
        batch_size = max(1, 2 * plan.batch_size // plan.ranking_size)
    common = dict(
        **benchmark_arguments(output_dir, plan.seed),
        per_device_train_batch_size=batch_size,
        max_steps=plan.max_steps,
        learning_rate=plan.learning_rate,
        lr_scheduler_type=plan.lr_scheduler_type,
        warmup_steps=plan.warmup_steps,
        logging_steps=plan.logging_steps,
        max_length=plan.max_length,
        beta=setting.beta,
    )
    common.update(plan.extra_arguments)  # e.g. bf16=True, which replaces the CPU default above
    if setting.method == "dpo":
        return DPOConfig(**common)
    if setting.method in ("s_dpo", "pl_dpo"):
        return NaryDPOConfig(**common, nary_loss_type=setting.method)
    if setting.method == "br_sft":
        del common["beta"]
        return SFTConfig(**common)
    spo_fields = dict(
        alpha=setting.alpha,
        gamma=plan.gamma,
        regularizer=setting.regularizer,
        generation_interval=plan.generation_interval,
        max_completion_length=plan.max_completion_length,
    )
    if plan.kl_batch_size is not None:
        spo_fields["kl_batch_size"] = plan.kl_batch_size
    return SPOConfig(**common, **spo_fields)


def train_setting(
    setting: Setting,
    plan: TrainingPlan,
    model: str,
    train_dataset,
    processing_class,
    output_dir: str,
    callbacks: Sequence = (),
):
    """
    Train `setting` from the model at `model` (a path: the trainer loads the policy and, for DPO and SPO's KL, the
    reference from it) and return `(trainer, seconds)`, the trained trainer and the wall time of `train()`.
    """
    from transformers import PrinterCallback
    from trl import DPOTrainer, SFTTrainer

    from trl_spo import NaryDPOTrainer, SPOTrainer

    args = training_arguments(setting, plan, output_dir)
    trainer_class = {"spo": SPOTrainer, "dpo": DPOTrainer, "br_sft": SFTTrainer}.get(setting.method, NaryDPOTrainer)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        processing_class=processing_class,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # the benchmarks print their own progress lines
    start = time.perf_counter()
    trainer.train()
    return trainer, time.perf_counter() - start


def select_settings(names: Sequence[str] | None, groups: dict[str, Sequence[Setting]]) -> tuple[Setting, ...]:
    """
    The settings a `--settings` flag asks for: group names (e.g. `default`, `all`) and setting names, in order, each
    once. `None` means the group `default`.

    Raises:
        ValueError: for a name that is neither a group nor a setting; the message lists both.
    """
    known = {setting.name: setting for group in groups.values() for setting in group}
    chosen: dict[str, Setting] = {}
    for name in ["default"] if names is None else names:
        if name in groups:
            chosen.update((setting.name, setting) for setting in groups[name])
        elif name in known:
            chosen[name] = known[name]
        else:
            raise ValueError(
                f"unknown setting {name!r}; expected a group among {list(groups)} or one of {list(known)}"
            )
    return tuple(chosen.values())
