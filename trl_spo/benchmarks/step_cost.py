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
"""Cost of one optimizer step of `trl_spo.SPOTrainer` against `trl.DPOTrainer`, on CPU: wall time and peak memory.

Both trainers run in this one process, on the same locally built model, data, batch and seed, for two vocabularies:
"small", the 512-token byte-level BPE trained on the benchmark's own text, and "wide", 32,000 embedding rows by default
(Llama-2's vocabulary; the embedding is padded beyond the tokenizer, as many released checkpoints are), where the
full-vocabulary projections dominate. Nothing is downloaded. From the repository root:

    trl-spo bench step_cost                               # the defaults: 4-5 minutes on 2 idle CPU cores
    trl-spo bench step_cost --output /tmp/step_cost.md    # also write the Markdown report to a file
    trl-spo bench step_cost --mmap-threshold 65536        # peak memory closer to live tensors (see below)
    trl-spo bench step_cost --configs small --small-repeats 1   # a quick look

What is measured (docs/benchmarks.md discusses the results):

* s/step: wall time between consecutive `on_step_end` callbacks, i.e. everything a step costs (collation, the refresh
  of SPO's KL samples at `on_step_begin`, forward, backward, optimizer step), averaged over the `--measure-steps`
  steps after `--warmup-steps` steps. `--measure-steps` is a multiple of `generation_interval`, so the window holds
  exactly one refresh of SPO's samples per interval: generation is amortised as in a real run. Each trainer runs
  several times (`--small-repeats`, `--repeats`), DPO and SPO back to back, alternating which one goes first. The
  table gives the median s/step of each trainer and, as the ratio, the median of the per-repeat ratios SPO/DPO: two
  runs back to back see the same machine, so slow drift cancels out in their ratio.
* peak MiB: the process's resident-set high-water mark (`VmHWM`, reset through `/proc/self/clear_refs` right before
  `trainer.train()`) minus the resident set before the trainer was built, i.e. all the trainer added at its peak
  (policy, reference, gradients, AdamW state, activations, kernel tiles, generation). "train delta" is the same peak
  above the resident set right before `train()`. Between runs the trainer is deleted, then `gc.collect()` and glibc's
  `malloc_trim(0)` give freed memory back, so one run's leftovers do not hide in the next one's baseline. This is
  resident memory under glibc's allocator, which keeps some freed blocks; `--mmap-threshold` makes glibc map and unmap
  every block above that size, so the peak follows the live tensors (at some cost in speed).
* generation share: SPO's time in refreshing its KL samples (sampling from the policy, then the reference forward on
  the samples) over the measured window.
* other load: CPU time that other processes used during the window, in cores. On a shared machine a run with other
  load above `--busy-threshold` is discarded and repeated (at most `--max-retries` times).
"""

import argparse
import ctypes
import gc
import os
import platform
import random
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path


# Read by huggingface_hub, transformers and tokenizers when first imported: set before importing them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    PreTrainedTokenizerFast,
    PrinterCallback,
    TrainerCallback,
)
from trl import DPOConfig, DPOTrainer  # noqa: E402

from trl_spo import SPOConfig, SPOTrainer  # noqa: E402
from trl_spo.tiny_models import tiny_qwen2  # noqa: E402


EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
MIB = 2**20
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter

WORDS = (
    "the a an one two some many every each this that these those my your our their his her its and or but so because "
    "while when where after before under over near between through without within about across against along around "
    "river mountain forest city village garden kitchen market library station harbour bridge castle island desert "
    "teacher doctor farmer sailor painter baker writer student child friend neighbour traveller engineer musician "
    "walks runs builds paints writes reads carries finds opens closes follows watches remembers explains answers "
    "quickly slowly carefully quietly happily suddenly finally often never always sometimes together alone again "
    "red green blue yellow bright dark old young small large quiet loud warm cold early late simple strange gentle "
    "apple bread cheese water lamp window door table chair letter story song picture question answer reason idea "
    "morning evening night summer winter autumn spring weather rain snow wind sun moon star cloud stone road path"
).split()
QUESTION_STARTS = ("Why does", "How can", "What makes", "Where does", "When will", "Who helps", "Which way does")


# ----------------------------------------------------------------------------------------------------------------------
# Assets: text, tokenizer, model


def random_sentence(rng: random.Random, num_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(num_words)).capitalize() + "."


