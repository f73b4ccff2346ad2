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
Evaluation of a policy as in the paper's section 7: win rate, length-controlled win rate, useful entropy.

`metrics` (pure functions), `judges` (judges, their factory, the two-order comparison), `generation` (sampling answers
and scoring them), `report` (the summary), `runner` (`evaluate`, which ties them together), `cli` (`trl-spo eval`).
"""

from .config import EvalArguments
from .judges import (
    JUDGES,
    JudgeAttemptError,
    JudgeError,
    OpenAIChatJudge,
    PairwiseJudge,
    RewardModelJudge,
    Verdict,
    build_judge,
    judge_comparisons,
    parse_ab_reply,
)
from .metrics import (
    ClusteredMean,
    ClusteredWinRate,
    EntropySummary,
    KLEstimate,
    LengthControlledWinRate,
    WinRate,
    clustered_mean,
    clustered_win_rate,
    comparison_score,
    distinct_n,
    kl_estimate,
    length_controlled_win_rate,
    num_distinct_answers,
    per_token_entropy,
    reward_comparison_scores,
    sequence_log_ratio,
    truncation_rate,
    useful_entropy,
    win_rate,
)
from .runner import evaluate


__all__ = [
    "JUDGES",
    "ClusteredMean",
    "ClusteredWinRate",
    "EntropySummary",
    "EvalArguments",
    "JudgeAttemptError",
    "JudgeError",
    "KLEstimate",
    "LengthControlledWinRate",
    "OpenAIChatJudge",
    "PairwiseJudge",
    "RewardModelJudge",
    "Verdict",
    "WinRate",
    "build_judge",
    "clustered_mean",
    "clustered_win_rate",
    "comparison_score",
    "distinct_n",
    "evaluate",
    "judge_comparisons",
    "kl_estimate",
    "length_controlled_win_rate",
    "num_distinct_answers",
    "parse_ab_reply",
    "per_token_entropy",
    "reward_comparison_scores",
    "sequence_log_ratio",
    "truncation_rate",
    "useful_entropy",
    "win_rate",
]
