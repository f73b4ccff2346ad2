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
What a dataset goes through on its way into `SPOTrainer`: the checks at the door (empty dataset, format, EOS token,
unusable rows, every row dropped), then tokenisation: `DPOTrainer._prepare_dataset` for pairs, `prepare_nary_dataset`
for best-of-n and ranked rows. The losses trust what comes out.
"""

from collections.abc import Callable

from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase, ProcessorMixin
from trl import is_conversational

from .._trl_compat import global_then_local_main_first
from .formats import detect_preference_format, first_row, warn_identical_completions
from .tokenization import all_rows_dropped_message, check_eos_token, check_pairwise_completions, prepare_nary_dataset


def prepare_preference_dataset(
    dataset: Dataset | IterableDataset,
    processing_class: PreTrainedTokenizerBase | ProcessorMixin,
    args,
    dataset_name: str,
    train_format: str,
    tokenizer: PreTrainedTokenizerBase,
    prepare_pairs: Callable[..., Dataset | IterableDataset],
) -> Dataset | IterableDataset:
    """
    Check and tokenise a train or eval dataset for `SPOTrainer` (the body of its `_prepare_dataset`).

    Args:
        dataset ([`~datasets.Dataset`] or [`~datasets.IterableDataset`]): raw or already tokenised rows.
        processing_class: the trainer's tokenizer or processor.
        args ([`SPOConfig`]): `uses_global_kl`, `max_length`, `truncation_mode`, `dataset_num_proc`.
        dataset_name (`str`): `"train"` or `"eval"`, quoted in errors.
        train_format (`str`): the train dataset's preference format: one trainer collates one format.
        tokenizer: the tokenizer inside `processing_class` (its EOS token).
        prepare_pairs (`Callable`): `DPOTrainer._prepare_dataset`, bound, for pairwise rows.

    Raises:
        `ValueError`: for an empty dataset, a format other than the train dataset's, a missing EOS token, a row with a
            missing or empty completion (named with its index and column), or preparation that dropped every row.
    """
    first_example = first_row(dataset, dataset_name)
    preference_format = detect_preference_format(dataset)
    if args.uses_global_kl:
        check_eos_token(tokenizer, "to end the completions it samples for the global KL")
    elif not is_conversational(first_example) and "prompt_ids" not in first_example:
        check_eos_token(tokenizer, f"to end every completion of the standard (plain-text) {dataset_name} dataset")
    if preference_format != train_format:
        raise ValueError(
            f"The {dataset_name} dataset is in the {preference_format} format but the train dataset is "
            f"{train_format}: one trainer collates one format. Convert it (see `trl_spo.data`)."
        )
    if "prompt_ids" not in first_example:
        if preference_format == "pairwise":  # n-ary rows are validated with their tokenisation
            dataset = dataset.map(
                check_pairwise_completions, with_indices=True, fn_kwargs={"dataset_name": dataset_name}
            )
        warn_identical_completions(dataset, preference_format, dataset_name)
    num_rows = len(dataset) if isinstance(dataset, Dataset) else None
    if preference_format == "pairwise":
        prepared = prepare_pairs(dataset, processing_class, args, dataset_name)
    else:
        with global_then_local_main_first():
            prepared = prepare_nary_dataset(
                dataset,
                processing_class,
                preference_format,
                max_length=args.max_length,
                num_proc=args.dataset_num_proc if isinstance(dataset, Dataset) else None,
                dataset_name=dataset_name,
                truncation_mode=args.truncation_mode,
            )
    if num_rows and len(prepared) == 0:
        raise ValueError(all_rows_dropped_message(num_rows, dataset_name, args.max_length))
    return prepared
