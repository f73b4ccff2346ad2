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
Tokenisation of best-of-n and ranked rows with the conventions of `DPOTrainer._prepare_dataset` (pairs keep DPO's own
pipeline; `check_pairwise_completions` only adds the empty-completion check).
"""

import json
from collections.abc import Mapping
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase, ProcessorMixin
from transformers.utils import logging

from .formats import (
    _check_nary_format,
    _form,
    _is_empty,
    column_names,
    detect_preference_format,
    validate_nary_example,
)


logger = logging.get_logger(__name__)


def check_eos_token(tokenizer: PreTrainedTokenizerBase, needed_for: str) -> None:
    """Raise a `ValueError` saying how to set one if `tokenizer` has no EOS token, which `needed_for` says why."""
    # DPOTrainer would fail deep inside its tokenisation (`endswith(None)`), and generation would never stop.
    if tokenizer.eos_token is None:
        raise ValueError(
            f"SPOTrainer needs a tokenizer with an EOS token {needed_for}, but `{type(tokenizer).__name__}.eos_token` "
            "is None. Set the token that ends your model's answers and pass the tokenizer as `processing_class`, "
            'e.g. `tokenizer.eos_token = "<|im_end|>"` for a ChatML model or `"</s>"` for Llama-2 (it must be in the '
            "vocabulary)."
        )


def check_pairwise_completions(example: Mapping, index: int, dataset_name: str) -> Mapping:
    """
    Raise a ValueError naming the row and the column if its `prompt` (when there is one), `chosen` or `rejected` is
    missing (None), neither text nor messages, or an empty completion, or if the row mixes text and messages (a
    `Dataset.map` function).
    """
    for column in ("prompt", "chosen", "rejected"):
        if column not in example:
            continue  # an implicit prompt
        value = example[column]
        if _form(value) is None:
            found = "found None" if value is None else f"found {type(value).__name__} {value!r}"
            raise ValueError(
                f"Row {index} of the {dataset_name} dataset has no usable '{column}' ({found}): expected a string "
                "(standard) or a list of {'role', 'content'} messages (conversational). Drop or fix that row."
            )
        if column != "prompt" and _is_empty(value):
            raise ValueError(
                f"Row {index} of the {dataset_name} dataset has an empty '{column}' completion "
                f"({value!r}). Each pair needs two non-empty completions: drop or fix that row."
            )
    forms = {column: _form(example[column]) for column in ("prompt", "chosen", "rejected") if column in example}
    if len(set(forms.values())) > 1:
        # TRL would concatenate a list of messages with a string ("can only concatenate list (not "str") to list").
        described = ", ".join(
            f"'{column}' is {'conversational (a list of messages)' if form == 'conversational' else 'standard (a string)'}"
            for column, form in forms.items()
        )
        raise ValueError(
            f"Row {index} of the {dataset_name} dataset mixes the conversational and standard forms: {described}. "
            "Expected strings in every column (standard) or lists of {'role', 'content'} messages in every column "
            "(conversational). To make the completions messages: `dataset.map(lambda row: {column: [{'role': "
            "'assistant', 'content': row[column]}] for column in ('chosen', 'rejected')})`."
        )
    return example


def all_rows_dropped_message(num_rows: int, dataset_name: str, max_length: int | None) -> str:
    """What to say when preparation left none of a dataset's rows (each prompt fills `max_length` on its own)."""
    return (
        f"All {num_rows} rows of the {dataset_name} dataset were dropped: in every row the prompt alone (tokenised, "
        f"with the chat template if any) is at least max_length={max_length} tokens long, so with "
        "truncation_mode='keep_start' no completion token would be left to learn from. Raise `max_length`, shorten "
        "the prompts, or set truncation_mode='keep_end' (which keeps the end of each sequence and drops no row)."
    )


def _common_prefix_length(ids: list[int], other_ids: list[int]) -> int:
    for length, (token, other_token) in enumerate(zip(ids, other_ids, strict=False)):
        if token != other_token:
            return length
    return min(len(ids), len(other_ids))


