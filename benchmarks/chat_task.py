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
An open-ended chat task with a known reward, for SPO on a real chat model (SmolLM2-135M-Instruct, on a CPU).

The task's prompts ask for short answers that many different texts answer well: "List 3 fruits.", "Write a
two-sentence story about a fox and a boat.", "Give 2 tips for saving money." A known reward `r(task, answer)`
([`reward`]) scores any answer, so that

- preference data can be labelled like AlpacaFarm's simulated annotators: n answers per prompt sampled from the base
  model, pairs labelled by Bradley-Terry on `r` ([`bradley_terry_pairs`]), rankings drawn from Plackett-Luce on `r`
  ([`plackett_luce_ranking`]), all with a fixed seed;
- a trained policy is measured without a judge model: mean reward, win rate against the base model's answers under `r`.

Since many answers share the top score, the expert distribution `Softmax(r / alpha)` of SPO's Theorem 1 has real
entropy: a method that collapses onto one top answer is visibly not matching it.

Files (`recipes/smollm2/data/`), each regenerable by one command:

    python -m benchmarks.chat_task prompts --out recipes/smollm2/data      # prompts_{train,heldout}.jsonl
    python -m benchmarks.chat_task generate --out recipes/smollm2/data     # samples the base model, labels
    python -m benchmarks.chat_task label --data recipes/smollm2/data       # relabels the samples, no sampling

