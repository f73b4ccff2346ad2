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

"""The committed fair comparison: docs/results.md's frontier block, figure and reading are docs/results/frontier.json's."""

import hashlib
import json
import re

import pytest

from benchmarks.frontier import report

from .doc_figures import REPO_ROOT, assert_figures_in, fmt, matched, passage, read_doc


RESULTS = REPO_ROOT / "docs" / "results"


@pytest.fixture(scope="module")
def frontier():
    return json.loads((RESULTS / "frontier.json").read_text(encoding="utf-8"))


def _row(frontier, reference, name, split="train", categories="first"):
    (row,) = [
        r
        for r in frontier["rows"]
        if r["reference"] == reference and r["name"] == name and r["split"] == split and r["categories"] == categories
    ]
    return row


def test_block_and_figure_are_the_json(frontier):
    doc = read_doc("docs/results.md")
    assert f"<!-- frontier:begin -->\n{frontier['table']}<!-- frontier:end -->" in doc
    assert hashlib.sha256((RESULTS / "frontier.png").read_bytes()).hexdigest() == frontier["figure_sha256"]


def test_json_is_recomputed_from_the_committed_runs(tmp_path, frontier):
    """The report is a pure function of the runs' JSON: recomputing it gives the committed rows."""
    for source in frontier["sources"]:
        (tmp_path / f"{source}.json").write_bytes((RESULTS / f"{source}.json").read_bytes())
    again = report(tmp_path, log=lambda message: None)
    assert len(again["rows"]) == len(frontier["rows"])
    for new, old in zip(again["rows"], frontier["rows"], strict=True):
        assert (new["reference"], new["name"], new["split"]) == (old["reference"], old["name"], old["split"])
        for key in ("expected_reward", "entropy", "deficit", "kl_to_reference", "mass"):
            # float64 sums over 6 answers and a 200-step bisection: machines differ by ~1e-15; 1e-9 is loose.
            assert new[key] == pytest.approx(old[key], abs=1e-9), (new["name"], key)
    assert again["headlines"] == frontier["headlines"]