def _encode(processing_class: PreTrainedTokenizerBase | ProcessorMixin, text: str | list, **chat_kwargs) -> list[int]:
    if isinstance(text, list):
        encoded = processing_class.apply_chat_template(text, tokenize=True, return_dict=True, **chat_kwargs)
    else:
        encoded = processing_class(text=text)
    # transformers 5 returns a BatchEncoding here; older versions may return the bare ids.
    input_ids = encoded["input_ids"] if isinstance(encoded, Mapping) else encoded
    # Processors add a batch dimension even for a single example.
    if len(input_ids) > 0 and isinstance(input_ids[0], list):
        input_ids = input_ids[0]
    return list(input_ids)


def tokenize_nary_example(
    example: Mapping, processing_class: PreTrainedTokenizerBase | ProcessorMixin, preference_format: str
) -> dict[str, Any]:
    """
    Tokenise one best-of-n or ranking row with the conventions of `DPOTrainer._prepare_dataset`.

    Standard rows get the EOS token appended to each completion that lacks it, and `prompt` and `prompt + completion`
    are tokenised with the tokenizer's own special tokens. Conversational rows render the prompt with
    `add_generation_prompt=True` and each `prompt + completion` with the chat template (with the row's `tools` and
    `chat_template_kwargs`, if any). The prompt ends where the tokenised prompt and every tokenised
    `prompt + completion` still agree, which for n = 2 is DPO's split, so a pair gives DPO's token ids exactly.

    Args:
        example (`Mapping`):
            A valid row (see `validate_nary_example`).
        processing_class ([`~transformers.PreTrainedTokenizerBase`] or [`~transformers.ProcessorMixin`]):
            Tokenizer, or processor whose `tokenizer` gives the EOS token.
        preference_format (`str`):
            `"best_of_n"` or `"ranking"`.

    Returns:
        `dict`: `prompt_ids` (`list[int]`), `completions_ids` (`list[list[int]]`, one per completion, in the row's
        order), and the label (`best_index` or `ranking`) unchanged.
    """
    label = _check_nary_format(preference_format)
    tokenizer = processing_class.tokenizer if isinstance(processing_class, ProcessorMixin) else processing_class
    prompt, completions = example["prompt"], example["completions"]
    if isinstance(prompt, list):
        tools = example.get("tools")
        tools = json.loads(tools) if isinstance(tools, str) else tools
        chat_kwargs = {"tools": tools, **(example.get("chat_template_kwargs") or {})}
        prompt_ids = _encode(processing_class, prompt, add_generation_prompt=True, **chat_kwargs)
        full_ids = [_encode(processing_class, prompt + completion, **chat_kwargs) for completion in completions]
    else:
        eos_token = tokenizer.eos_token
        if eos_token is None:
            raise ValueError(
                "Standard (plain-text) rows get the EOS token appended to every completion, as DPO does, but the "
                f"tokenizer ({type(tokenizer).__name__}) has none: set `tokenizer.eos_token`."
            )
        completions = [c if c.endswith(eos_token) else c + eos_token for c in completions]
        prompt_ids = _encode(processing_class, prompt)
        full_ids = [_encode(processing_class, prompt + completion) for completion in completions]

    # Templates that render the prompt alone differently, or tokens merging across the boundary, move the split
    # earlier; the minimum over completions keeps one shared prompt, which the collator relies on.
    prompt_length = min(_common_prefix_length(prompt_ids, ids) for ids in full_ids)
    if prompt_length < len(prompt_ids):
        logger.warning_once(
            "The tokenized prompt is not a prefix of every tokenized prompt+completion (the chat template renders the "
            "prompt alone differently, or tokens merge across the boundary). Each completion starts where they "
            "diverge, and this end of the prompt is left out of the training sequences: "
            f"{tokenizer.decode(prompt_ids[prompt_length:])!r}. Shown once; it likely "
            "applies to every row."
        )
    return {
        "prompt_ids": prompt_ids[:prompt_length],
        "completions_ids": [ids[prompt_length:] for ids in full_ids],
        label: example[label],
    }


