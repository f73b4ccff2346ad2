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
"""Cost of one optimizer step of `trl_spo.SPOTrainer` against `trl.DPOTrainer`: wall time and peak memory.

Both trainers run in this one process, on the same model, data, batch and seed, alternating, for each configuration:
"small" (a 512-token byte-level BPE trained on the benchmark's own text), "small4k", "wide" and "wide128k" (the same
tokenizer with the embedding padded to 4,096, 32,000 and 128,256 rows, as many released checkpoints are), and "model"
(a real checkpoint given by `--model`, with its own tokenizer). Each is measured against two baselines: DPO as users
run it, and DPO with `precompute_ref_log_probs=True` (its reference pass moved before training). Nothing is
downloaded. From the repository root:

    python -m benchmarks.step_cost                                # the tiny configurations, both baselines
    python -m benchmarks.step_cost --configs model --model PATH   # a real checkpoint (e.g. SmolLM2, see smollm2.py)
    python -m benchmarks.step_cost --update_doc docs/benchmarks.md  # also rewrite the docs' table
    python -m benchmarks.step_cost --profile                      # also where each step's time goes, per part
    python -m benchmarks.step_cost --preset gpu                   # bf16, a ~0.5B Qwen2, 1,024-token sequences, CUDA
    python recipes/gpu/gpu_check.py --out DIR --require-cuda      # the same, checked first, with JSON (recipes/gpu/)

What is measured (docs/benchmarks.md discusses the results):

* s/step: wall time between consecutive `on_step_end` callbacks, i.e. everything a step costs (collation, the refresh
  of SPO's KL samples at `on_step_begin`, forward, backward, optimizer step), averaged over the `--measure-steps`
  steps after `--warmup-steps` steps. `--measure-steps` is a multiple of `generation_interval`, so the window holds
  exactly one refresh of SPO's samples per interval: generation is amortised as in a real run. Each trainer runs
  `--repeats` times, SPO and its baseline back to back, alternating which one goes first; the ratio is the median of
  the per-repeat ratios SPO/baseline: two runs back to back see the same machine, so slow drift cancels out.
* peak RSS: the process's resident-set high-water mark over the timed window (`VmHWM`, reset when the warm-up steps
  end) minus the resident set before the trainer was built, i.e. all the trainer holds at its steady-state peak
  (models, optimizer state, activations, generation). Between runs the trainer is
  deleted, then `gc.collect()` and glibc's `malloc_trim(0)` give freed memory back. This is what the machine holds
  under glibc's allocator, which keeps some freed blocks: `--mmap-threshold` (default 65,536 bytes) makes glibc map
  and unmap every block above that size, so the RSS peak follows the live tensors; `--mmap-threshold 0` keeps glibc's
  defaults, and the report says which was used.
* tensor peak: the torch allocator's own peak of live tensor memory (`torch.cuda.max_memory_allocated` on a GPU; on a
  CPU, which keeps no such statistic, the parameters, gradients and optimizer state at the window's start plus the
  peak of the allocations the profiler records over one refresh step and one ordinary step).
* generation share: SPO's time in refreshing its KL samples (sampling, then the reference forward on them).
* other load: CPU time that other processes used during the window, in cores. A run with other load above
  `--busy-threshold` is discarded and repeated (at most `--max-retries` times).
"""

import argparse
import ctypes
import gc
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path


# Read by huggingface_hub, transformers and tokenizers when first imported: set before importing them. Every model
# here is built locally, so the benchmark runs offline unless the caller has said otherwise.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    PrinterCallback,
    TrainerCallback,
)
from trl import DPOConfig, DPOTrainer  # noqa: E402

from trl_spo import SPOConfig, SPOTrainer  # noqa: E402
from trl_spo.tiny_models import tiny_qwen2  # noqa: E402

from .reporting import update_doc  # noqa: E402
from .synthetic_pairs import build_rows, build_tokenizer, num_tokens, random_sentence  # noqa: E402


# Embedding rows of the tiny configurations; "small" is the tokenizer's own size.
VOCAB_SIZES = {"small4k": 4096, "wide": 32000, "wide128k": 128256}
CONFIGS = ("small", "small4k", "wide", "wide128k", "model")
BASELINES = ("dpo", "dpo_precomputed")
MIB = 2**20
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


