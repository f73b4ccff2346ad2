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
The logged metrics: built per row (an uneven last eval batch counts every row once), kept on the device per
micro-batch, and reduced once per log into the mean of the micro-batches' values.
"""

import math

import pytest
import torch

from trl_spo.forward import TokenOutputs
from trl_spo.metrics import (
    MetricsWindow,
    SPOTerms,
    Statistic,
    kendall_tau,
    pair_weight_statistics,
    preference_statistics,
    with_normalized_loss,
)


def values_of(statistics: dict[str, Statistic]) -> dict[str, float]:
    """What one micro-batch's statistics log as, alone in a window."""
    window = MetricsWindow(across_processes=False)
    window.add(statistics)
    return window.reduce(accelerator=None)


def preference_metrics(terms, batch, preference_format, alpha, gather, pad_across_processes):
    statistics = preference_statistics(terms, batch, preference_format, alpha, gather, pad_across_processes)
    return with_normalized_loss(values_of(statistics), alpha)


def pairwise_terms(num_rows: int, seed: int = 0) -> tuple[SPOTerms, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    length = 6
    completion_mask = torch.zeros(2 * num_rows, length, dtype=torch.long)
    for row in range(2 * num_rows):
        completion_mask[row, 2 : 3 + row % 4] = 1  # completions of 1 to 4 tokens after a 2-token prompt

    def per_token():
        return torch.rand(2 * num_rows, length - 1, generator=generator)

    outputs = TokenOutputs(
        log_probs=per_token(), entropy=per_token(), mean_logits=per_token(), is_top1=per_token() > 0.5
    )
    logps = -10 * torch.rand(num_rows, 2, generator=generator)
    terms = SPOTerms(
        loss=torch.tensor(0.0),
        row_losses=torch.rand(num_rows, generator=generator),
        kl_term=torch.tensor(0.0),
        response_logps=logps,
        response_mask=torch.ones(num_rows, 2, dtype=torch.bool),
        winner_index=torch.zeros(num_rows, dtype=torch.long),
        weights=0.5 + torch.rand(num_rows, generator=generator),
        per_sample_kl=None,
        token_kl=None,
        outputs=outputs,
    )
    return terms, {"completion_mask": completion_mask}


def rows_of(terms: SPOTerms, batch, rows: list[int]) -> tuple[SPOTerms, dict[str, torch.Tensor]]:
    """The same micro-batch restricted to `rows` (sequences: [chosen; rejected])."""
    num_rows = terms.row_losses.numel()
    sequences = rows + [num_rows + row for row in rows]
    outputs = TokenOutputs(**{k: v[sequences] for k, v in vars(terms.outputs).items() if v is not None})
    kept = SPOTerms(
        loss=terms.loss,
        row_losses=terms.row_losses[rows],
        kl_term=terms.kl_term,
        response_logps=terms.response_logps[rows],
        response_mask=terms.response_mask[rows],
        winner_index=terms.winner_index[rows],
        weights=terms.weights[rows],
        per_sample_kl=None,
        token_kl=None,
        outputs=outputs,
    )
    return kept, {"completion_mask": batch["completion_mask"][sequences]}


def test_dropping_the_repeated_rows_of_an_uneven_eval_batch_equals_computing_without_them():
    # gather_for_metrics on the last eval batch keeps the first rows and drops those the sampler repeated. Every
    # gathered tensor is per row, so the metrics equal those of the unrepeated rows alone.
    terms, batch = pairwise_terms(num_rows=5)
    drop_repeated = lambda tensor: tensor[:3]  # noqa: E731 - what gather_for_metrics does with remainder 3
    dropped = preference_metrics(terms, batch, "pairwise", 0.5, drop_repeated, lambda t, dim: t)
    alone_terms, alone_batch = rows_of(terms, batch, [0, 1, 2])
    alone = preference_metrics(alone_terms, alone_batch, "pairwise", 0.5, lambda t: t, lambda t, dim: t)
    assert dropped.keys() == alone.keys()
    for name in alone:
        # The same fp32 values summed over the same rows, in the same order: equal to rounding of a few sums.
        assert dropped[name] == pytest.approx(alone[name], rel=1e-6, abs=1e-7), name
    everything = preference_metrics(terms, batch, "pairwise", 0.5, lambda t: t, lambda t, dim: t)
    assert everything["entropy"] != pytest.approx(alone["entropy"], rel=1e-3)  # the repeated rows do matter


def test_pairwise_metrics_by_hand():
    terms, batch = pairwise_terms(num_rows=2)
    metrics = preference_metrics(terms, batch, "pairwise", 0.5, lambda t: t, lambda t, dim: t)
    mask = batch["completion_mask"][:, 1:].float()
    entropy = (terms.outputs.entropy * mask).sum() / mask.sum()
    chosen_mask = mask[:2]
    accuracy = (terms.outputs.is_top1[:2].float() * chosen_mask).sum() / chosen_mask.sum()
    # Token means of the same fp32 values in another summation order: a few ulps.
    assert metrics["entropy"] == pytest.approx(entropy.item(), rel=1e-6)
    assert metrics["mean_token_accuracy"] == pytest.approx(accuracy.item(), rel=1e-6)
    assert metrics["loss/preference_normalized"] == pytest.approx(0.5 * terms.row_losses.mean().item(), rel=1e-6)
    chosen, rejected = terms.response_logps[:, 0], terms.response_logps[:, 1]
    assert metrics["rewards/accuracies"] == (chosen > rejected).float().mean().item()  # exact: 0, 0.5 or 1
    assert metrics["rewards/margins"] == pytest.approx(0.5 * (chosen - rejected).mean().item(), rel=1e-6)
    assert metrics["mu/min"] == terms.weights.min().item() and metrics["mu/max"] == terms.weights.max().item()


def test_pair_weight_is_eq_8_gradient_factor_by_hand():
    # Pairs: w = sigmoid(alpha * (log pi(y_l) - log pi(y_w))). Gaps of 0, 2 and -600 nats at alpha = 0.5: a tie,
    # sigmoid(-1) = 0.26894, and sigmoid(300) = 1 (saturated, ordered the wrong way).
    logps = torch.tensor([[-3.0, -3.0], [-2.0, -4.0], [-700.0, -100.0]])
    mask = torch.ones_like(logps, dtype=torch.bool)
    winner = torch.zeros(3, dtype=torch.long)
    values = values_of(pair_weight_statistics(logps, mask, winner, 0.5))
    expected = [0.5, 1 / (1 + math.e), 1.0]
    # fp32 sigmoids of exact inputs, averaged over 3: a few ulps.
    assert values["pair_weight/mean"] == pytest.approx(sum(expected) / 3, rel=1e-6)
    assert values["pair_weight/saturated"] == pytest.approx(1 / 3, rel=1e-6)  # only the third row: 1/3 in fp32
    # alpha = 0 (Eq. 9): every pair weighs exactly 0.5, whatever its gap.
    assert values_of(pair_weight_statistics(logps, mask, winner, 0.0))["pair_weight/mean"] == 0.5

    # Best-of-n (winner 1 of 3 valid, a padded fourth) and rankings: 1 - softmax(alpha * logp)_winner.
    logps = torch.tensor([[-2.0, -1.0, -3.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    softmax = [math.exp(0.5 * x) for x in (-2.0, -1.0, -3.0)]
    expected = 1 - softmax[1] / sum(softmax)  # 0.45081
    value = values_of(pair_weight_statistics(logps, mask, torch.tensor([1]), 0.5))["pair_weight/mean"]
    assert value == pytest.approx(expected, rel=1e-6)  # fp32 logsumexp of 3 exact values: a few ulps
    # At n = 2 the winner weight is the pair weight (the pair formula in another form): equal to rounding.
    two = torch.tensor([[-2.0, -4.0, 0.0]])
    valid = torch.tensor([[True, True, False]])
    value = values_of(pair_weight_statistics(two, valid, torch.tensor([0]), 0.5))["pair_weight/mean"]
    assert value == pytest.approx(1 / (1 + math.e), rel=1e-6)


def test_the_window_logs_the_mean_of_the_micro_batches_values():
    # As DPOTrainer averages the per-micro-batch floats it appended: a mean of means, not a ratio of sums.
    window = MetricsWindow(across_processes=False)
    window.add(
        {
            "m": Statistic(torch.tensor(6.0), torch.tensor(3.0)),
            "low": Statistic(torch.tensor(1.0), torch.tensor(4.0), "min"),
        }
    )
    window.add(
        {
            "m": Statistic(torch.tensor(10.0), torch.tensor(1.0)),
            "rank_4": Statistic(torch.tensor(0.0), torch.tensor(0.0)),
        }
    )
    window.add(
        {
            "m": Statistic(torch.tensor(float("nan")), torch.tensor(0.0)),
            "low": Statistic(torch.tensor(3.0), torch.tensor(1.0), "min"),
        }
    )
    assert window.values("m")[:2] == [2.0, 10.0]
    logged = window.reduce(accelerator=None)
    # m: (2 + 10) / 2, the third micro-batch had no value (count 0, its NaN total never read); low: mean of 1 and 3;
    # a metric no micro-batch had a value of is not logged. Exact in binary.
    assert logged == {"m": 6.0, "low": 2.0}
    assert window.entries == [] and window.reduce(accelerator=None) == {}
    window.add({"m": Statistic(torch.tensor(float("nan")), torch.tensor(2.0))})
    assert math.isnan(window.reduce(accelerator=None)["m"])  # a NaN value reaches the log, as in DPO's


def test_kendall_tau_hand_cases():
    scores = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0], [5.0, 1.0, 9.0]])
    mask = torch.tensor([[True, True, True]] * 3 + [[True, True, False]])
    # same order; reversed; 2 concordant and 1 discordant pair of 3 -> (2 - 1) / 3; a row with 2 valid responses
    expected = torch.tensor([1.0, -1.0, 1 / 3, 1.0])
    torch.testing.assert_close(kendall_tau(scores, mask), expected)  # counts divided by 3: within an ulp
