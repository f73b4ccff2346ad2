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

"""The n-ary comparison (`benchmarks.nary_comparison`): exact win rates, fixed points, the report's rows."""

import json
import math
import random
from collections import Counter

import pytest
import torch

from benchmarks.answers import best_of_n_row, best_response_row
from benchmarks.answers_task import REWARD_LADDER, AnswersTask
from benchmarks.harness import Setting
from benchmarks.nary_comparison import (
    comparison_rows,
    own_target,
    plackett_luce_top_of_n,
    report,
    win_rate,
)


REWARDS = torch.tensor(REWARD_LADDER, dtype=torch.float64)


def log(probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).clamp_min(1e-300).log()


def test_win_rate_by_hand():
    uniform = log([[1 / 6] * 6])
    best = log([[1, 0, 0, 0, 0, 0]])
    # The best answer beats the 5 others and ties itself: 5/6 + 1/12.
    assert win_rate(best, uniform, REWARDS).item() == pytest.approx(5 / 6 + 1 / 12, abs=1e-12)
    assert win_rate(uniform, best, REWARDS).item() == pytest.approx(1 / 12, abs=1e-12)
    # Against itself any policy wins half (wins and losses are symmetric, ties count half), mass outside included.
    half_outside = log([[0.2, 0.1, 0.1, 0.05, 0.03, 0.02]])
    assert win_rate(half_outside, half_outside, REWARDS).item() == pytest.approx(0.5, abs=1e-12)
    # All mass outside the set loses to anything in it.
    assert win_rate(log([[0.0] * 6]), uniform, REWARDS).item() == pytest.approx(0.0, abs=1e-12)


def test_win_rate_matches_sampling():
    rng = random.Random(0)
    policy = [0.3, 0.25, 0.1, 0.1, 0.05, 0.05]  # 0.15 outside
    baseline = [0.1, 0.1, 0.2, 0.3, 0.1, 0.1]
    outcomes = []
    for _ in range(40_000):
        y = rng.choices(range(7), weights=policy + [0.15])[0]
        z = rng.choices(range(7), weights=baseline + [0.1])[0]
        r_y = REWARD_LADDER[y] if y < 6 else -math.inf
        r_z = REWARD_LADDER[z] if z < 6 else -math.inf
        outcomes.append(1.0 if r_y > r_z else 0.5 if r_y == r_z else 0.0)
    estimate = sum(outcomes) / len(outcomes)
    # The outcome's standard deviation is below 0.5: the estimate's error is below 0.0025; 0.012 is 5 of them.
    assert win_rate(log([policy]), log([baseline]), REWARDS).item() == pytest.approx(estimate, abs=0.012)


def test_plackett_luce_top_of_n_limits_and_the_data_generator():
    assert torch.allclose(plackett_luce_top_of_n(REWARDS, 6), torch.softmax(REWARDS, -1), atol=1e-12)
    assert torch.allclose(plackett_luce_top_of_n(REWARDS, 1), torch.full((6,), 1 / 6, dtype=torch.float64))
    # The top answer of the rows `AnswersTask.rankings` makes follows it (that is what Best-response SFT learns).
    task = AnswersTask()
    rows = task.rankings(12_000, 4, seed=3)
    cases = {case.question: case for case in task.split("train")}
    tops = Counter(
        cases[row["prompt"][1]["content"]].category.answers.index(row["completions"][row["ranking"][0]][0]["content"])
        for row in rows
    )
    expected = plackett_luce_top_of_n(REWARDS, 4)
    for position in range(6):
        # 12,000 rows: the standard error of a share p is at most 0.0046; 0.02 is over 4 of them.
        assert tops[position] / len(rows) == pytest.approx(expected[position].item(), abs=0.02)


def test_best_of_n_rows_label_the_top_of_the_ranking():
    row = {"prompt": "p", "completions": ["a", "b", "c", "d"], "ranking": [2, 0, 3, 1]}
    assert best_of_n_row(row) == {"prompt": "p", "completions": ["a", "b", "c", "d"], "best_index": 2}
    assert best_response_row(row) == {"prompt": "p", "completion": "c"}


