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
`trl_spo.evaluation`: the metrics against hand computations, the judges against a local HTTP server and a tiny reward
model, and the runner / CLI end to end on the shipped tiny policy.
"""

import dataclasses
import json
import math
import re
import shutil
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from trl_spo.evaluation import (
    EvalArguments,
    JudgeError,
    OpenAIChatJudge,
    WinRate,
    comparison_score,
    judge_comparisons,
    length_controlled_win_rate,
    parse_ab_reply,
    per_token_entropy,
    useful_entropy,
    win_rate,
)
from trl_spo.evaluation.cli import main
from trl_spo.evaluation.generation import completion_token_logps, encode_prompt
from trl_spo.evaluation.runner import evaluate, prompt_text, reference_text

from .conftest import ASSETS_DIR, SHIPPED_MODEL_DIR, TOKENIZER_FILES


EVAL_DATA = ASSETS_DIR / "data" / "preferences_eval.jsonl"
NUM_PROMPTS, NUM_SAMPLES, MAX_NEW_TOKENS = 4, 2, 8


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------------------------------
# Metrics: hand-worked cases
# ---------------------------------------------------------------------------------------------------------------------


def test_per_token_entropy_ignores_padding():
    logps = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-0.5, float("-inf"), 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    # Row 0: -(-1 - 2 - 3) / 3 = 2; row 1: -(-0.5) / 1 = 0.5; the -inf and 7s are padding. Exact in binary.
    assert per_token_entropy(logps, mask).tolist() == pytest.approx([2.0, 0.5], abs=1e-7)


def test_per_token_entropy_rejects_empty_rows_by_index():
    logps = torch.zeros(3, 2)
    mask = torch.tensor([[1, 1], [0, 0], [0, 0]])
    with pytest.raises(ValueError, match=r"Rows \[1, 2\].*empty completion"):
        per_token_entropy(logps, mask)


def test_useful_entropy_averages_strictly_preferred_completions():
    entropies = [2.0, 1.0, None, 3.0, 4.0]
    # Preferred: 0 (score 1) and 4 (0.75). Not: 1 (a tie, 0.5), 2 (empty: no entropy), 3 (failed: unknown).
    scores = [1.0, 0.5, 1.0, None, 0.75]
    summary = useful_entropy(entropies, scores)
    # The metrics below are float64 sums of a few python floats: exact, or within an ulp, hence abs=1e-12.
    assert summary.useful_entropy == pytest.approx((2.0 + 4.0) / 2, abs=1e-12)
    assert summary.num_preferred == 2
    # The failed comparison's entropy still counts in the overall mean; the empty completion does not.
    assert summary.mean_entropy == pytest.approx((2.0 + 1.0 + 3.0 + 4.0) / 4, abs=1e-12)
    assert summary.num_entropy == 4


def test_useful_entropy_is_undefined_without_a_preferred_completion():
    summary = useful_entropy([2.0, 1.0], [0.5, 0.0])
    assert summary.useful_entropy is None and summary.num_preferred == 0
    assert summary.mean_entropy == pytest.approx(1.5, abs=1e-12)


def test_comparison_score_averages_the_two_orders():
    assert comparison_score(1.0, 0.0) == 1.0  # wins in both orders
    assert comparison_score(1.0, 1.0) == 0.5  # the judge always picks position A
    assert comparison_score(0.8, 0.3) == pytest.approx((0.8 + 0.7) / 2, abs=1e-12)
    assert comparison_score(None, 0.0) is None and comparison_score(1.0, None) is None


def test_win_rate_and_standard_error_by_hand():
    result = win_rate([1.0, 0.0, 0.5, 1.0, None])
    # mean 2.5 / 4 = 0.625; squared deviations 0.140625 + 0.390625 + 0.015625 + 0.140625 = 0.6875;
    # var (ddof 1) = 0.6875 / 3; SE = sqrt(var / 4) = 0.2393567...
    assert result.win_rate == pytest.approx(0.625, abs=1e-12)
    assert result.stderr == pytest.approx(math.sqrt(0.6875 / 3 / 4), abs=1e-12)
    assert result.stderr == pytest.approx(0.2393567, abs=1e-7)  # the constant above, rounded to 7 digits
    assert (result.num_judged, result.num_failed) == (4, 1)


def test_win_rate_undefined_cases():
    assert win_rate([None, None]) == WinRate(win_rate=None, stderr=None, num_judged=0, num_failed=2)
    single = win_rate([1.0])
    assert single.win_rate == 1.0 and single.stderr is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        win_rate([1.5])


def test_lc_win_rate_saturated_two_groups_closed_form():
    # Feature tanh(d / sd(d)) takes two values +-c on 4 comparisons each: the model has one free parameter per group.
    longer, shorter = [1.0, 1.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.0]
    p_plus, p_minus = sum(longer) / 4, sum(shorter) / 4  # 0.625, 0.125
    expected = sigmoid((logit(p_plus) + logit(p_minus)) / 2)  # sigmoid((0.5108 - 1.9459) / 2) = 0.32794
    assert expected == pytest.approx(0.32794, abs=1e-5)  # the constant above, rounded to 5 digits
    lc = length_controlled_win_rate(longer + shorter, [30] * 4 + [-30] * 4, l2_penalty=0.0)
    # Float64 Newton iterations stopped at a step below 1e-10: the fit is that close to the closed form (observed 6e-17).
    assert lc.win_rate == pytest.approx(expected, abs=1e-9)
    assert lc.slope > 0  # longer answers win more often
    # The default ridge on the slope moves the estimate only slightly (by 1.5e-3: a property of the fit, not rounding),
    # and never touches the plain win rate (0.375).
    assert length_controlled_win_rate(longer + shorter, [30] * 4 + [-30] * 4).win_rate == pytest.approx(
        expected, abs=2e-3
    )


def test_lc_win_rate_is_the_win_rate_when_lengths_do_not_vary():
    scores = [1.0, 0.0, 0.5, 1.0, 1.0]
    lc = length_controlled_win_rate(scores, [7] * 5)
    assert lc.win_rate == pytest.approx(0.7, abs=1e-12)
    assert lc.intercept is None and lc.length_scale == 0.0


def test_lc_win_rate_fit_satisfies_its_optimality_conditions():
    # Three distinct length differences: not saturated, so the fit is a real optimisation problem.
    scores = [1.0, 0.5, 0.0, 1.0, 0.0, 0.25, 1.0, 0.75]
    diffs = [40.0, 3.0, -20.0, 10.0, -5.0, 0.0, 25.0, -60.0]
    penalty = 0.3
    lc = length_controlled_win_rate(scores, diffs, l2_penalty=penalty)
    scale = statistics.stdev(diffs)
    assert lc.length_scale == pytest.approx(scale, rel=1e-12)
    x = [math.tanh(d / scale) for d in diffs]
    p = [sigmoid(lc.intercept + lc.slope * xi) for xi in x]
    # d/db: sum(y - p) = 0 (unpenalised); d/dw: sum((y - p) x) = penalty * w. Newton stops at a step below 1e-10, so
    # the float64 gradient is ~1e-10 times the Hessian (~n = 8) at most (observed 3e-16).
    assert sum(y - pi for y, pi in zip(scores, p, strict=False)) == pytest.approx(0.0, abs=1e-8)
    assert sum((y - pi) * xi for y, pi, xi in zip(scores, p, x, strict=False)) == pytest.approx(
        penalty * lc.slope, abs=1e-8
    )
    assert lc.win_rate == pytest.approx(sigmoid(lc.intercept), abs=1e-12)


def test_lc_win_rate_stays_finite_on_separable_data_and_skips_failed():
    # Every longer answer wins, every shorter one loses: the unpenalised slope would be infinite.
    scores = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, None]
    diffs = [10, 20, 30, -10, -20, -30, 1000]
    lc = length_controlled_win_rate(scores, diffs)
    assert math.isfinite(lc.slope) and lc.slope > 2
    # Symmetric around zero length difference: the length-controlled judge has no preference (up to Newton's stopping
    # point, far below 1e-6).
    assert lc.win_rate == pytest.approx(0.5, abs=1e-6)
    assert lc.num_judged == 6
    # The failed comparison (and its huge length difference) is ignored entirely.
    assert lc == length_controlled_win_rate(scores[:-1], diffs[:-1])
    assert length_controlled_win_rate([1.0, 1.0], [5, -5]).win_rate == 1.0
    assert length_controlled_win_rate([None], [3]).win_rate is None


# ---------------------------------------------------------------------------------------------------------------------
# Prompt handling
# ---------------------------------------------------------------------------------------------------------------------


def test_prompts_and_references_in_both_formats():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR)
    conversation = [{"role": "user", "content": "Name a planet:"}]
    rendered = "<|im_start|>user\nName a planet:<|im_end|>\n<|im_start|>assistant\n"
    assert encode_prompt(tokenizer, conversation) == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert encode_prompt(tokenizer, "Name a planet:", apply_chat_template=True) == encode_prompt(
        tokenizer, conversation
    )
    assert encode_prompt(tokenizer, "Name a planet:") == tokenizer("Name a planet:")["input_ids"]
    assert prompt_text(conversation) == "Name a planet:"
    assert (
        prompt_text(conversation + [{"role": "assistant", "content": "Mars"}])
        == "user: Name a planet:\n\nassistant: Mars"
    )
    assert reference_text([{"role": "assistant", "content": "Saturn."}]) == "Saturn."
    with pytest.raises(ValueError, match="string or a list of"):
        encode_prompt(tokenizer, 42)


# ---------------------------------------------------------------------------------------------------------------------
# Tiny policy and reward model
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_reward_model_path(tmp_path_factory) -> str:
    """A seeded random 2-layer Qwen2 reward model (hidden 32, num_labels=1) with the shipped tokenizer next to it."""
    from transformers import AutoTokenizer

    from trl_spo.tiny_models import tiny_qwen2

    path = tmp_path_factory.mktemp("tiny_reward_model")
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR)
    model = tiny_qwen2(tokenizer, seed=0, num_labels=1)
    # The default 0.02-std head gives rewards within ~0.01 of each other, so every verdict would be ~0.5; a wider head
    # spreads them over a few units and makes the verdict checks discriminating.
    with torch.no_grad():
        model.score.weight.normal_(0.0, 4.0)
    model.save_pretrained(path)
    for name in TOKENIZER_FILES:
        if (SHIPPED_MODEL_DIR / name).exists():
            shutil.copy2(SHIPPED_MODEL_DIR / name, path / name)
    return str(path)


def make_eval_args(output_dir, judge_model, **overrides) -> EvalArguments:
    kwargs = dict(
        model_name_or_path=str(SHIPPED_MODEL_DIR),
        dataset_name=str(EVAL_DATA),
        reference_column="chosen",
        max_prompts=NUM_PROMPTS,
        num_samples=NUM_SAMPLES,
        max_new_tokens=MAX_NEW_TOKENS,
        batch_size=3,  # not a divisor of the 8 sequences: the last batch is ragged
        seed=0,
        device="cpu",
        dtype="float32",
        judge="reward_model",
        judge_model=judge_model,
        judge_batch_size=3,
        output_dir=str(output_dir),
    )
    kwargs.update(overrides)
    return EvalArguments(**kwargs)


@pytest.fixture(scope="module")
def reward_model_run(tmp_path_factory, tiny_reward_model_path):
    output_dir = tmp_path_factory.mktemp("eval_rm")
    args = make_eval_args(output_dir, tiny_reward_model_path)
    summary = evaluate(args)
    return args, summary, read_jsonl(output_dir / "judgements.jsonl")


RECORD_FIELDS = {
    "prompt_index",
    "sample_index",
    "prompt",
    "prompt_text",
    "completion",
    "reference",
    "completion_token_ids",
    "completion_num_tokens",
    "completion_num_chars",
    "reference_num_tokens",
    "reference_num_chars",
    "length_difference",
    "empty",
    "truncated",
    "entropy",
    "judgements",
    "score",
    "preferred",
    "failed",
    "error",
    "attempts",
}


def test_run_writes_one_complete_row_per_sample(reward_model_run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR)
    _, summary, rows = reward_model_run
    dataset = read_jsonl(EVAL_DATA)[:NUM_PROMPTS]
    assert len(rows) == NUM_PROMPTS * NUM_SAMPLES
    assert [(r["prompt_index"], r["sample_index"]) for r in rows] == [
        (i, j) for i in range(NUM_PROMPTS) for j in range(NUM_SAMPLES)
    ]
    for row in rows:
        assert set(row) == RECORD_FIELDS
        source = dataset[row["prompt_index"]]
        assert row["prompt"] == source["prompt"] and row["reference"] == source["chosen"]
        ids = row["completion_token_ids"]
        assert tokenizer.eos_token_id not in ids and len(ids) == row["completion_num_tokens"] <= MAX_NEW_TOKENS
        assert row["completion"] == tokenizer.decode(ids, skip_special_tokens=True)
        assert row["truncated"] == (len(ids) == MAX_NEW_TOKENS)
        assert row["empty"] == (len(ids) == 0) and (row["entropy"] is None) == row["empty"]
        assert row["length_difference"] == len(row["completion"]) - len(row["reference"])
        assert row["reference_num_tokens"] == len(tokenizer(row["reference"], add_special_tokens=False)["input_ids"])
        assert row["failed"] is False and row["error"] is None and row["attempts"] == 2
        assert set(row["judgements"]) == {"model_first", "reference_first"}
    assert summary["num_comparisons"] == len(rows) and summary["num_failed"] == 0
    # With temperature 1 and 8 draws from a trained tiny model, not every completion is the same.
    assert len({tuple(r["completion_token_ids"]) for r in rows}) > 1


def test_run_entropy_matches_an_independent_forward_pass(reward_model_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(SHIPPED_MODEL_DIR, dtype=torch.float32).eval()
    _, summary, rows = reward_model_run
    checked = 0
    for row in rows:
        if row["empty"]:
            continue
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        ids = torch.tensor([prompt_ids + row["completion_token_ids"]])
        with torch.no_grad():
            logps = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        n = len(row["completion_token_ids"])
        start = len(prompt_ids)
        token_logps = [logps[start - 1 + t, row["completion_token_ids"][t]].item() for t in range(n)]
        # fp32 log-softmax of a padded batch vs float64 of one sequence's fp32 logits: a few ulps of |logits| ~ 10,
        # ~1e-6 (observed 1.1e-6 on entropies near 1).
        assert row["entropy"] == pytest.approx(-sum(token_logps) / n, rel=1e-5, abs=1e-6), (
            f"entropy of prompt {row['prompt_index']} sample {row['sample_index']}: run vs independent forward"
        )
        checked += 1
    assert checked >= len(rows) // 2
    measured = [r["entropy"] for r in rows if r["entropy"] is not None]
    # Float64 means of the same floats, in another summation order: an ulp or two.
    assert summary["mean_entropy"] == pytest.approx(statistics.fmean(measured), rel=1e-12)
    assert summary["num_entropy"] == len(measured)


def test_run_summary_matches_the_jsonl(reward_model_run):
    args, summary, rows = reward_model_run
    scores = [r["score"] for r in rows]
    assert summary["num_judged"] == len(scores) == args.num_samples * NUM_PROMPTS
    # Summaries are float64 functions of the very floats in the JSONL: equal up to summation order (an ulp or two).
    assert summary["win_rate"] == pytest.approx(statistics.fmean(scores), abs=1e-12)
    assert summary["win_rate_stderr"] == pytest.approx(statistics.stdev(scores) / math.sqrt(len(scores)), abs=1e-12)
    lc = length_controlled_win_rate(scores, [len(r["completion"]) - len(r["reference"]) for r in rows])
    assert summary["lc_win_rate"] == pytest.approx(lc.win_rate, abs=1e-12)
    preferred = [r for r in rows if r["score"] > 0.5]
    assert [r["preferred"] for r in rows] == [r["score"] > 0.5 for r in rows]
    assert summary["num_preferred"] == len([r for r in preferred if r["entropy"] is not None])
    if summary["num_preferred"]:
        expected = statistics.fmean(r["entropy"] for r in preferred if r["entropy"] is not None)
        assert summary["useful_entropy"] == pytest.approx(expected, abs=1e-12)
    else:
        assert summary["useful_entropy"] is None
    assert summary["judge"]["model"] == args.judge_model and summary["seed"] == 0
    assert summary["sampling"]["num_samples"] == NUM_SAMPLES
    markdown = (Path(args.output_dir) / "summary.md").read_text()
    assert (
        f"| win rate ± SE | {100 * summary['win_rate']:.2f} % ± {100 * summary['win_rate_stderr']:.2f} |" in markdown
    )
    assert json.loads((Path(args.output_dir) / "summary.json").read_text()) == summary


def test_run_reward_model_verdicts_match_independent_rewards(reward_model_run, tiny_reward_model_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model_path)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model_path, dtype=torch.float32).eval()

    def reward(prompt: str, answer: str) -> float:
        # The judge's documented input: the chat template over a user turn and an assistant turn, unpadded.
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            return model(input_ids=ids).logits[0, 0].item()

    _, _, rows = reward_model_run
    verdicts = []
    for row in rows:
        r_model, r_reference = reward(row["prompt"], row["completion"]), reward(row["prompt"], row["reference"])
        first, second = row["judgements"]["model_first"], row["judgements"]["reference_first"]
        what = f"prompt {row['prompt_index']} sample {row['sample_index']}: judge vs rewards scored alone"
        # Rewards near 18, each an fp32 dot product of 32 terms |w h| ~ 4 (score head std 4), padded in a batch vs
        # alone: up to ~eps * 32 * 4 = 1.5e-5 (observed 1 ulp, 1.9e-6). Verdicts move by at most half of that.
        assert first["raw"] == pytest.approx({"reward_a": r_model, "reward_b": r_reference}, abs=1e-4), what
        assert first["verdict"] == pytest.approx(sigmoid(r_model - r_reference), abs=5e-5), what
        assert second["verdict"] == pytest.approx(sigmoid(r_reference - r_model), abs=5e-5), what
        assert row["score"] == pytest.approx(sigmoid(r_model - r_reference), abs=5e-5), what
        verdicts.append(first["verdict"])
    # The check is only meaningful if the rewards actually differ between answers.
    assert max(abs(v - 0.5) for v in verdicts) > 0.05


def test_run_records_empty_completions(tmp_path, tiny_reward_model_path):
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR).eos_token_id
    # A +100 bias on EOS makes every completion stop at once.
    args = make_eval_args(
        tmp_path, tiny_reward_model_path, max_prompts=2, generation_kwargs={"sequence_bias": [[[eos], 100.0]]}
    )
    summary = evaluate(args)
    rows = read_jsonl(tmp_path / "judgements.jsonl")
    assert len(rows) == 2 * NUM_SAMPLES
    for row in rows:
        assert row["empty"] is True and row["entropy"] is None and row["completion"] == ""
        assert row["truncated"] is False and row["failed"] is False  # still judged, as an empty answer
    assert summary["num_empty"] == len(rows) and summary["num_judged"] == len(rows)
    assert summary["mean_entropy"] is None and summary["useful_entropy"] is None
    assert any("useful entropy is undefined" in note for note in summary["notes"])
    assert any(f"{len(rows)} completion(s) are empty" in note for note in summary["notes"])


def test_greedy_policy_against_its_own_greedy_references(tmp_path, tiny_reward_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Policy and reference are the same model, both greedy: every completion equals its reference, so a reward model
    # must give exactly 0.5 in both orders, and the references must be the model's own greedy decodes.
    args = make_eval_args(
        tmp_path,
        tiny_reward_model_path,
        reference_column=None,
        reference_model_name_or_path=str(SHIPPED_MODEL_DIR),
        reference_temperature=0.0,
        temperature=0.0,
        max_prompts=2,
    )
    summary = evaluate(args)
    rows = read_jsonl(tmp_path / "judgements.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(SHIPPED_MODEL_DIR, dtype=torch.float32).eval()
    gaps = []
    for row in rows:
        ids = torch.tensor([tokenizer(row["prompt"])["input_ids"]])
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                do_sample=False,
                max_new_tokens=MAX_NEW_TOKENS,
                output_scores=True,
                return_dict_in_generate=True,
            )
        gaps.extend((top[0] - top[1]).item() for top in (scores[0].topk(2).values for scores in out.scores))
        new = out.sequences[0, ids.shape[1] :].tolist()
        new = new[: new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new
        assert row["completion_token_ids"] == new
        assert row["reference"] == row["completion"] == tokenizer.decode(new, skip_special_tokens=True)
        # Exact: rewards are cached per text, so both positions get the very same reward and sigmoid(0) = 0.5.
        assert row["score"] == pytest.approx(0.5, abs=1e-12)
    # Greedy decodes agree across batch shapes (the run pads prompts in batches) only if no step is within rounding
    # (~1e-5) of a tie between its top two logits.
    assert min(gaps) > 1e-3, f"a greedy step's top two logits differ by only {min(gaps)}: the decodes are a coin flip"
    assert len(rows) == 2 * NUM_SAMPLES
    assert summary["reference"] == {"model": str(SHIPPED_MODEL_DIR), "temperature": 0.0}
    assert summary["win_rate"] == pytest.approx(0.5, abs=1e-12) and summary["useful_entropy"] is None
    assert any("temperature 0.0" in note for note in summary["notes"])


def test_sampling_is_unfiltered_at_temperature_one():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_spo.evaluation.generation import generation_config_for

    model = AutoModelForCausalLM.from_pretrained(SHIPPED_MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR)
    config = generation_config_for(model, tokenizer, max_new_tokens=4, temperature=1.0, top_p=1.0)
    # transformers would otherwise fill in top_k = 50: the samples would not come from pi itself.
    assert (config.do_sample, config.temperature, config.top_p, config.top_k) == (True, 1.0, 1.0, 0)
    greedy = generation_config_for(model, tokenizer, max_new_tokens=4, temperature=0.0, top_p=1.0)
    assert greedy.do_sample is False
    overridden = generation_config_for(model, tokenizer, 4, 1.0, 1.0, generation_kwargs={"top_k": 5})
    assert overridden.top_k == 5


def test_completion_logps_with_padding_and_empty_rows():
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(SHIPPED_MODEL_DIR, dtype=torch.float32).eval()
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    completions = [[20, 21], [], [22, 23, 24, 25]]
    result = completion_token_logps(model, prompts, completions, batch_size=8, pad_token_id=0)
    assert result[1] == []
    for prompt, completion, logps in zip(prompts, completions, result, strict=False):
        if not completion:
            continue
        with torch.no_grad():
            full = torch.log_softmax(model(input_ids=torch.tensor([prompt + completion])).logits[0], dim=-1)
        expected = [full[len(prompt) - 1 + t, token].item() for t, token in enumerate(completion)]
        # fp32 token log-probs near -8 (ulp 9.5e-7), padded batch vs alone: a few ulps (observed 1).
        assert logps == pytest.approx(expected, abs=1e-5), f"token log-probs of prompt {prompt}: batched vs alone"


# ---------------------------------------------------------------------------------------------------------------------
# OpenAI-compatible judge against a local server
# ---------------------------------------------------------------------------------------------------------------------

ANSWERS = re.compile(r"## Instruction\n(.*)\n\n## Answer A\n(.*)\n\n## Answer B\n(.*)\n\nReply with", re.DOTALL)


def reply(content: str) -> tuple[int, bytes, float]:
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode(), 0.0


def prefer_longer(index: int, body: dict) -> tuple[int, bytes, float]:
    _, answer_a, answer_b = ANSWERS.search(body["messages"][-1]["content"]).groups()
    return reply("A" if len(answer_a) > len(answer_b) else "B")


class FakeChatServer:
    """
    `POST /v1/chat/completions` on 127.0.0.1: records every request; `behaviour(index, body)` scripts the reply as
    `(status, payload, delay)`. A delay of `None` never answers (until the server closes): a timeout that cannot race.
    """

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests: list[dict] = []
        self.closed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload, delay = server.behaviour(len(server.requests) - 1, body)
                if delay is None:
                    server.closed.wait()
                else:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout scenario)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server():
    servers = []

    def start(behaviour) -> FakeChatServer:
        servers.append(FakeChatServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def make_judge(server: FakeChatServer, **kwargs) -> OpenAIChatJudge:
    kwargs = {"model": "judge-model", "api_key": "", "timeout": 5.0, "retry_backoff_seconds": 0.0, **kwargs}
    return OpenAIChatJudge(server.url, **kwargs)


def test_openai_judge_request_and_order_swap(chat_server):
    server = chat_server(prefer_longer)
    judge = make_judge(server, api_key="secret-key")
    comparisons = [("Name a planet:", " Saturn, the ringed one.", " Mars."), ("Name a tool:", " saw", " a chisel.")]
    results = judge_comparisons(judge, comparisons)
    assert [r["score"] for r in results] == [1.0, 0.0]  # the longer answer wins in both orders
    assert results[0]["judgements"]["model_first"]["raw"] == "A"
    assert results[0]["judgements"]["reference_first"] == {
        "verdict": 0.0,
        "raw": "B",
        "attempts": 1,
        "error": None,
        "model_score": 1.0,
    }
    assert len(server.requests) == 4
    first, second = server.requests[0], server.requests[1]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == "Bearer secret-key"
    assert first["body"]["model"] == "judge-model" and first["body"]["temperature"] == 0
    assert [m["role"] for m in first["body"]["messages"]] == ["system", "user"]
    assert ANSWERS.search(first["body"]["messages"][1]["content"]).groups() == (
        "Name a planet:",
        " Saturn, the ringed one.",
        " Mars.",
    )
    # The second call of the comparison swaps the positions.
    assert ANSWERS.search(second["body"]["messages"][1]["content"]).groups() == (
        "Name a planet:",
        " Mars.",
        " Saturn, the ringed one.",
    )
    assert "secret-key" not in json.dumps(judge.describe())


def test_openai_judge_retries_a_server_error(chat_server):
    server = chat_server(lambda i, body: (500, b'{"error": "overloaded"}', 0.0) if i == 0 else prefer_longer(i, body))
    results = judge_comparisons(make_judge(server, max_retries=2), [("Q", " long answer", " short")])
    assert results[0]["failed"] is False and results[0]["score"] == 1.0
    assert results[0]["judgements"]["model_first"]["attempts"] == 2
    assert results[0]["attempts"] == 3 and len(server.requests) == 3


@pytest.mark.parametrize(
    "payload, message",
    [
        (json.dumps({"choices": [{"message": {"content": "Both are fine."}}]}).encode(), "neither 'A' nor 'B'"),
        (b"<html>gateway</html>", "malformed reply"),
        (json.dumps({"error": "no choices"}).encode(), "malformed reply"),
    ],
    ids=["not-a-letter", "not-json", "no-choices"],
)
def test_openai_judge_malformed_replies_fail_after_retries(chat_server, payload, message):
    server = chat_server(lambda i, body: (200, payload, 0.0))
    judge = make_judge(server, max_retries=2)
    with pytest.raises(JudgeError, match=message) as info:
        judge.judge("Q", "a", "b")
    assert info.value.attempts == 3 and len(server.requests) == 3
    assert message in info.value.last_error


def test_failed_comparisons_are_counted_not_scored(chat_server):
    # Prompt "bad" always gets an unusable reply; the others a clean verdict.
    def behaviour(index, body):
        if "## Instruction\nbad\n" in body["messages"][-1]["content"]:
            return reply("I cannot decide.")
        return prefer_longer(index, body)

    server = chat_server(behaviour)
    results = judge_comparisons(
        make_judge(server, max_retries=1), [("ok", " longer one", " s"), ("bad", " x", " y"), ("ok2", " s", " long")]
    )
    assert [r["failed"] for r in results] == [False, True, False]
    assert results[1]["score"] is None
    assert (
        results[1]["error"].startswith("model_first: reply is neither") and "reference_first:" in results[1]["error"]
    )
    assert results[1]["attempts"] == 4
    rate = win_rate([r["score"] for r in results])
    assert (rate.num_judged, rate.num_failed, rate.win_rate) == (2, 1, 0.5)


def test_openai_judge_timeout_is_retried_then_fails(chat_server):
    # Timed-out attempts hit a server that never answers, so they time out however slow this machine is; the answered
    # attempt has 2 s for a local round trip of a few milliseconds, so load cannot time it out.
    def hang(index, body):
        status, payload, _ = reply("A")
        return status, payload, None

    hang_first = chat_server(lambda i, body: hang(i, body) if i == 0 else reply("A"))
    verdict = make_judge(hang_first, timeout=2.0, max_retries=1).judge("Q", "a", "b")
    assert verdict.verdict == 1.0 and verdict.attempts == 2

    always_hang = chat_server(hang)
    with pytest.raises(JudgeError, match=r"within 2.0 s|timed out") as info:
        make_judge(always_hang, timeout=2.0, max_retries=1).judge("Q", "a", "b")
    assert info.value.attempts == 2 and len(always_hang.requests) == 2


def test_openai_judge_connection_refused(chat_server):
    server = chat_server(prefer_longer)
    url = server.url
    server.close()
    with pytest.raises(JudgeError, match="cannot reach") as info:
        OpenAIChatJudge(url, "m", api_key="", max_retries=1, retry_backoff_seconds=0.0).judge("Q", "a", "b")
    assert info.value.attempts == 2


def test_position_biased_judge_scores_one_half(chat_server):
    server = chat_server(lambda i, body: reply("A"))
    comparisons = [("Q1", " a much longer answer", " b"), ("Q2", " c", " a much longer answer")]
    scores = [r["score"] for r in judge_comparisons(make_judge(server), comparisons)]
    assert scores == [0.5, 0.5]
    rate = win_rate(scores)
    assert (rate.win_rate, rate.stderr) == (0.5, 0.0)
    assert length_controlled_win_rate(scores, [19, -19]).win_rate == pytest.approx(0.5, abs=1e-9)


def test_parse_ab_reply():
    for text, letter in [("A", "A"), (" b\n", "B"), ("**A**", "A"), ("B.", "B"), ("Answer A", "A"), ("(B)", "B")]:
        assert parse_ab_reply(text) == letter, text
    for text in ["", "AB", "A or B", "Neither", "Both are fine.", "C", "Answer: it depends"]:
        assert parse_ab_reply(text) is None, text


def test_openai_judge_rejects_a_template_without_the_answers():
    with pytest.raises(ValueError, match="answer_b"):
        OpenAIChatJudge("http://x/v1", "m", user_template="{instruction} {answer_a}")


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------


def test_cli_with_reward_model_and_yaml_config(tmp_path, tiny_reward_model_path):
    config = tmp_path / "eval.yaml"
    config.write_text(
        f"model_name_or_path: {SHIPPED_MODEL_DIR}\n"
        f"dataset_name: {EVAL_DATA}\n"
        "reference_column: chosen\n"
        "max_prompts: 3\n"
        "num_samples: 2\n"
        f"max_new_tokens: {MAX_NEW_TOKENS}\n"
        "device: cpu\n"
        f"judge_model: {tiny_reward_model_path}\n"
    )
    output_dir = tmp_path / "out"
    # The command line overrides the YAML (num_samples 2 -> 1).
    assert main(["--config", str(config), "--num_samples", "1", "--output_dir", str(output_dir)]) == 0
    rows = read_jsonl(output_dir / "judgements.jsonl")
    summary = json.loads((output_dir / "summary.json").read_text())
    assert len(rows) == 3 and summary["num_comparisons"] == 3 and summary["num_samples_per_prompt"] == 1
    assert summary["judge"]["type"] == "reward_model"
    assert summary["win_rate"] == pytest.approx(statistics.fmean(r["score"] for r in rows), abs=1e-12)
    assert "| win rate ± SE |" in (output_dir / "summary.md").read_text()


def test_cli_with_openai_judge_counts_failures(tmp_path, chat_server, monkeypatch):
    # The first prompt of the file ("Name a planet:") always gets an unusable reply.
    def behaviour(index, body):
        if "## Instruction\nName a planet:\n" in body["messages"][-1]["content"]:
            return reply("Hmm")
        return prefer_longer(index, body)

    server = chat_server(behaviour)
    monkeypatch.setenv("MY_JUDGE_KEY", "k-123")
    output_dir = tmp_path / "out"
    argv = [
        "--model_name_or_path", str(SHIPPED_MODEL_DIR), "--dataset_name", str(EVAL_DATA),
        "--reference_column", "rejected", "--max_prompts", "3", "--num_samples", "2",
        "--max_new_tokens", str(MAX_NEW_TOKENS), "--device", "cpu", "--output_dir", str(output_dir),
        "--judge", "openai", "--judge_url", server.url, "--judge_model", "judge-model",
        "--judge_api_key_env", "MY_JUDGE_KEY", "--judge_max_retries", "1", "--judge_retry_backoff_seconds", "0",
        "--judge_num_workers", "3",
    ]  # fmt: skip
    assert main(argv) == 0
    rows = read_jsonl(output_dir / "judgements.jsonl")
    summary = json.loads((output_dir / "summary.json").read_text())
    failed = [r for r in rows if r["failed"]]
    assert [r["prompt_index"] for r in failed] == [0, 0]
    assert all(r["score"] is None and "neither 'A' nor 'B'" in r["error"] for r in failed)
    assert (summary["num_failed"], summary["num_judged"], summary["num_comparisons"]) == (2, 4, 6)
    judged = [r["score"] for r in rows if not r["failed"]]
    assert summary["win_rate"] == pytest.approx(statistics.fmean(judged), abs=1e-12)
    # The server prefers the longer answer and answers "B" on equal lengths: a split decision, 0.5.
    expected = [0.5 + 0.5 * ((r["length_difference"] > 0) - (r["length_difference"] < 0)) for r in rows[2:]]
    assert judged == expected
    assert any("2 of 6 comparisons failed" in note for note in summary["notes"])
    assert {r["headers"].get("Authorization") for r in server.requests} == {"Bearer k-123"}
    assert "k-123" not in (output_dir / "summary.json").read_text()
    assert summary["judge"]["user_template"].count("{answer_a}") == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"judge": "gpt4"}, r"`judge` must be one of \['reward_model', 'openai'\], found 'gpt4'"),
        ({"judge_model": None}, r"`judge_model` is required, found None"),
        ({"judge": "openai"}, r"`judge_url` is required with judge='openai'"),
        ({"num_samples": 0}, r"`num_samples` must be an integer >= 1, found 0"),
        ({"top_p": 0.0}, r"`top_p` must be in \(0, 1\], found 0.0"),
        ({"reference_column": None}, r"Exactly one of `reference_column` and `reference_model_name_or_path`"),
        ({"reference_model_name_or_path": "sft"}, r"Exactly one of .*found reference_column='chosen'"),
    ],
)
def test_bad_arguments_say_what_was_expected(tmp_path, overrides, message):
    kwargs = {
        "model_name_or_path": str(SHIPPED_MODEL_DIR),
        "dataset_name": str(EVAL_DATA),
        "reference_column": "chosen",
        "judge_model": "rm",
        "output_dir": str(tmp_path),
        **overrides,
    }
    argv = [item for name, value in kwargs.items() if value is not None for item in (f"--{name}", str(value))]
    with pytest.raises(ValueError, match=message):
        main(argv)


def test_missing_prompt_column_is_a_clear_error(tmp_path):
    argv = [
        "--model_name_or_path", str(SHIPPED_MODEL_DIR), "--dataset_name", str(EVAL_DATA),
        "--prompt_column", "instruction", "--reference_column", "chosen", "--judge_model", "rm",
        "--output_dir", str(tmp_path),
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"no prompt column 'instruction'.*\['prompt', 'chosen', 'rejected'\]"):
        main(argv)


def test_every_eval_argument_is_documented_twice():
    docstring = EvalArguments.__doc__
    for field in dataclasses.fields(EvalArguments):
        assert re.search(rf"^\s+{field.name} \(`", docstring, re.MULTILINE), f"{field.name} missing from the docstring"
        assert field.metadata.get("help"), f"{field.name} has no metadata help"


def test_shipped_tiny_reward_model_knows_the_rewards():
    """recipes/tiny/reward_model, the offline judge of the docs, orders answers like the rewards the data came from."""
    from trl_spo.evaluation import RewardModelJudge

    assets = Path(__file__).resolve().parents[1] / "recipes" / "tiny"
    table = json.loads((assets / "data" / "rewards.json").read_text())
    judge = RewardModelJudge(str(assets / "reward_model"), device="cpu")
    agree = total = 0
    for prompt, answers in table.items():
        judge.prefetch((prompt, answer) for answer in answers)
        for a, reward_a in answers.items():
            for b, reward_b in answers.items():
                if reward_a > reward_b:
                    total += 1
                    agree += judge.judge(prompt, a, b).verdict > 0.5
    # Each answer pair with different known rewards, ordered the same way by the reward model: far above chance.
    assert agree / total > 0.8, (
        f"the shipped reward model orders {agree} of {total} answer pairs like the known rewards"
    )
