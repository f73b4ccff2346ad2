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

"""Inputs a new user gets wrong (issue 19, section 3): each is refused at construction, naming the problem and the fix."""

import re

import pytest
from datasets import Dataset, IterableDataset
from transformers import AutoModelForCausalLM

from trl_spo import SPOTrainer

from .helpers import make_args


ROWS = [{"prompt": "Name a fruit:", "chosen": " apple.", "rejected": " kiwi."}] * 4


@pytest.mark.parametrize("reference", ["loaded from the original path", "ref_model=None"])
def test_a_reference_with_another_vocabulary_is_refused(tmp_path, tiny_model_path, reference):
    # The usual way there: a token added to the tokenizer and the policy's embeddings resized, the reference loaded
    # from the original checkpoint (which is also what `ref_model=None` reloads). The KL would compare distributions
    # over different vocabularies token id by token id.
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    original = policy.get_output_embeddings().weight.shape[0]
    policy.resize_token_embeddings(original + 8)
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_model_path) if reference != "ref_model=None" else None
    message = (
        f"The reference model's vocabulary has {original} tokens but the policy's has {original + 8} "
        f"(rows of their output embeddings)"
    )
    with pytest.raises(
        ValueError, match=re.escape(message) + r".*`ref_model\.resize_token_embeddings\(" + str(original + 8)
    ):
        SPOTrainer(model=policy, ref_model=ref_model, args=make_args(tmp_path), train_dataset=Dataset.from_list(ROWS))


def test_a_reference_resized_the_same_way_is_accepted(tmp_path, tiny_model_path):
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    size = policy.get_output_embeddings().weight.shape[0] + 8
    policy.resize_token_embeddings(size)
    ref_model.resize_token_embeddings(size)  # the fix the error names
    SPOTrainer(model=policy, ref_model=ref_model, args=make_args(tmp_path), train_dataset=Dataset.from_list(ROWS))
    # Without the KL the reference is never read, so its vocabulary does not matter.
    SPOTrainer(
        model=policy,
        ref_model=AutoModelForCausalLM.from_pretrained(tiny_model_path),
        args=make_args(tmp_path, beta=0.0),
        train_dataset=Dataset.from_list(ROWS),
    )


@pytest.mark.parametrize(
    "dataset",
    [
        Dataset.from_list([]),
        Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []}),
        IterableDataset.from_generator(lambda: iter([])),
    ],
    ids=["no rows, no columns", "no rows", "iterable"],
)
def test_an_empty_train_dataset_is_named(tmp_path, tiny_model_path, dataset):
    with pytest.raises(ValueError, match=r"The train dataset is empty \(0 rows\)"):
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=dataset)


def test_an_empty_eval_dataset_is_named(tmp_path, tiny_model_path):
    empty = Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []})
    with pytest.raises(ValueError, match=r"The eval dataset is empty \(0 rows\)"):
        SPOTrainer(
            model=tiny_model_path, args=make_args(tmp_path), train_dataset=Dataset.from_list(ROWS), eval_dataset=empty
        )


@pytest.mark.parametrize("preference_format", ["pairwise", "ranking"])
def test_every_row_dropped_by_max_length_is_named(tmp_path, tiny_model_path, ranked_dataset, preference_format):
    # Every prompt is longer than 3 tokens: with `keep_start` truncation each row would keep no completion token.
    dataset = Dataset.from_list(ROWS) if preference_format == "pairwise" else ranked_dataset
    message = (
        f"All {len(dataset)} rows of the train dataset were dropped: in every row the prompt alone (tokenised, with "
        "the chat template if any) is at least max_length=3 tokens long"
    )
    with pytest.raises(ValueError, match=re.escape(message) + ".*truncation_mode='keep_end'"):
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path, max_length=3), train_dataset=dataset)


@pytest.mark.parametrize("column", ["chosen", "rejected", "prompt"])
def test_a_none_in_a_row_names_the_row_and_the_column(tmp_path, tiny_model_path, column):
    rows = [dict(row) for row in ROWS]
    rows[2][column] = None
    with pytest.raises(ValueError, match=rf"Row 2 of the train dataset has no usable '{column}' \(found None\)"):
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))


def test_a_none_completion_of_an_nary_row_names_the_row(tmp_path, tiny_model_path):
    rows = [{"prompt": "Name a fruit:", "completions": [" apple.", " kiwi.", " stone."], "best_index": 0}] * 4
    rows[1] = {**rows[1], "completions": [" apple.", None, " stone."]}
    with pytest.raises(
        ValueError, match=r"Row 1 of the train dataset \(best_of_n format\) has completion 1 that is neither a string"
    ):
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))


@pytest.mark.parametrize(
    ("generation_kwargs", "named"),
    [
        ({"do_sample": False}, "`do_sample=False`"),
        ({"num_beams": 4}, "`num_beams=4`"),
        ({"penalty_alpha": 0.6, "top_k": 4}, "`penalty_alpha=0.6`"),
        ({"temperature": 0.0}, "`temperature=0.0`"),
    ],
)
def test_generation_settings_that_stop_sampling_from_the_policy_are_refused(tmp_path, generation_kwargs, named):
    # Greedy decoding used to train silently: the KL of Eq. 13 on greedy completions is another quantity.
    with pytest.raises(ValueError, match=re.escape(named) + r".*Eq\. 13 is an expectation over y ~ π_θ"):
        make_args(tmp_path, generation_kwargs=generation_kwargs)


def test_generation_settings_that_still_sample_are_accepted(tmp_path):
    args = make_args(tmp_path, generation_kwargs={"do_sample": True, "num_beams": 1, "top_k": 5})
    assert args.generation_kwargs["top_k"] == 5
    # Without the KL nothing is sampled, so nothing is refused.
    assert make_args(tmp_path, beta=0.0, generation_kwargs={"do_sample": False}).generation_kwargs == {
        "do_sample": False
    }


def test_a_conversational_prompt_with_string_completions_names_the_row_and_columns(tmp_path, tiny_model_path):
    # TRL used to fail deep inside with `can only concatenate list (not "str") to list`.
    rows = [{**row, "prompt": [{"role": "user", "content": row["prompt"]}]} for row in ROWS]
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Row 0 of the train dataset mixes the conversational and standard forms: 'prompt' is conversational (a "
            "list of messages), 'chosen' is standard (a string), 'rejected' is standard (a string)."
        )
        + r".*'role': 'assistant', 'content': row\[column\]",
    ):
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))
