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

"""The response grid: sequence log-probs of a collated batch arranged as (B, n) in labelled order."""

import pytest
import torch

from trl_spo.data import DataCollatorForNaryPreference
from trl_spo.losses import spo_best_of_n_loss, spo_ranking_loss
from trl_spo.responses import order_by_ranking, response_grid, scatter_sequence_logps, sum_per_row


def grid_inputs():
    batch = DataCollatorForNaryPreference(pad_token_id=0)(
        [
            {"prompt_ids": [1], "completions_ids": [[2]] * 3, "ranking": [2, 0, 1]},
            {"prompt_ids": [1], "completions_ids": [[2]] * 2, "ranking": [1, 0]},
            {"prompt_ids": [1], "completions_ids": [[2]] * 4, "ranking": [3, 1, 0, 2]},
        ]
    )
    logps = torch.tensor([-3.0, -1.5, -7.0, -2.0, -4.0, -0.5, -6.0, -2.5, -9.0], dtype=torch.float64)
    return batch, logps.requires_grad_()


def test_scatter_sequence_logps_places_and_masks():
    batch, logps = grid_inputs()
    values, mask = scatter_sequence_logps(logps, batch["row_index"], batch["response_index"], 3, 4)
    assert values.dtype == torch.float64
    assert values.tolist() == [[-3.0, -1.5, -7.0, 0.0], [-2.0, -4.0, 0.0, 0.0], [-0.5, -6.0, -2.5, -9.0]]
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[True, True, True, False], [True, True, False, False], [True, True, True, True]]
    # Each sequence receives exactly the gradient of its slot (exact: scattering copies values and gradients).
    slot_weights = torch.arange(12, dtype=torch.float64).view(3, 4)
    (values * slot_weights).sum().backward()
    assert logps.grad.tolist() == slot_weights[batch["row_index"], batch["response_index"]].tolist()


def test_order_by_ranking_and_losses_match_rows_alone():
    batch, logps = grid_inputs()
    values, mask = scatter_sequence_logps(logps, batch["row_index"], batch["response_index"], 3, 4)
    ordered, ordered_mask = order_by_ranking(values, batch["ranking"])
    assert ordered.tolist() == [[-7.0, -3.0, -1.5, 0.0], [-4.0, -2.0, 0.0, 0.0], [-9.0, -6.0, -0.5, -2.5]]
    assert ordered_mask.tolist() == mask.tolist()  # already a valid prefix of each row
    alpha = 0.5
    loss = spo_ranking_loss(ordered, None, alpha, response_mask=ordered_mask)
    (grad,) = torch.autograd.grad(loss.sum(), logps)

    # float64, the same row padded in the grid vs alone: ~1e-16 apart; the float64 defaults (1e-7) are ample.
    expected_grad = torch.zeros_like(logps)
    for row, n in enumerate(batch["num_responses"].tolist()):
        alone = logps.detach()[batch["row_index"] == row].clone().requires_grad_()
        ranking = batch["ranking"][row, :n]
        row_loss = spo_ranking_loss(alone[ranking].unsqueeze(0), None, alpha)
        torch.testing.assert_close(
            loss[row], row_loss[0], msg=lambda m, row=row: f"loss of row {row}: grid vs alone. {m}"
        )
        expected_grad[batch["row_index"] == row] = torch.autograd.grad(row_loss.sum(), alone)[0]
    torch.testing.assert_close(grad, expected_grad, msg=lambda m: f"gradient: grid vs each row alone. {m}")


def test_best_of_n_loss_on_scattered_grid_matches_rows_alone():
    batch, logps = grid_inputs()
    best_index = batch["ranking"][:, 0]  # what ranking_to_best_of_n keeps
    values, mask = scatter_sequence_logps(logps, batch["row_index"], batch["response_index"], 3, 4)
    loss = spo_best_of_n_loss(values, best_index, 0.1, response_mask=mask)
    for row in range(len(best_index)):
        alone = logps.detach()[batch["row_index"] == row].unsqueeze(0)
        # float64, the same row padded vs alone: ~1e-16 apart; the float64 defaults (1e-7) are ample.
        torch.testing.assert_close(
            loss[row],
            spo_best_of_n_loss(alone, best_index[row : row + 1], 0.1)[0],
            msg=lambda m, row=row: f"loss of row {row}: grid vs alone. {m}",
        )


def test_order_by_ranking_padding_gets_no_gradient():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, float("nan")]], requires_grad=True)
    ranking = torch.tensor([[2, 0, 1], [1, 0, -1]])
    ordered, mask = order_by_ranking(values, ranking)
    assert ordered.tolist() == [[3.0, 1.0, 2.0], [5.0, 4.0, 0.0]]
    assert mask.tolist() == [[True, True, True], [True, True, False]]
    ordered.sum().backward()
    assert values.grad.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]


def test_grid_shape_errors():
    with pytest.raises(ValueError, match=r"shape \(N,\); found \(2, 1\)"):
        scatter_sequence_logps(torch.zeros(2, 1), torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1), 1, 1)
    with pytest.raises(ValueError, match=r"both have shape \(B, n\); found \(2, 3\) and \(2, 2\)"):
        order_by_ranking(torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.long))


def test_response_grid_per_format_and_sum_per_row():
    batch, logps = grid_inputs()
    grid, mask, winners = response_grid(logps, batch, "ranking")
    assert grid.tolist() == [[-7.0, -3.0, -1.5, 0.0], [-4.0, -2.0, 0.0, 0.0], [-9.0, -6.0, -0.5, -2.5]]
    assert winners.tolist() == [0, 0, 0]  # best first
    best_of_n = dict(batch, best_index=batch["ranking"][:, 0])
    grid, mask, winners = response_grid(logps, best_of_n, "best_of_n")
    assert grid.tolist() == [[-3.0, -1.5, -7.0, 0.0], [-2.0, -4.0, 0.0, 0.0], [-0.5, -6.0, -2.5, -9.0]]
    assert winners.tolist() == batch["ranking"][:, 0].tolist()
    # Exact: sums of a few small binary fractions.
    assert sum_per_row(logps.detach(), batch, "ranking").tolist() == [-11.5, -6.0, -18.0]
    pairs = torch.tensor([-1.0, -2.0, -3.0, -4.0])  # [chosen; rejected] of 2 rows
    grid, mask, winners = response_grid(pairs, {}, "pairwise")
    assert grid.tolist() == [[-1.0, -3.0], [-2.0, -4.0]] and mask.all() and winners.tolist() == [0, 0]
    assert sum_per_row(pairs, {}, "pairwise").tolist() == [-4.0, -6.0]
