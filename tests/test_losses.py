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

"""Tests of `trl_spo.losses` against the paper's formulas (Soft Preference Optimization, sections 3-5, App. A-D).

References here are written independently of the implementation: python floats and `math`, explicit probabilities,
loops over rows and rank terms. Tolerances: ~1e-6 for fp32 (relative where values are ~log(2)/alpha), 1e-2 relative
for gradients returned in bf16.
"""

import itertools
import math

import pytest
import torch

from trl_spo.losses import (
    PREFERENCE_LOSSES,
    spo_batch_mean,
    spo_best_of_n_loss,
    spo_pairwise_grid_loss,
    spo_pairwise_loss,
    spo_ranking_loss,
    spo_ranking_sample_weights,
    spo_sample_scores,
    spo_sample_weights,
)


# fp32 elementwise maths on a handful of values (no reduction long enough to depend on threads or SIMD width) against
# float64 references of the same fp32 inputs: a few ulps (eps = 1.2e-7), so 1e-6 = 8 eps; observed <= 0.2 of it.
FP32 = {"rtol": 1e-6, "atol": 1e-6}


def _explain(what: str):
    """An `assert_close` message that says what was compared and keeps its details."""
    return lambda details: f"{what}: {details}"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------------------------------------
# Naive references: python floats, explicit probabilities, value and gradient in closed form
# ---------------------------------------------------------------------------------------------------------------------


def ref_pairwise(a: float, b: float, alpha: float, mu: float) -> tuple[float, list[float]]:
    """Eq. (8)/(10) and its section-3 gradient; Eq. (9)/(11) at alpha = 0. Returns (value, [dL/da, dL/db])."""
    if alpha == 0:
        return -mu / 2 * (a - b), [-mu / 2, mu / 2]
    top = max(a, b)
    pw, pl = math.exp(alpha * (a - top)), math.exp(alpha * (b - top))  # pi^alpha, up to the common exp(alpha*top)
    value = -(mu / alpha) * math.log(pw / (pw + pl))
    error = pl / (pw + pl)  # section 3: the model's error in preferring y_w over y_l
    return value, [-mu * error, mu * error]


def ref_best_of_n(logps: list[float], winner: int, alpha: float, mu: float) -> tuple[float, list[float]]:
    """Eq. (14) and gradient mu * (softmax(alpha * logp) - e_winner); alpha = 0: the uniform-softmax limit."""
    n = len(logps)
    if alpha == 0:
        mean = sum(logps) / n
        return -mu * (logps[winner] - mean), [mu * (1 / n - (j == winner)) for j in range(n)]
    top = max(logps)
    powers = [math.exp(alpha * (lp - top)) for lp in logps]
    probs = [p / sum(powers) for p in powers]
    return -(mu / alpha) * math.log(probs[winner]), [mu * (probs[j] - (j == winner)) for j in range(n)]


def ref_ranking(logps: list[float], alpha: float, mus: list[float]) -> tuple[float, list[float]]:
    """Eq. (15) as a loop over rank terms, each a best-of-(n-k+1) choice of y_k in the suffix (Appendix D)."""
    n = len(logps)
    value, grad = 0.0, [0.0] * n
    for k in range(n - 1):
        term_value, term_grad = ref_best_of_n(logps[k:], 0, alpha, mus[k])
        value += term_value
        for j, g in enumerate(term_grad):
            grad[k + j] += g
    return value, grad


