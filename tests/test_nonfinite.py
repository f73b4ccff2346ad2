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
A diverged run stops with one clear error (the first non-finite step, the quantity, the causes) no later than the next
log, never writes a checkpoint of non-finite weights, and costs no host sync on ordinary steps; evaluation logs NaN like
DPOTrainer.
"""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from trl_spo import SPOTrainer
from trl_spo.nonfinite import NonFiniteLogitsGuard, TrainingDivergedError

from .helpers import make_args


class PoisonWeightsAfterStep(TrainerCallback):
    """Writes NaN into the final norm's weight at the end of optimizer step `step`, as a diverged update would."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.model.norm.weight.fill_(float("nan"))


def test_half_precision_weights_at_a_high_learning_rate_stop_with_a_clear_error(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    # TRL's own `test_train_model_dtype` setting (fp16 weights, learning_rate=0.1): it used to crash inside a metric
    # (`min(): Expected reduction dim`) or in `torch.multinomial`. Which check fires first depends on the machine's
    # rounding, so either message is accepted; both must name the step and the causes.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float16)
    trainer = SPOTrainer(
        model=model,
        args=make_args(tmp_path, learning_rate=0.1, max_steps=12, gamma=0.5),
        train_dataset=standard_preference_dataset,
    )
    with pytest.raises(TrainingDivergedError) as error:
        trainer.train()
    message = str(error.value)
    assert "SPO training diverged" in message and "step" in message
    assert "learning_rate=0.1" in message and "weights held in float16" in message


@pytest.mark.parametrize("logging_steps", [1, 3])
def test_non_finite_loss_names_the_first_step_and_the_quantity_at_the_next_log(
    tmp_path, tiny_model_path, standard_preference_dataset, logging_steps
):
    # No refresh after step 0, so the poisoned weights first show in the loss of step 2. The guard records it on the
    # device and the next log reads it: at step 2 itself, or at step 3 when the logs come every 3 steps.
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, max_steps=4, generation_interval=100, gamma=0.5, logging_steps=logging_steps),
        train_dataset=standard_preference_dataset,
        callbacks=[PoisonWeightsAfterStep(1)],
    )
    with pytest.raises(
        TrainingDivergedError,
        match=r"diverged at step 2: the preference loss is nan, the KL term is nan \(8 of 8 sequence "
        r"log-probs of the batch are non-finite\)\. Likely causes: a learning rate too high .*learning_rate=0\.01",
    ):
        trainer.train()
    assert trainer.state.global_step == max(2, logging_steps)


def test_no_checkpoint_of_non_finite_weights_is_written(tmp_path, tiny_model_path, standard_preference_dataset):
    # A checkpoint at step 2 and no log before the end: the guard is read before the checkpoint is written.
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(
            tmp_path, max_steps=4, generation_interval=100, logging_steps=100, save_strategy="steps", save_steps=2
        ),
        train_dataset=standard_preference_dataset,
        callbacks=[PoisonWeightsAfterStep(1)],
    )
    with pytest.raises(TrainingDivergedError, match="diverged at step 2: the preference loss is nan"):
        trainer.train()
    assert trainer.state.global_step == 2
    assert not list(tmp_path.glob("checkpoint-*")), "a checkpoint of the diverged run was written"


def test_non_finite_weights_stop_the_kl_sampler_with_a_clear_error(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, max_steps=4, generation_interval=1),
        train_dataset=standard_preference_dataset,
        callbacks=[PoisonWeightsAfterStep(1)],
    )
    with pytest.raises(
        TrainingDivergedError,
        match=r"diverged before step 2: the policy's next-token logits are non-finite .* sampling the completions of "
        r"the global KL",
    ):
        trainer.train()


def test_evaluation_of_a_diverged_model_logs_nan_like_dpo(tmp_path, tiny_model_path, standard_preference_dataset):
    # Evaluation only reports: NaN metrics (mu included, which used to crash `min()` on an empty selection).
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=make_args(tmp_path, gamma=0.5),
        train_dataset=standard_preference_dataset,
        eval_dataset=standard_preference_dataset,
    )
    with torch.no_grad():
        trainer.model.model.norm.weight.fill_(float("nan"))
    metrics = trainer.evaluate()
    assert math.isnan(metrics["eval_loss"])
    assert math.isnan(metrics["eval_mu/mean"]) and math.isnan(metrics["eval_mu/min"])


def test_logits_guard_allows_masked_tokens_and_records_unusable_rows():
    input_ids = torch.zeros(2, 3, dtype=torch.long)
    masked = torch.tensor([[0.5, float("-inf"), 1.0], [float("-inf"), 2.0, 0.0]])  # top-k style -inf is fine
    guard = NonFiniteLogitsGuard(step=7, hints="Likely causes: test.")
    assert torch.equal(guard(input_ids, masked), masked)
    guard.raise_if_diverged()  # nothing recorded
    with_nan, with_inf, no_token_left = masked.clone(), masked.clone(), masked.clone()
    with_nan[1, 2], with_inf[1, 2], no_token_left[0] = float("nan"), float("inf"), float("-inf")
    for bad_row, scores in [(1, with_nan), (1, with_inf), (0, no_token_left)]:
        guard = NonFiniteLogitsGuard(step=7, hints="Likely causes: test.")
        kept = guard(input_ids, scores)
        # Generation goes on without a host sync per token: the unusable row becomes a distribution that
        # `torch.multinomial` accepts (uniform), the other row is untouched, and the record is read afterwards.
        assert torch.equal(kept[bad_row], torch.zeros(3)) and torch.equal(kept[1 - bad_row], scores[1 - bad_row])
        torch.multinomial(torch.softmax(kept, -1), 1)
        guard(input_ids, masked)  # a later, finite step does not clear the record
        with pytest.raises(TrainingDivergedError, match="before step 7: .*Likely causes: test."):
            guard.raise_if_diverged()
