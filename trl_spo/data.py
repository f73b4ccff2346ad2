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
The data side of n-ary preference training: format detection, validation, tokenisation, collation.

Paper: "Soft Preference Optimization", section 5 (best-of-n, Eq. 14; ranking, Eq. 15). Three dataset formats are
recognised from their columns (`PREFERENCE_FORMATS`); each comes in standard (strings) and conversational (lists of
messages) form, with an explicit prompt for the two n-ary formats.

- `"pairwise"`: `chosen`, `rejected` (and `prompt`, unless implicit). Left to `DPOTrainer`'s own pipeline.

    ```python
    {"prompt": "Name a fruit:", "chosen": " mango.", "rejected": " kiwi."}
    ```

- `"best_of_n"`: `prompt`, `completions` (n >= 2 of them, n may vary between rows), `best_index` in [0, n).

    ```python
    {"prompt": "Name a fruit:", "completions": [" kiwi.", " mango.", " stone."], "best_index": 1}
    ```

- `"ranking"`: `prompt`, `completions`, `ranking`: indices of `completions` from best to worst, a permutation of
  `range(n)`.

    ```python
    {
        "prompt": [{"role": "user", "content": "Name a fruit:"}],
        "completions": [
            [{"role": "assistant", "content": "kiwi."}],
            [{"role": "assistant", "content": "mango."}],
            [{"role": "assistant", "content": "stone."}],
        ],
        "ranking": [1, 0, 2],
    }
    ```

