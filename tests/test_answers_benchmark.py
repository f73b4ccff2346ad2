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

"""`trl-spo bench answers`: the task, the exact measurement, the shared harness, and a tiny-model run end to end."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks.answers import (
    TINY_MODEL_DIR,
    AnswersConfig,
    markdown_tables,
    run,
    tiny_config,
)
from benchmarks.answers_task import (
    REWARD_LADDER,
    SPLITS,
    AnswersTask,
    Category,
    answer_log_probs,
    bradley_terry_fit,
    data_floor,
    distribution_summary,
    encode_cases,
    entropy,
)
from benchmarks.harness import Setting, TrainingPlan, select_settings, training_arguments


REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_BEGIN, DOC_END = "<!-- answers:begin -->", "<!-- answers:end -->"


@pytest.fixture(scope="module")
def task():
    return AnswersTask()


# ---------------------------------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------------------------------


def test_target_is_softmax_of_the_reward_ladder_and_alpha_sets_its_entropy(task):
    target = task.target(1.0)
    weights = [math.exp(r) for r in REWARD_LADDER]
    # Exact to float64 rounding: the same six exponentials summed in another order.
    assert target.tolist() == pytest.approx([w / sum(weights) for w in weights], rel=1e-12)
    assert target[0].item() == pytest.approx(0.4141, abs=5e-5)  # the "0.41" the docs quote
    entropies = [entropy(task.target(alpha)).item() for alpha in (0.5, 1.0, 2.0)]
    assert entropies == sorted(entropies) and entropies[-1] < math.log(6)
    assert task.target(0.0).tolist() == [1.0, 0, 0, 0, 0, 0]  # DPO's fixed point: the best answer


def test_splits_hold_out_templates_and_categories(task):
    train, template, category = (task.split(name) for name in SPLITS)
    assert len(train) == 6 * 3 and len(template) == 6 * 1 and len(category) == 2 * 4
    trained = {case.category.noun for case in train}
    assert trained == {case.category.noun for case in template}
    assert not trained & {case.category.noun for case in category}
    assert not {case.template for case in train} & {case.template for case in template}
    # Nothing the trainers see comes from a held-out prompt: pairs, rankings and SFT rows use training prompts only.
    questions = {case.question for case in train}
    rows = task.preference_pairs(200, seed=0) + task.rankings(50, 4, seed=1) + task.sft_rows(100, seed=2)
    assert {row["prompt"][1]["content"] for row in rows} == questions
    assert all(row["prompt"][0] == {"role": "system", "content": task.system_prompt} for row in rows)


def test_pairs_follow_bradley_terry_on_the_reward(task):
    rows = task.preference_pairs(6000, seed=0)
    answers = {case.question: case.category.answers for case in task.split("train")}
    ends = {question: {answers[0], answers[-1]} for question, answers in answers.items()}
    best_vs_worst = [
        row
        for row in rows
        if {row["chosen"][0]["content"], row["rejected"][0]["content"]} == ends[row["prompt"][1]["content"]]
    ]
    won = sum(row["chosen"][0]["content"] == answers[row["prompt"][1]["content"]][0] for row in best_vs_worst)
    expected = 1 / (1 + math.exp(-(REWARD_LADDER[0] - REWARD_LADDER[-1])))  # sigmoid(2.5) = 0.924
    # ~400 best-vs-worst pairs: the binomial standard error is about 0.013; 4 of them leaves no flaky margin.
    assert abs(won / len(best_vs_worst) - expected) < 4 * math.sqrt(expected * (1 - expected) / len(best_vs_worst))
    assert all(row["chosen"] != row["rejected"] for row in rows)


def test_rankings_are_permutations_drawn_by_plackett_luce(task):
    rows = task.rankings(4000, 4, seed=1)
    assert all(sorted(row["ranking"]) == [0, 1, 2, 3] for row in rows)
    answers = {case.question: case.category.answers for case in task.split("train")}
    first_is_best, shown_best = 0, 0
    for row in rows:
        texts = [c[0]["content"] for c in row["completions"]]
        best = answers[row["prompt"][1]["content"]][0]
        if best in texts:
            shown_best += 1
            first_is_best += texts[row["ranking"][0]] == best
    # P(the best is ranked first | shown) is its softmax share among the 4 shown: above 0.4 for any 3 others.
    assert first_is_best / shown_best > 0.45
    with pytest.raises(ValueError, match="a ranking ranks 2 to 6 answers, got size=7"):
        task.rankings(1, 7, seed=0)


def test_bradley_terry_fit_recovers_the_reward_from_many_pairs_and_not_from_few(task):
    many, few = task.preference_pairs(24000, seed=3), task.preference_pairs(120, seed=3)
    fits = bradley_terry_fit(task, many)
    assert set(fits) == {category.noun for category in task.train_categories}
    for scores in fits.values():
        # 4,000 pairs a category: each score's standard error is about 0.05, far below the ladder's 0.5 steps.
        assert (scores - (task.rewards() - task.rewards().mean())).abs().max() < 0.25
    assert data_floor(task, many, 1.0) < 0.03 < data_floor(task, few, 1.0)
    assert set(bradley_terry_fit(task, few, by="prompt")) <= {case.question for case in task.split("train")}
    with pytest.raises(ValueError, match="by must be 'category' or 'prompt'"):
        bradley_terry_fit(task, few, by="template")


def test_task_rejects_malformed_categories():
    with pytest.raises(ValueError, match="'colour' has 2 answers, but the reward ladder has 6 rungs"):
        AnswersTask(train_categories=(Category("colour", ("Red", "Blue")),))
    with pytest.raises(ValueError, match="lists an answer twice"):
        AnswersTask(train_categories=(Category("colour", ("Red",) * 6),))
    with pytest.raises(ValueError, match="unknown split 'test'"):
        AnswersTask().split("test")


def test_distribution_summary_by_hand():
    # Two prompts, three answers: log-probs chosen so that the conditionals are simple fractions.
    log_probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.2]], dtype=torch.float64).log()
    target = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    summary = distribution_summary(log_probs, target)
    # Exact up to float64 rounding of log/exp (1e-12).
    assert summary["mass"] == pytest.approx((1.0 + 0.4) / 2, abs=1e-12)
    # Conditionals: [0.5, 0.25, 0.25] (TV 0.05) and [0.25, 0.25, 0.5] (TV 0.3).
    assert summary["tv"] == pytest.approx((0.05 + 0.3) / 2, abs=1e-12)
    assert summary["top_prob"] == pytest.approx((0.5 + 0.25) / 2, abs=1e-12)
    assert summary["max_prob"] == pytest.approx(0.5, abs=1e-12)
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert summary["entropy"] == pytest.approx(h, abs=1e-12)
    assert summary["target_entropy"] == pytest.approx(entropy(target).item(), abs=1e-12)


def test_answer_log_probs_equal_token_by_token_scoring():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task = tiny_config().task
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(TINY_MODEL_DIR, dtype=torch.float32)
    cases = task.split("train")[:2] + task.split("heldout_category")[:1]
    batched = answer_log_probs(model, tokenizer, task, cases, batch_size=5)  # batches cut across prompts
    prompts, answers = encode_cases(tokenizer, task, cases)
    assert all(answer[-1] == tokenizer.eos_token_id for row in answers for answer in row)
    for i, (prompt, row) in enumerate(zip(prompts, answers, strict=True)):
        for j, answer in enumerate(row):
            with torch.no_grad():
                logits = model(torch.tensor([prompt + answer])).logits[0].double().log_softmax(-1)
            expected = sum(logits[len(prompt) - 1 + t, token].item() for t, token in enumerate(answer))
            # fp32 logits of a padded batch vs one sequence, log-softmax in fp32 vs fp64: ~1e-6 per token.
            assert batched[i, j].item() == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# The harness the three benchmarks share
# ---------------------------------------------------------------------------------------------------------------------


def test_settings_are_named_from_their_fields_and_checked():
    assert Setting("spo", alpha=1.0, beta=0.03).name == "SPO α=1 β=0.03"
    assert Setting("spo", alpha=0.1, beta=0.01, data="rankings").name == "SPO α=0.1 β=0.01, rankings (Eq. 15)"
    assert Setting("spo", alpha=1.0, beta=0.1, regularizer="dataset_kl").name == "SPO α=1 β=0.1, dataset KL (Table 6)"
    assert Setting("dpo", beta=0.1).name == "DPO β=0.1"
    with pytest.raises(ValueError, match="data must be one of"):
        Setting("spo", alpha=1.0, beta=0.1, data="triples")
    with pytest.raises(ValueError, match="DPO settings train on pairs"):
        Setting("dpo", beta=0.1, data="rankings")


def test_training_arguments_differ_only_in_the_methods_own_fields(tmp_path):
    plan = TrainingPlan(
        seed=3, max_steps=7, batch_size=8, learning_rate=1e-5, max_length=64, max_completion_length=16, gamma=0.02
    )
    spo = training_arguments(Setting("spo", alpha=0.5, beta=0.03), plan, str(tmp_path))
    dpo = training_arguments(Setting("dpo", beta=0.1), plan, str(tmp_path))
    ranked = training_arguments(Setting("spo", alpha=0.5, beta=0.03, data="rankings"), plan, str(tmp_path))
    for args in (spo, dpo):
        assert (args.seed, args.max_steps, args.learning_rate, args.per_device_train_batch_size) == (3, 7, 1e-5, 8)
    assert (spo.alpha, spo.beta, spo.gamma, spo.max_completion_length) == (0.5, 0.03, 0.02, 16)
    assert type(dpo).__name__ == "DPOConfig" and dpo.beta == 0.1
    assert ranked.per_device_train_batch_size == 4  # 4 rows of 4 answers: the 16 sequences of 8 pairs


def test_select_settings_takes_groups_and_names_once_each():
    a, b, c = Setting("spo", alpha=1.0, beta=0.0), Setting("dpo", beta=0.1), Setting("dpo", beta=0.01)
    groups = {"default": (a, b), "all": (a, b, c)}
    assert select_settings(None, groups) == (a, b)
    assert select_settings(["DPO β=0.01", "default"], groups) == (c, a, b)
    with pytest.raises(ValueError, match="unknown setting 'DPO β=1'; expected a group among \\['default', 'all'\\]"):
        select_settings(["DPO β=1"], groups)


# ---------------------------------------------------------------------------------------------------------------------
# A tiny run end to end: the direction of the result, and the files
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("answers")
    doc = output_dir / "results.md"
    doc.write_text(f"# Results\n{DOC_BEGIN}\n{DOC_END}\n")
    rows = run(
        tiny_config(),
        output_dir,
        "test command",
        doc=doc,
        base_dir=TINY_MODEL_DIR,
        cache_dir=output_dir / "cache",
        log=lambda message: None,
    )
    return output_dir, rows


def test_tiny_run_spo_keeps_the_distribution_dpo_collapses(tiny_run):
    _, rows = tiny_run
    spo, dpo = (next(r for r in rows if r["method"] == m and r["split"] == "train") for m in ("spo", "dpo"))
    payload = json.loads((tiny_run[0] / "answers.json").read_text())
    reference = next(r for r in payload["reference_rows"] if r["name"] == "SFT reference" and r["split"] == "train")
    # Both start from the same reference; measured against the expert's Softmax(r), SPO ends closer than DPO, and
    # DPO puts more on the best answer than SPO does (its fixed point is the argmax).
    assert spo["tv_to_softmax"] < dpo["tv_to_softmax"]
    assert dpo["top_prob"] > spo["top_prob"] + 0.1
    assert spo["tv"] < reference["tv_to_softmax"]  # SPO moved towards Softmax(r) from where it started
    assert dpo["entropy"] < spo["entropy"]


def test_tiny_run_files_come_from_one_run(tiny_run):
    output_dir, rows = tiny_run
    payload = json.loads((output_dir / "answers.json").read_text())
    assert payload["rows"] == rows
    required = {"method", "alpha", "beta", "regularizer", "data", "split", "steps", "tv", "mass", "entropy"}
    assert all(required | {"target_entropy", "top_prob"} <= row.keys() for row in rows)
    assert [(r["method"], r["split"]) for r in rows] == [("spo", s) for s in SPLITS] + [("dpo", s) for s in SPLITS]
    table = (output_dir / "answers.md").read_text()
    assert table == payload["table"] and "test command" in table
    caption = table.split("\n\n")[0]
    assert markdown_tables(payload["rows"], payload["reference_rows"], caption, 4) == table
    assert (output_dir / "results.md").read_text() == f"# Results\n{DOC_BEGIN}\n{table}{DOC_END}\n"
    figure = (output_dir / "answers.png").read_bytes()
    assert figure.startswith(b"\x89PNG") and hashlib.sha256(figure).hexdigest() == payload["figure_sha256"]
    history = payload["runs"][0]["history"]
    assert [point["step"] for point in history] == [0, 10, 20, 30, 40]
    # Step 0 is the SFT reference, measured by the same function in the same process: exactly its train row.
    reference = next(r for r in payload["reference_rows"] if r["name"] == "SFT reference" and r["split"] == "train")
    assert history[0]["mass"] == pytest.approx(reference["mass"], rel=1e-12)


def test_default_config_is_the_documented_run():
    config = AnswersConfig()
    names = [setting.name for setting in config.settings]
    assert names[:4] == ["SPO α=0.5 β=0.1", "SPO α=1 β=0.1", "SPO α=2 β=0.1", "SPO α=1 β=0"]
    assert names[4:] == ["DPO β=0.1", "DPO β=0.01"]


def test_tiny_run_trains_the_requested_extra_settings(tmp_path):
    """`--settings all` adds SPO on rankings (Eq. 15) and the dataset-KL ablation (Table 6): both train and report."""
    from dataclasses import replace

    from benchmarks.answers import EXTRA_SETTINGS

    config = tiny_config()
    config = replace(
        config,
        plan=replace(config.plan, max_steps=6, logging_steps=3),
        eval_every=3,
        settings=tuple(replace(setting, beta=0.1) for setting in EXTRA_SETTINGS),
    )
    rows = run(config, tmp_path, "x", base_dir=TINY_MODEL_DIR, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert [(r["data"], r["regularizer"]) for r in rows if r["split"] == "train"] == [
        ("rankings", "global_kl"),
        ("pairs", "dataset_kl"),
    ]
    payload = json.loads((tmp_path / "answers.json").read_text())
    ranked, dataset_kl = payload["runs"]
    # Each trained the way its setting says: the rankings run logs the ranking metrics, the ablation its own KL.
    assert any("rewards/kendall_tau" in entry for entry in ranked["train_log"])
    assert any("kl/dataset" in entry for entry in dataset_kl["train_log"])
    assert not any("kl/global" in entry for entry in dataset_kl["train_log"])
    # Training moved the policies: the last measurement differs from the reference's.
    for result in payload["runs"]:
        assert result["history"][-1]["tv"] != result["history"][0]["tv"]


# ---------------------------------------------------------------------------------------------------------------------
# The committed run (docs/results/answers.json) and what the docs say about it
# ---------------------------------------------------------------------------------------------------------------------


def _shipped():
    return json.loads((REPO_ROOT / "docs" / "results" / "answers.json").read_text(encoding="utf-8"))


def test_shipped_results_are_one_run():
    """docs/results.md shows the tables of the JSON next to it, the figure is that run's, the rows are its data's."""
    payload = _shipped()
    doc = (REPO_ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert f"{DOC_BEGIN}\n{payload['table']}{DOC_END}" in doc
    assert (REPO_ROOT / "docs" / "results" / "answers.md").read_text(encoding="utf-8") == payload["table"]
    figure = (REPO_ROOT / "docs" / "results" / "answers.png").read_bytes()
    assert hashlib.sha256(figure).hexdigest() == payload["figure_sha256"], "the figure is not the JSON's run"
    caption = payload["table"].split("\n\n")[0]
    # The tables show the JSON's rows (exact: the same formatting of the same committed floats).
    assert (
        markdown_tables(payload["rows"], payload["reference_rows"], caption, payload["config"]["num_samples"])
        == (payload["table"])
    )
    # Every exact number is a function of the stored final log-probabilities: recomputed here in float64 (softmax,
    # logsumexp and sums over 6 answers and at most 18 prompts: a few ulps from the committing machine's).
    task = AnswersTask()
    for result in payload["runs"]:
        setting = result["setting"]
        alpha = setting["alpha"] if setting["method"] == "spo" else 0.0
        for split in SPLITS:
            row = next(r for r in payload["rows"] if r["name"] == setting["name"] and r["split"] == split)
            recomputed = distribution_summary(
                torch.tensor(result["final"][split], dtype=torch.float64), task.target(alpha)
            )
            for key, value in recomputed.items():
                assert row[key] == pytest.approx(value, rel=1e-12, abs=1e-14), f"{setting['name']} {split} {key}"


def test_shipped_results_support_what_the_docs_say():
    """Each figure of docs/results.md's reading of the answers run, checked against the committed JSON."""
    payload = _shipped()
    rows = {(row["name"], row["split"]): row for row in payload["rows"] + payload["reference_rows"]}
    runs = {result["setting"]["name"]: result for result in payload["runs"]}

    def train(name, key, digits=2):
        return round(rows[(name, "train")][key], digits)

    # DPO collapses, SPO keeps the spread.
    assert [train(f"DPO β={b}", "top_prob") for b in ("0.1", "0.01")] == [0.97, 0.99]
    assert [train(f"DPO β={b}", "entropy") for b in ("0.1", "0.01")] == [0.10, 0.05]
    assert [train(f"DPO β={b}", "sampled_distinct", 1) for b in ("0.1", "0.01")] == [1.4, 1.3]
    assert (train("SPO α=1 β=0.1", "top_prob"), train("SPO α=1 β=0.1", "entropy")) == (0.43, 1.46)
    assert train("SPO α=1 β=0.1", "sampled_distinct", 1) == 4.7
    assert [round(rows[(f"DPO β={b}", "heldout_template")]["top_prob"], 2) for b in ("0.1", "0.01")] == [0.98, 0.87]

    # How many steps DPO needed: the first measurement with the largest (resp. the best) answer above 0.9.
    def first_step(name, key):
        return next(point["step"] for point in runs[name]["history"] if point[key] > 0.9)

    assert [first_step(f"DPO β={b}", "max_prob") for b in ("0.1", "0.01")] == [75, 50]
    assert [first_step(f"DPO β={b}", "top_prob") for b in ("0.1", "0.01")] == [150, 225]

    # alpha orders the entropy; within 10 % of the target for alpha = 1 and 2, not for 0.5.
    relative = {}
    for alpha in ("0.5", "1", "2"):
        row = rows[(f"SPO α={alpha} β=0.1", "train")]
        relative[alpha] = round(100 * (row["entropy"] / row["target_entropy"] - 1), 1)
    assert relative == {"0.5": 11.5, "1": -2.5, "2": -3.1}
    assert [train(f"SPO α={a} β=0.1", "entropy") for a in ("0.5", "1", "2")] == [1.14, 1.46, 1.65]
    # Why alpha = 0.5 misses: its target is the furthest from the reference (TV at step 0), whose entropy is 1.65.
    assert [round(runs[f"SPO α={a} β=0.1"]["history"][0]["tv"], 2) for a in ("0.5", "1", "2")] == [0.55, 0.38, 0.26]
    assert train("SFT reference", "entropy") == 1.65 and train("SFT reference", "mass") == 0.89

    # alpha = 1: TV and mass against the targets, the data's floor, the last 100 steps' spread.
    assert round(rows[("SPO α=1 β=0.1", "train")]["tv"], 3) == 0.103
    assert round(rows[("SPO α=1 β=0.1", "heldout_template")]["tv"], 3) == 0.112
    assert train("SPO α=1 β=0.1", "mass") == 0.81
    assert round(rows[("SPO α=1 β=0.1", "heldout_template")]["mass"], 2) == 0.78
    assert [round(payload["data_floor"]["1.0"][k], 3) for k in ("category", "prompt")] == [0.052, 0.118]
    last_100_steps = [round(p["tv"], 3) for p in runs["SPO α=1 β=0.1"]["history"] if p["step"] > 150]
    assert last_100_steps == [0.183, 0.146, 0.108, 0.103]

    # What the KL is for: mass and sampled answers outside the set with and without it.
    assert (train("SPO α=1 β=0", "mass"), train("SPO α=1 β=0", "sampled_outside")) == (0.30, 0.67)
    assert (train("SPO α=1 β=0.1", "mass"), train("SPO α=1 β=0.1", "sampled_outside")) == (0.81, 0.18)

    # Held-out categories: DPO's sharpening carries over, SPO with the KL keeps the spread.
    category = {name: row for (name, split), row in rows.items() if split == "heldout_category"}
    assert [round(category[f"DPO β={b}"]["max_prob"], 2) for b in ("0.1", "0.01")] == [0.65, 0.87]
    spo_max = [category[f"SPO α={a} β=0.1"]["max_prob"] for a in ("0.5", "1", "2")]
    assert (round(min(spo_max), 2), round(max(spo_max), 2)) == (0.40, 0.51)
    mass = {name: round(row["mass"], 2) for name, row in category.items()}
    assert mass["SFT reference"] == 0.25
    assert {mass[n] for n in ("SPO α=0.5 β=0.1", "SPO α=1 β=0.1", "SPO α=2 β=0.1", "DPO β=0.1")} == {0.15, 0.16}
    assert (mass["SPO α=1 β=0"], mass["DPO β=0.01"]) == (0.05, 0.07)

    # Budget.
    assert round(payload["total_seconds"] / 60) == 75


