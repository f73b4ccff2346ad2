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

"""`DataCollatorForNaryPreference`: every (row, response) pair of a best-of-n or ranked batch in one padded batch."""

from dataclasses import dataclass
from typing import Any

import torch
from transformers.data.data_collator import DataCollatorMixin

from .._trl_compat import pad
from .formats import LABEL_CHECKS, LABEL_COLUMNS


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
    - `"response_mask"`: `(B, n_max)` bool, True on the first n_i slots of row i: its shape gives the width of the
      `(B, n)` grid of the losses without reading the device;
    - `"best_index"`: `(B,)`, or `"ranking"`: `(B, n_max)` padded with -1.

    The labels are checked here too, where every batch enters the trainer, also when the dataset was tokenised
    elsewhere: each row needs at least 2 completions, a `best_index` in [0, n_i) (a winner among the padded slots would
    be no response at all) or a `ranking` that is a permutation of `range(n_i)`. The losses then trust their inputs.

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
     'response_mask': tensor([[ True,  True,  True],
                              [ True,  True, False]]),
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
        preference_format = "best_of_n" if label == "best_index" else "ranking"
        for position, example in enumerate(examples):
            n = len(example["completions_ids"])
            problem = (
                f"has {n} completion(s); expected at least 2: a preference needs something to compare."
                if n < 2
                else LABEL_CHECKS[preference_format](example[label], n)
            )
            if problem is not None:
                raise ValueError(f"Example {position} of the batch ({preference_format} format) {problem}")

        num_responses = [len(example["completions_ids"]) for example in examples]
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
            "num_responses": torch.tensor(num_responses, dtype=torch.long),
            "response_mask": torch.tensor([[j < n for j in range(max(num_responses))] for n in num_responses]),
        }
        if label == "best_index":
            output["best_index"] = torch.tensor([int(example["best_index"]) for example in examples], dtype=torch.long)
        else:
            rankings = [torch.tensor(list(example["ranking"]), dtype=torch.long) for example in examples]
            output["ranking"] = pad(rankings, padding_value=-1, padding_side="right")
        return output
