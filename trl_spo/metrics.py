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
What SPOTrainer logs, from the terms of its loss, kept on the device until the trainer logs.

Every micro-batch contributes, per metric, a `Statistic`: a total and a count (or an extreme) as 0-d device tensors,
nothing read back. `MetricsWindow` keeps them for the logging window and reduces them when the trainer logs: in
training it gathers every process's statistics once, combines each micro-batch's across processes (totals and counts
summed, extremes taken), and averages the micro-batches' values, so that each logged value is, as in `DPOTrainer`, the
mean over the window of per-micro-batch means over the whole batch of every process. One gather and one read of the
device per log, none on the other steps.

In evaluation each batch is gathered as it comes (reading the device there costs no training time), with
`gather_for_metrics`, which drops the rows that the distributed sampler repeated to even out the last batch: every
statistic is built from per-row values, so an uneven eval set counts each row once. Names follow `DPOTrainer` where the
meaning is the same.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from accelerate.utils import gather_object

from .forward import TokenOutputs
from .kl import TokenKL
from .responses import sum_per_row


@dataclass
class SPOTerms:
    """
    What one SPO forward produces for a micro-batch of B rows with up to n responses each (n = 2 for pairs), and K
    sequences the KL term was measured on (online samples, or the batch's own completions for the dataset KL).

    Attributes:
        loss (`torch.Tensor`, scalar): `preference_loss + beta * kl_term` (+ the MoE auxiliary loss, if any).
        row_losses (`torch.Tensor`, shape `(B,)`): Eq. 10, 14 or 15 per row (or a baseline's), detached.
        kl_term (`torch.Tensor`, scalar): the KL term of this micro-batch, detached.
        response_logps (`torch.Tensor`, shape `(B, n)`): sequence log-probs, detached, in labelled order: `[chosen,
            rejected]` for pairs, best to worst for rankings, dataset order for best-of-n.
        response_mask (`torch.Tensor`, shape `(B, n)`): which responses exist (rows may have fewer than n).
        winner_index (`torch.Tensor`, shape `(B,)`): column of the labelled best response in `response_logps`.
        weights (`torch.Tensor`, *optional*): μ of Eq. 12, `(B,)` (or `(B, n - 1)` per rank term), when `gamma > 0`.
        per_sample_kl (`torch.Tensor`, shape `(K,)`, *optional*): Σ_t KL on each measured sequence, detached.
        token_kl (`TokenKL`, *optional*): per-token KL and entropy on those sequences.
        outputs (`TokenOutputs`): the fused LM head's outputs on the preference sequences, each `(N, L - 1)`.
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
    outputs: TokenOutputs


@dataclass
class Statistic:
    """
    One metric's contribution from one micro-batch, on the device.

    Attributes:
        total (`torch.Tensor`, scalar): the sum of the values, or their minimum (`reduce="min"`) or maximum.
        count (`torch.Tensor`, scalar): how many values; a micro-batch with none leaves the metric out of its window.
        reduce (`str`): `"mean"` (totals and counts add up across processes), `"min"` or `"max"`.
    """

    total: torch.Tensor
    count: torch.Tensor
    reduce: str = "mean"


def mean_of(values: torch.Tensor, valid: torch.Tensor | None = None) -> Statistic:
    """The mean of `values` (over the entries where `valid` is set), as a total and a count."""
    values = values.detach().float()
    if valid is None:
        return Statistic(values.sum(), values.new_tensor(float(values.numel())))
    return Statistic(torch.where(valid, values, 0.0).sum(), valid.sum().float())


def ratio_of(totals: torch.Tensor, counts: torch.Tensor) -> Statistic:
    """Σ totals / Σ counts, e.g. per-row sums of a token quantity over per-row token counts."""
    return Statistic(totals.detach().float().sum(), counts.detach().float().sum())


def extreme_of(values: torch.Tensor, valid: torch.Tensor, reduce: str) -> Statistic:
    """The minimum or maximum of `values` where `valid` is set (NaN propagates, as a NaN weight would in DPO's logs)."""
    empty = float("inf") if reduce == "min" else float("-inf")
    masked = torch.where(valid, values.detach().float(), empty)
    return Statistic(masked.amin() if reduce == "min" else masked.amax(), valid.sum().float(), reduce)


def _identity(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


def preference_statistics(
    terms: SPOTerms,
    batch: dict[str, torch.Tensor],
    preference_format: str,
    alpha: float | None,
    gather: Callable[[torch.Tensor], torch.Tensor] = _identity,
    pad_across_processes: Callable[..., torch.Tensor] = _identity,
) -> dict[str, Statistic]:
    """
    The statistics of the preference term of a micro-batch.

    Args:
        terms (`SPOTerms`): the micro-batch's terms.
        batch (`dict`): the collated micro-batch.
        preference_format (`str`): `"pairwise"`, `"best_of_n"` or `"ranking"`.
        alpha (`float` or `None`): SPO's softness, for the implicit rewards `alpha * log pi`, the pair weight and
            `loss/preference_normalized`; `None` for a loss that has no alpha (the DPO-family baselines).
        gather, pad_across_processes: the accelerator's, to build global statistics of an evaluation batch; the
            default (identity) leaves a training batch's statistics local until `MetricsWindow.reduce`.
    """
    statistics = {"loss/preference": mean_of(gather(terms.row_losses))}
    outputs = terms.outputs
    token_mask = batch["completion_mask"][:, 1:].float()

    def per_row(values: torch.Tensor, mask: torch.Tensor = token_mask) -> Statistic:
        totals = (values.detach().float() * mask).sum(-1)
        return ratio_of(
            gather(sum_per_row(totals, batch, preference_format)),
            gather(sum_per_row(mask.sum(-1), batch, preference_format)),
        )

    statistics["entropy"] = per_row(outputs.entropy)
    if preference_format == "pairwise":
        chosen = torch.zeros_like(token_mask)
        chosen[: len(chosen) // 2] = 1  # the batch is [chosen; rejected]
        statistics["logits/chosen"] = per_row(outputs.mean_logits, token_mask * chosen)
        statistics["logits/rejected"] = per_row(outputs.mean_logits, token_mask * (1 - chosen))
        statistics["mean_token_accuracy"] = per_row(outputs.is_top1, token_mask * chosen)
        logps = gather(terms.response_logps)
        mask = torch.ones_like(logps, dtype=torch.bool)
        winner = torch.zeros(logps.size(0), dtype=torch.long, device=logps.device)
        statistics.update(_pairwise_logps_statistics(logps, alpha))
    else:
        statistics["mean_token_accuracy"] = per_row(outputs.is_top1)
        logps = gather(pad_across_processes(terms.response_logps, dim=1))
        mask = gather(pad_across_processes(terms.response_mask, dim=1))
        winner = gather(terms.winner_index)
        statistics.update(_nary_logps_statistics(logps, mask, winner, preference_format))
    if alpha is not None:
        statistics.update(pair_weight_statistics(logps, mask, winner, alpha))
    if terms.weights is not None:
        weights = gather(pad_across_processes(terms.weights, dim=terms.weights.dim() - 1))
        valid = weights != 0  # padded rank terms have weight 0; NaN stays in, as DPO logs NaN
        statistics["mu/mean"] = mean_of(weights, valid)
        statistics["mu/min"] = extreme_of(weights, valid, "min")
        statistics["mu/max"] = extreme_of(weights, valid, "max")
    return statistics


def _pairwise_logps_statistics(logps: torch.Tensor, alpha: float | None) -> dict[str, Statistic]:
    chosen_logps, rejected_logps = logps[:, 0], logps[:, 1]
    statistics = {
        "logps/chosen": mean_of(chosen_logps),
        "logps/rejected": mean_of(rejected_logps),
        "rewards/accuracies": mean_of(chosen_logps > rejected_logps),
    }
    if alpha is not None:
        # At the fixed point π ∝ exp(r / alpha) (Theorem 1), so alpha * log π is SPO's implicit reward.
        chosen_rewards, rejected_rewards = alpha * chosen_logps, alpha * rejected_logps
        statistics["rewards/chosen"] = mean_of(chosen_rewards)
        statistics["rewards/rejected"] = mean_of(rejected_rewards)
        statistics["rewards/margins"] = mean_of(chosen_rewards - rejected_rewards)
    return statistics


def _nary_logps_statistics(
    logps: torch.Tensor, mask: torch.Tensor, winner: torch.Tensor, preference_format: str
) -> dict[str, Statistic]:
    # Top-1 accuracy: the model's most likely response is the labelled best.
    predicted = logps.masked_fill(~mask, float("-inf")).argmax(dim=1)
    statistics = {"rewards/top1_accuracy": mean_of(predicted == winner)}
    if preference_format == "ranking":
        for rank in range(logps.size(1)):
            # A rank that no row of a micro-batch has leaves that micro-batch out of the metric's window.
            statistics[f"logps/rank_{rank + 1}"] = mean_of(logps[:, rank], mask[:, rank])
        statistics["rewards/kendall_tau"] = mean_of(kendall_tau(logps, mask))
    else:
        is_best = torch.nn.functional.one_hot(winner, logps.size(1)).bool() & mask
        statistics["logps/best"] = mean_of(logps, is_best)
        statistics["logps/others"] = mean_of(logps, mask & ~is_best)
    return statistics


def pair_weight_statistics(
    logps: torch.Tensor, mask: torch.Tensor, winner: torch.Tensor, alpha: float
) -> dict[str, Statistic]:
    """
    `pair_weight/mean` and `pair_weight/saturated`: how much gradient the preference loss still gives each row.

    For a pair, Eq. 8's gradient with respect to `log pi(y_w)` is `-mu * w` with the pair weight
    `w = sigmoid(alpha * (log pi(y_l) - log pi(y_w)))` (section 3): 0.5 at a tie (and always at alpha = 0), towards 0
    once the pair is separated by many times `1 / alpha` nats, towards 1 while it is ordered the wrong way. For
    best-of-n and rankings the winner's factor in Eq. 14 (the top term of Eq. 15) is the analogous
    `w = 1 - softmax(alpha * log pi)_winner`, which equals the pair weight at n = 2. `saturated` is the share of rows
    with `w < 0.01` or `w > 0.99`: all saturated means alpha is too large for the sequence log-prob gaps of the data.

    Args:
        logps (`torch.Tensor`): `(B, n)` sequence log-probs; `mask` `(B, n)` which exist; `winner` `(B,)`.
        alpha (`float`): SPO's softness.
    """
    rows = torch.arange(logps.size(0), device=logps.device)
    winner_logps = logps[rows, winner]
    if logps.size(1) == 2:
        loser_logps = logps[rows, 1 - winner]
        weight = torch.sigmoid(alpha * (loser_logps - winner_logps).float())
    else:
        # 1 - softmax_w = 1 - exp(-logsumexp_j(alpha * (logp_j - logp_w))), from differences so that log-probs of
        # -5000 lose no precision; expm1 keeps a weight near 0 exact.
        gaps = torch.where(mask, alpha * (logps - winner_logps.unsqueeze(1)).float(), float("-inf"))
        weight = -torch.expm1(-torch.logsumexp(gaps, dim=1))
    return {
        "pair_weight/mean": mean_of(weight),
        "pair_weight/saturated": mean_of((weight < 0.01) | (weight > 0.99)),
    }


def with_normalized_loss(values: dict[str, float], alpha: float | None) -> dict[str, float]:
    """
    `values` with `loss/preference_normalized`: Eq. 8 is DPO's log-loss divided by alpha (log(2) / alpha at a 50/50
    pair), so `alpha * loss/preference` is it on DPO's scale. Taken from the logged mean (the scaling is linear), in
    Python floats. Not logged at alpha = 0 or for losses without alpha (`None`).
    """
    if alpha and "loss/preference" in values:
        values["loss/preference_normalized"] = alpha * values["loss/preference"]
    return values


def kl_statistics(terms: SPOTerms, on_samples: bool) -> dict[str, Statistic]:
    """
    `kl/global` (nats per sample) and `samples/entropy` (policy entropy per token on its own samples) for the online
    samples, or `kl/dataset` for the dataset-KL ablation; empty when this micro-batch measured no KL. Local: the KL is
    measured in training only.
    """
    if terms.per_sample_kl is None:
        return {}
    kl = mean_of(terms.per_sample_kl)
    if not on_samples:
        return {"kl/dataset": kl}
    token_kl = terms.token_kl
    entropy = torch.where(token_kl.mask, token_kl.entropy, 0.0).sum(-1)
    return {"kl/global": kl, "samples/entropy": ratio_of(entropy, token_kl.mask.sum(-1))}


@torch.no_grad()
def kendall_tau(scores: torch.Tensor, response_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Kendall rank correlation between a model's scores and the labelled order, per row.

    Formula:
        tau = (1 / #pairs) * sum_{k < j, both valid} sign(score_k - score_j)

    Where:
        score_k: the model's score (e.g. sequence log-prob) of the response labelled k-th best.

    1 when the model orders the responses exactly as the label, -1 when exactly reversed; ties count 0 (tau-a).

    Args:
        scores (`torch.Tensor`): shape (B, n), in labelled order, best first.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n). `None`: all valid.

    Returns:
        `torch.Tensor`: shape (B,), float32; 0 for rows with fewer than 2 valid responses.
    """
    n = scores.size(1)
    mask = torch.ones_like(scores, dtype=torch.bool) if response_mask is None else response_mask.bool()
    positions = torch.arange(n, device=scores.device)
    upper = positions.unsqueeze(1) < positions.unsqueeze(0)  # (n, n): k < j
    pairs = upper & mask.unsqueeze(2) & mask.unsqueeze(1)
    signs = torch.sign(scores.float().unsqueeze(2) - scores.float().unsqueeze(1))
    concordance = torch.where(pairs, signs, 0.0).sum((1, 2))
    return concordance / pairs.sum((1, 2)).clamp(min=1)


class MetricsWindow:
    """
    The statistics of the micro-batches since the last log, on the device, and their reduction when the trainer logs.

    Args:
        across_processes (`bool`): whether `reduce` combines every process's statistics (training: they are local) or
            takes them as they are (evaluation: each batch was gathered as it came).
    """

    def __init__(self, across_processes: bool):
        self.across_processes = across_processes
        self.entries: list[dict[str, Statistic]] = []

    def add(self, statistics: dict[str, Statistic]) -> None:
        self.entries.append(statistics)

    def values(self, name: str) -> list[float]:
        """This process's per-micro-batch values of one metric, read back now (for tests and debugging)."""
        found = [entry[name] for entry in self.entries if name in entry]
        return [(s.total / s.count if s.reduce == "mean" else s.total).item() for s in found]

    def reduce(self, accelerator) -> dict[str, float]:
        """
        Each metric's mean over the window of its per-micro-batch values, and the window cleared. One gather of every
        process's statistics (in training) and one read of the device.

        Args:
            accelerator: the trainer's `Accelerator` (`num_processes`, `gather`, `pad_across_processes`).
        """
        entries, self.entries = self.entries, []
        reduces = {name: statistic.reduce for entry in entries for name, statistic in entry.items()}
        gathering = self.across_processes and accelerator.num_processes > 1
        if gathering:  # processes may hold different metrics (e.g. the ranks their rows have)
            for names in gather_object([sorted(reduces.items())]):
                reduces.update(names)
        if not reduces:  # the same on every process, after the union
            return {}
        names = sorted(reduces)
        device = next(iter(entries[0].values())).total.device if entries else accelerator.device
        filler = {"mean": 0.0, "min": float("inf"), "max": float("-inf")}
        # (micro-batches, metrics, 2): total and count of each metric in each micro-batch, count 0 where absent. A
        # process without micro-batches still takes part in the gather below.
        table = torch.zeros(0, len(names), 2, device=device)
        if entries:
            table = torch.stack(
                [
                    torch.stack(
                        [
                            torch.stack([entry[name].total.float(), entry[name].count.float()])
                            if name in entry
                            else torch.tensor([filler[reduces[name]], 0.0], device=device)
                            for name in names
                        ]
                    )
                    for entry in entries
                ]
            )
        if gathering:
            table = accelerator.gather(accelerator.pad_across_processes(table, dim=0)[None])
            totals, counts = table[..., 0], table[..., 1].sum(0)
            kinds = [reduces[name] for name in names]
            is_min = torch.tensor([kind == "min" for kind in kinds], device=device)
            is_max = torch.tensor([kind == "max" for kind in kinds], device=device)
            totals = torch.where(is_min, totals.amin(0), torch.where(is_max, totals.amax(0), totals.sum(0)))
        else:
            totals, counts = table[..., 0], table[..., 1]
        is_mean = torch.tensor([reduces[name] == "mean" for name in names], device=device)
        present = counts > 0
        # Micro-batches without the metric count for nothing; a NaN of one that has it reaches the log, as in DPO's.
        per_entry = torch.where(present, torch.where(is_mean, totals / counts.clamp(min=1), totals), 0.0)
        num_present = present.sum(0)
        window = per_entry.sum(0) / num_present.clamp(min=1)
        values, found = torch.stack([window, num_present.double().to(window.dtype)]).tolist()
        return {name: value for name, value, count in zip(names, values, found, strict=True) if count > 0}


class DeviceMetrics:
    """
    What SPOTrainer logs, on the device until the trainer logs: a `MetricsWindow` per mode and the training tokens.

    Args:
        accelerator: the trainer's `Accelerator`.
        alpha (`float` or `None`): SPO's softness (`None` for a loss without it, the DPO-family baselines).
        on_samples (`bool`): whether the KL is measured on online samples (`kl/global`) or the data (`kl/dataset`).
    """

    def __init__(self, accelerator, alpha: float | None, on_samples: bool):
        self.accelerator = accelerator
        self.alpha = alpha
        self.on_samples = on_samples
        self.windows = {"train": MetricsWindow(across_processes=True), "eval": MetricsWindow(across_processes=False)}
        self.pending_tokens: torch.Tensor | None = None

    def record(self, mode: str, batch: dict[str, torch.Tensor], terms: SPOTerms, preference_format: str) -> None:
        """
        Keep a micro-batch's statistics: local and on the device in training, gathered at once in evaluation (with
        `gather_for_metrics`, which drops the rows the distributed sampler repeated to even out the last batch).
        """
        gathering = {}
        if mode == "eval":
            gathering = {
                "gather": self.accelerator.gather_for_metrics,
                "pad_across_processes": self.accelerator.pad_across_processes,
            }
        statistics = preference_statistics(terms, batch, preference_format, self.alpha, **gathering)
        statistics.update(kl_statistics(terms, on_samples=self.on_samples))
        if terms.outputs.aux_loss is not None:
            aux_loss = gathering.get("gather", _identity)(terms.outputs.aux_loss.detach()[None])
            statistics["aux_loss"] = mean_of(aux_loss)
        self.windows[mode].add(statistics)
        if mode == "train":
            tokens = batch["attention_mask"].sum()
            self.pending_tokens = tokens if self.pending_tokens is None else self.pending_tokens + tokens

    def read_tokens(self) -> int:
        """The training tokens of every process since the last read (one gather, one read of the device)."""
        if self.pending_tokens is None:
            return 0
        tokens, self.pending_tokens = self.accelerator.gather(self.pending_tokens[None]).sum().item(), None
        return tokens

    def read(self, mode: str) -> dict[str, float]:
        """The window's metrics (see `MetricsWindow.reduce`), `loss/preference_normalized` included; empty if none."""
        return with_normalized_loss(self.windows[mode].reduce(self.accelerator), self.alpha)