Everything here is pure and seeded except [`generate_base_samples`], which runs the model.
"""

import argparse
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any


# ---------------------------------------------------------------------------------------------------------------------
# Vocabularies the reward checks answers against
# ---------------------------------------------------------------------------------------------------------------------

# One entry per item: "canonical|synonym|...". Matching is case-insensitive, on whole words, and accepts regular
# plurals of the last word (see `_variants`); synonyms cover spelling variants and irregular plurals. Two spellings of
# one item ("grey", "gray") count once.
LIST_CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruits": (
        "apple", "banana", "orange", "mango|mangoes", "pear", "peach", "plum", "cherry", "grape", "strawberry",
        "blueberry", "raspberry", "blackberry", "cranberry", "kiwi", "pineapple", "watermelon", "melon",
        "cantaloupe", "lemon", "lime", "grapefruit", "apricot", "fig", "date", "papaya", "guava", "coconut",
        "pomegranate", "lychee", "passion fruit", "nectarine", "tangerine", "clementine", "persimmon", "avocado",
        "gooseberry", "dragon fruit", "jackfruit", "mulberry",
    ),
    "vegetables": (
        "carrot", "potato|potatoes", "tomato|tomatoes", "onion", "garlic", "broccoli", "cauliflower", "cabbage",
        "lettuce", "spinach", "kale", "cucumber", "bell pepper|pepper", "zucchini", "eggplant|aubergine", "pea",
        "green bean|bean", "corn", "celery", "asparagus", "radish", "beet|beetroot", "turnip", "pumpkin", "squash",
        "leek", "artichoke", "brussels sprout", "sweet potato|sweet potatoes", "mushroom", "okra", "parsnip",
        "chard", "arugula",
    ),
    "ocean animals": (
        "whale", "blue whale", "humpback whale", "dolphin", "shark", "octopus|octopi", "squid", "jellyfish",
        "starfish|sea star", "seal", "sea lion", "walrus", "sea turtle|turtle", "crab", "lobster", "shrimp", "clam",
        "oyster", "mussel", "eel", "stingray|manta ray|ray", "seahorse", "orca|killer whale", "tuna", "salmon",
        "cod", "coral", "sea urchin", "sea otter|otter", "narwhal", "manatee", "pufferfish", "clownfish",
        "swordfish", "sea anemone|anemone", "plankton|zooplankton", "krill", "barracuda", "marlin", "porpoise",
    ),
    "farm animals": (
        "cow|cattle", "pig", "sheep", "goat", "horse", "chicken", "hen", "rooster", "duck", "goose|geese",
        "turkey", "donkey", "rabbit", "llama", "alpaca", "ox|oxen", "mule", "bull", "calf|calves", "lamb", "pony",
        "piglet", "sheepdog", "buffalo", "yak",
    ),
    "forest animals": (
        "deer", "bear", "wolf|wolves", "fox", "rabbit", "squirrel", "owl", "raccoon", "moose", "badger", "hedgehog",
        "chipmunk", "skunk", "porcupine", "boar|wild boar", "elk", "lynx", "woodpecker", "bat", "beaver", "hare",
        "mouse|mice", "snake", "frog", "toad", "weasel", "mole", "opossum", "bobcat", "cougar", "lizard",
    ),
    "birds": (
        "eagle", "hawk", "owl", "sparrow", "robin", "crow", "raven", "pigeon", "dove", "parrot", "penguin",
        "flamingo", "swan", "duck", "goose|geese", "peacock", "ostrich", "hummingbird", "woodpecker",
        "seagull|gull", "pelican", "falcon", "vulture", "canary", "cardinal", "blue jay", "finch", "heron",
        "stork", "kingfisher", "toucan", "magpie", "albatross", "emu", "starling", "wren",
    ),
    "colors": (
        "red", "orange", "yellow", "green", "blue", "purple", "violet", "indigo", "pink", "brown", "black",
        "white", "gray|grey", "gold", "silver", "beige", "turquoise", "teal", "navy", "maroon", "magenta", "cyan",
        "lavender", "crimson", "scarlet", "olive", "ivory", "coral", "amber", "tan",
    ),
    "countries in Europe": (
        "france", "germany", "italy", "spain", "portugal", "greece", "ireland",
        "united kingdom|uk|britain|great britain", "england", "scotland", "wales", "netherlands|holland",
        "belgium", "luxembourg", "switzerland", "austria", "poland", "czech republic|czechia", "slovakia",
        "hungary", "romania", "bulgaria", "croatia", "serbia", "slovenia", "bosnia", "albania", "north macedonia",
        "montenegro", "denmark", "norway", "sweden", "finland", "iceland", "estonia", "latvia", "lithuania",
        "ukraine", "belarus", "moldova", "russia", "malta", "cyprus", "monaco", "andorra", "liechtenstein",
        "san marino",
    ),
    "ball sports": (
        "soccer", "football|american football", "basketball", "baseball", "tennis", "volleyball", "golf",
        "hockey", "cricket", "rugby", "table tennis|ping pong", "handball", "water polo", "bowling", "softball",
        "lacrosse", "squash", "polo", "dodgeball", "netball", "billiards|pool", "snooker", "kickball", "croquet",
        "racquetball", "pickleball", "badminton",
    ),
    "musical instruments": (
        "piano", "guitar", "violin", "viola", "cello", "double bass|bass", "drum", "flute", "clarinet", "oboe",
        "bassoon", "saxophone", "trumpet", "trombone", "tuba", "french horn|horn", "harp", "ukulele", "banjo",
        "mandolin", "harmonica", "accordion", "xylophone", "keyboard", "organ", "synthesizer", "tambourine",
        "triangle", "bagpipe", "sitar", "recorder", "cymbal",
    ),
    "kitchen items": (
        "stove", "oven", "refrigerator|fridge", "microwave", "toaster", "kettle", "blender", "sink", "dishwasher",
        "pot", "frying pan|pan", "knife|knives", "fork", "spoon", "plate", "bowl", "cup", "mug", "glass",
        "spatula", "whisk", "ladle", "cutting board", "colander", "grater", "peeler", "rolling pin", "can opener",
        "teapot", "tongs", "oven mitt", "apron", "napkin", "cabinet|cupboard", "coffee maker", "baking sheet",
        "measuring cup", "sponge", "tray", "jar",
    ),
    "flowers": (
        "rose", "tulip", "daisy", "sunflower", "lily", "orchid", "daffodil", "lavender", "violet", "poppy",
        "carnation", "marigold", "peony", "iris", "lotus", "jasmine", "hibiscus", "dahlia", "chrysanthemum",
        "magnolia", "lilac", "begonia", "geranium", "petunia", "hyacinth", "camellia", "gardenia", "azalea",
        "buttercup", "dandelion", "cherry blossom", "bluebell", "snowdrop", "zinnia", "aster", "freesia",
    ),
    "vehicles": (
        "car", "bus", "truck|lorry", "train", "bicycle|bike", "motorcycle|motorbike", "scooter",
        "airplane|plane|aeroplane|jet", "helicopter", "boat", "ship", "submarine", "taxi", "van", "tram",
        "subway|metro", "tractor", "ambulance", "skateboard", "jeep", "rocket", "canoe", "kayak", "sailboat",
        "ferry", "yacht", "limousine", "minivan", "fire truck|fire engine",
    ),
    "jobs": (
        "teacher", "doctor", "nurse", "engineer", "lawyer", "chef|cook", "farmer", "pilot", "firefighter",
        "police officer", "scientist", "artist", "musician", "writer|author", "baker", "carpenter", "plumber",
        "electrician", "dentist", "pharmacist", "architect", "accountant", "mechanic", "programmer|developer",
        "journalist", "photographer", "librarian", "cashier", "waiter|waitress", "actor|actress", "designer",
        "veterinarian|vet", "soldier", "judge", "astronaut", "painter", "tailor", "gardener", "driver",
    ),
    "pieces of clothing": (
        "shirt|t shirt|tshirt", "pants|trousers", "jeans", "shorts", "skirt", "dress", "jacket", "coat", "sweater",
        "hoodie", "hat", "cap", "scarf|scarves", "glove", "sock", "shoe", "boot", "sandal", "belt", "tie", "suit",
        "vest", "blouse", "pajamas|pyjamas", "raincoat", "mitten", "sneaker", "slipper", "uniform", "cardigan",
    ),
}  # fmt: skip

# How each list category is asked for (its lexicon's name is not always natural English).
LIST_CATEGORY_PHRASES = {
    "fruits": "fruits",
    "vegetables": "vegetables",
    "ocean animals": "animals that live in the ocean",
    "farm animals": "farm animals",
    "forest animals": "animals that live in the forest",
    "birds": "birds",
    "colors": "colors",
    "countries in Europe": "countries in Europe",
    "ball sports": "sports played with a ball",
    "musical instruments": "musical instruments",
    "kitchen items": "things you can find in a kitchen",
    "flowers": "flowers",
    "vehicles": "vehicles",
    "jobs": "jobs",
    "pieces of clothing": "pieces of clothing",
}

# Characters of the two-sentence stories and the words that count as mentioning them.
STORY_CHARACTERS: dict[str, tuple[str, ...]] = {
    "dog": ("dog", "dogs", "puppy", "puppies"),
    "cat": ("cat", "cats", "kitten", "kittens"),
    "bird": ("bird", "birds"),
    "horse": ("horse", "horses", "pony"),
    "rabbit": ("rabbit", "rabbits", "bunny", "bunnies"),
    "bear": ("bear", "bears"),
    "fox": ("fox", "foxes"),
    "owl": ("owl", "owls"),
    "moon": ("moon", "moons", "moonlight", "moonlit"),
    "boat": ("boat", "boats"),
    "garden": ("garden", "gardens"),
    "key": ("key", "keys"),
    "hat": ("hat", "hats"),
    "river": ("river", "rivers"),
    "storm": ("storm", "storms", "stormy"),
    "lamp": ("lamp", "lamps"),
}
STORY_SUBJECTS = ("dog", "cat", "bird", "horse", "rabbit", "bear", "fox", "owl")
STORY_OBJECTS = {
    "moon": "the moon",
    "boat": "a boat",
    "garden": "a garden",
    "key": "a key",
    "hat": "a hat",
    "river": "a river",
    "storm": "a storm",
    "lamp": "a lamp",
}

# Goals of the tips prompts and the words a tip must use to count as being about that goal.
TIP_TOPICS: dict[str, tuple[str, ...]] = {
    "sleeping better": (
        "sleep", "sleeping", "bed", "bedtime", "bedroom", "night", "nap", "naps", "caffeine", "coffee", "screen",
        "screens", "phone", "dark", "quiet", "routine", "schedule", "relax", "relaxing", "pillow", "mattress",
        "rest", "wake", "alarm", "light", "cool", "tired", "evening",
    ),
    "staying focused": (
        "focus", "focused", "distraction", "distractions", "phone", "notifications", "break", "breaks", "task",
        "tasks", "goal", "goals", "list", "timer", "pomodoro", "quiet", "workspace", "desk", "attention", "plan",
        "schedule", "priority", "priorities", "minutes", "concentrate", "concentration", "multitasking",
    ),
    "saving money": (
        "budget", "save", "saving", "savings", "spend", "spending", "money", "expenses", "cook", "cooking",
        "coupons", "discount", "discounts", "sale", "sales", "bank", "account", "debt", "credit", "cash",
        "subscriptions", "bills", "track", "cheaper", "income", "shopping", "impulse", "automate",
    ),
    "learning a new language": (
        "practice", "practise", "vocabulary", "words", "speak", "speaking", "listen", "listening", "native",
        "speakers", "grammar", "app", "apps", "flashcards", "read", "reading", "movies", "music", "daily",
        "conversation", "conversations", "language", "lessons", "tutor", "phrases", "write", "immerse",
    ),
    "eating healthier": (
        "vegetables", "fruit", "fruits", "water", "sugar", "sugary", "processed", "whole", "grains", "protein",
        "cook", "cooking", "meals", "meal", "portions", "portion", "snacks", "snack", "fiber", "salt",
        "breakfast", "diet", "healthy", "food", "foods", "eat", "eating", "drinks",
    ),
    "staying calm": (
        "breathe", "breathing", "breath", "breaths", "relax", "relaxing", "calm", "meditation", "meditate",
        "walk", "pause", "count", "music", "stress", "thoughts", "mindfulness", "slow", "slowly", "rest", "sleep",
        "talk", "journal", "exercise", "nature", "quiet", "anxiety",
    ),
    "exercising more": (
        "walk", "walking", "run", "running", "exercise", "workout", "workouts", "gym", "stairs", "bike",
        "cycling", "stretch", "stretching", "minutes", "goal", "goals", "schedule", "routine", "friend", "sport",
        "sports", "dance", "swim", "swimming", "active", "steps", "habit", "training",
    ),
    "keeping a houseplant alive": (
        "water", "watering", "sunlight", "light", "sun", "soil", "pot", "drainage", "fertilizer", "fertilize",
        "leaves", "roots", "window", "humidity", "temperature", "overwater", "overwatering", "dry", "moist",
        "prune", "repot", "plant", "plants", "shade", "mist", "indirect",
    ),
    "making new friends": (
        "join", "club", "clubs", "group", "groups", "class", "classes", "volunteer", "volunteering", "talk",
        "conversation", "conversations", "listen", "smile", "invite", "interests", "hobbies", "hobby", "events",
        "people", "questions", "friendly", "open", "kind", "meet", "community", "team",
    ),
    "studying for a test": (
        "study", "studying", "notes", "review", "practice", "questions", "flashcards", "schedule", "sleep",
        "breaks", "break", "quiz", "summarize", "summary", "teach", "explain", "early", "plan", "topics",
        "exam", "test", "material", "chapters", "group", "memorize", "read",
    ),
    "staying hydrated": (
        "water", "bottle", "drink", "drinking", "glass", "glasses", "fruit", "fruits", "vegetables", "reminder",
        "reminders", "thirsty", "caffeine", "alcohol", "tea", "soup", "cup", "cups", "daily", "morning", "meal",
        "meals", "sip", "electrolytes", "juice", "liters",
    ),
    "writing a good essay": (
        "outline", "thesis", "paragraph", "paragraphs", "introduction", "conclusion", "argument", "arguments",
        "evidence", "examples", "edit", "editing", "proofread", "draft", "drafts", "research", "sources",
        "structure", "sentences", "clear", "clarity", "topic", "read", "revise", "citations", "points",
    ),
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------------------

LIST_COUNTS = (2, 3, 4)
LIST_TEMPLATES = (
    "List {count} {things}.",
    "Name {count} {things}.",
    "Give me {count} examples of {things}.",
    "What are {count} {things}? Keep it short.",
    "Can you name {count} {things}?",
)
STORY_TEMPLATES = (
    "Write a two-sentence story about a {subject} and {object}.",
    "Tell me a very short story, just two sentences, about a {subject} and {object}.",
)
TIP_COUNTS = (2, 3)
TIP_TEMPLATES = ("Give {count} tips for {goal}.", "What are {count} good tips for {goal}? Be brief.")

# Word budgets (see `reward`): room for a short lead-in ("Here are 3 fruits:") plus a few words per requested item.
LIST_WORDS_BASE, LIST_WORDS_PER_ITEM = 8, 6
TIP_WORDS_BASE, TIP_WORDS_PER_ITEM = 8, 12
STORY_MAX_WORDS = 40
STORY_SENTENCES = 2

NUM_TRAIN_PROMPTS = 200
NUM_HELDOUT_PROMPTS = 64
SPLIT_SEED = 0


def _user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def prompt_pool() -> list[dict[str, Any]]:
    """
    Every prompt the templates make, in a fixed order: lists (category x count x template), stories (subject x object,
    the template alternating), tips (goal x count x template). 337 rows of `{"prompt": [user turn], "task": spec}`.

    A task spec holds what [`reward`] needs: `family` (`"list"`, `"story"` or `"tips"`), and
    - list: `category` (a key of `LIST_CATEGORIES`), `count`, `max_words`;
    - story: `characters` (two keys of `STORY_CHARACTERS`), `sentences`, `max_words`;
    - tips: `topic` (a key of `TIP_TOPICS`), `count`, `max_words`.
    """
    rows = []
    for category, things in LIST_CATEGORY_PHRASES.items():
        for count in LIST_COUNTS:
            for template in LIST_TEMPLATES:
                task = {
                    "family": "list",
                    "category": category,
                    "count": count,
                    "max_words": LIST_WORDS_BASE + LIST_WORDS_PER_ITEM * count,
                }
                rows.append({"prompt": _user_turn(template.format(count=count, things=things)), "task": task})
    for i, subject in enumerate(STORY_SUBJECTS):
        for j, (character, phrase) in enumerate(STORY_OBJECTS.items()):
            template = STORY_TEMPLATES[(i + j) % len(STORY_TEMPLATES)]
            task = {
                "family": "story",
                "characters": [subject, character],
                "sentences": STORY_SENTENCES,
                "max_words": STORY_MAX_WORDS,
            }
            rows.append({"prompt": _user_turn(template.format(subject=subject, object=phrase)), "task": task})
    for topic in TIP_TOPICS:
        for count in TIP_COUNTS:
            for template in TIP_TEMPLATES:
                task = {
                    "family": "tips",
                    "topic": topic,
                    "count": count,
                    "max_words": TIP_WORDS_BASE + TIP_WORDS_PER_ITEM * count,
                }
                rows.append({"prompt": _user_turn(template.format(count=count, goal=topic)), "task": task})
    return rows


def prompt_splits(
    num_train: int = NUM_TRAIN_PROMPTS, num_heldout: int = NUM_HELDOUT_PROMPTS, seed: int = SPLIT_SEED
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    Disjoint training and held-out prompts: [`prompt_pool`] shuffled by `random.Random(seed)`, the first `num_heldout`
    held out, the next `num_train` for training (the rest unused).

    Returns:
        `tuple[list[dict], list[dict]]`: `(train, heldout)` rows `{"prompt", "task"}`.
    """
    pool = prompt_pool()
    if num_train + num_heldout > len(pool):
        raise ValueError(f"asked for {num_train} + {num_heldout} prompts, the templates make {len(pool)}")
    random.Random(seed).shuffle(pool)
    return pool[num_heldout : num_heldout + num_train], pool[:num_heldout]


