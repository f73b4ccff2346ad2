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

"""`bench answers`' variants for the fair comparison: a skewed SFT reference and a second, disjoint category set."""

import hashlib
import json
from collections import Counter
from dataclasses import asdict

import pytest

import benchmarks.answers as answers
from benchmarks.answers import (
    REFERENCES,
    SETTING_GROUPS,
    TASKS,
    AnswersConfig,
    ReferenceSFT,
    reference_key,
)
from benchmarks.answers_task import AnswersTask


def test_skewed_reference_draws_its_answers_in_the_stated_proportions():
    task = AnswersTask()
    weights = REFERENCES["skewed"].answer_weights
    cases = {case.question: case for case in task.split("train")}

    def shares(rows):
        positions = Counter(
            cases[row["prompt"][1]["content"]].category.answers.index(row["completion"][0]["content"]) for row in rows
        )
        return [positions[position] / len(rows) for position in range(len(weights))]

    # 6000 draws: the standard error of a share of 0.5 is 0.0065, of 0.1 is 0.004; 0.03 is over 4 of them.
    skewed = shares(task.sft_rows(6000, seed=0, answer_weights=weights))
    assert skewed == pytest.approx([weight / sum(weights) for weight in weights], abs=0.03)
    # Without weights, the uniform draw of the default reference (standard error of 1/6: 0.005).
    assert shares(task.sft_rows(6000, seed=0)) == pytest.approx([1 / 6] * 6, abs=0.03)


@pytest.mark.parametrize("weights", [(1, 1), (1, 1, 1, -1, 1, 1), (0, 0, 0, 0, 0, 0)])
def test_bad_answer_weights_are_refused(weights):
    with pytest.raises(ValueError, match="answer_weights needs 6 non-negative weights"):
        AnswersTask().sft_rows(10, seed=0, answer_weights=weights)


def test_the_uniform_reference_keeps_its_cache_key(tmp_path):
    # The new field defaults to None and is left out of the key: references cached before it was added stay valid.
    config = AnswersConfig()
    # The key as it was computed before the field existed: same base, same task, the SFT recipe without it.
    base = str(tmp_path.resolve())
    sft = {key: value for key, value in asdict(config.reference).items() if key != "answer_weights"}
    recipe = json.dumps({"task": asdict(config.task), "sft": sft}, sort_keys=True, default=str)
    assert reference_key(tmp_path, config) == hashlib.sha256((base + recipe).encode()).hexdigest()[:12]
    skewed = AnswersConfig(reference=ReferenceSFT(answer_weights=REFERENCES["skewed"].answer_weights))
    assert reference_key(tmp_path, config) != reference_key(tmp_path, skewed)
    assert asdict(config.reference)["answer_weights"] is None


def test_the_second_category_set_is_disjoint_from_the_first():
    first, second = TASKS["first"], TASKS["second"]
    assert first == AnswersTask()
    words = {
        answer for task in (first,) for c in task.train_categories + task.heldout_categories for answer in c.answers
    }
    other = {answer for c in second.train_categories + second.heldout_categories for answer in c.answers}
    assert not words & other
    assert not {c.noun for c in first.train_categories} & {c.noun for c in second.train_categories}
    assert not set(first.train_templates + first.heldout_templates) & set(
        second.train_templates + second.heldout_templates
    )
    assert [len(second.split(split)) for split in ("train", "heldout_template", "heldout_category")] == [18, 6, 8]


def test_flags_pick_the_reference_the_categories_and_the_settings(monkeypatch, tmp_path):
    seen = {}

    def fake_run(config, output_dir, command, **kwargs):
        seen.update(config=config, command=command, name=kwargs["name"])
        return []

    monkeypatch.setattr(answers, "run", fake_run)
    answers.main(
        ["--reference", "skewed", "--categories", "second", "--settings", "second_categories", "--output_dir",
         str(tmp_path), "--name", "answers_second"]
    )  # fmt: skip
    config = seen["config"]
    assert config.reference.answer_weights == REFERENCES["skewed"].answer_weights
    assert config.task == TASKS["second"]
    assert config.settings == SETTING_GROUPS["second_categories"]
    assert seen["name"] == "answers_second" and "--categories second" in seen["command"]
    with pytest.raises(ValueError, match="--tiny runs its own"):
        answers.main(["--tiny", "--categories", "second", "--output_dir", str(tmp_path)])


def test_the_fair_comparison_groups_cover_dpo_beta_range():
    betas = {s.beta for s in SETTING_GROUPS["default"] + SETTING_GROUPS["dpo_beta_range"] if s.method == "dpo"}
    assert betas == {0.01, 0.1, 0.3, 1.0, 3.0}
    skewed = SETTING_GROUPS["skewed_reference"]
    assert {s.method for s in skewed} == {"spo", "dpo"}
