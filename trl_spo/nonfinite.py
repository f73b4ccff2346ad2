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
The non-finite guard: stop a diverged run with one clear error instead of an internal one, without making the host wait
for the device on ordinary steps.

A run whose weights or activations turned non-finite cannot recover: every later loss, metric and sample is NaN, and
sampling the KL completions fails inside `torch.multinomial`. SPO watches the two places where such numbers first reach
its own computations, the loss terms of a training step (`NonFiniteTermsGuard`) and the next-token logits of the online
sampler (`NonFiniteLogitsGuard`). Both record what they see on the device, where reading it would cost a host sync, and
are read where the host has to wait anyway: when the trainer logs, before it writes a checkpoint, and after generation.
They raise `TrainingDivergedError` naming the first non-finite step, the quantity and the likely causes.
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


class NonFiniteTermsGuard:
    """
    A device-side record of the first training micro-batch whose preference loss or KL term was NaN or infinite.

    `observe` runs on every training micro-batch and only queues device operations: the step, the two terms and how
    many of the batch's sequence log-probs were non-finite are kept for the first offending micro-batch.
    `raise_if_diverged` reads that record back (one host sync) and raises `TrainingDivergedError`; the trainer calls it
    when it logs and before it writes a checkpoint, so a diverged run stops no later than the next logging step, with
    the step at which it diverged, and never saves non-finite weights.
    """

    QUANTITIES = ("preference loss", "KL term")

    def __init__(self):
        self._step: torch.Tensor | None = None  # -1 until a non-finite term is seen
        self._values: torch.Tensor | None = None  # (2,): the two terms of that micro-batch
        self._logps: torch.Tensor | None = None  # (2,): non-finite and all valid sequence log-probs of its batch

    def observe(self, step: int, terms) -> None:
        """
        Record `terms` if they are the first non-finite ones.

        Args:
            step (`int`): the optimizer step being computed, as the logs number it (the trainer's `global_step + 1`).
            terms (`SPOTerms`): the micro-batch's terms; their sequence log-probs say how much of the batch diverged.
        """
        values = torch.stack([terms.row_losses.mean().float(), terms.kl_term.detach().float().reshape(())])
        mask = terms.response_mask
        logps = torch.stack([(~torch.isfinite(terms.response_logps) & mask).sum(), mask.sum()])
        if self._step is None:
            self._step = torch.full((), -1, dtype=torch.long, device=values.device)
            self._values = torch.zeros_like(values)
            self._logps = torch.zeros_like(logps)
        first = ~torch.isfinite(values).all() & (self._step < 0)
        self._step = torch.where(first, step, self._step)
        self._values = torch.where(first, values, self._values)
        self._logps = torch.where(first, logps, self._logps)

    def raise_if_diverged(self, hints: str) -> None:
        """Raise `TrainingDivergedError` if a non-finite term was recorded (reads the record: one host sync)."""
        if self._step is None:
            return
        step, *record = torch.cat(
            [self._step.reshape(1).double(), self._values.double(), self._logps.double()]
        ).tolist()
        if step < 0:
            return
        values, (num_bad, num_logps) = record[:2], record[2:]
        bad = [
            f"the {name} is {value}"
            for name, value in zip(self.QUANTITIES, values, strict=True)
            if not math.isfinite(value)
        ]
        details = (
            f" ({int(num_bad)} of {int(num_logps)} sequence log-probs of the batch are non-finite)" if num_bad else ""
        )
        raise TrainingDivergedError(f"SPO training diverged at step {int(step)}: {', '.join(bad)}{details}. {hints}")


class NonFiniteLogitsGuard(LogitsProcessor):
    """
    Records, on the device, whether the policy's next-token logits could not be sampled from, and raises
    `TrainingDivergedError` when asked after generation (`raise_if_diverged`).

    `torch.multinomial` would fail on such logits with "probability tensor contains either `inf`, `nan` or element
    < 0", which says nothing about the run. Logits may legitimately be `-inf` (suppressed tokens), so a row is unusable
    when it holds NaN, `+inf`, or no finite logit. The guard runs before the sampling warpers (temperature, top-k,
    top-p): it replaces an unusable row by zeros (a uniform distribution) so that generation runs to its end without a
    host sync per token, and the sampler checks the record once, after generation.

    Args:
        step (`int`): the optimizer step at which the samples are drawn, for the message.
        hints (`str`): `divergence_hints(...)`.
    """

    def __init__(self, step: int, hints: str):
        self.step = step
        self.hints = hints
        self.tripped: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        unusable = scores.isnan().any(-1) | scores.isposinf().any(-1) | scores.isneginf().all(-1)
        tripped = unusable.any()
        self.tripped = tripped if self.tripped is None else self.tripped | tripped
        return torch.where(unusable.unsqueeze(-1), torch.zeros_like(scores), scores)

    def raise_if_diverged(self) -> None:
        """Raise `TrainingDivergedError` if any step of the generation had unusable logits (one host sync)."""
        if self.tripped is not None and bool(self.tripped):
            raise TrainingDivergedError(
                f"SPO training diverged before step {self.step}: the policy's next-token logits are non-finite "
                "(NaN or inf) while sampling the completions of the global KL, so the last optimizer step wrote "
                f"non-finite values into the weights. {self.hints}"
            )