def test_reading_states_the_json(frontier):
    text = passage(read_doc("docs/results.md"), "**Reading of the fair comparison**", "- **Limits.**")
    figures = {}
    for beta in ("0.01", "0.1", "0.3", "1", "3"):
        row = _row(frontier, "uniform", f"DPO β={beta}")
        figures[f"DPO β={beta} entropy"] = fmt(row["entropy"], 3)
        figures[f"DPO β={beta} E[r]"] = fmt(row["expected_reward"], 3)
    spo1, spo2 = _row(frontier, "uniform", "SPO α=1 β=0.1"), _row(frontier, "uniform", "SPO α=2 β=0.1")
    dpo1, dpo3 = _row(frontier, "uniform", "DPO β=1"), _row(frontier, "uniform", "DPO β=3")
    match = matched(frontier, "first", spo="SPO α=1 β=0.1")
    figures |= {
        "SPO α=1 E[r]": fmt(spo1["expected_reward"], 3),
        "DPO β=1 deficit": fmt(dpo1["deficit"], 3),
        "SPO α=1 deficit": fmt(spo1["deficit"], 3),
        "entropy gap at matched reward": fmt(match["entropy_gap"], 3),
        "reward gap": fmt(match["dpo_expected_reward"] - match["spo_expected_reward"], 3),
        "deficit gap": fmt(match["deficit_gap"], 3),
        "DPO β=3 deficit": fmt(dpo3["deficit"], 3),
        "SPO α=2 deficit": fmt(spo2["deficit"], 3),
        "DPO β=1 fixed point E[r]": fmt(dpo1["fixed_point"]["expected_reward"], 3),
        "DPO β=3 fixed point E[r]": fmt(dpo3["fixed_point"]["expected_reward"], 3),
        "DPO β=1 mass": fmt(dpo1["mass"], 3),
        "DPO β=3 mass": fmt(dpo3["mass"], 3),
        "SPO α=1 mass": fmt(spo1["mass"], 3),
        "SPO β=0 mass": fmt(_row(frontier, "uniform", "SPO α=1 β=0")["mass"], 3),
    }
    skewed_reference = _row(frontier, "skewed", "SFT reference")
    skewed_dpo, skewed_spo = _row(frontier, "skewed", "DPO β=1"), _row(frontier, "skewed", "SPO α=2 β=0.1")
    figures |= {
        "skewed reference deficit": fmt(skewed_reference["deficit"], 3),
        "skewed DPO β=1 E[r]": fmt(skewed_dpo["expected_reward"], 3),
        "skewed DPO β=1 deficit": fmt(skewed_dpo["deficit"], 3),
        "skewed DPO β=1 fixed point E[r]": fmt(skewed_dpo["fixed_point"]["expected_reward"], 3),
        "skewed DPO β=1 fixed point deficit": fmt(skewed_dpo["fixed_point"]["deficit"], 3),
        "skewed SPO α=2 E[r]": fmt(skewed_spo["expected_reward"], 3),
        "skewed SPO α=2 deficit": fmt(skewed_spo["deficit"], 3),
        "skewed DPO β=1 mass": fmt(skewed_dpo["mass"], 3),
        "skewed DPO β=3 mass": fmt(_row(frontier, "skewed", "DPO β=3")["mass"], 3),
        "skewed SPO α=2 mass": fmt(skewed_spo["mass"], 3),
    }
    assert_figures_in(text, figures, "the reading of the fair comparison")
    # The conclusions the reading draws, recomputed: each would fail if the data said otherwise.
    assert dpo1["deficit"] > spo1["deficit"] + 0.03 and match["deficit_gap"] > 0.03
    assert skewed_dpo["deficit"] > dpo1["deficit"] + 0.03 > skewed_spo["deficit"] + 0.03
    assert max(dpo1["mass"], dpo3["mass"]) < 0.5 < min(spo1["mass"], skewed_spo["mass"])
    for row in (dpo1, dpo3, skewed_dpo, _row(frontier, "skewed", "DPO β=3")):
        assert abs(row["expected_reward"] - row["fixed_point"]["expected_reward"]) < 0.15  # conclusive


def test_reading_of_the_second_category_set_states_the_json(frontier):
    """The bullets on the second, disjoint category set and on held-out categories, and the checks they report."""
    second = json.loads((RESULTS / "answers_second.json").read_text(encoding="utf-8"))
    doc = read_doc("docs/results.md")
    text = passage(doc, "- **The second, disjoint category set says the same**", "- **Limits.**")

    def row(name, split="train", categories="second"):
        return _row(frontier, "uniform", name, split, categories)

    match = matched(frontier, "second", spo="SPO α=1 β=0.1")
    first_match = matched(frontier, "first", spo="SPO α=1 β=0.1")
    dpo_sharp = next(r for r in second["rows"] if r["name"] == "DPO β=0.1" and r["split"] == "train")
    spo, dpo1, spo_no_kl = row("SPO α=1 β=0.1"), row("DPO β=1"), row("SPO α=1 β=0")
    figures = {
        "reference's mass": fmt(row("SFT reference")["mass"], 3),
        "DPO β=0.1 top answer": fmt(dpo_sharp["top_prob"], 3),
        "DPO β=0.1 entropy": fmt(row("DPO β=0.1")["entropy"], 3),
        "SPO E[r]": fmt(spo["expected_reward"], 3),
        "DPO β=1 E[r]": fmt(dpo1["expected_reward"], 3),
        "DPO β=1 fixed point E[r]": fmt(dpo1["fixed_point"]["expected_reward"], 3),
        "entropy gap": fmt(match["entropy_gap"], 3),
        "deficit gap": fmt(match["deficit_gap"], 3),
        "first set's deficit gap": fmt(first_match["deficit_gap"], 3),
        "SPO mass": fmt(spo["mass"], 3),
        "DPO β=1 mass": fmt(dpo1["mass"], 3),
        "SPO β=0 mass": fmt(spo_no_kl["mass"], 3),
    }
    for categories in ("first", "second"):
        for name in ("SPO α=1 β=0.1", "DPO β=0.1", "SFT reference"):
            figures[f"{categories} held-out {name}"] = fmt(row(name, "heldout_category", categories)["mass"], 3)
    assert_figures_in(text, figures, "the reading of the second category set")
    # Its refutation criteria, written before the run (docs/results.md), recomputed: none is met.
    assert dpo_sharp["top_prob"] >= 0.9
    assert abs(match["dpo_expected_reward"] - match["spo_expected_reward"]) <= 0.1 and match["deficit_gap"] >= 0.03
    assert spo["mass"] > max(spo_no_kl["mass"], dpo1["mass"])
    assert abs(dpo1["expected_reward"] - dpo1["fixed_point"]["expected_reward"]) < 0.15
    assert row("SFT reference")["mass"] > 0.5
    # "Held-out categories keep little of their answer sets under any trained policy": below the reference's, both sets.
    for categories in ("first", "second"):
        reference = row("SFT reference", "heldout_category", categories)["mass"]
        trained = [r for r in frontier["rows"] if r["categories"] == categories and r["reference"] == "uniform"]
        trained = [r for r in trained if r["split"] == "heldout_category" and r["name"] != "SFT reference"]
        assert trained and all(r["mass"] < reference for r in trained)
    limits = passage(doc, "- **Limits.**", "### Best-of-n")
    minutes, threads = re.search(r"(\d+) min in all on (\d+) CPU threads", second["table"]).groups()
    assert f"four settings took {minutes} minutes alone on {threads} threads" in limits


