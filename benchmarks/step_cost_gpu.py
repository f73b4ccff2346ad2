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
The GPU variant of the step-cost benchmark (`python -m benchmarks.step_cost --preset gpu [--vllm]`): SPO against DPO and
against DPO with precomputed reference log-probs, in bf16 on a random Qwen2 of Qwen2-0.5B's shape (~0.5B parameters,
151,936-token vocabulary), with 1,024-token sequences: time per step, training tokens per second, peak CUDA memory and
SPO's generation share. `--json PATH` also writes every figure as JSON (rewritten after each trainer, so a run cut off
keeps what it measured); `--vllm` adds a smoke run of the KL refresh with vLLM in colocate mode. `--tiny` runs the same
code at a tiny size, on the CPU when there is no GPU: that is how the test suite keeps it from rotting.
`recipes/gpu/` runs it on a lent GPU machine in one call.
"""

import json
import platform
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import accelerate
import datasets
import torch
import transformers
import trl
from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
from trl import DPOConfig, DPOTrainer

import trl_spo
from trl_spo import SPOConfig, SPOTrainer
from trl_spo.tiny_models import tiny_qwen2

from .synthetic_pairs import build_tokenizer, num_tokens, random_sentence


# Qwen2-0.5B's shape; `--tiny` shrinks it for the CPU check.
MODEL_SHAPE = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "vocab_size": 151936,
    "max_position_embeddings": 2048,
}
TINY_SHAPE = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 1024,
    "max_position_embeddings": 256,
}
# The trainers, in the order they run; SPO first, so a run cut off by a time limit still has SPO's figures.
KINDS = ("SPO", "DPO", "DPO-precomputed")
MIB = 2**20


@dataclass
class GPURun:
    """One trainer's figures over the measured window (the steps after the warm-up)."""

    step_seconds: float  # mean wall time per optimizer step, the device synchronised at each step's end
    step_seconds_each: list[float]  # every measured step
    tokens_per_second: float  # training tokens (prompts and completions of both sides, no padding) per second
    # torch.cuda.max_memory_allocated from the trainer's construction (precomputed DPO's reference pass included) to
    # the end of training; None on a CPU
    peak_memory_mib: float | None
    generation_share: float  # SPO: time refreshing the KL samples (generation + reference forward) / window time
    # SPO: completion tokens sampled / time of the refreshes that sampled them (their reference forward included)
    generated_tokens_per_second: float | None
    refreshes: int  # SPO: refreshes of the KL samples in the window
    last_kl: float | None  # SPO: kl/global at the last logging step
    setup_seconds: float  # building the trainer: loading both models, tokenizing, precomputing reference log-probs


