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
What SPOTrainer logs for a micro-batch, from the terms of its loss.

Every statistic of the preference batch is first reduced per row (one row = one prompt and its responses), then
gathered across processes: in evaluation the trainer gathers with `gather_for_metrics`, which drops the rows that the
distributed sampler repeated to even out the last batch, so an uneven eval set is averaged over each row once.
(Gathering per-process sums instead, as `DPOTrainer` does for its token means, would either count the repeated rows or,
with `gather_for_metrics`, drop whole processes' sums.) Names follow `DPOTrainer` where the meaning is the same.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .kl import TokenKL
from .losses import kendall_tau
from .responses import sum_per_row


@dataclass
class SPOTerms:
    """
    What one SPO forward produces for a micro-batch of B rows with up to n responses each (n = 2 for pairs), and K
    sequences the KL term was measured on (online samples, or the batch's own completions for the dataset KL).

    Attributes:
        loss (`torch.Tensor`, scalar): `preference_loss + beta * kl_term` (+ the MoE auxiliary loss, if any).
        row_losses (`torch.Tensor`, shape `(B,)`): Eq. 10, 14 or 15 per row (or a baseline's), detached.
        kl_term (`torch.Tensor`, scalar): the KL term of this micro-batch, detached (see `SPOTrainer._kl_term`).
        response_logps (`torch.Tensor`, shape `(B, n)`): sequence log-probs, detached, in labelled order: `[chosen,
            rejected]` for pairs, best to worst for rankings, dataset order for best-of-n.
        response_mask (`torch.Tensor`, shape `(B, n)`): which responses exist (rows may have fewer than n).
        winner_index (`torch.Tensor`, shape `(B,)`): column of the labelled best response in `response_logps`.
        weights (`torch.Tensor`, *optional*): μ of Eq. 12, `(B,)` (or `(B, n - 1)` per rank term), when `gamma > 0`.
        per_sample_kl (`torch.Tensor`, shape `(K,)`, *optional*): Σ_t KL on each measured sequence, detached.
        token_kl (`TokenKL`, *optional*): per-token KL and entropy on those sequences.
        outputs: the fused LM head's outputs on the preference sequences (per-token entropy, mean logits, top-1).
    """

    loss: torch.Tensor
    row_losses: torch.Tensor
    kl_term: torch.Tensor
    response_logps: torch.Tensor
    response_mask: torch.Tensor
    winner_index: torch.Tensor
    weights: torch.Tensor | None
    per_sample_kl: torch.Tensor | None
    token_kl: TokenKL | None
    outputs: object


def _ratio(totals: torch.Tensor, counts: torch.Tensor) -> float:
    count = counts.sum()
    return (totals.sum() / count).item() if count > 0 else 0.0


def preference_metrics(
    terms: SPOTerms,
    batch: dict[str, torch.Tensor],
    preference_format: str,
    alpha: float | None,
    gather: Callable[[torch.Tensor], torch.Tensor],
    pad_across_processes: Callable[..., torch.Tensor],
) -> dict[str, float]:
    """
    The metrics of the preference term, gathered across processes.

    Args:
        terms (`SPOTerms`): the micro-batch's terms.
        batch (`dict`): the collated micro-batch.
        preference_format (`str`): `"pairwise"`, `"best_of_n"` or `"ranking"`.
        alpha (`float` or `None`): SPO's softness, for the implicit rewards `alpha * log pi` and
            `loss/preference_normalized`; `None` for a loss that has no alpha (the DPO-family baselines).
        gather, pad_across_processes: the accelerator's.
    """
    metrics: dict[str, float] = {}
    preference_loss = gather(terms.row_losses).mean().item()
    metrics["loss/preference"] = preference_loss
    if alpha:
        # Eq. 8 is DPO's log-loss divided by alpha (log(2) / alpha at a 50/50 pair); this is it on DPO's scale.
        metrics["loss/preference_normalized"] = alpha * preference_loss

    outputs = terms.outputs
    shift_mask = batch["completion_mask"][:, 1:].float()
    seq_len = shift_mask.size(1)

    def per_row(values: torch.Tensor, mask: torch.Tensor = shift_mask) -> tuple[torch.Tensor, torch.Tensor]:
        totals = (values[:, -seq_len:].detach().float() * mask).sum(-1)
        return gather(sum_per_row(totals, batch, preference_format)), gather(
            sum_per_row(mask.sum(-1), batch, preference_format)
        )

    metrics["entropy"] = _ratio(*per_row(outputs.entropy))
    if preference_format == "pairwise":
        chosen = torch.zeros_like(shift_mask)
        chosen[: len(chosen) // 2] = 1  # the batch is [chosen; rejected]
        rejected = 1 - chosen
        metrics["logits/chosen"] = _ratio(*per_row(outputs.mean_logits, shift_mask * chosen))
        metrics["logits/rejected"] = _ratio(*per_row(outputs.mean_logits, shift_mask * rejected))
        metrics["mean_token_accuracy"] = _ratio(*per_row(outputs.is_top1.float(), shift_mask * chosen))
        metrics.update(_pairwise_logps_metrics(gather(terms.response_logps), alpha))
    else:
        metrics["mean_token_accuracy"] = _ratio(*per_row(outputs.is_top1.float()))
        logps = gather(pad_across_processes(terms.response_logps, dim=1))
        mask = gather(pad_across_processes(terms.response_mask, dim=1))
        metrics.update(_nary_logps_metrics(logps, mask, gather(terms.winner_index), preference_format))
    if terms.weights is not None:
        weights = pad_across_processes(terms.weights, dim=terms.weights.dim() - 1)
        valid = gather(weights != 0)  # padded rank terms have weight 0; NaN stays in, as DPO logs NaN
        weights = gather(weights)[valid]
        metrics["mu/mean"], metrics["mu/min"], metrics["mu/max"] = (
            weights.mean().item(),
            weights.min().item(),
            weights.max().item(),
        )
    return metrics


def _pairwise_logps_metrics(logps: torch.Tensor, alpha: float | None) -> dict[str, float]:
    chosen_logps, rejected_logps = logps[:, 0], logps[:, 1]
    metrics = {
        "logps/chosen": chosen_logps.mean().item(),
        "logps/rejected": rejected_logps.mean().item(),
        "rewards/accuracies": (chosen_logps > rejected_logps).float().mean().item(),
    }
    if alpha is not None:
        # At the fixed point π ∝ exp(r / alpha) (Theorem 1), so alpha * log π is SPO's implicit reward.
        chosen_rewards, rejected_rewards = alpha * chosen_logps, alpha * rejected_logps
        metrics["rewards/chosen"] = chosen_rewards.mean().item()
        metrics["rewards/rejected"] = rejected_rewards.mean().item()
        metrics["rewards/margins"] = (chosen_rewards - rejected_rewards).mean().item()
    return metrics


def _nary_logps_metrics(
    logps: torch.Tensor, mask: torch.Tensor, winner: torch.Tensor, preference_format: str
) -> dict[str, float]:
    # Top-1 accuracy: the model's most likely response is the labelled best.
    predicted = logps.masked_fill(~mask, float("-inf")).argmax(dim=1)
    metrics = {"rewards/top1_accuracy": (predicted == winner).float().mean().item()}
    if preference_format == "ranking":
        for rank in range(logps.size(1)):
            if mask[:, rank].any():
                metrics[f"logps/rank_{rank + 1}"] = logps[mask[:, rank], rank].mean().item()
        metrics["rewards/kendall_tau"] = kendall_tau(logps, mask).mean().item()
    else:
        rows = torch.arange(logps.size(0), device=logps.device)
        is_best = torch.zeros_like(mask).index_put_((rows, winner), torch.tensor(True, device=mask.device))
        metrics["logps/best"] = logps[is_best].mean().item()
        metrics["logps/others"] = logps[mask & ~is_best].mean().item()
    return metrics


def kl_metrics(terms: SPOTerms, gather: Callable[[torch.Tensor], torch.Tensor], on_samples: bool) -> dict[str, float]:
    """
    `kl/global` and `samples/entropy` (policy entropy per token on its own samples) for the online samples, or
    `kl/dataset` for the dataset-KL ablation; empty when this micro-batch measured no KL.
    """
    if terms.per_sample_kl is None:
        return {}
    kl = gather(terms.per_sample_kl).mean().item()
    if not on_samples:
        return {"kl/dataset": kl}
    token_kl = terms.token_kl
    entropy = gather(token_kl.entropy.masked_fill(~token_kl.mask, 0.0).sum(-1).float())
    return {"kl/global": kl, "samples/entropy": _ratio(entropy, gather(token_kl.mask.sum(-1).float()))}
