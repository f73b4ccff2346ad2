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
`benchmarks.chat_frontier`'s committed results: the table in docs/results.md, the JSON, the figure and the evaluated answers
are one run, and `--rerender_from` rebuilds them from the answers without training (nothing here trains).
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from benchmarks.chat_frontier import (
    DEFAULT_SETTINGS,
    caption_for,
    main,
    markdown_table,
    recompute_rows,
    rerender,
)
from benchmarks.chat_task import read_jsonl


REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "docs" / "results"
DOC_BEGIN, DOC_END = "<!-- chat-frontier:begin -->", "<!-- chat-frontier:end -->"
FILES = ("chat_frontier.json", "chat_frontier.md", "chat_frontier.png", "chat_frontier_samples.jsonl")


def committed() -> dict:
    return json.loads((RESULTS_DIR / "chat_frontier.json").read_text(encoding="utf-8"))


def test_shipped_results_are_one_run():
    """docs/results.md shows the JSON's table, the figure is the JSON's, and every row follows from the answers."""
    payload = committed()
    doc = (REPO_ROOT / "docs" / "results.md").read_text()
    assert f"{DOC_BEGIN}\n{payload['table']}{DOC_END}" in doc
    assert (RESULTS_DIR / "chat_frontier.md").read_text() == payload["table"]
    figure = (RESULTS_DIR / "chat_frontier.png").read_bytes()
    assert hashlib.sha256(figure).hexdigest() == payload["figure_sha256"], "the figure is not the JSON's run"
    assert markdown_table(payload["rows"], caption_for(payload)) == payload["table"], "the table is not the rows'"
    assert [row["name"] for row in payload["rows"]] == ["base model"] + [s.name for s in DEFAULT_SETTINGS]
    # Every statistic, the clustered standard errors included, recomputed from the committed answers. Same
    # arithmetic on the same stored floats: a few ulps at most.
    recomputed = recompute_rows(payload, read_jsonl(RESULTS_DIR / FILES[3]))
    for row, again in zip(payload["rows"], recomputed, strict=True):
        assert again.keys() == row.keys()
        for key, value in row.items():
            what = f"{row['name']}: {key} recomputed from the answers vs the committed row"
            if isinstance(value, float):
                assert again[key] == pytest.approx(value, rel=1e-12, abs=1e-14), what
            else:
                assert again[key] == value, what


def test_shipped_standard_errors_are_clustered_by_prompt():
    payload = committed()
    samples = read_jsonl(RESULTS_DIR / FILES[3])
    assert "clustered by prompt" in payload["table"].split("\n")[0]
    assert "clustered by prompt" in payload["table"].split("\n\n")[1]
    for row in payload["rows"]:
        policy = "base" if row["name"] == "base model" else row["name"]
        by_prompt: dict[int, list[float]] = {}
        for sample in samples:
            if sample["policy"] == policy:
                by_prompt.setdefault(sample["prompt_index"], []).append(sample["win_score"])
        assert row["num_prompts"] == len(by_prompt) == 32 and {len(v) for v in by_prompt.values()} == {4}
        # Equal clusters: the standard error of the 32 per-prompt means (ddof = 1), by hand.
        means = [sum(v) / 4 for v in by_prompt.values()]
        mean = sum(means) / 32
        by_hand = (sum((m - mean) ** 2 for m in means) / 31 / 32) ** 0.5
        assert row["win_rate_stderr"] == pytest.approx(by_hand, rel=1e-12)
        assert row["win_rate_stderr"] > row["win_rate_stderr_unclustered"]


def test_rerender_rebuilds_the_shipped_files_and_rejects_other_answers(tmp_path):
    pytest.importorskip("matplotlib")
    for name in FILES:
        shutil.copy(RESULTS_DIR / name, tmp_path / name)
    doc = tmp_path / "results.md"
    doc.write_text(f"intro\n{DOC_BEGIN}\nold table\n{DOC_END}\noutro\n")
    payload = committed()
    # Rerendered on the copy under the committed command's name, it rewrites the same JSON and table (the figure's
    # bytes depend on the matplotlib version, so only its hash's consistency is checked).
    rerender(tmp_path, payload["rerender_command"], doc)
    again = json.loads((tmp_path / "chat_frontier.json").read_text(encoding="utf-8"))
    assert again["table"] == payload["table"]
    assert {**again, "figure_sha256": None} == {**payload, "figure_sha256": None}
    assert doc.read_text() == f"intro\n{DOC_BEGIN}\n{payload['table']}{DOC_END}\noutro\n"
    assert hashlib.sha256((tmp_path / "chat_frontier.png").read_bytes()).hexdigest() == again["figure_sha256"]

    # Answers from another run (one entropy changed) are refused, naming the setting and the statistic; through the
    # command line, as a user runs it.
    samples = (tmp_path / FILES[3]).read_text(encoding="utf-8").rstrip("\n").split("\n")
    first = json.loads(samples[0])
    samples[0] = json.dumps({**first, "entropy": first["entropy"] + 0.5}, ensure_ascii=False)
    (tmp_path / FILES[3]).write_text("\n".join(samples) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="base model: entropy recomputed from the answers"):
        main(["--rerender_from", str(tmp_path)])
