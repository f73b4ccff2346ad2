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
The GPU variant of the step-cost benchmark (`trl-spo bench step_cost --preset gpu [--vllm]`): SPO against DPO in bf16
on a random Qwen2 of Qwen2-0.5B's shape (~0.5B parameters, 151,936-token vocabulary), with 1,024-token sequences, per
step and in peak CUDA memory; `--vllm` adds a smoke run of the KL refresh with vLLM in colocate mode. `--tiny` runs the
same code at a tiny size, on the CPU when there is no GPU: that is how the test suite keeps it from rotting.
"""

import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
from trl import DPOConfig, DPOTrainer

from trl_spo import SPOConfig, SPOTrainer
from trl_spo.tiny_models import tiny_qwen2

from .synthetic_pairs import build_tokenizer, random_sentence


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


@dataclass
class GPURun:
    step_seconds: float
    peak_memory_mib: float | None  # torch.cuda.max_memory_allocated over the run; None on a CPU
    refresh_share: float
    last_kl: float | None


class CudaStepTimer(TrainerCallback):
    """Wall time of each optimizer step, the device synchronised at every mark, and the allocator's peak."""

    def __init__(self, on_cuda: bool):
        self.on_cuda = on_cuda
        self.marks: list[float] = []
        self.peak_bytes: int | None = None

    def _now(self) -> float:
        if self.on_cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.on_cuda:
            torch.cuda.reset_peak_memory_stats()
        self.marks = [self._now()]

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(self._now())

    def on_train_end(self, args, state, control, **kwargs):
        if self.on_cuda:
            self.peak_bytes = torch.cuda.max_memory_allocated()


def _tokenizer_and_rows(model_dir: Path, vocab_size: int, prompt_length: int, completion_length: int, num_rows: int):
    """A BPE-free tokenizer (the tiny benchmark's, padded) and rows of exact token lengths, built from token ids."""
    rng = random.Random(0)
    tokenizer = build_tokenizer([random_sentence(rng, rng.randint(6, 20)) for _ in range(2000)], 512)
    words = [tokenizer.decode([i]) for i in range(2, len(tokenizer))]

    def text(num_tokens: int) -> str:
        ids = tokenizer("".join(rng.choice(words) for _ in range(num_tokens)), add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[:num_tokens])

    rows = [
        {"prompt": text(prompt_length), "chosen": text(completion_length - 1), "rejected": text(completion_length - 1)}
        for _ in range(num_rows)
    ]
    return tokenizer, rows


def _run(kind: str, model_dir: Path, dataset, common: dict, spo: dict, warmup: int, on_cuda: bool) -> GPURun:
    timer = CudaStepTimer(on_cuda)
    refreshes: list[float] = []
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
            refresh = trainer.kl_sampler.refresh

            def timed_refresh(step: int) -> None:
                start = time.perf_counter()
                refresh(step)
                if on_cuda:
                    torch.cuda.synchronize()
                refreshes.append(time.perf_counter() - start)

            trainer.kl_sampler.refresh = timed_refresh
        else:
            trainer = DPOTrainer(
                str(model_dir),
                args=DPOConfig(output_dir=output_dir, **common),
                train_dataset=dataset,
                processing_class=tokenizer,
                callbacks=[timer],
            )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        kl = [e["kl/global"] for e in trainer.state.log_history if "kl/global" in e]
    steps = [b - a for a, b in zip(timer.marks[warmup:], timer.marks[warmup + 1 :], strict=False)]
    del trainer
    if on_cuda:
        torch.cuda.empty_cache()
    return GPURun(
        step_seconds=statistics.mean(steps),
        peak_memory_mib=None if timer.peak_bytes is None else timer.peak_bytes / 2**20,
        refresh_share=sum(refreshes[1:]) / sum(steps) if kind == "SPO" else 0.0,
        last_kl=kl[-1] if kl else None,
    )


def run_gpu_preset(args, command: str) -> str:
    """SPO vs DPO per step and in peak memory at the GPU preset's size; the report's Markdown."""
    on_cuda = torch.cuda.is_available()
    shape = TINY_SHAPE if args.tiny else MODEL_SHAPE
    prompt_length, completion_length = (16, 16) if args.tiny else (512, 512)
    batch_size = 2 if args.tiny else args.batch_size
    steps = args.warmup_steps + args.measure_steps
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        tokenizer, rows = _tokenizer_and_rows(model_dir, shape["vocab_size"], prompt_length, completion_length, 64)
        model = tiny_qwen2(
            tokenizer,
            vocab_size=shape["vocab_size"],
            hidden_size=shape["hidden_size"],
            num_hidden_layers=shape["num_hidden_layers"],
            num_attention_heads=shape["num_attention_heads"],
            num_key_value_heads=shape["num_key_value_heads"],
            intermediate_size=shape["intermediate_size"],
            max_position_embeddings=shape["max_position_embeddings"],
            seed=args.seed,
        )
        num_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        del model
        dataset = datasets.Dataset.from_list(rows * (1 + batch_size * steps // len(rows)))
        common = dict(
            per_device_train_batch_size=batch_size,
            max_steps=steps,
            learning_rate=1e-6,
            lr_scheduler_type="constant",
            max_length=prompt_length + completion_length + 8,
            use_cpu=not on_cuda,
            bf16=on_cuda,
            gradient_checkpointing=False,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
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
        runs = {
            kind: _run(kind, model_dir, dataset, common, spo, args.warmup_steps, on_cuda) for kind in ("DPO", "SPO")
        }
        device = torch.cuda.get_device_name() if on_cuda else "CPU (no GPU: the code path only)"
        lines += [
            f"SPO vs DPO per step, GPU preset (`{command}`) on {device}: Qwen2 shape "
            f"{shape['num_hidden_layers']} layers x {shape['hidden_size']}, vocab {shape['vocab_size']:,}, "
            f"{num_params / 1e6:.0f}M parameters, {'bf16' if on_cuda else 'fp32'}, {prompt_length}+{completion_length}"
            f"-token sequences, {batch_size} pairs per step, {args.measure_steps} measured steps",
            "",
            "| trainer | s/step | peak memory MiB | SPO generation share |",
            "|---|---:|---:|---:|",
        ]
        for kind, run in runs.items():
            memory = "—" if run.peak_memory_mib is None else f"{run.peak_memory_mib:,.0f}"
            lines.append(f"| {kind} | {run.step_seconds:.3f} | {memory} | {run.refresh_share:.1%} |")
        ratio = runs["SPO"].step_seconds / runs["DPO"].step_seconds
        lines.append(f"\nSPO/DPO time: {ratio:.2f}x" + (f"; KL at the last step {runs['SPO'].last_kl:.4f}"))
        if args.vllm:
            vllm = {**spo, "use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3}
            smoke = _run(
                "SPO", model_dir, dataset, {**common, "max_steps": args.generation_interval + 1}, vllm, 0, on_cuda
            )
            lines.append(
                f"vLLM colocate smoke run ({args.generation_interval + 1} steps, 2 refreshes): {smoke.step_seconds:.3f} "
                f"s/step, generation share {smoke.refresh_share:.1%}, kl/global at the last step {smoke.last_kl}"
            )
    return "\n".join(lines)