class CudaStepTimer(TrainerCallback):
    """Wall time of each optimizer step, the device synchronised at every mark, and the allocator's peak."""

    def __init__(self, on_cuda: bool, label: str = "", total_steps: int = 0):
        self.on_cuda = on_cuda
        self.label = label
        self.total_steps = total_steps
        self.marks: list[float] = []
        self.peak_bytes: int | None = None

    def _now(self) -> float:
        if self.on_cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks = [self._now()]

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(self._now())
        if self.label:
            print(
                f"  {self.label} step {state.global_step}/{self.total_steps}: {self.marks[-1] - self.marks[-2]:.3f} s",
                flush=True,
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.on_cuda:
            self.peak_bytes = torch.cuda.max_memory_allocated()


def _tokenizer_and_rows(vocab_size: int, prompt_length: int, completion_length: int, num_rows: int):
    """A small byte-level BPE (the tiny benchmark's; the model's vocabulary pads it) and rows of about the given
    token lengths, built from its token strings."""
    rng = random.Random(0)
    tokenizer = build_tokenizer([random_sentence(rng, rng.randint(6, 20)) for _ in range(2000)], 512)
    words = [tokenizer.decode([i]) for i in range(2, len(tokenizer))]

    def text(num_tokens: int) -> str:
        ids = tokenizer("".join(rng.choice(words) for _ in range(num_tokens)), add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[:num_tokens])

    def completion() -> str:
        # A leading space starts a new pre-token, so the completion's first token cannot merge with the prompt's last.
        return " " + text(completion_length - 2)

    rows = [{"prompt": text(prompt_length), "chosen": completion(), "rejected": completion()} for _ in range(num_rows)]
    return tokenizer, rows


def _pair_tokens(tokenizer, row: dict) -> int:
    """Tokens a pair puts through the policy: prompt + chosen + EOS and prompt + rejected + EOS, no padding."""
    prompt = num_tokens(tokenizer, row["prompt"])
    return 2 * prompt + num_tokens(tokenizer, row["chosen"]) + num_tokens(tokenizer, row["rejected"]) + 2


def _run(
    kind: str, model_dir: Path, dataset, common: dict, spo: dict, warmup: int, on_cuda: bool, tokens_per_step: float
) -> GPURun:
    steps = common["max_steps"]
    timer = CudaStepTimer(on_cuda, label=kind, total_steps=steps)
    refreshes: list[tuple[int, float, int]] = []  # (step, seconds, completion tokens sampled)
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as output_dir:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if kind == "SPO":
            trainer = SPOTrainer(
                str(model_dir),
                args=SPOConfig(output_dir=output_dir, **common, **spo),
                train_dataset=dataset,
                processing_class=tokenizer,
                callbacks=[timer],
            )
            sampler = trainer.kl_sampler
            refresh = sampler.refresh

            def timed_refresh(step: int) -> None:
                start = time.perf_counter()
                refresh(step)
                sampled = int(sampler.samples.completion_mask.sum())  # synchronises the device
                refreshes.append((step, time.perf_counter() - start, sampled))

            sampler.refresh = timed_refresh
        else:
            trainer = DPOTrainer(
                str(model_dir),
                args=DPOConfig(output_dir=output_dir, **common, precompute_ref_log_probs=kind == "DPO-precomputed"),
                train_dataset=dataset,
                processing_class=tokenizer,
                callbacks=[timer],
            )
        trainer.remove_callback(PrinterCallback)
        if on_cuda:
            torch.cuda.synchronize()
        setup_seconds = time.perf_counter() - started
        print(f"  {kind}: trainer built in {setup_seconds:.1f} s", flush=True)
        trainer.train()
        kl = [e["kl/global"] for e in trainer.state.log_history if "kl/global" in e]
    if len(timer.marks) != steps + 1:
        raise RuntimeError(f"{kind}: expected {steps} optimizer steps, saw {len(timer.marks) - 1}")
    each = [b - a for a, b in zip(timer.marks[warmup:], timer.marks[warmup + 1 :], strict=False)]
    window = sum(each)
    measured = [(seconds, sampled) for step, seconds, sampled in refreshes if warmup <= step < steps]
    refresh_seconds = sum(seconds for seconds, _ in measured)
    del trainer
    if on_cuda:
        torch.cuda.empty_cache()
    return GPURun(
        step_seconds=statistics.mean(each),
        step_seconds_each=each,
        tokens_per_second=tokens_per_step * len(each) / window,
        peak_memory_mib=None if timer.peak_bytes is None else timer.peak_bytes / MIB,
        generation_share=refresh_seconds / window,
        generated_tokens_per_second=sum(s for _, s in measured) / refresh_seconds if refresh_seconds else None,
        refreshes=len(measured),
        last_kl=kl[-1] if kl else None,
        setup_seconds=setup_seconds,
    )


def environment(on_cuda: bool) -> dict:
    """Where the figures come from: the device, and the versions of everything that computes them."""
    return {
        "device": torch.cuda.get_device_name() if on_cuda else "CPU (no GPU: the code path only)",
        "cuda": torch.version.cuda if on_cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "trl": trl.__version__,
        "trl_spo": trl_spo.__version__,
    }


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def markdown_table(result: dict) -> list[str]:
    """The report's table: one row per trainer measured so far."""
    runs = result["runs"]
    spo = runs.get("SPO")
    lines = [
        "| trainer | s/step | training tokens/s | peak CUDA memory MiB | generation share | generated tokens/s | "
        "SPO/trainer time | SPO/trainer memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, run in runs.items():
        memory = "—" if run["peak_memory_mib"] is None else f"{run['peak_memory_mib']:,.0f}"
        generated = run["generated_tokens_per_second"]
        time_ratio = memory_ratio = "—"
        if spo is not None:
            time_ratio = f"{spo['step_seconds'] / run['step_seconds']:.2f}x"
            if run["peak_memory_mib"] and spo["peak_memory_mib"]:
                memory_ratio = f"{spo['peak_memory_mib'] / run['peak_memory_mib']:.2f}x"
        lines.append(
            f"| {kind} | {run['step_seconds']:.3f} | {run['tokens_per_second']:,.0f} | {memory} | "
            f"{run['generation_share']:.1%} | {'—' if generated is None else f'{generated:,.0f}'} | {time_ratio} | "
            f"{memory_ratio} |"
        )
    return lines


def run_gpu_preset(args, command: str) -> str:
    """SPO vs both DPO baselines per step and in peak memory at the GPU preset's size; the report's Markdown."""
    started = time.perf_counter()
    on_cuda = torch.cuda.is_available()
    shape = TINY_SHAPE if args.tiny else MODEL_SHAPE
    prompt_length, completion_length = (16, 16) if args.tiny else (512, 512)
    batch_size = 2 if args.tiny else args.batch_size
    steps = args.warmup_steps + args.measure_steps
    result = {
        "benchmark": "step_cost_gpu",
        "command": command,
        "complete": False,
        "environment": environment(on_cuda),
        "model": {
            "architecture": "Qwen2ForCausalLM, random init, tied embeddings",
            **shape,
            "parameters": None,
            "weights": "float32 (master weights and AdamW state)",
            "compute": "bf16 autocast (TrainingArguments.bf16)" if on_cuda else "float32 (CPU)",
        },
        "data": {
            "prompt_tokens": prompt_length,
            "completion_tokens": completion_length,
            "pairs_per_step": batch_size,
            "training_tokens_per_step": None,
        },
        "schedule": {
            "warmup_steps": args.warmup_steps,
            "measured_steps": args.measure_steps,
            "generation_interval": args.generation_interval,
            "kl_batch_size": batch_size // 2,
        },
        "runs": {},
        "wall_seconds": None,
    }

    def save() -> None:
        result["wall_seconds"] = time.perf_counter() - started
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        num_rows = batch_size * steps  # one epoch: precomputed DPO computes exactly the reference log-probs it uses
        tokenizer, rows = _tokenizer_and_rows(shape["vocab_size"], prompt_length, completion_length, num_rows)
        tokens_per_step = statistics.mean(_pair_tokens(tokenizer, row) for row in rows) * batch_size
        result["data"]["training_tokens_per_step"] = tokens_per_step
        model = tiny_qwen2(tokenizer, **shape, seed=args.seed)
        result["model"]["parameters"] = sum(p.numel() for p in model.parameters())
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        del model
        print(
            f"[{time.perf_counter() - started:4.0f} s] model of {result['model']['parameters']:,} parameters "
            f"saved; {num_rows} pairs, {tokens_per_step:,.0f} training tokens per step",
            flush=True,
        )
        save()  # from here on the JSON exists, with the trainers measured so far
        dataset = datasets.Dataset.from_list(rows)
        common = dict(
            per_device_train_batch_size=batch_size,
            max_steps=steps,
            learning_rate=1e-6,
            lr_scheduler_type="constant",
            max_length=prompt_length + completion_length + 8,  # never truncates
            use_cpu=not on_cuda,
            bf16=on_cuda,
            gradient_checkpointing=False,
            report_to="none",
            save_strategy="no",
            logging_steps=args.generation_interval,  # a few logs, as in a real run: each log reads the metrics back
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=args.seed,
        )
        spo = dict(
            alpha=0.01,
            beta=0.01,
            gamma=0.01,
            generation_interval=args.generation_interval,
            max_completion_length=completion_length,
        )
        for kind in KINDS:
            print(f"[{time.perf_counter() - started:4.0f} s] {kind}: {steps} steps", flush=True)
            run = _run(kind, model_dir, dataset, common, spo, args.warmup_steps, on_cuda, tokens_per_step)
            result["runs"][kind] = asdict(run)
            memory = "" if run.peak_memory_mib is None else f", peak {run.peak_memory_mib:,.0f} MiB"
            print(
                f"[{time.perf_counter() - started:4.0f} s] {kind}: {run.step_seconds:.3f} s/step, "
                f"{run.tokens_per_second:,.0f} tokens/s{memory}, generation share {run.generation_share:.1%}",
                flush=True,
            )
            save()
        last_kl = result["runs"]["SPO"]["last_kl"]
        lines = [
            f"SPO vs DPO per step, GPU preset (`{command}`) on {result['environment']['device']}: Qwen2 shape "
            f"{shape['num_hidden_layers']} layers x {shape['hidden_size']}, vocab {shape['vocab_size']:,}, "
            f"{result['model']['parameters']:,} parameters, {result['model']['compute']}, "
            f"{prompt_length}+{completion_length}-token sequences, {batch_size} pairs per step, "
            f"{args.measure_steps} measured steps after {args.warmup_steps} warm-up steps",
            "",
            *markdown_table(result),
            "",
            f"- SPO: generation_interval {args.generation_interval}, kl_batch_size {batch_size // 2}, "
            f"max_completion_length {completion_length}; kl/global at the last logging step {_fmt(last_kl)}; peak "
            "CUDA memory from the trainer's construction (precomputed DPO's reference pass included) to the end; "
            "training tokens: prompt and completion of both sides of each pair, no padding",
            "- " + ", ".join(f"{k} {v}" for k, v in result["environment"].items()),
        ]
        if args.vllm:
            vllm = {**spo, "use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3}
            smoke = _run(
                "SPO",
                model_dir,
                dataset,
                {**common, "max_steps": args.generation_interval + 1},
                vllm,
                0,
                on_cuda,
                tokens_per_step,
            )
            result["vllm_smoke"] = asdict(smoke)
            lines.append(
                f"- vLLM colocate smoke run ({args.generation_interval + 1} steps, 2 refreshes): {smoke.step_seconds:.3f} "
                f"s/step, generation share {smoke.generation_share:.1%}, kl/global at the last step {_fmt(smoke.last_kl)}"
            )
    result["complete"] = True
    save()
    return "\n".join(lines)
