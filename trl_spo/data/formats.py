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
Preference dataset formats: which one a dataset is in (from its columns, raw or tokenised), and row validation.

Three formats, each standard (strings) or conversational (lists of messages):

- `"pairwise"`: `chosen`, `rejected` (and `prompt`, unless implicit). Left to `DPOTrainer`'s own pipeline.
- `"best_of_n"`: `prompt`, `completions` (n >= 2 of them, n may vary between rows), `best_index` in [0, n).
- `"ranking"`: `prompt`, `completions`, `ranking`: indices of `completions` from best to worst, a permutation of
  `range(n)`.
"""

import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from datasets import Dataset, IterableDataset


PREFERENCE_FORMATS = ("pairwise", "best_of_n", "ranking")

# Columns each format needs. Pairwise also accepts an implicit prompt (inside chosen/rejected), as DPO does.
FORMAT_COLUMNS = {
    "pairwise": ("chosen", "rejected"),
    "best_of_n": ("prompt", "completions", "best_index"),
    "ranking": ("prompt", "completions", "ranking"),
}

# The label column of each n-ary format.
LABEL_COLUMNS = {"best_of_n": "best_index", "ranking": "ranking"}


def first_row(dataset: Dataset | IterableDataset, dataset_name: str = "train") -> dict:
    """The first row of a dataset, or a `ValueError` saying that the dataset is empty (not a `StopIteration`)."""
    for row in dataset:
        return row
    raise ValueError(
        f"The {dataset_name} dataset is empty (0 rows): there is no preference to train or evaluate on. Check how it "
        "was loaded or filtered (e.g. the `split` of `load_dataset`, or a `filter` that kept nothing)."
    )


def column_names(dataset: Dataset | IterableDataset) -> list[str]:
    """A dataset's columns; an `IterableDataset` built from a generator may not know them until it is read."""
    return list(dataset.column_names or first_row(dataset).keys())


def _expected_column_sets() -> str:
    return "; ".join(f"{name}: {list(columns)}" for name, columns in FORMAT_COLUMNS.items())


def detect_preference_format(dataset_or_columns: Dataset | IterableDataset | Iterable[str]) -> str:
    """
    Preference format of a dataset, from its columns: the one detector for raw and tokenised datasets.

    Args:
        dataset_or_columns ([`~datasets.Dataset`], [`~datasets.IterableDataset`] or `Iterable[str]`):
            A dataset (raw, or tokenised by `DPOTrainer._prepare_dataset` or `prepare_nary_dataset`), or its column
            names. Columns that no format uses (`tools`, ids, ...) are ignored.

    Returns:
        `str`: one of `PREFERENCE_FORMATS`: `"pairwise"` (`chosen`, `rejected`), `"best_of_n"` (`prompt`,
        `completions`, `best_index`) or `"ranking"` (`prompt`, `completions`, `ranking`).

    Raises:
        `ValueError`: if the columns belong to more than one format (e.g. both `best_index` and `ranking`, or
            `chosen` and `completions`), or to none.
    """
    if isinstance(dataset_or_columns, (Dataset, IterableDataset)):
        columns = sorted(set(column_names(dataset_or_columns)))
    else:
        columns = sorted(set(dataset_or_columns))
    if "completions_ids" in columns:  # tokenised by `prepare_nary_dataset`
        return "ranking" if "ranking" in columns else "best_of_n"
    if "chosen_ids" in columns:  # tokenised by `DPOTrainer._prepare_dataset`
        return "pairwise"
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


# What is wrong with a row's label, given its number of completions (`None` if nothing): shared by the row validation
# of dataset preparation and by the n-ary collator.
LABEL_CHECKS: dict[str, Callable[[Any, int], str | None]] = {
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

    return LABEL_CHECKS[preference_format](example.get(LABEL_COLUMNS[preference_format]), n)


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