# ---------------------------------------------------------------------------------------------------------------------
# The known reward
# ---------------------------------------------------------------------------------------------------------------------

MAX_REWARD = 4.0
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")  # runs of letters (any script), with inner apostrophes: "don't"
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


def words(text: str) -> list[str]:
    """Lower-cased words of `text`: runs of letters; digits, punctuation and list markers are not words."""
    return [w.lower() for w in _WORD.findall(text)]


def _plurals(word: str) -> set[str]:
    forms = {word, word + "s", word + "es"}
    if len(word) > 2 and word.endswith("y") and word[-2] not in "aeiou":
        forms.add(word[:-1] + "ies")
    return forms


def _variants(entry: str) -> dict[tuple[str, ...], str]:
    """`"canonical|synonym"` -> every accepted word sequence (with regular plurals of the last word) -> canonical."""
    names = entry.split("|")
    table = {}
    for name in names:
        *head, last = name.split()
        for form in _plurals(last):
            table[(*head, form)] = names[0]
    return table


def _lexicon(entries: Iterable[str]) -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}
    for entry in entries:
        table.update(_variants(entry))
    return table


_LEXICONS = {category: _lexicon(entries) for category, entries in LIST_CATEGORIES.items()}
_MAX_PHRASE = max(len(key) for table in _LEXICONS.values() for key in table)