def test_shipped_beta_sweep_supports_what_the_docs_say():
    """docs/results.md's β sweep: its block is the sweep's JSON, and the reading's figures are the four runs'."""
    sweep = json.loads((REPO_ROOT / "docs" / "results" / "answers_beta_sweep.json").read_text(encoding="utf-8"))
    doc = (REPO_ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert f"<!-- answers_beta_sweep:begin -->\n{sweep['table']}<!-- answers_beta_sweep:end -->" in doc
    default = _shipped()
    # The sweep and the default run share everything but the settings: their rows line up.
    assert {k: v for k, v in sweep["config"].items() if k != "settings"} == {
        k: v for k, v in default["config"].items() if k != "settings"
    }
    rows = {row["name"]: row for row in default["rows"] + sweep["rows"] if row["split"] == "train"}
    names = [f"SPO α=1 β={beta}" for beta in ("0", "0.03", "0.1", "0.3")]
    assert [round(rows[n]["mass"], 2) for n in names] == [0.30, 0.71, 0.81, 0.87]
    assert [round(rows[n]["entropy"], 2) for n in names] == [1.40, 1.38, 1.46, 1.57]
    assert [round(rows[n]["tv"], 3) for n in names] == [0.121, 0.126, 0.103, 0.132]
    assert round(100 * (rows[names[3]]["entropy"] / rows[names[3]]["target_entropy"] - 1)) == 5
    final = next(r for r in sweep["runs"] if r["setting"]["name"] == names[3])["final"]["train"]
    modes = torch.tensor(final).argmax(-1)
    assert (modes != 0).sum().item() == 2 and len(modes) == 18


def test_readme_states_the_committed_answers_run():
    """The README's summary of the answers run, each figure formatted from the JSON and found in its paragraph."""
    payload = _shipped()
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("On a real chat model") : readme.index("On a 1 MB model")]
    paragraph = " ".join(paragraph.split())  # the figures may wrap across lines
    rows = {row["name"]: row for row in payload["rows"] if row["split"] == "train"}
    template = {row["name"]: row for row in payload["rows"] if row["split"] == "heldout_template"}
    spo = rows["SPO α=1 β=0.1"]
    dpo = [rows[f"DPO β={b}"]["top_prob"] for b in ("0.1", "0.01")]
    distinct = sorted(rows[f"DPO β={b}"]["sampled_distinct"] for b in ("0.1", "0.01"))
    entropies = " / ".join(f"{rows[f'SPO α={a} β=0.1']['entropy']:.2f}" for a in ("0.5", "1", "2"))
    targets = " / ".join(f"{rows[f'SPO α={a} β=0.1']['target_entropy']:.2f}" for a in ("0.5", "1", "2"))
    alpha_half = rows["SPO α=0.5 β=0.1"]
    expected = [
        f"{round(payload['total_seconds'] / 60)} minutes",
        f"DPO put {dpo[0]:.2f} (β = 0.1) and {dpo[1]:.2f} (β = 0.01)",
        f"held {distinct[0]:.1f}-{distinct[1]:.1f} distinct ones",
        f"gave the best answer {spo['top_prob']:.2f}",
        f"total variation {spo['tv']:.3f} to `Softmax(r)` on training prompts",
        f"fit sits {payload['data_floor']['1.0']['category']:.2f}-{payload['data_floor']['1.0']['prompt']:.2f} from it",
        f"and {template['SPO α=1 β=0.1']['tv']:.3f} on a held-out prompt template",
        f"{spo['mass']:.2f} of the probability kept",
        f"{spo['sampled_distinct']:.1f} distinct answers in 8 samples",
        f"{entropies} nats",
        f"(targets {targets};",
        f"{100 * (alpha_half['entropy'] / alpha_half['target_entropy'] - 1):.1f} % above its target",
        f"kept only {rows['SPO α=1 β=0']['mass']:.2f} of the probability",
    ]
    missing = [text for text in expected if text not in paragraph]
    assert missing == [], f"the README does not say: {missing}"