def build_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the benchmark's own text, with an EOS and a distinct pad token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)


def num_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def text_with_length(rng: random.Random, tokenizer, max_tokens: int, prefix: str = " ") -> str:
    """`prefix` followed by random words: the longest such text of at most `max_tokens` tokens."""
    text = prefix.rstrip() if prefix.strip() else ""
    while True:
        candidate = (text + " " if text else prefix) + rng.choice(WORDS)
        if num_tokens(tokenizer, candidate) > max_tokens:
            return text
        text = candidate


def build_rows(rng: random.Random, tokenizer, num_rows: int, completion_length: int) -> list[dict[str, str]]:
    """
    Pairwise rows in TRL's standard explicit-prompt format: `{"prompt", "chosen", "rejected"}` strings.

    Prompts are 12-20 tokens. Each completion has between 3/4 of `completion_length` and `completion_length` tokens,
    the EOS that the trainers append included, so `max_completion_length = completion_length` bounds them too.
    """
    rows = []
    for _ in range(num_rows):
        question = text_with_length(
            rng, tokenizer, rng.randint(12, 20) - 3, prefix="Q: " + rng.choice(QUESTION_STARTS)
        )
        row = {"prompt": question + "?\nA:"}
        for column in ("chosen", "rejected"):
            row[column] = text_with_length(
                rng, tokenizer, rng.randint(3 * completion_length // 4, completion_length) - 1
            )
        rows.append(row)
    return rows


def save_model(path: Path, tokenizer, vocab_size: int, hidden_size: int, num_layers: int, seed: int) -> int:
    """Save a random-init `Qwen2ForCausalLM` (fp32, tied embeddings like the small Qwen2 models) and the tokenizer."""
    model = tiny_qwen2(
        tokenizer,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 32),
        num_key_value_heads=max(1, hidden_size // 64),
        intermediate_size=4 * hidden_size,
        max_position_embeddings=512,
        seed=seed,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------------
# Measurement


def status_kib(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{name} is not in /proc/self/status")


def reset_peak_rss() -> None:
    # Linux >= 4.0: writing 5 resets VmHWM to the current VmRSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def cpu_jiffies() -> tuple[int, int]:
    """(busy jiffies of the whole machine, jiffies of this process, all threads)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    busy = sum(values) - values[3] - values[4]  # minus idle and iowait
    return busy, int(fields[11]) + int(fields[12])  # utime + stime


class StepTimer(TrainerCallback):
    """
    Marks taken at `on_train_begin` and every `on_step_end`: wall clock, this process's CPU time, machine CPU.

    Step `i` costs `marks[i + 1] - marks[i]`, so everything between two optimizer steps counts, including SPO's refresh
    of its KL samples at `on_step_begin`.
    """

    def __init__(self):
        self.marks: list[tuple[float, float, int, int]] = []

    @staticmethod
    def mark() -> tuple[float, float, int, int]:
        return (time.perf_counter(), time.process_time(), *cpu_jiffies())

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks = [self.mark()]

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(self.mark())


@dataclass
class Run:
    step_seconds: float  # mean wall time per step over the window
    step_cpu_seconds: float  # mean CPU time of this process (all threads) per step over the window
    other_load: float  # cores used by other processes during the window
    peak_mib: float  # VmHWM during train() minus VmRSS before the trainer was built
    train_delta_mib: float  # VmHWM during train() minus VmRSS right before train()
    refresh_share: float  # SPO: time in KL-sample refreshes (generation + reference forward) / window time
    leftover_mib: float  # VmRSS after cleanup minus VmRSS before the trainer was built


def run_trainer(kind: str, model_dir: Path, dataset, common: dict, spo: dict, warmup: int, measure: int) -> Run:
    release_memory()
    rss_before_build = status_kib("VmRSS")
    timer = StepTimer()
    refreshes: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as output_dir:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if kind == "DPO":
            trainer = DPOTrainer(
                str(model_dir),
                args=DPOConfig(output_dir=output_dir, **common),
                train_dataset=dataset,
                processing_class=tokenizer,
                callbacks=[timer],
            )
        else:
            trainer = SPOTrainer(
                str(model_dir),
                args=SPOConfig(output_dir=output_dir, **common, **spo),
                train_dataset=dataset,
                processing_class=tokenizer,
                callbacks=[timer],
            )
            refresh = trainer.kl_sampler.refresh

            def timed_refresh(step: int) -> None:
                start = time.perf_counter()
                refresh(step)
                refreshes.append((step, time.perf_counter() - start))

            trainer.kl_sampler.refresh = timed_refresh
        trainer.remove_callback(PrinterCallback)  # it prints the end-of-training log dict
        assert not trainer.args.gradient_checkpointing

        release_memory()
        rss_before_train = status_kib("VmRSS")
        reset_peak_rss()
        trainer.train()
        peak = status_kib("VmHWM")

    if len(timer.marks) != warmup + measure + 1:
        raise RuntimeError(f"{kind}: expected {warmup + measure} optimizer steps, saw {len(timer.marks) - 1}")
    (wall0, cpu0, busy0, self0), (wall1, cpu1, busy1, self1) = timer.marks[warmup], timer.marks[-1]
    wall = wall1 - wall0
    refresh_seconds = sum(seconds for step, seconds in refreshes if warmup <= step < warmup + measure)
    del trainer, tokenizer, timer
    release_memory()
    return Run(
        step_seconds=wall / measure,
        step_cpu_seconds=(cpu1 - cpu0) / measure,
        other_load=((busy1 - busy0) - (self1 - self0)) / os.sysconf("SC_CLK_TCK") / wall,
        peak_mib=(peak - rss_before_build) / 1024,
        train_delta_mib=(peak - rss_before_train) / 1024,
        refresh_share=refresh_seconds / wall,
        leftover_mib=(status_kib("VmRSS") - rss_before_build) / 1024,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["small", "wide"], choices=["small", "wide"])
    parser.add_argument("--bpe-vocab", type=int, default=512, help="size of the byte-level BPE (the small vocabulary)")
    parser.add_argument(
        "--wide-vocab", type=int, default=32000, help="embedding rows of the wide configuration (Llama-2's 32,000)"
    )
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="preference pairs per optimizer step")
    parser.add_argument(
        "--completion-length",
        type=int,
        default=48,
        help="token budget of the dataset completions (EOS included), also SPO's max_completion_length",
    )
    parser.add_argument("--generation-interval", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--measure-steps", type=int, default=16, help="a multiple of --generation-interval")
    parser.add_argument("--repeats", type=int, default=3, help="runs per trainer of the wide configuration")
    parser.add_argument(
        "--small-repeats", type=int, default=7, help="runs per trainer of the small configuration (cheap, noisier)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--busy-threshold",
        type=float,
        default=0.2,
        help="a run during which other processes used more CPU cores than this is repeated",
    )
    parser.add_argument("--max-retries", type=int, default=2, help="repeats of a run on a busy machine")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        help="call glibc's mallopt(M_MMAP_THRESHOLD, BYTES) first: every allocation of at least BYTES is mmapped and "
        "unmapped when freed, so the peak resident set follows live tensors instead of glibc's heap reuse",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    args = parser.parse_args()
    if args.measure_steps % args.generation_interval:
        parser.error("--measure-steps must be a multiple of --generation-interval")
    return args


def summarize(config: str, vocab: int, num_params: int, runs: dict[str, list[Run]], discarded: int) -> tuple[str, str]:
    """The table row and a note with every run's value. Runs `runs["DPO"][i]` and `runs["SPO"][i]` ran back to back."""

    def median(kind: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs[kind])

    def ratio(attr: str) -> float:  # median of the per-repeat ratios SPO / DPO
        return statistics.median(getattr(s, attr) / getattr(d, attr) for d, s in zip(runs["DPO"], runs["SPO"]))

    def spread(attr: str, fmt: str) -> str:
        return "; ".join(
            f"{kind} " + "/".join(format(v, fmt) for v in sorted(getattr(r, attr) for r in runs[kind]))
            for kind in ("DPO", "SPO")
        )

    dpo_t, spo_t = median("DPO", "step_seconds"), median("SPO", "step_seconds")
    dpo_p, spo_p = median("DPO", "peak_mib"), median("SPO", "peak_mib")
    dpo_d, spo_d = median("DPO", "train_delta_mib"), median("SPO", "train_delta_mib")
    row = (
        f"| {config} | {vocab:,} | {num_params / 1e6:.2f}M | {dpo_t:.3f} | {spo_t:.3f} | {ratio('step_seconds'):.2f}x "
        f"| {dpo_p:,.0f} | {spo_p:,.0f} | {ratio('peak_mib'):.2f}x | {dpo_d:,.0f} | {spo_d:,.0f} "
        f"| {ratio('train_delta_mib'):.2f}x | {median('SPO', 'refresh_share'):.1%} |"
    )
    weights = num_params * 4 / MIB
    note = (
        f"- {config}: {num_params:,} parameters, {weights:.1f} MiB in fp32. Both trainers hold the policy and a "
        f"reference copy ({2 * weights:.1f} MiB), gradients ({weights:.1f} MiB) and AdamW's two moments "
        f"({2 * weights:.1f} MiB): {5 * weights:.0f} MiB of the peak; the rest is activations, the chunked LM-head "
        f"tiles and, for SPO, generation. {len(runs['DPO'])} runs per trainer; per-repeat SPO/DPO time ratios "
        f"{'/'.join(format(s.step_seconds / d.step_seconds, '.2f') for d, s in zip(runs['DPO'], runs['SPO']))}. "
        f"All runs, sorted: s/step {spread('step_seconds', '.3f')}; CPU s/step "
        f"{spread('step_cpu_seconds', '.3f')}; peak MiB {spread('peak_mib', '.0f')}; other processes' load (cores) "
        f"{spread('other_load', '.2f')}; {discarded} run(s) discarded for a busy machine."
    )
    return row, note


def main(argv: list[str] | None = None, prog: str = "trl-spo bench step_cost") -> int:
    args = parse_args(argv, prog)
    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    malloc = "glibc defaults" + "".join(f", {k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_"))
    if args.mmap_threshold is not None:
        if not ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, args.mmap_threshold):
            raise RuntimeError("mallopt(M_MMAP_THRESHOLD) failed")
        malloc += f", mallopt(M_MMAP_THRESHOLD, {args.mmap_threshold})"
    print(f"torch threads: {torch.get_num_threads()} (of {os.cpu_count()} CPUs)", flush=True)
    started = time.perf_counter()
    load_before = os.getloadavg()

    rng = random.Random(args.seed)
    tokenizer = build_tokenizer([random_sentence(rng, rng.randint(6, 20)) for _ in range(4000)], args.bpe_vocab)
    num_rows = args.batch_size * (args.warmup_steps + args.measure_steps)  # one epoch, no row seen twice
    rows = build_rows(rng, tokenizer, num_rows, args.completion_length)
    dataset = datasets.Dataset.from_list(rows)
    prompt_lengths = [num_tokens(tokenizer, r["prompt"]) for r in rows]
    completion_lengths = [num_tokens(tokenizer, r[c]) + 1 for r in rows for c in ("chosen", "rejected")]  # + EOS
    max_length = max(prompt_lengths) + args.completion_length  # never truncates

    common = dict(
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=args.warmup_steps + args.measure_steps,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        max_length=max_length,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=args.seed,
    )
    spo = dict(
        alpha=0.01,
        beta=0.01,
        gamma=0.01,
        regularizer="global_kl",
        generation_interval=args.generation_interval,
        kl_batch_size=None,  # per_device_train_batch_size * gradient_accumulation_steps // 2
        max_completion_length=args.completion_length,
    )
    kl_batch_size = SPOConfig(output_dir=tempfile.gettempdir(), **common, **spo).resolved_kl_batch_size

    table = [
        "| config | vocab | params | DPO s/step | SPO s/step | SPO/DPO time | DPO peak MiB | SPO peak MiB "
        "| SPO/DPO peak | DPO train delta MiB | SPO train delta MiB | SPO/DPO delta | SPO generation share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        # One short untimed run of each trainer first: the process's one-time costs (lazy imports, kernel and
        # generation setup, allocator growth) would otherwise land on whichever run comes first.
        warmup_dir = Path(tmp) / "warmup"
        save_model(warmup_dir, tokenizer, len(tokenizer), args.hidden_size, args.num_layers, args.seed)
        for kind in ("DPO", "SPO"):
            run_trainer(kind, warmup_dir, dataset, {**common, "max_steps": 2}, spo, 0, 2)
        print(f"[{time.perf_counter() - started:4.0f} s] process warm-up done", flush=True)
        for config in args.configs:
            vocab = args.wide_vocab if config == "wide" else len(tokenizer)
            model_dir = Path(tmp) / config
            num_params = save_model(model_dir, tokenizer, vocab, args.hidden_size, args.num_layers, args.seed)
            runs: dict[str, list[Run]] = {"DPO": [], "SPO": []}
            discarded = 0
            repeats = args.small_repeats if config == "small" else args.repeats
            for repeat in range(repeats):
                for kind in ("DPO", "SPO") if repeat % 2 == 0 else ("SPO", "DPO"):
                    attempts = []
                    while len(attempts) <= args.max_retries:
                        run = run_trainer(kind, model_dir, dataset, common, spo, args.warmup_steps, args.measure_steps)
                        attempts.append(run)
                        busy = run.other_load > args.busy_threshold
                        print(
                            f"[{time.perf_counter() - started:4.0f} s] {config:5s} #{repeat} {kind}: "
                            f"{run.step_seconds:.3f} s/step (CPU {run.step_cpu_seconds:.3f} s), peak "
                            f"{run.peak_mib:.0f} MiB, train delta {run.train_delta_mib:.0f} MiB, leftover "
                            f"{run.leftover_mib:.0f} MiB, generation share {run.refresh_share:.1%}, other load "
                            f"{run.other_load:.2f} cores" + (" -> BUSY MACHINE" if busy else ""),
                            flush=True,
                        )
                        if not busy:
                            break
                    discarded += len(attempts) - 1
                    runs[kind].append(min(attempts, key=lambda r: r.other_load))
            row, note = summarize(config, vocab, num_params, runs, discarded)
            table.append(row)
            notes.append(note)
            del runs
            release_memory()

    mean_completion = statistics.mean(completion_lengths)
    settings = [
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; python "
        f"{platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, trl "
        f"{trl.__version__}; load average before/after {load_before[0]:.2f}/{os.getloadavg()[0]:.2f}; malloc: {malloc}",
        f"- model: Qwen2ForCausalLM, hidden {args.hidden_size}, {args.num_layers} layers, tied embeddings, fp32, random "
        f"init; tokenizer: byte-level BPE of {len(tokenizer)} tokens trained on the benchmark's text (the wide config "
        f"pads the embedding to {args.wide_vocab:,} rows)",
        f"- data: {num_rows} synthetic pairs (one epoch), prompts {min(prompt_lengths)}-{max(prompt_lengths)} tokens, "
        f"completions {min(completion_lengths)}-{max(completion_lengths)} tokens with EOS (mean {mean_completion:.1f}); "
        f"max_length {max_length} (no truncation)",
        f"- both trainers: {args.batch_size} pairs per optimizer step (no accumulation), AdamW, lr 1e-6 constant, "
        "use_cpu, fp32, no gradient checkpointing, same seed, each on a fresh model loaded from the same directory, "
        "the reference loaded from the model path (ref_model=None); DPO: beta 0.1, sigmoid loss",
        f"- SPO: alpha = beta = gamma = 0.01, regularizer global_kl, generation_interval {args.generation_interval}, "
        f"kl_batch_size {kl_batch_size} (the default, half the pairs per step), max_completion_length "
        f"{args.completion_length} = the data's completion budget (a random-init model rarely emits EOS, so its "
        f"samples run to this length: {args.completion_length} tokens against the data's mean {mean_completion:.1f})",
        f"- time: wall time per optimizer step over steps {args.warmup_steps}-"
        f"{args.warmup_steps + args.measure_steps - 1} ({args.measure_steps // args.generation_interval} refreshes of "
        f"SPO's samples) after {args.warmup_steps} warm-up steps. Each trainer runs {args.small_repeats} (small) or "
        f"{args.repeats} (wide) times, DPO and SPO back to back, alternating which goes first, after one untimed "
        "run of each. s/step and MiB: medians over the runs; ratios: medians of the per-repeat ratios SPO/DPO. SPO "
        "generation share: time in the refreshes (sampling + reference forward on the samples) over the window",
        "- peak: VmHWM during train() minus VmRSS before the trainer was built (models, optimizer state, activations, "
        "generation); train delta: VmHWM during train() minus VmRSS right before train()",
    ]
    report = "\n".join(["SPO vs DPO, cost per optimizer step on CPU:", "", *table, "", *settings, "", *notes])
    print(f"\n{report}\n\n(total {time.perf_counter() - started:.0f} s)")
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m trl_spo.benchmarks.step_cost"))