def matched_items(category: str, text: str) -> list[str]:
    """
    Canonical items of `LIST_CATEGORIES[category]` that `text` names, in order of first mention, each once.

    Longer names win ("blue whale" is one item, not "blue" + "whale"); matched words are consumed.
    """
    table = _LEXICONS[category]
    tokens = [t for w in words(text) for t in w.replace("'", " ").split()]
    found: list[str] = []
    i = 0
    while i < len(tokens):
        for size in range(min(_MAX_PHRASE, len(tokens) - i), 0, -1):
            item = table.get(tuple(tokens[i : i + size]))
            if item is not None:
                if item not in found:
                    found.append(item)
                i += size
                break
        else:
            i += 1
    return found


def sentences(text: str, min_words: int = 3) -> list[str]:
    """Sentences of `text` (split after `.`, `!`, `?`) that have at least `min_words` words; a fragment is none."""
    return [s for s in _SENTENCE_END.split(text) if len(words(s)) >= min_words]


def list_entries(text: str) -> list[str]:
    """The lines of `text` that start with a list marker (`1.`, `2)`, `-`, `*`, `•`), if two or more do; else its
    sentences."""
    marked = [_LIST_MARKER.sub("", line) for line in text.splitlines() if _LIST_MARKER.match(line)]
    return marked if len(marked) >= 2 else sentences(text)


