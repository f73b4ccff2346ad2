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

"""Soft Preference Optimization (SPO) for TRL: `SPOConfig`/`SPOTrainer` replace `DPOConfig`/`DPOTrainer`."""

from .config import SPOConfig
from .data import (
    DataCollatorForNaryPreference,
    best_of_n_to_pairwise,
    detect_preference_format,
    ranking_to_best_of_n,
    ranking_to_pairwise,
)
from .losses import (
    PREFERENCE_LOSSES,
    dpo_plackett_luce_loss,
    dpo_softmax_loss,
    get_preference_loss,
    global_kl_per_sample,
    kendall_tau,
    spo_best_of_n_loss,
    spo_pairwise_loss,
    spo_ranking_loss,
    spo_ranking_sample_scores,
    spo_ranking_sample_weights,
    spo_sample_scores,
    spo_sample_weights,
)
from .trainer import SPOTrainer


__version__ = "0.1.0.dev0"

__all__ = [
    "DataCollatorForNaryPreference",
    "PREFERENCE_LOSSES",
    "SPOConfig",
    "SPOTrainer",
    "best_of_n_to_pairwise",
    "detect_preference_format",
    "dpo_plackett_luce_loss",
    "dpo_softmax_loss",
    "get_preference_loss",
    "global_kl_per_sample",
    "kendall_tau",
    "ranking_to_best_of_n",
    "ranking_to_pairwise",
    "spo_best_of_n_loss",
    "spo_pairwise_loss",
    "spo_ranking_loss",
    "spo_ranking_sample_scores",
    "spo_ranking_sample_weights",
    "spo_sample_scores",
    "spo_sample_weights",
]
