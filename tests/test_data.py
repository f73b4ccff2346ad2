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

"""Tests of `trl_spo.data`: the n-ary preference formats from raw rows to the (B, n) grid the losses take.

Token ids are checked against `DPOTrainer._prepare_dataset` itself (n = 2 must give DPO's ids), collated batches
against hand-worked tensors, and the grid plumbing against the losses applied to each row alone.
"""

import itertools
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset

from trl_spo.data import (
    PREFERENCE_FORMATS,
    DataCollatorForNaryPreference,
    best_of_n_to_pairwise,
    detect_preference_format,
    identical_completion_rows,
    prepare_nary_dataset,
    ranking_to_best_of_n,
    ranking_to_pairwise,
    tokenize_nary_example,
    validate_nary_example,
    warn_identical_completions,
)


EXPECTED_SETS = (
    "pairwise: ['chosen', 'rejected']",
    "best_of_n: ['prompt', 'completions', 'best_index']",
    "ranking: ['prompt', 'completions', 'ranking']",
)


@pytest.fixture(scope="module")
def tokenizer(shipped_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(shipped_model_path)


def assistant(content):
    return [{"role": "assistant", "content": content}]


def user(content):
    return [{"role": "user", "content": content}]


def dpo_prepare(dataset, tokenizer, max_length=None):
    """`DPOTrainer._prepare_dataset` on a stand-in `self`: the method reads only `_tokenizer`, and building a real
    DPOTrainer would cost a model load for nothing."""
    from trl import DPOTrainer

    owner = SimpleNamespace(_tokenizer=tokenizer)
    args = SimpleNamespace(dataset_num_proc=None, max_length=max_length, truncation_mode="keep_start")
    return DPOTrainer._prepare_dataset(owner, dataset, tokenizer, args, "train")


# ---------------------------------------------------------------------------------------------------------------------
# Format detection
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["prompt", "chosen", "rejected"], "pairwise"),
        (["chosen", "rejected"], "pairwise"),  # implicit prompt, as DPO accepts
        (["prompt", "completions", "best_index"], "best_of_n"),
        (["id", "prompt", "completions", "ranking", "tools"], "ranking"),  # unrelated columns are ignored
    ],
)
def test_detect_preference_format(columns, expected):
    assert detect_preference_format(columns) == expected
    assert expected in PREFERENCE_FORMATS


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        (
            ["prompt", "completions", "best_index", "ranking"],
            ["'best_of_n': ['completions', 'best_index']", "'ranking'"],
        ),
        (["prompt", "chosen", "rejected", "completions"], ["'pairwise': ['chosen', 'rejected']", "['completions']"]),
        (["prompt", "chosen", "rejected", "best_index"], ["'pairwise'", "'best_of_n': ['best_index']"]),
        (["best_index", "ranking"], ["'best_of_n': ['best_index']", "'ranking': ['ranking']"]),
    ],
)
def test_detect_preference_format_rejects_mixes(columns, named):
    with pytest.raises(ValueError) as error:
        detect_preference_format(columns)
    message = str(error.value)
    assert "mix of formats" in message
    assert f"its columns {sorted(columns)}" in message
    for fragment in (*named, *EXPECTED_SETS):
        assert fragment in message


@pytest.mark.parametrize(
    ("columns", "hint"),
    [
        (["text"], ""),
        (["prompt", "completions"], "needs a label: 'best_index' (best_of_n) or 'ranking' (ranking)"),
        (["prompt", "chosen"], "look like the pairwise format, which also needs ['rejected']"),
        (["completions", "ranking"], "look like the ranking format, which also needs ['prompt']"),
    ],
)
def test_detect_preference_format_rejects_unknown_columns(columns, hint):
    with pytest.raises(ValueError) as error:
        detect_preference_format(columns)
    message = str(error.value)
    assert f"Could not detect the preference format of a dataset with the columns {sorted(columns)}" in message
    for fragment in (*EXPECTED_SETS, hint):
        assert fragment in message


# ---------------------------------------------------------------------------------------------------------------------
# Row validation
# ---------------------------------------------------------------------------------------------------------------------


