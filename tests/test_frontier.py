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

"""The maximum-entropy frontier (`benchmarks.frontier`): its math, and the report built from runs' JSON."""

import json
import math

import pytest
import torch

from benchmarks.answers_task import REWARD_LADDER
from benchmarks.frontier import (
    dpo_fixed_point,
    entropy,
    expected_reward,
    frontier_entropy,
    frontier_summary,
    headlines,
    kl_divergence,
    matched_comparisons,
    report,
)


REWARDS = torch.tensor(REWARD_LADDER, dtype=torch.float64)


def dense_frontier(rewards: torch.Tensor, target: float) -> float:
    """An independent frontier: Softmax(lambda r) on a fine lambda grid, linearly interpolated at the target E[r]."""
    grid = torch.linspace(-60, 60, 400_001, dtype=torch.float64)
    probs = torch.softmax(grid[:, None] * rewards, -1)
    means, entropies = expected_reward(probs, rewards), entropy(probs)
    index = int(torch.searchsorted(means, torch.tensor(target, dtype=torch.float64)))
    weight = (target - means[index - 1]) / (means[index] - means[index - 1])
    return (entropies[index - 1] + weight * (entropies[index] - entropies[index - 1])).item()


@pytest.mark.parametrize("alpha", [0.2, 0.5, 1.0, 3.0, -2.0])
def test_softmax_of_the_reward_is_on_the_frontier(alpha):
    target = torch.softmax(REWARDS / alpha, -1)
    # Bisection to float64 resolution on lambda; entropy's slope in E[r] is -lambda, so 1e-9 is loose.
    assert frontier_entropy(REWARDS, expected_reward(target, REWARDS)).item() == pytest.approx(
        entropy(target).item(), abs=1e-9
    )


@pytest.mark.parametrize("target", [-0.8, 0.0, 0.25, 0.7, 1.2, 1.45])
def test_frontier_matches_an_independent_dense_grid(target):
    # The grid's spacing (3e-4 in lambda) and linear interpolation bound the reference value's error by ~1e-6.
    assert frontier_entropy(REWARDS, torch.tensor(target)).item() == pytest.approx(
        dense_frontier(REWARDS, target), abs=1e-5
    )


def test_frontier_ends_and_middle():
    assert frontier_entropy(REWARDS, torch.tensor(REWARDS.mean().item())).item() == pytest.approx(
        math.log(6), abs=1e-9
    )
    # At the best (or worst) reward only that answer remains: entropy 0 (the bisection's ends leave ~1e-300 mass).
    assert frontier_entropy(REWARDS, torch.tensor(1.5)).item() == pytest.approx(0.0, abs=1e-9)
    assert frontier_entropy(REWARDS, torch.tensor(-1.0)).item() == pytest.approx(0.0, abs=1e-9)


def test_no_distribution_has_more_entropy_than_the_frontier_at_its_reward():
    with torch.random.fork_rng():  # seeded draws, without moving the session's global RNG
        torch.manual_seed(0)
        draws = [
            torch.distributions.Dirichlet(torch.full((6,), concentration, dtype=torch.float64)).sample((200,))
            for concentration in (0.1, 1.0, 10.0)
        ]
    for probs in draws:
        deficits = frontier_entropy(REWARDS, expected_reward(probs, REWARDS)) - entropy(probs)
        # Gibbs: the deficit is >= 0 exactly; -1e-9 allows the bisection's float64 rounding only.
        assert deficits.min().item() >= -1e-9, deficits.min().item()
        log_probs = probs.clamp_min(1e-300).log()
        assert frontier_summary(log_probs, log_probs, REWARDS)["deficit"] >= 0


