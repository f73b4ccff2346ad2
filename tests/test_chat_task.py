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

"""The chat task of `benchmarks.chat_task`: its known reward, its simulated annotators, its shipped files."""

import math
import random
import shutil
from itertools import product

import pytest
from datasets import Dataset

from benchmarks import chat_task
from benchmarks.chat_task import (
    MAX_REWARD,
    bradley_terry_pairs,
    jsonl_text,
    label_samples,
    matched_items,
    plackett_luce_ranking,
    prompt_pool,
    prompt_splits,
    ranking_row,
    read_jsonl,
    reward,
    reward_terms,
)
from trl_spo import detect_preference_format
from trl_spo.data import validate_nary_example

from .conftest import REPO_ROOT


DATA_DIR = REPO_ROOT / "recipes" / "smollm2" / "data"
FRUITS = {"family": "list", "category": "fruits", "count": 3, "max_words": 26}
DOG_AND_MOON = {"family": "story", "characters": ["dog", "moon"], "sentences": 2, "max_words": 40}
SLEEP_TIPS = {"family": "tips", "topic": "sleeping better", "count": 3, "max_words": 44}
# Rewards below are products and quotients of small integers (4 * 2/3, 4 * 3/7, ...): one or two float roundings,
# so a relative tolerance of 1e-12 is loose for them and tight for any other formula.
EXACT = 1e-12


class FixedDraws:
    """A stand-in for `random.Random` whose `random()` returns the given values, in order, and counts the draws."""

    def __init__(self, values):
        self.values = list(values)
        self.used = 0

    def random(self) -> float:
        value = self.values[self.used]
        self.used += 1
        return value


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------------------------------------------------------------
# The known reward


@pytest.mark.parametrize(
    "task, answer",
    [
        (FRUITS, "1. Apple\n2. Banana\n3. Cherry"),
        (FRUITS, "Mango, kiwi and plums."),
        (FRUITS, "Here are three fruits: pears, grapes, and a lemon."),
        (FRUITS, "- Strawberries\n- Blueberries\n- Watermelon"),
        (DOG_AND_MOON, "A dog looked up at the moon every night. One evening the moon winked back at him."),
        (DOG_AND_MOON, "The old puppy howled at the bright moonlight. Somewhere far away, a wolf howled back."),
        (SLEEP_TIPS, "1. Keep a regular sleep schedule.\n2. Avoid screens before bed.\n3. Keep your bedroom dark."),
        (
            SLEEP_TIPS,
            "- Skip coffee after noon.\n- Read a book in bed instead of scrolling.\n- Take a short evening walk.",
        ),
    ],
)
def test_many_different_answers_reach_the_maximum(task, answer):
    # The expert distribution Softmax(r / alpha) has entropy only if many texts share the top reward.
    assert reward(task, answer) == pytest.approx(MAX_REWARD, rel=EXACT)


def test_partial_answers_hand_computed():
    # One distinct item of three (a repeated item counts once): 4 * 1/3.
    assert reward(FRUITS, "Apple, apple, apple.") == pytest.approx(4 / 3, rel=EXACT)
    # Two of three: 4 * 2/3.
    assert reward(FRUITS, "Pineapple and dates.") == pytest.approx(8 / 3, rel=EXACT)
    # Five items when three were asked: 1 - 0.1 * 2 = 0.8 of the content credit.
    assert reward(FRUITS, "Apple, banana, cherry, mango, kiwi.") == pytest.approx(3.2, rel=EXACT)
    # Both characters (2 * 0.375), one sentence (0.125 of 0.25), 7 words that are not in the prompt (puppy chased
    # across sleepy little town tonight) of the 8 required: 4 * 0.875 * 7/8.
    answer = "A puppy chased the moon across the sleepy little town tonight."
    assert reward(DOG_AND_MOON, answer) == pytest.approx(4 * 0.875 * 7 / 8, rel=EXACT)
    # Three sentences (half the shape credit) and 6 new words (barked rose night was long cold): 4 * 0.875 * 6/8.
    answer = "The dog barked. The moon rose. The night was long and cold."
    assert reward(DOG_AND_MOON, answer) == pytest.approx(4 * 0.875 * 6 / 8, rel=EXACT)
    # Two on-topic sentences read as two tips of three: 4 * 2/3.
    assert reward(SLEEP_TIPS, "Go to bed early. Skip coffee after noon.") == pytest.approx(8 / 3, rel=EXACT)