def best_of_n_row(**overrides):
    return {"prompt": "Name a fruit:", "completions": [" kiwi.", " mango."], "best_index": 1, **overrides}


def ranking_row(**overrides):
    return {
        "prompt": "Name a fruit:",
        "completions": [" kiwi.", " mango.", " stone."],
        "ranking": [1, 0, 2],
        **overrides,
    }


def chat_row(**overrides):
    return {
        "prompt": user("Name a fruit:"),
        "completions": [assistant("kiwi."), assistant("mango.")],
        "best_index": 1,
        **overrides,
    }


BAD_ROWS = {
    "one completion": (
        "best_of_n",
        best_of_n_row(completions=[" kiwi."], best_index=0),
        ["1 completion(s)", "at least 2"],
    ),
    "no completion": ("ranking", ranking_row(completions=[], ranking=[]), ["0 completion(s)", "at least 2"]),
    "completions not a list": ("best_of_n", best_of_n_row(completions=" kiwi."), ["'completions' that is not a list"]),
    "best_index missing": (
        "best_of_n",
        {"prompt": "p", "completions": [" a", " b"]},
        ["no 'best_index' (found None)", "an int in [0, n) = [0, 2)"],
    ),
    "best_index None": ("best_of_n", best_of_n_row(best_index=None), ["no 'best_index' (found None)", "[0, 2)"]),
    "best_index str": ("best_of_n", best_of_n_row(best_index="1"), ["not an int: '1' (str)", "[0, 2)"]),
    "best_index float": ("best_of_n", best_of_n_row(best_index=1.0), ["not an int: 1.0 (float)"]),
    "best_index bool": ("best_of_n", best_of_n_row(best_index=True), ["not an int: True (bool)"]),
    "best_index too large": ("best_of_n", best_of_n_row(best_index=2), ["'best_index' 2, out of range", "[0, 2)"]),
    "best_index negative": ("best_of_n", best_of_n_row(best_index=-1), ["'best_index' -1, out of range"]),
    "ranking missing": (
        "ranking",
        {"prompt": "p", "completions": [" a", " b", " c"]},
        ["no 'ranking' (found None)", "a permutation of range(3)", "from best to worst"],
    ),
    "ranking None": ("ranking", ranking_row(ranking=None), ["no 'ranking' (found None)"]),
    "ranking not a list": ("ranking", ranking_row(ranking=1), ["'ranking' that is not a list: 1"]),
    "ranking too short": ("ranking", ranking_row(ranking=[1, 0]), ["length 2 ([1, 0]) for 3 completions"]),
    "ranking too long": ("ranking", ranking_row(ranking=[1, 0, 2, 3]), ["length 4", "for 3 completions"]),
    "ranking repeated": (
        "ranking",
        ranking_row(ranking=[0, 0, 2]),
        ["[0, 0, 2] that is not a permutation of range(3): missing [1], repeated [0]"],
    ),
    "ranking out of range": (
        "ranking",
        ranking_row(ranking=[0, 1, 3]),
        ["not a permutation of range(3): missing [2], out of range [3]"],
    ),
    "ranking not ints": ("ranking", ranking_row(ranking=[0, 1.0, 2]), ["entries that are not ints: [1.0]"]),
    "blank completion": ("best_of_n", best_of_n_row(completions=[" kiwi.", "  \n"]), ["empty completion 1 ('  \\n')"]),
    "empty message": (
        "best_of_n",
        chat_row(completions=[assistant(""), assistant("mango.")]),
        ["empty completion 0", "non-empty content"],
    ),
    "no message": ("best_of_n", chat_row(completions=[assistant("kiwi."), []]), ["empty completion 1 ([])"]),
    "content None": (
        "best_of_n",
        chat_row(completions=[assistant("kiwi."), [{"role": "assistant", "content": None}]]),
        ["empty completion 1"],
    ),
    "chat prompt, text completion": (
        "best_of_n",
        chat_row(completions=[assistant("kiwi."), "mango."]),
        ["mixes conversational and standard forms", "the prompt is conversational but completion 1 is standard"],
    ),
    "text prompt, chat completion": (
        "ranking",
        ranking_row(completions=[" kiwi.", assistant("mango."), " stone."]),
        ["the prompt is standard but completion 1 is conversational"],
    ),
    "prompt None": ("best_of_n", best_of_n_row(prompt=None), ["'prompt' that is neither a string nor a list"]),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_validate_nary_example_names_row_and_problem(case):
    preference_format, row, fragments = BAD_ROWS[case]
    with pytest.raises(ValueError) as error:
        validate_nary_example(row, 7, preference_format, dataset_name="eval")
    message = str(error.value)
    assert message.startswith(f"Row 7 of the eval dataset ({preference_format} format) ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("preference_format", "row"),
    [
        ("best_of_n", best_of_n_row()),
        ("best_of_n", best_of_n_row(best_index=np.int64(0))),  # numpy integers are integers
        ("best_of_n", chat_row()),
        ("ranking", ranking_row()),
        ("ranking", ranking_row(ranking=(2, 1, 0))),
    ],
)
def test_validate_nary_example_accepts_valid_rows(preference_format, row):
    validate_nary_example(row, 0, preference_format)


def test_validate_nary_example_rejects_pairwise_and_unknown_formats():
    with pytest.raises(ValueError, match="DPOTrainer's own pipeline"):
        validate_nary_example(best_of_n_row(), 0, "pairwise")
    with pytest.raises(ValueError, match=r"Unknown n-ary preference format 'listwise'; expected one of"):
        validate_nary_example(best_of_n_row(), 0, "listwise")


def test_prepare_nary_dataset_validates_every_row(tokenizer):
    rows = [ranking_row(), ranking_row(), ranking_row(ranking=[2, 2, 0])]
    with pytest.raises(ValueError, match=r"Row 2 of the eval dataset \(ranking format\) .* missing \[1\]"):
        prepare_nary_dataset(Dataset.from_list(rows), tokenizer, "ranking", dataset_name="eval")
    with pytest.raises(ValueError, match=r"prepared as 'best_of_n' but its columns are those of the 'ranking'"):
        prepare_nary_dataset(Dataset.from_list(rows), tokenizer, "best_of_n")


def test_prepare_nary_dataset_iterable_is_lazy(tokenizer):
    rows = [best_of_n_row(), best_of_n_row(best_index=5)]
    dataset = prepare_nary_dataset(Dataset.from_list(rows).to_iterable_dataset(), tokenizer, "best_of_n")
    iterator = iter(dataset)
    first = next(iterator)
    assert first["completions_ids"] == tokenize_nary_example(rows[0], tokenizer, "best_of_n")["completions_ids"]
    with pytest.raises(ValueError, match=r"Row 1 of the train dataset .* 'best_index' 5, out of range"):
        next(iterator)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenisation: DPO's token ids for n = 2
# ---------------------------------------------------------------------------------------------------------------------


def pairs_and_nary(rows, form):
    """The same pairs as a DPO dataset and as best-of-2 / ranking-of-2 rows, in `form`."""
    if form == "conversational":
        rows = [
            {
                "prompt": user(row["prompt"]),
                "chosen": assistant(row["chosen"].strip()),
                "rejected": assistant(row["rejected"].strip()),
            }
            for row in rows
        ]
    best = [{"prompt": r["prompt"], "completions": [r["chosen"], r["rejected"]], "best_index": 0} for r in rows]
    ranked = [{"prompt": r["prompt"], "completions": [r["rejected"], r["chosen"]], "ranking": [1, 0]} for r in rows]
    return Dataset.from_list(rows), Dataset.from_list(best), Dataset.from_list(ranked)


@pytest.mark.parametrize("form", ["standard", "conversational"])
def test_tokenization_matches_dpo_for_pairs(preference_rows, tokenizer, form):
    # The last row splits mid-word (" man|go." vs " man|darin."): the prompt must end where DPO ends it, at the
    # common prefix of both completions, not at the end of the tokenized prompt.
    rows = [*preference_rows[:3], {"prompt": "Name a fruit: man", "chosen": "go.", "rejected": "darin."}]
    pairs, best, ranked = pairs_and_nary(rows, form)
    expected = dpo_prepare(pairs, tokenizer)
    best = prepare_nary_dataset(best, tokenizer, "best_of_n")
    ranked = prepare_nary_dataset(ranked, tokenizer, "ranking")
    for dpo, b, r in zip(expected, best, ranked, strict=True):
        assert b["prompt_ids"] == r["prompt_ids"] == dpo["prompt_ids"]
        assert b["completions_ids"] == [dpo["chosen_ids"], dpo["rejected_ids"]]
        assert r["completions_ids"] == [dpo["rejected_ids"], dpo["chosen_ids"]]
        assert b["best_index"] == 0 and r["ranking"] == [1, 0]
    if form == "standard":
        eos = tokenizer.eos_token_id
        assert all(ids[-1] == eos for row in best for ids in row["completions_ids"])
        assert len(expected[3]["prompt_ids"]) < len(tokenizer("Name a fruit: man")["input_ids"])


@pytest.mark.parametrize("form", ["standard", "conversational"])
def test_tokenization_of_more_responses_matches_dpo_pairs(preference_rows, tokenizer, form):
    # Response j of an n-ary row gets the ids DPO gives it in any pair from that row.
    row = preference_rows[0]
    others = [preference_rows[1]["chosen"], preference_rows[2]["rejected"]]
    pair_rows = [{"prompt": row["prompt"], "chosen": row["chosen"], "rejected": other} for other in others]
    pairs, _, _ = pairs_and_nary(pair_rows, form)
    expected = dpo_prepare(pairs, tokenizer)
    completions = [pairs[0]["chosen"], pairs[0]["rejected"], pairs[1]["rejected"]]
    tokenized = tokenize_nary_example(
        {"prompt": pairs[0]["prompt"], "completions": completions, "ranking": [0, 2, 1]}, tokenizer, "ranking"
    )
    assert tokenized["prompt_ids"] == expected[0]["prompt_ids"] == expected[1]["prompt_ids"]
    assert tokenized["completions_ids"] == [
        expected[0]["chosen_ids"],
        expected[0]["rejected_ids"],
        expected[1]["rejected_ids"],
    ]
    assert tokenized["ranking"] == [0, 2, 1]


def test_prepare_nary_dataset_drops_rows_like_dpo(preference_rows, tokenizer):
    pairs, best, _ = pairs_and_nary(preference_rows[:6], "standard")
    # The longest prompt alone fills max_length; the shorter ones leave room for their completions.
    max_length = max(len(tokenizer(row["prompt"])["input_ids"]) for row in preference_rows[:6])
    expected = dpo_prepare(pairs, tokenizer, max_length=max_length)
    kept = prepare_nary_dataset(best, tokenizer, "best_of_n", max_length=max_length)
    assert 0 < len(kept) < len(best)
    assert kept["prompt_ids"] == expected["prompt_ids"]
    # `keep_end` keeps the end of every completion, so nothing is dropped.
    kept_end = prepare_nary_dataset(best, tokenizer, "best_of_n", max_length=max_length, truncation_mode="keep_end")
    assert len(kept_end) == len(best)


# ---------------------------------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------------------------------


RANKED_EXAMPLES = [
    {"prompt_ids": [1, 2], "completions_ids": [[3], [4, 5], [6]], "ranking": [1, 0, 2]},
    {"prompt_ids": [7], "completions_ids": [[8, 9], [10]], "ranking": [1, 0]},
]


def test_collator_flattens_rows_and_pads_ranking():
    batch = DataCollatorForNaryPreference(pad_token_id=0)(RANKED_EXAMPLES)
    expected = {
        "input_ids": [[1, 2, 3, 0], [1, 2, 4, 5], [1, 2, 6, 0], [7, 8, 9, 0], [7, 10, 0, 0]],
        "attention_mask": [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]],
        "completion_mask": [[0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 1, 0], [0, 1, 1, 0], [0, 1, 0, 0]],
        "row_index": [0, 0, 0, 1, 1],
        "response_index": [0, 1, 2, 0, 1],
        "num_responses": [3, 2],
        "ranking": [[1, 0, 2], [1, 0, -1]],
    }
    assert set(batch) == {*expected, "response_mask"}
    for key, value in expected.items():
        assert batch[key].dtype == torch.long, key
        assert batch[key].tolist() == value, key
    assert batch["response_mask"].tolist() == [[True, True, True], [True, True, False]]