# ----------------------------------------------------------------------------------------------------------------------
# Assets: the model (the data come from synthetic_pairs.py)


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


def _tensor_bytes(*modules) -> int:
    storages = {}
    for module in modules:
        if module is None:
            continue
        for tensor in [*module.parameters(), *module.buffers()]:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def recorded_cpu_peak_bytes(profiler: torch.profiler.profile) -> int:
    """
    Highest running sum of the CPU allocations and frees a `profile_memory=True` profiler recorded, in time order.

    It reads the raw allocation records (torch's own `kineto_results`, the only place that keeps each one with its
    time) rather than the per-op figures of `profiler.events()`: those are net per op, so a temporary that an op
    allocates and frees inside itself (the tiles of a fused or chunked LM head, the log-softmax inside
    `cross_entropy`) cancels out there, and a composite op's frees are dated at its start, before its children's
    allocations. On `cross_entropy(x @ x)` with its backward, per-op figures give 32 MB where the records give 48.
    """
    records = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    )
    live = peak = 0
    for _, change in records:
        live += change
        peak = max(peak, live)
    return peak


class TensorPeak(TrainerCallback):
    """
    The torch allocator's peak of live tensor memory over the first `num_steps` optimizer steps (the warm-up, which
    the timing window leaves out, so profiling costs no measured time). On a GPU: `torch.cuda.max_memory_allocated`.
    On a CPU: the parameters and buffers alive when the first step begins, plus the highest running sum of the
    allocations and frees the profiler records (`profile_memory`, [`recorded_cpu_peak_bytes`]); the optimizer's state
    and the gradients are created inside the window, so they are counted. Set `trainer` before training.
    """

    def __init__(self, num_steps: int):
        self.num_steps = num_steps
        self.trainer = None
        self.peak_bytes: int | None = None
        self._profiler = None
        self._static = 0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step != 0:
            return
        if torch.cuda.is_available() and not args.use_cpu:
            torch.cuda.reset_peak_memory_stats()
            return
        self._static = _tensor_bytes(self.trainer.model, self.trainer.ref_model)
        self._profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
        self._profiler.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step != self.num_steps:
            return
        if self._profiler is None:
            self.peak_bytes = torch.cuda.max_memory_allocated()
            return
        self._profiler.__exit__(None, None, None)
        self.peak_bytes = self._static + recorded_cpu_peak_bytes(self._profiler)
        # The profiler's own records must not count in the resident-set peak of the timed window that starts now.
        self._profiler = None
        release_memory()
        reset_peak_rss()


@dataclass
class Run:
    step_seconds: float  # mean wall time per step over the window
    step_cpu_seconds: float  # mean CPU time of this process (all threads) per step over the window
    other_load: float  # cores used by other processes during the window
    peak_mib: float  # VmHWM over the timed window minus VmRSS before the trainer was built
    tensor_peak_mib: float | None  # the torch allocator's peak of live tensors (see TensorPeak)
    refresh_share: float  # SPO: time in KL-sample refreshes (generation + reference forward) / window time


TRAINERS = {
    "DPO": (DPOTrainer, DPOConfig, {}),
    "DPO-precomputed": (DPOTrainer, DPOConfig, {"precompute_ref_log_probs": True}),
    "SPO": (SPOTrainer, SPOConfig, {}),
}


def run_trainer(kind: str, model_dir: Path, dataset, common: dict, spo: dict, warmup: int, measure: int) -> Run:
    release_memory()
    rss_before_build = status_kib("VmRSS")
    timer, tensor_peak = StepTimer(), TensorPeak(num_steps=warmup)
    refreshes: list[tuple[int, float]] = []
    trainer_class, config_class, extra = TRAINERS[kind]
    with tempfile.TemporaryDirectory() as output_dir:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        trainer = trainer_class(
            str(model_dir),
            args=config_class(output_dir=output_dir, **common, **extra, **(spo if kind == "SPO" else {})),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[tensor_peak, timer],  # the profiler's bookkeeping ends before the timer's first mark
        )
        tensor_peak.trainer = trainer
        if kind == "SPO":
            refresh = trainer.kl_sampler.refresh

            def timed_refresh(step: int) -> None:
                start = time.perf_counter()
                refresh(step)
                refreshes.append((step, time.perf_counter() - start))

            trainer.kl_sampler.refresh = timed_refresh
        trainer.remove_callback(PrinterCallback)  # it prints the end-of-training log dict
        assert not trainer.args.gradient_checkpointing

        release_memory()
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
        tensor_peak_mib=None if tensor_peak.peak_bytes is None else tensor_peak.peak_bytes / MIB,
        refresh_share=refresh_seconds / wall,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Report