def _value_and_grad(fn, logps: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    logps = logps.detach().clone().requires_grad_(True)
    value = fn(logps, *args, **kwargs)
    value.sum().backward()
    return value.detach(), logps.grad


def _pairwise_value_and_grad(logps: torch.Tensor, alpha: float, weights=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise loss on the columns of a (B, 2) tensor, gradient returned as (B, 2) like the n-ary losses."""
    return _value_and_grad(lambda lp: spo_pairwise_loss(lp[:, 0], lp[:, 1], alpha, weights), logps)


def _random_logps(batch: int, n: int, seed: int, low: float = -12.0, high: float = -0.5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(batch, n, generator=generator, dtype=torch.float64)


def _random_weights(*shape: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.2 + 1.6 * torch.rand(*shape, generator=generator)


# ---------------------------------------------------------------------------------------------------------------------
# Hand-worked cases, straight from the paper's formulas
# ---------------------------------------------------------------------------------------------------------------------


def test_pairwise_hand_worked():
    chosen = torch.tensor([-1.0, -3.0])
    rejected = torch.tensor([-2.0, -0.5])
    mu = torch.tensor([1.5, 0.25])
    # Eq. (10): mu * (1/alpha) * log(1 + exp(alpha * (b - a))), alpha = 0.5.
    expected = [1.5 / 0.5 * math.log1p(math.exp(0.5 * (-2.0 + 1.0))), 0.25 / 0.5 * math.log1p(math.exp(0.5 * 2.5))]
    torch.testing.assert_close(spo_pairwise_loss(chosen, rejected, 0.5, mu), torch.tensor(expected), **FP32)
    # Eq. (11): -(mu/2) * (a - b).
    torch.testing.assert_close(spo_pairwise_loss(chosen, rejected, 0.0, mu), torch.tensor([-0.75, 0.3125]), **FP32)
    # alpha = 1, mu = 1 is the plain cross entropy of Eq. (7): -log(pi_w / (pi_w + pi_l)).
    pw, pl = math.exp(-1.0), math.exp(-2.0)
    torch.testing.assert_close(
        spo_pairwise_loss(chosen[:1], rejected[:1], 1.0), torch.tensor([-math.log(pw / (pw + pl))]), **FP32
    )


def test_best_of_n_hand_worked():
    logps = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -1.0, -2.0]])
    winner = torch.tensor([0, 2])
    mu = torch.tensor([0.5, 2.0])
    # Eq. (14) at alpha = 2: -mu * (1/alpha) * log(pi_w^alpha / sum_j pi_j^alpha).
    row0 = -0.5 / 2 * math.log(math.exp(-2.0) / (math.exp(-2.0) + math.exp(-4.0) + math.exp(-1.0)))
    row1 = -2.0 / 2 * math.log(math.exp(-4.0) / (math.exp(-6.0) + math.exp(-2.0) + math.exp(-4.0)))
    torch.testing.assert_close(spo_best_of_n_loss(logps, winner, 2.0, mu), torch.tensor([row0, row1]), **FP32)
    # alpha = 0: -mu * (logp_w - mean_j logp_j).
    expected0 = [-0.5 * (-1.0 - (-3.5 / 3)), -2.0 * (-2.0 - (-6.0 / 3))]
    torch.testing.assert_close(spo_best_of_n_loss(logps, winner, 0.0, mu), torch.tensor(expected0), **FP32)


def test_ranking_hand_worked():
    logps = torch.tensor([[-1.0, -3.0, -2.0]])  # ranked y_1 > y_2 > y_3
    weights = torch.tensor([[1.0, 0.5]])
    # Eq. (15) at alpha = 1: -(1/alpha) sum_k mu_k log(pi_k^alpha / sum_{j>=k} pi_j^alpha).
    term1 = math.log(math.exp(-1.0) / (math.exp(-1.0) + math.exp(-3.0) + math.exp(-2.0)))
    term2 = math.log(math.exp(-3.0) / (math.exp(-3.0) + math.exp(-2.0)))
    expected = -(1.0 * term1 + 0.5 * term2)
    torch.testing.assert_close(spo_ranking_loss(logps, None, 1.0, weights), torch.tensor([expected]), **FP32)
    # alpha = 0: -sum_k mu_k (logp_k - mean_{j>=k} logp_j).
    expected0 = -(1.0 * (-1.0 - (-6.0 / 3)) + 0.5 * (-3.0 - (-5.0 / 2)))
    torch.testing.assert_close(spo_ranking_loss(logps, None, 0.0, weights), torch.tensor([expected0]), **FP32)


def test_sample_scores_and_weights_hand_worked():
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -3.0], [-4.0, -4.0]])
    gamma = 0.5
    # Eq. (12): s = (pi(y_1) + pi(y_2))^gamma, mu = 2 * sigmoid(s - mean_batch(s)).
    scores = [(math.exp(a) + math.exp(b)) ** gamma for a, b in [(-1.0, -2.0), (-0.5, -3.0), (-4.0, -4.0)]]
    torch.testing.assert_close(spo_sample_scores(logps, gamma), torch.tensor(scores), **FP32)
    mean = sum(scores) / 3
    expected = [2 * _sigmoid(s - mean) for s in scores]
    torch.testing.assert_close(spo_sample_weights(logps, gamma), torch.tensor(expected), **FP32)
    # batch_mean honoured: the trainer's mean over the whole optimiser batch replaces the local one.
    expected_global = [2 * _sigmoid(s - 0.9) for s in scores]
    for batch_mean in (torch.tensor(0.9), 0.9, torch.tensor([0.9])):
        torch.testing.assert_close(
            spo_sample_weights(logps, gamma, batch_mean=batch_mean), torch.tensor(expected_global), **FP32
        )


def test_ranking_sample_weights_hand_worked():
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -4.0, 123.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    gamma, eta = 0.5, 0.5
    s11 = (math.exp(-1.0) + math.exp(-2.0) + math.exp(-3.0)) ** gamma  # row 0, suffix y_1..y_3
    s12 = (math.exp(-2.0) + math.exp(-3.0)) ** gamma  # row 0, suffix y_2..y_3
    s21 = (math.exp(-0.5) + math.exp(-4.0)) ** gamma  # row 1, suffix y_1..y_2; its term 2 has one response
    mean1, mean2 = (s11 + s21) / 2, s12  # per-term means over the rows where the term exists
    # eta^k with k = 1, 2 as indexed in Eq. (15).
    expected = [
        [eta * 2 * _sigmoid(s11 - mean1), eta**2 * 2 * _sigmoid(s12 - mean2)],
        [eta * 2 * _sigmoid(s21 - mean1), 0.0],
    ]
    mu = spo_ranking_sample_weights(logps, gamma, decay=eta, response_mask=mask)
    torch.testing.assert_close(mu, torch.tensor(expected), **FP32)
    # Each column equals Eq. (12) on that suffix, i.e. spo_sample_weights on the slice.
    column0 = spo_sample_weights(logps, gamma, response_mask=mask)
    torch.testing.assert_close(mu[:, 0], eta * column0, **FP32)
    # batch_mean honoured, per term.
    mu_global = spo_ranking_sample_weights(logps, gamma, response_mask=mask, batch_mean=torch.tensor([0.7, 0.4]))
    expected_global = [[2 * _sigmoid(s11 - 0.7), 2 * _sigmoid(s12 - 0.4)], [2 * _sigmoid(s21 - 0.7), 0.0]]
    torch.testing.assert_close(mu_global, torch.tensor(expected_global), **FP32)


# ---------------------------------------------------------------------------------------------------------------------
# Gradients: section 3, best-of-n softmax residual, Appendix A limit
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0, 3.0])
def test_pairwise_gradient_is_section_3_formula(alpha):
    logps = _random_logps(7, 2, seed=1).float()
    mu = _random_weights(7, seed=2)
    _, grad = _pairwise_value_and_grad(logps, alpha, mu)
    a, b = logps[:, 0].double(), logps[:, 1].double()
    error = torch.tensor([_sigmoid(alpha * (bi - ai)) for ai, bi in zip(a.tolist(), b.tolist(), strict=False)])
    torch.testing.assert_close(grad[:, 0], (-mu.double() * error).float(), **FP32)  # d/da = -mu sigmoid(alpha(b-a))
    torch.testing.assert_close(grad[:, 1], (mu.double() * error).float(), **FP32)  # d/db = +mu sigmoid(alpha(b-a))


@pytest.mark.parametrize("alpha", [0.01, 0.5, 2.0])
def test_best_of_n_gradient_is_softmax_residual(alpha):
    logps = _random_logps(7, 4, seed=3).float()
    winner = torch.tensor([0, 3, 1, 2, 2, 0, 3])
    mu = _random_weights(7, seed=4)
    _, grad = _value_and_grad(spo_best_of_n_loss, logps, winner, alpha, mu)
    one_hot = torch.nn.functional.one_hot(winner, 4).double()
    expected = -mu.double().unsqueeze(-1) * (one_hot - torch.softmax(alpha * logps.double(), -1))
    torch.testing.assert_close(grad, expected.float(), **FP32)


def test_alpha_zero_gradient_is_appendix_a_limit():
    logps = _random_logps(5, 4, seed=5).float()
    winner = torch.tensor([1, 0, 3, 2, 1])
    mu = _random_weights(5, seed=6)
    mu_rank = _random_weights(5, 3, seed=7)
    # App. A: sigma(alpha (b - a)) -> 1/2, so the alpha = 0 gradient is -+ mu/2.
    _, grad = _pairwise_value_and_grad(logps[:, :2], 0.0, mu)
    torch.testing.assert_close(grad, torch.stack([-mu / 2, mu / 2], -1), rtol=0, atol=0)  # exact: halving is exact
    # Best-of-n: softmax(alpha logp) -> uniform, gradient mu * (1/n - e_{i*}).
    _, grad = _value_and_grad(spo_best_of_n_loss, logps, winner, 0.0, mu)
    expected = mu.unsqueeze(-1) * (0.25 - torch.nn.functional.one_hot(winner, 4))
    torch.testing.assert_close(grad, expected, **FP32)
    # Ranking: sum_k mu_k (1/(n-k+1) on the suffix - e_k).
    _, grad = _value_and_grad(spo_ranking_loss, logps, None, 0.0, mu_rank)
    expected = torch.zeros(5, 4)
    for k in range(3):
        expected[:, k:] += mu_rank[:, k : k + 1] / (4 - k)
        expected[:, k] -= mu_rank[:, k]
    torch.testing.assert_close(grad, expected, **FP32)
    # ...and it is the numerical limit: alpha = 1e-6 gives (almost) the same gradient for all three losses. "Almost" is
    # the first-order term, ~mu * alpha * |logp gap| / 4 <= 1.8 * 1e-6 * 11.5 / 4 = 5e-6, not rounding.
    for name, small, zero in [
        (
            "pairwise",
            _pairwise_value_and_grad(logps[:, :2], 1e-6, mu),
            _pairwise_value_and_grad(logps[:, :2], 0.0, mu),
        ),
        (
            "best_of_n",
            _value_and_grad(spo_best_of_n_loss, logps, winner, 1e-6, mu),
            _value_and_grad(spo_best_of_n_loss, logps, winner, 0.0, mu),
        ),
        (
            "ranking",
            _value_and_grad(spo_ranking_loss, logps, None, 1e-6, mu_rank),
            _value_and_grad(spo_ranking_loss, logps, None, 0.0, mu_rank),
        ),
    ]:
        torch.testing.assert_close(
            small[1], zero[1], rtol=0, atol=1e-5, msg=_explain(f"{name} gradient: alpha 1e-6 vs 0")
        )


@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0, 5.0])
def test_pairwise_swap_changes_loss_by_mu_times_gap(alpha):
    # softplus(x) - softplus(-x) = x, so L(a, b) - L(b, a) = mu * (b - a) for every alpha, including Eq. (9).
    logps = _random_logps(6, 2, seed=8).float()
    mu = _random_weights(6, seed=9)
    a, b = logps[:, 0], logps[:, 1]
    gap = spo_pairwise_loss(a, b, alpha, mu) - spo_pairwise_loss(b, a, alpha, mu)
    # A difference of two fp32 losses of up to ~25 (mu / alpha * softplus): a few ulps of 25 (2e-6) each.
    torch.testing.assert_close(gap, mu * (b - a), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Naive reference on value and gradient, fp32 and bf16, odd shapes
# ---------------------------------------------------------------------------------------------------------------------

ALPHAS = [0.0, 0.01, 0.5, 1.0, 2.0]


def _check_against_reference(value, grad, ref_values, ref_grads, dtype, what: str):
    ref_values = torch.tensor(ref_values, dtype=torch.float64)
    ref_grads = torch.tensor(ref_grads, dtype=torch.float64)
    assert value.dtype == torch.float32, "losses are computed and returned in float32"
    assert grad.dtype == dtype, "the gradient flows back in the input's dtype"
    # Values: the inputs are upcast before any arithmetic, so even bf16 inputs give fp32-accurate values of the
    # (rounded) inputs; a loss computed in bf16 would miss this by ~1e-2.
    torch.testing.assert_close(
        value.double(), ref_values, rtol=2e-6, atol=1e-6, msg=_explain(f"loss vs reference, {what}")
    )
    # A bf16 gradient is rounded to 8 significant bits: up to 2^-9 = 2e-3 relative.
    tol = FP32 if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-4}
    torch.testing.assert_close(grad.double(), ref_grads, **tol, msg=_explain(f"gradient vs reference, {what}"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 7])
def test_pairwise_matches_reference(dtype, batch):
    logps = _random_logps(batch, 2, seed=10 + batch).to(dtype)
    mu = _random_weights(batch, seed=11)
    rows = logps.double().tolist()
    for alpha in ALPHAS:
        value, grad = _pairwise_value_and_grad(logps, alpha, mu)
        refs = [ref_pairwise(a, b, alpha, m) for (a, b), m in zip(rows, mu.double().tolist(), strict=False)]
        _check_against_reference(value, grad, [r[0] for r in refs], [r[1] for r in refs], dtype, f"alpha = {alpha}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (4, 4), (7, 5)])
def test_best_of_n_matches_reference(dtype, shape):
    batch, n = shape
    logps = _random_logps(batch, n, seed=20 + n).to(dtype)
    winner = torch.randint(0, n, (batch,), generator=torch.Generator().manual_seed(21))
    mu = _random_weights(batch, seed=22)
    rows = logps.double().tolist()
    for alpha in ALPHAS:
        value, grad = _value_and_grad(spo_best_of_n_loss, logps, winner, alpha, mu)
        refs = [
            ref_best_of_n(row, w, alpha, m)
            for row, w, m in zip(rows, winner.tolist(), mu.double().tolist(), strict=False)
        ]
        _check_against_reference(value, grad, [r[0] for r in refs], [r[1] for r in refs], dtype, f"alpha = {alpha}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (4, 4), (7, 5)])
def test_ranking_matches_reference(dtype, shape):
    batch, n = shape
    logps = _random_logps(batch, n, seed=30 + n).to(dtype)
    mu = _random_weights(batch, n - 1, seed=31)
    rows = logps.double().tolist()
    for alpha in ALPHAS:
        value, grad = _value_and_grad(spo_ranking_loss, logps, None, alpha, mu)
        refs = [ref_ranking(row, alpha, m) for row, m in zip(rows, mu.double().tolist(), strict=False)]
        _check_against_reference(value, grad, [r[0] for r in refs], [r[1] for r in refs], dtype, f"alpha = {alpha}")


def test_float64_inputs_stay_float64():
    logps = _random_logps(3, 3, seed=40)
    assert spo_best_of_n_loss(logps, torch.tensor([0, 1, 2]), 0.5).dtype == torch.float64
    assert spo_ranking_loss(logps, None, 0.5).dtype == torch.float64
    assert spo_pairwise_loss(logps[:, 0], logps[:, 1], 0.5).dtype == torch.float64


# ---------------------------------------------------------------------------------------------------------------------
# n = 2: best-of-n and ranking are the pairwise loss
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 1e-4, 0.01, 1.0])
def test_n2_best_of_n_and_ranking_equal_pairwise(alpha):
    logps = _random_logps(7, 2, seed=50).float()
    mu = _random_weights(7, seed=51)
    value, grad = _pairwise_value_and_grad(logps, alpha, mu)
    zeros, ones = torch.zeros(7, dtype=torch.long), torch.ones(7, dtype=torch.long)
    candidates = [
        _value_and_grad(spo_best_of_n_loss, logps, zeros, alpha, mu),
        _value_and_grad(spo_ranking_loss, logps, None, alpha, mu.unsqueeze(-1)),
    ]
    # Same pairs with the winner in the second slot.
    flipped_value, flipped_grad = _value_and_grad(spo_best_of_n_loss, logps.flip(-1), ones, alpha, mu)
    candidates.append((flipped_value, flipped_grad.flip(-1)))
    names = ["best_of_n", "ranking", "best_of_n with the winner second"]
    for name, (other_value, other_grad) in zip(names, candidates, strict=True):
        torch.testing.assert_close(other_value, value, **FP32, msg=_explain(f"{name} loss vs pairwise"))
        torch.testing.assert_close(other_grad, grad, **FP32, msg=_explain(f"{name} gradient vs pairwise"))
        if alpha == 0:  # Eq. (9) exactly, not just within tolerance
            assert torch.equal(other_value, value)


# ---------------------------------------------------------------------------------------------------------------------
# Padding: rows with different n in one batch
# ---------------------------------------------------------------------------------------------------------------------

GARBAGE = [float("nan"), float("inf"), float("-inf"), 1e4]


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_best_of_n_padding_matches_unpadded_rows(alpha):
    n_max = 5
    # Padding anywhere (best-of-n has no order), one row with a single valid response.
    masks = [
        [True, True, False, False, False],
        [True, True, True, True, True],
        [False, True, True, False, True],
        [True, False, True, True, False],
        [False, False, True, False, False],
    ]
    winners_valid = [1, 4, 2, 0, 0]  # index among the row's valid responses
    mask = torch.tensor(masks)
    logps = _random_logps(5, n_max, seed=60).float()
    padded = logps.clone()
    for row, row_mask in enumerate(masks):
        for j in range(n_max):
            if not row_mask[j]:
                padded[row, j] = GARBAGE[(row + j) % len(GARBAGE)]
    winner = torch.tensor([[j for j in range(n_max) if m[j]][w] for m, w in zip(masks, winners_valid, strict=False)])
    mu = _random_weights(5, seed=61)
    value, grad = _value_and_grad(spo_best_of_n_loss, padded, winner, alpha, mu, response_mask=mask)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()
    for row, row_mask in enumerate(masks):
        alone = logps[row][torch.tensor(row_mask)].unsqueeze(0)
        if alone.shape[-1] == 1:  # one response: no comparison, no loss
            assert value[row] == 0 and (grad[row] == 0).all()
            continue
        row_value, row_grad = _value_and_grad(
            spo_best_of_n_loss, alone, torch.tensor([winners_valid[row]]), alpha, mu[row : row + 1]
        )
        # The same fp32 ops on the same valid values, only the padding around them differs: an ulp or two.
        torch.testing.assert_close(
            value[row : row + 1],
            row_value,
            rtol=1e-6,
            atol=1e-7,
            msg=_explain(f"loss of row {row}: padded batch vs the row alone"),
        )
        torch.testing.assert_close(
            grad[row][torch.tensor(row_mask)],
            row_grad[0],
            rtol=1e-6,
            atol=1e-7,
            msg=_explain(f"gradient of row {row}: padded batch vs the row alone"),
        )


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_ranking_padding_matches_unpadded_rows(alpha):
    n_valid = [2, 5, 3, 4, 1]
    n_max = 5
    mask = torch.arange(n_max).unsqueeze(0) < torch.tensor(n_valid).unsqueeze(1)
    logps = _random_logps(5, n_max, seed=70).float()
    padded = logps.masked_fill(~mask, float("nan"))
    padded[0, 3] = float("inf")
    mu = _random_weights(5, n_max - 1, seed=71)
    # Weights of dead terms (suffix with < 2 valid responses) are ignored, even NaN.
    dead_terms = ~(torch.arange(n_max - 1).unsqueeze(0) < torch.tensor(n_valid).unsqueeze(1) - 1)
    mu_padded = mu.masked_fill(dead_terms, float("nan"))
    value, grad = _value_and_grad(spo_ranking_loss, padded, None, alpha, mu_padded, response_mask=mask)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()
    for row, valid in enumerate(n_valid):
        if valid == 1:
            assert value[row] == 0 and (grad[row] == 0).all()
            continue
        row_value, row_grad = _value_and_grad(
            spo_ranking_loss, logps[row : row + 1, :valid], None, alpha, mu[row : row + 1, : valid - 1]
        )
        # The same fp32 ops on the same valid values, only the padding around them differs: an ulp or two.
        torch.testing.assert_close(
            value[row : row + 1],
            row_value,
            rtol=1e-6,
            atol=1e-7,
            msg=_explain(f"loss of row {row}: padded batch vs the row alone"),
        )
        torch.testing.assert_close(
            grad[row, :valid],
            row_grad[0],
            rtol=1e-6,
            atol=1e-7,
            msg=_explain(f"gradient of row {row}: padded batch vs the row alone"),
        )


def test_sample_weights_ignore_padded_responses():
    logps = torch.tensor([[-1.0, -2.0, float("nan")], [-0.5, -3.0, -0.1]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    scores = spo_sample_scores(logps, 0.5, response_mask=mask)
    expected = [(math.exp(-1.0) + math.exp(-2.0)) ** 0.5, (math.exp(-0.5) + math.exp(-3.0) + math.exp(-0.1)) ** 0.5]
    torch.testing.assert_close(scores, torch.tensor(expected), **FP32)
    mu = spo_sample_weights(logps, 0.5, response_mask=mask)
    mean = sum(expected) / 2
    torch.testing.assert_close(mu, torch.tensor([2 * _sigmoid(s - mean) for s in expected]), **FP32)


# ---------------------------------------------------------------------------------------------------------------------
# Sample weight mu (Eq. 12): stop-gradient, symmetric, bounded, gamma = 0
# ---------------------------------------------------------------------------------------------------------------------


def test_sample_weights_carry_no_gradient():
    logps = _random_logps(6, 3, seed=80).float().requires_grad_(True)
    assert not spo_sample_scores(logps, 0.5).requires_grad
    assert not spo_sample_weights(logps, 0.5).requires_grad
    assert not spo_ranking_sample_weights(logps, 0.5, decay=0.5).requires_grad


def test_losses_do_not_backprop_through_weights():
    # Section 4: "gradient propagation through mu is not permitted" -- even when the caller hands over a mu that
    # is still attached to the graph, the gradient must equal the one with mu as a constant.
    logps = _random_logps(6, 3, seed=81).float()
    winner = torch.tensor([0, 1, 2, 0, 1, 2])
    cases = [
        (
            lambda lp, mu: spo_pairwise_loss(lp[:, 0], lp[:, 1], 0.5, mu),
            lambda lp: 2 * torch.sigmoid(0.2 * lp.sum(-1) + 3),
        ),
        (lambda lp, mu: spo_best_of_n_loss(lp, winner, 0.5, mu), lambda lp: 2 * torch.sigmoid(0.2 * lp.sum(-1) + 3)),
        (
            lambda lp, mu: spo_ranking_loss(lp, None, 0.5, mu),
            lambda lp: 2 * torch.sigmoid(0.2 * (lp[:, 1:] + lp[:, :1]) + 2),
        ),
    ]
    for loss_fn, make_mu in cases:
        attached = logps.clone().requires_grad_(True)
        loss_fn(attached, make_mu(attached)).sum().backward()
        constant = logps.clone().requires_grad_(True)
        loss_fn(constant, make_mu(constant).detach()).sum().backward()
        # Exact: the same arithmetic on the same values; only the graph differs.
        torch.testing.assert_close(attached.grad, constant.grad, rtol=0, atol=0)
        # ...and the gradient does differ from the one through mu, so this check can fail.
        through = logps.clone().requires_grad_(True)
        mu = make_mu(through)
        (loss_fn(through, mu.detach()).sum() * mu.sum() / mu.sum().detach()).backward()
        assert not torch.allclose(through.grad, constant.grad, atol=1e-3)


def test_sample_weights_symmetric_and_bounded():
    logps = _random_logps(8, 4, seed=82, low=-3.0, high=-0.05).float()
    gamma = 2.0  # large enough to spread mu well away from 1
    mu = spo_sample_weights(logps, gamma)
    assert ((mu > 0) & (mu < 2)).all()
    assert mu.max() - mu.min() > 0.05
    for permutation in itertools.permutations(range(4)):
        torch.testing.assert_close(spo_sample_weights(logps[:, list(permutation)], gamma), mu, **FP32)
    # Ranking: mu_k depends on the suffix as a set -- permuting responses inside the suffix y_k..y_n keeps mu_k.
    mu_rank = spo_ranking_sample_weights(logps, gamma)
    assert ((mu_rank > 0) & (mu_rank < 2)).all()
    shuffled = logps[:, [0, 3, 1, 2]]
    torch.testing.assert_close(spo_ranking_sample_weights(shuffled, gamma)[:, :2], mu_rank[:, :2], **FP32)


def test_gamma_zero_gives_exactly_ones():
    logps = _random_logps(5, 3, seed=83).float()
    assert torch.equal(spo_sample_weights(logps, 0.0), torch.ones(5))
    assert torch.equal(spo_sample_weights(logps, 0.0, batch_mean=torch.tensor(7.0)), torch.ones(5))
    assert torch.equal(spo_sample_scores(logps, 0.0), torch.ones(5))
    assert torch.equal(spo_ranking_sample_weights(logps, 0.0), torch.ones(5, 2))
    # With decay, gamma = 0 leaves eta^k, k = 1..n-1 (Eq. 15's indexing).
    assert torch.equal(spo_ranking_sample_weights(logps, 0.0, decay=0.5), torch.tensor([[0.5, 0.25]] * 5))
    # gamma = 0 with a -inf log-prob (an impossible response) must not give 0 * -inf = NaN.
    logps[0] = float("-inf")
    assert torch.equal(spo_sample_weights(logps, 0.0), torch.ones(5))


# ---------------------------------------------------------------------------------------------------------------------
# Extreme numerics: log-probs of -5000, tiny alpha, fp32 and bf16
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("alpha", [1e-4, 1.0])
def test_extreme_logps(dtype, alpha):
    logps = torch.tensor([[-5000.0, -5003.5, -4998.25, -5012.0], [-4990.0, -5000.0, -5100.0, -5001.0]]).to(dtype)
    winner = torch.tensor([0, 3])
    mu = torch.tensor([0.7, 1.3])
    mu_rank = torch.tensor([[1.0, 0.5, 0.25], [1.2, 0.8, 0.3]])
    rows = logps.double().tolist()  # the references see exactly the (rounded) inputs
    cases = [
        (
            _pairwise_value_and_grad(logps[:, :2], alpha, mu),
            [ref_pairwise(r[0], r[1], alpha, m) for r, m in zip(rows, mu.tolist(), strict=False)],
        ),
        (
            _value_and_grad(spo_best_of_n_loss, logps, winner, alpha, mu),
            [ref_best_of_n(r, w, alpha, m) for r, w, m in zip(rows, winner.tolist(), mu.tolist(), strict=False)],
        ),
        (
            _value_and_grad(spo_ranking_loss, logps, None, alpha, mu_rank),
            [ref_ranking(r, alpha, m) for r, m in zip(rows, mu_rank.tolist(), strict=False)],
        ),
    ]
    for name, ((value, grad), refs) in zip(["pairwise", "best_of_n", "ranking"], cases, strict=True):
        assert torch.isfinite(value).all() and torch.isfinite(grad).all(), name
        ref_values = torch.tensor([r[0] for r in refs], dtype=torch.float64)
        ref_grads = torch.tensor([r[1] for r in refs], dtype=torch.float64)
        # Differences to the winner are exact even at -5000, so values are accurate to fp32 *relative* precision
        # (at alpha = 1 a logsumexp of raw log-probs would be off by ~5e-4 here).
        torch.testing.assert_close(
            value.double(), ref_values, rtol=1e-6, atol=1e-6, msg=_explain(f"{name} loss vs reference")
        )
        tol = FP32 if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-6}  # bf16 gradient: 8 significant bits
        torch.testing.assert_close(grad.double(), ref_grads, **tol, msg=_explain(f"{name} gradient vs reference"))
    # The sample weights stay finite: s = exp(gamma * logsumexp) underflows gracefully, never overflows.
    mu_values = spo_sample_weights(logps, 0.01)
    assert torch.isfinite(mu_values).all() and ((mu_values > 0) & (mu_values < 2)).all()
    assert torch.isfinite(spo_ranking_sample_weights(logps, 0.01, decay=0.5)).all()


def test_confident_rows_keep_relative_precision():
    # A confident winner gives a tiny loss, log(1 + e^-29) ~ 2.5e-13: log1p keeps it, log(1 + tiny) would return 0.
    # For n = 2 the three losses must agree with the softplus of Eq. (8) to relative precision.
    logps = torch.tensor([[-1.0, -30.0], [-2.0, -20.5]])
    expected = torch.tensor([math.log1p(math.exp(-29.0)), math.log1p(math.exp(-18.5))])
    # Relative precision, atol = 0: a few fp32 ops of <= 1 ulp each, ~1e-6; log(1 + tiny) would be off by 100%.
    for value in (
        spo_pairwise_loss(logps[:, 0], logps[:, 1], 1.0),
        spo_best_of_n_loss(logps, torch.zeros(2, dtype=torch.long), 1.0),
        spo_ranking_loss(logps, None, 1.0),
    ):
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=0)
    three = torch.tensor([[-1.0, -30.0, -40.0]])
    expected3 = math.log1p(math.exp(-29.0) + math.exp(-39.0)) + math.log1p(math.exp(-10.0))
    torch.testing.assert_close(spo_ranking_loss(three, None, 1.0), torch.tensor([expected3]), rtol=1e-5, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Tabular fixed points: Theorems 1-4, the minimiser is Softmax(r / alpha)
# ---------------------------------------------------------------------------------------------------------------------

REWARDS_5 = torch.tensor([0.8, 0.3, 0.0, -0.6, -1.0], dtype=torch.float64)
REWARDS_4 = torch.tensor([0.7, 0.2, -0.3, -0.9], dtype=torch.float64)


def _minimise(objective, num_responses: int, fixed: bool) -> torch.Tensor:
    """Minimise `objective(logp)` over a tabular softmax policy; return its probabilities.

    A fixed objective is minimised with LBFGS; a gamma > 0 one recomputes mu from the current policy at every step,
    i.e. follows the ODE of Theorems 2-4, so it takes plain first-order steps (Adam).
    """
    logits = torch.randn(num_responses, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    logits.requires_grad_(True)
    if fixed:
        optimiser = torch.optim.LBFGS(
            [logits], lr=1, max_iter=500, line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-16
        )

        def closure():
            optimiser.zero_grad()
            loss = objective(torch.log_softmax(logits, -1))
            loss.backward()
            return loss

        optimiser.step(closure)
    else:
        optimiser = torch.optim.Adam([logits], lr=0.1)
        for _ in range(200):
            optimiser.zero_grad()
            objective(torch.log_softmax(logits, -1)).backward()
            optimiser.step()
    return torch.softmax(logits.detach(), -1)


def _assert_softmax_fixed_point(probs: torch.Tensor, rewards: torch.Tensor, alpha: float) -> None:
    # Convergence, not rounding (float64): the minimisers land within 1e-5 of the target; a wrong fixed point, e.g.
    # Softmax(r) instead of Softmax(r / alpha), is off by > 0.05.
    target = torch.softmax(rewards / alpha, -1)
    assert (probs - target).abs().max() < 1e-3, (
        f"found {probs.tolist()}, expected Softmax(r/alpha) = {target.tolist()}"
    )


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_theorems_1_2_pairwise_fixed_point(alpha, gamma):
    pairs = torch.tensor([(i, j) for i in range(5) for j in range(5) if i != j])
    first, second = pairs[:, 0], pairs[:, 1]
    # Full-support, non-uniform pair distribution consistent with BT: D(i, j) = c_ij * sigmoid(r_i - r_j), c symmetric.
    pair_rate = 1.0 + 0.5 * ((first + second) % 3).double()
    d = pair_rate * torch.sigmoid(REWARDS_5[first] - REWARDS_5[second])

    def objective(logp):
        chosen, rejected = logp[first], logp[second]
        # Theorem 2: mu recomputed from the current policy at every step, never differentiated.
        mu = spo_sample_weights(torch.stack([chosen, rejected], -1), gamma) if gamma else None
        return (d * spo_pairwise_loss(chosen, rejected, alpha, mu)).sum()

    _assert_softmax_fixed_point(_minimise(objective, 5, fixed=gamma == 0), REWARDS_5, alpha)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_theorem_3_best_of_n_fixed_point(alpha, gamma):
    # Full support over Y^3 x {winner}, consistent with the 3-ary BT model: P(winner = i | set) = softmax(r[set])_i.
    sets = torch.tensor(list(itertools.product(range(4), repeat=3)))
    rows = sets.repeat_interleave(3, dim=0)
    winner = torch.arange(3).repeat(len(sets))
    d = torch.softmax(REWARDS_4[sets], -1).flatten()

    def objective(logp):
        row_logps = logp[rows]
        mu = spo_sample_weights(row_logps, gamma) if gamma else None
        return (d * spo_best_of_n_loss(row_logps, winner, alpha, mu)).sum()

    _assert_softmax_fixed_point(_minimise(objective, 4, fixed=gamma == 0), REWARDS_4, alpha)


@pytest.mark.parametrize(("gamma", "decay"), [(0.0, 1.0), (2.0, 0.5)])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_theorem_4_ranking_fixed_point(alpha, gamma, decay):
    # Every ordered triple in Y^3 is a ranking y_1 > y_2 > y_3 with its Plackett-Luce probability, Eq. (3).
    rankings = torch.tensor(list(itertools.product(range(4), repeat=3)))
    r = REWARDS_4[rankings]
    d = torch.ones(len(rankings), dtype=torch.float64)
    for k in range(2):
        d = d * torch.softmax(r[:, k:], -1)[:, 0]

    def objective(logp):
        row_logps = logp[rankings]
        mu = spo_ranking_sample_weights(row_logps, gamma, decay=decay) if gamma else None
        return (d * spo_ranking_loss(row_logps, None, alpha, mu)).sum()

    _assert_softmax_fixed_point(_minimise(objective, 4, fixed=gamma == 0), REWARDS_4, alpha)


# ---------------------------------------------------------------------------------------------------------------------
# Registry and validation
# ---------------------------------------------------------------------------------------------------------------------


def test_batch_mean_per_column_over_valid_entries_and_across_processes():
    scores = torch.tensor([[1.0, 4.0], [3.0, 0.0], [5.0, 2.0]], dtype=torch.float64)
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    # By hand, exact in binary: column 0 (1 + 3 + 5) / 3, column 1 (4 + 2) / 2.
    assert spo_batch_mean(scores, valid).tolist() == [3.0, 3.0]
    assert spo_batch_mean(scores[:, 0]).item() == 3.0  # one score per row: a scalar mean
    # Across processes: another process holds one row with one term; its totals are padded and summed.
    other = torch.tensor([[7.0], [1.0]], dtype=torch.float64)  # (totals, counts) of one column

    def sum_across_processes(totals):
        padded = torch.zeros(2, 2, dtype=totals.dtype)
        padded[:, :1] = other
        return totals + padded

    assert spo_batch_mean(scores, valid, sum_across_processes).tolist() == [4.0, 3.0]  # (9 + 7) / 4, 6 / 2
    assert spo_batch_mean(torch.zeros(2, 1), torch.zeros(2, 1, dtype=torch.bool)).tolist() == [0.0]  # no entry


def test_registry_has_one_signature_and_pairs_are_best_of_two():
    assert PREFERENCE_LOSSES == {
        "pairwise": spo_pairwise_grid_loss,
        "best_of_n": spo_best_of_n_loss,
        "ranking": spo_ranking_loss,
    }
    # Every loss is called the same way: (logps (B, n), winner_index (B,), alpha, weights, response_mask).
    logps = torch.tensor([[-3.0, -5.0, -4.0], [-2.0, -1.0, -6.0]], dtype=torch.float64)
    winners = torch.zeros(2, dtype=torch.long)
    weights = {"pairwise": torch.tensor([1.5, 0.5]), "best_of_n": torch.tensor([1.5, 0.5])}
    weights["ranking"] = torch.tensor([[1.5, 1.0], [0.5, 1.0]])
    for name, fn in PREFERENCE_LOSSES.items():
        grid = logps[:, :2] if name == "pairwise" else logps
        value = fn(grid, winners, 0.5, weights[name], torch.ones_like(grid, dtype=torch.bool))
        assert value.shape == (2,), name
    # Pairs through the registry are Eq. 8 itself, bit for bit, with the winner in either column; and equal to
    # Eq. 14 at n = 2 (float64: the two forms agree to rounding, ~1e-16 relative).
    pairwise = PREFERENCE_LOSSES["pairwise"](logps[:, :2], winners, 0.5, weights["pairwise"], None)
    eq8 = spo_pairwise_loss(logps[:, 0], logps[:, 1], 0.5, weights["pairwise"])
    assert torch.equal(pairwise, eq8)
    swapped = PREFERENCE_LOSSES["pairwise"](logps[:, [1, 0]], 1 - winners, 0.5, weights["pairwise"], None)
    assert torch.equal(swapped, eq8)
    best_of_two = spo_best_of_n_loss(logps[:, :2], winners, 0.5, weights["pairwise"])
    torch.testing.assert_close(pairwise, best_of_two, rtol=1e-14, atol=0)
    # No checks inside (the inputs are checked where they enter, see test_config, test_data and test_baselines): what
    # a check used to refuse, a ranking whose winner is not its first response, is simply not read.
    torch.testing.assert_close(
        spo_ranking_loss(logps, torch.tensor([0, 2]), 0.5), spo_ranking_loss(logps, None, 0.5), rtol=0, atol=0
    )


# ---------------------------------------------------------------------------------------------------------------------
# Comparison baselines


def test_dpo_softmax_loss_matches_the_s_dpo_formula():
    from trl_spo.losses import dpo_softmax_loss

    policy = torch.tensor([[-3.0, -1.5, -4.0]], requires_grad=True)
    reference = torch.tensor([[-2.0, -2.5, -3.0]])
    beta, winner = 0.5, 1
    h = [p - r for p, r in zip(policy[0].tolist(), reference[0].tolist(), strict=False)]
    # S-DPO (Chen et al. 2024): -log sigmoid(-log sum_{j != w} exp(beta (h_j - h_w)))
    inner = sum(math.exp(beta * (h[j] - h[winner])) for j in range(3) if j != winner)
    expected = -math.log(1 / (1 + math.exp(math.log(inner))))
    loss = dpo_softmax_loss(policy, reference, torch.tensor([winner]), beta)
    assert loss.item() == pytest.approx(expected, rel=1e-6)  # a few fp32 ops on 3 values vs float64: a few ulps
    loss.sum().backward()
    assert policy.grad[0, winner] < 0 and (policy.grad[0, [0, 2]] > 0).all()


def test_dpo_plackett_luce_loss_matches_the_dpo_appendix_formula():
    from trl_spo.losses import dpo_plackett_luce_loss

    policy = torch.tensor([[-1.0, -2.0, -0.5, -3.0]])
    reference = torch.tensor([[-1.5, -1.0, -1.0, -2.0]])
    beta = 0.3
    h = [p - r for p, r in zip(policy[0].tolist(), reference[0].tolist(), strict=False)]
    # DPO paper App. A.3: -log prod_k exp(beta h_k) / sum_{j >= k} exp(beta h_j)
    expected = -sum(beta * h[k] - math.log(sum(math.exp(beta * h[j]) for j in range(k, 4))) for k in range(4))
    # A few fp32 ops on 4 values vs float64: a few ulps.
    assert dpo_plackett_luce_loss(policy, reference, beta).item() == pytest.approx(expected, rel=1e-6)
