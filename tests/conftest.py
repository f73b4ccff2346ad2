# Copyright 2026 The trl-spo developers
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
"""Shared fixtures: tiny local models and small preference datasets in each of TRL's preference formats.

Everything comes from ``recipes/tiny/`` (rebuilt by ``recipes/tiny/build_assets.py``); nothing touches a model hub.
Heavy libraries are imported inside the fixtures so that the environment below is in place before transformers and
huggingface_hub read it, and so that collecting tests that need no model stays fast.
"""

import json
import math
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


# huggingface_hub and transformers read these when first imported, which must not happen before this point.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("WANDB_MODE", "disabled")
# Trainers fork dataloader workers after the tokenizer has been used; the Rust pool would warn (or deadlock).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = REPO_ROOT / "recipes" / "tiny"
SHIPPED_MODEL_DIR = ASSETS_DIR / "model"
PREFERENCES_PATH = ASSETS_DIR / "data" / "preferences.jsonl"
REWARDS_PATH = ASSETS_DIR / "data" / "rewards.json"

NUM_FIXTURE_ROWS = 16
# Files that make up the shipped tokenizer; whichever exist are copied next to the random-init test models.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: rebuild the tiny assets with `python recipes/tiny/build_assets.py`.")
    return path


def _save_tiny_model(path: Path, vocab_size: int | None, hidden_size: int, tie_word_embeddings: bool, seed: int):
    from transformers import AutoTokenizer

    from trl_spo.tiny_models import tiny_qwen2

    tokenizer = AutoTokenizer.from_pretrained(_require(SHIPPED_MODEL_DIR))
    model = tiny_qwen2(
        tokenizer, vocab_size=vocab_size, hidden_size=hidden_size, tie_word_embeddings=tie_word_embeddings, seed=seed
    )
    model.save_pretrained(path)
    # Copied rather than re-saved, so the tests see byte-for-byte the tokenizer that ships with the recipe.
    for name in TOKENIZER_FILES:
        if (SHIPPED_MODEL_DIR / name).exists():
            shutil.copy2(SHIPPED_MODEL_DIR / name, path / name)


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory) -> Callable[..., str]:
    """Returns ``make(vocab_size=None, hidden_size=32, tie_word_embeddings=True, seed=0) -> str``.

    Each call gives the directory of a fresh random-init 2-layer ``Qwen2ForCausalLM`` (4 heads, 2 KV heads, so
    ``hidden_size`` must be a multiple of 4) with the shipped tokenizer. ``vocab_size=None`` means the tokenizer's
    size. Directories are cached per argument tuple for the session: treat them as read-only.
    """
    root = tmp_path_factory.mktemp("tiny_models")
    cache: dict[tuple, str] = {}

    def make(vocab_size: int | None = None, hidden_size: int = 32, tie_word_embeddings: bool = True, seed: int = 0):
        key = (vocab_size, hidden_size, tie_word_embeddings, seed)
        if key not in cache:
            path = root / "qwen2-{}-h{}-{}-seed{}".format(
                vocab_size or "tokvocab", hidden_size, "tied" if tie_word_embeddings else "untied", seed
            )
            path.mkdir()
            _save_tiny_model(path, vocab_size, hidden_size, tie_word_embeddings, seed)
            cache[key] = str(path)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_model_path(tiny_model_factory) -> str:
    """Directory of a random-init tiny Qwen2 (hidden 32) with the shipped tokenizer.

    A path, not a model object, because ``DPOTrainer(ref_model=None)`` reloads the reference from the model path.
    """
    return tiny_model_factory()


@pytest.fixture(scope="session")
def shipped_model_path() -> str:
    """The pretrained reference policy shipped in ``recipes/tiny/model`` (read-only: never save into it)."""
    return str(_require(SHIPPED_MODEL_DIR))


@pytest.fixture(scope="session")
def reward_table() -> dict[str, dict[str, float]]:
    """``{prompt: {completion: reward}}`` behind the tiny dataset; keys are the standard-format completions."""
    return json.loads(_require(REWARDS_PATH).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def preference_rows() -> list[dict[str, str]]:
    """The first rows of the shipped dataset, as ``{"prompt", "chosen", "rejected"}`` strings.

    Only pairs whose answers differ from their first letter are kept: TRL's `extract_prompt` splits implicit-prompt
    rows at the first differing character, so " banana." vs " blue." would otherwise yield the prompt "Name a fruit: b"
    and the four dataset forms would no longer hold the same examples.
    """
    rows = []
    with _require(PREFERENCES_PATH).open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["chosen"].lstrip()[:1] != row["rejected"].lstrip()[:1]:
                rows.append(row)
            if len(rows) == NUM_FIXTURE_ROWS:
                break
    return rows


@pytest.fixture
def standard_preference_dataset(preference_rows):
    """Standard, explicit prompt: ``{"prompt": "Name a fruit:", "chosen": " mango.", "rejected": " kiwi."}``."""
    from datasets import Dataset

    return Dataset.from_list(preference_rows)


@pytest.fixture
def conversational_preference_dataset(preference_rows):
    """Conversational, explicit prompt: a user turn as prompt, single assistant turns as chosen/rejected."""
    from datasets import Dataset

    # Chat turns carry the answer without the leading space that only the plain-text concatenation needs.
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": row["prompt"]}],
                "chosen": [{"role": "assistant", "content": row["chosen"].strip()}],
                "rejected": [{"role": "assistant", "content": row["rejected"].strip()}],
            }
            for row in preference_rows
        ]
    )


@pytest.fixture
def implicit_prompt_preference_dataset(preference_rows):
    """Standard, implicit prompt: no prompt column, ``chosen = prompt + chosen`` (and likewise rejected)."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {"chosen": row["prompt"] + row["chosen"], "rejected": row["prompt"] + row["rejected"]}
            for row in preference_rows
        ]
    )


@pytest.fixture
def implicit_prompt_conversational_preference_dataset(preference_rows):
    """Conversational, implicit prompt: chosen/rejected are whole ``[user, assistant]`` conversations."""
    from datasets import Dataset

    def conversation(prompt: str, answer: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer.strip()}]

    return Dataset.from_list(
        [
            {
                "chosen": conversation(row["prompt"], row["chosen"]),
                "rejected": conversation(row["prompt"], row["rejected"]),
            }
            for row in preference_rows
        ]
    )


def ranked_rows(reward_table, num_rows: int, sizes=(4,), seed: int = 0) -> list[dict]:
    """Rows ranked by a Plackett-Luce draw on the known rewards, n taken cyclically from `sizes`."""
    rng = random.Random(seed)
    prompts = sorted(reward_table)
    rows = []
    for i in range(num_rows):
        prompt = prompts[i % len(prompts)]
        completions = rng.sample(sorted(reward_table[prompt]), sizes[i % len(sizes)])
        remaining, ranking = list(range(len(completions))), []
        while remaining:
            weights = [math.exp(reward_table[prompt][completions[j]]) for j in remaining]
            ranking.append(remaining.pop(rng.choices(range(len(remaining)), weights)[0]))
        rows.append({"prompt": prompt, "completions": completions, "ranking": ranking})
    return rows


@pytest.fixture
def ranked_dataset(reward_table):
    """16 ranked rows of 4, 3 and 2 completions (cyclically) over the tiny dataset's prompts."""
    from datasets import Dataset

    return Dataset.from_list(ranked_rows(reward_table, 16, sizes=(4, 3, 2)))