# Targets of the issue that asked for this benchmark: SPO/baseline time and peak memory per configuration.
TIME_TARGETS = {"small": 1.05, "small4k": 1.05, "wide": 1.00, "wide128k": 1.00, "model": 1.05}
PRECOMPUTED_TIME_TARGET = 1.40
MEMORY_TARGET = 1.05


def _median_ratio(spo: list[Run], baseline: list[Run], attr: str) -> float | None:
    """Median of the per-repeat ratios SPO / baseline (runs `i` ran back to back)."""
    ratios = [getattr(s, attr) / getattr(b, attr) for s, b in zip(spo, baseline, strict=False) if getattr(b, attr)]
    return statistics.median(ratios) if ratios else None


def summarize_config(config: str, vocab: int, num_params: int, runs: dict[str, list[Run]], baselines) -> list[str]:
    """One table row per baseline."""
    rows = []
    for baseline in baselines:
        kind = "DPO" if baseline == "dpo" else "DPO-precomputed"

        def median(runs_of, attr):
            values = [getattr(r, attr) for r in runs_of if getattr(r, attr) is not None]
            return statistics.median(values) if values else None

        time_ratio = _median_ratio(runs["SPO"], runs[kind], "step_seconds")
        rss_ratio = _median_ratio(runs["SPO"], runs[kind], "peak_mib")
        tensor_ratio = _median_ratio(runs["SPO"], runs[kind], "tensor_peak_mib")
        time_target = PRECOMPUTED_TIME_TARGET if baseline == "dpo_precomputed" else TIME_TARGETS[config]
        met = time_ratio <= time_target and (tensor_ratio or rss_ratio) <= MEMORY_TARGET
        rows.append(
            f"| {config} | {vocab:,} | {num_params / 1e6:.2f}M | {kind} | {median(runs[kind], 'step_seconds'):.3f} | "
            f"{median(runs['SPO'], 'step_seconds'):.3f} | **{time_ratio:.2f}x** (<= {time_target:.2f}) | "
            f"{median(runs[kind], 'peak_mib'):,.0f} | {median(runs['SPO'], 'peak_mib'):,.0f} | {rss_ratio:.2f}x | "
            f"{_fmt_mib(median(runs[kind], 'tensor_peak_mib'))} | {_fmt_mib(median(runs['SPO'], 'tensor_peak_mib'))} | "
            f"{'—' if tensor_ratio is None else f'{tensor_ratio:.2f}x'} | "
            f"{median(runs['SPO'], 'refresh_share'):.1%} | {'yes' if met else 'no'} |"
        )
    return rows


def _fmt_mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


TABLE_HEADER = [
    "| config | vocab | params | baseline | baseline s/step | SPO s/step | SPO/baseline time (target) | baseline "
    "peak RSS MiB | SPO peak RSS MiB | RSS ratio | baseline tensor peak MiB | SPO tensor peak MiB | tensor ratio | SPO "
    "generation share | targets met |",
    "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
]


