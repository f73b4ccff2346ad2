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
Sampling for the evaluation: prompts into token ids, `num_samples` answers per prompt, and their token log-probs and
entropies under the policy.

An answer is the tokens *before* the first EOS: the EOS is the decision to stop, not part of the answer the judge reads,
so it is neither counted in |y| nor scored. (The KL samples of training, `trl_spo.sampling.sample_completions`, keep
their EOS: Eq. 13 sums the KL over every position that produced a token of `y`, the last one included.)
"""

import copy
import gc
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .config import EvalArguments
from .metrics import per_token_entropy


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value)


def encode_prompt(tokenizer, prompt: str | list[dict[str, str]], apply_chat_template: bool = False) -> list[int]:
    """
    Token ids the model is prompted with.

    A string is tokenised as is (with the tokenizer's special tokens, e.g. a BOS), or, with `apply_chat_template`,
    wrapped in a user turn first. A conversation is rendered with the chat template and a generation prompt.
    """
    if isinstance(prompt, str) and apply_chat_template:
        prompt = [{"role": "user", "content": prompt}]
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    if not _is_conversation(prompt):
        raise ValueError(
            f"A prompt must be a string or a list of {{'role', 'content'}} messages, found {type(prompt).__name__}: "
            f"{str(prompt)[:100]!r}."
        )
    if tokenizer.chat_template is None:
        raise ValueError("Conversational prompts (or apply_chat_template=True) need a tokenizer with a chat template.")
    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    # The template already wrote the special tokens it wants.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class Completion:
    """
    One sampled completion.

    Attributes:
        token_ids (`list[int]`): the tokens before the first EOS (EOS excluded); `[]` for an empty completion.
        stopped_at_eos (`bool`): whether an EOS ended it; `False` means it was cut at `max_new_tokens`.
    """

    token_ids: list[int]
    stopped_at_eos: bool


def _eos_token_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    if not eos:
        raise ValueError("The model has no EOS token (neither in its generation config nor in its tokenizer).")
    return eos


def _pad_token_id(tokenizer, eos_token_ids: list[int]) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids[0]


def generation_config_for(
    model,
    tokenizer,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generation_kwargs: dict[str, Any] | None = None,
):
    """The model's generation config with the evaluation's sampling settings; `temperature = 0` is greedy."""
    config = copy.deepcopy(model.generation_config)
    eos = _eos_token_ids(model, tokenizer)
    settings: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=_pad_token_id(tokenizer, eos)
    )
    if temperature == 0:
        settings.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        # top_k = 0 explicitly: transformers otherwise fills in top_k = 50, which would truncate the distribution.
        settings.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    settings.update(generation_kwargs or {})
    config.update(**settings)
    return config


def sample_answers(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    num_samples: int,
    generation_config,
    batch_size: int,
) -> list[Completion]:
    """
    `num_samples` completions per prompt, prompt-major: entry `i * num_samples + j` is sample j of prompt i.

    Prompts are left-padded into batches of `batch_size`; each completion is cut before its first EOS. The caller sets
    the seed. Greedy decoding (`do_sample=False`) is run once per prompt and repeated `num_samples` times.
    """
    eos = generation_config.eos_token_id
    eos = set([eos] if isinstance(eos, int) else eos)
    pad = generation_config.pad_token_id
    draws = num_samples if generation_config.do_sample else 1
    # In the config, not as a keyword beside it (which transformers deprecates).
    generation_config = copy.deepcopy(generation_config)
    generation_config.num_return_sequences = draws
    device = model.device
    completions: list[Completion] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(len(p) for p in batch)
        input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in batch], device=device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        with torch.no_grad():
            sequences = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=generation_config,
            )
        for row in sequences[:, width:].tolist():
            cut = next((t for t, token in enumerate(row) if token in eos), None)
            completion = Completion(row if cut is None else row[:cut], stopped_at_eos=cut is not None)
            completions.extend([completion] * (num_samples // draws))
    return completions


def completion_token_logps(
    model, prompts: Sequence[list[int]], completions: Sequence[list[int]], batch_size: int, pad_token_id: int
) -> list[list[float]]:
    """
    log pi(y_t | x, y_<t) of each completion token under `model` at temperature 1 (raw logits, no sampling warper).

    Sequences `prompt + completion` are right-padded into batches of `batch_size`; log-softmax runs in float32 whatever
    the model's dtype. Empty completions get `[]` and no forward pass.

    Returns:
        `list[list[float]]`: per completion, one log-prob per token.
    """
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    result: list[list[float]] = [[] for _ in completions]
    todo = [i for i, c in enumerate(completions) if c]
    for start in range(0, len(todo), batch_size):
        rows = todo[start : start + batch_size]
        sequences = [list(prompts[i]) + list(completions[i]) for i in rows]
        width = max(len(s) for s in sequences)
        input_ids = torch.tensor([s + [pad_token_id] * (width - len(s)) for s in sequences], device=model.device)
        attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=model.device)
        # Only positions from the earliest completion on are needed: with long prompts and a large vocabulary the
        # full (B, L, V) logits would dominate memory.
        first = min(len(prompts[i]) for i in rows) - 1
        kwargs = {"logits_to_keep": width - first} if keep_arg else {}
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
        offset = width - logits.shape[1]
        for b, i in enumerate(rows):
            begin = len(prompts[i]) - 1 - offset  # the position whose logits predict the first completion token
            targets = torch.tensor(completions[i], device=logits.device)
            row_logits = logits[b, begin : begin + len(targets)].float()
            logps = torch.log_softmax(row_logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            result[i] = logps.tolist()
        del logits
    return result


def completion_entropies(token_logps: list[list[float]]) -> list[float | None]:
    """Per-completion entropy estimate, `None` for an empty completion."""
    nonempty = [i for i, lp in enumerate(token_logps) if lp]
    entropies: list[float | None] = [None] * len(token_logps)
    if not nonempty:
        return entropies
    width = max(len(token_logps[i]) for i in nonempty)
    values = torch.zeros(len(nonempty), width, dtype=torch.float64)
    mask = torch.zeros(len(nonempty), width, dtype=torch.bool)
    for row, i in enumerate(nonempty):
        values[row, : len(token_logps[i])] = torch.tensor(token_logps[i], dtype=torch.float64)
        mask[row, : len(token_logps[i])] = True
    for i, h in zip(nonempty, per_token_entropy(values, mask).tolist(), strict=False):
        entropies[i] = h
    return entropies


def load_causal_lm(path: str, args: EvalArguments, device: torch.device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=args.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    return model.to(device).eval(), tokenizer


def release(model) -> None:
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