def test_own_targets():
    reference = log([[0.1, 0.1, 0.1, 0.5, 0.1, 0.1]])
    spo = own_target({"method": "spo", "alpha": 0.5}, reference, REWARDS, 4)
    assert torch.allclose(spo[0], torch.softmax(REWARDS / 0.5, -1))
    dpo = own_target({"method": "pl_dpo", "beta": 1.0}, reference, REWARDS, 4)
    by_hand = torch.tensor([0.1, 0.1, 0.1, 0.5, 0.1, 0.1], dtype=torch.float64) * REWARDS.exp()
    assert torch.allclose(dpo[0], by_hand / by_hand.sum())
    sft = own_target({"method": "br_sft"}, reference, REWARDS, 4)
    assert torch.allclose(sft[0], plackett_luce_top_of_n(REWARDS, 4))


def test_settings_of_the_n_ary_baselines():
    assert Setting("pl_dpo", beta=1.0, data="rankings").name == "PL-DPO β=1"
    assert Setting("s_dpo", beta=0.1, data="best_of_n").name == "S-DPO β=0.1"
    assert Setting("br_sft", beta=0.0, data="best_of_n").name == "Best-response SFT"
    assert Setting("spo", alpha=1.0, beta=0.1, data="best_of_n").name == "SPO α=1 β=0.1, best-of-n (Eq. 14)"
    with pytest.raises(ValueError, match="pl_dpo trains on rankings data"):
        Setting("pl_dpo", beta=1.0, data="best_of_n")
    with pytest.raises(ValueError, match="Best-response SFT has no beta"):
        Setting("br_sft", beta=0.1, data="best_of_n")


def test_report_rows_against_best_response_sft(tmp_path):
    splits = ("train", "heldout_template", "heldout_category")
    uniform = [[math.log(1 / 6)] * 6] * 2
    best = [[0.0] + [-800.0] * 5] * 2

    def run(setting, final):
        return {"setting": setting.summary(), "final": dict.fromkeys(splits, final)}

    payload = {
        "config": {"task": {"reward_ladder": list(REWARD_LADDER)}, "plan": {"ranking_size": 4}},
        "reference": {"SFT reference": {"log_probs": dict.fromkeys(splits, uniform)}},
        "runs": [
            run(Setting("pl_dpo", beta=0.1, data="rankings"), best),
            run(Setting("br_sft", beta=0.0, data="best_of_n"), uniform),
        ],
    }
    (tmp_path / "answers_nary.json").write_text(json.dumps(payload))
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- nary:begin -->\n<!-- nary:end -->\n")
    result = report(tmp_path, doc, log=lambda message: None)
    train = {row["name"]: row for row in result["rows"] if row["split"] == "train"}
    assert train["Best-response SFT"]["win_rate"] == pytest.approx(0.5, abs=1e-12)
    assert train["PL-DPO β=0.1"]["win_rate"] == pytest.approx(5 / 6 + 1 / 12, abs=1e-12)
    # PL-DPO's own target from a uniform reference at beta = 0.1 is nearly the argmax: the trained argmax is close.
    assert train["PL-DPO β=0.1"]["tv_to_own_target"] < 0.01
    # Theory's column: Best-response SFT's fixed point against itself is 1/2; the argmax against it wins unless the
    # baseline also draws the best answer (a tie): 1 - p_top / 2. PL-DPO's fixed point at beta = 0.1 puts
    # 1 / (1 + e^-5 + e^-10 + ...) = 0.993 on the best answer, hence the 0.01.
    p_top = plackett_luce_top_of_n(torch.tensor(REWARD_LADDER), 4)[0].item()
    assert train["Best-response SFT"]["fixed_point_win_rate"] == pytest.approx(0.5, abs=1e-12)
    assert train["PL-DPO β=0.1"]["fixed_point_win_rate"] == pytest.approx(1 - p_top / 2, abs=0.01)
    assert "| PL-DPO β=0.1 | 91.7 |" in doc.read_text()  # (5/6 + 1/12) as a percentage, one decimal
    assert train["Best-response SFT"]["tv_to_own_target"] > 0.2  # uniform is far from the top-of-4 distribution
    assert "| PL-DPO β=0.1 | 91.7 |" in doc.read_text()
    payload["runs"] = payload["runs"][:1]
    with pytest.raises(ValueError, match="needs one Best-response SFT run, found 0"):
        comparison_rows(payload)


