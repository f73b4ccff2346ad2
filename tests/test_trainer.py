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

"""SPOTrainer on tiny local models: the KL term, the generation schedule, DPO compatibility, datasets, errors."""

import math
import os
import textwrap

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import DPOConfig

from trl_spo import SPOTrainer
from trl_spo.sampling import KLSamples

from .helpers import assert_all_changed, assert_gradients_close, make_args, snapshot


class GenerateCounter:
    """Wraps a model's `generate` to record the optimizer step of every call."""

    def __init__(self, trainer: SPOTrainer):
        self.steps: list[int] = []
        model = trainer.model
        original = model.generate

        def generate(*args, **kwargs):
            self.steps.append(trainer.state.global_step)
            return original(*args, **kwargs)

        model.generate = generate


# ---------------------------------------------------------------------------------------------------------------------
# The global KL term against a naive full-vocabulary KL


def naive_sequence_kl(policy, reference, samples: KLSamples) -> torch.Tensor:
    """Σ_t KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t)) per sample, from materialised [B, L, V] logits."""
    policy_logp = F.log_softmax(policy(samples.input_ids, attention_mask=samples.attention_mask).logits[:, :-1], -1)
    with torch.no_grad():
        ref_logits = reference(samples.input_ids, attention_mask=samples.attention_mask).logits[:, :-1]
    ref_logp = F.log_softmax(ref_logits, -1)
    per_position = (policy_logp.exp() * (policy_logp - ref_logp)).sum(-1)
    return (per_position * samples.completion_mask[:, 1:]).sum(-1)