def test_collator_best_index_and_pad_to_multiple_of():
    examples = [
        {"prompt_ids": [5], "completions_ids": [[6], [7, 8]], "best_index": 1},
        {"prompt_ids": [9, 9], "completions_ids": [[1], [2], [3], [4]], "best_index": 3, "prompt": "unused"},
    ]
    batch = DataCollatorForNaryPreference(pad_token_id=-7, pad_to_multiple_of=8)(examples)
    assert batch["input_ids"].shape == (6, 8)
    assert batch["best_index"].tolist() == [1, 3]
    assert "ranking" not in batch
    assert batch["num_responses"].tolist() == [2, 4]
    assert batch["row_index"].tolist() == [0, 0, 1, 1, 1, 1]
    assert batch["response_index"].tolist() == [0, 1, 0, 1, 2, 3]
    assert batch["input_ids"][1].tolist() == [5, 7, 8] + [-7] * 5
    assert batch["completion_mask"].sum(1).tolist() == [1, 2, 1, 1, 1, 1]
    assert (batch["attention_mask"].sum(1) == torch.tensor([2, 3, 3, 3, 3, 3])).all()


@pytest.mark.parametrize(
    ("truncation_mode", "input_ids", "completion_mask"),
    [
        ("keep_start", [[1, 2, 3], [1, 2, 4], [1, 2, 6], [7, 8, 9], [7, 10, 0]], [[0, 0, 1], [0, 0, 1], [0, 0, 1]]),
        ("keep_end", [[1, 2, 3], [2, 4, 5], [1, 2, 6], [7, 8, 9], [7, 10, 0]], [[0, 0, 1], [0, 1, 1], [0, 0, 1]]),
    ],
)
def test_collator_truncates_each_sequence(truncation_mode, input_ids, completion_mask):
    collator = DataCollatorForNaryPreference(pad_token_id=0, max_length=3, truncation_mode=truncation_mode)
    batch = collator(RANKED_EXAMPLES)
    assert batch["input_ids"].tolist() == input_ids
    assert batch["completion_mask"][:3].tolist() == completion_mask
    assert batch["attention_mask"][4].tolist() == [1, 1, 0]
    assert batch["ranking"].tolist() == [[1, 0, 2], [1, 0, -1]]  # truncation never touches the labels


