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

"""The model card names the real base model and dataset, and links only hub ids."""

import yaml

from trl_spo import SPOTrainer
from trl_spo.model_card import is_hub_id, spo_model_card

from .helpers import make_args


PAPER = {"title": "Soft Preference Optimization", "id": "2405.00747", "citation": "@article{x}"}


def _card(**overrides) -> str:
    kwargs = dict(
        base_model="Qwen/Qwen2-0.5B-Instruct",
        model_name="Qwen2-0.5B-SPO",
        model_id="me/Qwen2-0.5B-SPO",
        dataset_name="trl-lib/ultrafeedback_binarized",
        tags=["spo", "trl"],
        spo_settings={"alpha": 0.01, "beta": 0.01},
        paper=PAPER,
        tracking_urls={"Weights & Biases": None},
    )
    return str(spo_model_card(**(kwargs | overrides)))


def _metadata(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def test_hub_ids_are_linked():
    card = _card()
    assert "# Model Card for Qwen2-0.5B-SPO" in card
    assert "[Qwen/Qwen2-0.5B-Instruct](https://huggingface.co/Qwen/Qwen2-0.5B-Instruct)" in card
    assert "(https://huggingface.co/datasets/trl-lib/ultrafeedback_binarized)" in card
    assert 'pipeline("text-generation", model="me/Qwen2-0.5B-SPO"' in card
    assert "https://huggingface.co/papers/2405.00747" in card and "| `alpha` | `0.01` |" in card
    metadata = _metadata(card)
    assert metadata["base_model"] == "Qwen/Qwen2-0.5B-Instruct"
    assert metadata["datasets"] == "trl-lib/ultrafeedback_binarized"


def test_local_paths_are_named_not_linked(tmp_path):
    model_dir, data_dir = tmp_path / "base", tmp_path / "data"
    model_dir.mkdir(), data_dir.mkdir()
    card = _card(base_model=str(model_dir), dataset_name=str(data_dir), model_id=str(tmp_path / "out"))
    assert f"the local model `{model_dir}`" in card and f"local `{data_dir}` dataset" in card
    assert "huggingface.co/" + str(model_dir) not in card and "huggingface.co/datasets" not in card
    assert "None" not in card
    metadata = _metadata(card)
    assert "base_model" not in metadata and "datasets" not in metadata  # the hub validates these as repo ids


def test_is_hub_id(tmp_path):
    assert is_hub_id("gpt2") and is_hub_id("Qwen/Qwen2-0.5B") and is_hub_id("trl-lib/ultrafeedback_binarized")
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("./model") and not is_hub_id("a/b/c")
    assert not is_hub_id(None) and not is_hub_id("")


def test_trainer_card_for_a_local_model(tmp_path, tiny_model_path, standard_preference_dataset):
    # What the CLI wrote before: "# Model Card for None", "[None](https://huggingface.co/None)", model="None".
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path / "tiny-spo", max_steps=1),
        train_dataset=standard_preference_dataset,
    )
    trainer.create_model_card(dataset_name="recipes/tiny/data")
    card = (tmp_path / "tiny-spo" / "README.md").read_text()
    assert "# Model Card for tiny-spo" in card and "None" not in card
    assert f"the local model `{tiny_model_path}`" in card
    assert f'model="{tmp_path / "tiny-spo"}"' in card
    assert "Soft Preference Optimization" in card and "2405.00747" in card and "| `beta` | `0.01` |" in card
