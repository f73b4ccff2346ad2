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
The DPO-family baselines that the paper compares SPO with on best-of-n and ranked data (Tables 4-5): S-DPO and
Plackett-Luce DPO, on the same data pipeline as SPO, with their own trainer and config. They are not SPO: their `beta`
is DPO's inverse temperature on reference log-ratios, and they take no KL term, no alpha and no sample weight.
"""

from dataclasses import MISSING, dataclass, field, fields

import torch
from trl import DPOConfig

from ._trl_compat import disable_gradient_checkpointing, reference_adapter
from .config import SPOConfig
from .data import detect_preference_format
from .losses import dpo_plackett_luce_loss, dpo_softmax_loss
from .responses import response_grid
from .trainer import SPOTrainer


NARY_DPO_LOSSES = ("s_dpo", "pl_dpo")


def _spo_only_defaults() -> dict:
    """SPOConfig's own fields but `alpha` and `gamma` (checked apart), with their defaults: the baselines use none."""
    dpo_fields = {f.name for f in fields(DPOConfig)}
    return {
        f.name: f.default if f.default is not MISSING else f.default_factory()
        for f in fields(SPOConfig)
        if f.name not in dpo_fields and f.name not in ("alpha", "gamma")
    }


@dataclass
class NaryDPOConfig(SPOConfig):
    r"""
    Configuration class for the [`NaryDPOTrainer`]: S-DPO or Plackett-Luce DPO on best-of-n or ranked data.

    It subclasses [`SPOConfig`] for SPO's n-ary data pipeline, and every DPO field keeps its meaning; `beta` is DPO's β
    here. SPO's own fields are not used and are refused: `alpha` and `gamma` must stay `0`, and the KL and sampling
    fields (`regularizer`, `generation_interval`, `kl_batch_size`, `max_completion_length`, `temperature`, ...,
    `use_vllm`, `rank_weight_decay`) at their defaults, as [`SPOConfig`] refuses DPO's options that mean nothing for SPO.

    Parameters:
        nary_loss_type (`str`, *optional*, defaults to `"s_dpo"`):
            `"s_dpo"`: [S-DPO](https://huggingface.co/papers/2406.09215) (softmax DPO), best-of-n or ranked data (on
            rankings, as the paper applies it, each rank is the positive against the ranks below, which is
            Plackett-Luce DPO). `"pl_dpo"`: Plackett-Luce DPO ([DPO paper](https://huggingface.co/papers/2305.18290)
            App. A.3), ranked data only.
        beta (`float`, *optional*, defaults to `0.1`):
            DPO's β on the log-ratios `log π_θ(y|x) - log π_ref(y|x)`, TRL's DPO default. Must be `> 0`.
    """

    nary_loss_type: str = field(
        default="s_dpo",
        metadata={
            "help": "'s_dpo' (softmax DPO; best-of-n or ranked data) or 'pl_dpo' (Plackett-Luce DPO; ranked data).",
            "choices": list(NARY_DPO_LOSSES),
        },
    )
    beta: float = field(
        default=0.1, metadata={"help": "DPO's beta on the reference log-ratios (TRL's DPO default). Must be > 0."}
    )
    alpha: float = field(default=0.0, metadata={"help": "Not used by the DPO-family baselines: must stay 0."})
    gamma: float = field(default=0.0, metadata={"help": "Not used by the DPO-family baselines: must stay 0."})

    def __post_init__(self):
        super().__post_init__()
        if self.nary_loss_type not in NARY_DPO_LOSSES:
            raise ValueError(f"`nary_loss_type` must be one of {list(NARY_DPO_LOSSES)}, got {self.nary_loss_type!r}.")
        if not self.beta > 0:
            raise ValueError(f"`beta` must be > 0: it is DPO's beta of `{self.nary_loss_type}`, got {self.beta!r}.")
        for name in ("alpha", "gamma"):
            if getattr(self, name) != 0:
                raise ValueError(
                    f"`{name}={getattr(self, name)!r}`: the DPO-family baselines have no SPO {name}; leave it at 0, "
                    "or train SPO with SPOTrainer."
                )
        defaults = _spo_only_defaults()
        changed = {name: getattr(self, name) for name, default in defaults.items() if getattr(self, name) != default}
        if changed:
            settings = ", ".join(f"`{name}={value!r}`" for name, value in changed.items())
            raise ValueError(
                f"{settings}: SPO's own fields, which the DPO-family baselines do not use (they neither sample nor "
                "take a KL term); leave them at their defaults, or train SPO with SPOTrainer."
            )

    @property
    def uses_global_kl(self) -> bool:
        return False  # regularised by the reference log-ratios, not by a KL term

    @property
    def uses_dataset_kl(self) -> bool:
        return False

    @property
    def needs_reference(self) -> bool:
        return True


