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
Synthetic preference pairs of exact token budgets, and a byte-level BPE trained on their words: the data of the
step-cost benchmarks (`step_cost.py` on CPU, `step_cost_gpu.py`), built locally so nothing is downloaded.
"""

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast


EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

WORDS = (
    "the a an one two some many every each this that these those my your our their his her its and or but so because "
    "while when where after before under over near between through without within about across against along around "
    "river mountain forest city village garden kitchen market library station harbour bridge castle island desert "
    "teacher doctor farmer sailor painter baker writer student child friend neighbour traveller engineer musician "
    "walks runs builds paints writes reads carries finds opens closes follows watches remembers explains answers "
    "quickly slowly carefully quietly happily suddenly finally often never always sometimes together alone again "
    "red green blue yellow bright dark old young small large quiet loud warm cold early late simple strange gentle "
    "apple bread cheese water lamp window door table chair letter story song picture question answer reason idea "
    "morning evening night summer winter autumn spring weather rain snow wind sun moon star cloud stone road path"
).split()
QUESTION_STARTS = ("Why does", "How can", "What makes", "Where does", "When will", "Who helps", "Which way does")


def random_sentence(rng: random.Random, num_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(num_words)).capitalize() + "."


def build_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the benchmark's own text, with an EOS and a distinct pad token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)


def num_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def text_with_length(rng: random.Random, tokenizer, max_tokens: int, prefix: str = " ") -> str:
    """`prefix` followed by random words: the longest such text of at most `max_tokens` tokens."""
    text = prefix.rstrip() if prefix.strip() else ""
    while True:
        candidate = (text + " " if text else prefix) + rng.choice(WORDS)
        if num_tokens(tokenizer, candidate) > max_tokens:
            return text
        text = candidate


def build_rows(
    rng: random.Random, tokenizer, num_rows: int, completion_length: int, prompt_length: int = 20
) -> list[dict[str, str]]:
    """
    Pairwise rows in TRL's standard explicit-prompt format: `{"prompt", "chosen", "rejected"}` strings.

    Prompts are 3/5 of `prompt_length` to `prompt_length` tokens. Each completion has between 3/4 of `completion_length` and `completion_length` tokens,
    the EOS that the trainers append included, so `max_completion_length = completion_length` bounds them too.
    """
    rows = []
    for _ in range(num_rows):
        question = text_with_length(
            rng,
            tokenizer,
            rng.randint(3 * prompt_length // 5, prompt_length) - 3,
            prefix="Q: " + rng.choice(QUESTION_STARTS),
        )
        row = {"prompt": question + "?\nA:"}
        for column in ("chosen", "rejected"):
            row[column] = text_with_length(
                rng, tokenizer, rng.randint(3 * completion_length // 4, completion_length) - 1
            )
        rows.append(row)
    return rows
