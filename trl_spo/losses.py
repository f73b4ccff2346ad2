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

"""The math of Soft Preference Optimization (SPO) as pure functions.

Paper: "Soft Preference Optimization: Aligning Language Models to Expert Distributions", sections 3-5 and
Appendix A. Equation numbers in this module are the paper's own.

Every function takes sequence log-probabilities (`logp = sum of the completion's token log-probs`) and returns an
unreduced per-example tensor: no trainer state, no hidden normalisation, no reduction over the batch. The caller
averages. The preference losses of `PREFERENCE_LOSSES` share one signature, `(logps (B, n), winner_index (B,), alpha,
weights, response_mask)`, whatever the data: pairs are n = 2 (computed with Eq. 8's own form, which Eq. 14 reduces to),
best-of-n rows name their winner, and rankings are in preference order (winner 0). Conventions shared by all functions:

- Precision: inputs are upcast to float32 (float64 stays float64) and the result is returned in that dtype, so a
  bf16 forward gets an fp32 loss while the gradient still flows back to the bf16 input as bf16.
- Stability: everything stays in log space. Losses are computed from log-prob *differences* to the winner
  (`logp_j - logp_w`), never from `alpha * logp` on its own, so log-probs of -5000 lose no precision and no
  `exp` of a large number is ever taken.
- Sample weights `mu` (Eq. 12) are stop-gradient: the paper forbids gradient propagation through mu (section 4),
  so the losses detach any `weights` they are given and the weight functions run under `torch.no_grad()`.
- alpha = 0 (Eq. 9, 11) is the limit of the *gradient*, not of the value (Appendix A); see `spo_pairwise_loss`.
- No checks inside: like Liger-Kernel's chunked losses, these functions trust their inputs, so a training step pays
  for the math only (no shape checks, no `bool(tensor)` that would make the host wait for the device). Inputs are
  checked once, where they enter: `SPOConfig.__post_init__` (alpha, gamma, the rank decay), dataset preparation and
  `DataCollatorForNaryPreference` (rankings, winners, numbers of responses). A direct caller keeps to the shapes in
  each docstring.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F


__all__ = [
    "PREFERENCE_LOSSES",
    "dpo_plackett_luce_loss",
    "dpo_softmax_loss",
    "grid_sample_weights",
    "spo_batch_mean",
    "spo_best_of_n_loss",
    "spo_pairwise_grid_loss",
    "spo_pairwise_loss",
    "spo_ranking_loss",
    "spo_ranking_sample_scores",
    "spo_ranking_sample_weights",
    "spo_sample_scores",
    "spo_sample_weights",
]


# ---------------------------------------------------------------------------------------------------------------------
# Dtype and default helpers
# ---------------------------------------------------------------------------------------------------------------------


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    # Upcast (bf16/fp16 -> fp32) but never downcast fp64: references and tabular checks run in float64.
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _response_mask(response_mask: torch.Tensor | None, logps: torch.Tensor) -> torch.Tensor:
    if response_mask is None:
        return torch.ones(logps.shape, dtype=torch.bool, device=logps.device)
    return response_mask.bool()


def _weights(
    weights: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    if weights is None:
        return torch.ones(shape, dtype=dtype, device=device)
    # Section 4: "gradient propagation through mu is not permitted", whatever the caller built mu from.
    return weights.detach().to(dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Shared core: the softmax-choice term of Eq. (14), also every rank term of Eq. (15)
# ---------------------------------------------------------------------------------------------------------------------


def _choice_loss(logps: torch.Tensor, winner_logps: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """`-(1/alpha) * log(pi_w^alpha / sum_{j in mask} pi_j^alpha)` over the last dim, or its alpha = 0 limit.

    `logps` (..., n) must already be finite at masked positions; `mask` (..., n) must include the winner's slot.
    Returns (...,).
    """
    if alpha == 0:
        # alpha -> 0 limit of the gradient (App. A generalised): d/dlogp_j -> softmax(0)_j - e_w = 1/n - e_w, which is
        # the gradient of -(logp_w - mean_j logp_j). Written as a mean of differences so n = 2 is bit-identical to
        # Eq. (9)'s -(a - b)/2: the sum is 0 + (a - b) and the division by 2 is exact.
        gap_sum = torch.where(mask, winner_logps.unsqueeze(-1) - logps, 0.0).sum(-1)
        return -(gap_sum / mask.sum(-1))
    # Eq. (14) in ratio form, log(sum_j (pi_j / pi_w)^alpha): differences first, so log-probs of -5000 cost no
    # precision, and the winner's own term is exactly exp(0) = 1.
    scaled = alpha * torch.where(mask, logps - winner_logps.unsqueeze(-1), 0.0)
    # Stable logsumexp in log1p form: `top` (>= 0, the winner's 0 is a candidate) plus log1p of the remaining terms,
    # each <= 1. Unlike torch.logsumexp's log(1 + tiny), log1p keeps tails below fp32 eps, so n = 2 reproduces the
    # softplus of Eq. (8) to the last bits.
    # argmax + gather rather than max(dim): same gradient routing (all of it to one entry, even at ties), and
    # torch.max(dim) with indices is pathologically slow on small CPU tensors when torch runs several threads.
    top_index = scaled.masked_fill(~mask, float("-inf")).argmax(dim=-1, keepdim=True)
    top = scaled.gather(-1, top_index)
    positions = torch.arange(scaled.shape[-1], device=scaled.device)
    rest = mask & (positions != top_index)
    rest_sum = torch.where(rest, torch.exp(scaled - top), 0.0).sum(-1)
    return (top.squeeze(-1) + torch.log1p(rest_sum)) / alpha


def _suffix_masks(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Suffix membership `(B, n-1, n)`: [b, k, j] = mask[b, j] and j >= k; and term validity `(B, n-1)`: >= 2 valid."""
    n = mask.shape[-1]
    positions = torch.arange(n, device=mask.device)
    in_suffix = positions.unsqueeze(0) >= positions[: n - 1].unsqueeze(1)  # (n-1, n)
    suffix = mask.unsqueeze(1) & in_suffix.unsqueeze(0)
    return suffix, suffix.sum(-1) >= 2


