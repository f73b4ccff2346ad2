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
Before training: what would Eq. 8's pair weight be on your pairs, for each alpha?

The gradient of SPO's pairwise loss (Eq. 8) weights a pair by `w = sigmoid(alpha * (log pi(y_l) - log pi(y_w)))`:
0.5 at a tie, near 0 when the model already prefers the winner by many nats, near 1 when it prefers the loser by many.
Which of these a pair is depends on `alpha` times the gap between the two *sequence* log-probs, and those gaps grow
with the completions' length. `trl-spo pair_weights --model PATH --dataset FILE` scores a sample of the pairs
under a model (your SFT model, the one SPO will start from), and prints, for each alpha, the mean weight and the share
of saturated pairs (w < 0.01 or w > 0.99), with the distribution of the gaps. A saturated pair trains like a
hinge (all or nothing); if most pairs saturate, alpha is too large for this data: see docs/choosing_alpha.md.

Pairs are tokenised as `DPOTrainer` tokenises them (chat template for conversational rows, EOS appended to standard
completions), and the log-probs are summed over the completion's tokens, EOS included.
"""

import argparse
import json
import math
import random
import sys
from pathlib import Path

import torch


DEFAULT_ALPHAS = (1.0, 0.1, 0.01, 0.001)
SATURATION = 0.01  # w below this or above 1 - this


def pair_weight(gap: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 8's gradient weight `sigmoid(alpha * (log pi(y_l) - log pi(y_w)))` from `gap = log pi(y_w) - log pi(y_l)`."""
    return torch.sigmoid(-alpha * gap)


def weight_profile(gaps: torch.Tensor, alphas) -> list[dict]:
    """Per alpha: the mean pair weight, and the shares of pairs below 0.01 and above 0.99."""
    profile = []
    for alpha in alphas:
        weights = pair_weight(gaps, alpha)
        profile.append(
            {
                "alpha": alpha,
                "mean_weight": weights.mean().item(),
                "share_below": (weights < SATURATION).double().mean().item(),
                "share_above": (weights > 1 - SATURATION).double().mean().item(),
            }
        )
    return profile


def completion_ids(tokenizer, prompt, completion) -> tuple[list[int], list[int]]:
    """Prompt and completion token ids as `DPOTrainer` builds them (the completion starts where the two diverge)."""
    if isinstance(prompt, list):  # conversational
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        full_ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True)
    else:
        prompt_ids = tokenizer(prompt)["input_ids"]
        full_ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    if hasattr(prompt_ids, "keys"):  # a BatchEncoding, as some tokenizers return from apply_chat_template
        prompt_ids, full_ids = prompt_ids["input_ids"], full_ids["input_ids"]
    shared = next((i for i, (a, b) in enumerate(zip(prompt_ids, full_ids, strict=False)) if a != b), len(prompt_ids))
    return list(full_ids[:shared]), list(full_ids[shared:])


@torch.no_grad()
def sequence_log_probs(model, sequences: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int) -> list:
    """`sum_t log pi(y_t | x, y_<t)` of each `(prompt_ids, completion_ids)`, float64."""
    from .evaluation.generation import completion_token_logps

    prompts = [p for p, _ in sequences]
    completions = [c for _, c in sequences]
    token_logps = completion_token_logps(model, prompts, completions, batch_size, pad_id)
    return [math.fsum(values) for values in token_logps]


def measure(model, tokenizer, rows: list[dict], alphas=DEFAULT_ALPHAS, batch_size: int = 8) -> dict:
    """Gaps `log pi(y_w) - log pi(y_l)` of `rows` (prompt/chosen/rejected) under `model`, and their weight profile."""
    sequences = []
    for row in rows:
        for side in ("chosen", "rejected"):
            sequences.append(completion_ids(tokenizer, row["prompt"], row[side]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    logps = sequence_log_probs(model, sequences, batch_size, pad_id)
    gaps = torch.tensor([logps[2 * i] - logps[2 * i + 1] for i in range(len(rows))], dtype=torch.float64)
    lengths = [len(c) for _, c in sequences]
    quantiles = torch.quantile(gaps.abs(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    return {
        "num_pairs": len(rows),
        "mean_completion_tokens": sum(lengths) / len(lengths),
        "abs_gap_quantiles": {"p10": quantiles[0], "median": quantiles[1], "p90": quantiles[2]},
        "share_winner_more_likely": (gaps > 0).double().mean().item(),
        "profile": weight_profile(gaps, alphas),
        "gaps": gaps.tolist(),
    }


def format_report(result: dict, source: str) -> str:
    q = result["abs_gap_quantiles"]
    lines = [
        f"{result['num_pairs']} pairs of {source}, {result['mean_completion_tokens']:.1f} completion tokens on average.",
        f"|log pi(y_w) - log pi(y_l)|: median {q['median']:.1f} nats (10-90 %: {q['p10']:.1f}-{q['p90']:.1f}); the "
        f"model already prefers the winner in {100 * result['share_winner_more_likely']:.0f} % of pairs.",
        "",
        "| alpha | mean pair weight | w < 0.01 (winner far ahead) | w > 0.99 (loser far ahead) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for p in result["profile"]:
        lines.append(
            f"| {p['alpha']:g} | {p['mean_weight']:.2f} | {100 * p['share_below']:.0f} % | "
            f"{100 * p['share_above']:.0f} % |"
        )
    return "\n".join(lines)


def read_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return data if isinstance(data, list) else data["rows"]


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--model", required=True, help="the model SPO will start from (a local path)")
    parser.add_argument("--dataset", required=True, help="pairs as .jsonl or .json: prompt, chosen, rejected")
    parser.add_argument("--num_pairs", type=int, default=200, help="pairs drawn at random (seed 0) from the file")
    parser.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS))
    parser.add_argument("--output", default=None, help="write every number (and each pair's gap) to this JSON file")
    return parser


def main(argv: list[str] | None = None, prog: str = "trl-spo pair_weights") -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = make_parser(prog).parse_args(argv)
    if parsed.num_pairs < 1:
        raise ValueError(f"--num_pairs must be >= 1, got {parsed.num_pairs}")
    rows = read_rows(Path(parsed.dataset))
    missing = [column for column in ("prompt", "chosen", "rejected") if column not in rows[0]]
    if missing:
        raise ValueError(f"{parsed.dataset}: expected pairs with prompt, chosen and rejected; missing {missing}")
    rows = random.Random(0).sample(rows, min(parsed.num_pairs, len(rows)))
    tokenizer = AutoTokenizer.from_pretrained(parsed.model)
    model = AutoModelForCausalLM.from_pretrained(parsed.model, dtype=torch.float32)
    result = measure(model, tokenizer, rows, parsed.alphas)
    result.update(command=" ".join([*prog.split(), *argv]), model=parsed.model, dataset=parsed.dataset)
    print(format_report(result, parsed.dataset))
    if parsed.output:
        Path(parsed.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m trl_spo.pair_weights"))
