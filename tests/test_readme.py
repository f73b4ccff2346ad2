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

"""The README: its results table is the committed run's, its offline quickstart runs as printed, its links resolve."""

import json
import math
import re

from .doc_figures import REPO_ROOT, assert_figures_in, fmt, matched, passage, read_doc


def _results_table_rows(readme: str) -> list[list[str]]:
    section = readme[readme.index("## Results") :]
    section = section[: section.index("\n## ", 1)]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| ---"), f"expected a markdown table under ## Results, found {lines[:2]}"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_results_table_is_the_committed_answers_run():
    """Each row of the README's table is its policy's row of docs/results/answers.json, formatted (training prompts)."""
    rows = {}
    for source in ("answers.json", "answers_dpo_beta.json"):  # the default run, and DPO's larger betas
        payload = json.loads((REPO_ROOT / "docs" / "results" / source).read_text(encoding="utf-8"))
        rows |= {row["name"]: row for row in payload["rows"] + payload["reference_rows"] if row["split"] == "train"}
    table = _results_table_rows(read_doc("README.md"))
    names = [cells[0] for cells in table]
    assert set(names) <= set(rows), f"README rows not in the JSON: {sorted(set(names) - set(rows))}"
    assert any(n.startswith("SPO") for n in names) and any(n.startswith("DPO") for n in names), names
    for cells in table:
        row = rows[cells[0]]
        entropy = fmt(row["entropy"], 2) + (f" ({fmt(row['target_entropy'], 2)})" if row["method"] == "spo" else "")
        expected = [
            row["name"],
            entropy,
            fmt(row["top_prob"], 2),
            fmt(row["mass"], 2),
            fmt(row["sampled_distinct"], 1),
        ]
        assert cells == expected, f"README row {cells} is not the JSON's {expected}"


def test_results_state_the_fair_comparison():
    """The README's sentence on DPO tuned to SPO's reward is docs/results/frontier.json's."""
    frontier = json.loads((REPO_ROOT / "docs" / "results" / "frontier.json").read_text(encoding="utf-8"))
    match = matched(frontier, "first", spo="SPO α=1 β=0.1", dpo="DPO β=1")
    second = matched(frontier, "second", spo="SPO α=1 β=0.1")
    second_run = json.loads((REPO_ROOT / "docs" / "results" / "answers_second.json").read_text(encoding="utf-8"))
    dpo_sharp = next(r for r in second_run["rows"] if r["name"] == "DPO β=0.1" and r["split"] == "train")
    skewed = {r["name"]: r for r in frontier["rows"] if r["reference"] == "skewed" and r["split"] == "train"}
    text = passage(read_doc("README.md"), "## Results")
    assert_figures_in(
        text,
        {
            "SPO's reward": fmt(match["spo_expected_reward"], 2),
            "DPO's reward": fmt(match["dpo_expected_reward"], 2),
            "entropy gap": fmt(match["entropy_gap"], 2),
            "SPO's mass": fmt(match["spo_mass"], 2),
            "DPO's mass": fmt(match["dpo_mass"], 2),
            "second set: DPO β=0.1's best answer": fmt(dpo_sharp["top_prob"], 2),
            "second set: entropy gap": fmt(second["entropy_gap"], 2),
            "second set: SPO's mass": fmt(second["spo_mass"], 2),
            "second set: DPO's mass": fmt(second["dpo_mass"], 2),
            "DPO's deficit from the skewed reference": fmt(skewed["DPO β=1"]["deficit"], 3),
            "SPO's deficit from the skewed reference": fmt(skewed["SPO α=2 β=0.1"]["deficit"], 3),
        },
        "README's results",
    )


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_offline_quickstart_trains_as_printed(tmp_path, monkeypatch):
    """The README's offline quickstart, run as printed from the checkout's root, with the output elsewhere and 3 steps."""
    (block,) = [block for block in _python_blocks(read_doc("README.md")) if "recipes/tiny" in block]
    output_dir, report_to = 'output_dir="outputs/tiny-spo"', 'report_to="none"'
    assert output_dir in block and report_to in block, "the quickstart changed: update what this test replaces"
    code = block.replace(output_dir, f'output_dir="{tmp_path}"').replace(report_to, f"{report_to}, max_steps=3")
    monkeypatch.chdir(REPO_ROOT)
    namespace: dict = {}
    exec(compile(code, "README.md quickstart", "exec"), namespace)
    trainer = namespace["trainer"]
    # 3 steps log nothing at the default logging interval; the end of training logs the mean loss.
    (summary,) = [entry for entry in trainer.state.log_history if "train_loss" in entry]
    assert trainer.state.global_step == 3 and math.isfinite(summary["train_loss"]), summary


def test_hub_quickstart_is_complete():
    """The hub quickstart names its model, tokenizer and dataset, and compiles (it needs the hub, so it is not run)."""
    (block,) = [block for block in _python_blocks(read_doc("README.md")) if "from_pretrained" in block]
    compile(block, "README.md hub quickstart", "exec")
    for needed in (
        "AutoModelForCausalLM.from_pretrained(",
        "AutoTokenizer.from_pretrained(",
        "load_dataset(",
        ".train()",
    ):
        assert needed in block, needed


def test_every_local_link_of_the_readme_and_docs_resolves():
    for doc in ["README.md", *(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").glob("*.md"))]:
        base = (REPO_ROOT / doc).parent
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read_doc(doc)):
            if not target.startswith(("http://", "https://")):
                assert (base / target).exists(), f"{doc} links to {target}, which does not exist"


def test_results_state_the_n_ary_comparison():
    """The README's sentence on best-of-n and rankings is docs/results/nary.json's (training prompts)."""
    nary = json.loads((REPO_ROOT / "docs" / "results" / "nary.json").read_text(encoding="utf-8"))
    row = {r["name"]: r for r in nary["rows"] if r["split"] == "train"}
    text = passage(read_doc("README.md"), "On best-of-n and ranked data", "## Migrating from DPO")
    assert_figures_in(
        text,
        {
            "SPO α=1 on rankings": f"{100 * row['SPO α=1 β=0.1, rankings (Eq. 15)']['win_rate']:.1f} %",
            "PL-DPO β=1": f"{100 * row['PL-DPO β=1']['win_rate']:.1f} %",
            "SPO α=0.5": f"{100 * row['SPO α=0.5 β=0.1, rankings (Eq. 15)']['win_rate']:.1f} %",
            "Best-response SFT's mass": fmt(row["Best-response SFT"]["mass"], 2),
            "PL-DPO β=0.1": f"{100 * row['PL-DPO β=0.1']['win_rate']:.1f} %",
            "PL-DPO β=0.1's entropy": fmt(row["PL-DPO β=0.1"]["entropy"], 2),
        },
        "README's n-ary sentence",
    )
    # "at the same reward": PL-DPO beta = 1's expected reward given the set within 0.1 of SPO alpha = 1's.
    spo, dpo = row["SPO α=1 β=0.1, rankings (Eq. 15)"], row["PL-DPO β=1"]
    assert abs(spo["expected_reward"] - dpo["expected_reward"]) < 0.1