def naive_preference_loss(policy, batch, alpha: float) -> torch.Tensor:
    logits = policy(batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    token_logps = torch.gather(F.log_softmax(logits, -1), 2, batch["input_ids"][:, 1:, None]).squeeze(-1)
    chosen, rejected = (token_logps * batch["completion_mask"][:, 1:]).sum(-1).chunk(2)
    return (F.softplus(alpha * (rejected - chosen)) / alpha).mean()


def policy_away_from_reference(path: str) -> dict:
    """`model` and `ref_model` for a trainer whose π_θ differs from π_ref, so the KL is far from 0."""
    policy = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return {"model": policy, "ref_model": AutoModelForCausalLM.from_pretrained(path)}


@pytest.mark.parametrize("num_shards", [1, 2])
def test_kl_term_matches_naive_full_vocabulary_kl(tmp_path, tiny_model_path, standard_preference_dataset, num_shards):
    alpha, beta = 0.5, 0.3
    trainer = SPOTrainer(
        **policy_away_from_reference(tiny_model_path),
        args=make_args(tmp_path, alpha=alpha, beta=beta, gamma=0.0, kl_batch_size=3),
        train_dataset=standard_preference_dataset,
    )
    model = trainer.model
    model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.kl_sampler.prompts.add([[5, 6, 7], [8, 9], [10, 11, 12, 13]])
    trainer.kl_sampler.refresh(step=0)
    samples = trainer.kl_sampler.samples
    assert samples.completion_mask.sum() > 0

    # Through the trainer: every micro-batch of one optimizer step, with gradient accumulation of `num_shards`
    trainer.current_gradient_accumulation_steps = num_shards
    model.zero_grad()
    kl_values = []
    for _ in range(num_shards):
        loss = trainer.compute_loss(model, batch) / num_shards
        loss.backward()
        kl_values.append(trainer._device_metrics.windows["train"].values("kl/global")[-1])
    trainer_grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    # Naive: materialised logits, the paper's formula written out
    model.zero_grad()
    naive_kl = naive_sequence_kl(model, trainer.ref_model, samples)
    naive_loss = naive_preference_loss(model, batch, alpha) + beta * naive_kl.mean()
    naive_loss.backward()

    assert naive_kl.min() > 1e-3
    shard_means = [naive_kl[rows].mean().item() for rows in torch.tensor_split(torch.arange(3), num_shards)]
    # Per-sample KLs near 0.4, each a sum over <= 8 positions of fp32 vocabulary sums p * (log p - log q) with
    # |log p| ~ 7, chunked vs materialised: ~1e-6 per position, ~1e-5 relative at worst (observed 7e-7).
    assert kl_values == pytest.approx(shard_means, rel=1e-4), f"kl/global per shard ({num_shards}): trainer vs naive"
    # The same gradient through the fused, chunked path and through materialised logits, summed in other orders:
    # observed <= 8 eps of each parameter's largest entry.
    naive_grads = {name: param.grad for name, param in model.named_parameters()}
    assert_gradients_close(
        trainer_grads, naive_grads, f"trainer ({num_shards} shards) vs naive full-vocabulary KL", 100
    )


def test_dataset_kl_ablation_is_the_kl_on_the_batch_completions(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    # Table 6's "in-dataset (tokenwise)" regulariser: Eq. 13's estimator on the dataset's own completions, no sampling.
    alpha, beta = 0.5, 0.3
    trainer = SPOTrainer(
        **policy_away_from_reference(tiny_model_path),
        args=make_args(tmp_path, alpha=alpha, beta=beta, gamma=0.0, regularizer="dataset_kl"),
        train_dataset=standard_preference_dataset,
    )
    assert trainer.kl_sampler is None  # nothing is sampled
    model = trainer.model
    model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model.zero_grad()
    trainer.compute_loss(model, batch).backward()
    trainer_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    logged = trainer._device_metrics.windows["train"].values("kl/dataset")[-1]

    model.zero_grad()
    samples = KLSamples(batch["input_ids"], batch["attention_mask"], batch["completion_mask"], step=0)
    naive_kl = naive_sequence_kl(model, trainer.ref_model, samples)  # the 8 chosen and rejected completions
    (naive_preference_loss(model, batch, alpha) + beta * naive_kl.mean()).backward()
    assert naive_kl.min() > 1e-3 and trainer._device_metrics.windows["train"].values("kl/global") == []
    # A mean of 8 sums over <= 8 positions of fp32 vocabulary sums, chunked vs materialised: ~1e-5 relative at worst.
    assert logged == pytest.approx(naive_kl.mean().item(), rel=1e-4), "kl/dataset: trainer vs naive"
    naive_grads = {name: param.grad for name, param in model.named_parameters()}
    assert_gradients_close(trainer_grads, naive_grads, "dataset KL: trainer vs naive full-vocabulary KL", 100)


def test_kl_is_zero_when_policy_equals_reference(tmp_path, tiny_model_path, standard_preference_dataset):
    trainer = SPOTrainer(
        model=tiny_model_path, args=make_args(tmp_path, max_steps=1), train_dataset=standard_preference_dataset
    )
    trainer.train()
    # Step 0 runs before any update: π_θ = π_ref exactly. The KL is then exactly 0 when both hidden states are computed
    # alike; rounding either would leave ~eps * |log p| ~ 1e-6 per position over <= 8 positions.
    first = next(entry for entry in trainer.state.log_history if "kl/global" in entry)
    assert first["kl/global"] == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Generation schedule


@pytest.mark.parametrize("gradient_accumulation_steps", [1, 3])
def test_generation_happens_exactly_every_interval(
    tmp_path, tiny_model_path, standard_preference_dataset, gradient_accumulation_steps
):
    args = make_args(
        tmp_path,
        max_steps=7,
        generation_interval=3,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
    trainer = SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset)
    counter = GenerateCounter(trainer)
    trainer.train()
    assert counter.steps == [0, 3, 6]
    # Every step of the run computed the KL on the samples of the latest refresh.
    logged = [entry for entry in trainer.state.log_history if "kl/global" in entry]
    assert len(logged) == 7
    assert (
        len(trainer.kl_sampler.samples) == args.resolved_kl_batch_size == max(1, 2 * gradient_accumulation_steps // 2)
    )


@pytest.mark.parametrize("regularizer", ["global_kl", "dataset_kl"])
def test_no_generation_and_no_reference_without_kl(
    tmp_path, tiny_model_path, standard_preference_dataset, regularizer
):
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, beta=0.0, regularizer=regularizer),
        train_dataset=standard_preference_dataset,
    )
    counter = GenerateCounter(trainer)
    trainer.train()
    assert counter.steps == []
    assert trainer.ref_model is None
    assert not any({"kl/global", "kl/dataset"} & set(entry) for entry in trainer.state.log_history)


# ---------------------------------------------------------------------------------------------------------------------
# Migration from DPO, datasets, metrics

DPO_SCRIPT = textwrap.dedent(
    """
    from trl import DPOConfig, DPOTrainer

    training_args = DPOConfig(
        output_dir=OUTPUT_DIR, per_device_train_batch_size=4, max_steps=3, learning_rate=1e-2, report_to="none",
        use_cpu=True, bf16=False, gradient_checkpointing=False, logging_steps=1, save_strategy="no", max_length=64,
    )
    trainer = DPOTrainer(model=MODEL, args=training_args, train_dataset=DATASET)
    trainer.train()
    """
)


def test_dpo_script_with_class_names_swapped_trains(tmp_path, tiny_model_path, standard_preference_dataset):
    script = DPO_SCRIPT.replace("from trl import DPOConfig, DPOTrainer", "from trl_spo import SPOConfig, SPOTrainer")
    script = script.replace("DPOConfig(", "SPOConfig(").replace("DPOTrainer(", "SPOTrainer(")
    assert "DPO" not in script
    namespace = {"OUTPUT_DIR": str(tmp_path), "MODEL": tiny_model_path, "DATASET": standard_preference_dataset}
    exec(script, namespace)
    trainer = namespace["trainer"]
    assert isinstance(trainer, SPOTrainer)
    assert trainer.state.global_step == 3
    assert any("kl/global" in entry for entry in trainer.state.log_history)


@pytest.mark.parametrize(
    "dataset_fixture",
    [
        "standard_preference_dataset",
        "conversational_preference_dataset",
        "implicit_prompt_preference_dataset",
        "implicit_prompt_conversational_preference_dataset",
    ],
)
def test_every_dataset_format_trains_every_parameter(tmp_path, tiny_model_path, dataset_fixture, request):
    dataset = request.getfixturevalue(dataset_fixture)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    before = snapshot(model)
    trainer = SPOTrainer(model=model, args=make_args(tmp_path), train_dataset=dataset)
    trainer.train()
    assert_all_changed(before, trainer.model)
    assert trainer.kl_sampler.samples.completion_mask.sum() > 0


def test_logged_metrics(tmp_path, tiny_model_path, standard_preference_dataset):
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, max_steps=4, gamma=0.5, generation_interval=2),
        train_dataset=standard_preference_dataset,
    )
    trainer.train()
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    refresh_steps = [entry for entry in history if "samples/mean_length" in entry]
    assert [entry["step"] for entry in refresh_steps] == [1, 3]  # refreshes at the start of steps 0 and 2
    for entry in refresh_steps:
        assert 1 <= entry["samples/mean_length"] <= 8
        assert 0 < entry["time/generation_share"] < 1
    for entry in history:
        assert entry["kl/global"] >= -1e-5  # >= 0 up to rounding: 0 at step 0, where pi_theta = pi_ref
        assert entry["samples/entropy"] > 0
        assert 0 < entry["mu/min"] <= entry["mu/mean"] <= entry["mu/max"] < 2
        assert entry["loss/preference"] > 0
        assert 0 <= entry["rewards/accuracies"] <= 1
        assert entry["logps/chosen"] < 0 and entry["logps/rejected"] < 0
    # The total loss is the preference term plus beta times the KL: one fp32 addition, rounded to an ulp of a loss near
    # log(2) / alpha = 69 (7.6e-6). beta * KL must stand out of that, or a missing KL term would pass.
    assert max(trainer.args.beta * entry["kl/global"] for entry in history) > 1e-4
    for entry in history:
        expected = entry["loss/preference"] + trainer.args.beta * entry["kl/global"]
        assert entry["loss"] == pytest.approx(expected, rel=0, abs=1e-5), (
            f"loss vs loss/preference + beta * kl/global at logged step {entry['step']}"
        )


