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

"""The logged metrics: reduced per row, so that an uneven last eval batch counts every row once."""

from types import SimpleNamespace

import pytest
import torch

from trl_spo.metrics import SPOTerms, preference_metrics


def pairwise_terms(num_rows: int, seed: int = 0) -> tuple[SPOTerms, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    length = 6
    completion_mask = torch.zeros(2 * num_rows, length, dtype=torch.long)
    for row in range(2 * num_rows):
        completion_mask[row, 2 : 3 + row % 4] = 1  # completions of 1 to 4 tokens after a 2-token prompt

    def per_token():
        return torch.rand(2 * num_rows, length - 1, generator=generator)

    outputs = SimpleNamespace(entropy=per_token(), mean_logits=per_token(), is_top1=per_token() > 0.5)
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
    outputs = SimpleNamespace(**{k: v[sequences] for k, v in vars(terms.outputs).items()})
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
