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
The diversity and drift metrics of `trl_spo.evaluation.metrics`: distinct-n, distinct answers, KL, truncation; and
the clustered standard errors.
"""

import math
import random
import statistics

import pytest
import torch

from trl_spo.evaluation import (
    ClusteredWinRate,
    clustered_mean,
    clustered_win_rate,
    distinct_n,
    kl_estimate,
    num_distinct_answers,
    reward_comparison_scores,
    sequence_log_ratio,
    truncation_rate,
    win_rate,
)


# ---------------------------------------------------------------------------------------------------------------------
# distinct-n and distinct answers


def test_distinct_n_hand_computed():
    texts = ["a b a b", "a b c"]
    # unigrams: a b a b a b c -> 7 in all, {a, b, c} distinct -> 3/7
    assert distinct_n(texts, 1) == pytest.approx(3 / 7, rel=1e-12)  # one division of small integers
    # bigrams: (a b) (b a) (a b) | (a b) (b c) -> 5 in all, 3 distinct; none spans the two texts ("b a" of "b" + "a")
    assert distinct_n(texts, 2) == pytest.approx(3 / 5, rel=1e-12)
    # trigrams: (a b a) (b a b) | (a b c) -> all distinct
    assert distinct_n(texts, 3) == 1.0


def test_distinct_n_is_case_insensitive_and_one_for_identical_free_text():
    assert distinct_n(["Apple pear", "apple PEAR"], 1) == pytest.approx(2 / 4, rel=1e-12)
    assert distinct_n(["one two three"], 2) == 1.0


def test_distinct_n_undefined_without_ngrams():
    assert distinct_n(["too short", ""], 3) is None
    assert distinct_n([], 1) is None
    with pytest.raises(ValueError, match="n"):
        distinct_n(["a"], 0)


def test_num_distinct_answers_normalises_case_and_whitespace():
    answers = ["Apple, pear.", "apple,  pear.\n", "APPLE, PEAR.", "Apple pear.", ""]
    # The first three are one answer after lower-casing and collapsing whitespace; the missing comma makes the fourth
    # another; the empty answer is the third kind.
    assert num_distinct_answers(answers) == 3
    assert num_distinct_answers([]) == 0


# ---------------------------------------------------------------------------------------------------------------------
# KL(pi || pi_ref) on samples


def test_sequence_log_ratio_hand_computed_and_masked():
    policy = torch.tensor([[-1.0, -2.0, -float("inf")], [-0.5, -0.5, -0.5]])
    reference = torch.tensor([[-1.5, -1.0, -float("inf")], [-0.5, -1.5, -0.25]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    ratios = sequence_log_ratio(policy, reference, mask)
    assert ratios.dtype == torch.float64
    # row 0: (-1 + 1.5) + (-2 + 1) = -0.5 (a negative single-sample estimate is legitimate); the -inf - -inf = NaN at
    # the padded position must not leak. Row 1: 0 + 1 - 0.25 = 0.75. Sums of halves and quarters: exact in binary.
    assert ratios.tolist() == [-0.5, 0.75]
    assert sequence_log_ratio(policy, reference, torch.zeros_like(mask)).tolist() == [0.0, 0.0]


def test_sequence_log_ratio_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        sequence_log_ratio(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 2))


def test_kl_estimate_mean_and_stderr_hand_computed():
    estimate = kl_estimate(torch.tensor([-0.5, 0.75, 1.25], dtype=torch.float64))
    # mean = 1.5 / 3 = 0.5; deviations -1, 0.25, 0.75 -> squares 1 + 0.0625 + 0.5625 = 1.625; / (n - 1) = 0.8125;
    # stderr = sqrt(0.8125 / 3). Tolerance: a few float64 roundings in fsum, a division and a square root.
    assert estimate.kl == pytest.approx(0.5, rel=1e-12)
    assert estimate.stderr == pytest.approx(math.sqrt(0.8125 / 3), rel=1e-12)
    assert estimate.num_samples == 3
    assert kl_estimate([0.25]).stderr is None and kl_estimate([]).kl is None
    with pytest.raises(ValueError, match="finite"):
        kl_estimate([float("inf")])


def test_kl_estimate_is_unbiased_on_a_known_pair_of_distributions():
    # pi = Bernoulli(0.8), pi_ref = Bernoulli(0.5): KL = 0.8 log 1.6 + 0.2 log 0.4 = 0.19274 nats. The mean of the log
    # ratio over samples y ~ pi must converge to it (unbiasedness), unlike e.g. the mean of |log ratio|.
    p, q = 0.8, 0.5
    exact = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    generator = torch.Generator().manual_seed(0)
    draws = torch.rand(200_000, generator=generator, dtype=torch.float64) < p
    policy = torch.where(draws, math.log(p), math.log(1 - p)).unsqueeze(1)
    reference = torch.where(draws, math.log(q), math.log(1 - q)).unsqueeze(1)
    estimate = kl_estimate(sequence_log_ratio(policy, reference, torch.ones_like(policy, dtype=torch.bool)))
    # The per-sample log ratio takes two values, log 1.6 and log 0.4, with std sqrt(0.8 * 0.2) * log 4 = 0.5545; the
    # standard error of the mean over 200,000 draws is 0.00124. Five of them (0.0062) is a false-alarm rate < 1e-6,
    # and still fails a biased estimator such as the mean |log ratio| (0.559 here).
    # The observed stderr uses the sample frequency (0.8 +- 0.0009), which moves sqrt(p (1 - p)) by < 0.2 %: rel=1 %.
    assert estimate.stderr == pytest.approx(math.sqrt(p * (1 - p)) * math.log(4) / math.sqrt(200_000), rel=0.01)
    assert abs(estimate.kl - exact) < 5 * estimate.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Win rate under a known reward


def test_reward_comparison_scores_hand_computed():
    # Against references (1, 2, 4): 3 beats two and loses one -> 2/3; 4 beats two and ties one -> 2.5/3; 0 loses all.
    scores = reward_comparison_scores([3.0, 4.0, 0.0], [1.0, 2.0, 4.0])
    assert scores == pytest.approx([2 / 3, 2.5 / 3, 0.0], rel=1e-12)  # quotients of small integers
    rate = win_rate(scores)  # the scores plug into the existing win rate and its standard error
    assert rate.win_rate == pytest.approx((2 / 3 + 2.5 / 3) / 3, rel=1e-12) and rate.num_judged == 3
    with pytest.raises(ValueError, match="reference"):
        reward_comparison_scores([1.0], [])


# ---------------------------------------------------------------------------------------------------------------------
# Truncation


def test_truncation_rate():
    assert truncation_rate([True, False, False, True]) == 0.5
    assert truncation_rate([False]) == 0.0
    assert truncation_rate([]) is None


# ---------------------------------------------------------------------------------------------------------------------
# Clustered standard errors


def test_clustered_win_rate_hand_computed():
    scores = [1.0, 0.0, 1.0, 1.0, 0.5, None]
    prompts = [0, 0, 1, 1, 2, 2]
    result = clustered_win_rate(scores, prompts)
    # n = 5 judged, mean 3.5 / 5 = 0.7. Residuals per prompt: 0: 0.3 - 0.7 = -0.4; 1: 0.3 + 0.3 = 0.6; 2: -0.2.
    # Squares 0.16 + 0.36 + 0.04 = 0.56; G / (G - 1) = 3 / 2 -> 0.84; stderr = sqrt(0.84) / 5 = 0.1833030...
    assert result.win_rate == pytest.approx(0.7, abs=1e-12)
    assert result.stderr == pytest.approx(math.sqrt(0.84) / 5, rel=1e-12)
    assert result.stderr == pytest.approx(0.1833030, abs=1e-7)  # the constant above, rounded to 7 digits
    assert (result.num_judged, result.num_failed, result.num_clusters) == (5, 1, 3)
    # The plain standard error of the same scores: squares 0.09 + 0.49 + 0.09 + 0.09 + 0.04 = 0.8 -> sqrt(0.8 / 4 / 5).
    assert win_rate(scores).stderr == pytest.approx(0.2, rel=1e-12)


def test_clustered_equals_plain_with_one_answer_per_cluster():
    rng = random.Random(0)
    scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(37)]
    plain, clustered = win_rate(scores), clustered_win_rate(scores, list(range(37)))
    assert clustered.win_rate == plain.win_rate
    assert clustered.stderr == pytest.approx(plain.stderr, rel=1e-12)
    assert clustered.num_clusters == 37


def test_clustered_with_equal_clusters_is_the_standard_error_of_the_cluster_means():
    rng = random.Random(1)
    scores = [rng.random() for _ in range(32 * 4)]
    prompts = [i // 4 for i in range(32 * 4)]
    means = [statistics.fmean(scores[4 * g : 4 * g + 4]) for g in range(32)]
    result = clustered_win_rate(scores, prompts)
    assert result.win_rate == pytest.approx(statistics.fmean(means), rel=1e-12)
    assert result.stderr == pytest.approx(statistics.stdev(means) / math.sqrt(32), rel=1e-12)
    # Answers that are equal within each prompt carry one prompt's worth of information, not four: the plain
    # standard error is then smaller by sqrt(4 * 127 / 124) (its n - 1 = 127 against the clusters' G - 1 = 31).
    alike = [means[g] for g in prompts]
    ratio = clustered_win_rate(alike, prompts).stderr / win_rate(alike).stderr
    assert ratio == pytest.approx(math.sqrt(4 * 127 / 124), rel=1e-12)


def test_clustered_undefined_cases_and_bad_input():
    assert clustered_win_rate([None, None], [0, 1]) == ClusteredWinRate(None, None, 0, 2, 0)
    one_prompt = clustered_win_rate([1.0, 0.0, None], [0, 0, 1])  # prompt 1 only failed: one cluster left
    assert one_prompt.win_rate == 0.5 and one_prompt.stderr is None and one_prompt.num_clusters == 1
    with pytest.raises(ValueError, match="one entry per comparison"):
        clustered_win_rate([1.0], [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clustered_win_rate([1.5, 0.0], [0, 1])
    assert clustered_mean([], []).mean is None
    with pytest.raises(ValueError, match="finite"):
        clustered_mean([float("nan"), 1.0], [0, 1])