def test_model_card_names_spo_and_cites_the_paper(tmp_path, tiny_model_path, standard_preference_dataset):
    trainer = SPOTrainer(
        model=tiny_model_path, args=make_args(tmp_path, max_steps=1), train_dataset=standard_preference_dataset
    )
    trainer.create_model_card(model_name="tiny-spo")
    card = (tmp_path / "README.md").read_text()
    assert "SPO" in card
    assert "Soft Preference Optimization" in card
    assert "2405.00747" in card


# ---------------------------------------------------------------------------------------------------------------------
# Bad input


def test_wrong_dataset_columns(tmp_path, tiny_model_path):
    dataset = Dataset.from_list([{"prompt": "Name a fruit:", "completion": " apple."}] * 4)
    with pytest.raises(
        ValueError, match=r"columns \['completion', 'prompt'\]\. Expected .*pairwise: \['chosen', 'rejected'\]"
    ):
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=dataset)


def test_empty_completion(tmp_path, tiny_model_path):
    rows = [{"prompt": "Name a fruit:", "chosen": " apple.", "rejected": " kiwi."}] * 3
    rows.append({"prompt": "Name a fruit:", "chosen": " apple.", "rejected": "  "})
    with pytest.raises(ValueError, match=r"Row 3 of the train dataset has an empty 'rejected' completion"):
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))