def test_collator_errors():
    with pytest.raises(ValueError, match="Unsupported truncation mode: middle"):
        DataCollatorForNaryPreference(pad_token_id=0, max_length=2, truncation_mode="middle")(RANKED_EXAMPLES)
    mixed = [RANKED_EXAMPLES[0], {"prompt_ids": [1], "completions_ids": [[2], [3]], "best_index": 0}]
    with pytest.raises(ValueError, match="exactly one label column"):
        DataCollatorForNaryPreference(pad_token_id=0)(mixed)


BAD_TOKENIZED_EXAMPLES = {
    # The losses used to refuse these on every call; the collator is the door every batch goes through, also when
    # the dataset was tokenised elsewhere (no `prepare_nary_dataset` row validation).
    "winner among the padded slots": (
        {"prompt_ids": [1], "completions_ids": [[2], [3]], "best_index": 2},
        "Example 1 of the batch (best_of_n format) has 'best_index' 2, out of range; expected an int in [0, n) = [0, 2)",
    ),
    "negative winner": (
        {"prompt_ids": [1], "completions_ids": [[2], [3]], "best_index": -1},
        "has 'best_index' -1, out of range",
    ),
    "winner not an int": (
        {"prompt_ids": [1], "completions_ids": [[2], [3]], "best_index": 1.0},
        "has a 'best_index' that is not an int: 1.0 (float)",
    ),
    "one completion": (
        {"prompt_ids": [1], "completions_ids": [[2]], "best_index": 0},
        "Example 1 of the batch (best_of_n format) has 1 completion(s); expected at least 2",
    ),
    "ranking padded inside": (  # responses would no longer form a valid prefix of the ranked grid
        {"prompt_ids": [1], "completions_ids": [[2], [3], [4]], "ranking": [0, -1, 1]},
        "Example 1 of the batch (ranking format) has a 'ranking' [0, -1, 1] that is not a permutation of range(3): "
        "missing [2], out of range [-1]",
    ),
    "ranking too short": (
        {"prompt_ids": [1], "completions_ids": [[2], [3], [4]], "ranking": [1, 0]},
        "has a 'ranking' of length 2 ([1, 0]) for 3 completions",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENIZED_EXAMPLES))