# ---------------------------------------------------------------------------------------------------------------------
# Preference losses (Eq. 8-11, 14, 15)
# ---------------------------------------------------------------------------------------------------------------------


def spo_pairwise_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    alpha: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair SPO preference loss for pairwise data `(x; y_w, y_l)`.

    Paper: Soft Preference Optimization, sections 3-4, Eq. (8) and (10); alpha = 0 is Eq. (9) and (11).

    Formula:
        alpha > 0:  loss = mu * (1/alpha) * softplus(alpha * (b - a))
                         = -(mu/alpha) * log( pi(y_w)^alpha / (pi(y_w)^alpha + pi(y_l)^alpha) )
        alpha = 0:  loss = -(mu/2) * (a - b)

        d loss / d a = -mu * sigmoid(alpha * (b - a)),   d loss / d b = +mu * sigmoid(alpha * (b - a))

    Where:
        a = log pi_theta(y_w | x): sequence log-prob of the chosen (winning) completion.
        b = log pi_theta(y_l | x): sequence log-prob of the rejected (losing) completion.
        alpha >= 0: softness. The tabular minimiser is Softmax(r / alpha) (Theorem 1); alpha = 1 is the plain
            cross-entropy of Eq. (7), alpha -> 0 tends to argmax.
        mu > 0: symmetric sample weight (Eq. 12), a stop-gradient constant; 1 for SPO-basic.

    alpha = 0 is defined through the gradient (Appendix A): as alpha -> 0 the gradient above tends to
    -(mu/2) * d(a - b), which is the gradient of Eq. (9). The *value* of Eq. (8) diverges as log(2)/alpha + (b - a)/2 +
    O(alpha); Eq. (9) drops the parameter-free log(2)/alpha constant, so values at alpha = 0 and at small alpha > 0 are
    not comparable, their gradients are.

    Args:
        chosen_logps (`torch.Tensor`): a, shape (B,).
        rejected_logps (`torch.Tensor`): b, shape (B,).
        alpha (`float`): softness, finite and >= 0.
        weights (`torch.Tensor` or `None`): mu, shape (B,). Detached here. `None` means mu = 1.

    Returns:
        `torch.Tensor`: unreduced loss per pair, shape (B,), float32 (float64 for float64 inputs).
    """
    dtype = _compute_dtype(chosen_logps)
    mu = _weights(weights, tuple(chosen_logps.shape), dtype, chosen_logps.device)
    chosen = chosen_logps.to(dtype)
    rejected = rejected_logps.to(dtype)
    if alpha == 0:
        # Eq. (9)/(11): its gradient is the alpha -> 0 limit of Eq. (8)'s (App. A); sigmoid(0) = 1/2.
        return -mu * ((chosen - rejected) / 2)
    # Eq. (8)/(10): -(1/alpha) log sigmoid(alpha (a - b)) = softplus(alpha (b - a)) / alpha. The difference is taken
    # before scaling (no cancellation between two large alpha*logp), and softplus never exponentiates a large number.
    return mu * F.softplus(alpha * (rejected - chosen)) / alpha


def spo_best_of_n_loss(
    logps: torch.Tensor,
    winner_index: torch.Tensor,
    alpha: float,
    weights: torch.Tensor | None = None,
    response_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row SPO preference loss for best-of-n data `(x; y_1..y_n; i*)`.

    Paper: Soft Preference Optimization, section 5, Eq. (14) (alpha = 0: the gradient limit, as Eq. (9) for pairs).

    Formula:
        alpha > 0:  loss = -mu * (1/alpha) * [ alpha * logp_{i*} - logsumexp_j(alpha * logp_j) ]
                         = -(mu/alpha) * log( pi(y_{i*})^alpha / sum_j pi(y_j)^alpha )
        alpha = 0:  loss = -mu * ( logp_{i*} - mean_j logp_j )

        d loss / d logp_j = -mu * ( [j = i*] - softmax(alpha * logp)_j )

    Where:
        logp_j = log pi_theta(y_j | x): sequence log-prob of response j; j runs over the row's valid responses.
        i*: index of the response the expert labelled best.
        alpha >= 0: softness; tabular fixed point Softmax(r / alpha) under an n-ary BT model (Theorem 3).
        mu > 0: symmetric sample weight (Eq. 12), a stop-gradient constant; 1 for SPO-basic.

    alpha = 0: as alpha -> 0, softmax(alpha * logp) -> uniform over the n_valid responses, so the gradient tends to
    -mu * (e_{i*} - 1/n_valid), the gradient of the alpha = 0 formula above. Like Eq. (9) it drops the diverging,
    parameter-free log(n_valid)/alpha constant of the value. For n = 2 it is exactly Eq. (9): -(mu/2) * (a - b).

    Padding: with `response_mask`, a row with n_valid valid responses gives the same loss and gradient as that row
    alone, unpadded; padded slots may hold any value (even NaN) and get zero gradient. A row with a single valid
    response carries no preference and gives 0.

    Args:
        logps (`torch.Tensor`): logp_j, shape (B, n), n >= 2.
        winner_index (`torch.Tensor`): i*, integer tensor of shape (B,), each in [0, n) and a valid response.
        alpha (`float`): softness, finite and >= 0.
        weights (`torch.Tensor` or `None`): mu, shape (B,). Detached here. `None` means mu = 1.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n); False marks padded responses. `None`: all valid.

    Returns:
        `torch.Tensor`: unreduced loss per row, shape (B,), float32 (float64 for float64 inputs).
    """
    dtype = _compute_dtype(logps)
    winner_index = winner_index.long()
    mask = _response_mask(response_mask, logps)
    mu = _weights(weights, (logps.size(0),), dtype, logps.device)
    # Padded slots are replaced before any arithmetic so that garbage there cannot reach the value or the gradient.
    safe = torch.where(mask, logps.to(dtype), 0.0)
    winner = safe.gather(-1, winner_index.unsqueeze(-1)).squeeze(-1)
    return mu * _choice_loss(safe, winner, mask, alpha)