def test_dpo_config_is_refused(tmp_path, tiny_model_path, standard_preference_dataset):
    args = DPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(TypeError, match="SPOTrainer needs an `SPOConfig`, got `DPOConfig`"):
        SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints keep the KL samples


def test_checkpoint_restores_kl_samples_and_prompts(tmp_path, tiny_model_path, standard_preference_dataset):
    args = make_args(tmp_path, max_steps=3, generation_interval=2, save_strategy="steps", save_steps=3)
    trainer = SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset)
    trainer.train()
    checkpoint = tmp_path / "checkpoint-3"
    assert (checkpoint / "spo_state_rank0.pt").is_file()
    saved = trainer.kl_sampler.samples
    assert saved.step == 2

    resumed = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, max_steps=4, generation_interval=2, save_strategy="no"),
        train_dataset=standard_preference_dataset,
    )
    counter = GenerateCounter(resumed)
    restored_pools = []

    class RecordPool(TrainerCallback):  # the state is restored by `train()`, before any callback runs
        def on_train_begin(self, args, state, control, **kwargs):
            restored_pools.append(resumed.kl_sampler.prompts.state_dict())

    resumed.add_callback(RecordPool())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    # Step 3 reuses the samples drawn at step 2 (no refresh before step 4), exactly as the uninterrupted run would.
    assert counter.steps == []
    assert resumed.kl_sampler.samples.step == 2
    assert torch.equal(resumed.kl_sampler.samples.input_ids, saved.input_ids)
    assert restored_pools == [trainer.kl_sampler.prompts.state_dict()]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_resume_from_a_damaged_spo_state(tmp_path, tiny_model_path, standard_preference_dataset, damage):
    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset).train()
    state_file = tmp_path / "checkpoint-2" / "spo_state_rank0.pt"
    if damage == "missing":
        os.remove(state_file)
        error, message = FileNotFoundError, "has no SPO state"
    else:
        state_file.write_bytes(state_file.read_bytes()[:100])
        error, message = ValueError, "is corrupt or partial"
    resumed = SPOTrainer(
        model=tiny_model_path, args=make_args(tmp_path, max_steps=3), train_dataset=standard_preference_dataset
    )
    with pytest.raises(error, match=message):
        resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