def test_repetition_does_not_pay():
    # The three items three times: content 1, but 7 word trigrams of which 3 distinct -> 4 * 3/7.
    repeated = "Apple, banana, cherry. " * 3
    assert reward(FRUITS, repeated) == pytest.approx(4 * 3 / 7, rel=EXACT)
    assert reward(FRUITS, repeated) < reward(FRUITS, "Apple, banana, cherry.")
    # One tip three times: one distinct tip, 13 trigrams of which 5 distinct -> 4 * 1/3 * 5/13.
    tip = "1. Keep a regular sleep schedule.\n2. Keep a regular sleep schedule.\n3. Keep a regular sleep schedule."
    assert reward(SLEEP_TIPS, tip) == pytest.approx(4 / 3 * 5 / 13, rel=EXACT)


def test_length_does_not_pay():
    # Distinct filler words (no repeated trigram, no fruit): only the length factor changes.
    filler = ["z" + a + b for a, b in product("bcdfghjk", repeat=2)]
    answer = "Apple, banana, cherry."
    for extra, factor in [(10, 1.0), (23, 1.0), (36, 2 - 39 / 26), (49, 0.0), (60, 0.0)]:
        padded = answer + " " + " ".join(filler[:extra])
        # 3 + extra words against a budget of 26: full credit up to 26, linear to 0 at 52.
        assert reward(FRUITS, padded) == pytest.approx(4 * factor, rel=EXACT, abs=EXACT)
    # More valid items than asked never beat exactly the items asked for.
    assert reward(FRUITS, "Apple, banana, cherry, mango, kiwi, lemon, lime, fig, plum.") < reward(FRUITS, answer)


def test_empty_and_echoed_answers_score_zero():
    for task, prompt in [
        (FRUITS, "List 3 fruits."),
        (DOG_AND_MOON, "Write a two-sentence story about a dog and the moon."),
        (SLEEP_TIPS, "Give 3 tips for sleeping better."),
    ]:
        assert reward(task, "") == 0.0
        assert reward(task, " \n ") == 0.0
        assert reward(task, prompt) == 0.0


def test_reward_terms_multiply_to_the_reward():
    terms = reward_terms(FRUITS, "Apple, banana. " * 3)
    # content 2/3; length 1 (6 words); trigrams (apple banana apple) (banana apple banana) twice each: 2 of 4 distinct
    assert terms["content"] == pytest.approx(2 / 3, rel=EXACT) and terms["length"] == 1.0
    assert terms["distinctness"] == 0.5
    assert terms["reward"] == pytest.approx(4 * 2 / 3 * 1 / 2, rel=EXACT)
    with pytest.raises(ValueError, match="family"):
        reward({"family": "poem"}, "roses are red")


def test_matched_items_synonyms_plurals_and_longest_names():
    assert matched_items("ocean animals", "A blue whale, two whales, a killer whale and an orca.") == [
        "blue whale",  # one item, not "blue" + "whale"
        "whale",
        "orca",  # "killer whale" is the orca's other name: one item
    ]
    assert matched_items("colors", "Grey, gray, GREY and navy.") == ["gray", "navy"]
    assert matched_items("pieces of clothing", "A T-shirt and socks.") == ["shirt", "sock"]
    assert matched_items("fruits", "Cherries, peaches and mangoes.") == ["cherry", "peach", "mango"]


def test_no_word_sequence_names_two_items_of_one_category():
    # A variant claimed by two entries would make the item count depend on the order of the lexicon.
    for category, entries in chat_task.LIST_CATEGORIES.items():
        owners = {}
        for entry in entries:
            for variant, item in chat_task._variants(entry).items():
                assert owners.setdefault(variant, item) == item, (category, variant, owners[variant], item)


def test_no_prompt_names_an_item_of_its_own_category():
    # Otherwise echoing the request would earn content credit.
    for row in prompt_pool():
        task = row["task"]
        if task["family"] == "list":
            assert matched_items(task["category"], row["prompt"][0]["content"]) == [], row["prompt"]
        assert reward(task, row["prompt"][0]["content"]) == 0.0, row["prompt"]


# ---------------------------------------------------------------------------------------------------------------------
# Simulated annotators


