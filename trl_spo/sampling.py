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
Online samples for the global KL (Algorithm 1 of the paper): the sample buffer, the prompt pool, generation (with
`model.generate` or vLLM), and `OnlineKLSampler`, which owns their life cycle: the refresh every `generation_interval`
optimizer steps, the shards of gradient accumulation, the metrics and the checkpoint state.
"""

import itertools
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import torch
from transformers import GenerationConfig, LogitsProcessorList, TrainerCallback

from . import _trl_compat
from ._trl_compat import flush_left, pad, unwrap_model_for_generation
from .kl import completion_positions
from .nonfinite import NonFiniteLogitsGuard


@dataclass
class KLSamples:
    """
    Completions sampled from the policy, kept fixed between two refreshes (Eq. 13: no gradient through sampling).

    Sequences are right-padded `prompt + completion`, as in `DPOTrainer`'s batches, so the KL forward uses the same
    positions as the preference forward.

    Attributes:
        input_ids (`torch.Tensor`, shape `(K, L)`): prompt and completion token ids.
        attention_mask (`torch.Tensor`, shape `(K, L)`): 1 on real tokens.
        completion_mask (`torch.Tensor`, shape `(K, L)`): 1 on completion tokens, up to and including the first EOS.
        step (`int`): optimizer step at which they were drawn.
        reference_hidden (`torch.Tensor`, shape `(T, H)`, *optional*): the reference model's hidden states at the T
            positions that predict a completion token (`completion_positions`), the only ones Eq. 13 reads. π_ref and
            the samples are both fixed until the next refresh, so they are computed once per refresh instead of once
            per step.
        completion_positions (`torch.Tensor`, shape `(T,)`, *optional*): those positions, as flat indices into the
            `(K, L - 1)` grid of next-token predictions, row by row.
        row_offsets (`list[int]`, *optional*): `K + 1` host integers, row k's positions being
            `completion_positions[row_offsets[k]:row_offsets[k + 1]]`: a shard is cut without reading the device.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    step: int
    reference_hidden: torch.Tensor | None = field(default=None, repr=False)
    completion_positions: torch.Tensor | None = field(default=None, repr=False)
    row_offsets: list[int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.input_ids.size(0)

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)

    def shard(self, index: int, num_shards: int) -> "KLSamples":
        """
        The `index`-th of `num_shards` contiguous slices (some may be empty).

        Gradient accumulation spreads the buffer over the micro-batches of an optimizer step, so the KL is paid once
        per step; every rank slices the same way, which keeps ZeRO-3's collective forwards in step. Slice i holds rows
        `round(i * K / G)` to `round((i + 1) * K / G)`, computed exactly with host integers (half to even, as
        `torch.round` of a float32 `linspace` did for the usual G).
        """
        first, last = (round(Fraction(i * len(self), num_shards)) for i in (index, index + 1))
        rows = slice(first, last)
        shard = KLSamples(
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            completion_mask=self.completion_mask[rows],
            step=self.step,
        )
        if self.reference_hidden is not None:
            tokens = slice(self.row_offsets[first], self.row_offsets[last])
            shard.reference_hidden = self.reference_hidden[tokens]
            # Flat indices into this shard's own (rows, L - 1) grid.
            shard.completion_positions = self.completion_positions[tokens] - first * (self.input_ids.size(1) - 1)
            shard.row_offsets = [offset - self.row_offsets[first] for offset in self.row_offsets[first : last + 1]]
        return shard

    def with_reference(self, reference_hidden_states: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        """
        Compute and keep the reference's hidden states at the completion positions (once per refresh: this reads the
        device to size them, which a refresh may do).
        """
        self.completion_positions = completion_positions(self.completion_mask)
        self.row_offsets = [0, *itertools.accumulate(self.completion_mask[:, 1:].sum(1).tolist())]
        hidden = reference_hidden_states(self.input_ids, self.attention_mask)
        self.reference_hidden = hidden.flatten(0, 1).index_select(0, self.completion_positions)

    def state_dict(self) -> dict:
        """Everything needed to resume with the same samples; the reference cache is recomputed on load."""
        return {
            "input_ids": self.input_ids.cpu(),
            "attention_mask": self.attention_mask.cpu(),
            "completion_mask": self.completion_mask.cpu(),
            "step": self.step,
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device) -> "KLSamples":
        return cls(
            input_ids=state["input_ids"].to(device),
            attention_mask=state["attention_mask"].to(device),
            completion_mask=state["completion_mask"].to(device),
            step=int(state["step"]),
        )


class RecentPrompts:
    """
    The prompts of the most recent training batches, newest last.

    Algorithm 1 samples the KL completions "for recently seen prompts"; the pool holds the last `capacity` of them.
    Training batches are added as they are (`add_batch`, device tensors) and turned into token lists only when the
    prompts are read (`latest`, at a refresh, or `state_dict`, at a checkpoint), so that an ordinary training step does
    not wait for the device to copy them to the host.
    """

    def __init__(self, capacity: int):
        self._prompts: deque[tuple[int, ...]] = deque(maxlen=capacity)
        self._pending: deque[tuple[int, dict[str, torch.Tensor]]] = deque()  # (rows, batch), oldest first
        self._pending_rows = 0

    def __len__(self) -> int:
        self._read_pending()
        return len(self._prompts)

    def add(self, prompts: Sequence[Sequence[int]]) -> None:
        self._read_pending()
        self._prompts.extend(tuple(p) for p in prompts)

    def add_batch(self, batch: dict[str, torch.Tensor]) -> None:
        """Remember the prompts of a collated training batch, without reading it (see `prompts_from_batch`)."""
        rows = batch["num_responses"].size(0) if "num_responses" in batch else batch["input_ids"].size(0) // 2
        self._pending.append(
            (rows, {key: batch[key] for key in ("input_ids", "completion_mask", "response_index") if key in batch})
        )
        self._pending_rows += rows
        # Batches older than `capacity` newer prompts would be pushed out of the pool anyway.
        while self._pending_rows - self._pending[0][0] >= self._prompts.maxlen:
            self._pending_rows -= self._pending.popleft()[0]

    def _read_pending(self) -> None:
        while self._pending:
            self._pending_rows -= self._pending[0][0]
            self._prompts.extend(tuple(p) for p in prompts_from_batch(self._pending.popleft()[1]))

    def latest(self, n: int) -> list[list[int]]:
        """The `n` most recent prompts, repeated cyclically when fewer than `n` have been seen."""
        self._read_pending()
        if not self._prompts:
            raise RuntimeError(
                "No training prompt has been seen yet, so there is nothing to sample KL completions for."
            )
        recent = list(self._prompts)[-n:]
        return [list(recent[i % len(recent)]) for i in range(n)]

    def state_dict(self) -> dict:
        self._read_pending()
        return {"prompts": [list(p) for p in self._prompts], "capacity": self._prompts.maxlen}

    def load_state_dict(self, state: dict) -> None:
        self._prompts = deque((tuple(p) for p in state["prompts"]), maxlen=state["capacity"])
        self._pending.clear()
        self._pending_rows = 0


def prompts_from_batch(batch: dict[str, torch.Tensor]) -> list[list[int]]:
    """
    The prompt token ids of a preference batch, one per row.

    A `DataCollatorForPreference` batch stacks `[chosen; rejected]` rows; a `DataCollatorForNaryPreference` batch
    flattens every (row, response) pair and marks each row's first response with `response_index == 0`. Sequences are
    right-padded `prompt + completion`, so the prompt is the prefix before the first completion token.
    """
    if "response_index" in batch:
        first_responses = batch["response_index"] == 0
    else:
        first_responses = torch.arange(batch["input_ids"].size(0), device=batch["input_ids"].device)
        first_responses = first_responses < batch["input_ids"].size(0) // 2
    input_ids = batch["input_ids"][first_responses]
    prompt_lengths = batch["completion_mask"][first_responses].int().argmax(dim=1).tolist()
    return [ids[:length].tolist() for ids, length in zip(input_ids, prompt_lengths, strict=False)]


def sample_completions(
    model,
    accelerator,
    prompts: list[list[int]],
    generation_config: GenerationConfig,
    pad_token_id: int,
    eos_token_ids: Sequence[int],
    step: int,
    gather_deepspeed3_params: bool = True,
    gradient_checkpointing_kwargs: dict | None = None,
    logits_guard: NonFiniteLogitsGuard | None = None,
) -> KLSamples:
    """
    Sample one completion per prompt from the current policy.

    Generation runs under `unwrap_model_for_generation` (which gathers ZeRO-3 weights and turns gradient checkpointing
    off). The completion ends at its first EOS, which it keeps: Eq. 13 sums the KL over every position that produced a
    token of `y`, the last one included. `logits_guard` sees every step's logits and is checked once, after generation.
    """
    device = accelerator.device
    prompt_ids, prompt_mask = _left_pad(prompts, pad_token_id, device)
    with (
        unwrap_model_for_generation(
            model,
            accelerator,
            gather_deepspeed3_params=gather_deepspeed3_params,
            gradient_checkpointing_kwargs=gradient_checkpointing_kwargs,
        ) as unwrapped_model,
        torch.no_grad(),
    ):
        sequences = unwrapped_model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            generation_config=generation_config,
            logits_processor=LogitsProcessorList([logits_guard] if logits_guard is not None else []),
        )
    if logits_guard is not None:
        logits_guard.raise_if_diverged()
    completion_ids = sequences[:, prompt_ids.size(1) :]
    return _samples_from_ids(prompt_ids, prompt_mask, completion_ids, pad_token_id, eos_token_ids, step)


