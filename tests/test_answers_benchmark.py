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

"""`benchmarks.answers`: the task, the exact measurement, the shared harness, and a tiny-model run end to end."""

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

from .doc_figures import assert_figures_in, fmt, passage, read_doc


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
    with pytest.raises(ValueError, match="dpo trains on pairs data, got data=.rankings."):
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


def _minus(text: str) -> str:
    return text.replace("-", "−")  # the docs print a signed percentage with a true minus sign


def test_shipped_results_support_what_the_docs_say():
    """Each figure of docs/results.md's reading of the answers run, formatted from the committed JSON, found there."""
    payload = _shipped()
    rows = {(row["name"], row["split"]): row for row in payload["rows"] + payload["reference_rows"]}
    runs = {result["setting"]["name"]: result for result in payload["runs"]}
    reading = passage(read_doc("docs/results.md"), "**Reading: the targets, met and missed.**", "### The global KL")
    train = {name: row for (name, split), row in rows.items() if split == "train"}
    template = {name: row for (name, split), row in rows.items() if split == "heldout_template"}
    category = {name: row for (name, split), row in rows.items() if split == "heldout_category"}
    dpo, spo = ("DPO β=0.1", "DPO β=0.01"), [f"SPO α={a} β=0.1" for a in ("0.5", "1", "2")]
    figures = {}

    # DPO collapses, SPO keeps the spread.
    for name in dpo:
        figures.update(
            {
                f"{name} top answer": fmt(train[name]["top_prob"], 2),
                f"{name} entropy": fmt(train[name]["entropy"], 2),
                f"{name} distinct of 8": fmt(train[name]["sampled_distinct"], 1),
                f"{name} top answer, held-out template": fmt(template[name]["top_prob"], 2),
            }
        )
    one = train["SPO α=1 β=0.1"]
    figures.update(
        {
            "SPO α=1 top answer": fmt(one["top_prob"], 2),
            "SPO α=1 distinct of 8": fmt(one["sampled_distinct"], 1),
        }
    )

    # How many steps DPO needed: the first measurement with the largest (resp. the best) answer above 0.9.
    for name in dpo:
        first_max = next(point for point in runs[name]["history"] if point["max_prob"] > 0.9)
        first_top = next(point for point in runs[name]["history"] if point["top_prob"] > 0.9)
        figures.update(
            {
                f"{name} first step, largest > 0.9": f"step {first_max['step']}",
                f"{name} largest then": fmt(first_max["max_prob"], 2),
                f"{name} best answer then": fmt(first_max["top_prob"], 2),
                f"{name} first step, best > 0.9": f"step {first_top['step']}",
                f"{name} best answer at that step": fmt(first_top["top_prob"], 2),
            }
        )

    # alpha orders the entropy (a property of the data), and how far each is from its target.
    entropies = [train[name]["entropy"] for name in spo]
    assert entropies == sorted(entropies), f"the doc says entropy falls as alpha falls; the data: {entropies}"
    for name in spo:
        relative = 100 * (train[name]["entropy"] / train[name]["target_entropy"] - 1)
        figures.update(
            {
                f"{name} entropy": fmt(train[name]["entropy"], 2),
                f"{name} target entropy": fmt(train[name]["target_entropy"], 2),
                f"{name} entropy against target": _minus(f"{relative:+.1f} %").replace(
                    "+", "+" if relative > 0 else ""
                ),
                f"{name} TV at step 0": fmt(runs[name]["history"][0]["tv"], 2),
            }
        )
    figures["SFT reference entropy"] = fmt(train["SFT reference"]["entropy"], 2)
    figures["SFT reference mass"] = fmt(train["SFT reference"]["mass"], 2)

    # alpha = 1: TV and mass against the targets, the data's floor, the last 100 steps' spread; alpha = 2's TV.
    last_100_steps = [p["tv"] for p in runs["SPO α=1 β=0.1"]["history"] if p["step"] > 150]
    two = "SPO α=2 β=0.1"
    figures.update(
        {
            "SPO α=1 TV": fmt(one["tv"], 3),
            "SPO α=1 TV, held-out template": fmt(template["SPO α=1 β=0.1"]["tv"], 3),
            "SPO α=1 mass": fmt(one["mass"], 2),
            "SPO α=1 mass, held-out template": fmt(template["SPO α=1 β=0.1"]["mass"], 2),
            "data floor, templates pooled": fmt(payload["data_floor"]["1.0"]["category"], 3),
            "data floor, per prompt": fmt(payload["data_floor"]["1.0"]["prompt"], 3),
            "SPO α=1 TV over the last 100 steps": ", ".join(fmt(tv, 3) for tv in last_100_steps),
            "SPO α=2 TV, train / held-out template": f"{fmt(train[two]['tv'], 3)} / {fmt(template[two]['tv'], 3)}",
        }
    )

    # What the KL is for: mass and sampled answers outside the set with and without it.
    no_kl = train["SPO α=1 β=0"]
    figures.update(
        {
            "SPO β=0 mass": fmt(no_kl["mass"], 2),
            "SPO β=0 sampled outside": f"{100 * no_kl['sampled_outside']:.0f} %",
            "SPO β=0.1 sampled outside": f"{100 * one['sampled_outside']:.0f} %",
            "SPO β=0 TV": fmt(no_kl["tv"], 2),
            "SPO β=0.1 TV": fmt(one["tv"], 2),
        }
    )

    # Held-out categories: DPO's sharpening carries over, SPO with the KL keeps the spread.
    spo_max = [category[name]["max_prob"] for name in spo]
    spo_entropy = [category[name]["entropy"] for name in spo]
    kept = sorted({fmt(category[name]["mass"], 2) for name in (*spo, "DPO β=0.1")})
    figures.update(
        {
            "SFT reference mass, held-out categories": fmt(category["SFT reference"]["mass"], 2),
            "SPO and DPO β=0.1 mass, held-out categories": "-".join(kept),
            "SPO β=0 mass, held-out categories": fmt(category["SPO α=1 β=0"]["mass"], 2),
            "DPO β=0.01 mass, held-out categories": fmt(category["DPO β=0.01"]["mass"], 2),
            "SPO largest answer range, held-out categories": f"{fmt(min(spo_max), 2)}-{fmt(max(spo_max), 2)}",
            "SPO entropy range, held-out categories": f"{fmt(min(spo_entropy), 2)}-{fmt(max(spo_entropy), 2)}",
        }
    )
    for name in dpo:
        figures[f"{name} largest answer, held-out categories"] = fmt(category[name]["max_prob"], 2)
        figures[f"{name} entropy, held-out categories"] = fmt(category[name]["entropy"], 2)

    # Budget.
    seconds = {name: result["seconds"] for name, result in ((n, train[n]) for n in (*spo, *dpo, "SPO α=1 β=0"))}
    figures.update(
        {
            "total minutes": f"{round(payload['total_seconds'] / 60)} minutes",
            "SPO with the KL, seconds": f"{min(seconds[n] for n in spo):.0f}-{max(seconds[n] for n in spo):.0f} s",
            "SPO without the KL, seconds": f"{seconds['SPO α=1 β=0']:.0f} s",
            "DPO, seconds": f"{min(seconds[n] for n in dpo):.0f}-{max(seconds[n] for n in dpo):.0f} s",
        }
    )
    assert_figures_in(reading, figures, "docs/results.md's reading of the answers run")


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
    reading = passage(doc, "### The global KL's weight", "### A fair comparison")
    mass = [rows[n]["mass"] for n in names]
    tv = [rows[n]["tv"] for n in names]
    # The reading's claims about the data: mass rises with beta, the TV is smallest at beta = 0.1.
    assert mass == sorted(mass) and min(tv) == tv[2], (mass, tv)
    final = next(r for r in sweep["runs"] if r["setting"]["name"] == names[3])["final"]["train"]
    modes = torch.tensor(final).argmax(-1)
    excess = 100 * (rows[names[3]]["entropy"] / rows[names[3]]["target_entropy"] - 1)
    figures = {
        "mass by beta": ", ".join(fmt(m, 2) for m in mass),
        "entropy by beta": ", ".join(fmt(rows[n]["entropy"], 2) for n in names),
        "TV by beta": ", ".join(fmt(v, 3) for v in tv),
        "beta = 0.3 entropy above the target": f"{excess:.0f} %",
        "prompts whose most likely answer is not the best, of all": f"{(modes != 0).sum().item()} of the {len(modes)}",
    }
    assert_figures_in(reading, figures, "docs/results.md's reading of the beta sweep")