def test_tiny_run_trains_every_n_ary_method_and_the_report_reads_it(tmp_path):
    """`--settings nary` on the 1 MB model: each method trains on its own data with its own trainer, then the report."""
    from dataclasses import replace

    from benchmarks.answers import NARY_SETTINGS, TINY_MODEL_DIR, run, tiny_config

    config = tiny_config()
    # Three steps each: enough to see every method move its policy, not to compare them.
    # One setting per method: SPO on best-of-n, the DPO family at beta = 1, Best-response SFT.
    settings = tuple(s for s in NARY_SETTINGS if (s.data == "best_of_n" if s.method == "spo" else s.beta != 0.1))
    config = replace(
        config, plan=replace(config.plan, max_steps=3, logging_steps=3), eval_every=3, num_samples=1, settings=settings
    )
    run(
        config,
        tmp_path,
        "x",
        base_dir=TINY_MODEL_DIR,
        cache_dir=tmp_path / "cache",
        log=lambda m: None,
        name="answers_nary_tiny",  # a run of another name: the report reads it and names its output after it
    )
    payload = json.loads((tmp_path / "answers_nary_tiny.json").read_text())
    methods = [result["setting"]["method"] for result in payload["runs"]]
    assert methods == ["spo", "pl_dpo", "s_dpo", "br_sft"]
    logs = {result["setting"]["method"]: result["train_log"] for result in payload["runs"]}
    # Each trained the way its setting says: SPO on best-of-n logs its KL, the DPO family none, SFT its token loss.
    assert any("kl/global" in entry for entry in logs["spo"])
    assert not any("kl/global" in entry for entry in logs["pl_dpo"] + logs["s_dpo"])
    assert any("mean_token_accuracy" in entry for entry in logs["br_sft"])
    for result in payload["runs"]:
        assert result["history"][-1]["tv"] != result["history"][0]["tv"]  # every policy moved
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- nary_tiny:begin -->\n<!-- nary_tiny:end -->\n")
    result = report(tmp_path, doc, log=lambda message: None, name="answers_nary_tiny")
    assert json.loads((tmp_path / "nary_tiny.json").read_text())["rows"] == result["rows"]
    assert result["table"] in doc.read_text() and "answers_nary_tiny.json" in result["table"]
    rows = result["rows"]
    assert {(row["method"], row["data"]) for row in rows} == {
        ("spo", "best_of_n"),
        ("pl_dpo", "rankings"),
        ("s_dpo", "best_of_n"),
        ("br_sft", "best_of_n"),
    }
    sft = next(row for row in rows if row["method"] == "br_sft" and row["split"] == "train")
    assert 0.499 < sft["win_rate"] < 0.501  # against itself: exactly 1/2 up to float64 sums over 6 x 6 answers


def _committed_nary():
    from .doc_figures import REPO_ROOT

    results = REPO_ROOT / "docs" / "results"
    return (
        json.loads((results / "nary.json").read_text(encoding="utf-8")),
        json.loads((results / "answers_nary.json").read_text(encoding="utf-8")),
    )


def test_committed_tables_are_recomputed_from_the_run():
    """nary.json and the doc's block are a pure function of answers_nary.json (float64 sums over 6 answers)."""
    from .doc_figures import read_doc

    nary, run = _committed_nary()
    rows = comparison_rows(run)
    assert [(r["name"], r["split"]) for r in rows] == [(r["name"], r["split"]) for r in nary["rows"]]
    for new, old in zip(rows, nary["rows"], strict=True):
        for key in ("win_rate", "win_rate_given_set", "fixed_point_win_rate", "tv_to_own_target", "mass", "deficit"):
            # Sums of at most 36 float64 products of exps: machines differ by ~1e-15; 1e-9 cannot hide a changed run.
            assert new[key] == pytest.approx(old[key], abs=1e-9), (new["name"], key)
    assert f"<!-- nary:begin -->\n{nary['table']}<!-- nary:end -->" in read_doc("docs/results.md")


