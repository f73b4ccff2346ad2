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

"""The expert-distribution benchmark: its known-answer task, its exact enumeration, and short runs of the real trainers."""

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks.expert_distribution import (
    BenchmarkConfig,
    Setting,
    markdown_table,
    run,
    summarize_setting,
)
from benchmarks.expert_task import (
    PROMPT,
    ExpertTask,
    build_reference_model,
    build_tokenizer,
    distribution_over_responses,
    entropy,
    kl_divergence,
    response_log_probs,
    response_token_ids,
    total_variation,
)
from benchmarks.reporting import ProgressPrinter, update_doc

from .doc_figures import assert_figures_in, fmt, passage, read_doc


REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_BEGIN, DOC_END = "<!-- expert-distribution:begin -->", "<!-- expert-distribution:end -->"


@pytest.fixture(scope="module")
def task():
    return ExpertTask()


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def reference_model(tokenizer, task):
    return build_reference_model(tokenizer, task, seed=0)


def test_response_set_and_rewards(task):
    responses = task.responses
    assert len(responses) == len(set(responses)) == 4**3
    assert responses[0] == " a a a" and responses[-1] == " d d d"
    # r(y) = sum of letter rewards: a=1, b=0.5, c=0, d=-0.5. Sums of multiples of 0.5: exact in binary.
    assert task.reward(" a b d") == 1.0 + 0.5 - 0.5
    rewards = task.rewards()
    assert rewards.max().item() == 3.0 and rewards.min().item() == -1.5


def test_target_is_softmax_of_reward_over_alpha(task):
    rewards = task.rewards()
    for alpha in (0.5, 1.0, 2.0):
        target = task.target(alpha)
        assert target.sum().item() == pytest.approx(1.0, abs=1e-12)  # float64 softmax over 64: ~64 ulps at most
        # log-odds between any two responses are their reward difference divided by alpha (float64: ~1e-15).
        assert math.log(target[0] / target[-1]) == pytest.approx((rewards[0] - rewards[-1]).item() / alpha, rel=1e-12)
    with pytest.raises(ValueError, match="alpha > 0, got 0"):
        task.target(0.0)
    with pytest.raises(ValueError, match="one value per letter"):
        ExpertTask(letter_rewards=(1.0, 0.0))


def test_pairs_follow_bradley_terry(task):
    rows = task.preference_pairs(20_000, seed=1)
    assert all(row["prompt"] == PROMPT and row["chosen"] != row["rejected"] for row in rows)
    # The better response of a pair wins with probability sigmoid(|Δr|): compare the observed rate with its expectation.
    informative = [row for row in rows if task.reward(row["chosen"]) != task.reward(row["rejected"])]
    expected = [1 / (1 + math.exp(-abs(task.reward(r["chosen"]) - task.reward(r["rejected"])))) for r in informative]
    observed = sum(task.reward(r["chosen"]) > task.reward(r["rejected"]) for r in informative)
    std = math.sqrt(sum(p * (1 - p) for p in expected))
    assert abs(observed - sum(expected)) < 4 * std
    assert task.preference_pairs(10, seed=1) == rows[:10]  # seeded


def test_distribution_distances_by_hand():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    assert total_variation(p, q) == pytest.approx(0.5)
    assert entropy(p) == pytest.approx(math.log(2))
    assert entropy(torch.tensor([1.0, 0.0], dtype=torch.float64)) == 0.0
    assert kl_divergence(p, q) == pytest.approx(math.log(2))  # 2 * 0.5 * log(0.5 / 0.25)
    assert kl_divergence(q, p) == math.inf


def test_tokenizer_maps_each_letter_to_one_token(tokenizer, task):
    ids = response_token_ids(tokenizer, task)
    assert ids.shape == (64, 4)
    assert (ids[:, -1] == tokenizer.eos_token_id).all()
    assert len(set(map(tuple, ids.tolist()))) == 64
    with pytest.raises(ValueError, match="one token per letter"):
        response_token_ids(tokenizer, ExpertTask(alphabet="abcz"))


def test_enumeration_matches_token_by_token_scoring(reference_model, tokenizer, task):
    log_probs = response_log_probs(reference_model, tokenizer, task)
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    completions = response_token_ids(tokenizer, task)
    for index in (0, 17, 63):
        total = 0.0
        context = list(prompt_ids)
        for token in completions[index].tolist():  # one forward per prefix: no batching, no slicing to get wrong
            with torch.no_grad():
                logits = reference_model(input_ids=torch.tensor([context])).logits[0, -1].double()
            total += logits.log_softmax(-1)[token].item()
            context.append(token)
        # fp32 logits of a batched forward vs one forward per prefix: a few ulps of each of 4 token log-probs (~1).
        assert log_probs[index].item() == pytest.approx(total, abs=1e-5), f"log-prob of response {index}: enumeration"


