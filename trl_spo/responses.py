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
The response grid: sequence log-probs of a batch arranged as `(B, n)` in labelled order, the input of every preference
loss (`trl_spo.losses.PREFERENCE_LOSSES`).
"""

import torch


def scatter_sequence_logps(
    logps: torch.Tensor,
    row_index: torch.Tensor,
    response_index: torch.Tensor,
    num_rows: int,
    max_responses: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Place per-sequence log-probs into the padded (row, response) grid that the n-ary losses take.

    Args:
        logps (`torch.Tensor`):
            Sequence log-probs, shape `(N,)`, one per sequence of `DataCollatorForNaryPreference`'s batch.
        row_index (`torch.Tensor`):
            Row of each sequence, integer tensor of shape `(N,)`, in [0, num_rows).
        response_index (`torch.Tensor`):
            Index of each sequence in its row's `completions`, integer tensor of shape `(N,)`, in [0, max_responses).
            Each (row, response) slot must be given at most once.
        num_rows (`int`):
            B, the number of rows.
        max_responses (`int`):
            n_max, the width of the grid (e.g. `num_responses.max()`, or `ranking.size(1)`).

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`:
        - `values`: shape `(B, n_max)`, dtype of `logps`; slot `(row_index[s], response_index[s])` holds `logps[s]`,
          other slots 0. Differentiable with respect to `logps`.
        - `response_mask`: bool, shape `(B, n_max)`, True on the filled slots (a prefix of each row for the
          collator's batches).
    """
    if logps.dim() != 1 or row_index.shape != logps.shape or response_index.shape != logps.shape:
        raise ValueError(
            f"`logps`, `row_index` and `response_index` must all have shape (N,); found {tuple(logps.shape)}, "
            f"{tuple(row_index.shape)} and {tuple(response_index.shape)}."
        )
    slots = (row_index.long(), response_index.long())
    # Out of place, so autograd routes each slot's gradient back to its sequence.
    values = logps.new_zeros((num_rows, max_responses)).index_put(slots, logps)
    response_mask = torch.zeros((num_rows, max_responses), dtype=torch.bool, device=logps.device)
    response_mask = response_mask.index_put(slots, torch.ones_like(logps, dtype=torch.bool))
    return values, response_mask


def order_by_ranking(values: torch.Tensor, ranking: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Reorder each row of the response grid from best to worst, as `spo_ranking_loss` expects.

    Args:
        values (`torch.Tensor`):
            Per-response values in the rows' `completions` order, shape `(B, n)` (e.g. from `scatter_sequence_logps`).
        ranking (`torch.Tensor`):
            Integer tensor of shape `(B, n)`: response indices from best to worst, padded at the end with -1 (as
            `DataCollatorForNaryPreference` returns it).

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`:
        - `ordered`: shape `(B, n)`, `ordered[b, k] = values[b, ranking[b, k]]`, 0 where `ranking` is -1.
          Differentiable with respect to `values`.
        - `response_mask`: bool, shape `(B, n)`, `ranking >= 0`: a valid prefix of each row.
    """
    if values.dim() != 2 or ranking.shape != values.shape:
        raise ValueError(
            f"`values` and `ranking` must both have shape (B, n); found {tuple(values.shape)} and "
            f"{tuple(ranking.shape)}."
        )
    response_mask = ranking >= 0
    # Padding indices are clamped to a real slot for the gather, then masked: no out-of-range index, no gradient.
    ordered = values.gather(1, ranking.long().clamp(min=0))
    return torch.where(response_mask, ordered, torch.zeros_like(ordered)), response_mask


def response_grid(
    sequence_logps: torch.Tensor, batch: dict[str, torch.Tensor], preference_format: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    A batch's sequence log-probs in labelled order, the shared input of the preference losses.

    Args:
        sequence_logps (`torch.Tensor`, shape `(N,)`): one log-prob per sequence of the collated batch.
        batch (`dict`): the collated batch: `[chosen; rejected]` rows for pairs (`DataCollatorForPreference`), or the
            flattened `(row, response)` pairs of `DataCollatorForNaryPreference` with `row_index`, `response_index`,
            `num_responses` and the label (`best_index` or `ranking`).
        preference_format (`str`): `"pairwise"`, `"best_of_n"` or `"ranking"`.

    Returns:
        `(logps, response_mask, winner_index)`: `(B, n)` log-probs, `(B, n)` bool mask of the responses that exist,
        `(B,)` column of each row's labelled best response. Columns are `[chosen, rejected]` for pairs, best to
        worst for rankings (winner 0), dataset order for best-of-n.
    """
    if preference_format == "pairwise":
        grid = torch.stack(sequence_logps.chunk(2, dim=0), dim=1)
        winners = torch.zeros(grid.size(0), dtype=torch.long, device=grid.device)
        return grid, torch.ones_like(grid, dtype=torch.bool), winners
    num_rows = batch["num_responses"].size(0)
    if preference_format == "ranking":
        ranking = batch["ranking"]
        grid, _ = scatter_sequence_logps(
            sequence_logps, batch["row_index"], batch["response_index"], num_rows, ranking.size(1)
        )
        grid, mask = order_by_ranking(grid, ranking)
        return grid, mask, torch.zeros(num_rows, dtype=torch.long, device=grid.device)
    # The collator's `response_mask` gives the grid's width as a shape; without it, reading n_max is a host sync.
    width = batch["response_mask"].size(1) if "response_mask" in batch else int(batch["num_responses"].max())
    grid, mask = scatter_sequence_logps(sequence_logps, batch["row_index"], batch["response_index"], num_rows, width)
    return grid, mask, batch["best_index"]


def sum_per_row(per_sequence: torch.Tensor, batch: dict[str, torch.Tensor], preference_format: str) -> torch.Tensor:
    """
    Sum a per-sequence quantity `(N,)` over each row's responses, `(B,)`: chosen + rejected for pairs, the flattened
    `(row, response)` sequences of a row for n-ary batches.
    """
    if preference_format == "pairwise":
        chosen, rejected = per_sequence.chunk(2, dim=0)
        return chosen + rejected
    num_rows = batch["num_responses"].size(0)
    return per_sequence.new_zeros(num_rows).index_add_(0, batch["row_index"], per_sequence)