# ----------------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--configs", nargs="+", default=["small", "small4k", "wide", "wide128k"], choices=CONFIGS)
    parser.add_argument("--model", type=Path, help="a real causal-LM checkpoint (directory), for `--configs model`")
    parser.add_argument("--baseline", nargs="+", default=list(BASELINES), choices=BASELINES)
    parser.add_argument("--preset", choices=["cpu", "gpu"], default="cpu", help="gpu: bf16, CUDA, a ~0.5B Qwen2")
    parser.add_argument("--tiny", action="store_true", help="with --preset gpu: tiny sizes (the test suite's check)")
    parser.add_argument(
        "--vllm", action="store_true", help="with --preset gpu: also a vLLM colocate refresh smoke run"
    )
    parser.add_argument("--bpe-vocab", type=int, default=512, help="size of the byte-level BPE (the small vocabulary)")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="preference pairs per optimizer step")
    parser.add_argument("--prompt-length", type=int, default=20, help="token budget of the prompts")
    parser.add_argument(
        "--completion-length",
        type=int,
        default=48,
        help="token budget of the dataset completions (EOS included), also SPO's max_completion_length",
    )
    parser.add_argument("--generation-interval", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--measure-steps", type=int, default=16, help="a multiple of --generation-interval")
    parser.add_argument("--repeats", type=int, default=3, help="runs per trainer of a tiny configuration")
    parser.add_argument("--model-repeats", type=int, default=1, help="runs per trainer of --configs model")
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
        default=65536,
        help="call glibc's mallopt(M_MMAP_THRESHOLD, BYTES) first: every allocation of at least BYTES is mmapped and "
        "unmapped when freed, so the peak resident set follows live tensors instead of glibc's heap reuse; 0 keeps "
        "glibc's defaults",
    )
    parser.add_argument("--profile", action="store_true", help="also profile one step of each trainer, per part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--json", type=Path, help="with --preset gpu: also write every figure to this JSON file")
    parser.add_argument("--update_doc", type=Path, help="Markdown file whose marked block receives the report")
    parser.add_argument("--doc_block", default="step-cost", help="the block's name: <!-- NAME:begin --> ... end")
    args = parser.parse_args(argv)
    if args.measure_steps % args.generation_interval:
        parser.error("--measure-steps must be a multiple of --generation-interval")
    if "model" in args.configs and args.model is None:
        parser.error("--configs model needs --model PATH (e.g. the SmolLM2 checkpoint of benchmarks.smollm2)")
    return args


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks.step_cost") -> int:
    args = parse_args(argv, prog)
    command = shlex.join(prog.split() + list(argv if argv is not None else sys.argv[1:]))
    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    if args.preset == "gpu":
        from .step_cost_gpu import run_gpu_preset

        report = run_gpu_preset(args, command)
        return _finish(args, report)
    malloc = "glibc defaults" + "".join(f", {k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_"))
    if args.mmap_threshold:
        if not ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, args.mmap_threshold):
            raise RuntimeError("mallopt(M_MMAP_THRESHOLD) failed")
        malloc += f", mallopt(M_MMAP_THRESHOLD, {args.mmap_threshold})"
    print(f"torch threads: {torch.get_num_threads()} (of {os.cpu_count()} CPUs)", flush=True)
    started = time.perf_counter()
    load_before = os.getloadavg()

    rng = random.Random(args.seed)
    bpe = build_tokenizer([random_sentence(rng, rng.randint(6, 20)) for _ in range(4000)], args.bpe_vocab)
    num_rows = args.batch_size * (args.warmup_steps + args.measure_steps)  # one epoch, no row seen twice
    kinds = ["DPO" if b == "dpo" else "DPO-precomputed" for b in args.baseline]

    table, notes, data_notes = list(TABLE_HEADER), [], []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            if config == "model":
                model_dir = args.model
                tokenizer = AutoTokenizer.from_pretrained(model_dir)
                config_json = transformers.AutoConfig.from_pretrained(model_dir)
                vocab = config_json.get_text_config().vocab_size
                with torch.device("meta"):
                    num_params = sum(
                        p.numel() for p in transformers.AutoModelForCausalLM.from_config(config_json).parameters()
                    )
            else:
                tokenizer = bpe
                vocab = VOCAB_SIZES.get(config, len(bpe))
                model_dir = Path(tmp) / config
                num_params = save_model(model_dir, bpe, vocab, args.hidden_size, args.num_layers, args.seed)
            rows = build_rows(rng, tokenizer, num_rows, args.completion_length, args.prompt_length)
            dataset = datasets.Dataset.from_list(rows)
            common, spo, max_length = _trainer_settings(args, tokenizer, rows)
            # One short untimed run of each trainer first: one-time costs (lazy imports, kernel and generation setup,
            # allocator growth) would otherwise land on whichever run comes first.
            for kind in ("SPO", *kinds):
                run_trainer(kind, model_dir, dataset, {**common, "max_steps": 2}, spo, 0, 2)
            print(f"[{time.perf_counter() - started:4.0f} s] {config}: warm-up done", flush=True)
            runs: dict[str, list[Run]] = {kind: [] for kind in ("SPO", *kinds)}
            discarded = 0
            repeats = args.model_repeats if config == "model" else args.repeats
            for repeat in range(repeats):
                order = ["SPO", *kinds] if repeat % 2 == 0 else [*kinds, "SPO"]
                for kind in order:
                    attempts = []
                    while len(attempts) <= args.max_retries:
                        run = run_trainer(kind, model_dir, dataset, common, spo, args.warmup_steps, args.measure_steps)
                        attempts.append(run)
                        busy = run.other_load > args.busy_threshold
                        print(
                            f"[{time.perf_counter() - started:4.0f} s] {config:8s} #{repeat} {kind:15s}: "
                            f"{run.step_seconds:.3f} s/step (CPU {run.step_cpu_seconds:.3f} s), peak RSS "
                            f"{run.peak_mib:.0f} MiB, tensor peak {_fmt_mib(run.tensor_peak_mib)} MiB, generation "
                            f"share {run.refresh_share:.1%}, other load {run.other_load:.2f} cores"
                            + (" -> BUSY MACHINE" if busy else ""),
                            flush=True,
                        )
                        if not busy:
                            break
                    discarded += len(attempts) - 1
                    runs[kind].append(min(attempts, key=lambda r: r.other_load))
            table += summarize_config(config, vocab, num_params, runs, args.baseline)
            ratios = "/".join(
                f"{s.step_seconds / d.step_seconds:.2f}" for s, d in zip(runs["SPO"], runs[kinds[0]], strict=False)
            )
            notes.append(
                f"- {config}: {num_params:,} parameters; {repeats} run(s) per trainer, SPO/{kinds[0]} time per repeat "
                f"{ratios}; s/step SPO {'/'.join(f'{r.step_seconds:.3f}' for r in runs['SPO'])}, "
                + "; ".join(f"{k} {'/'.join(f'{r.step_seconds:.3f}' for r in runs[k])}" for k in kinds)
                + f"; {discarded} run(s) discarded for a busy machine."
            )
            prompt_lengths = [num_tokens(tokenizer, r["prompt"]) for r in rows]
            completion_lengths = [num_tokens(tokenizer, r[c]) + 1 for r in rows for c in ("chosen", "rejected")]
            data_notes.append(
                f"- {config} data: {num_rows} synthetic pairs (one epoch), prompts {min(prompt_lengths)}-"
                f"{max(prompt_lengths)} tokens, completions {min(completion_lengths)}-{max(completion_lengths)} "
                f"tokens with EOS (mean {statistics.mean(completion_lengths):.1f}); max_length {max_length}"
            )
            if args.profile:
                notes.append(profile_step_parts(config, model_dir, dataset, common, spo, kinds))
            del runs
            release_memory()

    settings = [
        f"- machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}; python {platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}; load average before/after {load_before[0]:.2f}/"
        f"{os.getloadavg()[0]:.2f}; malloc: {malloc}",
        f"- tiny models: Qwen2ForCausalLM, hidden {args.hidden_size}, {args.num_layers} layers, tied embeddings, fp32, "
        f"random init; tokenizer: byte-level BPE of {len(bpe)} tokens trained on the benchmark's text (small4k, wide "
        "and wide128k pad the embedding)" + (f"; model: {args.model}" if args.model else ""),
        *data_notes,
        f"- both trainers: {args.batch_size} pairs per optimizer step (no accumulation), AdamW, lr 1e-6 constant, "
        "use_cpu, fp32, no gradient checkpointing, same seed, each on a fresh model loaded from the same directory, "
        "the reference loaded from the model path (ref_model=None); DPO: beta 0.1, sigmoid loss; DPO-precomputed: the "
        "same with precompute_ref_log_probs=True (its reference pass runs before training, outside the timed steps)",
        f"- SPO: alpha = beta = gamma = 0.01, regularizer global_kl, generation_interval {args.generation_interval}, "
        f"kl_batch_size the default (half the pairs per step), max_completion_length {args.completion_length} = the "
        "data's completion budget (a random-init model rarely emits EOS, so its samples run to this length)",
        f"- time: wall time per optimizer step over steps {args.warmup_steps}-"
        f"{args.warmup_steps + args.measure_steps - 1} ({args.measure_steps // args.generation_interval} refreshes of "
        f"SPO's samples) after {args.warmup_steps} warm-up steps, SPO and each baseline back to back, alternating "
        "which goes first, after one untimed run of each. s/step and MiB: medians over the runs; ratios: medians of "
        "the per-repeat ratios",
        "- peak RSS: VmHWM over the timed window minus VmRSS before the trainer was built; tensor peak: the torch allocator's "
        "live tensors at their peak over the warm-up steps (a refresh step and an ordinary one), see the module's "
        "docstring",
    ]
    report = "\n".join(
        [
            f"SPO vs DPO, cost per optimizer step on CPU (`{command}`, {time.perf_counter() - started:.0f} s):",
            "",
            *table,
            "",
            *settings,
            "",
            *notes,
        ]
    )
    return _finish(args, report)