def spo_ranking_loss(
    logps: torch.Tensor,
    winner_index: torch.Tensor | None,
    alpha: float,
    weights: torch.Tensor | None = None,
    response_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row SPO preference loss for ranked data `(x; y_1..y_n; tau)`, Plackett-Luce style.

    Paper: Soft Preference Optimization, section 5, Eq. (15) (alpha = 0: the gradient limit, as Eq. (9) for pairs).

    Formula:
        alpha > 0:  loss = -(1/alpha) * sum_{k=1}^{n-1} mu_k * [ alpha * logp_k - logsumexp_{j>=k}(alpha * logp_j) ]
        alpha = 0:  loss = -sum_{k=1}^{n-1} mu_k * ( logp_k - mean_{j>=k} logp_j )

    Where:
        logp_k = log pi_theta(y_tau(k) | x): responses already ordered best (k = 1) to worst (k = n).
        k: rank term; term k is a best-of-(n-k+1) choice of y_k among the suffix y_k..y_n (Appendix D).
        alpha >= 0: softness; tabular fixed point Softmax(r / alpha) under a Plackett-Luce model (Theorem 4).
        mu_k > 0: symmetric weight of the suffix y_k..y_n (Eq. 12 on that suffix, optionally eta^k mu_k; see
            `spo_ranking_sample_weights`), a stop-gradient constant; 1 for SPO-basic.

    Padding: valid responses must form a prefix of each row (padding at the end). Terms whose suffix holds fewer
    than 2 valid responses contribute 0, so a row with n_valid responses gives the same loss as that row alone.

    Implementation: every rank term is computed as the best-of-n term of Eq. (14) on its suffix, batched as a
    (B, n-1, n) tensor of log-prob differences to the term's winner. This costs O(n^2) instead of a
    `logcumsumexp` suffix sum's O(n), negligible for ranking data, and keeps every term in difference form: a suffix
    logsumexp of raw `alpha * logp` loses ~|alpha * logp| * eps (about 5e-4 at logp = -5000, alpha = 1) to
    cancellation, and its log(1 + tiny) drops tails that log1p keeps.

    Args:
        logps (`torch.Tensor`): logp_k in preference order, shape (B, n), n >= 2.
        winner_index (`torch.Tensor` or `None`): shape (B,), all 0: in preference order the best response is first.
            Taken for the signature shared with the other preference losses; `None` means 0.
        alpha (`float`): softness, finite and >= 0.
        weights (`torch.Tensor` or `None`): mu_k, shape (B, n-1), one per rank term. Detached here. `None`: ones.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n), a valid prefix per row. `None`: all valid.

    Returns:
        `torch.Tensor`: unreduced loss per row, shape (B,), float32 (float64 for float64 inputs).
    """
    dtype = _compute_dtype(logps)
    batch, n = logps.shape
    mask = _response_mask(response_mask, logps)
    mu = _weights(weights, (batch, n - 1), dtype, logps.device)
    safe = torch.where(mask, logps.to(dtype), 0.0)
    suffix, term_valid = _suffix_masks(mask)
    # Term k's winner is y_k; including its slot even when padded keeps the (then discarded) term finite, so the
    # where() below cannot turn a NaN from a dead branch into a NaN gradient.
    ranks = torch.arange(n - 1, device=logps.device)
    winner_slot = torch.zeros_like(suffix)
    winner_slot[:, ranks, ranks] = True
    terms = _choice_loss(safe.unsqueeze(1).expand(-1, n - 1, -1), safe[:, :-1], suffix | winner_slot, alpha)
    # Eq. (15): sum over rank terms; a term with < 2 valid responses in its suffix is no comparison at all. Both
    # factors are masked: a NaN weight on a dead term would otherwise reach the gradient as 0 * NaN.
    return (torch.where(term_valid, mu, 0.0) * torch.where(term_valid, terms, 0.0)).sum(-1)


# ---------------------------------------------------------------------------------------------------------------------
# Sample weights mu (Eq. 12)
# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def spo_sample_scores(
    logps: torch.Tensor,
    gamma: float,
    response_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Score `s` of each row's response set, the quantity whose batch mean centres mu in Eq. (12).

    Paper: Soft Preference Optimization, section 4, Eq. (12) (the argument of the sigmoid).

    Formula:
        s = (pi(y_1) + ... + pi(y_n))^gamma = exp(gamma * logsumexp_j(logp_j))

    Where:
        logp_j = log pi_theta(y_j | x): sequence log-prob of response j of the row (valid responses only).
        gamma >= 0: dampens the effect of very small probabilities (the paper uses 0.01); gamma = 0 gives s = 1.

    Computed without gradient (mu is a stop-gradient constant, section 4). A trainer that averages s over more rows
    than it holds (e.g. the micro-batch of every process) takes `spo_batch_mean` of these scores across processes and
    passes it to `spo_sample_weights(..., batch_mean=...)`. For pairs use
    `logps = torch.stack([chosen_logps, rejected_logps], -1)`.

    Args:
        logps (`torch.Tensor`): logp_j, shape (B, n), n >= 1.
        gamma (`float`): exponent, finite and >= 0.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n); False marks padded responses. `None`: all valid.

    Returns:
        `torch.Tensor`: s per row, shape (B,), detached, float32 (float64 for float64 inputs).
    """
    dtype = _compute_dtype(logps)
    mask = _response_mask(response_mask, logps)
    if gamma == 0:
        # Eq. (12) with gamma = 0: mu reduces to uniform weighting; 0 * logsumexp would be NaN for an empty set.
        return torch.ones(logps.shape[0], dtype=dtype, device=logps.device)
    # Log space: pi(y) of a long completion underflows, its log-prob does not.
    log_total = logps.detach().to(dtype).masked_fill(~mask, float("-inf")).logsumexp(-1)
    return torch.exp(gamma * log_total)