Pipeline: `prepare_nary_dataset` validates and tokenises rows into `prompt_ids`, `completions_ids` (the conventions of
`DPOTrainer._prepare_dataset`, so n = 2 gives DPO's token ids); `DataCollatorForNaryPreference` flattens every
(row, response) pair of a batch into one padded batch for a single forward; `scatter_sequence_logps` puts the
per-sequence log-probs back into a (B, n_max) grid and `order_by_ranking` sorts that grid best to worst, the inputs of
`spo_best_of_n_loss` and `spo_ranking_loss`. `ranking_to_best_of_n`, `ranking_to_pairwise` and
`best_of_n_to_pairwise` turn richer labels into poorer ones, so the losses can be compared on the same data.
"""

import itertools
import json
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase, ProcessorMixin
from transformers.data.data_collator import DataCollatorMixin
from transformers.utils import logging

from ._trl_compat import pad


logger = logging.get_logger(__name__)

PREFERENCE_FORMATS = ("pairwise", "best_of_n", "ranking")

# Columns each format needs. Pairwise also accepts an implicit prompt (inside chosen/rejected), as DPO does.
FORMAT_COLUMNS = {
    "pairwise": ("chosen", "rejected"),
    "best_of_n": ("prompt", "completions", "best_index"),
    "ranking": ("prompt", "completions", "ranking"),
}

# The label column of each n-ary format.
LABEL_COLUMNS = {"best_of_n": "best_index", "ranking": "ranking"}


def _expected_column_sets() -> str:
    return "; ".join(f"{name}: {list(columns)}" for name, columns in FORMAT_COLUMNS.items())


def detect_preference_format(column_names: Iterable[str]) -> str:
    """
    Preference format of a dataset, from its column names.

    Args:
        column_names (`Iterable[str]`):
            Columns of the dataset (`dataset.column_names`, or the keys of its first example for an
            `IterableDataset` without known features). Columns that no format uses (`tools`, ids, ...) are ignored.

    Returns:
        `str`: one of `PREFERENCE_FORMATS`: `"pairwise"` (`chosen`, `rejected`), `"best_of_n"` (`prompt`,
        `completions`, `best_index`) or `"ranking"` (`prompt`, `completions`, `ranking`).

    Raises:
        `ValueError`: if the columns belong to more than one format (e.g. both `best_index` and `ranking`, or
            `chosen` and `completions`), or to none.
    """
    columns = sorted(set(column_names))
    # Columns that only one format uses; `completions` is shared by the n-ary formats, so only their labels tell
    # them apart. Two formats in one dataset make the labels ambiguous (which one to train on?).
    involved = {}
    if pairwise := [column for column in FORMAT_COLUMNS["pairwise"] if column in columns]:
        involved["pairwise"] = pairwise
    for name, label in LABEL_COLUMNS.items():
        if label in columns:
            involved[name] = [column for column in ("completions", label) if column in columns]
    if "pairwise" in involved and "completions" in columns and len(involved) == 1:
        involved["best_of_n or ranking"] = ["completions"]
    if len(involved) > 1:
        raise ValueError(
            f"The dataset is a mix of formats: its columns {columns} include columns of {involved}. Expected the "
            f"columns of exactly one format ({_expected_column_sets()}). Remove the columns of the formats you do not "
            "train on, e.g. with `dataset.remove_columns([...])`."
        )
    for name, required in FORMAT_COLUMNS.items():
        if set(required) <= set(columns):
            return name
    hint = ""
    if involved:
        (name,) = involved
        missing = [column for column in FORMAT_COLUMNS[name] if column not in columns]
        hint = f" The columns look like the {name} format, which also needs {missing}."
    elif "completions" in columns:
        hint = " A 'completions' column needs a label: 'best_index' (best_of_n) or 'ranking' (ranking)."
    raise ValueError(
        f"Could not detect the preference format of a dataset with the columns {columns}. Expected the columns of one "
        f"of the formats {list(PREFERENCE_FORMATS)}: {_expected_column_sets()} (a pairwise dataset may leave the "
        f"prompt implicit).{hint}"
    )


def _check_nary_format(preference_format: str) -> str:
    if preference_format not in LABEL_COLUMNS:
        if preference_format == "pairwise":
            raise ValueError(
                "Pairwise datasets ('chosen'/'rejected') go through DPOTrainer's own pipeline; this function handles "
                f"the n-ary formats {list(LABEL_COLUMNS)}."
            )
        raise ValueError(
            f"Unknown n-ary preference format {preference_format!r}; expected one of {list(LABEL_COLUMNS)}."
        )
    return LABEL_COLUMNS[preference_format]


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    # `True` is an int to Python but never a meaningful index; numpy integers are fine.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _form(value: Any) -> str | None:
    if isinstance(value, str):
        return "standard"
    if isinstance(value, list) and all(isinstance(message, Mapping) for message in value):
        return "conversational"
    return None


def _is_empty(completion: str | list) -> bool:
    if isinstance(completion, str):
        return completion.strip() == ""
    return all(not str(message.get("content") or "").strip() for message in completion)


def _check_best_index(best_index: Any, n: int) -> str | None:
    expected = f"expected an int in [0, n) = [0, {n}) for its {n} completions"
    if best_index is None:
        return f"has no 'best_index' (found None); {expected}."
    if not _is_int(best_index):
        return f"has a 'best_index' that is not an int: {best_index!r} ({type(best_index).__name__}); {expected}."
    if not 0 <= best_index < n:
        return f"has 'best_index' {best_index}, out of range; {expected}."
    return None


def _check_ranking(ranking: Any, n: int) -> str | None:
    expected = f"expected a permutation of range({n}) listing its {n} completions from best to worst"
    if ranking is None:
        return f"has no 'ranking' (found None); {expected}."
    if isinstance(ranking, (str, bytes)) or not isinstance(ranking, Iterable):
        return f"has a 'ranking' that is not a list: {ranking!r}; {expected}."
    ranking = list(ranking)
    if len(ranking) != n:
        return f"has a 'ranking' of length {len(ranking)} ({ranking}) for {n} completions; {expected}."
    not_ints = [value for value in ranking if not _is_int(value)]
    if not_ints:
        return f"has a 'ranking' with entries that are not ints: {not_ints} in {ranking}; {expected}."
    if sorted(ranking) != list(range(n)):
        missing = sorted(set(range(n)) - set(ranking))
        repeated = sorted({value for value in ranking if ranking.count(value) > 1})
        out_of_range = sorted({value for value in ranking if not 0 <= value < n})
        problems = [f"missing {missing}"]
        if repeated:
            problems.append(f"repeated {repeated}")
        if out_of_range:
            problems.append(f"out of range {out_of_range}")
        return f"has a 'ranking' {ranking} that is not a permutation of range({n}): {', '.join(problems)}; {expected}."
    return None


_LABEL_CHECKS: dict[str, Callable[[Any, int], str | None]] = {
    "best_of_n": _check_best_index,
    "ranking": _check_ranking,
}


def _row_problem(example: Mapping, preference_format: str) -> str | None:
    completions = example.get("completions")
    if not isinstance(completions, list):
        return f"has a 'completions' that is not a list: {completions!r}; expected a list of at least 2 completions."
    n = len(completions)
    if n < 2:
        return f"has {n} completion(s) in 'completions'; expected at least 2: a preference needs something to compare."

    prompt_form = _form(example.get("prompt"))
    if prompt_form is None:
        return (
            f"has a 'prompt' that is neither a string nor a list of messages: {example.get('prompt')!r}; expected a "
            "string (standard) or a list of {'role', 'content'} messages (conversational)."
        )
    for j, completion in enumerate(completions):
        form = _form(completion)
        if form is None:
            return (
                f"has completion {j} that is neither a string nor a list of messages: {completion!r}; expected "
                f"{'a string' if prompt_form == 'standard' else 'a list of messages'}, like the prompt."
            )
        if form != prompt_form:
            return (
                f"mixes conversational and standard forms: the prompt is {prompt_form} but completion {j} is {form}; "
                "expected strings everywhere (standard) or lists of messages everywhere (conversational)."
            )
        if _is_empty(completion):
            return f"has an empty completion {j} ({completion!r}); expected non-empty content in every completion."

    return _LABEL_CHECKS[preference_format](example.get(LABEL_COLUMNS[preference_format]), n)


def validate_nary_example(
    example: Mapping, index: int, preference_format: str, dataset_name: str | None = None
) -> None:
    """
    Check one row of a best-of-n or ranking dataset.

    Args:
        example (`Mapping`):
            The row: `prompt`, `completions` and `best_index` or `ranking`.
        index (`int`):
            Position of the row in its dataset, quoted in the error.
        preference_format (`str`):
            `"best_of_n"` or `"ranking"`.
        dataset_name (`str`, *optional*):
            Name of the dataset (`"train"`, `"eval"`), quoted in the error.

    Raises:
        `ValueError`: naming the row and the problem, with what was expected: fewer than 2 completions; `best_index`
            missing, not an int, or out of [0, n); `ranking` missing, not of length n, or not a permutation of
            `range(n)` (with the missing, repeated and out-of-range indices); an empty completion (blank string, or
            messages without content); a prompt and completions that mix the standard and conversational forms.
    """
    _check_nary_format(preference_format)
    problem = _row_problem(example, preference_format)
    if problem is not None:
        where = f"Row {index}" if dataset_name is None else f"Row {index} of the {dataset_name} dataset"
        raise ValueError(f"{where} ({preference_format} format) {problem}")


# What an identical copy of a completion does to each format's label, and what to do about it.
_IDENTICAL_COMPLETIONS = {
    "pairwise": (
        "have identical 'chosen' and 'rejected' completions: such a pair states no preference and trains with zero "
        "gradient",
        "Drop them, e.g. `dataset.filter(lambda row: row['chosen'] != row['rejected'])`",
    ),
    "best_of_n": (
        "list their best completion again among the others: the same text is then both the winner and a loser",
        "Deduplicate each row's completions before labelling the best one",
    ),
    "ranking": (
        "rank the same completion twice: the ranking asks a text to be both above and below itself, and the loss "
        "pushes it both ways",
        "Deduplicate each row's completions before ranking them",
    ),
}


def _has_identical_completions(example: Mapping, preference_format: str) -> bool:
    if preference_format == "pairwise":
        return example["chosen"] == example["rejected"]
    completions = example["completions"]
    if not isinstance(completions, list):
        return False  # malformed; validation names the row
    if preference_format == "best_of_n":
        best = example["best_index"]
        return _is_int(best) and 0 <= best < len(completions) and completions.count(completions[best]) > 1
    return any(completion in completions[:j] for j, completion in enumerate(completions))


def identical_completion_rows(dataset: Dataset, preference_format: str) -> list[int]:
    """
    Indices of the rows whose label compares a completion with an identical copy of itself.

    Such rows are legal but uninformative or contradictory: a pair with `chosen == rejected` has zero gradient; a
    best-of-n row whose best completion also appears among the others makes the same text win and lose; a ranking
    that lists a completion twice asks it to be both above and below itself. Completions are compared exactly
    (strings, or lists of messages).

    Args:
        dataset ([`~datasets.Dataset`]): raw rows in `preference_format` (before tokenisation).
        preference_format (`str`): `"pairwise"`, `"best_of_n"` or `"ranking"`.

    Returns:
        `list[int]`: row indices, ascending.
    """
    columns = (
        ["chosen", "rejected"]
        if preference_format == "pairwise"
        else ["completions", LABEL_COLUMNS[preference_format]]
    )
    rows, offset = [], 0
    for batch in dataset.select_columns(columns).iter(batch_size=1000):
        size = len(batch[columns[0]])
        for i in range(size):
            if _has_identical_completions({name: batch[name][i] for name in columns}, preference_format):
                rows.append(offset + i)
        offset += size
    return rows


def warn_identical_completions(dataset: Dataset | IterableDataset, preference_format: str, dataset_name: str) -> None:
    """
    Warn once, with the count and the first row indices, if any row of `dataset` compares identical completions.

    Map-style datasets are scanned in full; an `IterableDataset` is not (reading it would consume the stream).
    """
    if not isinstance(dataset, Dataset):
        return
    rows = identical_completion_rows(dataset, preference_format)
    if rows:
        problem, remedy = _IDENTICAL_COMPLETIONS[preference_format]
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        warnings.warn(
            f"{len(rows)} of {len(dataset)} rows of the {dataset_name} dataset {problem} (rows {shown}). {remedy}.",
            UserWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------------------------------


def check_pairwise_completions(example: Mapping, index: int, dataset_name: str) -> Mapping:
    """Raise a ValueError naming the row if its `chosen` or `rejected` completion is empty (a `Dataset.map` function)."""
    for column in ("chosen", "rejected"):
        if _is_empty(example[column]):
            raise ValueError(
                f"Row {index} of the {dataset_name} dataset has an empty '{column}' completion "
                f"({example[column]!r}). Each pair needs two non-empty completions: drop or fix that row."
            )
    return example


def _common_prefix_length(ids: list[int], other_ids: list[int]) -> int:
    for length, (token, other_token) in enumerate(zip(ids, other_ids)):
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
    prompt, completions = example["prompt"], example["completions"]
    if isinstance(prompt, list):
        tools = example.get("tools")
        tools = json.loads(tools) if isinstance(tools, str) else tools
        chat_kwargs = {"tools": tools, **(example.get("chat_template_kwargs") or {})}
        prompt_ids = _encode(processing_class, prompt, add_generation_prompt=True, **chat_kwargs)
        full_ids = [_encode(processing_class, prompt + completion, **chat_kwargs) for completion in completions]
    else:
        eos_token = getattr(processing_class, "tokenizer", processing_class).eos_token
        if eos_token is not None:
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
            f"{getattr(processing_class, 'decode', str)(prompt_ids[prompt_length:])!r}. Shown once; it likely "
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


def _column_names(dataset: Dataset | IterableDataset) -> list[str]:
    # An IterableDataset built from a generator may not know its features until it is read.
    return list(dataset.column_names or next(iter(dataset)).keys())


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
    found = detect_preference_format(_column_names(dataset))
    if found != preference_format:
        raise ValueError(
            f"The {dataset_name} dataset was prepared as {preference_format!r} but its columns are those of the "
            f"{found!r} format: {_column_names(dataset)}."
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


# ---------------------------------------------------------------------------------------------------------------------
# Conversions to poorer labels
# ---------------------------------------------------------------------------------------------------------------------


def _ranking_pairs(example: Mapping) -> list[tuple[int, int]]:
    # Every (better, worse) pair a ranking implies.
    return list(itertools.combinations(example["ranking"], 2))


def _best_of_n_pairs(example: Mapping) -> list[tuple[int, int]]:
    best = example["best_index"]
    return [(best, j) for j in range(len(example["completions"])) if j != best]


_PAIRS = {"best_of_n": _best_of_n_pairs, "ranking": _ranking_pairs}


def _expand_to_pairs(batch, indices, preference_format, carried):
    rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
    output = {"prompt": [], "chosen": [], "rejected": [], **{column: [] for column in carried}}
    for index, example in zip(indices, rows):
        validate_nary_example(example, index, preference_format)
        for winner, loser in _PAIRS[preference_format](example):
            output["prompt"].append(example["prompt"])
            output["chosen"].append(example["completions"][winner])
            output["rejected"].append(example["completions"][loser])
            for column in carried:
                output[column].append(example[column])
    return output


def _to_pairwise(dataset: Dataset | IterableDataset, preference_format: str) -> Dataset | IterableDataset:
    columns = _column_names(dataset)
    found = detect_preference_format(columns)
    if found != preference_format:
        raise ValueError(f"Expected a {preference_format} dataset, but its columns {columns} are those of {found!r}.")
    # Columns such as `tools` or `chat_template_kwargs` still apply to every pair of their row.
    carried = [column for column in columns if column not in (*FORMAT_COLUMNS[found], "prompt_ids", "completions_ids")]
    return dataset.map(
        _expand_to_pairs,
        batched=True,
        with_indices=True,
        remove_columns=columns,
        fn_kwargs={"preference_format": preference_format, "carried": carried},
    )


def ranking_to_pairwise(dataset: Dataset | IterableDataset) -> Dataset | IterableDataset:
    """
    Pairwise dataset of all the pairs that each ranking implies.

    A row with n completions gives the n(n-1)/2 pairs (`ranking[k]` preferred to `ranking[l]` for k < l), in that
    order, each with the row's prompt. The form (standard or conversational) is kept, and so are columns that no
    format uses (`tools`, ...), repeated for each pair; tokenised columns are dropped.

    Args:
        dataset ([`~datasets.Dataset`] or [`~datasets.IterableDataset`]):
            A ranking dataset (`prompt`, `completions`, `ranking`).

    Returns:
        [`~datasets.Dataset`] or [`~datasets.IterableDataset`]: columns `prompt`, `chosen`, `rejected` (+ carried).
    """
    return _to_pairwise(dataset, "ranking")


def best_of_n_to_pairwise(dataset: Dataset | IterableDataset) -> Dataset | IterableDataset:
    """
    Pairwise dataset of the winner of each row against every other completion of that row.

    A row with n completions gives n - 1 pairs, in the order of `completions`. The form is kept, like
    `ranking_to_pairwise`.

    Args:
        dataset ([`~datasets.Dataset`] or [`~datasets.IterableDataset`]):
            A best-of-n dataset (`prompt`, `completions`, `best_index`).

    Returns:
        [`~datasets.Dataset`] or [`~datasets.IterableDataset`]: columns `prompt`, `chosen`, `rejected` (+ carried).
    """
    return _to_pairwise(dataset, "best_of_n")


def _ranking_winner(example, index):
    validate_nary_example(example, index, "ranking")
    return {"best_index": example["ranking"][0]}


def ranking_to_best_of_n(dataset: Dataset | IterableDataset) -> Dataset | IterableDataset:
    """
    Best-of-n dataset that keeps the top of each ranking: `best_index = ranking[0]`.

    The `ranking` column is removed (a dataset with both labels would be a mix of formats); everything else, the
    form included, is kept.

    Args:
        dataset ([`~datasets.Dataset`] or [`~datasets.IterableDataset`]):
            A ranking dataset (`prompt`, `completions`, `ranking`).

    Returns:
        [`~datasets.Dataset`] or [`~datasets.IterableDataset`]: columns `prompt`, `completions`, `best_index` (+ the
        others).
    """
    columns = _column_names(dataset)
    found = detect_preference_format(columns)
    if found != "ranking":
        raise ValueError(f"Expected a ranking dataset, but its columns {columns} are those of {found!r}.")
    return dataset.map(_ranking_winner, with_indices=True, remove_columns=["ranking"])


# ---------------------------------------------------------------------------------------------------------------------
# Collation and the response grid
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class DataCollatorForNaryPreference(DataCollatorMixin):
    """
    Data collator for best-of-n and ranking data: all the responses of a batch in one right-padded batch.

    Each example holds `"prompt_ids"`, `"completions_ids"` (n_i lists) and `"best_index"` or `"ranking"`, as made by
    `prepare_nary_dataset`; n_i may differ between examples. Every (row, response) pair becomes one sequence
    `prompt_ids + completions_ids[j]`, row by row and in the row's order, so a batch of B rows gives N = sum_i n_i
    sequences. The returned dictionary holds:

    - `"input_ids"`, `"attention_mask"`, `"completion_mask"` (1 on completion tokens): `(N, L)`, as in
      [`~trl.trainer.dpo_trainer.DataCollatorForPreference`];
    - `"row_index"`, `"response_index"`: `(N,)`, the row of each sequence and its index in that row's `completions`;
    - `"num_responses"`: `(B,)`, n_i;
    - `"best_index"`: `(B,)`, or `"ranking"`: `(B, n_max)` padded with -1.

    Args:
        pad_token_id (`int`):
            Token ID to use for padding.
        max_length (`int`, *optional*):
            Maximum length of each `prompt + completion` sequence; longer ones are truncated before padding.
        truncation_mode (`str`, *optional*, defaults to `"keep_start"`):
            Truncation mode to use when a sequence exceeds `max_length`: `"keep_start"` or `"keep_end"`.
        pad_to_multiple_of (`int`, *optional*):
            If set, the sequences are padded to a multiple of this value.
        return_tensors (`str`, *optional*, defaults to `"pt"`):
            Type of Tensor to return. Only `"pt"` is supported.

    Examples:
    ```python
    >>> from trl_spo.data import DataCollatorForNaryPreference

    >>> collator = DataCollatorForNaryPreference(pad_token_id=0)
    >>> examples = [
    ...     {"prompt_ids": [1, 2], "completions_ids": [[3], [4, 5], [6]], "ranking": [1, 0, 2]},
    ...     {"prompt_ids": [7], "completions_ids": [[8, 9], [10]], "ranking": [1, 0]},
    ... ]
    >>> collator(examples)
    {'input_ids': tensor([[ 1,  2,  3,  0],
                          [ 1,  2,  4,  5],
                          [ 1,  2,  6,  0],
                          [ 7,  8,  9,  0],
                          [ 7, 10,  0,  0]]),
     'attention_mask': tensor([[1, 1, 1, 0],
                               [1, 1, 1, 1],
                               [1, 1, 1, 0],
                               [1, 1, 1, 0],
                               [1, 1, 0, 0]]),
     'completion_mask': tensor([[0, 0, 1, 0],
                                [0, 0, 1, 1],
                                [0, 0, 1, 0],
                                [0, 1, 1, 0],
                                [0, 1, 0, 0]]),
     'row_index': tensor([0, 0, 0, 1, 1]),
     'response_index': tensor([0, 1, 2, 0, 1]),
     'num_responses': tensor([3, 2]),
     'ranking': tensor([[ 1,  0,  2],
                        [ 1,  0, -1]])}
    ```
    """

    pad_token_id: int
    max_length: int | None = None
    truncation_mode: str = "keep_start"
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        labels = [column for column in LABEL_COLUMNS.values() if column in examples[0]]
        if len(labels) != 1 or any(labels[0] not in example for example in examples):
            raise ValueError(
                f"Every example needs exactly one label column of {list(LABEL_COLUMNS.values())}, the same for the "
                f"whole batch; the first example has {sorted(examples[0])}."
            )
        (label,) = labels

        input_ids, completion_mask, row_index, response_index = [], [], [], []
        for row, example in enumerate(examples):
            prompt_ids = list(example["prompt_ids"])
            for response, completion_ids in enumerate(example["completions_ids"]):
                input_ids.append(prompt_ids + list(completion_ids))
                completion_mask.append([0] * len(prompt_ids) + [1] * len(completion_ids))
                row_index.append(row)
                response_index.append(response)

        if self.max_length is not None:
            if self.truncation_mode == "keep_start":
                sl = slice(None, self.max_length)
            elif self.truncation_mode == "keep_end":
                sl = slice(-self.max_length, None)
            else:
                raise ValueError(
                    f"Unsupported truncation mode: {self.truncation_mode}, expected 'keep_start' or 'keep_end'"
                )
            input_ids = [ids[sl] for ids in input_ids]
            completion_mask = [mask[sl] for mask in completion_mask]

        def padded(sequences: list[list[int]], value: int) -> torch.Tensor:
            tensors = [torch.tensor(sequence, dtype=torch.long) for sequence in sequences]
            return pad(tensors, padding_value=value, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)

        output = {
            "input_ids": padded(input_ids, self.pad_token_id),
            "attention_mask": padded([[1] * len(ids) for ids in input_ids], 0),
            "completion_mask": padded(completion_mask, 0),
            "row_index": torch.tensor(row_index, dtype=torch.long),
            "response_index": torch.tensor(response_index, dtype=torch.long),
            "num_responses": torch.tensor([len(example["completions_ids"]) for example in examples], dtype=torch.long),
        }
        if label == "best_index":
            output["best_index"] = torch.tensor([int(example["best_index"]) for example in examples], dtype=torch.long)
        else:
            rankings = [torch.tensor(list(example["ranking"]), dtype=torch.long) for example in examples]
            output["ranking"] = pad(rankings, padding_value=-1, padding_side="right")
        return output


def scatter_sequence_logps(
    logps: torch.Tensor,
    row_index: torch.Tensor,
    response_index: torch.Tensor,
    num_rows: int,
    max_responses: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Place per-sequence log-probs into the padded (row, response) grid that the n-ary losses take.

    Args:
        logps (`torch.Tensor`):
            Sequence log-probs, shape `(N,)`, one per sequence of `DataCollatorForNaryPreference`'s batch.
        row_index (`torch.Tensor`):
            Row of each sequence, integer tensor of shape `(N,)`, in [0, num_rows).
        response_index (`torch.Tensor`):
            Index of each sequence in its row's `completions`, integer tensor of shape `(N,)`, in [0, max_responses).
            Each (row, response) slot must be given at most once.
        num_rows (`int`):
            B, the number of rows.
        max_responses (`int`):
            n_max, the width of the grid (e.g. `num_responses.max()`, or `ranking.size(1)`).

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`:
        - `values`: shape `(B, n_max)`, dtype of `logps`; slot `(row_index[s], response_index[s])` holds `logps[s]`,
          other slots 0. Differentiable with respect to `logps`.
        - `response_mask`: bool, shape `(B, n_max)`, True on the filled slots (a prefix of each row for the
          collator's batches).
    """
    if logps.dim() != 1 or row_index.shape != logps.shape or response_index.shape != logps.shape:
        raise ValueError(
            f"`logps`, `row_index` and `response_index` must all have shape (N,); found {tuple(logps.shape)}, "
            f"{tuple(row_index.shape)} and {tuple(response_index.shape)}."
        )
    slots = (row_index.long(), response_index.long())
    # Out of place, so autograd routes each slot's gradient back to its sequence.
    values = logps.new_zeros((num_rows, max_responses)).index_put(slots, logps)
    response_mask = torch.zeros((num_rows, max_responses), dtype=torch.bool, device=logps.device)
    response_mask = response_mask.index_put(slots, torch.ones_like(logps, dtype=torch.bool))
    return values, response_mask


def order_by_ranking(values: torch.Tensor, ranking: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Reorder each row of the response grid from best to worst, as `spo_ranking_loss` expects.

    Args:
        values (`torch.Tensor`):
            Per-response values in the rows' `completions` order, shape `(B, n)` (e.g. from `scatter_sequence_logps`).
        ranking (`torch.Tensor`):
            Integer tensor of shape `(B, n)`: response indices from best to worst, padded at the end with -1 (as
            `DataCollatorForNaryPreference` returns it).

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`:
        - `ordered`: shape `(B, n)`, `ordered[b, k] = values[b, ranking[b, k]]`, 0 where `ranking` is -1.
          Differentiable with respect to `values`.
        - `response_mask`: bool, shape `(B, n)`, `ranking >= 0`: a valid prefix of each row.
    """
    if values.dim() != 2 or ranking.shape != values.shape:
        raise ValueError(
            f"`values` and `ranking` must both have shape (B, n); found {tuple(values.shape)} and "
            f"{tuple(ranking.shape)}."
        )
    response_mask = ranking >= 0
    # Padding indices are clamped to a real slot for the gather, then masked: no out-of-range index, no gradient.
    ordered = values.gather(1, ranking.long().clamp(min=0))
    return torch.where(response_mask, ordered, torch.zeros_like(ordered)), response_mask