def test_collator_refuses_bad_labels_naming_the_example(case):
    example, message = BAD_TOKENIZED_EXAMPLES[case]
    label = "ranking" if "ranking" in example else "best_index"
    good = {"prompt_ids": [5], "completions_ids": [[6], [7]], label: [1, 0] if label == "ranking" else 1}
    with pytest.raises(ValueError, match=re.escape(message)):
        DataCollatorForNaryPreference(pad_token_id=0)([good, example])


def test_collator_on_prepared_conversational_dataset(tokenizer):
    rows = [
        {"prompt": user("Name a fruit:"), "completions": [assistant(a) for a in ("kiwi.", "mango.", "stone.")]},
        {"prompt": user("Name a tool:"), "completions": [assistant(a) for a in ("saw.", "spoon.")]},
    ]
    rows[0]["ranking"], rows[1]["ranking"] = [1, 0, 2], [0, 1]
    dataset = prepare_nary_dataset(Dataset.from_list(rows), tokenizer, "ranking")
    batch = DataCollatorForNaryPreference(pad_token_id=tokenizer.pad_token_id)(list(dataset))
    assert batch["input_ids"].shape[0] == 5
    for s, (row, response) in enumerate(
        zip(batch["row_index"].tolist(), batch["response_index"].tolist(), strict=False)
    ):
        prompt_ids, completion_ids = dataset[row]["prompt_ids"], dataset[row]["completions_ids"][response]
        length = int(batch["attention_mask"][s].sum())
        assert batch["input_ids"][s, :length].tolist() == prompt_ids + completion_ids
        assert batch["completion_mask"][s].tolist()[len(prompt_ids) : length] == [1] * len(completion_ids)
        assert batch["completion_mask"][s].sum() == len(completion_ids)


