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

"""docs/results.md's reason for removing the open-ended benchmark: its arithmetic, from the measured step costs."""

import json
import re

from .doc_figures import REPO_ROOT, assert_figures_in, fmt, passage, read_doc


STEPS, SHORTER_STEPS = 250, 150
SPO_SETTINGS, DPO_SETTINGS = 2, 3  # the rule's smallest conclusive run
ALLOWED_TRAINING_MINUTES = 78  # 90 minutes less the 12 assumed for the reference and the evaluation


def _step_costs(doc: str) -> dict[str, tuple[float, float]]:
    """`{baseline: (baseline s/step, SPO s/step)}` from the generated block's table rows."""
    block = doc[doc.index("<!-- open-ended-step-cost:begin -->") : doc.index("<!-- open-ended-step-cost:end -->")]
    rows = re.findall(r"^\| model \| [^|]+ \| [^|]+ \| ([^|]+) \| ([\d.]+) \| ([\d.]+) \|", block, flags=re.MULTILINE)
    return {baseline.strip(): (float(base), float(spo)) for baseline, base, spo in rows}


def test_the_reason_is_the_measured_step_costs():
    doc = read_doc("docs/results.md")
    costs = _step_costs(doc)
    assert set(costs) == {"DPO", "DPO-precomputed"}
    dpo = min(base for base, _ in costs.values())  # DPO at the cheaper of its two ways
    spo = min(spo for _, spo in costs.values())
    seconds_per_step = SPO_SETTINGS * spo + DPO_SETTINGS * dpo
    minutes, shorter = STEPS * seconds_per_step / 60, SHORTER_STEPS * seconds_per_step / 60
    answers = json.loads((REPO_ROOT / "docs" / "results" / "answers.json").read_text(encoding="utf-8"))
    (dpo_run,) = [run for run in answers["runs"] if run["setting"]["name"] == "DPO β=0.1"]
    (at_shorter,) = [entry for entry in dpo_run["history"] if entry["step"] == SHORTER_STEPS]
    second = json.loads((REPO_ROOT / "docs" / "results" / "answers_second.json").read_text(encoding="utf-8"))
    outside_training = second["total_seconds"] - sum(run["seconds"] for run in second["runs"])
    rule = passage(doc, "**Does such a run fit?**", "<!-- open-ended-step-cost:begin -->")
    assert_figures_in(
        rule,
        {
            "minutes outside training on the second set": f"spent {outside_training / 60:.0f} of its "
            f"{second['total_seconds'] / 60:.0f}",
            "allowed training minutes": f"at most {ALLOWED_TRAINING_MINUTES} minutes",
        },
        "the rule",
    )
    text = passage(doc, "**Why it does not fit.**", "So the open-ended benchmark was removed")
    assert_figures_in(
        text,
        {
            "SPO s/step": f"SPO {spo:.3f} s",
            "DPO s/step": f"DPO {dpo:.3f} s",
            "training minutes": f"take {minutes:.0f} minutes",
            "allowed": f"the {ALLOWED_TRAINING_MINUTES} the rule allows",
            "DPO β=0.1's best answer at the shorter run's step": fmt(at_shorter["top_prob"], 3),
            "shorter training minutes": f"would take {shorter:.0f} minutes",
        },
        "the reason the open-ended benchmark was removed",
    )
    # The conclusion the paragraph draws: over the rule's allowance and over the whole budget.
    assert minutes > ALLOWED_TRAINING_MINUTES and minutes > 90
