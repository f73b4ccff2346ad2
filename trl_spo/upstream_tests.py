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

# upstream: drop-begin
# The tests of the TRL pull request (`trl-spo upstream` writes them to tests/experimental/test_spo_trainer.py). They run
# against the generated tree, not against this package.
# upstream: drop-end
# The tiny model and tokenizer are built locally, so these tests need no hub access; the hub's
# `trl-internal-testing/tiny-Qwen2ForCausalLM-2.5` can replace them.

import math

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from trl.experimental.spo import SPOConfig, SPOTrainer
from trl.experimental.spo.losses import spo_pairwise_loss
from trl.experimental.spo.utils import seam_problems


ANSWERS = ["apple", "mango", "kiwi", "pear", "plum", "lime", "grape", "melon"]
PAIRS = [
    {"prompt": f"Name fruit number {i}:", "chosen": f" {ANSWERS[i % 8]}.", "rejected": f" {ANSWERS[(i + 3) % 8]}."}
    for i in range(16)
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A byte-level BPE over the test's text and a 2-layer random Qwen2 with its vocabulary, saved locally."""
    path = tmp_path_factory.mktemp("tiny-qwen2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = [row["prompt"] + row["chosen"] + row["rejected"] for row in PAIRS]
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>", "<|pad|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|pad|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def make_args(output_dir, **overrides) -> SPOConfig:
    kwargs = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-2,  # the tiny model needs a large step to move in 3 steps
        generation_interval=2,  # refresh the KL samples at steps 0 and 2
        max_completion_length=8,
        max_length=32,
        use_cpu=True,
        bf16=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    return SPOConfig(**(kwargs | overrides))


class TestSPOConfig:
    def test_defaults_are_the_papers(self):
        args = SPOConfig("dummy", use_cpu=True)
        # App. E of the paper: alpha = beta = gamma = 0.01, T = 8; the KL batch is half the pairs of a step.
        assert (args.alpha, args.beta, args.gamma, args.generation_interval) == (0.01, 0.01, 0.01, 8)
        assert args.resolved_kl_batch_size == max(1, args.per_device_train_batch_size // 2)

    def test_refuses_what_has_no_spo_meaning(self):
        with pytest.raises(
            ValueError, match="`loss_type=\\['ipo'\\]` is a DPO option that SPOConfig does not support"
        ):
            SPOConfig("dummy", use_cpu=True, loss_type=["ipo"])
        with pytest.raises(ValueError, match="`alpha` must be a finite number >= 0, got -1"):
            SPOConfig("dummy", use_cpu=True, alpha=-1)


class TestSPOLosses:
    def test_pairwise_loss_and_its_gradient_are_eq_8(self):
        chosen = torch.tensor([-3.0, -10.0], dtype=torch.float64, requires_grad=True)
        rejected = torch.tensor([-5.0, -2.0], dtype=torch.float64)
        loss = spo_pairwise_loss(chosen, rejected, alpha=0.5)
        for a, b, value in zip(chosen.tolist(), rejected.tolist(), loss.tolist(), strict=False):
            # -(1/alpha) log sigmoid(alpha (a - b)), float64: agreement to rounding.
            assert value == pytest.approx(-2 * math.log(1 / (1 + math.exp(-0.5 * (a - b)))), rel=1e-12)
        loss.sum().backward()
        # d/da = -sigmoid(alpha (b - a)) (section 3 of the paper).
        expected = [
            -1 / (1 + math.exp(-0.5 * (b - a))) for a, b in zip(chosen.tolist(), rejected.tolist(), strict=False)
        ]
        assert chosen.grad.tolist() == pytest.approx(expected, rel=1e-12)


class TestSPOTrainer:
    def test_train(self, tmp_path, tiny_model_dir):
        trainer = SPOTrainer(model=tiny_model_dir, args=make_args(tmp_path), train_dataset=Dataset.from_list(PAIRS))
        previous = {name: param.clone() for name, param in trainer.model.named_parameters()}
        trainer.train()
        for name, param in previous.items():
            assert not torch.equal(param, trainer.model.get_parameter(name)), f"Parameter {name} has not changed."
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        assert len(history) == 3 and trainer.kl_sampler.num_refreshes == 2
        # Step 1 runs before any update: the policy is the reference, the KL is 0 up to rounding.
        assert history[0]["kl/global"] == pytest.approx(0.0, abs=1e-5)
        assert history[-1]["kl/global"] > 0 and history[-1]["loss/preference"] > 0

    def test_train_on_rankings(self, tmp_path, tiny_model_dir):
        rows = [
            {"prompt": row["prompt"], "completions": [row["rejected"], row["chosen"], " stone."], "ranking": [1, 0, 2]}
            for row in PAIRS
        ]
        trainer = SPOTrainer(model=tiny_model_dir, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))
        assert trainer.preference_format == "ranking"
        trainer.train()
        assert all("rewards/kendall_tau" in entry for entry in trainer.state.log_history if "loss" in entry)

    def test_dpo_trainer_seams(self, tmp_path, tiny_model_dir):
        # SPOTrainer subclasses DPOTrainer: every method it overrides or calls, every attribute of DPOTrainer.__init__
        # it reads and every fused-LM-head output it uses is listed in `utils`; this fails naming the one that changed.
        trainer = SPOTrainer(model=tiny_model_dir, args=make_args(tmp_path), train_dataset=Dataset.from_list(PAIRS))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        with torch.no_grad():
            outputs = trainer.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True
            )
        problems = seam_problems(trainer, outputs)
        assert problems == [], "DPOTrainer changed where SPOTrainer relies on it:\n" + "\n".join(problems)