def test_runs_state_their_reference_share_and_samples():
    """The reading's figures that come from the runs themselves (not the frontier report)."""
    skewed = json.loads((RESULTS / "answers_skewed.json").read_text(encoding="utf-8"))
    dpo = json.loads((RESULTS / "answers_dpo_beta.json").read_text(encoding="utf-8"))
    reference = next(r for r in skewed["reference_rows"] if r["name"] == "SFT reference" and r["split"] == "train")
    outside = {r["name"]: r["sampled_outside"] for r in dpo["rows"] if r["split"] == "train"}
    text = passage(read_doc("docs/results.md"), "**Reading of the fair comparison**")
    assert_figures_in(
        text,
        {
            "skewed reference's largest conditional probability": fmt(reference["max_prob"], 2),
            "DPO β=1 sampled outside (%)": f"{100 * outside['DPO β=1']:.0f}",
            "DPO β=3 sampled outside (%)": f"{100 * outside['DPO β=3']:.0f}",
            "minutes of the beta-range run": f"{dpo['total_seconds'] / 60:.0f}",
            "minutes of the skewed run": f"{skewed['total_seconds'] / 60:.0f}",
        },
        "the reading of the fair comparison",
    )


def test_upstream_issue_states_the_fair_comparison(frontier):
    """The upstream issue text (docs/upstream.md) says what the fair comparison measured, from the same JSON."""
    match = matched(frontier, "first", spo="SPO α=1 β=0.1", dpo="DPO β=1")
    second = matched(frontier, "second", spo="SPO α=1 β=0.1", dpo="DPO β=1")
    text = passage(read_doc("docs/upstream.md"), "> Why in TRL:", "> Proposal:")
    assert_figures_in(
        text,
        {
            "second set: entropy gap": fmt(second["entropy_gap"], 2),
            "second set: SPO's mass": fmt(second["spo_mass"], 2),
            "second set: DPO's mass": fmt(second["dpo_mass"], 2),
            "entropy gap": fmt(match["entropy_gap"], 2),
            "SPO's mass": fmt(match["spo_mass"], 2),
            "DPO's mass": fmt(match["dpo_mass"], 2),
            "skewed DPO deficit": fmt(_row(frontier, "skewed", "DPO β=1")["deficit"], 3),
            "skewed SPO deficit": fmt(_row(frontier, "skewed", "SPO α=2 β=0.1")["deficit"], 3),
        },
        "docs/upstream.md's motivation",
    )