def test_reading_states_the_json_and_its_criteria():
    """The reading of the n-ary comparison: every figure formatted from nary.json; the pre-run criteria recomputed."""
    from benchmarks.frontier import dpo_fixed_point, frontier_summary

    from .doc_figures import assert_figures_in, fmt, passage, read_doc

    nary, run = _committed_nary()
    row = {r["name"]: r for r in nary["rows"] if r["split"] == "train"}
    spo1, spo05, spo_bon = (
        row["SPO α=1 β=0.1, rankings (Eq. 15)"],
        row["SPO α=0.5 β=0.1, rankings (Eq. 15)"],
        row["SPO α=1 β=0.1, best-of-n (Eq. 14)"],
    )
    names = ("PL-DPO β=1", "S-DPO β=1", "PL-DPO β=0.1", "S-DPO β=0.1", "Best-response SFT")
    pl1, s1, pl01, s01, sft = (row[name] for name in names)
    text = passage(read_doc("docs/results.md"), "**Reading of the n-ary comparison**", "## The same question")

    def pct(value):
        return fmt(100 * value, 1)

    figures = {}
    for name, r in row.items():
        figures[f"{name} TV"] = fmt(r["tv_to_own_target"], 3)
        figures[f"{name} mass"] = fmt(r["mass"], 3)
        figures[f"{name} win rate given the set"] = pct(r["win_rate_given_set"])
    del figures["Best-response SFT win rate given the set"]  # 50 % against itself: not stated
    for name in ("SPO α=1 β=0.1, rankings (Eq. 15)", "SPO α=0.5 β=0.1, rankings (Eq. 15)", "PL-DPO β=1", "S-DPO β=1"):
        figures[f"{name} fixed point"] = pct(row[name]["fixed_point_win_rate"])
    for name in ("PL-DPO β=0.1", "SPO α=1 β=0.1, best-of-n (Eq. 14)", "S-DPO β=1", "S-DPO β=0.1"):
        figures[f"{name} win rate"] = pct(row[name]["win_rate"])
    figures |= {
        "SPO α=1 win rate": pct(spo1["win_rate"]),
        "SPO α=0.5 win rate": pct(spo05["win_rate"]),
        "PL-DPO β=1 win rate": pct(pl1["win_rate"]),
        "DPO family β=1 E[r]": f"{fmt(pl1['expected_reward'], 3)} / {fmt(s1['expected_reward'], 3)}",
        "SPO α=1 E[r]": f"{fmt(spo1['expected_reward'], 3)} / {fmt(spo_bon['expected_reward'], 3)}",
        "DPO family β=1 deficit": f"{fmt(pl1['deficit'], 3)} / {fmt(s1['deficit'], 3)}",
        "SPO α=1 deficit": f"{fmt(spo1['deficit'], 3)} / {fmt(spo_bon['deficit'], 3)}",
        "SPO above the DPO family": f"{pct(spo1['win_rate'] - pl1['win_rate'])} / "
        f"{pct(spo_bon['win_rate'] - s1['win_rate'])}",
        "DPO family β=0.1 entropy": f"{fmt(pl01['entropy'], 3)} / {fmt(s01['entropy'], 3)}",
        "α=0.5 above α=1": pct(spo05["win_rate"] - spo1["win_rate"]),
        "entropies": f"{fmt(spo05['entropy'], 3)} against {fmt(spo1['entropy'], 3)}",
        "PL-DPO β=0.1 above SPO α=0.5": pct(pl01["win_rate"] - spo05["win_rate"]),
        "SPO's mass range": f"{spo1['mass']:.2f}-{spo05['mass']:.2f}",
        "SFT's mass": fmt(sft["mass"], 2),
        "minutes": f"{run['total_seconds'] / 60:.0f} minutes",
    }
    assert_figures_in(text, figures, "the reading of the n-ary comparison")
    # The criteria written before the run, recomputed from the JSON (4 points of win rate; 0.15 of E[r] or TV).
    assert spo05["win_rate"] < 0.54  # met: SPO at alpha = 0.5 is not 4 points ahead of Best-response SFT
    assert spo1["win_rate"] - pl1["win_rate"] >= 0.04 and spo_bon["win_rate"] - s1["win_rate"] >= 0.04
    assert spo05["win_rate"] - spo1["win_rate"] >= 0.04
    assert pl01["win_rate"] - spo05["win_rate"] >= 0.04
    assert sft["tv_to_own_target"] <= 0.15
    rewards = torch.tensor(run["config"]["task"]["reward_ladder"], dtype=torch.float64)
    reference = torch.tensor(run["reference"]["SFT reference"]["log_probs"]["train"], dtype=torch.float64)
    fixed_point = frontier_summary(dpo_fixed_point(reference, rewards, 1.0), reference, rewards)["expected_reward"]
    assert abs(pl1["expected_reward"] - fixed_point) < 0.15 and abs(s1["expected_reward"] - fixed_point) < 0.15
    # "The mass decides the rest": given the set, SPO alpha = 1 and the DPO family at beta = 1 are within 3 points.
    assert abs(spo1["win_rate_given_set"] - pl1["win_rate_given_set"]) < 0.03
    assert spo05["win_rate_given_set"] > 0.54 > spo05["win_rate"] - 0.04


