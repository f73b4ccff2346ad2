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
Online samples for the global KL (Algorithm 1 of the paper): the prompt pool, the sample buffer, generation, and the
callback that refreshes the buffer every `generation_interval` optimizer steps.
"""

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, TrainerCallback

from ._trl_compat import flush_left, pad, unwrap_model_for_generation


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
        reference_hidden (`torch.Tensor`, shape `(K, L - 1, H)`, *optional*): the reference model's hidden states on
            these sequences. π_ref and the samples are both fixed until the next refresh, so they are computed once
            per refresh instead of once per step.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    step: int
    reference_hidden: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.input_ids.size(0)

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)

    def shard(self, index: int, num_shards: int) -> "KLSamples":
        """
        The `index`-th of `num_shards` contiguous slices (some may be empty).

        Gradient accumulation spreads the buffer over the micro-batches of an optimizer step, so the KL is paid once
        per step; every rank slices the same way, which keeps ZeRO-3's collective forwards in step.
        """
        bounds = torch.linspace(0, len(self), num_shards + 1).round().long().tolist()
        rows = slice(bounds[index], bounds[index + 1])
        return KLSamples(
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            completion_mask=self.completion_mask[rows],
            step=self.step,
            reference_hidden=None if self.reference_hidden is None else self.reference_hidden[rows],
        )

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
    """

    def __init__(self, capacity: int):
        self._prompts: deque[tuple[int, ...]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._prompts)

    def add(self, prompts: Sequence[Sequence[int]]) -> None:
        self._prompts.extend(tuple(p) for p in prompts)

    def latest(self, n: int) -> list[list[int]]:
        """The `n` most recent prompts, repeated cyclically when fewer than `n` have been seen."""
        if not self._prompts:
            raise RuntimeError(
                "No training prompt has been seen yet, so there is nothing to sample KL completions for."
            )
        recent = list(self._prompts)[-n:]
        return [list(recent[i % len(recent)]) for i in range(n)]

    def state_dict(self) -> dict:
        return {"prompts": [list(p) for p in self._prompts], "capacity": self._prompts.maxlen}

    def load_state_dict(self, state: dict) -> None:
        self._prompts = deque((tuple(p) for p in state["prompts"]), maxlen=state["capacity"])


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
    return [ids[:length].tolist() for ids, length in zip(input_ids, prompt_lengths)]


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
    logits_guard: LogitsProcessor | None = None,
) -> KLSamples:
    """
    Sample one completion per prompt from the current policy.

    Generation runs under `unwrap_model_for_generation` (which gathers ZeRO-3 weights and turns gradient checkpointing
    off). The completion ends at its first EOS, which it keeps: Eq. 13 sums the KL over every position that produced a
    token of `y`, the last one included. `logits_guard` (e.g. `NonFiniteLogitsGuard`) sees every step's logits.
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


class OnlineKLSamplingCallback(TrainerCallback):
    """
    Refreshes the KL sample buffer every `generation_interval` optimizer steps (T in Algorithm 1).

    The refresh runs at the beginning of optimizer steps `0, T, 2T, ...`, before the first micro-batch, on every rank
    at the same step (generation is collective under ZeRO-3). The callback also measures the share of wall time spent
    refreshing (generation, plus the reference forward on the new samples) since the last log.

    Args:
        refresh (`Callable[[int], None]`):
            Draws new samples; called with the current optimizer step.
        needs_refresh (`Callable[[], bool]`):
            Whether the buffer is missing (first step, or resumed without one), which forces a refresh off-schedule.
        restore (`Callable[[], None]`):
            Called at `on_train_begin` to reload the buffer of a checkpoint being resumed.
        generation_interval (`int`):
            Optimizer steps between two refreshes.
        set_metric (`Callable[[str, float], None]`):
            Where to write `time/generation_share` (it replaces the previous value: the share is a ratio of sums over
            the logging window, which averaging per-step ratios would understate).
        clock (`Callable[[], float]`, *optional*, defaults to `time.perf_counter`):
            Seconds, for the share; tests pass a controlled clock.
    """

    def __init__(
        self,
        refresh: Callable[[int], None],
        needs_refresh: Callable[[], bool],
        restore: Callable[[], None],
        generation_interval: int,
        set_metric: Callable[[str, float], None],
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.refresh = refresh
        self.needs_refresh = needs_refresh
        self.restore = restore
        self.generation_interval = generation_interval
        self.set_metric = set_metric
        self.clock = clock
        self.num_refreshes = 0
        self._step_start = None
        self._generation_seconds = 0.0  # since the last log
        self._step_seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.restore()

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = self.clock()
        if state.global_step % self.generation_interval == 0 or self.needs_refresh():
            self.refresh(state.global_step)
            self.num_refreshes += 1
            self._generation_seconds += self.clock() - self._step_start

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_start is not None:
            self._step_seconds += self.clock() - self._step_start
            self.set_metric("time/generation_share", self._generation_seconds / max(self._step_seconds, 1e-12))

    def on_log(self, args, state, control, **kwargs):
        self._generation_seconds = self._step_seconds = 0.0