def test_tokenizer_pad_side_effects_do_not_break_generation(tmp_path, tiny_model_path, standard_preference_dataset):
    # Prompts of different lengths are left-padded for generation and flushed left afterwards: every sample must
    # start with its prompt and have its completion right after it.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path),
        train_dataset=standard_preference_dataset,
        processing_class=tokenizer,
    )
    prompts = [[5, 6, 7, 8, 9], [10, 11]]
    trainer.kl_sampler.prompts.add(prompts)
    trainer.kl_sampler.refresh(step=0)
    samples = trainer.kl_sampler.samples
    for row, prompt in enumerate(prompts):
        ids = samples.input_ids[row]
        assert ids[: len(prompt)].tolist() == prompt
        completion_positions = samples.completion_mask[row].nonzero().flatten().tolist()
        assert completion_positions[0] == len(prompt)
        assert completion_positions == list(range(len(prompt), len(prompt) + len(completion_positions)))
        assert samples.attention_mask[row].sum() == len(prompt) + len(completion_positions)


# ---------------------------------------------------------------------------------------------------------------------
# PEFT: the reference is the base model with the adapter disabled


def test_lora_uses_the_disabled_adapter_as_reference(tmp_path, tiny_model_path, standard_preference_dataset):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, max_steps=4, generation_interval=1, learning_rate=5e-2),
        train_dataset=standard_preference_dataset,
        peft_config=config,
    )
    assert trainer.ref_model is None  # no second copy of the weights
    base_model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    base_count = sum(p.numel() for p in base_model.parameters())
    lora_count = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    # The trainer holds exactly one copy of the base weights plus the adapter
    assert sum(p.numel() for p in trainer.model.parameters()) == base_count + lora_count
    assert 0 < lora_count < base_count // 10
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    lora_before = snapshot(trainer.model)
    assert lora_before and all("lora_" in name for name in lora_before)
    trainer.train()
    kl = [entry["kl/global"] for entry in trainer.state.log_history if "kl/global" in entry]
    # Step 0: LoRA's B = 0 adds exact zeros, so the policy is bitwise the base model and the KL is 0.
    assert kl[0] == pytest.approx(0.0, abs=1e-6)
    assert kl[-1] > 1e-4
    assert_all_changed(lora_before, trainer.model)
    for name, param in trainer.model.named_parameters():
        if name in base:
            assert torch.equal(base[name], param), f"frozen base weight {name} changed"


def test_samples_come_from_the_policy_not_from_the_model_generation_defaults(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    # An instruct model's generation_config (here: a top_p that makes sampling greedy) must not leak into the KL
    # samples: Eq. 13 needs y ~ pi_theta. Older transformers filled fields left at their defaults from it.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    model.generation_config.top_p = 1e-6
    model.generation_config.do_sample = False
    trainer = SPOTrainer(
        model=model, args=make_args(tmp_path, kl_batch_size=16), train_dataset=standard_preference_dataset
    )
    trainer.kl_sampler.prompts.add([[5, 6, 7]])
    trainer.kl_sampler.refresh(step=0)
    completions = {tuple(ids.tolist()) for ids in trainer.kl_sampler.samples.input_ids}
    assert len(completions) > 8  # a random-init model sampled at temperature 1 almost never repeats itself


def test_sampler_keeps_its_metrics_until_the_trainer_logs_them(tmp_path, tiny_model_path, standard_preference_dataset):
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, kl_batch_size=3),
        train_dataset=standard_preference_dataset,
    )
    trainer.kl_sampler.prompts.add([[5, 6, 7], [8, 9], [10, 11, 12, 13]])
    trainer.kl_sampler.refresh(step=0)
    # The callback writes nothing into the trainer's private metrics: the trainer takes the sampler's at a log.
    assert "samples/mean_length" not in trainer._metrics["train"]
    trainer.model.train()
    trainer.log({})
    logged = trainer.state.log_history[-1]
    assert 1 <= logged["samples/mean_length"] <= 8 and 0 <= logged["samples/clipped_ratio"] <= 1, logged
    assert trainer.kl_sampler.take_metrics() == {}, "taken metrics must not be logged twice"


