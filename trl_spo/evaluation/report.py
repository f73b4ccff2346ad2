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

"""The evaluation's summary: `summary.json` from the judgement records, and `summary.md`."""

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

from .config import EvalArguments
from .metrics import length_controlled_win_rate, useful_entropy, win_rate


PREFERENCE_THRESHOLD = 0.5


def summarize_evaluation(
    records: Sequence[dict[str, Any]],
    args: EvalArguments,
    judge_info: dict[str, Any],
    reference_info: dict[str, Any],
    elapsed_seconds: float,
) -> dict[str, Any]:
    """The run's summary from its `judgements.jsonl` records (see `docs/evaluation.md` for every field)."""
    from importlib.metadata import version

    import transformers

    scores = [r["score"] for r in records]
    rate = win_rate(scores)
    lc = length_controlled_win_rate(scores, [r["length_difference"] for r in records])
    entropy = useful_entropy([r["entropy"] for r in records], scores, threshold=PREFERENCE_THRESHOLD)
    num_empty = sum(r["empty"] for r in records)

    notes = []
    if rate.num_judged == 0:
        notes.append("Every comparison failed: no win rate, no useful entropy.")
    if rate.num_failed:
        notes.append(
            f"{rate.num_failed} of {len(records)} comparisons failed (no usable verdict in at least one order after "
            "the judge's retries). They are excluded from every rate, counted in num_failed, and listed with their "
            "error in judgements.jsonl."
        )
    if entropy.useful_entropy is None:
        notes.append(
            "No completion with an entropy was preferred to its reference (score > 0.5): useful entropy is "
            "undefined (null), not 0."
        )
    if num_empty:
        notes.append(
            f"{num_empty} completion(s) are empty (EOS first): judged as empty answers, without entropy (|y| = 0)."
        )
    if args.temperature != 1.0 or args.top_p != 1.0:
        notes.append(
            f"Sampled at temperature {args.temperature}, top_p {args.top_p}: the entropy figures are cross-entropies "
            "of that sampler under the policy at temperature 1, not the policy's entropy."
        )

    return {
        "num_prompts": len({r["prompt_index"] for r in records}),
        "num_samples_per_prompt": args.num_samples,
        "num_comparisons": len(records),
        "num_judged": rate.num_judged,
        "num_failed": rate.num_failed,
        "win_rate": rate.win_rate,
        "win_rate_stderr": rate.stderr,
        "lc_win_rate": lc.win_rate,
        "lc_fit": {
            **{k: v for k, v in asdict(lc).items() if k != "win_rate"},
            "length_unit": "characters",
            "feature": "tanh(length_difference / length_scale)",
        },
        "mean_entropy": entropy.mean_entropy,
        "num_entropy": entropy.num_entropy,
        "useful_entropy": entropy.useful_entropy,
        "num_preferred": entropy.num_preferred,
        "preference_threshold": PREFERENCE_THRESHOLD,
        "num_empty": num_empty,
        "num_truncated": sum(r["truncated"] for r in records),
        "notes": notes,
        "model": args.model_name_or_path,
        "reference": reference_info,
        "judge": judge_info,
        "dataset": {
            "name": args.dataset_name,
            "config": args.dataset_config,
            "split": args.dataset_split,
            "prompt_column": args.prompt_column,
            "max_prompts": args.max_prompts,
            "apply_chat_template": args.apply_chat_template,
        },
        "sampling": {
            "num_samples": args.num_samples,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "generation_kwargs": args.generation_kwargs,
            "batch_size": args.batch_size,
            "dtype": args.dtype,
        },
        "seed": args.seed,
        "versions": {
            "trl_spo": version("trl-spo"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "elapsed_seconds": round(elapsed_seconds, 2),
    }


def _percent(value: float | None, stderr: float | None = None) -> str:
    if value is None:
        return "undefined"
    text = f"{100 * value:.2f} %"
    return text + (f" ± {100 * stderr:.2f}" if stderr is not None else "")


def _nats(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f} nats/token"


def summary_markdown(summary: dict[str, Any]) -> str:
    """`summary.md`: the headline numbers as a Markdown table, then the settings and the notes."""
    judge = summary["judge"]
    reference = summary["reference"]
    if "column" in reference:
        reference_name = f"column `{reference['column']}`"
    else:
        reference_name = f"model `{reference['model']}` (temperature {reference['temperature']})"
    shape = f"{summary['num_prompts']} prompts x {summary['num_samples_per_prompt']} samples"
    rows = [
        ("comparisons", f"{summary['num_comparisons']} ({shape})"),
        ("judged / failed", f"{summary['num_judged']} / {summary['num_failed']}"),
        ("win rate ± SE", _percent(summary["win_rate"], summary["win_rate_stderr"])),
        ("LC win rate", _percent(summary["lc_win_rate"])),
        ("mean entropy", f"{_nats(summary['mean_entropy'])} over {summary['num_entropy']} completions"),
        (
            "useful entropy",
            f"{_nats(summary['useful_entropy'])} over {summary['num_preferred']} preferred completions",
        ),
        ("empty / truncated completions", f"{summary['num_empty']} / {summary['num_truncated']}"),
        ("model", f"`{summary['model']}`"),
        ("reference", reference_name),
        ("judge", f"{judge.get('type')} `{judge.get('model')}`"),
        ("sampling", ", ".join(f"{k}={v}" for k, v in summary["sampling"].items() if k != "generation_kwargs")),
        ("seed", str(summary["seed"])),
    ]
    lines = ["# Evaluation summary", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if summary["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"
