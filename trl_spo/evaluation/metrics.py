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
The evaluation metrics of the paper's section 7 as pure functions: win rate, length-controlled win rate and useful
entropy; and the diversity and drift measures that go with them: distinct-n, distinct answers per prompt, a sampled
estimate of KL(pi || pi_ref), truncation rate.

Paper: "Soft Preference Optimization: Aligning Language Models to Expert Distributions", section 7 (Tables 1-3).

Conventions shared by all functions:

- A *comparison* is one model completion judged against one reference answer, twice, with the two answers in swapped
  positions. Its *score* is the model's mean outcome over the two orders (see [`comparison_score`]): 1 = the model
  wins, 0 = it loses, in between for a tie, a split decision or a probabilistic judge.
- A failed comparison (the judge gave no usable verdict in at least one order) has the score `None`. It is left out of
  every mean, counted in `num_failed`, and never read as a loss or a win.
- An undefined statistic (a mean over nothing, a standard error from one value) is `None`, never 0 or NaN, so a JSON
  summary says "undefined" rather than a number that looks measured.
"""

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch


__all__ = [
    "ClusteredMean",
    "ClusteredWinRate",
    "EntropySummary",
    "KLEstimate",
    "LengthControlledWinRate",
    "WinRate",
    "clustered_mean",
    "clustered_win_rate",
    "comparison_score",
    "distinct_n",
    "kl_estimate",
    "length_controlled_win_rate",
    "num_distinct_answers",
    "per_token_entropy",
    "reward_comparison_scores",
    "sequence_log_ratio",
    "truncation_rate",
    "useful_entropy",
    "win_rate",
]


# ---------------------------------------------------------------------------------------------------------------------
# Entropy (section 7.3)
# ---------------------------------------------------------------------------------------------------------------------


def per_token_entropy(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """
    Per-completion estimate of the mean per-token entropy of the policy, the summand of section 7.3's useful entropy.

    Paper: Soft Preference Optimization, section 7.3.

    Formula:
        H(x, y) = -(1/|y|) * sum_{t=1}^{|y|} log pi(y_t | x, y_<t)

    Where:
        x: the prompt; y: a completion sampled from pi; |y|: its number of tokens (the `True` entries of `mask`).
        log pi(y_t | x, y_<t): the log-probability, under the policy at temperature 1, of the token that was sampled.

    For y ~ pi(. | x), `-log pi(y | x) / |y|` is a single-sample Monte-Carlo estimate of the entropy per token: its
    expectation over y is the sequence entropy H(pi(. | x)), divided by |y| inside the expectation. Completions sampled
    at a temperature other than 1 (or with top-p) make it a cross-entropy, not an entropy.

    Args:
        token_logps (`torch.Tensor`): log pi(y_t | x, y_<t) of the sampled tokens, shape (B, L), right-padded.
            Values at masked-out positions are ignored (they may be anything finite or not).
        mask (`torch.Tensor`): shape (B, L), `True` (or 1) where position t holds a token of y.

    Returns:
        `torch.Tensor`: the estimate per completion in nats/token, shape (B,), float32 (float64 for float64 input).

    Raises:
        ValueError: if the shapes differ, or if a row has no token (|y| = 0: the estimate is 0/0). The message names
        the rows; the caller decides what an empty completion means (the runner records it as empty, without entropy).
    """
    if token_logps.ndim != 2 or tuple(mask.shape) != tuple(token_logps.shape):
        raise ValueError(
            f"`token_logps` and `mask` must both have shape (B, L), found {tuple(token_logps.shape)} and "
            f"{tuple(mask.shape)}."
        )
    mask = mask.bool()
    lengths = mask.sum(dim=1)
    empty = (lengths == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"Rows {empty} of `mask` hold no token: the per-token entropy of an empty completion (|y| = 0) is "
            "undefined. Leave empty completions out (and count them) before calling `per_token_entropy`."
        )
    dtype = torch.float64 if token_logps.dtype == torch.float64 else torch.float32
    # `where`, not multiplication: a -inf log-prob at a padded position must not turn the sum into NaN.
    total = torch.where(mask, token_logps.to(dtype), 0.0).sum(dim=1)
    return -total / lengths.to(dtype)


@dataclass
class EntropySummary:
    """
    Mean entropy over all completions and over the preferred ones (the paper's useful entropy).

    Attributes:
        mean_entropy (`float` or `None`): mean of the per-completion entropies over every completion that has one;
            `None` if none has.
        num_entropy (`int`): how many completions `mean_entropy` averages.
        useful_entropy (`float` or `None`): mean over the completions the judge prefers to the reference; `None` when
            no completion with an entropy is preferred (undefined, not 0).
        num_preferred (`int`): how many completions `useful_entropy` averages.
    """

    mean_entropy: float | None
    num_entropy: int
    useful_entropy: float | None
    num_preferred: int


def useful_entropy(
    entropies: Sequence[float | None], scores: Sequence[float | None], threshold: float = 0.5
) -> EntropySummary:
    """
    Useful entropy: the mean per-token entropy over the completions a judge prefers to a reference answer.

    Paper: Soft Preference Optimization, section 7.3 and Table 3.

    Formula:
        H(pi) = (1/|W|) * sum_{(x, y) in W} H(x, y),     W = {(x, y): score(x, y) > threshold}

    Where:
        H(x, y): the per-completion estimate of [`per_token_entropy`].
        score(x, y): the order-swapped comparison score of [`comparison_score`] against the reference answer.
        threshold: 0.5. *Preferred* means strictly better than a tie after averaging the two orders, so with a binary
            judge a completion is preferred only if it wins in both orders; a split decision (0.5) is not preferred.

    A completion without an entropy (`None`: an empty completion) counts in neither mean. A completion whose
    comparison failed (`None` score) counts in `mean_entropy` (the entropy does not depend on the judge) but not in
    `useful_entropy` (whether it was preferred is unknown).

    Args:
        entropies (`Sequence[float | None]`): H(x, y) per completion, length N.
        scores (`Sequence[float | None]`): comparison score per completion, length N, in [0, 1].
        threshold (`float`, *optional*, defaults to `0.5`): a completion is preferred if its score is `> threshold`.

    Returns:
        [`EntropySummary`]; `useful_entropy` is `None` when no completion with an entropy is preferred.
    """
    if len(entropies) != len(scores):
        raise ValueError(
            f"`entropies` and `scores` must have one entry per completion, found {len(entropies)} and {len(scores)}."
        )
    measured = [h for h in entropies if h is not None]
    preferred = [
        h for h, s in zip(entropies, scores, strict=False) if h is not None and s is not None and s > threshold
    ]
    return EntropySummary(
        mean_entropy=math.fsum(measured) / len(measured) if measured else None,
        num_entropy=len(measured),
        useful_entropy=math.fsum(preferred) / len(preferred) if preferred else None,
        num_preferred=len(preferred),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Win rates (sections 7.1, 7.2)
# ---------------------------------------------------------------------------------------------------------------------


def comparison_score(model_first_verdict: float | None, reference_first_verdict: float | None) -> float | None:
    """
    The model's score in one order-swapped comparison.

    Formula:
        score = ( v_1 + (1 - v_2) ) / 2

    Where:
        v_1: the judge's verdict with the model's answer in position A and the reference in position B.
        v_2: the verdict with the reference in position A and the model's answer in position B.
        A verdict is the probability (or the 0/1 indicator, 0.5 for a tie) that the answer in position A is better.

    With a binary judge the score is in {0, 0.5, 1}; a judge that always answers "A" (pure position bias) scores 0.5
    everywhere. If either verdict is missing (`None`, a failed judgement), the comparison fails: `None`.
    """
    if model_first_verdict is None or reference_first_verdict is None:
        return None
    return (model_first_verdict + (1.0 - reference_first_verdict)) / 2.0


@dataclass
class WinRate:
    """
    A win rate with its standard error.

    Attributes:
        win_rate (`float` or `None`): mean score over the comparisons that did not fail; `None` if all failed.
        stderr (`float` or `None`): sample standard deviation (ddof = 1) of those scores / sqrt(n); `None` if n < 2.
        num_judged (`int`): n, the comparisons that did not fail.
        num_failed (`int`): the comparisons that failed; excluded from n, neither a win nor a loss.
    """

    win_rate: float | None
    stderr: float | None
    num_judged: int
    num_failed: int


def win_rate(scores: Sequence[float | None]) -> WinRate:
    """
    Win rate of a model against a reference from order-swapped comparison scores.

    Formula:
        win_rate = (1/n) * sum_i s_i
        stderr   = sqrt( sum_i (s_i - win_rate)^2 / (n - 1) ) / sqrt(n)

    Where:
        s_i in [0, 1]: the score of comparison i ([`comparison_score`]), over the n comparisons that did not fail.

    Args:
        scores (`Sequence[float | None]`): one score per comparison; `None` marks a failed comparison.

    Returns:
        [`WinRate`].
    """
    judged = [float(s) for s in scores if s is not None]
    _check_scores(judged)
    n = len(judged)
    mean = math.fsum(judged) / n if n else None
    stderr = math.sqrt(math.fsum((s - mean) ** 2 for s in judged) / (n - 1) / n) if n >= 2 else None
    return WinRate(win_rate=mean, stderr=stderr, num_judged=n, num_failed=len(scores) - n)


@dataclass
class ClusteredMean:
    """
    A mean with its cluster-robust standard error.

    Attributes:
        mean (`float` or `None`): mean of the values; `None` without values.
        stderr (`float` or `None`): the standard error with the cluster as the unit (see [`clustered_mean`]); `None`
            with fewer than 2 clusters.
        num_values (`int`): n, the values averaged.
        num_clusters (`int`): G, the clusters that hold at least one of them.
    """

    mean: float | None
    stderr: float | None
    num_values: int
    num_clusters: int


def clustered_mean(values: Sequence[float], clusters: Sequence[Hashable]) -> ClusteredMean:
    """
    Mean of values that come in clusters (several answers to one prompt), with a standard error that treats the cluster,
    not the value, as the independent unit.

    Answers to one prompt share the prompt's difficulty, so they are correlated; the plain standard error
    (sd / sqrt(n)) treats them as independent and is too small when they are. This is the cluster-robust (CR1,
    Liang-Zeger) standard error of a mean.

    Formula:
        mean   = (1/n) * sum_i v_i
        stderr = sqrt( G / (G - 1) * sum_g ( sum_{i in g} (v_i - mean) )^2 ) / n

    Where:
        v_i: value i, over the n values; g: a cluster (values with the same key in `clusters`), over the G clusters.

    When every cluster holds the same number k of values, `stderr` is the standard error of the per-cluster means
    over the clusters, `sd(m_1, ..., m_G) / sqrt(G)` (ddof = 1), with m_g the mean of cluster g: the prompt is the
    unit. When every cluster holds one value, it is the plain standard error `sd(v) / sqrt(n)` (ddof = 1).

    Args:
        values (`Sequence[float]`): v_i, length n.
        clusters (`Sequence[Hashable]`): the cluster of each value (e.g. its prompt's index), length n.

    Returns:
        [`ClusteredMean`]; `stderr` is `None` with fewer than 2 clusters (undefined, not 0).
    """
    if len(values) != len(clusters):
        raise ValueError(
            f"`values` and `clusters` must have one entry per value, found {len(values)} and {len(clusters)}."
        )
    values = [float(v) for v in values]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("`values` must be finite numbers.")
    n = len(values)
    if n == 0:
        return ClusteredMean(mean=None, stderr=None, num_values=0, num_clusters=0)
    mean = math.fsum(values) / n
    residual_sums: dict[Hashable, list[float]] = {}
    for value, cluster in zip(values, clusters, strict=True):
        residual_sums.setdefault(cluster, []).append(value - mean)
    g = len(residual_sums)
    stderr = None
    if g >= 2:
        stderr = math.sqrt(g / (g - 1) * math.fsum(math.fsum(r) ** 2 for r in residual_sums.values())) / n
    return ClusteredMean(mean=mean, stderr=stderr, num_values=n, num_clusters=g)


@dataclass
class ClusteredWinRate(WinRate):
    """
    A win rate whose standard error treats clusters of comparisons (the answers to one prompt) as the unit.

    Attributes:
        win_rate, num_judged, num_failed: as in [`WinRate`].
        stderr (`float` or `None`): the cluster-robust standard error of [`clustered_mean`]; `None` with fewer than 2
            clusters that hold a judged comparison.
        num_clusters (`int`): the clusters with at least one judged comparison.
    """

    num_clusters: int


def clustered_win_rate(scores: Sequence[float | None], clusters: Sequence[Hashable]) -> ClusteredWinRate:
    """
    Win rate from order-swapped comparison scores, with the standard error clustered (e.g. by prompt).

    The win rate is [`win_rate`]'s (the mean over the judged comparisons); the standard error is that of
    [`clustered_mean`] over them. With k answers per prompt and a prompt's answers alike, the plain standard error of
    [`win_rate`] is too small by up to a factor sqrt(k); this one is not. With one comparison per cluster the two are
    equal.

    Args:
        scores (`Sequence[float | None]`): one score in [0, 1] per comparison; `None` marks a failed comparison (left
            out; a cluster whose comparisons all failed is not counted).
        clusters (`Sequence[Hashable]`): the cluster of each comparison (its prompt's index), same length as `scores`.

    Returns:
        [`ClusteredWinRate`].
    """
    if len(scores) != len(clusters):
        raise ValueError(
            f"`scores` and `clusters` must have one entry per comparison, found {len(scores)} and {len(clusters)}."
        )
    kept = [(float(s), c) for s, c in zip(scores, clusters, strict=True) if s is not None]
    _check_scores([s for s, _ in kept])
    result = clustered_mean([s for s, _ in kept], [c for _, c in kept])
    return ClusteredWinRate(
        win_rate=result.mean,
        stderr=result.stderr,
        num_judged=result.num_values,
        num_failed=len(scores) - result.num_values,
        num_clusters=result.num_clusters,
    )


@dataclass
class LengthControlledWinRate:
    """
    A length-controlled win rate and the fit behind it.

    Attributes:
        win_rate (`float` or `None`): sigmoid(intercept), the predicted win rate at zero length difference; `None` if
            every comparison failed.
        intercept (`float` or `None`): fitted intercept b (`None` when no fit was needed, see
            [`length_controlled_win_rate`]).
        slope (`float` or `None`): fitted weight w of the length feature (idem).
        length_scale (`float` or `None`): std (ddof = 1) of the length differences, the feature's scale.
        num_judged (`int`): comparisons in the fit.
    """

    win_rate: float | None
    intercept: float | None
    slope: float | None
    length_scale: float | None
    num_judged: int


def length_controlled_win_rate(
    scores: Sequence[float | None],
    length_differences: Sequence[float],
    l2_penalty: float = 1e-2,
    max_iterations: int = 100,
    tolerance: float = 1e-10,
) -> LengthControlledWinRate:
    """
    Length-controlled (LC) win rate in the spirit of AlpacaEval 2: the win rate the judge would give at equal length.

    Paper: Dubois et al. 2024, "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic Evaluators"
    (https://huggingface.co/papers/2404.04475), used for the LC column of Table 1. AlpacaEval 2's GLM also has per-instruction
    terms fitted across many models; with one model and one reference only the length term is identifiable, so this is
    the single-model reduction of it, not a reimplementation of the AlpacaEval leaderboard number.

    Formula:
        P(model wins | d) = sigmoid(b + w * tanh(d / sd(d)))
        (b, w) = argmax  sum_i [ s_i log p_i + (1 - s_i) log(1 - p_i) ] - (l2_penalty / 2) * w^2
        LC win rate = sigmoid(b)

    Where:
        s_i in [0, 1]: comparison score (soft labels), over the comparisons that did not fail.
        d_i: length of the model's answer minus that of the reference (the runner uses characters, as AlpacaEval
            does, so models with different tokenizers are comparable).
        sd(d): sample standard deviation (ddof = 1) of the d_i.
        l2_penalty: ridge penalty on w only. It keeps w finite when the scores are separable by length (e.g. every
            longer answer wins, every shorter one loses), where the unpenalised MLE does not exist. The intercept is
            never penalised, so the LC win rate is not shrunk towards 0.5 by the penalty itself.

    Degenerate cases, all without a fit (`intercept` and `slope` are `None`):
        - every comparison failed: `win_rate` is `None`;
        - sd(d) = 0 or undefined (all lengths differ by the same amount, or n < 2): the feature is constant and the
          LC win rate is the plain win rate (the intercept-only MLE is logit(mean score));
        - every score is 0 or every score is 1: the LC win rate is that score (the MLE intercept is -inf / +inf).

    The fit is Newton's method (IRLS) on the two parameters with a backtracking line search, which converges for this
    strictly concave objective. A hand-checkable case: if the feature takes the values +c and -c on equally many
    comparisons and `l2_penalty = 0`, the model is saturated and sigmoid(b) = sigmoid((logit(p+) + logit(p-)) / 2),
    with p+ and p- the mean scores of the two groups.

    Args:
        scores (`Sequence[float | None]`): one score per comparison; `None` marks a failed comparison (left out).
        length_differences (`Sequence[float]`): d_i per comparison, same length as `scores`.
        l2_penalty (`float`, *optional*, defaults to `1e-2`): ridge penalty on w, >= 0 (a N(0, 100) prior on w).
        max_iterations (`int`, *optional*, defaults to `100`): Newton steps at most.
        tolerance (`float`, *optional*, defaults to `1e-10`): stop when the Newton step's largest entry is below it.

    Returns:
        [`LengthControlledWinRate`].
    """
    if len(scores) != len(length_differences):
        raise ValueError(
            f"`scores` and `length_differences` must have one entry per comparison, found {len(scores)} and "
            f"{len(length_differences)}."
        )
    if not (math.isfinite(l2_penalty) and l2_penalty >= 0):
        raise ValueError(f"`l2_penalty` must be a finite number >= 0, found {l2_penalty}.")
    kept = [(float(s), float(d)) for s, d in zip(scores, length_differences, strict=False) if s is not None]
    _check_scores([s for s, _ in kept])
    n = len(kept)
    if n == 0:
        return LengthControlledWinRate(None, None, None, None, 0)
    y = torch.tensor([s for s, _ in kept], dtype=torch.float64)
    d = torch.tensor([d for _, d in kept], dtype=torch.float64)
    if not bool(torch.isfinite(d).all()):
        raise ValueError("`length_differences` must be finite numbers.")
    scale = float(d.std()) if n >= 2 else None
    mean = float(y.mean())
    if not scale or mean in (0.0, 1.0):
        return LengthControlledWinRate(mean, None, None, scale, n)

    features = torch.stack([torch.ones_like(d), torch.tanh(d / scale)], dim=1)  # (n, 2)
    penalty = torch.tensor([0.0, l2_penalty], dtype=torch.float64)

    def objective(theta: torch.Tensor) -> torch.Tensor:
        # Bernoulli log-likelihood with soft labels, in logsigmoid form so large logits lose no precision.
        z = features @ theta
        loglik = (y * torch.nn.functional.logsigmoid(z) + (1 - y) * torch.nn.functional.logsigmoid(-z)).sum()
        return loglik - 0.5 * (penalty * theta**2).sum()

    # Start at the intercept-only MLE, which is finite here (0 < mean < 1).
    theta = torch.tensor([math.log(mean / (1 - mean)), 0.0], dtype=torch.float64)
    value = objective(theta)
    for _ in range(max_iterations):
        p = torch.sigmoid(features @ theta)
        gradient = features.T @ (y - p) - penalty * theta
        hessian = (features.T * (p * (1 - p))) @ features + torch.diag(penalty)
        step = torch.linalg.solve(hessian, gradient)
        # Backtracking: a full Newton step can overshoot when the data are (nearly) separable.
        t = 1.0
        while t > 1e-8:
            candidate = theta + t * step
            candidate_value = objective(candidate)
            if candidate_value >= value:
                break
            t /= 2
        else:
            break
        theta, value = candidate, candidate_value
        if float((t * step).abs().max()) < tolerance:
            break
    intercept, slope = float(theta[0]), float(theta[1])
    return LengthControlledWinRate(float(torch.sigmoid(theta[0])), intercept, slope, scale, n)


def _check_scores(scores: list[float]) -> None:
    bad = [s for s in scores if not (0.0 <= s <= 1.0)]
    if bad:
        raise ValueError(f"Comparison scores must lie in [0, 1] (None for a failed comparison), found {bad[:5]}.")


def reward_comparison_scores(rewards: Sequence[float], reference_rewards: Sequence[float]) -> list[float]:
    """
    Comparison scores of a prompt's answers against its reference answers when the reward is known: the judge is the
    reward, so no order swap is needed.

    Formula:
        s_i = (1/m) * sum_{j=1}^{m} ( 1[r_i > r'_j] + 0.5 * 1[r_i = r'_j] )

    Where:
        r_i: reward of the model's answer i; r'_j: reward of reference answer j of the same prompt (m of them).

    One score per model answer, averaged over the references rather than one score per (answer, reference) pair:
    pairs that share an answer are not independent, so [`win_rate`]'s standard error over the s_i is the honest one.

    Args:
        rewards (`Sequence[float]`): rewards of the model's answers to one prompt, shape (k,).
        reference_rewards (`Sequence[float]`): rewards of the reference answers to that prompt, shape (m,), m >= 1.

    Returns:
        `list[float]`: s_i in [0, 1], length k; feed them (over all prompts) to [`win_rate`].
    """
    if not reference_rewards:
        raise ValueError("`reference_rewards` must hold at least one reference answer's reward.")
    m = len(reference_rewards)
    return [sum(1.0 if r > ref else 0.5 if r == ref else 0.0 for ref in reference_rewards) / m for r in rewards]


# ---------------------------------------------------------------------------------------------------------------------
# Diversity of the samples of one prompt
# ---------------------------------------------------------------------------------------------------------------------


def _normalize_answer(text: str) -> str:
    return " ".join(text.lower().split())


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """
    Distinct-n of a prompt's samples: the share of their word n-grams that are distinct.

    Paper: Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models"
    (https://arxiv.org/abs/1510.03055).

    Formula:
        distinct-n = |{n-grams of all texts}| / sum_i (number of n-grams of text i)

    Where:
        words: the lower-cased, whitespace-separated tokens of a text (punctuation stays attached: "apple," and
            "apple" differ); n-grams never span two texts.

    Pass the k samples of one prompt, then average over prompts: pooled over prompts, the count would mostly measure
    how different the prompts are.

    Args:
        texts (`Sequence[str]`): the samples, length k.
        n (`int`): the n-gram order, >= 1.

    Returns:
        `float` or `None`: in (0, 1]; `None` when no text has n words (no n-gram: undefined, not 0).
    """
    if n < 1:
        raise ValueError(f"`n` must be >= 1, found {n}.")
    grams = []
    for text in texts:
        tokens = text.lower().split()
        grams.extend(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return len(set(grams)) / len(grams) if grams else None


def num_distinct_answers(texts: Sequence[str]) -> int:
    """
    Number of different answers among a prompt's samples, after lower-casing and collapsing whitespace (so "Apple,
    pear." and "apple,  pear.\n" are one answer).
    """
    return len({_normalize_answer(text) for text in texts})


# ---------------------------------------------------------------------------------------------------------------------
# Drift from the reference
# ---------------------------------------------------------------------------------------------------------------------


def sequence_log_ratio(
    policy_token_logps: torch.Tensor, reference_token_logps: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """
    Per-sample log ratio `log pi(y | x) - log pi_ref(y | x)`, the single-sample estimate of KL(pi || pi_ref).

    Formula:
        k(x, y) = sum_{t=1}^{|y|} [ log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t) ]

    Where:
        y ~ pi(. | x): a completion sampled from the policy at temperature 1 (no top-k, top-p).
        |y|: the `True` entries of `mask`. Include the EOS token that ended y: stopping is part of the sequence
            distribution, and leaving it out estimates the KL of something else.

    For y ~ pi(. | x), E[k(x, y)] = KL(pi(. | x) || pi_ref(. | x)) exactly (the definition of the KL as an
    expectation), so the mean of k over samples is an unbiased estimate of the sequence-level KL. A single k can be
    negative (a sample that pi_ref likes more than pi); only the expectation is >= 0. Completions sampled at another
    temperature make it an estimate of nothing in particular.

    Args:
        policy_token_logps (`torch.Tensor`): log pi(y_t | x, y_<t), shape (B, L), right-padded.
        reference_token_logps (`torch.Tensor`): log pi_ref(y_t | x, y_<t) of the same tokens, shape (B, L).
        mask (`torch.Tensor`): shape (B, L), `True` (or 1) on the tokens of y. Masked-out values are ignored.

    Returns:
        `torch.Tensor`: k per sample in nats, shape (B,), float64 (summed in float64: a sum of many near-cancelling
        terms loses precision in float32). An all-masked row gives 0.
    """
    if not (policy_token_logps.shape == reference_token_logps.shape == mask.shape) or mask.ndim != 2:
        raise ValueError(
            "`policy_token_logps`, `reference_token_logps` and `mask` must share one shape (B, L), found "
            f"{tuple(policy_token_logps.shape)}, {tuple(reference_token_logps.shape)} and {tuple(mask.shape)}."
        )
    difference = policy_token_logps.double() - reference_token_logps.double()
    # `where`, not multiplication: -inf - (-inf) at a padded position is NaN, and NaN * 0 is still NaN.
    return torch.where(mask.bool(), difference, 0.0).sum(dim=1)


@dataclass
class KLEstimate:
    """
    A Monte-Carlo estimate of KL(pi || pi_ref) with its standard error.

    Attributes:
        kl (`float` or `None`): mean of the per-sample log ratios; `None` without samples.
        stderr (`float` or `None`): their sample standard deviation (ddof = 1) / sqrt(n); `None` if n < 2.
        num_samples (`int`): n.
    """

    kl: float | None
    stderr: float | None
    num_samples: int


def kl_estimate(log_ratios: Sequence[float] | torch.Tensor) -> KLEstimate:
    """
    Mean and standard error of per-sample log ratios ([`sequence_log_ratio`]): the unbiased estimate of
    E_x KL(pi(. | x) || pi_ref(. | x)) over the prompts the samples came from.

    With few samples the estimate can come out negative even though the KL is not; report it with its standard error
    rather than clipping it to 0, which would bias it upwards.

    Args:
        log_ratios (`Sequence[float]` or `torch.Tensor`): k(x, y) per sample, shape (n,).

    Returns:
        [`KLEstimate`].
    """
    values = [float(v) for v in (log_ratios.tolist() if isinstance(log_ratios, torch.Tensor) else log_ratios)]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("log ratios must be finite: a sample with pi_ref(y) = 0 has an infinite KL.")
    n = len(values)
    mean = math.fsum(values) / n if n else None
    stderr = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1) / n) if n >= 2 else None
    return KLEstimate(kl=mean, stderr=stderr, num_samples=n)


def truncation_rate(truncated: Sequence[bool]) -> float | None:
    """
    Share of completions cut at the token limit (no EOS); `None` for no completions.

    A high rate means the length limit, not the policy, decided where answers end: entropy and KL figures then
    describe truncated sequences, and rewards that penalise unfinished answers are lower for reasons of the budget.
    """
    return sum(bool(t) for t in truncated) / len(truncated) if truncated else None