def test_bradley_terry_pairs_with_fixed_draws():
    prompt = [{"role": "user", "content": "List 3 fruits."}]
    answers = ["A", "B", "A", "C"]
    rewards = [4.0, 0.0, 4.0, 2.0]
    # Pairs in order (0,1) (0,3) (1,2) (1,3) (2,3); (0,2) has identical texts and takes no draw.
    # P(first wins): sigmoid(4) = 0.982, sigmoid(2) = 0.881, sigmoid(-4) = 0.018, sigmoid(-2) = 0.119, sigmoid(2).
    draws = FixedDraws([0.5, 0.95, 0.01, 0.5, 0.2])
    rows = bradley_terry_pairs(prompt, answers, rewards, draws)
    assert draws.used == 5
    winners = [(row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in rows]
    # 0.5 < 0.982: A; 0.95 >= 0.881: C; 0.01 < 0.018: B (the unlikely upset); 0.5 >= 0.119: C; 0.2 < 0.881: A.
    assert winners == [("A", "B"), ("C", "A"), ("B", "A"), ("C", "B"), ("A", "C")]
    assert all(row["prompt"] == prompt and row["chosen"][0]["role"] == "assistant" for row in rows)
    with pytest.raises(ValueError, match="one reward per answer"):
        bradley_terry_pairs(prompt, answers, rewards[:2], draws)


def test_bradley_terry_frequency_matches_the_model():
    # 20,000 labels of one pair with r_a - r_b = 1: P(a chosen) = sigmoid(1) = 0.7311, binomial standard error
    # sqrt(0.7311 * 0.2689 / 20000) = 0.0031. Five standard errors (0.0157) bound a false alarm below 1e-6, and catch
    # a label drawn at the wrong temperature (sigmoid(2) = 0.881, sigmoid(0.5) = 0.622) or with the sides swapped.
    rng = random.Random(0)
    n = 20_000
    wins = sum(
        bradley_terry_pairs([], ["a", "b"], [1.0, 0.0], rng)[0]["chosen"][0]["content"] == "a" for _ in range(n)
    )
    p = sigmoid(1.0)
    assert abs(wins / n - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_plackett_luce_ranking_with_fixed_draws():
    # Rewards log 1, log 2, log 3: softmax weights 1 : 2 : 3 (exact up to exp/log rounding, 1e-16, far below the
    # margins of the draws below). Step 1: 0.4 * 6 = 2.4 lands in (1, 3] -> answer 1. Step 2, answers {0, 2} with
    # weights 1 : 3: 0.3 * 4 = 1.2 lands in (1, 4] -> answer 2. Answer 0 is last, with no draw.
    draws = FixedDraws([0.4, 0.3])
    assert plackett_luce_ranking([0.0, math.log(2), math.log(3)], draws) == [1, 2, 0]
    assert draws.used == 2
    # A draw below the first weight picks the first answer left.
    assert plackett_luce_ranking([0.0, math.log(2), math.log(3)], FixedDraws([0.1, 0.9])) == [0, 2, 1]


def test_plackett_luce_first_pick_frequency():
    # P(answer 2 first) = e^2 / (1 + e + e^2) = 0.6652; 20,000 draws: standard error 0.0033, bound 5 of them (false
    # alarm < 1e-6); a uniform pick (1/3) or argmax (1) are far outside.
    rng = random.Random(1)
    n = 20_000
    first = sum(plackett_luce_ranking([0.0, 1.0, 2.0], rng)[0] == 2 for _ in range(n))
    p = math.exp(2) / (1 + math.e + math.exp(2))
    assert abs(first / n - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_ranking_row_merges_identical_answers():
    prompt = [{"role": "user", "content": "Name 2 birds."}]
    row = ranking_row(prompt, ["owl, crow", "owl, crow", "emu"], [4.0, 4.0, 0.0], FixedDraws([0.5]))
    # Two distinct answers, weights e^4 : 1; 0.5 * (e^4 + 1) < e^4 -> the first (the owl answer) ranks first.
    assert row == {
        "prompt": prompt,
        "completions": [
            [{"role": "assistant", "content": "owl, crow"}],
            [{"role": "assistant", "content": "emu"}],
        ],
        "ranking": [0, 1],
    }
    assert ranking_row(prompt, ["same", "same"], [1.0, 1.0], FixedDraws([])) is None


def test_labelled_rows_are_formats_the_trainer_reads():
    samples = [
        {"prompt": [{"role": "user", "content": "List 2 colors."}], "answers": ["Red, blue.", "Hmm.", "", "Teal."]}
        | {"rewards": [4.0, 0.0, 0.0, 2.0]}
    ]
    pairs, rankings = label_samples(samples, seed=0)
    # The blank answer is left out of both files: 3 answers, 3 pairs, one ranking of 3.
    assert len(pairs) == 3 and len(rankings) == 1
    assert all(row["chosen"][0]["content"] and row["rejected"][0]["content"] for row in pairs)
    assert detect_preference_format(Dataset.from_list(pairs).column_names) == "pairwise"
    assert detect_preference_format(Dataset.from_list(rankings).column_names) == "ranking"
    validate_nary_example(rankings[0], 0, "ranking")
    assert len(rankings[0]["completions"]) == 3 and sorted(rankings[0]["ranking"]) == [0, 1, 2]
    # Same seed, same labels; the two annotators draw from separate generators.
    assert label_samples(samples, seed=0) == (pairs, rankings)


# ---------------------------------------------------------------------------------------------------------------------
# Prompts and shipped files


def test_prompt_splits_sizes_disjoint_and_every_family():
    train, heldout = prompt_splits()
    assert len(train) == 200 and len(heldout) == 64
    train_texts = {row["prompt"][0]["content"] for row in train}
    heldout_texts = {row["prompt"][0]["content"] for row in heldout}
    assert len(train_texts) == 200 and len(heldout_texts) == 64 and not train_texts & heldout_texts
    for rows in (train, heldout):
        assert {row["task"]["family"] for row in rows} == {"list", "story", "tips"}
    assert len(prompt_pool()) == 15 * 3 * 5 + 8 * 8 + 12 * 2 * 2


def test_shipped_prompt_files_are_the_generator_output():
    train, heldout = prompt_splits()
    assert (DATA_DIR / chat_task.PROMPTS_TRAIN_FILE).read_text(encoding="utf-8") == jsonl_text(train)
    assert (DATA_DIR / chat_task.PROMPTS_HELDOUT_FILE).read_text(encoding="utf-8") == jsonl_text(heldout)


@pytest.mark.parametrize(
    "samples_file, prompts_file",
    [
        (chat_task.SAMPLES_TRAIN_FILE, chat_task.PROMPTS_TRAIN_FILE),
        (chat_task.SAMPLES_HELDOUT_FILE, chat_task.PROMPTS_HELDOUT_FILE),
    ],
)
def test_shipped_samples_match_their_prompts_and_rewards(samples_file, prompts_file):
    samples = read_jsonl(DATA_DIR / samples_file)
    prompts = read_jsonl(DATA_DIR / prompts_file)
    assert [(s["prompt"], s["task"]) for s in samples] == [(p["prompt"], p["task"]) for p in prompts]
    for row in samples:
        assert len(row["answers"]) == len(row["rewards"]) == len(row["truncated"]) == 4
        assert all(isinstance(flag, bool) for flag in row["truncated"])
        for answer, stored in zip(row["answers"], row["rewards"], strict=False):
            # Stored rounded to 6 decimals: within 5e-7 of the reward function's value.
            assert abs(stored - reward(row["task"], answer)) <= 5e-7
            assert 0.0 <= stored <= MAX_REWARD


def test_label_command_regenerates_the_shipped_files_byte_for_byte(tmp_path):
    names = (
        chat_task.SAMPLES_TRAIN_FILE,
        chat_task.SAMPLES_HELDOUT_FILE,
        chat_task.PREFERENCES_FILE,
        chat_task.RANKINGS_FILE,
    )
    for name in names[:2]:
        shutil.copy(DATA_DIR / name, tmp_path / name)
    assert chat_task.main(["label", "--data", str(tmp_path)]) == 0
    for name in names:
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), name
    pairs = read_jsonl(DATA_DIR / chat_task.PREFERENCES_FILE)
    assert len(pairs) >= 200 and detect_preference_format(pairs[0].keys()) == "pairwise"
    for index, row in enumerate(read_jsonl(DATA_DIR / chat_task.RANKINGS_FILE)):
        validate_nary_example(row, index, "ranking")