def length_factor(num_words: int, max_words: int) -> float:
    """1 up to `max_words` words, then linearly down to 0 at twice that: length never adds reward; rambling costs."""
    return min(1.0, max(0.0, 2.0 - num_words / max_words))


def distinctness(tokens: Sequence[str]) -> float:
    """Share of the word trigrams of `tokens` that are distinct (1 for fewer than 3 words): repetition lowers it."""
    trigrams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
    return len(set(trigrams)) / len(trigrams) if trigrams else 1.0


def _list_content(task: dict, answer: str) -> float:
    found = len(matched_items(task["category"], answer))
    count = task["count"]
    # Saturating: items beyond the request earn nothing and cost a little (the request said how many).
    return max(0.0, min(found, count) / count - 0.1 * max(0, found - count))


def _task_prompt_words(task: dict) -> set[str]:
    """Every word of every template for this task, so an answer that echoes the request earns nothing from it."""
    if task["family"] == "story":
        subject, character = task["characters"]
        phrases = [t.format(subject=subject, object=STORY_OBJECTS[character]) for t in STORY_TEMPLATES]
    else:
        phrases = [t.format(count=task["count"], goal=task["topic"]) for t in TIP_TEMPLATES]
    return {w for phrase in phrases for w in words(phrase)}


def _new_words(task_words: set[str], answer: str) -> int:
    return len(set(words(answer)) - task_words)


def _story_content(task: dict, answer: str) -> float:
    said = set(words(answer))
    mentions = sum(bool(said & set(STORY_CHARACTERS[name])) for name in task["characters"])
    found = len(sentences(answer))
    shape = 1.0 if found == task["sentences"] else 0.5 if abs(found - task["sentences"]) == 1 else 0.0
    content = 0.375 * mentions + 0.25 * shape
    # A story must tell something: at least 8 distinct words that the prompt does not already contain. Without this,
    # echoing "Write a two-sentence story about a dog and the moon." would mention both characters.
    return content * min(1.0, _new_words(_task_prompt_words(task), answer) / 8)


def _tips_content(task: dict, answer: str) -> float:
    topic_words, prompt_words = set(TIP_TOPICS[task["topic"]]), _task_prompt_words(task)
    tips, seen = 0, set()
    for entry in list_entries(answer):
        entry_words = words(entry)
        key = " ".join(entry_words)
        # A tip: 3 to 25 words, on topic, not a copy of an earlier one and not a copy of the request.
        if 3 <= len(entry_words) <= 25 and topic_words & set(entry_words) and key not in seen:
            if set(entry_words) - prompt_words:
                tips += 1
            seen.add(key)
    count = task["count"]
    return max(0.0, min(tips, count) / count - 0.1 * max(0, tips - count))


# The content term of each task family: (task, answer) -> [0, 1].
CONTENT_TERMS: dict[str, Callable[[dict, str], float]] = {
    "list": _list_content,
    "story": _story_content,
    "tips": _tips_content,
}


def reward_terms(task: dict, answer: str) -> dict[str, float]:
    """
    The three factors of [`reward`] and their product; see there. Keys: `content`, `length`, `distinctness`,
    `reward`.
    """
    if task["family"] not in CONTENT_TERMS:
        raise ValueError(f"unknown task family {task['family']!r}; expected one of {sorted(CONTENT_TERMS)}")
    content = CONTENT_TERMS[task["family"]](task, answer)
    tokens = words(answer)
    length = length_factor(len(tokens), task["max_words"])
    distinct = distinctness(tokens)
    return {
        "content": content,
        "length": length,
        "distinctness": distinct,
        "reward": MAX_REWARD * content * length * distinct,
    }


