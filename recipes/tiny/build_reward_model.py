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
Build `recipes/tiny/reward_model/`: the offline judge for `trl-spo eval` on the tiny assets.

    HF_HUB_OFFLINE=1 python recipes/tiny/build_reward_model.py

TRL's `RewardTrainer` fine-tunes the tiny model (`recipes/tiny/model`, with a new scalar head) on Bradley-Terry pairs
drawn from the known rewards (`data/rewards.json`, by `build_assets.sample_pairs`: the process that made the policy's
training data, with another seed and ten times the rows, so the judge knows the rewards better than one policy's
600 pairs can teach). The script then checks it against the known rewards: pairwise accuracy on the held-out pairs
(`data/preferences_eval.jsonl`) and, per prompt, the rank correlation between the model's rewards and the known ones
over every listed answer. About 30 seconds on 2 CPU cores.
"""

import json
import os
import random
import shutil
import tempfile
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
# Not the seed of the policy's training pairs (build_assets.py), so the judge's data are fresh draws.
SEED = 1
NUM_PAIRS = 6000


def spearman(x: list[float], y: list[float]) -> float:
    """Rank correlation (average ranks for ties)."""
    import torch

    def ranks(values):
        values = torch.tensor(values, dtype=torch.float64)
        return torch.tensor([((values < v).sum() + ((values == v).sum() + 1) / 2).item() for v in values])

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return (rx @ ry / (rx.norm() * ry.norm())).item()


def known_reward_agreement(model, tokenizer) -> dict[str, float]:
    """Per prompt, Spearman's rho between the reward model's scores and the known rewards of every answer."""
    import torch

    table = json.loads((HERE / "data" / "rewards.json").read_text())
    rhos = {}
    for prompt, answers in table.items():
        texts = [prompt + answer for answer in answers]
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            scores = model(**batch).logits[:, 0].tolist()
        rhos[prompt] = spearman(scores, list(answers.values()))
    return rhos


def main() -> None:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from build_assets import sample_pairs  # next to this script: the process that drew the policy's pairs
    from datasets import Dataset

    table = json.loads((HERE / "data" / "rewards.json").read_text())
    train = Dataset.from_list(sample_pairs(random.Random(SEED), table, NUM_PAIRS))
    test = load_dataset("json", data_files=str(HERE / "data" / "preferences_eval.jsonl"), split="train")
    with tempfile.TemporaryDirectory() as output_dir:
        args = RewardConfig(
            output_dir=output_dir,
            per_device_train_batch_size=16,
            num_train_epochs=2,
            learning_rate=1e-3,
            lr_scheduler_type="cosine",
            warmup_steps=3,
            max_length=64,
            logging_steps=50,
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            bf16=False,
            seed=SEED,
        )
        trainer = RewardTrainer(model=str(HERE / "model"), args=args, train_dataset=train, eval_dataset=test)
        trainer.train()
        metrics = trainer.evaluate()
        model = trainer.model.eval()
        tokenizer = AutoTokenizer.from_pretrained(HERE / "model")
        rhos = known_reward_agreement(model, tokenizer)
        destination = HERE / "reward_model"
        shutil.rmtree(destination, ignore_errors=True)
        trainer.save_model(str(destination))
    # Reload what was written: the judge reads the files, not this process's objects.
    reloaded = AutoModelForSequenceClassification.from_pretrained(destination).eval()
    assert known_reward_agreement(reloaded, tokenizer) == rhos, "the saved reward model differs from the trained one"
    for name in ("README.md", "training_args.bin", "chat_template.jinja"):
        # The card and args name a temporary directory; the model was trained on plain text, not chat turns.
        (destination / name).unlink(missing_ok=True)
    print(f"held-out pairwise accuracy: {metrics['eval_accuracy']:.3f} on {len(test)} pairs")
    print(
        f"Spearman rho to the known rewards, per prompt: min {min(rhos.values()):.3f}, "
        f"mean {sum(rhos.values()) / len(rhos):.3f} over {len(rhos)} prompts"
    )
    print(f"written to {destination}")


if __name__ == "__main__":
    main()