def test_upstream_issue_states_the_committed_answers_run():
    """docs/upstream.md's issue text: each figure of the answers run, formatted from the JSON and found there."""
    payload = _shipped()
    issue = passage(read_doc("docs/upstream.md"), "Why in TRL:", "Users have asked")
    rows = {row["name"]: row for row in payload["rows"] if row["split"] == "train"}
    spo = rows["SPO α=1 β=0.1"]
    dpo = sorted(rows[f"DPO β={b}"]["top_prob"] for b in ("0.1", "0.01"))
    figures = {
        "DPO's best answer, both betas": f"{fmt(dpo[0], 2)}-{fmt(dpo[1], 2)}",
        "SPO α=1 best answer": fmt(spo["top_prob"], 2),
        "SPO α=1 TV": fmt(spo["tv"], 3),
        "SPO α=1 mass": fmt(spo["mass"], 2),
        "SPO β=0 mass": fmt(rows["SPO α=1 β=0"]["mass"], 2),
        "entropy by alpha": " / ".join(fmt(rows[f"SPO α={a} β=0.1"]["entropy"], 2) for a in ("0.5", "1", "2")),
        "target entropy by alpha": " / ".join(
            fmt(rows[f"SPO α={a} β=0.1"]["target_entropy"], 2) for a in ("0.5", "1", "2")
        ),
        "steps": f"{spo['steps']} steps",
    }
    assert_figures_in(issue, figures, "docs/upstream.md's issue text")
