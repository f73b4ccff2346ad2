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

"""Benchmarks that ship with the package, run by `trl-spo bench <name>`."""

# Name -> (module with a `main(argv, prog)`, what it measures). Modules are imported only when their benchmark runs.
BENCHMARKS = {
    "answers": (
        "trl_spo.benchmarks.answers",
        "does SPO land on Softmax(r / alpha) on a real chat model (SmolLM2), where DPO collapses? (known answers)",
    ),
    "expert": ("trl_spo.benchmarks.expert_distribution", "does SPO land on Softmax(r / alpha)? (known-answer task)"),
    "chat": (
        "trl_spo.benchmarks.chat_frontier",
        "SPO vs DPO on an open-ended chat task at a CPU budget (SmolLM2): inconclusive",
    ),
    "step_cost": ("trl_spo.benchmarks.step_cost", "time and peak memory of an SPO step against a DPO step"),
    "pair_weights": (
        "trl_spo.benchmarks.pair_weights",
        "before training: Eq. 8's pair weights on your pairs for each alpha (choosing alpha)",
    ),
}