def _validate_and_tokenize(example, index, processing_class, preference_format, dataset_name):
    validate_nary_example(example, index, preference_format, dataset_name=dataset_name)
    return tokenize_nary_example(example, processing_class, preference_format)


def _prompt_fits(example, max_length):
    return len(example["prompt_ids"]) < max_length


def prepare_nary_dataset(
    dataset: Dataset | IterableDataset,
    processing_class: PreTrainedTokenizerBase | ProcessorMixin,
    preference_format: str,
    max_length: int | None = None,
    num_proc: int | None = None,
    dataset_name: str = "train",
    truncation_mode: str = "keep_start",
) -> Dataset | IterableDataset:
    """
    Validate and tokenise a best-of-n or ranking dataset: the n-ary counterpart of `DPOTrainer._prepare_dataset`.

    Every row is validated (`validate_nary_example`) and tokenised (`tokenize_nary_example`) in one `map`. Like DPO,
    rows whose prompt alone fills `max_length` are dropped under `keep_start` truncation: the collator would cut
    every completion token and leave nothing to learn from. The original columns are kept (the trainer's
    `remove_unused_columns` drops them). An `IterableDataset` is processed lazily, row by row as it is read.

    In multi-process training, call it inside the trainer's main-process-first context (as DPO does), so the cache is
    written once.

    Args:
        dataset ([`~datasets.Dataset`] or [`~datasets.IterableDataset`]):
            Rows in the `preference_format` format, standard or conversational.
        processing_class ([`~transformers.PreTrainedTokenizerBase`] or [`~transformers.ProcessorMixin`]):
            Tokenizer (with a chat template for conversational rows).
        preference_format (`str`):
            `"best_of_n"` or `"ranking"`, as returned by `detect_preference_format`.
        max_length (`int`, *optional*):
            Maximum length of a `prompt + completion` sequence; `None` keeps every row.
        num_proc (`int`, *optional*):
            Processes for `Dataset.map` (ignored for an `IterableDataset`).
        dataset_name (`str`, *optional*, defaults to `"train"`):
            Name quoted in progress bars and errors.
        truncation_mode (`str`, *optional*, defaults to `"keep_start"`):
            The collator's truncation mode; `"keep_end"` keeps the end of each completion, so no row is dropped.

    Returns:
        [`~datasets.Dataset`] or [`~datasets.IterableDataset`]: with the added columns `prompt_ids` and
        `completions_ids`.
    """
    _check_nary_format(preference_format)
    found = detect_preference_format(dataset)
    if found != preference_format:
        raise ValueError(
            f"The {dataset_name} dataset was prepared as {preference_format!r} but its columns are those of the "
            f"{found!r} format: {column_names(dataset)}."
        )
    is_map_style = isinstance(dataset, Dataset)
    # `IterableDataset.map` and `.filter` take neither `num_proc` nor `desc`.
    map_kwargs = {"num_proc": num_proc} if is_map_style else {}

    if is_map_style:
        map_kwargs["desc"] = f"Validating and tokenizing {dataset_name} dataset"
    dataset = dataset.map(
        _validate_and_tokenize,
        with_indices=True,
        fn_kwargs={
            "processing_class": processing_class,
            "preference_format": preference_format,
            "dataset_name": dataset_name,
        },
        **map_kwargs,
    )

    if max_length is not None and truncation_mode == "keep_start":
        if is_map_style:
            map_kwargs["desc"] = f"Dropping fully truncated rows from {dataset_name} dataset"
            num_rows = len(dataset)
        dataset = dataset.filter(_prompt_fits, fn_kwargs={"max_length": max_length}, **map_kwargs)
        if is_map_style and len(dataset) < num_rows:
            logger.warning(
                f"Dropped {num_rows - len(dataset)} of {num_rows} rows of the {dataset_name} dataset whose prompt "
                f"alone fills max_length={max_length}."
            )
    return dataset