def sample_completions_with_vllm(
    vllm_generation,
    prompts: list[list[int]],
    pad_token_id: int,
    eos_token_ids: Sequence[int],
    step: int,
    device: torch.device,
) -> KLSamples:
    """
    Sample one completion per prompt with vLLM (TRL's `VLLMGeneration`), after pushing the current policy weights.

    The sampling parameters are the ones `VLLMGeneration` was built with (the trainer passes SPOConfig's). Untested on
    a GPU in this repository: the tests cover the calls and the tensors built from vLLM's answer, with a stand-in.
    """
    # Eq. 13 needs samples from the current pi_theta, so vLLM's copy is refreshed before every draw.
    vllm_generation.sync_weights()
    _, completions, _, _ = vllm_generation.generate(prompts, None, num_generations=1)
    prompt_ids, prompt_mask = _left_pad(prompts, pad_token_id, device)
    # An empty completion still has one position (the one that chose to stop); pad it so the tensor is not empty.
    completion_ids = pad(
        [torch.tensor(c or [pad_token_id], device=device) for c in completions], padding_value=pad_token_id
    )
    return _samples_from_ids(prompt_ids, prompt_mask, completion_ids, pad_token_id, eos_token_ids, step)


def draw_kl_samples(
    model,
    accelerator,
    prompts: list[list[int]],
    step: int,
    args,
    generation_config: GenerationConfig,
    pad_token_id: int,
    eos_token_ids: Sequence[int],
    vllm_generation=None,
    divergence_hints: str = "",
) -> KLSamples:
    """
    One completion per prompt from the current policy: with vLLM when the trainer set it up (`use_vllm`), else with
    `model.generate` under `NonFiniteLogitsGuard` (whose error carries `divergence_hints`).

    Args:
        model: the policy as the trainer holds it (possibly wrapped by DDP or DeepSpeed).
        accelerator: the trainer's `Accelerator`.
        prompts (`list[list[int]]`): prompt token ids.
        step (`int`): the optimizer step the samples are drawn at.
        args ([`SPOConfig`]): `ds3_gather_for_generation`, `gradient_checkpointing_kwargs`.
        generation_config, pad_token_id, eos_token_ids: see `kl_generation_config` and `eos_token_ids`.
        vllm_generation (*optional*): TRL's `VLLMGeneration`, from `build_vllm_generation`.
    """
    if vllm_generation is not None:
        return sample_completions_with_vllm(
            vllm_generation, prompts, pad_token_id, eos_token_ids, step=step, device=accelerator.device
        )
    return sample_completions(
        model,
        accelerator,
        prompts,
        generation_config,
        pad_token_id=pad_token_id,
        eos_token_ids=eos_token_ids,
        step=step,
        gather_deepspeed3_params=args.ds3_gather_for_generation,
        gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
        logits_guard=NonFiniteLogitsGuard(step + 1, divergence_hints),
    )