def reward(task: dict, answer: str) -> float:
    """
    The known reward of `answer` to the prompt described by `task`, in `[0, 4]`.

    Formula:
        r = 4 * content * length * distinctness

    Where (every factor in [0, 1]):
        content: how much of the request the answer fulfils, by family:
            - list ("List 3 fruits."): `min(k, n) / n - 0.1 * max(0, k - n)`, with k the distinct items of the task's
              category the answer names (`matched_items`: whole words, plurals and synonyms count as one item) and n
              the requested count. Any n valid items, in any order and wording, earn full credit.
            - story ("Write a two-sentence story about a fox and a boat."): 0.375 per character mentioned (or a
              variant: "puppy" for dog), plus 0.25 if it has exactly two sentences (0.125 if one or three), scaled down
              if it uses fewer than 8 distinct words that are not in the prompt.
            - tips ("Give 3 tips for saving money."): like list, where an item is a distinct list entry (or sentence)
              of 3-25 words that uses one of the topic's words (`TIP_TOPICS`) and is not just the request's words.
        length: [`length_factor`]: 1 up to `task["max_words"]` words, down to 0 at twice that many.
        distinctness: [`distinctness`]: the share of the answer's word trigrams that are distinct.

    What it rewards, and why this shape:
        - Many answers score the maximum, 4: any valid, short, non-repetitive answer. So `Softmax(r / alpha)`, the
          expert distribution SPO's fixed point is (Theorem 1), spreads over many texts; a policy that collapses to a
          single answer can match its mean reward but not its entropy.
        - Length cannot be gamed: credit saturates at the requested count and every extra word past the budget
          lowers the score. Rambling, and answers cut off at the token limit, score low.
        - Repetition cannot be gamed: a repeated item counts once, and repeated word trigrams lower `distinctness`.
        - An empty answer scores 0, and so does an answer that only echoes the request.
        - The scale (0 to 4) makes Bradley-Terry labels informative: `sigmoid(4 - 2.67) = 0.79` for a complete list
          against one missing an item of three.

    It is a lexical proxy, not a judge of quality: it does not check that a story makes sense or a tip is good, only
    that the answer has the requested shape and vocabulary.

    Args:
        task (`dict`): the prompt's task spec (see [`prompt_pool`]).
        answer (`str`): the assistant's reply, as decoded (special tokens removed).

    Returns:
        `float`: the reward, in `[0, 4]`.
    """
    return reward_terms(task, answer)["reward"]


# ---------------------------------------------------------------------------------------------------------------------
# Simulated annotators: Bradley-Terry pairs and Plackett-Luce rankings
# ---------------------------------------------------------------------------------------------------------------------


def _assistant_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def bradley_terry_pairs(
    prompt: list[dict[str, str]], answers: Sequence[str], rewards: Sequence[float], rng: random.Random
) -> list[dict[str, Any]]:
    """
    Every pair of distinct answers to one prompt, labelled by a Bradley-Terry annotator on the known reward.

    Formula:
        P(a_i preferred to a_j) = sigmoid(r_i - r_j)

    Pairs `(i, j)` with `i < j` are visited in lexicographic order, skipping pairs whose texts are identical (they
    state no preference); for each, one `u = rng.random()` is drawn and `a_i` is chosen iff `u < sigmoid(r_i - r_j)`.

    Args:
        prompt (`list[dict]`): the conversational prompt, `[{"role": "user", "content": ...}]`.
        answers (`Sequence[str]`): the n answers, shape (n,).
        rewards (`Sequence[float]`): their rewards, shape (n,).
        rng (`random.Random`): the annotator's randomness; advanced once per labelled pair.

    Returns:
        `list[dict]`: rows in TRL's conversational pairwise format,
        `{"prompt": [...], "chosen": [{"role": "assistant", ...}], "rejected": [...]}`; at most n (n - 1) / 2.
    """
    if len(answers) != len(rewards):
        raise ValueError(f"one reward per answer: got {len(answers)} answers and {len(rewards)} rewards")
    rows = []
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            if answers[i] == answers[j]:
                continue
            first_wins = rng.random() < _sigmoid(rewards[i] - rewards[j])
            chosen, rejected = (i, j) if first_wins else (j, i)
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": _assistant_turn(answers[chosen]),
                    "rejected": _assistant_turn(answers[rejected]),
                }
            )
    return rows


def plackett_luce_ranking(rewards: Sequence[float], rng: random.Random) -> list[int]:
    """
    A ranking (best first) drawn from the Plackett-Luce model on `rewards`.

    Formula:
        P(tau) = prod_{k=1}^{n} exp(r_tau(k)) / sum_{j >= k} exp(r_tau(j))

    Drawn sequentially: at each step one `u = rng.random()` picks the next answer among those left with probability
    `softmax(r)` over them, by inverse CDF in index order. n - 1 draws (the last answer is forced). The first pick is
    the Bradley-Terry best-of-n choice, so `ranking[0]` is a best-of-n label (`trl_spo.ranking_to_best_of_n`).

    Args:
        rewards (`Sequence[float]`): shape (n,).
        rng (`random.Random`): advanced n - 1 times.

    Returns:
        `list[int]`: a permutation of `range(n)`, best to worst.
    """
    left = list(range(len(rewards)))
    ranking = []
    while len(left) > 1:
        top = max(rewards[i] for i in left)
        weights = [math.exp(rewards[i] - top) for i in left]  # shifted by the max: no overflow, same softmax
        threshold = rng.random() * sum(weights)
        cumulative, pick = 0.0, len(left) - 1
        for position, weight in enumerate(weights):
            cumulative += weight
            if threshold < cumulative:
                pick = position
                break
        ranking.append(left.pop(pick))
    return ranking + left


