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
Stop a diverged run with one clear error instead of an internal one.

A run whose weights or activations turned non-finite cannot recover: every later loss, metric and sample is NaN, and
sampling the KL completions fails inside `torch.multinomial`. SPO checks the two places where such numbers first reach
its own computations, the loss terms of a training step and the next-token logits of the online sampler, and raises
`TrainingDivergedError` naming the step, the quantity and the likely causes.
"""

import math

import torch
from transformers import LogitsProcessor


class TrainingDivergedError(FloatingPointError):
    """A training step or the online sampler produced non-finite numbers: the run cannot continue."""


def divergence_hints(model: torch.nn.Module, learning_rate: float) -> str:
    """The usual causes of a diverged run, phrased for the run at hand."""
    weight_dtype = next(model.parameters()).dtype
    causes = [f"a learning rate too high for this model (learning_rate={learning_rate:g})"]
    if weight_dtype in (torch.float16, torch.bfloat16):
        # Half-precision weights overflow (fp16) or round updates away (bf16) where mixed precision keeps fp32 masters.
        causes.append(
            f"weights held in {str(weight_dtype).removeprefix('torch.')}: load the model in float32 and train with "
            "`bf16=True` (or `fp16=True`) mixed precision instead"
        )
    return (
        "Likely causes: "
        + "; ".join(causes)
        + ". Lower the learning rate (warmup and `max_grad_norm` help too) and resume from a checkpoint saved before "
        "this step."
    )


def check_finite_terms(step: int, terms, hints: str) -> None:
    """
    Raise `TrainingDivergedError` if the preference loss or the KL term of a training micro-batch is NaN or infinite.

    Args:
        step (`int`): the optimizer step being computed, as the logs number it (the trainer's `global_step + 1`).
        terms (`SPOTerms`): the micro-batch's terms; their sequence log-probs say how much of the batch diverged.
        hints (`str`): `divergence_hints(...)`.
    """
    values = {"preference loss": terms.row_losses.mean(), "KL term": terms.kl_term}
    found = torch.stack([value.detach().float().reshape(()) for value in values.values()]).tolist()
    bad = [f"the {name} is {value}" for name, value in zip(values, found, strict=False) if not math.isfinite(value)]
    if bad:
        logps = terms.response_logps[terms.response_mask]
        num_bad = int((~torch.isfinite(logps)).sum())
        details = f" ({num_bad} of {logps.numel()} sequence log-probs of the batch are non-finite)" if num_bad else ""
        raise TrainingDivergedError(f"SPO training diverged at step {step}: {', '.join(bad)}{details}. {hints}")


class NonFiniteLogitsGuard(LogitsProcessor):
    """
    Fails generation with `TrainingDivergedError` as soon as the policy's next-token logits cannot be sampled from.

    `torch.multinomial` would fail on the same logits with "probability tensor contains either `inf`, `nan` or element
    < 0", which says nothing about the run. Logits may legitimately be `-inf` (suppressed tokens), so the guard fires on
    NaN, `+inf`, or a row with no finite logit. It runs before the sampling warpers (temperature, top-k, top-p) and
    costs one reduction and one host sync per generated token.

    Args:
        step (`int`): the optimizer step at which the samples are drawn, for the message.
        hints (`str`): `divergence_hints(...)`.
    """

    def __init__(self, step: int, hints: str):
        self.step = step
        self.hints = hints

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        unusable = scores.isnan().any() | scores.isposinf().any() | scores.isneginf().all(dim=-1).any()
        if unusable.item():
            raise TrainingDivergedError(
                f"SPO training diverged before step {self.step}: the policy's next-token logits are non-finite "
                "(NaN or inf) while sampling the completions of the global KL, so the last optimizer step wrote "
                f"non-finite values into the weights. {self.hints}"
            )
        return scores
