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

Modules, one concern each:

- `formats`: `detect_preference_format` (raw or tokenised datasets), row validation, rows with identical completions;
- `tokenization`: `prepare_nary_dataset` validates and tokenises rows into `prompt_ids`, `completions_ids` (the
  conventions of `DPOTrainer._prepare_dataset`, so n = 2 gives DPO's token ids);
- `collator`: `DataCollatorForNaryPreference` flattens every (row, response) pair of a batch into one padded batch for
  a single forward (`trl_spo.responses` arranges the resulting log-probs back into a `(B, n)` grid);
- `preparation`: `prepare_preference_dataset`, what `SPOTrainer._prepare_dataset` does: the checks at the door, then
  DPO's tokenisation for pairs or `prepare_nary_dataset`;
- `conversions`: `ranking_to_best_of_n`, `ranking_to_pairwise` and `best_of_n_to_pairwise` turn richer labels into
  poorer ones, so the losses can be compared on the same data.
"""

from .collator import DataCollatorForNaryPreference
from .conversions import best_of_n_to_pairwise, ranking_to_best_of_n, ranking_to_pairwise
from .formats import (
    FORMAT_COLUMNS,
    LABEL_COLUMNS,
    PREFERENCE_FORMATS,
    detect_preference_format,
    first_row,
    identical_completion_rows,
    validate_nary_example,
    warn_identical_completions,
)
from .preparation import prepare_preference_dataset
from .tokenization import (
    all_rows_dropped_message,
    check_eos_token,
    check_pairwise_completions,
    prepare_nary_dataset,
    tokenize_nary_example,
)


__all__ = [
    "FORMAT_COLUMNS",
    "LABEL_COLUMNS",
    "PREFERENCE_FORMATS",
    "DataCollatorForNaryPreference",
    "all_rows_dropped_message",
    "best_of_n_to_pairwise",
    "check_eos_token",
    "check_pairwise_completions",
    "detect_preference_format",
    "first_row",
    "identical_completion_rows",
    "prepare_nary_dataset",
    "prepare_preference_dataset",
    "ranking_to_best_of_n",
    "ranking_to_pairwise",
    "tokenize_nary_example",
    "validate_nary_example",
    "warn_identical_completions",
]
