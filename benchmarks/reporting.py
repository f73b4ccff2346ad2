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

"""What the benchmarks share: progress lines while they run, and the marked blocks of the docs they rewrite."""

import os
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback


class ProgressPrinter(TrainerCallback):
    """
    One line at the start of a setting and every eighth of its steps: which setting, which step, time spent, and an
    estimate of what is left, for the setting and for the whole benchmark (from the mean time per step so far).

    Args:
        index (`int`): 0-based position of the setting.
        num_settings (`int`): settings in the benchmark.
        name (`str`): the setting's name.
        steps_before (`int`): optimizer steps of the settings already done.
        seconds_before (`float`): their training time.
        log (`Callable[[str], None]`): where lines go.
        clock (`Callable[[], float]`): seconds.
        seconds_per_setting (`float`, *optional*): what each later setting will take, when a setting is more than its
            training steps (an evaluation after it, say); by default the mean time per step so far times the steps.
    """

    def __init__(
        self,
        index: int,
        num_settings: int,
        name: str,
        steps_before: int,
        seconds_before: float,
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.perf_counter,
        seconds_per_setting: float | None = None,
    ):
        self.index, self.num_settings, self.name = index, num_settings, name
        self.steps_before, self.seconds_before = steps_before, seconds_before
        self.log, self.clock = log, clock
        self.seconds_per_setting = seconds_per_setting
        self.start = None

    @classmethod
    def for_setting(cls, index: int, settings, max_steps: int, seconds_done: list, log=print) -> "ProgressPrinter":
        """
        The printer of setting `index` of `settings`, when a setting is more than its training (it is measured after):
        later settings are estimated from the whole time of the ones done, `seconds_done`.
        """
        return cls(
            index,
            len(settings),
            settings[index].name,
            index * max_steps,
            sum(seconds_done),
            log=log,
            seconds_per_setting=sum(seconds_done) / len(seconds_done) if seconds_done else None,
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.clock()
        self.log(f"[{self.index + 1}/{self.num_settings}] {self.name}: training {state.max_steps} steps")

    def on_step_end(self, args, state, control, **kwargs):
        every = max(1, state.max_steps // 8)
        if state.global_step % every and state.global_step != state.max_steps:
            return
        elapsed = self.clock() - self.start
        per_step = (self.seconds_before + elapsed) / (self.steps_before + state.global_step)
        left_here = per_step * (state.max_steps - state.global_step)
        settings_left = self.num_settings - self.index - 1
        later = self.seconds_per_setting if self.seconds_per_setting is not None else per_step * state.max_steps
        self.log(
            f"[{self.index + 1}/{self.num_settings}] {self.name}: step {state.global_step}/{state.max_steps} "
            f"({100 * state.global_step / state.max_steps:.0f}%), {elapsed:.0f} s; about {left_here:.0f} s "
            f"left in this setting, {(left_here + settings_left * later) / 60:.1f} min in all"
        )


def update_doc(doc: Path, block: str, name: str = "expert-distribution") -> None:
    """Replace what stands between `<!-- {name}:begin -->` and `<!-- {name}:end -->` in `doc` with `block`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = doc.read_text()
    if begin not in text or end not in text:
        found = [marker for marker in (begin, end) if marker in text] or "neither"
        raise ValueError(f"{doc} must contain the markers {begin} and {end}; found {found}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_atomically(doc, f"{head}{begin}\n{block}{end}{tail}")


def write_atomically(path: Path, text: str) -> None:
    """
    Write `text` to `path` through a temporary file in the same folder and a rename: a run killed while writing
    leaves the previous file whole, never half of the new one (a results JSON is read back by tests and reports).
    """
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