def eos_token_ids(tokenizer, model) -> list[int]:
    """The tokens that end a sampled completion: the tokenizer's EOS and the model's generation-config EOS ids."""
    model_eos = model.generation_config.eos_token_id
    ids = {tokenizer.eos_token_id, *(model_eos if isinstance(model_eos, list) else [model_eos])}
    return sorted(i for i in ids if i is not None)


def kl_generation_config(tokenizer, eos_ids: Sequence[int], args) -> GenerationConfig:
    """
    The `GenerationConfig` of the KL samples, from SPOConfig's sampling fields (as GRPO builds its own).

    Built from scratch rather than from the model's generation config, so an instruct model's defaults (a greedy
    `do_sample=False`, a `top_p`) cannot turn Eq. 13's samples from pi_theta into something else.
    """
    settings = {
        "max_new_tokens": args.max_completion_length,
        "do_sample": True,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": list(eos_ids),
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "min_p": args.min_p,
        "repetition_penalty": args.repetition_penalty,
    }
    return GenerationConfig(**(settings | (args.generation_kwargs or {})), disable_compile=True)


def build_vllm_generation(model, accelerator, processing_class, args, max_num_seqs: int):
    """TRL's `VLLMGeneration` configured from SPOConfig's `vllm_*` and sampling fields (as GRPO configures it)."""
    if not _trl_compat.is_vllm_available():
        raise ImportError("`use_vllm=True` needs vLLM: `pip install vllm` (on a machine with a supported GPU).")
    return _trl_compat.VLLMGeneration(
        model=model,
        accelerator=accelerator,
        processing_class=processing_class,
        mode=args.vllm_mode,
        server_base_url=args.vllm_server_base_url,
        server_host=args.vllm_server_host,
        server_port=args.vllm_server_port,
        group_port=args.vllm_group_port,
        server_timeout=args.vllm_server_timeout,
        tensor_parallel_size=args.vllm_tensor_parallel_size,
        gpu_memory_utilization=args.vllm_gpu_memory_utilization,
        max_model_length=args.vllm_max_model_length,
        max_num_seqs=max_num_seqs * args.vllm_tensor_parallel_size,
        enable_sleep_mode=args.vllm_enable_sleep_mode,
        model_impl=args.vllm_model_impl,
        trust_remote_code=args.trust_remote_code,
        repetition_penalty=args.repetition_penalty,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=0.0 if args.min_p is None else args.min_p,
        max_completion_length=args.max_completion_length,
        logprobs=None,  # Eq. 13 recomputes the policy's distributions; vLLM's log-probs are not needed
        generation_kwargs=args.generation_kwargs,
    )


