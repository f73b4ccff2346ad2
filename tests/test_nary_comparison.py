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