class NaryDPOTrainer(SPOTrainer):
    """
    S-DPO / Plackett-Luce DPO on best-of-n and ranked data: the comparison baselines of the SPO paper's Tables 4-5.

    The only change w.r.t. [`SPOTrainer`] is the preference loss per row (`_row_losses`): DPO's loss on reference
    log-ratios (`trl_spo.losses.dpo_softmax_loss`, `dpo_plackett_luce_loss`), with the reference's sequence
    log-probs computed on every batch. Takes the arguments of [`SPOTrainer`], with an [`NaryDPOConfig`]; for pairs,
    use TRL's [`~trl.DPOTrainer`].
    """

    _tag_names = ["trl", "dpo"]
    _name = "DPO (n-ary baseline)"
    _loss_has_alpha = False  # DPO's loss: no implicit rewards alpha * log pi, no pair weight of Eq. 8

    def __init__(
        self,
        model,
        ref_model=None,
        args: NaryDPOConfig | None = None,
        data_collator=None,
        train_dataset=None,
        **kwargs,
    ):
        if not isinstance(args, NaryDPOConfig):
            raise TypeError(f"NaryDPOTrainer needs an `NaryDPOConfig`, got `{type(args).__name__}`.")
        if train_dataset is not None:
            preference_format = detect_preference_format(train_dataset)
            if preference_format == "pairwise":
                raise ValueError(
                    "The train dataset is pairwise: DPO on pairs is TRL's DPOTrainer. NaryDPOTrainer trains the "
                    "baselines on best-of-n or ranked data."
                )
            if preference_format == "best_of_n" and args.nary_loss_type == "pl_dpo":
                raise ValueError(
                    "`nary_loss_type='pl_dpo'` needs full rankings, but the train dataset is best-of-n (only the best "
                    "response is labelled). On best-of-n data use `nary_loss_type='s_dpo'`."
                )
        super().__init__(model, ref_model, args, data_collator, train_dataset, **kwargs)

    def _row_losses(self, model, inputs, grid, mask, winner_index, weights) -> torch.Tensor:
        reference, _, _ = response_grid(self._reference_sequence_logps(model, inputs), inputs, self.preference_format)
        if self.preference_format == "best_of_n":
            return dpo_softmax_loss(grid, reference, winner_index, self.beta, response_mask=mask)
        # On rankings S-DPO as the paper applies it (App. E.3) and PL-DPO are the same loss.
        return dpo_plackett_luce_loss(grid, reference, self.beta, response_mask=mask)

    def _reference_sequence_logps(self, model, inputs) -> torch.Tensor:
        """Sequence log-probs `(N,)` of every completion in the batch under π_ref."""
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "use_cache": False}
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if self.ref_model is None:
                with reference_adapter(model):
                    outputs = model(**kwargs, labels=labels, fused_lm_head=True)
            else:
                outputs = self.ref_model(**kwargs, labels=labels, fused_lm_head=True)
        return outputs.log_probs.sum(dim=1)  # (N, L - 1), 0 off the completions: the fused head's shape