def ranking_row(
    prompt: list[dict[str, str]], answers: Sequence[str], rewards: Sequence[float], rng: random.Random
) -> dict[str, Any] | None:
    """
    One ranking row from one prompt's answers: identical texts are merged (first copy kept), the distinct ones ranked
    by [`plackett_luce_ranking`]. `None` if fewer than two distinct answers remain (nothing to rank).

    Returns:
        `dict` or `None`: `{"prompt", "completions": [[assistant turn], ...], "ranking": [...]}`, the conversational
        ranking format of `trl_spo.data`.
    """
    kept = [i for i, text in enumerate(answers) if text not in answers[:i]]
    if len(kept) < 2:
        return None
    order = plackett_luce_ranking([rewards[i] for i in kept], rng)
    return {"prompt": prompt, "completions": [_assistant_turn(answers[i]) for i in kept], "ranking": order}


def label_samples(samples: Sequence[dict[str, Any]], seed: int) -> tuple[list[dict], list[dict]]:
    """
    Preference pairs and rankings for every prompt of a base-samples file, with one seeded annotator.

    Pairs and rankings use separate generators (`random.Random(seed)` and `random.Random(seed + 1)`), so one file can
    be regenerated without changing the other's draws. Blank answers (the model emitted EOS first) are left out of
    both: the trainer's n-ary validation rejects empty completions, and keeping them in the pairs only would make the
    two files disagree about which answers exist.

    Args:
        samples (`Sequence[dict]`): rows `{"prompt", "task", "answers", "rewards", ...}` (see [`sample_rows`]).
        seed (`int`): the annotator's seed.

    Returns:
        `tuple[list[dict], list[dict]]`: `(pairs, rankings)`.
    """
    pair_rng, ranking_rng = random.Random(seed), random.Random(seed + 1)
    pairs, rankings = [], []
    for row in samples:
        kept = [i for i, text in enumerate(row["answers"]) if text.strip()]
        answers, rewards = [row["answers"][i] for i in kept], [row["rewards"][i] for i in kept]
        pairs.extend(bradley_terry_pairs(row["prompt"], answers, rewards, pair_rng))
        ranked = ranking_row(row["prompt"], answers, rewards, ranking_rng)
        if ranked is not None:
            rankings.append(ranked)
    return pairs, rankings


# ---------------------------------------------------------------------------------------------------------------------
# Base-model samples
# ---------------------------------------------------------------------------------------------------------------------

REWARD_DIGITS = 6  # rewards are stored rounded: the files stay readable and identical across platforms


def sample_rows(
    rows: Sequence[dict[str, Any]], answers: Sequence[Sequence[str]], truncated: Sequence[Sequence[bool]]
) -> list[dict[str, Any]]:
    """
    Rows of a base-samples file: `{"prompt", "task", "answers", "rewards", "truncated"}`, rewards from [`reward`].

    Args:
        rows (`Sequence[dict]`): prompt rows `{"prompt", "task"}`, length P.
        answers (`Sequence[Sequence[str]]`): shape (P, n), the decoded answers.
        truncated (`Sequence[Sequence[bool]]`): shape (P, n), whether the answer was cut at the token limit.
    """
    return [
        {
            "prompt": row["prompt"],
            "task": row["task"],
            "answers": list(texts),
            "rewards": [round(reward(row["task"], text), REWARD_DIGITS) for text in texts],
            "truncated": list(cut),
        }
        for row, texts, cut in zip(rows, answers, truncated, strict=True)
    ]