def test_dpo_fixed_point_and_its_deficit():
    # From a uniform reference, DPO's fixed point is Softmax(r / beta): on the frontier.
    uniform = torch.full((1, 6), -math.log(6), dtype=torch.float64)
    point = dpo_fixed_point(uniform, REWARDS, 1.0)
    torch.testing.assert_close(point.exp(), torch.softmax(REWARDS, -1)[None], rtol=0, atol=1e-12)
    assert frontier_summary(point, uniform, REWARDS)["deficit"] == pytest.approx(0.0, abs=1e-9)
    # From a reference that favours the reward-0 answer, it inherits that preference: below the frontier. The values
    # are recomputed here from the definitions (pi_ref exp(r / beta) by hand, the dense grid's frontier).
    skewed = torch.tensor([[0.1, 0.1, 0.1, 0.5, 0.1, 0.1]], dtype=torch.float64).log()
    by_hand = torch.tensor([0.1, 0.1, 0.1, 0.5, 0.1, 0.1], dtype=torch.float64) * REWARDS.exp()
    by_hand = by_hand / by_hand.sum()
    summary = frontier_summary(dpo_fixed_point(skewed, REWARDS, 1.0), skewed, REWARDS)
    assert summary["expected_reward"] == pytest.approx(expected_reward(by_hand, REWARDS).item(), abs=1e-12)
    expected_deficit = dense_frontier(REWARDS, summary["expected_reward"]) - entropy(by_hand).item()
    assert summary["deficit"] == pytest.approx(expected_deficit, abs=1e-5)
    assert summary["deficit"] > 0.15  # the docs' prediction (0.175) rests on this being far from 0


def test_summary_conditions_on_the_set_and_reads_the_mass():
    conditional = torch.tensor([[0.4, 0.3, 0.1, 0.1, 0.05, 0.05]], dtype=torch.float64)
    # Half the probability outside the set: the mass is 0.5, every other figure is the conditional's.
    summary = frontier_summary((0.5 * conditional).log(), conditional.log(), REWARDS)
    assert summary["mass"] == pytest.approx(0.5, abs=1e-12)
    assert summary["entropy"] == pytest.approx(entropy(conditional).item(), abs=1e-12)
    assert summary["kl_to_reference"] == pytest.approx(0.0, abs=1e-12)
    other = torch.full((1, 6), 1 / 6, dtype=torch.float64)
    by_hand = (conditional * (conditional / other).log()).sum().item()
    assert kl_divergence(conditional.log(), other.log()).item() == pytest.approx(by_hand, abs=1e-12)


def fake_run(categories: list[str], answer_weights, runs: list[tuple[dict, torch.Tensor]], reference: torch.Tensor):
    """A run's JSON in `bench answers`' layout, with only what the report reads."""
    splits = ("train", "heldout_template", "heldout_category")
    return {
        "config": {
            "reference": {"answer_weights": answer_weights},
            "task": {"reward_ladder": list(REWARD_LADDER), "train_categories": [{"noun": c} for c in categories]},
        },
        "reference": {"SFT reference": {"log_probs": {split: reference.tolist() for split in splits}}},
        "runs": [
            {"setting": setting, "final": {split: final.tolist() for split in splits}} for setting, final in runs
        ],
    }


def setting(method, beta, alpha=None):
    name = f"SPO α={alpha:g} β={beta:g}" if method == "spo" else f"DPO β={beta:g}"
    regularizer = "global_kl" if method == "spo" else None
    return {"name": name, "method": method, "alpha": alpha, "beta": beta, "data": "pairs", "regularizer": regularizer}