def test_predictions_written_before_the_run_are_theory_s():
    """The pre-run paragraph's figures: the fixed points' win rates (nary.json), the pairwise masses it assumed
    (frontier.json) and the win rates they imply, `m m_b W + m (1 - m_b) + (1 - m)(1 - m_b) / 2`."""
    from .doc_figures import REPO_ROOT, assert_figures_in, fmt, passage, read_doc

    nary, _ = _committed_nary()
    frontier = json.loads((REPO_ROOT / "docs" / "results" / "frontier.json").read_text(encoding="utf-8"))
    fixed = {r["name"]: r["fixed_point_win_rate"] for r in nary["rows"] if r["split"] == "train"}
    pairs = {
        r["name"]: r
        for r in frontier["rows"]
        if (r["reference"], r["categories"], r["split"]) == ("uniform", "first", "train")
    }
    sft_mass = 0.95  # the paragraph's assumption for Best-response SFT

    def implied(mass, target_win_rate):
        return mass * sft_mass * target_win_rate + mass * (1 - sft_mass) + 0.5 * (1 - mass) * (1 - sft_mass)

    rewards = torch.tensor(REWARD_LADDER, dtype=torch.float64)
    softmax = torch.softmax(rewards, -1)
    text = passage(read_doc("docs/results.md"), "**What theory predicts** (written before the run)", "**What would")
    assert_figures_in(
        text,
        {
            "SPO α=1 fixed point": fmt(100 * fixed["SPO α=1 β=0.1, rankings (Eq. 15)"], 1),
            "SPO α=0.5 fixed point": fmt(100 * fixed["SPO α=0.5 β=0.1, rankings (Eq. 15)"], 1),
            "DPO family β=1 fixed point": fmt(100 * fixed["PL-DPO β=1"], 1),
            "DPO family β=0.1 fixed point": fmt(100 * fixed["PL-DPO β=0.1"], 1),
            "pairs: DPO β=1 mass": fmt(pairs["DPO β=1"]["mass"], 2),
            "pairs: DPO β=0.1 mass": fmt(pairs["DPO β=0.1"]["mass"], 2),
            "pairs: SPO α=1 mass": fmt(pairs["SPO α=1 β=0.1"]["mass"], 2),
            "implied: DPO β=1": f"{100 * implied(pairs['DPO β=1']['mass'], fixed['PL-DPO β=1']):.0f} %",
            "implied: DPO β=0.1": f"{100 * implied(pairs['DPO β=0.1']['mass'], fixed['PL-DPO β=0.1']):.0f} %",
            "implied: SPO α=1": f"{100 * implied(pairs['SPO α=1 β=0.1']['mass'], fixed['SPO α=1 β=0.1, rankings (Eq. 15)']):.0f} %",
            "implied: SPO α=0.5": f"{100 * implied(pairs['SPO α=0.5 β=0.1']['mass'], fixed['SPO α=0.5 β=0.1, rankings (Eq. 15)']):.0f}",
            "SPO α=0.5 pairwise mass": fmt(pairs["SPO α=0.5 β=0.1"]["mass"], 2),
            "SPO α=1 target E[r]": fmt((softmax * rewards).sum().item(), 2),
            "Best-response SFT target E[r]": fmt((plackett_luce_top_of_n(rewards, 4) * rewards).sum().item(), 2),
            "DPO β=0.1 fixed point entropy": fmt(pairs["DPO β=0.1"]["fixed_point"]["entropy"], 2),
        },
        "the n-ary predictions",
    )


def test_noise_margin_written_before_the_run_is_the_default_run_s():
    """The 4-point margin: SPO alpha = 1's mass over the default run's evaluations after step 150, and its spread."""
    from .doc_figures import REPO_ROOT, assert_figures_in, fmt, passage, read_doc

    answers = json.loads((REPO_ROOT / "docs" / "results" / "answers.json").read_text(encoding="utf-8"))
    (run,) = [r for r in answers["runs"] if r["setting"]["name"] == "SPO α=1 β=0.1"]
    # Evaluations 25 steps apart in the last 100 steps, (150, 250], as the entropy margin of the frontier section.
    masses = [entry["mass"] for entry in run["history"] if entry["step"] > run["history"][-1]["step"] - 100]
    low, high = min(masses), max(masses)
    text = passage(read_doc("docs/results.md"), "**What would contradict the paper's tables**", "- On either")
    assert_figures_in(
        text,
        {"mass range": f"{fmt(low, 2)}-{fmt(high, 2)}", "spread": f"0.5 × {fmt(high - low, 2)}"},
        "the n-ary noise margin",
    )
    assert 0.5 * (high - low) < 0.04  # the margin covers the spread it is derived from
