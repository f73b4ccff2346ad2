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

"""SPOConfig: documented fields, defaults from the paper, and a clear error for every bad value."""

import dataclasses
import re

import pytest
from trl import DPOConfig

from trl_spo import SPOConfig
from trl_spo.config import SPO_FIELDS


def make(**kwargs) -> SPOConfig:
    return SPOConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none", **kwargs)


def test_every_spo_field_is_documented_twice():
    docstring = SPOConfig.__doc__
    fields = {f.name: f for f in dataclasses.fields(SPOConfig)}
    for name in (*SPO_FIELDS, "beta"):
        assert re.search(rf"^\s+{name} \(`", docstring, re.MULTILINE), f"{name} missing from the class docstring"
        assert fields[name].metadata.get("help"), f"{name} has no metadata help"


def test_keeps_every_dpo_field():
    dpo_fields = {f.name for f in dataclasses.fields(DPOConfig)}
    assert dpo_fields <= {f.name for f in dataclasses.fields(SPOConfig)}
    assert issubclass(SPOConfig, DPOConfig)


def test_paper_defaults():
    config = make()
    assert (config.alpha, config.beta, config.gamma) == (0.01, 0.01, 0.01)
    assert config.regularizer == "global_kl"
    assert config.generation_interval == 8
    assert config.uses_global_kl


def test_default_kl_batch_size_is_half_the_pairs_per_step():
    assert make(per_device_train_batch_size=2, gradient_accumulation_steps=8).resolved_kl_batch_size == 8
    assert make(per_device_train_batch_size=1, gradient_accumulation_steps=1).resolved_kl_batch_size == 1
    assert make(kl_batch_size=3).resolved_kl_batch_size == 3


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("alpha", -0.1, "`alpha` must be a finite number >= 0, got -0.1"),
        ("alpha", float("nan"), "`alpha` must be a finite number >= 0, got nan"),
        # The loss functions no longer check alpha, gamma and the rank decay on every call: this is their door.
        ("alpha", float("inf"), "`alpha` must be a finite number >= 0, got inf"),
        ("gamma", float("nan"), "`gamma` must be a finite number >= 0, got nan"),
        ("rank_weight_decay", 0.0, "`rank_weight_decay` must be a finite number > 0, got 0.0"),
        ("rank_weight_decay", -0.5, "`rank_weight_decay` must be a finite number > 0, got -0.5"),
        ("beta", -1.0, "`beta` must be a finite number >= 0, got -1.0"),
        ("gamma", -0.01, "`gamma` must be a finite number >= 0, got -0.01"),
        ("regularizer", "local_kl", "`regularizer` must be one of ['global_kl', 'dataset_kl'], got 'local_kl'"),
        ("regularizer", "none", "`regularizer='none'` is gone: `beta=0` turns the KL regulariser off."),
        ("generation_interval", 0, "`generation_interval` must be an integer >= 1"),
        ("kl_batch_size", 0, "`kl_batch_size` must be None or an integer >= 1, got 0"),
        ("max_completion_length", 0, "`max_completion_length` must be an integer >= 1, got 0"),
        ("temperature", 0.0, "`temperature` must be a finite number > 0, got 0.0"),
        ("top_p", 1.5, "`top_p` must be in (0, 1], got 1.5"),
        ("top_k", -1, "`top_k` must be an integer >= 0, got -1"),
        ("min_p", 2.0, "`min_p` must be None or in [0, 1], got 2.0"),
        ("repetition_penalty", 0.0, "`repetition_penalty` must be > 0, got 0.0"),
    ],
)
def test_invalid_values_name_the_field(field, value, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        make(**{field: value})


@pytest.mark.parametrize(
    "field, value",
    [
        ("loss_type", ["ipo"]),
        ("loss_type", ["sigmoid", "sft"]),
        ("loss_weights", [1.0]),
        ("ld_alpha", 0.5),
        ("f_divergence_type", "js_divergence"),
        ("f_alpha_divergence_coef", 0.3),
        ("label_smoothing", 0.1),
        ("use_weighting", True),
        ("discopop_tau", 0.1),
        ("precompute_ref_log_probs", True),
        ("precompute_ref_batch_size", 8),
        ("sync_ref_model", True),
    ],
)
def test_dpo_only_options_are_rejected_with_the_reason(field, value):
    if field == "loss_weights":  # DPOConfig itself checks the lengths match
        kwargs = {"loss_type": ["sigmoid"], "loss_weights": value}
    else:
        kwargs = {field: value}
    with pytest.raises(ValueError, match=rf"`{field}=.*` is a DPO option that SPOConfig does not support: .+"):
        make(**kwargs)


def test_generation_kwargs_accepts_json_from_the_command_line():
    assert make(generation_kwargs='{"no_repeat_ngram_size": 3}').generation_kwargs == {"no_repeat_ngram_size": 3}
