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

"""Conversions from richer labels to poorer ones (rankings to best-of-n or pairs), to compare losses on the same data."""

import itertools
from collections.abc import Mapping

from datasets import Dataset, IterableDataset

from .formats import FORMAT_COLUMNS, column_names, detect_preference_format, validate_nary_example


def _ranking_pairs(example: Mapping) -> list[tuple[int, int]]:
    # Every (better, worse) pair a ranking implies.
    return list(itertools.combinations(example["ranking"], 2))


def _best_of_n_pairs(example: Mapping) -> list[tuple[int, int]]:
    best = example["best_index"]
    return [(best, j) for j in range(len(example["completions"])) if j != best]


_PAIRS = {"best_of_n": _best_of_n_pairs, "ranking": _ranking_pairs}


def _expand_to_pairs(batch, indices, preference_format, carried):
    rows = [dict(zip(batch, values, strict=False)) for values in zip(*batch.values(), strict=False)]
    output = {"prompt": [], "chosen": [], "rejected": [], **{column: [] for column in carried}}
    for index, example in zip(indices, rows, strict=False):
        validate_nary_example(example, index, preference_format)
        for winner, loser in _PAIRS[preference_format](example):
            output["prompt"].append(example["prompt"])
            output["chosen"].append(example["completions"][winner])
            output["rejected"].append(example["completions"][loser])
            for column in carried:
                output[column].append(example[column])
    return output


def _to_pairwise(dataset: Dataset | IterableDataset, preference_format: str) -> Dataset | IterableDataset:
    columns = column_names(dataset)
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
    columns = column_names(dataset)
    found = detect_preference_format(columns)
    if found != "ranking":
        raise ValueError(f"Expected a ranking dataset, but its columns {columns} are those of {found!r}.")
    return dataset.map(_ranking_winner, with_indices=True, remove_columns=["ranking"])
