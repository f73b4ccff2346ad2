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
Soft Preference Optimization (SPO) for TRL: `SPOConfig`/`SPOTrainer` replace `DPOConfig`/`DPOTrainer`.

Names are imported on first use, so `import trl_spo` (and `trl-spo eval`, which only needs `trl_spo.evaluation`) does
not import TRL and the trainer.
"""

import importlib
from typing import TYPE_CHECKING


__version__ = "0.1.0.dev0"

# Public name -> the module that defines it.
_EXPORTS = {
    "SPOConfig": "config",
    "SPOTrainer": "trainer",
    "NaryDPOConfig": "baselines",
    "NaryDPOTrainer": "baselines",
    "TrainingDivergedError": "nonfinite",
    "DataCollatorForNaryPreference": "data",
    "best_of_n_to_pairwise": "data",
    "detect_preference_format": "data",
    "ranking_to_best_of_n": "data",
    "ranking_to_pairwise": "data",
    "PREFERENCE_LOSSES": "losses",
    "dpo_plackett_luce_loss": "losses",
    "dpo_softmax_loss": "losses",
    "global_kl_per_sample": "kl",
    "kendall_tau": "metrics",
    "spo_batch_mean": "losses",
    "spo_best_of_n_loss": "losses",
    "spo_pairwise_grid_loss": "losses",
    "spo_pairwise_loss": "losses",
    "spo_ranking_loss": "losses",
    "spo_ranking_sample_scores": "losses",
    "spo_ranking_sample_weights": "losses",
    "spo_sample_scores": "losses",
    "spo_sample_weights": "losses",
}

__all__ = [
    "DataCollatorForNaryPreference",
    "NaryDPOConfig",
    "NaryDPOTrainer",
    "PREFERENCE_LOSSES",
    "SPOConfig",
    "SPOTrainer",
    "TrainingDivergedError",
    "best_of_n_to_pairwise",
    "detect_preference_format",
    "dpo_plackett_luce_loss",
    "dpo_softmax_loss",
    "global_kl_per_sample",
    "kendall_tau",
    "ranking_to_best_of_n",
    "ranking_to_pairwise",
    "spo_batch_mean",
    "spo_best_of_n_loss",
    "spo_pairwise_grid_loss",
    "spo_pairwise_loss",
    "spo_ranking_loss",
    "spo_ranking_sample_scores",
    "spo_ranking_sample_weights",
    "spo_sample_scores",
    "spo_sample_weights",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from .baselines import NaryDPOConfig, NaryDPOTrainer
    from .config import SPOConfig
    from .data import (
        DataCollatorForNaryPreference,
        best_of_n_to_pairwise,
        detect_preference_format,
        ranking_to_best_of_n,
        ranking_to_pairwise,
    )
    from .kl import global_kl_per_sample
    from .losses import (
        PREFERENCE_LOSSES,
        dpo_plackett_luce_loss,
        dpo_softmax_loss,
        spo_batch_mean,
        spo_best_of_n_loss,
        spo_pairwise_grid_loss,
        spo_pairwise_loss,
        spo_ranking_loss,
        spo_ranking_sample_scores,
        spo_ranking_sample_weights,
        spo_sample_scores,
        spo_sample_weights,
    )
    from .metrics import kendall_tau
    from .nonfinite import TrainingDivergedError
    from .trainer import SPOTrainer
