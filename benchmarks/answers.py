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
Known answers on a real chat model: does SPO land on `Softmax(r / alpha)` while DPO collapses?

`python -m benchmarks.answers` (from a checkout's root) is the real-model counterpart of `benchmarks.expert_distribution`.
It fine-tunes SmolLM2-135M-Instruct (built offline, `benchmarks.smollm2`) with TRL's `SFTTrainer` on uniformly
drawn correct answers of the task in `benchmarks.answers_task` (the SFT reference, cached), then trains SPO and
DPO settings from that reference on the same Bradley-Terry pairs, steps, learning rate and seed
(`benchmarks.harness`), and measures each policy exactly: for every prompt, the probability of each correct
answer (teacher-forced, EOS included), on training prompts, held-out templates and held-out categories. It also
samples `k` answers per prompt at temperature 1, which is what a user would see.

It writes, to `--output_dir`:

- `answers.json`: `{"rows": [...]}`, one row per (setting, split), with `method`, `alpha`, `beta`, `regularizer`,
  `data`, `split`, `steps`, `tv`, `mass`, `entropy`, `target_entropy`, `top_prob` and more; the trajectories; the
  final distributions; the reference's and the base model's measurements;
- `answers.md`: the tables, with the command and the time it took in the caption;
- `answers.png`: conditional entropy and mass over training steps (the paper's Figure 1 in miniature), and one
  prompt's final distributions beside the target.

`--update_doc docs/results.md` rewrites the block between `<!-- answers:begin -->` and `<!-- answers:end -->`.
`--name` changes the files' stem and the block's name (the β sweep: `--settings beta_sweep --name answers_beta_sweep`).
`--tiny` runs the same pipeline on the 1 MB model the repo ships, in well under a minute (the suite's check of the
direction of the result; its numbers mean nothing about SmolLM2).
"""

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformers import TrainerCallback

from .answers_task import (
    SECOND_HELDOUT_CATEGORIES,
    SECOND_HELDOUT_TEMPLATES,
    SECOND_TRAIN_CATEGORIES,
    SECOND_TRAIN_TEMPLATES,
    SPLITS,
    AnswersTask,
    Category,
    answer_log_probs,
    data_floor,
    distribution_summary,
    encode_cases,
    entropy,
)
from .harness import Setting, TrainingPlan, benchmark_arguments, select_settings, train_setting
from .reporting import ProgressPrinter, update_doc, write_atomically


TINY_MODEL_DIR = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "model"

# The default global-KL weight of the SPO settings, chosen from the beta sweep at alpha = 1 (docs/results.md): a
# smaller beta lets more of the answer set's mass leak, a larger one pulls the answers towards the reference's own
# preferences, away from Softmax(r / alpha).
DEFAULT_BETA = 0.1

DEFAULT_SETTINGS = (
    Setting("spo", alpha=0.5, beta=DEFAULT_BETA),
    Setting("spo", alpha=1.0, beta=DEFAULT_BETA),
    Setting("spo", alpha=2.0, beta=DEFAULT_BETA),
    Setting("spo", alpha=1.0, beta=0.0),
    Setting("dpo", beta=0.1),
    Setting("dpo", beta=0.01),
)
# The β sweep at α = 1 around the default: β = 0 and β = DEFAULT_BETA are already in the default run (same reference,
# data, plan and seed, so the rows line up), the sweep adds the values on either side.
BETA_SWEEP = tuple(Setting("spo", alpha=1.0, beta=beta) for beta in (0.03, 0.3))
# DPO's fixed point on these pairs is `pi_ref * exp(r / beta)` normalised: with reward steps of 0.5, the default run's
# beta = 0.1 and 0.01 make it the argmax by construction. The larger betas give DPO its fair chance to reach SPO's
# expected reward with more entropy (the frontier comparison, docs/results.md); same reference, data, plan and seed.
DPO_BETA_RANGE = tuple(Setting("dpo", beta=beta) for beta in (0.3, 1.0, 3.0))
# From the skewed reference (`--reference skewed`): SPO at alpha = 2, whose target's expected reward (0.60) is where
# DPO's fixed point at beta = 1 falls from that reference (0.65), and DPO over its beta range.
SKEWED_REFERENCE_SETTINGS = (
    Setting("dpo", beta=1.0),
    Setting("spo", alpha=2.0, beta=DEFAULT_BETA),
    Setting("dpo", beta=0.3),
    Setting("dpo", beta=3.0),
)
# On the second, disjoint category set (`--categories second`): SPO at alpha = 1 with and without the KL, DPO at the
# default run's beta = 0.1 and at the beta whose trained point matched SPO alpha = 1's expected reward on the first
# set (beta = 1: E[r] within 0.1 of it, docs/results.md).
SECOND_CATEGORY_SETTINGS = (
    Setting("spo", alpha=1.0, beta=DEFAULT_BETA),
    Setting("dpo", beta=0.1),
    Setting("dpo", beta=1.0),
    Setting("spo", alpha=1.0, beta=0.0),
)
# The paper's n-ary comparison (Tables 4-5) in miniature: rows of 4 answers ranked by Plackett-Luce on the reward, and
# their best-of-n version (the top answer only). SPO on rankings at alpha = 1 and at a sharper alpha, SPO on best-of-n;
# PL-DPO on the rankings and S-DPO on best-of-n at beta = 1, where DPO matched SPO alpha = 1's expected reward on pairs
# (the frontier comparison), and at TRL's beta = 0.1, whose fixed point is the argmax; Best-response SFT, the baseline
# of the paper's win rates, last (the report reads every other policy against it).
NARY_SETTINGS = (
    Setting("spo", alpha=1.0, beta=DEFAULT_BETA, data="rankings"),
    Setting("spo", alpha=0.5, beta=DEFAULT_BETA, data="rankings"),
    Setting("spo", alpha=1.0, beta=DEFAULT_BETA, data="best_of_n"),
    Setting("pl_dpo", beta=1.0, data="rankings"),
    Setting("s_dpo", beta=1.0, data="best_of_n"),
    Setting("pl_dpo", beta=0.1, data="rankings"),
    Setting("s_dpo", beta=0.1, data="best_of_n"),
    Setting("br_sft", beta=0.0, data="best_of_n"),
)
EXTRA_SETTINGS = (
    Setting("spo", alpha=1.0, beta=DEFAULT_BETA, data="rankings"),
    Setting("spo", alpha=1.0, beta=DEFAULT_BETA, regularizer="dataset_kl"),
)
SETTING_GROUPS = {
    "default": DEFAULT_SETTINGS,
    "beta_sweep": BETA_SWEEP,
    "dpo_beta_range": DPO_BETA_RANGE,
    "skewed_reference": SKEWED_REFERENCE_SETTINGS,
    "second_categories": SECOND_CATEGORY_SETTINGS,
    "nary": NARY_SETTINGS,
    "all": DEFAULT_SETTINGS + EXTRA_SETTINGS,
}


# The category sets (`--categories`): the default run's, and a second, disjoint one (other categories, other templates).
TASKS = {
    "first": AnswersTask(),
    "second": AnswersTask(
        train_categories=SECOND_TRAIN_CATEGORIES,
        heldout_categories=SECOND_HELDOUT_CATEGORIES,
        train_templates=SECOND_TRAIN_TEMPLATES,
        heldout_templates=SECOND_HELDOUT_TEMPLATES,
    ),
}


@dataclass
class ReferenceSFT:
    """
    How the SFT reference is made from the base model: TRL's `SFTTrainer` on uniformly drawn correct answers.

    Args:
        steps (`int`): optimizer steps.
        batch_size (`int`): answers per step.
        learning_rate (`float`): constant learning rate.
        seed (`int`): seeds the rows and the trainer.
        answer_weights (`tuple[float, ...]`, *optional*): how often each answer of a category (best first) is drawn
            for the SFT data; `None` draws them uniformly. A reference whose preferences among the good answers are
            not the expert's (e.g. one mid-reward answer drawn far more often) is where DPO's fixed point
            `pi_ref * exp(r / beta)` leaves the maximum-entropy frontier (`benchmarks.frontier`).
    """

    steps: int = 60
    batch_size: int = 12
    learning_rate: float = 2e-5
    seed: int = 0
    answer_weights: tuple[float, ...] | None = None


# The second reference of the frontier comparison: the reward-0 answer (4th of 6) drawn half the time, each other
# answer a tenth: popularity that is not quality. DPO's fixed point from such a reference at beta = 1 sits 0.175
# nats below the frontier (computed from these proportions before the run, docs/results.md).
SKEWED_REFERENCE = ReferenceSFT(answer_weights=(0.1, 0.1, 0.1, 0.5, 0.1, 0.1))
REFERENCES = {"uniform": ReferenceSFT(), "skewed": SKEWED_REFERENCE}


@dataclass
class AnswersConfig:
    """
    What the benchmark trains and measures; the defaults are the SmolLM2 run in docs/results.md.

    Args:
        plan (`TrainingPlan`): what every setting shares (steps, batch, learning rate, seed, SPO's sampling).
        reference (`ReferenceSFT`): how the SFT reference is made.
        num_pairs (`int`): Bradley-Terry pairs in the training set (by default each is seen once).
        num_rankings (`int`): Plackett-Luce rankings (of `plan.ranking_size` answers) for the rankings setting.
        eval_every (`int`): optimizer steps between two exact measurements (the trajectory's resolution).
        num_samples (`int`): answers sampled per prompt at temperature 1 after training (k).
        max_new_tokens (`int`): tokens of a sampled answer; a longer one is cut and counts as outside the set.
        settings (`tuple[Setting, ...]`): the runs, in order.
        task (`AnswersTask`): categories, templates and reward.
    """

    plan: TrainingPlan = field(
        default_factory=lambda: TrainingPlan(
            seed=0,
            max_steps=250,
            batch_size=8,
            learning_rate=3e-5,
            lr_scheduler_type="linear",  # decays to zero: the last steps average out the minibatch noise
            warmup_steps=25,  # the KL is 0 until the policy moves: large first steps let mass leak before it acts
            max_length=64,
            max_completion_length=16,
            logging_steps=25,
            extra_arguments={
                "activation_checkpointing": False,  # 135M parameters fit; recomputing activations only costs time
                # Mixed precision as on a GPU: float32 weights, bf16 matmuls (1.5x faster on a CPU with AVX512-BF16).
                # Sequence log-probs and losses stay float32; the exact measurement runs in float32.
                "bf16": True,
            },
        )
    )
    reference: ReferenceSFT = field(default_factory=ReferenceSFT)
    num_pairs: int = 2000
    num_rankings: int = 1200
    eval_every: int = 25
    num_samples: int = 8
    max_new_tokens: int = 8
    settings: tuple[Setting, ...] = DEFAULT_SETTINGS
    task: AnswersTask = field(default_factory=AnswersTask)


def tiny_config() -> AnswersConfig:
    """The suite's run: the shipped 1 MB model, two training categories, a few dozen steps at a large learning rate."""
    task = AnswersTask(
        train_categories=(
            Category("colour", ("Purple", "Green", "Orange", "Blue", "Yellow", "Red")),
            Category("fruit", ("Mango", "Cherry", "Banana", "Peach", "Apple", "Grape")),
        ),
        heldout_categories=(Category("metal", ("Copper", "Zinc", "Silver", "Iron", "Gold", "Tin")),),
        train_templates=("Name a {noun}.", "Give me one {noun}."),
    )
    plan = TrainingPlan(
        seed=0,
        max_steps=40,
        batch_size=16,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        max_length=64,
        max_completion_length=8,
        logging_steps=10,
        extra_arguments={"activation_checkpointing": False},
    )
    return AnswersConfig(
        plan=plan,
        reference=ReferenceSFT(steps=60, batch_size=16, learning_rate=3e-3),
        num_pairs=640,
        num_rankings=320,
        eval_every=10,
        num_samples=4,
        settings=(Setting("spo", alpha=1.0, beta=0.1), Setting("dpo", beta=0.1)),
        task=task,
    )


# ---------------------------------------------------------------------------------------------------------------------
# The SFT reference
# ---------------------------------------------------------------------------------------------------------------------


def reference_key(base_dir: Path, config: AnswersConfig) -> str:
    """What the cached reference depends on: the base checkpoint, the task and the SFT recipe."""
    manifest = base_dir / "trl_spo_manifest.json"
    base = manifest.read_text() if manifest.is_file() else str(base_dir.resolve())
    sft = {
        key: value for key, value in asdict(config.reference).items() if value is not None
    }  # older caches stay valid
    recipe = json.dumps({"task": asdict(config.task), "sft": sft}, sort_keys=True, default=str)
    return hashlib.sha256((base + recipe).encode()).hexdigest()[:12]


def build_reference(base_dir: Path, config: AnswersConfig, cache_dir: Path | None, log) -> Path:
    """
    The SFT reference of `config`, trained once with TRL's `SFTTrainer` and cached next to the SmolLM2 checkpoint
    (`<cache>/answers-sft-<key>`, rebuilt when the base model, the task or the SFT recipe changes).
    """
    from .smollm2 import build_once, default_cache_dir

    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / (
        f"answers-sft-{reference_key(base_dir, config)}"
    )

    def write(staging: Path) -> dict:
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTConfig, SFTTrainer

        spec = config.reference
        log(f"SFT reference: {spec.steps} steps of {spec.batch_size} answers from {base_dir} ...")
        start = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        rows = config.task.sft_rows(spec.steps * spec.batch_size, seed=spec.seed, answer_weights=spec.answer_weights)
        with tempfile.TemporaryDirectory() as scratch:
            args = SFTConfig(
                **benchmark_arguments(scratch, spec.seed),
                per_device_train_batch_size=spec.batch_size,
                max_steps=spec.steps,
                learning_rate=spec.learning_rate,
                lr_scheduler_type="constant",
                logging_steps=max(1, spec.steps // 4),
                activation_checkpointing=False,  # 135M parameters fit; recomputing activations only costs time
            )
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
            trainer = SFTTrainer(
                model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
            )
            trainer.train()
            losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
            trainer.model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        return {"sft": asdict(spec), "train_losses": losses, "seconds": round(time.perf_counter() - start, 1)}

    return build_once(folder, write, log)


# ---------------------------------------------------------------------------------------------------------------------
# Measuring a policy
# ---------------------------------------------------------------------------------------------------------------------


def best_of_n_row(ranking_row: dict) -> dict:
    """A ranking row as best-of-n data: the same answers, only the top one labelled (the paper's Appendix F)."""
    return {
        "prompt": ranking_row["prompt"],
        "completions": ranking_row["completions"],
        "best_index": ranking_row["ranking"][0],
    }


def best_response_row(ranking_row: dict) -> dict:
    """A ranking row as Best-response SFT data: the prompt and its top-ranked answer."""
    return {"prompt": ranking_row["prompt"], "completion": ranking_row["completions"][ranking_row["ranking"][0]]}


def target_alpha(setting: dict) -> float:
    """The alpha of a setting's target: SPO's own (Theorem 1); DPO's fixed point is the argmax, alpha = 0."""
    return setting["alpha"] if setting["method"] == "spo" else 0.0


def measure_exact(model, tokenizer, task: AnswersTask, splits=SPLITS) -> dict[str, list[list[float]]]:
    """`log pi(y + EOS | x)` of every answer of every prompt, per split, as nested lists (the JSON's form)."""
    return {split: answer_log_probs(model, tokenizer, task, task.split(split)).tolist() for split in splits}


class TrajectoryTracker(TrainerCallback):
    """
    Measures the policy exactly on the training prompts every `every` steps (and before the first), and says so in
    one line: a long run can be judged (and stopped) from its trajectory.
    """

    def __init__(self, tokenizer, task: AnswersTask, target: torch.Tensor, every: int, log=print):
        self.tokenizer, self.task, self.target, self.every, self.log = tokenizer, task, target, every, log
        self.history: list[dict[str, float]] = []

    def record(self, model, step: int):
        log_probs = answer_log_probs(model, self.tokenizer, self.task, self.task.split("train"))
        point = {"step": step, **distribution_summary(log_probs, self.target)}
        self.history.append(point)
        self.log(
            f"    step {step}: TV to target {point['tv']:.3f}, entropy {point['entropy']:.3f} "
            f"(target {point['target_entropy']:.3f}), top answer {point['top_prob']:.3f}, π(answer set) "
            f"{point['mass']:.3f}"
        )

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.record(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.record(model, state.global_step)


@torch.no_grad()
def sample_and_classify(model, tokenizer, task: AnswersTask, config: AnswersConfig) -> dict[str, dict]:
    """
    `num_samples` answers per prompt at temperature 1: per split, the share outside the answer set (a different
    word, more words, or cut at `max_new_tokens`) and the distinct answers per prompt, plus the answers themselves.
    """
    from transformers import set_seed

    from trl_spo.evaluation.generation import generation_config_for, sample_answers

    set_seed(config.plan.seed)
    generation_config = generation_config_for(model, tokenizer, config.max_new_tokens, 1.0, 1.0)
    was_training = model.training
    model.eval()
    result = {}
    for split in SPLITS:
        cases = task.split(split)
        prompts, _ = encode_cases(tokenizer, task, cases)
        completions = sample_answers(model, tokenizer, prompts, config.num_samples, generation_config, len(prompts))
        answers, outside, distinct = [], 0, 0
        for index, case in enumerate(cases):
            drawn = completions[index * config.num_samples : (index + 1) * config.num_samples]
            texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True).strip() for c in drawn]
            outside += sum(
                1
                for text, c in zip(texts, drawn, strict=True)
                if not c.stopped_at_eos or text not in case.category.answers
            )
            distinct += len(set(texts))
            answers.append({"question": case.question, "answers": texts})
        result[split] = {
            "sampled_outside": outside / (len(cases) * config.num_samples),
            "sampled_distinct": distinct / len(cases),
            "samples": answers,
        }
    model.train(was_training)
    return result


def split_rows(setting: dict, log_probs: dict, sampled: dict, task: AnswersTask, steps: int, seconds: float) -> list:
    """The JSON rows of one policy: one per split, every number exact except the sampled ones."""
    alpha = target_alpha(setting)
    rows = []
    for split in SPLITS:
        values = torch.tensor(log_probs[split], dtype=torch.float64)
        summary = distribution_summary(values, task.target(alpha))
        rows.append(
            {
                **setting,
                "split": split,
                "steps": steps,
                **summary,
                # The expert's own distribution: the target of SPO at alpha = 1, a common yardstick for every method.
                "tv_to_softmax": distribution_summary(values, task.target(1.0))["tv"],
                "sampled_outside": sampled[split]["sampled_outside"],
                "sampled_distinct": sampled[split]["sampled_distinct"],
                "seconds": seconds,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def _categories(task: AnswersTask) -> str:
    if task == TASKS["first"]:
        return ""
    nouns = ", ".join(category.noun for category in task.train_categories)
    return f" (categories {nouns}; held out {', '.join(c.noun for c in task.heldout_categories)})"


def _drawn(reference: ReferenceSFT) -> str:
    if reference.answer_weights is None:
        return ""
    return (
        ", drawn in proportions " + " : ".join(f"{weight:g}" for weight in reference.answer_weights) + " (best first)"
    )


def _fmt(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_tables(rows: list[dict], reference_rows: list[dict], caption: str, num_samples: int) -> str:
    """The benchmark's two tables: training prompts beside held-out templates, then held-out categories."""
    by_name: dict[str, dict[str, dict]] = {}
    for row in reference_rows + rows:
        by_name.setdefault(row["name"], {})[row["split"]] = row
    header = (
        "| policy | TV to target, train / held-out template | entropy (target) | top answer | max π(y) | "
        f"π(answer set) | sampled outside the set | distinct of {num_samples} | train s |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for name, splits in by_name.items():
        train, template = splits["train"], splits["heldout_template"]
        lines.append(
            f"| {name} | {_fmt(train['tv'])} / {_fmt(template['tv'])} | "
            f"{_fmt(train['entropy'])} / {_fmt(template['entropy'])} ({_fmt(train['target_entropy'])}) | "
            f"{_fmt(train['top_prob'])} / {_fmt(template['top_prob'])} | "
            f"{_fmt(train['max_prob'])} / {_fmt(template['max_prob'])} | "
            f"{_fmt(train['mass'])} / {_fmt(template['mass'])} | "
            f"{_fmt(100 * train['sampled_outside'], 0)} / {_fmt(100 * template['sampled_outside'], 0)} % | "
            f"{_fmt(train['sampled_distinct'], 1)} / {_fmt(template['sampled_distinct'], 1)} | "
            f"{_fmt(train.get('seconds'), 0)} |"
        )
    category_header = (
        "| policy (held-out categories) | entropy | top answer | max π(y) | π(answer set) | sampled outside | "
        f"distinct of {num_samples} |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    category_lines = []
    for name, splits in by_name.items():
        row = splits["heldout_category"]
        category_lines.append(
            f"| {name} | {_fmt(row['entropy'])} | {_fmt(row['top_prob'])} | {_fmt(row['max_prob'])} | "
            f"{_fmt(row['mass'])} | {_fmt(100 * row['sampled_outside'], 0)} % | {_fmt(row['sampled_distinct'], 1)} |"
        )
    return f"{caption}\n\n{header}" + "\n".join(lines) + f"\n\n{category_header}" + "\n".join(category_lines) + "\n"


def plot(results: list[dict], reference: dict, task: AnswersTask, path: Path) -> None:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("the figure needs matplotlib: `pip install trl-spo[bench]`") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, masses, bars) = plt.subplots(1, 3, figsize=(18, 5))
    for result in results:
        setting = result["setting"]
        steps = [point["step"] for point in result["history"]]
        style = "--" if setting["method"] == "dpo" else "-"
        curves.plot(steps, [p["entropy"] for p in result["history"]], style, label=setting["name"])
        masses.plot(steps, [p["mass"] for p in result["history"]], style, label=setting["name"])
    for alpha in sorted({r["setting"]["alpha"] for r in results if r["setting"]["method"] == "spo"}):
        curves.axhline(entropy(task.target(alpha)).item(), color="grey", linewidth=0.8, linestyle=":")
    curves.set(
        xlabel="optimizer step",
        ylabel="entropy of π(· | x, answer set) (nats)",
        title="Entropy over training (training prompts)",
    )
    curves.text(0.01, 0.01, "dotted: entropy of Softmax(r/α)", transform=curves.transAxes, fontsize=8)
    curves.legend(fontsize=7)
    masses.set(xlabel="optimizer step", ylabel="π(answer set | x)", title="Mass on the answer set", ylim=(0, 1.02))

    case = task.split("train")[0]
    positions = torch.arange(len(case.category.answers)).float()
    shown = [("Softmax(r), target of α=1", task.target(1.0).tolist()), ("SFT reference", reference["train"])]
    for result in results:
        setting = result["setting"]
        if setting["method"] == "dpo" or setting["alpha"] == 1.0:
            shown.append((setting["name"], torch.softmax(torch.tensor(result["final"]["train"][0]), -1).tolist()))
    width = 0.8 / len(shown)
    for index, (label, values) in enumerate(shown):
        if not isinstance(values[0], float):  # the reference's log-probs of every prompt: take the first prompt's
            values = torch.softmax(torch.tensor(values[0]), -1).tolist()
        bars.bar(positions + index * width, values, width, label=label)
    bars.set_xticks(positions + 0.4 - width / 2, case.category.answers)
    bars.set(ylabel="π(y | x, answer set)", title=f"{case.question!r}: final distributions, best answer first")
    bars.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------


def run(
    config: AnswersConfig,
    output_dir: Path,
    command: str,
    doc: Path | None = None,
    base_dir: Path | None = None,
    cache_dir: Path | None = None,
    log=print,
    name: str = "answers",
) -> list[dict]:
    """
    Makes the reference, trains and measures every setting, writes `{name}.json`, `{name}.md` and `{name}.png` to
    `output_dir` (and the tables into `doc`'s block `name`), and returns the rows.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    if base_dir is None:
        from .smollm2 import build_smollm2_checkpoint

        base_dir = build_smollm2_checkpoint(cache_dir, log=log)
    task = config.task
    reference_dir = build_reference(Path(base_dir), config, cache_dir, log)
    tokenizer = AutoTokenizer.from_pretrained(reference_dir)

    measured = {}
    for label, folder in (("base model", base_dir), ("SFT reference", reference_dir)):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        measured[label] = (measure_exact(model, tokenizer, task), sample_and_classify(model, tokenizer, task, config))
        del model
    reference_rows = [
        split_rows({"name": label, "method": "none", "alpha": None}, *measured[label], task, 0, None)
        for label in measured
    ]
    reference_rows = [row for rows in reference_rows for row in rows]
    for row in reference_rows:  # no method, no target of its own: the expert's Softmax(r) is the yardstick
        row.update(tv=row["tv_to_softmax"], target_entropy=entropy(task.target(1.0)).item())
    log(
        "SFT reference: π(answer set) "
        + ", ".join(f"{r['split']} {r['mass']:.2f}" for r in reference_rows if r["name"] == "SFT reference")
    )

    pairs = task.preference_pairs(config.num_pairs, seed=config.plan.seed)
    # What these pairs say, whoever learns from them: their own Bradley-Terry fit's distance from Softmax(r / alpha).
    alphas = sorted({1.0} | {setting.alpha for setting in config.settings if setting.method == "spo"})
    floor = {str(alpha): {by: data_floor(task, pairs, alpha, by) for by in ("category", "prompt")} for alpha in alphas}
    rankings = task.rankings(config.num_rankings, config.plan.ranking_size, seed=config.plan.seed + 1)
    datasets = {
        "pairs": Dataset.from_list(pairs),
        "rankings": Dataset.from_list(rankings),
        # The same rows with the top answer only labelled (Eq. 14's data), and that answer alone for Best-response SFT.
        "best_of_n": Dataset.from_list([best_of_n_row(row) for row in rankings]),
        "best_response": Dataset.from_list([best_response_row(row) for row in rankings]),
    }
    results, rows, run_seconds = [], [], []
    for index, setting in enumerate(config.settings):
        setting_start = time.perf_counter()
        progress = ProgressPrinter.for_setting(index, config.settings, config.plan.max_steps, run_seconds, log)
        summary = setting.summary()
        tracker = TrajectoryTracker(tokenizer, task, task.target(target_alpha(summary)), config.eval_every, log=log)
        with tempfile.TemporaryDirectory() as scratch:
            trainer, seconds = train_setting(
                setting,
                config.plan,
                str(reference_dir),
                datasets["best_response" if setting.method == "br_sft" else setting.data],
                tokenizer,
                scratch,
                callbacks=[tracker, progress],
            )
            final = measure_exact(trainer.model, tokenizer, task)
            sampled = sample_and_classify(trainer.model, tokenizer, task, config)
            logged = [entry for entry in trainer.state.log_history if "loss" in entry]
        del trainer
        results.append(
            {
                "setting": summary,
                "history": tracker.history,
                "final": final,
                "samples": {split: sampled[split]["samples"] for split in SPLITS},
                "train_log": logged,
                "seconds": seconds,
            }
        )
        rows.extend(split_rows(summary, final, sampled, task, config.plan.max_steps, seconds))
        run_seconds.append(time.perf_counter() - setting_start)
        train_row = rows[-len(SPLITS)]
        log(
            f"{setting.name}: TV {train_row['tv']:.3f}, entropy {train_row['entropy']:.3f} "
            f"(target {train_row['target_entropy']:.3f}), top {train_row['top_prob']:.3f}, "
            f"mass {train_row['mass']:.3f} ({run_seconds[-1]:.0f} s)"
        )

    total_seconds = time.perf_counter() - started
    plan = config.plan
    caption = (
        f"Known answers on {'the tiny test model' if base_dir == TINY_MODEL_DIR else 'SmolLM2-135M-Instruct'}"
        f"{_categories(task)}, "
        f"seed {plan.seed}: SFT reference ({config.reference.steps} steps of {config.reference.batch_size} correct "
        f"answers{_drawn(config.reference)}), then {plan.max_steps} steps of {plan.batch_size} pairs per setting from it "
        f"({config.num_pairs} Bradley-Terry pairs over {len(task.split('train'))} training prompts), learning rate "
        f"{plan.learning_rate:g} ({plan.lr_scheduler_type}), γ = {plan.gamma}, KL samples refreshed every "
        f"{plan.generation_interval} steps. Exact over each prompt's {len(task.reward_ladder)} correct answers; TV "
        f"to Softmax(r/α) for SPO, to the best answer for DPO, to Softmax(r) for the reference and the base model; "
        f"'top answer' is π of the best answer given the set (Softmax(r) gives it "
        f"{task.target(1.0)[0].item():.2f}). The pairs' own Bradley-Terry fit is TV {floor['1.0']['category']:.3f} "
        f"(templates pooled) to {floor['1.0']['prompt']:.3f} (each prompt alone) from Softmax(r): no policy trained on "
        f"them is expected closer. 'Sampled' columns from {config.num_samples} answers per prompt at "
        f"temperature 1. {total_seconds / 60:.0f} min in all on {torch.get_num_threads()} CPU threads. "
        f"Command: `{command}`"
    )
    table = markdown_tables(rows, reference_rows, caption, config.num_samples)
    figure = output_dir / f"{name}.png"
    reference_log_probs = measured["SFT reference"][0]
    plot(results, reference_log_probs, task, figure)
    payload = {
        "command": command,
        "config": asdict(config),
        "rows": rows,
        "reference_rows": reference_rows,
        "data_floor": floor,
        "reference": {label: {"log_probs": values[0], "samples": values[1]} for label, values in measured.items()},
        "runs": results,
        "total_seconds": total_seconds,
        "threads": torch.get_num_threads(),
        "table": table,
        "figure_sha256": hashlib.sha256(figure.read_bytes()).hexdigest(),
    }
    write_atomically(output_dir / f"{name}.json", json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    write_atomically(output_dir / f"{name}.md", table)
    if doc is not None:
        update_doc(doc, table, name=name)
    return rows


# Flags that override the training plan (`TrainingPlan` fields); unset, the default (or `--tiny`) plan's value stays.
PLAN_FLAGS = {
    "seed": (int, "seeds the data and every trainer"),
    "max_steps": (int, "optimizer steps per setting"),
    "learning_rate": (float, "peak learning rate"),
    "lr_scheduler_type": (str, "transformers' schedule name, e.g. linear or constant"),
    "warmup_steps": (int, "optimizer steps of linear warmup"),
}


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    defaults = AnswersConfig()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--output_dir", default="results/answers", help="where the files are written")
    for name, (kind, meaning) in PLAN_FLAGS.items():
        parser.add_argument(
            f"--{name}", type=kind, default=None, help=f"{meaning} (default: {getattr(defaults.plan, name)})"
        )
    parser.add_argument(
        "--eval_every",
        type=int,
        default=None,
        help=f"steps between two exact measurements (default: {defaults.eval_every})",
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=None,
        help=f"groups ({', '.join(SETTING_GROUPS)}) or setting names, e.g. 'SPO α=1 β=0.1' (default: default)",
    )
    parser.add_argument(
        "--reference",
        choices=sorted(REFERENCES),
        default="uniform",
        help="the SFT reference: correct answers drawn uniformly, or 'skewed' (a mid-reward answer half the time)",
    )
    parser.add_argument(
        "--categories",
        choices=sorted(TASKS),
        default="first",
        help="the category set: the default run's, or a second, disjoint one (other categories and templates)",
    )
    parser.add_argument("--tiny", action="store_true", help="the 1 MB test model and a short run (under a minute)")
    parser.add_argument("--update_doc", default=None, help="Markdown file whose marked block receives the tables")
    parser.add_argument(
        "--name", default="answers", help="stem of the files written and name of the doc block (default: answers)"
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks.answers") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = make_parser(prog).parse_args(argv)
    for name in ("max_steps", "eval_every"):
        if getattr(parsed, name) is not None and getattr(parsed, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(parsed, name)}")
    config = tiny_config() if parsed.tiny else AnswersConfig()
    overrides = {name: getattr(parsed, name) for name in PLAN_FLAGS if getattr(parsed, name) is not None}
    config = replace(config, plan=replace(config.plan, **overrides))
    if parsed.eval_every is not None:
        config = replace(config, eval_every=parsed.eval_every)
    if parsed.categories != "first":
        if parsed.tiny:
            raise ValueError("--tiny runs its own two-category task; --categories applies to the SmolLM2 run")
        config = replace(config, task=TASKS[parsed.categories])
    if parsed.reference != "uniform":
        config = replace(
            config, reference=replace(config.reference, answer_weights=REFERENCES[parsed.reference].answer_weights)
        )
    if parsed.settings is not None:
        config = replace(config, settings=select_settings(parsed.settings, SETTING_GROUPS))
    command = shlex.join(prog.split() + argv)
    rows = run(
        config,
        Path(parsed.output_dir),
        command,
        doc=Path(parsed.update_doc) if parsed.update_doc else None,
        base_dir=TINY_MODEL_DIR if parsed.tiny else None,
        name=parsed.name,
    )
    print(f"Written to {parsed.output_dir}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
