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
SPO against DPO, measured: the benchmarks of the repository, outside the installed package (`trl_spo/`).

They run from a checkout, at its root, with the package installed (`pip install -e ".[dev]"`), one command each:
`python -m benchmarks.NAME [options]` (`--help` lists a benchmark's options; `python -m benchmarks` lists them all).
docs/benchmarks.md says what each measures and docs/results.md what they found. They import `trl_spo`; nothing in
`trl_spo` imports them.
"""

# Module -> what it measures: the benchmarks a user runs (the other modules are their shared parts).
BENCHMARKS = {
    "answers": "does SPO land on Softmax(r / alpha) on a real chat model (SmolLM2), where DPO collapses? (known answers)",
    "frontier": "SPO and DPO against the maximum-entropy frontier of reward and entropy (reads the answers runs)",
    "nary_comparison": "the paper's Tables 4-5 in miniature: SPO, PL-DPO, S-DPO against Best-response SFT (reads "
    "answers_nary)",
    "expert_distribution": "does SPO land on Softmax(r / alpha)? (known-answer task, tiny model)",
    "step_cost": "time and peak memory of an SPO step against a DPO step (`--preset gpu` on a GPU)",
}