def _left_pad(prompts: list[list[int]], pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and their attention mask, the layout `generate` expects."""
    ids = pad([torch.tensor(p, device=device) for p in prompts], padding_value=pad_token_id, padding_side="left")
    ones = [torch.ones(len(p), dtype=torch.long, device=device) for p in prompts]
    return ids, pad(ones, padding_value=0, padding_side="left")


def _samples_from_ids(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    pad_token_id: int,
    eos_token_ids: Sequence[int],
    step: int,
) -> KLSamples:
    device = prompt_ids.device
    is_eos = torch.isin(completion_ids, torch.tensor(list(eos_token_ids), device=device))
    first_eos = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), completion_ids.size(1))
    positions = torch.arange(completion_ids.size(1), device=device).expand_as(completion_ids)
    completion_mask = (positions <= first_eos.unsqueeze(1)).long()

    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    full_completion_mask = torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1)
    # Right-pad like the preference batches, so positions are 0..n-1 without passing position ids.
    attention_mask, input_ids, full_completion_mask = flush_left(attention_mask, input_ids, full_completion_mask)
    input_ids = input_ids.masked_fill(attention_mask == 0, pad_token_id)
    return KLSamples(
        input_ids=input_ids, attention_mask=attention_mask, completion_mask=full_completion_mask, step=step
    )


class OnlineKLSampler(TrainerCallback):
    """
    The online samples of the global KL (Algorithm 1): prompt pool, sample buffer, refresh schedule, the shards of the
    micro-batches, their metrics and their checkpoint state.

    The trainer feeds it every training batch (`add_batch`), adds it as a callback, and asks it for the current
    micro-batch's samples (`next_shard`). At the beginning of optimizer steps `0, T, 2T, ...` (and whenever the
    buffer is missing) it draws `batch_size` completions for the most recent prompts and computes the reference
    model's hidden states on them once; every rank does so at the same step (generation and the reference forward are
    collective under ZeRO-3). Gradient accumulation spreads the buffer over the micro-batches of an optimizer step,
    so the KL is paid once per step.

    Metrics, kept here until the trainer takes them at a log (`take_metrics`): `samples/mean_length`,
    `samples/clipped_ratio` (one value per refresh) and `time/generation_share`, the share of wall time spent
    refreshing (generation and the reference forward) in the logging window: a ratio of sums over the window, which a
    mean of per-step ratios would understate.

    Args:
        draw (`Callable[[list[list[int]], int], KLSamples]`):
            Samples one completion per prompt from the current policy; called with the prompts and the optimizer step.
        reference_hidden_states (`Callable[[torch.Tensor, torch.Tensor], torch.Tensor]`):
            The reference model's hidden states `(K, L - 1, H)` for `(input_ids, attention_mask)`, without gradient.
        batch_size (`int`):
            Completions per refresh (`kl_batch_size`).
        pool_size (`int`):
            Recent prompts kept to draw from.
        generation_interval (`int`):
            Optimizer steps between two refreshes (T in Algorithm 1).
        max_completion_length (`int`):
            Token limit of a completion, to count the clipped ones.
        gather (`Callable[[torch.Tensor], torch.Tensor]`):
            Gathers a tensor from every process, for the metrics.
        device (`torch.device`):
            Where restored samples go.
        clock (`Callable[[], float]`, *optional*, defaults to `time.perf_counter`):
            Seconds, for the share; tests pass a controlled clock.
    """

    STATE_FILE = "spo_state_rank{rank}.pt"

    def __init__(
        self,
        draw: Callable[[list[list[int]], int], KLSamples],
        reference_hidden_states: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batch_size: int,
        pool_size: int,
        generation_interval: int,
        max_completion_length: int,
        gather: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.draw = draw
        self.reference_hidden_states = reference_hidden_states
        self.batch_size = batch_size
        self.prompts = RecentPrompts(capacity=pool_size)
        self.generation_interval = generation_interval
        self.max_completion_length = max_completion_length
        self.metrics: dict[str, list[float]] = defaultdict(list)  # since the trainer last took them
        self.gather = gather
        self.device = device
        self.clock = clock
        self.samples: KLSamples | None = None
        self.num_refreshes = 0
        self._shard_index = 0
        self._step_start: float | None = None
        self._refresh_seconds = 0.0  # since the last log
        self._step_seconds = 0.0

    def add_batch(self, batch: dict[str, torch.Tensor]) -> None:
        """Remember the prompts of a training batch (fetched before its optimizer step begins)."""
        self.prompts.add_batch(batch)

    def refresh(self, step: int) -> None:
        """Draw new samples from the current policy for the most recent prompts, and their reference hidden states."""
        samples = self.draw(self.prompts.latest(self.batch_size), step)
        samples.with_reference(self.reference_hidden_states)
        self.samples = samples
        self.num_refreshes += 1
        lengths = self.gather(samples.completion_lengths.float())
        self.metrics["samples/mean_length"].append(lengths.mean().item())
        self.metrics["samples/clipped_ratio"].append((lengths >= self.max_completion_length).float().mean().item())

    def take_metrics(self) -> dict[str, list[float]]:
        """The metrics recorded since the last call, handed over (the trainer logs them) and forgotten here."""
        metrics, self.metrics = self.metrics, defaultdict(list)
        return metrics

    def next_shard(self, num_micro_batches: int) -> KLSamples | None:
        """
        The samples of the next micro-batch: micro-batch i of an optimizer step with G micro-batches takes the i-th of
        G slices of the buffer (`None` if that slice is empty). Every rank slices the same way, which keeps ZeRO-3's
        collective forwards in step.
        """
        index = self._shard_index % num_micro_batches
        self._shard_index = (index + 1) % num_micro_batches
        shard = self.samples.shard(index, num_micro_batches)
        return shard if len(shard) > 0 else None

    # Schedule and timing

    def on_train_begin(self, args, state, control, **kwargs):
        self._shard_index = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = self.clock()
        if self.samples is None or state.global_step % self.generation_interval == 0:
            self.refresh(state.global_step)
        elif self.samples.reference_hidden is None:  # restored from a checkpoint: the cache is not saved
            self.samples.with_reference(self.reference_hidden_states)
        else:
            return
        self._refresh_seconds += self.clock() - self._step_start

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_start is not None:
            self._step_seconds += self.clock() - self._step_start
            self.metrics["time/generation_share"] = [self._refresh_seconds / max(self._step_seconds, 1e-12)]

    def on_log(self, args, state, control, **kwargs):
        self._refresh_seconds = self._step_seconds = 0.0

    # Checkpoints: the samples, the prompt pool and the refresh count are training state too

    def state_dict(self) -> dict:
        """Everything needed to resume with the same samples; the reference cache is recomputed on the next step."""
        return {
            "kl_samples": None if self.samples is None else self.samples.state_dict(),
            "recent_prompts": self.prompts.state_dict(),
            "num_refreshes": self.num_refreshes,
        }

    def load_state_dict(self, state: dict) -> None:
        samples = state["kl_samples"]
        self.samples = None if samples is None else KLSamples.from_state_dict(samples, self.device)
        self.prompts.load_state_dict(state["recent_prompts"])
        self.num_refreshes = state["num_refreshes"]
        self._shard_index = 0

    def save(self, checkpoint_dir: str, rank: int) -> None:
        torch.save(self.state_dict(), os.path.join(checkpoint_dir, self.STATE_FILE.format(rank=rank)))

    def load(self, checkpoint_dir: str, rank: int) -> None:
        """Restore the state saved with a checkpoint, with a clear error if it is missing or damaged."""
        path = os.path.join(checkpoint_dir, self.STATE_FILE.format(rank=rank))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"The checkpoint {checkpoint_dir} has no SPO state ({os.path.basename(path)}): it holds the KL samples "
                "that the run was using. Resume from a checkpoint written by SPOTrainer with the global KL on, and "
                "the same number of processes."
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.load_state_dict(state)
        except Exception as error:  # a truncated file fails in many ways; all of them mean the same thing here
            raise ValueError(
                f"The SPO state {path} of checkpoint {checkpoint_dir} is corrupt or partial ({error!r}); the run that "
                "wrote it was probably stopped while saving. Resume from an earlier checkpoint."
            ) from error