@torch.no_grad()
def spo_batch_mean(
    scores: torch.Tensor, valid: torch.Tensor | None = None, sum_across_processes: Callable | None = None
) -> torch.Tensor:
    """E_batch[s] of Eq. (12): the mean of the scores over the rows of the batch, per column, counting valid entries.

    The one place the batch mean of mu is taken, locally or across the processes of a distributed run.

    Args:
        scores (`torch.Tensor`): s, shape (B,) for one score per row, or (B, T) for one per rank term.
        valid (`torch.Tensor` or `None`): bool, like `scores`; which entries exist (a rank term needs two responses in
            its suffix). `None`: all.
        sum_across_processes (`Callable` or `None`): sums a `(2, T)` tensor of per-column totals and counts over the
            processes (T may differ between them: pad with zeros). `None`: this process's rows only.

    Returns:
        `torch.Tensor`: the mean, shape () or (T,); a column with no valid entry gets 0.
    """
    column = scores if scores.ndim == 2 else scores.unsqueeze(-1)
    valid = torch.ones_like(column, dtype=torch.bool) if valid is None else valid.reshape(column.shape)
    totals = torch.stack([torch.where(valid, column, 0.0).sum(0), valid.sum(0).to(column.dtype)])
    if sum_across_processes is not None:
        totals = sum_across_processes(totals)[:, : column.shape[-1]]
    mean = totals[0] / totals[1].clamp(min=1)
    return mean if scores.ndim == 2 else mean.squeeze(-1)