def _trainer_settings(args, tokenizer, rows: list[dict]) -> tuple[dict, dict, int]:
    prompt_lengths = [num_tokens(tokenizer, r["prompt"]) for r in rows]
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
    return common, spo, max_length


def _finish(args, report: str) -> int:
    print(f"\n{report}\n")
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")
    if args.update_doc:
        update_doc(args.update_doc, report + "\n", name=args.doc_block)
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# Where a step's time goes


class StepParts(TrainerCallback):
    """Wall time of a step's parts: SPO's refresh, forward + backward, and the optimizer step."""

    def __init__(self):
        self.parts: dict[str, float] = {}
        self._marks: dict[str, float] = {}

    def _add(self, name: str, seconds: float) -> None:
        self.parts[name] = self.parts.get(name, 0.0) + seconds

    def on_step_begin(self, args, state, control, **kwargs):
        self._marks["begin"] = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._marks["optimizer"] = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self._add("step", now - self._marks["begin"])
        self._add("optimizer step", now - self._marks["optimizer"])


def profile_step_parts(config: str, model_dir: Path, dataset, common: dict, spo: dict, kinds: list[str]) -> str:
    """
    One profiled run of `generation_interval` steps per trainer (one refresh for SPO): per part, the mean seconds per
    step, and the number of matrix multiplications and their time, from `torch.profiler`.
    """
    steps = spo["generation_interval"]
    lines = [f"- {config}, where a step's time goes (mean over {steps} steps, one SPO refresh among them):"]
    for kind in ("SPO", *kinds):
        trainer_class, config_class, extra = TRAINERS[kind]
        parts = StepParts()
        with tempfile.TemporaryDirectory() as output_dir:
            trainer = trainer_class(
                str(model_dir),
                args=config_class(
                    output_dir=output_dir,
                    **{**common, "max_steps": steps},
                    **extra,
                    **(spo if kind == "SPO" else {}),
                ),
                train_dataset=dataset,
                processing_class=AutoTokenizer.from_pretrained(model_dir),
                callbacks=[parts],
            )
            refresh_seconds = [0.0]
            if kind == "SPO":
                refresh = trainer.kl_sampler.refresh

                def timed_refresh(step: int, refresh=refresh, total=refresh_seconds) -> None:
                    start = time.perf_counter()
                    refresh(step)
                    total[0] += time.perf_counter() - start

                trainer.kl_sampler.refresh = timed_refresh
            trainer.remove_callback(PrinterCallback)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
                trainer.train()
        matmuls = [e for e in profiler.key_averages() if e.key in ("aten::mm", "aten::addmm", "aten::bmm")]
        mm_calls = sum(e.count for e in matmuls)
        mm_seconds = sum(e.self_cpu_time_total for e in matmuls) / 1e6
        step = parts.parts["step"] / steps
        refresh = refresh_seconds[0] / steps
        optimizer = parts.parts["optimizer step"] / steps
        lines.append(
            f"  - {kind}: {step:.3f} s/step = refresh {refresh:.3f} + forward and backward "
            f"{step - refresh - optimizer:.3f} + optimizer {optimizer:.3f}; {mm_calls / steps:.0f} matmuls per step "
            f"({mm_seconds / steps:.3f} s)"
        )
        del trainer
        release_memory()
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
