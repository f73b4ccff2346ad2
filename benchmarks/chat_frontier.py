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
SPO and DPO on an open-ended chat task at a CPU budget (SmolLM2-135M-Instruct): inconclusive at its default budget.

`python -m benchmarks.chat_frontier` (from a checkout's root) is a small version of the paper's section 7.
It trains SmolLM2-135M-Instruct (`benchmarks.smollm2`, built offline from a GGUF file) on preference data that
simulated annotators labelled with a known reward (`benchmarks.chat_task`), once per setting (SPO at several
alpha with beta = 0.01 and with beta = 0, DPO at two betas, SPO on rankings, SPO with LoRA, and the paper's
Table 6 ablation that measures the KL on the dataset's completions), all from the same data, steps, learning rate and
seed. Each trained policy then answers the held-out prompts `k` times, and is measured with `trl_spo.evaluation`:

- mean known reward, and win rate against the base model's answers under the known reward, with its standard error
  clustered by prompt (the k answers to one prompt are not independent: the prompt is the unit);
- per-token entropy of the policy on its own samples, and useful entropy (section 7.3: over the answers that beat
  the base model's);
- distinct answers and distinct-2 per prompt;
- KL(pi || pi_ref) estimated on the samples (sum of per-token log ratios, EOS included; standard error clustered by
  prompt), and the truncation rate.

It writes, to `--output_dir`: `chat_frontier.json` (every number), `chat_frontier.md` (the table, with the command and
the time it took), `chat_frontier.png` (win rate against entropy, one point per setting: the frontier) and
`chat_frontier_samples.jsonl` (every evaluated answer with its reward, entropy and log ratio). `--update_doc
docs/results.md` rewrites the block between `<!-- chat-frontier:begin -->` and `<!-- chat-frontier:end -->`.

`--rerender_from DIR` trains nothing: it recomputes every row's statistics from `DIR/chat_frontier_samples.jsonl`,
checks them against `DIR/chat_frontier.json` (so the answers are that run's), and rewrites the JSON, the table and the
figure in `DIR` (and the `--update_doc` block). It is how a change in the summary (the clustered standard errors) reaches
the committed results without the 40 minutes of training.
"""

import argparse
import hashlib
import json
import math
import re
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .chat_task import PREFERENCES_FILE, RANKINGS_FILE, REWARD_DIGITS, SAMPLES_HELDOUT_FILE, read_jsonl, reward
from .harness import Setting, TrainingPlan, select_settings, train_setting
from .reporting import ProgressPrinter, update_doc


DATA_DIR = Path(__file__).resolve().parents[1] / "recipes" / "smollm2" / "data"


DEFAULT_SETTINGS = (
    Setting("spo", alpha=1.0, beta=0.01),
    Setting("spo", alpha=0.1, beta=0.01),
    Setting("spo", alpha=0.01, beta=0.01),
    Setting("spo", alpha=0.1, beta=0.0),
    Setting("spo", alpha=0.1, beta=0.01, regularizer="dataset_kl"),
    Setting("spo", alpha=0.1, beta=0.01, data="rankings"),
    Setting("spo", alpha=0.1, beta=0.01, lora=True),
    Setting("dpo", beta=0.1),
    Setting("dpo", beta=0.5),
)


@dataclass
class BenchmarkConfig:
    """
    Sizes of the benchmark; the defaults are the run in docs/results.md (about 45 minutes on 2 CPU cores).

    Args:
        seed (`int`): seeds every trainer and every sampling.
        max_steps (`int`): optimizer steps per setting.
        batch_size (`int`): pairs per optimizer step (rankings: `batch_size // 2` rows of 4, the same sequences).
        learning_rate (`float`): peak learning rate of full fine-tuning, decayed linearly.
        lora_learning_rate (`float`): the same for LoRA, which needs a larger step to move as far.
        gamma (`float`): SPO's mu exponent (Eq. 12), the paper's.
        generation_interval (`int`): SPO's optimizer steps between refreshes of the KL samples (8, the paper's T on
            TinyStories, App. E.3).
        max_completion_length (`int`): tokens of a KL sample and of an evaluated answer (the data's own limit).
        num_eval_prompts (`int`): held-out prompts evaluated.
        num_eval_samples (`int`): answers per held-out prompt (k).
        eval_batch_size (`int`): prompts sampled at once.
        settings (`tuple[Setting, ...]`): the policies, in order.
    """

    seed: int = 0
    max_steps: int = 16
    batch_size: int = 4
    learning_rate: float = 5e-5
    lora_learning_rate: float = 5e-4
    gamma: float = 0.01
    generation_interval: int = 8
    max_completion_length: int = 64
    num_eval_prompts: int = 32
    num_eval_samples: int = 4
    eval_batch_size: int = 16
    settings: tuple[Setting, ...] = field(default=DEFAULT_SETTINGS)


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------


def training_plan(config: BenchmarkConfig) -> TrainingPlan:
    """What every setting shares (`benchmarks.harness`); rankings take `batch_size // 2` rows of 4."""
    return TrainingPlan(
        seed=config.seed,
        max_steps=config.max_steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        lora_learning_rate=config.lora_learning_rate,
        gamma=config.gamma,
        generation_interval=config.generation_interval,
        max_length=config.max_completion_length + 64,  # the chat-templated prompt is about 40 tokens
        max_completion_length=config.max_completion_length,
        logging_steps=1,
        ranking_size=4,
        extra_arguments={"activation_checkpointing": False},
    )


def train_one(
    setting: Setting, config: BenchmarkConfig, base_dir: str, data_dir: Path, output_dir: str, progress
) -> dict:
    """Train `setting` from the base model and save the policy (merged, for LoRA) to `output_dir`."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    rows = read_jsonl(data_dir / (RANKINGS_FILE if setting.data == "rankings" else PREFERENCES_FILE))
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    with tempfile.TemporaryDirectory() as scratch:
        trainer, seconds = train_setting(
            setting,
            training_plan(config),
            base_dir,
            Dataset.from_list(rows).shuffle(seed=config.seed),
            tokenizer,
            scratch,
            callbacks=[progress],
        )
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        model = trainer.model.merge_and_unload() if setting.lora else trainer.model
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    last = history[-1]
    return {
        "train_seconds": seconds,
        "final_train_loss": last["loss"],
        "trainer_kl": last.get("kl/global", last.get("kl/dataset")),
        "samples_clipped_ratio": next(
            (e["samples/clipped_ratio"] for e in reversed(history) if "samples/clipped_ratio" in e), None
        ),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation on the held-out prompts
# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_and_score(policy_dir: str, base, tokenizer, rows: list[dict], config: BenchmarkConfig, log) -> list[dict]:
    """
    `num_eval_samples` answers per prompt from the policy at temperature 1, each with its known reward, per-token
    entropy estimate, and log ratio `log pi(y|x) - log pi_ref(y|x)` (EOS included: the choice to stop is part of y).
    """
    from transformers import AutoModelForCausalLM, set_seed

    from trl_spo.evaluation.generation import (
        completion_entropies,
        completion_token_logps,
        encode_prompt,
        generation_config_for,
        sample_answers,
    )

    policy = base if policy_dir is None else AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
    policy.eval()
    generation_config = generation_config_for(policy, tokenizer, config.max_completion_length, 1.0, 1.0)
    eos = tokenizer.eos_token_id
    prompt_ids = [encode_prompt(tokenizer, row["prompt"]) for row in rows]
    set_seed(config.seed)
    records = []
    start = time.perf_counter()
    for first in range(0, len(rows), config.eval_batch_size):
        batch = prompt_ids[first : first + config.eval_batch_size]
        answers = sample_answers(
            policy, tokenizer, batch, config.num_eval_samples, generation_config, config.eval_batch_size
        )
        owners = [first + i for i in range(len(batch)) for _ in range(config.num_eval_samples)]
        # The sequence each model scores: the answer, and the EOS that ended it (a truncated answer has none).
        scored = [a.token_ids + [eos] if a.stopped_at_eos else a.token_ids for a in answers]
        contexts = [prompt_ids[i] for i in owners]
        policy_logps = completion_token_logps(policy, contexts, scored, len(scored), tokenizer.pad_token_id)
        base_logps = completion_token_logps(base, contexts, scored, len(scored), tokenizer.pad_token_id)
        answer_logps = [lp[: len(a.token_ids)] for lp, a in zip(policy_logps, answers, strict=False)]
        for i, answer, entropy, logp, logp_ref in zip(
            owners, answers, completion_entropies(answer_logps), policy_logps, base_logps, strict=False
        ):
            text = tokenizer.decode(answer.token_ids, skip_special_tokens=True)
            records.append(
                {
                    "prompt_index": i,
                    "answer": text,
                    # Rounded like the cached base rewards it is compared with, so equal rewards tie exactly.
                    "reward": round(reward(rows[i]["task"], text), REWARD_DIGITS),
                    "num_tokens": len(answer.token_ids),
                    "truncated": not answer.stopped_at_eos,
                    "entropy": entropy,
                    "log_ratio": sum(logp) - sum(logp_ref),
                }
            )
        done = min(first + len(batch), len(rows))
        log(
            f"    evaluated {done}/{len(rows)} prompts x {config.num_eval_samples} ({time.perf_counter() - start:.0f} s)"
        )
    if policy is not base:
        del policy
    return records


def summarize_policy(records: list[dict], rows: list[dict]) -> dict:
    """The table's numbers for one policy, from its evaluated answers and the base model's cached ones."""
    from trl_spo.evaluation.metrics import (
        clustered_mean,
        clustered_win_rate,
        distinct_n,
        kl_estimate,
        num_distinct_answers,
        reward_comparison_scores,
        truncation_rate,
        useful_entropy,
        win_rate,
    )

    by_prompt: dict[int, list[dict]] = {}
    for record in records:
        by_prompt.setdefault(record["prompt_index"], []).append(record)
    scores = []
    for i, answers in sorted(by_prompt.items()):
        prompt_scores = reward_comparison_scores([a["reward"] for a in answers], rows[i]["rewards"])
        for answer, score in zip(answers, prompt_scores, strict=False):
            answer["win_score"] = score
        scores.extend(prompt_scores)
    ordered = [a for _, answers in sorted(by_prompt.items()) for a in answers]
    prompts = [a["prompt_index"] for a in ordered]
    # The k answers to one prompt share its difficulty: the standard errors take the prompt as the unit.
    rate = clustered_win_rate(scores, prompts)
    entropy = useful_entropy([a["entropy"] for a in ordered], scores, threshold=0.5)
    kl = clustered_mean([a["log_ratio"] for a in ordered], prompts)
    distinct_2 = [distinct_n([a["answer"] for a in answers], 2) for answers in by_prompt.values()]
    distinct_2 = [d for d in distinct_2 if d is not None]
    return {
        "mean_reward": sum(a["reward"] for a in ordered) / len(ordered),
        "win_rate": rate.win_rate,
        "win_rate_stderr": rate.stderr,
        "win_rate_stderr_unclustered": win_rate(scores).stderr,
        "entropy": entropy.mean_entropy,
        "useful_entropy": entropy.useful_entropy,
        "distinct_answers": sum(num_distinct_answers([a["answer"] for a in v]) for v in by_prompt.values())
        / len(by_prompt),
        "distinct_2": sum(distinct_2) / len(distinct_2) if distinct_2 else None,
        "kl_to_base": kl.mean,
        "kl_to_base_stderr": kl.stderr,
        "kl_to_base_stderr_unclustered": kl_estimate([a["log_ratio"] for a in ordered]).stderr,
        "num_prompts": len(by_prompt),
        "truncation_rate": truncation_rate([a["truncated"] for a in ordered]),
        "mean_tokens": sum(a["num_tokens"] for a in ordered) / len(ordered),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def _fmt(value, digits=2, stderr=None) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text + (f" ± {stderr:.{digits}f}" if stderr is not None else "")


def markdown_table(rows: list[dict], caption: str) -> str:
    header = (
        "| policy | mean reward | win rate vs base (%) ± SE clustered by prompt | entropy (nats/token) | useful entropy | "
        "distinct answers | distinct-2 | KL to base (nats) ± SE clustered by prompt | truncated | train s |"
    )
    lines = [header, "| --- |" + " ---: |" * 9]
    for row in rows:
        lines.append(
            f"| {row['name']} | {_fmt(row['mean_reward'])} | "
            f"{_fmt(100 * row['win_rate'], 1, 100 * row['win_rate_stderr'])} | {_fmt(row['entropy'])} | "
            f"{_fmt(row['useful_entropy'])} | {_fmt(row['distinct_answers'])} | {_fmt(row['distinct_2'])} | "
            f"{_fmt(row['kl_to_base'], 1, row['kl_to_base_stderr'])} | {_fmt(100 * row['truncation_rate'], 0)} % | "
            f"{_fmt(row.get('train_seconds'), 0)} |"
        )
    return "\n".join([*lines, "", caption, ""])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_win, by_reward) = plt.subplots(1, 2, figsize=(12, 5))
    for row in rows:
        color = "tab:blue" if row["name"].startswith("SPO") else "tab:red" if row["name"].startswith("DPO") else "k"
        for axis, key in ((by_win, "win_rate"), (by_reward, "mean_reward")):
            value = 100 * row[key] if key == "win_rate" else row[key]
            axis.scatter(row["entropy"], value, color=color)
            if key == "win_rate" and row.get("win_rate_stderr") is not None:
                axis.errorbar(row["entropy"], value, yerr=100 * row["win_rate_stderr"], color=color, alpha=0.4)
            axis.annotate(row["name"], (row["entropy"], value), fontsize=7, xytext=(3, 3), textcoords="offset points")
    by_win.set(
        xlabel="entropy of the policy's answers (nats/token)",
        ylabel="win rate vs base model (%), ± 1 SE clustered by prompt",
    )
    by_reward.set(xlabel="entropy of the policy's answers (nats/token)", ylabel="mean known reward")
    figure.suptitle(
        "An open-ended chat task at a CPU budget (SmolLM2-135M-Instruct): inconclusive. Blue SPO, red DPO, black base"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(
    config: BenchmarkConfig,
    output_dir: Path,
    command: str,
    doc: Path | None = None,
    data_dir: Path = DATA_DIR,
    log=print,
) -> list[dict]:
    """Trains and evaluates every setting, writes the four files, and returns the table rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .smollm2 import build_smollm2_checkpoint

    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    base_dir = str(build_smollm2_checkpoint(log=log))
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    rows = read_jsonl(data_dir / SAMPLES_HELDOUT_FILE)[: config.num_eval_prompts]

    log("[base] SmolLM2-135M-Instruct itself, against its own cached answers")
    records = {"base": sample_and_score(None, base, tokenizer, rows, config, log)}
    results = [{"name": "base model", **summarize_policy(records["base"], rows)}]
    run_seconds = []
    for index, setting in enumerate(config.settings):
        setting_start = time.perf_counter()
        progress = ProgressPrinter.for_setting(index, config.settings, config.max_steps, run_seconds, log)
        with tempfile.TemporaryDirectory() as policy_dir:
            training = train_one(setting, config, base_dir, data_dir, policy_dir, progress)
            records[setting.name] = sample_and_score(policy_dir, base, tokenizer, rows, config, log)
        row = {"name": setting.name, **summarize_policy(records[setting.name], rows), **training}
        results.append(row)
        run_seconds.append(time.perf_counter() - setting_start)
        log(
            f"{setting.name}: reward {_fmt(row['mean_reward'])}, win rate {_fmt(100 * row['win_rate'], 1)} %, "
            f"entropy {_fmt(row['entropy'])}, distinct {_fmt(row['distinct_answers'])}, "
            f"KL {_fmt(row['kl_to_base'], 1)} ({run_seconds[-1]:.0f} s)"
        )
    total_seconds = time.perf_counter() - started
    with (output_dir / "chat_frontier_samples.jsonl").open("w", encoding="utf-8") as f:
        for name, answers in records.items():
            for answer in answers:
                f.write(json.dumps({"policy": name, **answer}, ensure_ascii=False) + "\n")
    payload = {
        "command": command,
        "config": asdict(config),
        "rows": results,
        "total_seconds": total_seconds,
        "num_threads": torch.get_num_threads(),
    }
    write_report(payload, output_dir, doc)
    return results


def caption_for(payload: dict) -> str:
    """The table's caption, from the run's stored configuration, time, thread count and command."""
    config = payload["config"]
    num_prompts = payload["rows"][0]["num_prompts"]
    caption = (
        f"SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32), seed {config['seed']}: {config['max_steps']} "
        f"steps of {config['batch_size']} pairs (rankings: {config['batch_size'] // 2} rows of 4) per setting, "
        f"learning rate {config['learning_rate']:g} ({config['lora_learning_rate']:g} for LoRA), gamma "
        f"{config['gamma']}; evaluated on {num_prompts} held-out prompts x {config['num_eval_samples']} answers at "
        f"temperature 1, at most {config['max_completion_length']} tokens. Win rate: against the base model's 4 cached "
        f"answers per prompt, under the known reward (ties count half). ± is the standard error clustered by prompt: "
        f"the {config['num_eval_samples']} answers to a prompt are not independent, so the {num_prompts} prompts are "
        f"the unit (CR1). {payload['total_seconds'] / 60:.0f} min in all on {payload['num_threads']} CPU threads. "
        f"Command: `{payload['command']}`"
    )
    if payload.get("rerender_command"):
        caption += (
            f". Table re-rendered from the committed answers, without retraining: `{payload['rerender_command']}`"
        )
    return caption


def write_report(payload: dict, output_dir: Path, doc: Path | None = None) -> str:
    """Writes the table, the figure and the JSON (`payload` plus the table and the figure's hash); returns the table."""
    table = markdown_table(payload["rows"], caption_for(payload))
    figure = output_dir / "chat_frontier.png"
    plot(payload["rows"], figure)
    payload = {**payload, "table": table, "figure_sha256": hashlib.sha256(figure.read_bytes()).hexdigest()}
    (output_dir / "chat_frontier.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    (output_dir / "chat_frontier.md").write_text(table)
    if doc is not None:
        update_doc(doc, table, name="chat-frontier")
    return table


# Row entries whose definition changed after a committed run: the rerender recomputes them rather than checking them.
RECOMPUTED_KEYS = frozenset({"win_rate_stderr", "kl_to_base_stderr"})


def recompute_rows(payload: dict, samples: list[dict], data_dir: Path = DATA_DIR) -> list[dict]:
    """
    Every row of `payload` with its statistics recomputed by `summarize_policy` from the run's evaluated answers.

    The training entries (time, final loss, trainer KL) are kept. Every recomputed entry that the row already holds
    must equal it (relative 1e-9, the same arithmetic on the same stored floats), except those in `RECOMPUTED_KEYS`;
    a `ValueError` otherwise: the answers are not this JSON's run.
    """
    records: dict[str, list[dict]] = {}
    for sample in samples:
        records.setdefault(sample["policy"], []).append({k: v for k, v in sample.items() if k != "policy"})
    heldout = read_jsonl(data_dir / SAMPLES_HELDOUT_FILE)[: payload["config"]["num_eval_prompts"]]
    rows = []
    for committed in payload["rows"]:
        policy = "base" if committed["name"] == "base model" else committed["name"]
        if policy not in records:
            raise ValueError(f"no answers of {policy!r} in the samples; found {sorted(records)}")
        answers = records[policy]
        stored_scores = [a.get("win_score") for a in answers]
        summary = summarize_policy(answers, heldout)
        if any(s is not None and s != a["win_score"] for s, a in zip(stored_scores, answers, strict=True)):
            raise ValueError(f"{committed['name']}: the stored win scores differ from the held-out data's rewards")
        for key, value in summary.items():
            if key in committed and key not in RECOMPUTED_KEYS and not _same(committed[key], value):
                raise ValueError(
                    f"{committed['name']}: {key} recomputed from the answers is {value!r}, the JSON has "
                    f"{committed[key]!r}: the samples are not this JSON's run"
                )
        training = {k: v for k, v in committed.items() if k != "name" and k not in summary}
        rows.append({"name": committed["name"], **summary, **training})
    return rows


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def rerender(results_dir: Path, command: str, doc: Path | None = None, data_dir: Path = DATA_DIR) -> list[dict]:
    """
    Rebuilds `results_dir`'s chat_frontier.json rows, table and figure (and `doc`'s block) from its committed JSON and
    `chat_frontier_samples.jsonl`, training nothing. `command` is recorded in the caption next to the run's own.
    """
    payload = json.loads((results_dir / "chat_frontier.json").read_text(encoding="utf-8"))
    samples = read_jsonl(results_dir / "chat_frontier_samples.jsonl")
    rows = recompute_rows(payload, samples, data_dir)
    if "num_threads" not in payload:
        # Runs before the field existed name it in their caption only.
        found = re.search(r"on (\d+) CPU threads", payload.get("table", ""))
        if found is None:
            raise ValueError("the JSON stores no thread count and its caption names none")
        payload["num_threads"] = int(found.group(1))
    payload = {k: v for k, v in payload.items() if k not in ("table", "figure_sha256")}
    payload.update(rows=rows, rerender_command=command)
    write_report(payload, results_dir, doc)
    return rows


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    defaults = BenchmarkConfig()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--output_dir", default="results/chat_frontier", help="where the files are written")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max_steps", type=int, default=defaults.max_steps, help="optimizer steps per setting")
    parser.add_argument("--num_eval_prompts", type=int, default=defaults.num_eval_prompts)
    parser.add_argument("--num_eval_samples", type=int, default=defaults.num_eval_samples)
    parser.add_argument(
        "--settings", nargs="+", default=None, help="names of the settings to run (default: all of them)"
    )
    parser.add_argument("--update_doc", default=None, help="Markdown file whose marked block receives the table")
    parser.add_argument(
        "--rerender_from",
        default=None,
        help="train nothing: recompute the table from DIR/chat_frontier.json and DIR/chat_frontier_samples.jsonl (a "
        "committed run) and rewrite them in DIR; the options above other than --update_doc are ignored",
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks.chat_frontier") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = make_parser(prog).parse_args(argv)
    command = shlex.join(prog.split() + argv)
    doc = Path(parsed.update_doc) if parsed.update_doc else None
    if parsed.rerender_from is not None:
        rows = rerender(Path(parsed.rerender_from), command, doc)
        print(markdown_table(rows, f"Rewritten in {parsed.rerender_from}"))
        return 0
    for name in ("max_steps", "num_eval_prompts", "num_eval_samples"):
        if getattr(parsed, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(parsed, name)}")
    settings = select_settings(parsed.settings, {"default": DEFAULT_SETTINGS})
    config = BenchmarkConfig(
        seed=parsed.seed,
        max_steps=parsed.max_steps,
        num_eval_prompts=parsed.num_eval_prompts,
        num_eval_samples=parsed.num_eval_samples,
        settings=settings,
    )
    rows = run(config, Path(parsed.output_dir), command, doc)
    print(markdown_table(rows, f"Written to {parsed.output_dir}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