def test_report_reads_the_runs_matches_rewards_and_writes_the_doc_block(tmp_path):
    reference = torch.full((2, 6), -math.log(6), dtype=torch.float64)
    spo = torch.log_softmax(REWARDS, -1).expand(2, 6)  # on the frontier, E[r] 0.886
    dpo_far = dpo_fixed_point(reference, REWARDS, 0.1)  # E[r] 1.5: no match for SPO
    skewed_reference = torch.tensor([[0.1, 0.1, 0.1, 0.5, 0.1, 0.1]] * 2, dtype=torch.float64).log()
    dpo_near = dpo_fixed_point(skewed_reference, REWARDS, 0.7)  # E[r] within 0.1 of SPO's, below the frontier
    (tmp_path / "answers.json").write_text(
        json.dumps(
            fake_run(["colour"], None, [(setting("spo", 0.1, 1.0), spo), (setting("dpo", 0.1), dpo_far)], reference)
        )
    )
    (tmp_path / "answers_skewed.json").write_text(
        json.dumps(
            fake_run(
                ["colour"],
                [0.1, 0.1, 0.1, 0.5, 0.1, 0.1],
                [(setting("spo", 0.1, 1.0), spo), (setting("dpo", 0.7), dpo_near)],
                skewed_reference,
            )
        )
    )
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- frontier:begin -->\nold\n<!-- frontier:end -->\nafter\n")
    payload = report(tmp_path, doc, log=lambda message: None)
    assert payload["sources"] == ["answers", "answers_skewed"]
    train = {(r["reference"], r["name"]): r for r in payload["rows"] if r["split"] == "train"}
    assert train[("uniform", "SPO α=1 β=0.1")]["deficit"] == pytest.approx(0.0, abs=1e-9)
    assert train[("skewed", "DPO β=0.7")]["deficit"] > 0.05
    # A trained DPO row carries its own fixed point; here the trained policy is that fixed point.
    fixed = train[("skewed", "DPO β=0.7")]["fixed_point"]
    assert fixed["deficit"] == pytest.approx(train[("skewed", "DPO β=0.7")]["deficit"], abs=1e-12)
    # Only the skewed reference has a DPO point within 0.1 of SPO's reward, on the two learnable splits.
    assert {(m["reference"], m["split"], m["dpo"]) for m in payload["matched"]} == {
        ("skewed", "train", "DPO β=0.7"),
        ("skewed", "heldout_template", "DPO β=0.7"),
    }
    match = payload["matched"][0]
    assert match["deficit_gap"] == pytest.approx(train[("skewed", "DPO β=0.7")]["deficit"], abs=1e-9)
    text = doc.read_text()
    assert text.startswith("before\n<!-- frontier:begin -->\n") and text.endswith("<!-- frontier:end -->\nafter\n")
    assert payload["table"] in text and "old" not in text
    assert (tmp_path / "frontier.png").is_file() and json.loads((tmp_path / "frontier.json").read_text())["rows"]


def test_matched_comparisons_ignore_spo_without_the_kl_and_far_rewards():
    row = {"reference": "uniform", "categories": "first", "split": "train", "deficit": 0.0, "entropy": 1.0}
    rows = [
        {**row, "method": "spo", "name": "SPO α=1 β=0", "beta": 0.0, "expected_reward": 0.9},
        {**row, "method": "dpo", "name": "DPO β=1", "beta": 1.0, "expected_reward": 0.9},
        {**row, "method": "spo", "name": "SPO α=2 β=0.1", "beta": 0.1, "expected_reward": 0.5},
    ]
    assert matched_comparisons(rows) == []


def test_headlines_say_the_comparison_either_way():
    match = {
        "reference": "uniform",
        "categories": "first",
        "split": "train",
        "spo": "SPO α=1 β=0.1",
        "dpo": "DPO β=1",
        "spo_expected_reward": 0.884,
        "dpo_expected_reward": 0.851,
        "spo_mass": 0.81,
        "dpo_mass": 0.36,
        "entropy_gap": 0.061,
        "deficit_gap": 0.0449,
    }
    (sentence,) = headlines([match, {**match, "split": "heldout_template"}])
    assert "E[r] 0.88" in sentence and "closest: 0.85" in sentence
    assert (
        "SPO's entropy is 0.06 nats more than DPO's; DPO's entropy deficit to the frontier exceeds SPO's by 0.045"
        in sentence
    )
    assert "SPO keeps 0.81 of the probability on the answer sets, DPO 0.36" in sentence
    assert sentence.startswith("From the uniform SFT reference (the first category set, training prompts), at matched")
    (far,) = headlines([{**match, "dpo_expected_reward": 0.7}])
    assert "at the nearest expected reward" in far and "closest: 0.70" in far
    # SPO speaks with its default KL weight: a match of the beta sweep's other betas is left to the table.
    assert headlines([{**match, "spo_beta": 0.03}]) == []
    (reverse,) = headlines([{**match, "entropy_gap": -0.02, "deficit_gap": -0.01}])
    assert "0.02 nats less than DPO's; SPO's entropy deficit to the frontier exceeds DPO's by 0.010" in reverse


def test_results_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    import os

    from benchmarks.reporting import write_atomically

    path = tmp_path / "frontier.json"
    write_atomically(path, "old\n")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["frontier.json"]

    def killed(*args):
        raise KeyboardInterrupt("killed between the write and the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n"  # the reader still sees the previous results, whole