@torch.no_grad()
def spo_sample_weights(
    logps: torch.Tensor,
    gamma: float,
    batch_mean: torch.Tensor | float | None = None,
    response_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric positive sample weight mu of each row, for Eq. (10) and (14).

    Paper: Soft Preference Optimization, section 4, Eq. (12).

    Formula:
        mu = 2 * sigmoid( s - E_batch[s] ),   s = exp(gamma * logsumexp_j(logp_j))

    Where:
        s: the row's score (`spo_sample_scores`), symmetric in the row's responses.
        E_batch[s]: mean of s over the batch, `batch_mean` if given (the trainer's: `spo_batch_mean` over the
            micro-batch gathered across processes), else the mean over these B rows.
        gamma >= 0: exponent of Eq. (12); gamma = 0 gives mu = 1 exactly (SPO-basic), whatever `batch_mean` is.

    mu is symmetric (any permutation of a row's responses gives the same mu), lies in (0, 2), and carries no
    gradient: it only changes the optimisation dynamics, not the fixed point (Theorem 2).

    Args:
        logps (`torch.Tensor`): logp_j, shape (B, n), n >= 1; for pairs stack chosen and rejected on the last dim.
        gamma (`float`): exponent, finite and >= 0.
        batch_mean (`torch.Tensor`, `float` or `None`): E_batch[s], one element. `None`: mean of s over these rows.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n); False marks padded responses. `None`: all valid.

    Returns:
        `torch.Tensor`: mu per row, shape (B,), detached, float32 (float64 for float64 inputs).
    """
    scores = spo_sample_scores(logps, gamma, response_mask)
    if float(gamma) == 0:
        return scores  # exactly ones (Eq. 12 with gamma = 0 is uniform weighting)
    if batch_mean is None:
        mean = spo_batch_mean(scores)
    else:
        mean = torch.as_tensor(batch_mean, device=scores.device).detach().to(scores.dtype).reshape(())
    return 2 * torch.sigmoid(scores - mean)


@torch.no_grad()
def spo_ranking_sample_scores(
    logps: torch.Tensor, gamma: float, response_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Scores s_k of the suffixes that the rank terms of Eq. (15) compare, Eq. (12) on each suffix.

    Paper: Soft Preference Optimization, section 5, Eq. (12) applied to the suffix y_k..y_n of Eq. (15).

    Formula:
        s_k = exp(gamma * logsumexp_{j>=k}(logp_j)),   k = 1, ..., n-1

    Where:
        logp_j: sequence log-probs in preference order, best first.
        gamma >= 0: exponent of Eq. (12).

    The trainer takes their `spo_batch_mean` (per term, across processes) and passes it to
    `spo_ranking_sample_weights`.

    Args:
        logps (`torch.Tensor`): logp in preference order, shape (B, n), n >= 2.
        gamma (`float`): exponent, finite and >= 0.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n), a valid prefix per row. `None`: all valid.

    Returns:
        `torch.Tensor`: s_k, shape (B, n-1), detached; 0 for terms whose suffix has fewer than 2 valid responses.
    """
    dtype = _compute_dtype(logps)
    mask = _response_mask(response_mask, logps)
    suffix, term_valid = _suffix_masks(mask)
    log_totals = logps.detach().to(dtype).unsqueeze(1).masked_fill(~suffix, float("-inf")).logsumexp(-1)
    return torch.where(term_valid, torch.exp(gamma * log_totals), 0.0)


@torch.no_grad()
def spo_ranking_sample_weights(
    logps: torch.Tensor,
    gamma: float,
    decay: float = 1.0,
    response_mask: torch.Tensor | None = None,
    batch_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-rank-term weights mu_k for the ranking loss, Eq. (12) on each suffix, optionally decayed as eta^k mu_k.

    Paper: Soft Preference Optimization, section 5, Eq. (15) with mu_k from Eq. (12); decay eta^k from Appendix E.3.

    Formula:
        mu_k = eta^k * 2 * sigmoid( s_k - E_batch[s_k] ),   s_k = exp(gamma * logsumexp_{j>=k}(logp_j)),
        k = 1, ..., n-1

    Where:
        logp_j: sequence log-probs in preference order, best first.
        s_k: score of the suffix y_k..y_n that rank term k compares (symmetric in that suffix).
        E_batch[s_k]: per k, the mean of s_k over the rows whose term k is valid (its suffix has >= 2 valid
            responses), or `batch_mean[k-1]` if given.
        gamma >= 0: exponent of Eq. (12); gamma = 0 gives mu_k = eta^k.
        eta = `decay` > 0: the paper's optional rank decay ("decayed weight functions eta^k mu_k for eta in {1, 0.5},
            see (15)", App. E.3). The exponent base follows Eq. (15)'s index, k = 1 for the top term, so the top term
            is scaled by eta too; that common factor only rescales the loss.

    Terms whose suffix holds fewer than 2 valid responses get weight 0 (they contribute 0 to `spo_ranking_loss`).

    Args:
        logps (`torch.Tensor`): logp in preference order, shape (B, n), n >= 2.
        gamma (`float`): exponent, finite and >= 0.
        decay (`float`): eta, finite and > 0; 1 disables the decay.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n), a valid prefix per row. `None`: all valid.
        batch_mean (`torch.Tensor` or `None`): E_batch[s_k] per term, shape (n-1,), e.g. gathered across ranks.
            `None`: the per-term mean over these B rows.

    Returns:
        `torch.Tensor`: mu_k, shape (B, n-1), detached, float32 (float64 for float64 inputs).
    """
    dtype = _compute_dtype(logps)
    n = logps.size(-1)
    mask = _response_mask(response_mask, logps)
    suffix, term_valid = _suffix_masks(mask)
    if gamma == 0:
        mu = torch.ones(term_valid.shape, dtype=dtype, device=logps.device)
    else:
        scores = spo_ranking_sample_scores(logps, gamma, response_mask=mask)
        if batch_mean is None:
            # Eq. (12)'s batch average, per rank term, over the rows where that term exists.
            mean = spo_batch_mean(scores, term_valid)
        else:
            mean = batch_mean.detach().to(dtype)
        mu = 2 * torch.sigmoid(scores - mean)
    # Eq. (15) indexes rank terms k = 1..n-1; App. E.3 decays them as eta^k mu_k.
    eta_k = decay ** torch.arange(1, n, device=logps.device, dtype=dtype)
    return torch.where(term_valid, mu * eta_k, 0.0)


@torch.no_grad()
def grid_sample_weights(
    logps: torch.Tensor,
    response_mask: torch.Tensor,
    preference_format: str,
    gamma: float,
    decay: float = 1.0,
    sum_across_processes: Callable | None = None,
) -> torch.Tensor:
    """mu of Eq. (12) for a response grid of any format, centred on its batch mean (across processes if given).

    Pairs and best-of-n rows get one weight per row (`spo_sample_weights`); ranked rows one per rank term
    (`spo_ranking_sample_weights`, decayed as eta^k mu_k).

    Args:
        logps (`torch.Tensor`): shape (B, n), in the grid's labelled order.
        response_mask (`torch.Tensor`): bool, shape (B, n); for rankings a valid prefix per row.
        preference_format (`str`): `"pairwise"`, `"best_of_n"` or `"ranking"`.
        gamma (`float`): exponent of Eq. (12), > 0 (at 0, mu = 1 and there is nothing to compute).
        decay (`float`): eta, for rankings.
        sum_across_processes (`Callable` or `None`): as in `spo_batch_mean`.

    Returns:
        `torch.Tensor`: mu, shape (B,), or (B, n-1) for rankings; detached.
    """
    if preference_format != "ranking":
        scores = spo_sample_scores(logps, gamma, response_mask=response_mask)
        batch_mean = spo_batch_mean(scores, sum_across_processes=sum_across_processes)
        return spo_sample_weights(logps, gamma, batch_mean=batch_mean, response_mask=response_mask)
    scores = spo_ranking_sample_scores(logps, gamma, response_mask=response_mask)
    valid = response_mask[:, 1:]  # rank term k exists iff response k + 1 does (valid responses form a prefix)
    batch_mean = spo_batch_mean(scores, valid, sum_across_processes=sum_across_processes)
    return spo_ranking_sample_weights(logps, gamma, decay=decay, response_mask=response_mask, batch_mean=batch_mean)


# ---------------------------------------------------------------------------------------------------------------------
# Comparison baselines of the paper's Tables 4-5 (DPO family, reference log-ratios)
# ---------------------------------------------------------------------------------------------------------------------


def dpo_plackett_luce_loss(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    beta: float,
    response_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plackett-Luce DPO on ranked data: a comparison baseline, not SPO.

    Paper: Rafailov et al. 2023, Direct Preference Optimization, Appendix A.3 (Eq. 18); compared against SPO in
    Soft Preference Optimization, Table 5.

    Formula:
        loss = -sum_{k=1}^{n-1} [ beta * h_k - logsumexp_{j>=k}(beta * h_j) ],   h_j = logp_j - logp_ref_j

    Where:
        logp_j, logp_ref_j: sequence log-probs of response j under the policy and the reference, best first.
        beta > 0: DPO's inverse temperature.

    This is Eq. (15) with mu = 1 applied to the log-ratios h at softness beta, times beta, which is how it is computed.
    S-DPO applied to rankings as in the paper (App. E.3: each rank is the positive against the ranks below it) is the
    same loss.

    Args:
        policy_logps (`torch.Tensor`): shape (B, n), preference order.
        reference_logps (`torch.Tensor`): shape (B, n), same order; no gradient is taken through it.
        beta (`float`): > 0.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n), a valid prefix per row.

    Returns:
        `torch.Tensor`: unreduced loss per row, shape (B,).
    """
    log_ratios = policy_logps - reference_logps.detach()
    return beta * spo_ranking_loss(log_ratios, None, beta, response_mask=response_mask)


def dpo_softmax_loss(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    winner_index: torch.Tensor,
    beta: float,
    response_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """S-DPO (softmax DPO) on best-of-n data: a comparison baseline, not SPO.

    Paper: Chen et al. 2024, On Softmax Direct Preference Optimization for Recommendation (arXiv:2406.09215), Eq. (12);
    compared against SPO in Soft Preference Optimization, Table 4.

    Formula:
        loss = -log sigmoid( -log sum_{j != w} exp(beta * (h_j - h_w)) )
             = -[ beta * h_w - logsumexp_j(beta * h_j) ],   h_j = logp_j - logp_ref_j

    Where:
        w: index of the best response; the others are its negatives.
        beta > 0: DPO's inverse temperature.

    Computed as beta times Eq. (14) with mu = 1 on the log-ratios h at softness beta.

    Args:
        policy_logps (`torch.Tensor`): shape (B, n).
        reference_logps (`torch.Tensor`): shape (B, n); no gradient is taken through it.
        winner_index (`torch.Tensor`): shape (B,).
        beta (`float`): > 0.
        response_mask (`torch.Tensor` or `None`): bool, shape (B, n).

    Returns:
        `torch.Tensor`: unreduced loss per row, shape (B,).
    """
    log_ratios = policy_logps - reference_logps.detach()
    return beta * spo_best_of_n_loss(log_ratios, winner_index, beta, response_mask=response_mask)


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------


def spo_pairwise_grid_loss(
    logps: torch.Tensor,
    winner_index: torch.Tensor,
    alpha: float,
    weights: torch.Tensor | None = None,
    response_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. (8)/(10) in the signature the preference losses share: a pair is a row of n = 2.

    Eq. (14) at n = 2 is Eq. (8) (tested); this computes pairs with Eq. (8)'s own softplus form, so training on pairs
    is bit-for-bit `spo_pairwise_loss`.

    Args:
        logps (`torch.Tensor`): shape (B, 2), the pair's two sequence log-probs.
        winner_index (`torch.Tensor`): shape (B,), the column of the chosen response (0 or 1).
        alpha, weights: as in `spo_pairwise_loss`.
        response_mask (`torch.Tensor` or `None`): shape (B, 2); both responses of a pair must exist.

    Returns:
        `torch.Tensor`: unreduced loss per pair, shape (B,).
    """
    rows = torch.arange(logps.size(0), device=logps.device)
    winner_index = winner_index.long()
    return spo_pairwise_loss(logps[rows, winner_index], logps[rows, 1 - winner_index], alpha, weights)


# SPO's preference loss for each data format, all with the signature `(logps, winner_index, alpha, weights,
# response_mask)`. Pairs are rows of n = 2, computed with Eq. (8)'s own form.
PREFERENCE_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "pairwise": spo_pairwise_grid_loss,
    "best_of_n": spo_best_of_n_loss,
    "ranking": spo_ranking_loss,
}