def test_reference_model_fits_its_distribution_and_stops(reference_model, tokenizer, task):
    pi, mass = distribution_over_responses(reference_model, tokenizer, task)
    assert total_variation(pi, task.reference_distribution()) < 0.02
    assert mass > 0.95  # it answers with three letters and EOS, like the dataset's completions
    # And it is far from what the preferences ask for, so training has somewhere to go.
    assert total_variation(pi, task.target(1.0)) > 0.5


def test_settings_reject_what_they_cannot_run():
    with pytest.raises(ValueError, match=r"method must be one of \(.*\), got 'ppo'"):
        Setting("ppo", beta=0.1)
    with pytest.raises(ValueError, match="alpha is required for SPO"):
        Setting("spo", beta=0.1)
    with pytest.raises(ValueError, match="meaningless for DPO"):
        Setting("dpo", beta=0.1, alpha=1.0)


def test_update_doc_replaces_only_the_marked_block(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text(f"intro\n{DOC_BEGIN}\nold table\n{DOC_END}\noutro\n")
    update_doc(doc, "new table\n")
    assert doc.read_text() == f"intro\n{DOC_BEGIN}\nnew table\n{DOC_END}\noutro\n"
    doc.write_text("no markers\n")
    with pytest.raises(ValueError, match="must contain the markers .* found neither"):
        update_doc(doc, "x")
    doc.write_text(f"{DOC_BEGIN}\n")
    with pytest.raises(ValueError, match="found \\['<!-- expert-distribution:begin -->'\\]"):
        update_doc(doc, "x")


SHORT_RUN = BenchmarkConfig(
    num_pairs=2048,
    max_steps=48,
    eval_every=16,
    settings=(Setting("spo", alpha=1.0, beta=0.0), Setting("spo", alpha=1.0, beta=1.0), Setting("dpo", beta=0.1)),
)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("expert")
    doc = output_dir / "results.md"
    doc.write_text(f"# Results\n{DOC_BEGIN}\n{DOC_END}\n")
    rows = run(SHORT_RUN, output_dir, "test command", doc=doc, log=lambda message: None)
    return output_dir, rows


def test_short_run_trains_the_real_trainers_towards_their_fixed_points(short_run, task):
    output_dir, rows = short_run
    spo, spo_kl, dpo = rows
    payload = json.loads((output_dir / "expert_distribution.json").read_text())
    reference = torch.tensor(payload["reference"], dtype=torch.float64)
    start_tv = total_variation(reference, task.target(1.0))
    # SPO with beta = 0 heads for Softmax(r); 48 steps is short, the full benchmark goes further.
    assert spo["tv_to_target"] < 0.5 * start_tv
    # DPO heads for one response: far more peaked than SPO from the same start and data.
    assert dpo["max_prob"] > 2 * spo["max_prob"] and dpo["entropy"] < spo["entropy"] - 1.0
    # The global KL holds the policy nearer pi_ref, exactly over Y.
    assert spo_kl["kl_to_reference"] < spo["kl_to_reference"]
    assert spo_kl["trainer_kl_global"] > 0 and spo["trainer_kl_global"] is None and dpo["trainer_kl_global"] is None
    runs = payload["runs"]
    assert [point["step"] for point in runs[0]["history"]] == [0, 16, 32, 48]
    # Step 0 is the reference itself for every method: the same computation on the same weights, in this process.
    assert runs[0]["history"][0]["entropy"] == pytest.approx(entropy(reference), abs=1e-9)


def test_short_run_files_come_from_one_run(short_run, task):
    output_dir, rows = short_run
    payload = json.loads((output_dir / "expert_distribution.json").read_text())
    reference = torch.tensor(payload["reference"], dtype=torch.float64)
    # Every row is a function of the stored final distributions: recompute it. Exact: JSON round-trips floats, and
    # the recomputation is the same float64 computation in the same process.
    assert [summarize_setting(result, task, reference) for result in payload["runs"]] == payload["rows"] == rows
    table = (output_dir / "expert_distribution.md").read_text()
    assert table == payload["table"] and "test command" in table and "seed 0" in table
    assert f"| SPO α=1 β=0 | {rows[0]['tv_to_target']:.3f} | {rows[0]['entropy']:.3f} |" in table
    assert (output_dir / "results.md").read_text() == f"# Results\n{DOC_BEGIN}\n{table}{DOC_END}\n"
    figure = (output_dir / "expert_distribution.png").read_bytes()
    assert figure.startswith(b"\x89PNG") and hashlib.sha256(figure).hexdigest() == payload["figure_sha256"]


def test_run_is_reproducible_with_its_seed(tmp_path):
    config = BenchmarkConfig(num_pairs=256, max_steps=8, eval_every=4, settings=(Setting("spo", alpha=1.0, beta=1.0),))
    first = run(config, tmp_path / "first", "x", log=lambda message: None)
    second = run(config, tmp_path / "second", "x", log=lambda message: None)
    for row in first + second:
        row.pop("seconds")
    assert first == second  # exact: the same seeded computation twice in one process


def test_shipped_results_are_one_run():
    """docs/results.md shows the table of the JSON next to it, and the figure is that run's."""
    results_dir = REPO_ROOT / "docs" / "results"
    payload = json.loads((results_dir / "expert_distribution.json").read_text())
    doc = (REPO_ROOT / "docs" / "results.md").read_text()
    assert f"{DOC_BEGIN}\n{payload['table']}{DOC_END}" in doc
    figure = (results_dir / "expert_distribution.png").read_bytes()
    assert hashlib.sha256(figure).hexdigest() == payload["figure_sha256"], "the figure is not the JSON's run"
    # The table shows the JSON's rows (exact: the same formatting of the same committed floats).
    caption = payload["table"].split("\n\n")[0]
    assert markdown_table(payload["rows"], caption) == payload["table"], "the table does not show the JSON's rows"
    assert [row["name"] for row in payload["rows"]] == [setting.name for setting in BenchmarkConfig().settings]
    # And the rows are functions of the runs' stored final distributions. Recomputed here in float64: sums over the
    # 64 responses and this machine's exp / log, a few ulps from the committing machine's (observed 2e-15 relative).
    # Any other run (another seed, setting or step count, or fp32 training on another CPU) moves them by far more:
    # the table's 3 digits differ.
    task, reference = ExpertTask(), torch.tensor(payload["reference"], dtype=torch.float64)
    for committed, result in zip(payload["rows"], payload["runs"], strict=True):
        recomputed = summarize_setting(result, task, reference)
        assert recomputed.keys() == committed.keys()
        for key, value in committed.items():
            what = f"{committed['name']}: {key} recomputed from the stored final distribution vs the committed row"
            if isinstance(value, float):
                assert recomputed[key] == pytest.approx(value, rel=1e-12, abs=1e-14), what
            else:
                assert recomputed[key] == value, what


def test_shipped_results_support_what_the_docs_say():
    """The claims of docs/results.md, checked against the committed run."""
    rows = {
        row["name"]: row
        for row in json.loads((REPO_ROOT / "docs/results/expert_distribution.json").read_text())["rows"]
    }
    for alpha in ("0.5", "1", "2"):
        row = rows[f"SPO α={alpha} β=0"]
        assert row["tv_to_target"] < 0.1 and abs(row["entropy"] - row["target_entropy"]) < 0.1
    for beta in ("0.01", "0.1"):
        assert rows[f"DPO β={beta}"]["max_prob"] > 0.95
    sweep = [rows[f"SPO α=1 β={beta}"] for beta in ("0", "0.01", "0.1", "1")]
    kl = [row["kl_to_reference"] for row in sweep]
    assert kl == sorted(kl, reverse=True) and kl[-1] < 0.1 * kl[0]
    assert all(abs(row["trainer_kl_global"] - row["kl_to_reference"]) < 0.01 for row in sweep[1:])


def test_shipped_mass_on_the_valid_answers_is_what_the_docs_say():
    """docs/upstream.md gives the TV and max-probability figures conditioned on Y, with pi(Y) beside them."""
    rows = {
        row["name"]: row
        for row in json.loads((REPO_ROOT / "docs/results/expert_distribution.json").read_text())["rows"]
    }
    mass = {name: row["mass_on_Y"] for name, row in rows.items()}
    issue = passage(read_doc("docs/upstream.md"), "Why in TRL:", "Users have asked")
    tv = [rows[f"SPO α={a} β=0"]["tv_to_target"] for a in ("0.5", "1", "2")]
    with_kl = sorted({fmt(mass[f"SPO α=1 β={b}"], 3) for b in ("0.01", "0.1", "1")})
    dpo_max = {fmt(rows[f"DPO β={b}"]["max_prob"], 2) for b in ("0.1", "0.01")}
    assert len(dpo_max) == 1, f"the doc gives one figure for both DPO runs; the data: {dpo_max}"
    figures = {
        # pi(Y) without the KL: 4 decimals for alpha = 0.5, whose mass is near 0.
        "pi(Y), SPO beta = 0, by alpha": " / ".join(
            fmt(mass[f"SPO α={a} β=0"], digits) for a, digits in (("0.5", 4), ("1", 2), ("2", 2))
        ),
        "pi(Y), SPO with the KL": "-".join(with_kl),
        "TV to the target conditioned on Y, SPO beta = 0": f"{fmt(min(tv), 2)}-{fmt(max(tv), 2)}",
        "DPO's largest probability conditioned on Y": dpo_max.pop(),
    }
    assert_figures_in(issue, figures, "docs/upstream.md's issue text")


def test_command_line_rejects_bad_input():
    from benchmarks.expert_distribution import main

    with pytest.raises(ValueError, match="--max_steps must be >= 1, got 0"):
        main(["--max_steps", "0"])


def test_progress_names_the_setting_the_step_and_the_time_left():
    lines = []
    now = [0.0]
    progress = ProgressPrinter(1, 3, "SPO α=1 β=0", 16, 8.0, log=lines.append, clock=lambda: now[0])
    state = SimpleNamespace(max_steps=16, global_step=0)
    progress.on_train_begin(None, state, None)
    for step in range(1, 17):
        now[0] += 0.5  # this setting: 0.5 s a step; the one before: 8 s for 16 steps, the same
        state.global_step = step
        progress.on_step_end(None, state, None)
    assert lines[0] == "[2/3] SPO α=1 β=0: training 16 steps"
    assert len(lines) == 1 + 8  # every eighth of the setting
    # Step 4 of 16: 0.5 s a step overall, 12 steps left here and 16 in the last setting. Exact: binary fractions.
    assert lines[2] == ("[2/3] SPO α=1 β=0: step 4/16 (25%), 2 s; about 6 s left in this setting, 0.2 min in all")
    assert lines[-1].startswith("[2/3] SPO α=1 β=0: step 16/16 (100%), 8 s; about 0 s left")


def test_shipped_reading_states_the_committed_run():
    """The figures of docs/results.md's 'Reading the table', formatted from the committed JSON and found there."""
    rows = {
        row["name"]: row
        for row in json.loads((REPO_ROOT / "docs/results/expert_distribution.json").read_text())["rows"]
    }
    reading = passage(read_doc("docs/results.md"), "### Reading the table", "### Limits of this benchmark")
    spo = [rows[f"SPO α={a} β=0"] for a in ("0.5", "1", "2")]
    sweep = [rows[f"SPO α=1 β={b}"] for b in ("0", "0.01", "0.1", "1")]
    dpo = [rows[f"DPO β={b}"] for b in ("0.01", "0.1")]
    assert fmt(dpo[0]["max_prob"], 3) == fmt(dpo[1]["max_prob"], 3), "the doc gives one figure for both DPO runs"
    figures = {
        "TV to the target, SPO beta = 0, by alpha": " / ".join(fmt(r["tv_to_target"], 3) for r in spo),
        "entropy, SPO beta = 0, by alpha": " / ".join(fmt(r["entropy"], 2) for r in spo),
        "target entropy, by alpha": " / ".join(fmt(r["target_entropy"], 2) for r in spo),
        "pi(Y), SPO beta = 0, by alpha": f"{fmt(spo[0]['mass_on_Y'], 4)} / {fmt(spo[1]['mass_on_Y'], 2)} / "
        f"{fmt(spo[2]['mass_on_Y'], 2)}",
        "DPO's largest probability conditioned on Y": fmt(dpo[0]["max_prob"], 3),
        "DPO entropy, beta = 0.01 and 0.1": f"{fmt(dpo[0]['entropy'], 2)} and {fmt(dpo[1]['entropy'], 2)}",
        "DPO pi(Y), beta = 0.01 and 0.1": f"{fmt(dpo[0]['mass_on_Y'], 3)} and {fmt(dpo[1]['mass_on_Y'], 3)}",
        "exact KL to pi_ref over Y, by beta": " → ".join(fmt(r["kl_to_reference"], 3) for r in sweep),
        "TV to the softmax, beta = 0 and 1": f"{fmt(sweep[0]['tv_to_target'], 3)} → {fmt(sweep[-1]['tv_to_target'], 3)}",
        "entropy, beta = 0.1 and 1": f"{fmt(sweep[2]['entropy'], 2)} and {fmt(sweep[3]['entropy'], 2)}",
    }
    assert_figures_in(reading, figures, "docs/results.md's reading of the expert-distribution run")
