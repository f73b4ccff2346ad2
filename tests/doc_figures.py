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
Checking the docs' figures against the data, without snapshots of their prose.

A test formats each figure from the committed JSON, as the docs print it, and looks for it in the passage that states
it: rewording a sentence breaks nothing, a wrong or stale number fails, naming what it is and what the data says.
"""

import re
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]


def read_doc(relative_path: str) -> str:
    return (REPO_ROOT / relative_path).read_text(encoding="utf-8")


def passage(text: str, start: str, end: str | None = None) -> str:
    """
    The text from the heading or phrase `start` up to `end` (or the next heading of the same level, or the end), on
    one line: quote marks dropped and whitespace collapsed, so that a figure may wrap.
    """
    if start not in text:
        raise AssertionError(f"the doc has no passage starting with {start!r}")
    body = text[text.index(start) :]
    if end is not None:
        if end not in body:
            raise AssertionError(f"the passage {start!r} has no end {end!r}")
        body = body[: body.index(end)]
    elif start.startswith("#"):
        level = start.split(" ", 1)[0]
        following = re.search(rf"^{level} ", body[len(start) :], flags=re.MULTILINE)
        body = body[: len(start) + following.start()] if following else body
    return " ".join(" ".join(line.removeprefix("> ") for line in body.splitlines()).split())


def fmt(value: float, digits: int) -> str:
    """`value` as the docs print it: fixed point with `digits` decimals."""
    return f"{value:.{digits}f}"


def assert_figures_in(text: str, figures: dict[str, str], where: str) -> None:
    """
    Every figure of `figures` (what it is -> the figure formatted from the data) occurs in `text` as a whole number:
    not as part of a longer one (0.10 is not found in 0.105 or 10.10).
    """
    missing = {
        what: figure
        for what, figure in figures.items()
        if not re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", text)
    }
    assert not missing, f"{where} does not state these figures of the data (what -> expected): {missing}"


def matched(frontier: dict, categories: str = "first", split: str = "train", reference: str = "uniform", **names):
    """
    The one row of `frontier.json`'s `matched` (an SPO row beside the DPO row of closest reward) with these fields,
    e.g. `matched(frontier, spo="SPO α=1 β=0.1", dpo="DPO β=1")`.
    """
    wanted = {"reference": reference, "categories": categories, "split": split, **names}
    (row,) = [m for m in frontier["matched"] if all(m[key] == value for key, value in wanted.items())]
    return row