def generate_base_samples(
    model_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    num_samples: int,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """
    `num_samples` answers per prompt from the model in `model_dir`, at temperature 1 without truncation (top-k 0,
    top-p 1): the model's own distribution, which the KL term of SPO and the win rate both refer to.

    Prompts are rendered with the chat template (generation prompt added); generation stops at the tokenizer's EOS
    (`<|im_end|>` for SmolLM2) or after `max_new_tokens`. Uses `trl_spo.evaluation.generation`'s sampler.

    Returns:
        `list[dict]`: [`sample_rows`] rows, in the order of `rows`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trl_spo.evaluation.generation import encode_prompt, generation_config_for, sample_answers

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    config = generation_config_for(model, tokenizer, max_new_tokens, temperature=1.0, top_p=1.0)
    set_seed(seed)
    answers, truncated = [], []
    start = time.perf_counter()
    for first in range(0, len(rows), batch_size):
        batch = rows[first : first + batch_size]
        prompt_ids = [encode_prompt(tokenizer, row["prompt"]) for row in batch]
        completions = sample_answers(model, tokenizer, prompt_ids, num_samples, config, batch_size)
        for k in range(len(batch)):
            drawn = completions[k * num_samples : (k + 1) * num_samples]
            answers.append([tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in drawn])
            truncated.append([not c.stopped_at_eos for c in drawn])
        done = first + len(batch)
        elapsed = time.perf_counter() - start
        log(f"sampled {done}/{len(rows)} prompts x {num_samples} in {elapsed:.0f} s")
    return sample_rows(rows, answers, truncated)


# ---------------------------------------------------------------------------------------------------------------------
# Files and command line
# ---------------------------------------------------------------------------------------------------------------------

PROMPTS_TRAIN_FILE = "prompts_train.jsonl"
PROMPTS_HELDOUT_FILE = "prompts_heldout.jsonl"
SAMPLES_TRAIN_FILE = "base_samples_train.jsonl"
SAMPLES_HELDOUT_FILE = "base_samples_heldout.jsonl"
PREFERENCES_FILE = "preferences_train.jsonl"
RANKINGS_FILE = "rankings_train.jsonl"
LABEL_SEED = 0


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    """The exact text written for `rows`: one compact JSON object per line, keys in insertion order, UTF-8."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.write_text(jsonl_text(rows), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_prompts(out: Path) -> tuple[list[dict], list[dict]]:
    out.mkdir(parents=True, exist_ok=True)
    train, heldout = prompt_splits()
    write_jsonl(out / PROMPTS_TRAIN_FILE, train)
    write_jsonl(out / PROMPTS_HELDOUT_FILE, heldout)
    return train, heldout


def relabel(data: Path, seed: int = LABEL_SEED) -> dict[str, int]:
    """
    Recompute the rewards of both base-samples files from their answers (so a change to [`reward`] needs no
    resampling) and rewrite `preferences_train.jsonl` and `rankings_train.jsonl` from the training samples.
    Byte-for-byte the same output for the same samples, code and seed.
    """
    for name in (SAMPLES_TRAIN_FILE, SAMPLES_HELDOUT_FILE):
        if (data / name).exists():
            rows = read_jsonl(data / name)
            write_jsonl(data / name, sample_rows(rows, [r["answers"] for r in rows], [r["truncated"] for r in rows]))
    samples = read_jsonl(data / SAMPLES_TRAIN_FILE)
    pairs, rankings = label_samples(samples, seed)
    write_jsonl(data / PREFERENCES_FILE, pairs)
    write_jsonl(data / RANKINGS_FILE, rankings)
    return {"prompts": len(samples), "pairs": len(pairs), "rankings": len(rankings)}


def reward_summary(samples: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean, quartiles, share at the maximum and truncation rate of the rewards in a base-samples file."""
    values = sorted(r for row in samples for r in row["rewards"])
    flags = [t for row in samples for t in row["truncated"]]

    def quantile(q: float) -> float:  # linear interpolation between order statistics (numpy's default)
        position = q * (len(values) - 1)
        low = math.floor(position)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (position - low)

    return {
        "num_answers": len(values),
        "mean": math.fsum(values) / len(values),
        "q25": quantile(0.25),
        "median": quantile(0.5),
        "q75": quantile(0.75),
        "share_at_max": sum(v >= MAX_REWARD - 1e-9 for v in values) / len(values),
        "share_zero": sum(v == 0 for v in values) / len(values),
        "truncation_rate": sum(flags) / len(flags),
    }


def _print_now(line: str) -> None:
    print(line, flush=True)  # progress lines must show up in a redirected log while the run goes on


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.strip().splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prompts = commands.add_parser("prompts", help="write prompts_train.jsonl and prompts_heldout.jsonl")
    prompts.add_argument("--out", default="recipes/smollm2/data")
    generate = commands.add_parser("generate", help="sample the base model, write the samples and label them")
    generate.add_argument("--out", default="recipes/smollm2/data")
    generate.add_argument("--model", default=None, help="model folder; default: the cached SmolLM2 checkpoint")
    generate.add_argument("--num_samples", type=int, default=4, help="answers per training prompt")
    generate.add_argument("--num_heldout_samples", type=int, default=4, help="answers per held-out prompt")
    generate.add_argument("--max_new_tokens", type=int, default=64)
    generate.add_argument("--batch_size", type=int, default=16, help="prompts per generate call")
    generate.add_argument("--seed", type=int, default=0, help="sampling seed")
    generate.add_argument("--label_seed", type=int, default=LABEL_SEED)
    label = commands.add_parser("label", help="recompute rewards and rewrite pairs and rankings from the samples")
    label.add_argument("--data", default="recipes/smollm2/data")
    label.add_argument("--label_seed", type=int, default=LABEL_SEED)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks.chat_task") -> int:
    args = make_parser(prog).parse_args(argv)
    if args.command == "prompts":
        train, heldout = write_prompts(Path(args.out))
        print(f"{len(train)} training and {len(heldout)} held-out prompts written to {args.out}")
        return 0
    if args.command == "label":
        counts = relabel(Path(args.data), args.label_seed)
        print(json.dumps(counts | reward_summary(read_jsonl(Path(args.data) / SAMPLES_TRAIN_FILE)), indent=1))
        return 0

    out = Path(args.out)
    train, heldout = write_prompts(out)
    if args.model is None:
        from .smollm2 import build_smollm2_checkpoint

        args.model = build_smollm2_checkpoint()
    start = time.perf_counter()
    for rows, num_samples, name in (
        (train, args.num_samples, SAMPLES_TRAIN_FILE),
        # Another seed: the held-out answers are the win-rate references, independent of the training samples.
        (heldout, args.num_heldout_samples, SAMPLES_HELDOUT_FILE),
    ):
        seed = args.seed if name == SAMPLES_TRAIN_FILE else args.seed + 1
        samples = generate_base_samples(
            args.model, rows, num_samples, args.max_new_tokens, args.batch_size, seed, log=_print_now
        )
        write_jsonl(out / name, samples)
    seconds = time.perf_counter() - start
    counts = relabel(out, args.label_seed)
    summary = reward_summary(read_jsonl(out / SAMPLES_TRAIN_FILE))
    print(json.dumps(counts | summary | {"sampling_seconds": round(seconds)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