def test_generation_share_is_the_share_of_refresh_time_over_the_logging_window(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    # A controlled clock, so the test measures the bookkeeping, not this machine's speed or load: every refresh takes
    # 10 s and every step 1 s more.
    now = [0.0]

    class OneSecondPerStep(TrainerCallback):  # runs before the sampling callback, which the trainer adds last
        def on_step_end(self, args, state, control, **kwargs):
            now[0] += 1.0

    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, max_steps=8, generation_interval=4, logging_steps=4),
        train_dataset=standard_preference_dataset,
        callbacks=[OneSecondPerStep()],
    )
    sampling = trainer.kl_sampler
    sampling.clock = lambda: now[0]
    refresh = sampling.refresh

    def ten_second_refresh(step):
        refresh(step)
        now[0] += 10.0

    sampling.refresh = ten_second_refresh
    trainer.train()
    shares = [entry["time/generation_share"] for entry in trainer.state.log_history if "loss" in entry]
    # Each window of 4 steps holds one refresh: 10 s of 10 + 4 s. A mean of per-step ratios would give
    # (10/11 + 0 + 0 + 0) / 4 = 0.23. Exact: sums and the ratio of small integers are exact in binary.
    assert shares == [10 / 14, 10 / 14]


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, tiny_model_path, standard_preference_dataset):
    # 8 steps in one go against 4 steps, a stop, and 4 more resumed from the checkpoint. Refreshes at 0, 3, 6: the
    # resumed half starts on the samples drawn at step 3 (from the checkpoint) and draws new ones at step 6 (with the
    # restored RNG state).
    def run(output_dir, stop_at=None, resume=None):
        args = make_args(output_dir, max_steps=8, generation_interval=3, learning_rate=1e-3)
        if stop_at is not None:
            args.save_strategy, args.save_steps = "steps", stop_at
        trainer = SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset)
        if stop_at is not None:

            class StopAt(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    control.should_training_stop = state.global_step == stop_at

            trainer.add_callback(StopAt())
        trainer.train(resume_from_checkpoint=resume)
        return {e["step"]: (e["loss"], e["kl/global"]) for e in trainer.state.log_history if "loss" in e}

    uninterrupted = run(tmp_path / "full")
    run(tmp_path / "split", stop_at=4)
    resumed = run(tmp_path / "split", resume=str(tmp_path / "split" / "checkpoint-4"))
    resumed = {
        step: values for step, values in resumed.items() if step > 4
    }  # the history before comes from the checkpoint
    assert sorted(resumed) == [5, 6, 7, 8]
    # Bitwise: the same fp32 computation from bit-identical weights, optimizer and RNG states, on the same machine and
    # thread count. A tolerance would not help: Adam turns a rounding difference into steps of O(lr).
    for step, (loss, kl) in resumed.items():
        assert loss == uninterrupted[step][0], f"loss at step {step}: resumed run vs uninterrupted run"
        assert kl == uninterrupted[step][1], f"kl/global at step {step}: resumed run vs uninterrupted run"
    assert uninterrupted[8][1] != uninterrupted[5][1]  # the KL moved: the comparison is not between constants


# ---------------------------------------------------------------------------------------------------------------------
# vLLM sampling: vLLM cannot run on these CPU machines; a stand-in for TRL's VLLMGeneration checks everything around it


class FakeVLLMGeneration:
    """Records what SPOTrainer asks of TRL's `VLLMGeneration` and answers like it: completion ids ending in EOS."""

    instances: list["FakeVLLMGeneration"] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[str] = []
        self.eos = kwargs["processing_class"].eos_token_id
        FakeVLLMGeneration.instances.append(self)

    def sync_weights(self):
        self.calls.append("sync")

    def generate(self, prompts, images, num_generations):
        self.calls.append("generate")
        assert images is None and num_generations == 1
        # Completions of different lengths: 1, 2, 3 ... tokens, the last one EOS, then junk vLLM would not send
        completions = [[7] * (i % 3) + [self.eos] for i in range(len(prompts))]
        return prompts, completions, None, None


def test_vllm_sampling_path(tmp_path, tiny_model_path, standard_preference_dataset, monkeypatch):
    from trl_spo import _trl_compat

    args = make_args(tmp_path, use_vllm=True, max_steps=4, generation_interval=2, temperature=0.9, top_p=0.95)
    monkeypatch.setattr(_trl_compat, "is_vllm_available", lambda: False)
    with pytest.raises(ImportError, match="needs vLLM"):
        SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset)

    monkeypatch.setattr(_trl_compat, "is_vllm_available", lambda: True)
    monkeypatch.setattr(_trl_compat, "VLLMGeneration", FakeVLLMGeneration)
    FakeVLLMGeneration.instances.clear()
    trainer = SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset)
    counter = GenerateCounter(trainer)  # model.generate must not be used
    trainer.train()

    (vllm,) = FakeVLLMGeneration.instances
    assert counter.steps == []
    # Weights are pushed to vLLM before every draw: refreshes at steps 0 and 2
    assert vllm.calls == ["sync", "generate", "sync", "generate"]
    assert vllm.kwargs["temperature"] == 0.9 and vllm.kwargs["top_p"] == 0.95
    assert vllm.kwargs["max_completion_length"] == args.max_completion_length
    assert vllm.kwargs["mode"] == "colocate"
    samples = trainer.kl_sampler.samples
    lengths = samples.completion_mask.sum(dim=1).tolist()
    assert lengths == [i % 3 + 1 for i in range(len(samples))]
    for row, length in enumerate(lengths):
        completion = samples.input_ids[row][samples.completion_mask[row].bool()].tolist()
        assert completion == [7] * (length - 1) + [vllm.eos]
    assert all("kl/global" in entry for entry in trainer.state.log_history if "loss" in entry)


