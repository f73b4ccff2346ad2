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

"""The DPO-family baselines on n-ary data (S-DPO, Plackett-Luce DPO): their own trainer, config and beta."""

import math

import pytest

from trl_spo import NaryDPOConfig, NaryDPOTrainer, SPOConfig
from trl_spo.data import ranking_to_best_of_n

from .helpers import make_args, one_step_loss_and_grads


@pytest.mark.parametrize(
    "preference_format, nary_loss_type, expected_per_row",
    [
        # At step 0 the policy is the reference: every log-ratio is 0, so each softmax term is log(size of its set),
        # whatever beta.
        ("best_of_n", "s_dpo", lambda n: math.log(n)),
        ("ranking", "pl_dpo", lambda n: sum(math.log(k) for k in range(2, n + 1))),
        ("ranking", "s_dpo", lambda n: sum(math.log(k) for k in range(2, n + 1))),
    ],
)
def test_dpo_family_baselines_start_from_the_reference(
    tmp_path, tiny_model_path, ranked_dataset, preference_format, nary_loss_type, expected_per_row
):
    dataset = ranked_dataset if preference_format == "ranking" else ranking_to_best_of_n(ranked_dataset)
    args = make_args(tmp_path, config_class=NaryDPOConfig, nary_loss_type=nary_loss_type)
    assert args.beta == 0.1  # DPO's beta, TRL's default; SPOConfig's beta (the KL weight) defaults to 0.01
    trainer = NaryDPOTrainer(model=tiny_model_path, args=args, train_dataset=dataset)
    assert trainer.ref_model is not None and trainer.kl_sampler is None
    rows = [0, 1, 2]  # n = 4, 3, 2
    loss, grads = one_step_loss_and_grads(trainer, rows)
    expected = sum(expected_per_row(n) for n in (4, 3, 2)) / 3
    # Log-ratios are 0 up to the rounding of log-probs near -20 (~2e-6), times beta: ~1e-7 of a loss of 1.2 to 1.9.
    assert loss == pytest.approx(expected, rel=1e-5), f"{nary_loss_type} loss at step 0 vs sum_k log(k), per row"
    assert any(grad.abs().sum() > 0 for grad in grads.values())
    trainer.train()
    assert trainer.state.global_step == 3
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    # No SPO quantity is logged for a DPO-family loss: no KL, no alpha-scaled loss.
    assert not any({"kl/global", "loss/preference_normalized", "mu/mean"} & set(entry) for entry in history)


def test_baseline_configuration_errors(tmp_path, tiny_model_path, ranked_dataset, standard_preference_dataset):
    for name in ("alpha", "gamma"):
        with pytest.raises(ValueError, match=f"`{name}=0.5`: the DPO-family baselines have no SPO {name}"):
            make_args(tmp_path, config_class=NaryDPOConfig, **{name: 0.5})
    # SPO's KL and sampling fields are refused too, all named in one error, rather than silently unused.
    with pytest.raises(
        ValueError, match="`generation_interval=4`, `temperature=0.7`: SPO's own fields, which the DPO"
    ):
        make_args(tmp_path, config_class=NaryDPOConfig, generation_interval=4, temperature=0.7)
    with pytest.raises(ValueError, match="`regularizer='dataset_kl'`: SPO's own fields"):
        make_args(tmp_path, config_class=NaryDPOConfig, regularizer="dataset_kl")
    with pytest.raises(ValueError, match=r"`nary_loss_type` must be one of \['s_dpo', 'pl_dpo'\], got 'spo'"):
        make_args(tmp_path, config_class=NaryDPOConfig, nary_loss_type="spo")
    with pytest.raises(ValueError, match="`beta` must be > 0: it is DPO's beta of `s_dpo`"):
        make_args(tmp_path, config_class=NaryDPOConfig, beta=0.0)
    with pytest.raises(ValueError, match="needs full rankings, but the train dataset is best-of-n"):
        NaryDPOTrainer(
            model=tiny_model_path,
            args=make_args(tmp_path, config_class=NaryDPOConfig, nary_loss_type="pl_dpo"),
            train_dataset=ranking_to_best_of_n(ranked_dataset),
        )
    with pytest.raises(ValueError, match="The train dataset is pairwise: DPO on pairs is TRL's DPOTrainer"):
        NaryDPOTrainer(
            model=tiny_model_path,
            args=make_args(tmp_path, config_class=NaryDPOConfig),
            train_dataset=standard_preference_dataset,
        )
    with pytest.raises(TypeError, match="NaryDPOTrainer needs an `NaryDPOConfig`, got `SPOConfig`"):
        NaryDPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=ranked_dataset)
    # SPO's own config has one beta (the KL weight) and no baseline switch.
    assert "nary_loss_type" not in SPOConfig.__dataclass_fields__