# ---------------------------------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------------------------------


def ranked_dataset(form):
    answers = [[" kiwi.", " mango.", " stone."], [" saw.", " spoon.", " hammer.", " cloud."]]
    rankings = [[1, 0, 2], [2, 0, 3, 1]]
    prompts = ["Name a fruit:", "Name a tool:"]
    if form == "conversational":
        prompts = [user(p) for p in prompts]
        answers = [[assistant(a.strip()) for a in row] for row in answers]
    return Dataset.from_list(
        [
            {"id": i, "prompt": p, "completions": c, "ranking": r}
            for i, (p, c, r) in enumerate(zip(prompts, answers, rankings, strict=False))
        ]
    )


@pytest.mark.parametrize("form", ["standard", "conversational"])
def test_ranking_to_pairwise(form):
    ranked = ranked_dataset(form)
    pairs = ranking_to_pairwise(ranked)
    assert detect_preference_format(pairs.column_names) == "pairwise"
    assert sorted(pairs.column_names) == ["chosen", "id", "prompt", "rejected"]
    assert len(pairs) == 3 + 6  # n(n-1)/2 for n = 3 and n = 4
    for row in ranked:
        completions, ranking = row["completions"], row["ranking"]
        own = [pair for pair in pairs if pair["id"] == row["id"]]
        assert all(pair["prompt"] == row["prompt"] for pair in own)
        # Every pair the ranking implies, exactly once, with the better-ranked completion as chosen.
        expected = [(completions[a], completions[b]) for a, b in itertools.combinations(ranking, 2)]
        assert [(pair["chosen"], pair["rejected"]) for pair in own] == expected
    if form == "conversational":
        assert pairs[0]["chosen"] == assistant("mango.") and pairs[0]["prompt"] == user("Name a fruit:")