def test_vllm_needs_gathered_weights_under_zero3(tmp_path):
    with pytest.raises(ValueError, match="needs `ds3_gather_for_generation=True`"):
        make_args(tmp_path, use_vllm=True, ds3_gather_for_generation=False)


KILLED_RUN = """
import os, signal, sys
import torch
from datasets import Dataset
from transformers import TrainerCallback
from tests.helpers import make_args
from trl_spo import SPOTrainer

torch.set_num_threads({threads})  # the parent's: fp32 sums in the same order as the uninterrupted run
rows = [dict(prompt=p, chosen=c, rejected=r) for p, c, r in {rows!r}]
args = make_args(sys.argv[1], max_steps=6, generation_interval=3, learning_rate=1e-3, save_strategy="steps", save_steps=2)
trainer = SPOTrainer(model={model!r}, args=args, train_dataset=Dataset.from_list(rows))

class KillMidStep(TrainerCallback):  # SIGKILL: no cleanup, no save, in the middle of step 5 (after its refresh)
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 4:
            os.kill(os.getpid(), signal.SIGKILL)

trainer.add_callback(KillMidStep())
trainer.train()
"""


def test_a_killed_run_resumes_from_its_last_checkpoint_without_loss(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    import signal
    import subprocess
    import sys

    rows = [(r["prompt"], r["chosen"], r["rejected"]) for r in standard_preference_dataset]
    script = KILLED_RUN.format(rows=rows, model=tiny_model_path, threads=torch.get_num_threads())
    repo = os.path.dirname(os.path.dirname(__file__))
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "killed")], cwd=repo, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    checkpoints = sorted(p.name for p in (tmp_path / "killed").iterdir() if p.name.startswith("checkpoint-"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]

    def run(output_dir, resume=None):
        args = make_args(output_dir, max_steps=6, generation_interval=3, learning_rate=1e-3)
        trainer = SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset)
        trainer.train(resume_from_checkpoint=resume)
        return {e["step"]: (e["loss"], e["kl/global"]) for e in trainer.state.log_history if "loss" in e}

    uninterrupted = run(tmp_path / "full")
    resumed = run(tmp_path / "killed", resume=True)  # the last checkpoint: checkpoint-4
    # Bitwise, as in the test above: the killed process ran the same fp32 computation with the same thread count.
    for step in (5, 6):
        assert resumed[step][0] == uninterrupted[step][0], f"loss at step {step}: resumed killed run vs uninterrupted"
        assert resumed[step][1] == uninterrupted[step][1], (
            f"kl/global at step {step}: resumed killed run vs uninterrupted"
        )


# ---------------------------------------------------------------------------------------------------------------------
# First contact: what a DPO user hits first


def test_tokenizer_without_eos_token_is_a_clear_error(tmp_path, tiny_model_path, standard_preference_dataset):
    # DPOTrainer used to fail 11 frames deep with "endswith first arg must be str or a tuple of str, not NoneType".
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenizer.eos_token = None
    with pytest.raises(
        ValueError,
        match=r"needs a tokenizer with an EOS token to end the completions it samples for "
        r"the global KL, but `Qwen2Tokenizer.eos_token` is None\. Set the token",
    ):
        SPOTrainer(
            model=tiny_model_path,
            args=make_args(tmp_path),
            train_dataset=standard_preference_dataset,
            processing_class=tokenizer,
        )
    # Without the KL, standard (plain-text) data still needs it: DPO's tokenisation appends it to every completion.
    with pytest.raises(ValueError, match=r"EOS token to end every completion of the standard \(plain-text\) train"):
        SPOTrainer(
            model=tiny_model_path,
            args=make_args(tmp_path, beta=0.0),
            train_dataset=standard_preference_dataset,
            processing_class=tokenizer,
        )


def test_identical_chosen_and_rejected_are_counted_in_one_warning(tmp_path, tiny_model_path, preference_rows):
    rows = [dict(row) for row in preference_rows]
    for index in (2, 5):
        rows[index]["rejected"] = rows[index]["chosen"]
    with pytest.warns(UserWarning) as warned:
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=Dataset.from_list(rows))
    messages = [str(w.message) for w in warned if "identical" in str(w.message)]
    assert messages == [
        f"2 of {len(rows)} rows of the train dataset have identical 'chosen' and 'rejected' completions: such a pair "
        "states no preference and trains with zero gradient (rows 2, 5). Drop them, e.g. "
        "`dataset.filter(lambda row: row['chosen'] != row['rejected'])`."
    ]


def test_normalized_preference_loss_is_alpha_times_the_loss(tmp_path, tiny_model_path, standard_preference_dataset):
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, alpha=0.01, beta=0.0, gamma=0.0, max_steps=2),
        train_dataset=standard_preference_dataset,
    )
    trainer.train()
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    for entry in history:
        # Same float scaled in Python: exact up to the rounding of one float64 product.
        assert entry["loss/preference_normalized"] == pytest.approx(0.01 * entry["loss/preference"], rel=1e-12)
    # At step 1 the pairs are near 50/50 for a random model, so the normalized loss is near DPO's log(2), while the
    # loss itself is near log(2) / alpha: a random-init policy's log-prob gaps are a few nats, i.e. alpha * gap << 1.
    assert history[0]["loss/preference_normalized"] == pytest.approx(math.log(2), abs=0.05)
    assert history[0]["loss"] == pytest.approx(math.log(2) / 0.01, rel=0.05)