@pytest.mark.parametrize("form", ["standard", "conversational"])
def test_ranking_to_best_of_n_and_best_of_n_to_pairwise(form):
    ranked = ranked_dataset(form)
    best = ranking_to_best_of_n(ranked)
    assert detect_preference_format(best.column_names) == "best_of_n"
    assert best["best_index"] == [1, 2]
    assert best["completions"] == ranked["completions"] and best["prompt"] == ranked["prompt"]

    pairs = best_of_n_to_pairwise(best)
    assert len(pairs) == 2 + 3  # n - 1 per row
    for row in best:
        own = [pair for pair in pairs if pair["id"] == row["id"]]
        winner = row["completions"][row["best_index"]]
        losers = [c for j, c in enumerate(row["completions"]) if j != row["best_index"]]
        assert [pair["chosen"] for pair in own] == [winner] * len(losers)
        assert [pair["rejected"] for pair in own] == losers


def test_conversions_validate_rows_and_formats():
    bad = Dataset.from_list([ranking_row(), ranking_row(ranking=[0, 1, 1])])
    with pytest.raises(ValueError, match=r"Row 1 \(ranking format\) .* missing \[2\], repeated \[1\]"):
        ranking_to_pairwise(bad)
    with pytest.raises(ValueError, match=r"Row 1 \(ranking format\)"):
        ranking_to_best_of_n(bad)
    with pytest.raises(ValueError, match="Expected a best_of_n dataset, but its columns"):
        best_of_n_to_pairwise(ranked_dataset("standard"))
    with pytest.raises(ValueError, match="Expected a ranking dataset, but its columns"):
        ranking_to_best_of_n(Dataset.from_list([best_of_n_row()]))


def test_ranking_to_pairwise_on_iterable_dataset():
    ranked = ranked_dataset("standard")
    expected = ranking_to_pairwise(ranked).to_list()
    assert list(ranking_to_pairwise(ranked.to_iterable_dataset())) == expected


def test_identical_completion_rows_per_format():
    pairs = Dataset.from_list(
        [
            {"prompt": "p", "chosen": " a.", "rejected": " b."},
            {"prompt": "p", "chosen": " a.", "rejected": " a."},  # no preference
            {"prompt": "p", "chosen": " a.", "rejected": " a. "},  # differs: not flagged
        ]
    )
    assert identical_completion_rows(pairs, "pairwise") == [1]
    best_of_n = Dataset.from_list(
        [
            {"prompt": "p", "completions": [" a.", " b.", " b."], "best_index": 0},  # duplicate losers: harmless
            {"prompt": "p", "completions": [" a.", " b.", " a."], "best_index": 0},  # the winner also loses
            {"prompt": "p", "completions": [" a.", " b."], "best_index": 1},
        ]
    )
    assert identical_completion_rows(best_of_n, "best_of_n") == [1]
    message = [{"role": "assistant", "content": "a."}]
    rankings = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": "p"}], "completions": [message, message], "ranking": [0, 1]},
            {
                "prompt": [{"role": "user", "content": "p"}],
                "completions": [message, [{"role": "assistant", "content": "b."}]],
                "ranking": [1, 0],
            },
        ]
    )
    assert identical_completion_rows(rankings, "ranking") == [0]


def test_identical_completions_warn_once_with_count_and_rows():
    rows = [{"prompt": "p", "completions": [" a.", " a.", " c."], "ranking": [0, 1, 2]}] * 12
    rows += [{"prompt": "p", "completions": [" a.", " b."], "ranking": [1, 0]}]
    with pytest.warns(UserWarning) as warned:
        warn_identical_completions(Dataset.from_list(rows), "ranking", "train")
    assert [str(w.message) for w in warned] == [
        "12 of 13 rows of the train dataset rank the same completion twice: the ranking asks a text to be both above "
        "and below itself, and the loss pushes it both ways (rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...). Deduplicate "
        "each row's completions before ranking them."
    ]
