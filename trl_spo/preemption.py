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
SIGTERM, what a cluster scheduler sends before it kills a job: finish the optimizer step, write a whole checkpoint,
stop, and exit with `RESUMABLE_EXIT_STATUS`.
"""

import contextlib
import os
import signal
import sys
import threading

from transformers import TrainerCallback


# sysexits.h's EX_TEMPFAIL, "a temporary failure: the user is invited to retry". Distinct from 143 (128 + SIGTERM),
# which a process killed by the signal before it could save reports.
RESUMABLE_EXIT_STATUS = 75


class StoppedToResume(SystemExit):
    """
    Raised by `SPOTrainer.train` once a SIGTERM has stopped the run after a whole checkpoint. A `SystemExit`, so an
    uncaught one ends the process with `RESUMABLE_EXIT_STATUS` and no traceback (and `except Exception` does not
    swallow it); `checkpoint` is the directory to resume from.
    """

    def __init__(self, checkpoint: str):
        super().__init__(RESUMABLE_EXIT_STATUS)
        self.checkpoint = checkpoint


class StopOnSigterm(TrainerCallback):
    """
    Turns a SIGTERM into a checkpoint and a stop at the end of the current optimizer step.

    The handler only records the signal; `on_step_end` asks transformers' loop to save and stop (`control`), which it
    does after the step, through `SPOTrainer._save_checkpoint`. With several processes every rank must stop at the
    same step (the checkpoint and the collectives are common to all), and a signal may reach them at different steps:
    the ranks agree through accelerate's trigger, one all-reduce of one number per optimizer step, read back on the
    host (the only cost this adds to a step, and only with more than one process).

    Args:
        accelerator: the trainer's `Accelerator`.
    """

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.signal_received = False
        self.stopped_at_step: int | None = None

    def _handle(self, signum, frame):
        self.signal_received = True  # repeats (the launcher forwards the scheduler's signal) change nothing

    @contextlib.contextmanager
    def handling_sigterm(self):
        """Install the handler for the duration of the block (Python allows it in the main thread only)."""
        self.signal_received = False
        self.stopped_at_step = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def on_step_end(self, args, state, control, **kwargs):
        stop = self.signal_received
        if self.accelerator.num_processes > 1:
            if stop:
                self.accelerator.set_trigger()
            stop = self.accelerator.check_trigger()
        if stop:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at_step = state.global_step

    def stop_message(self, checkpoint: str) -> str:
        return (
            f"SPOTrainer (rank {self.accelerator.process_index}, pid {os.getpid()}): stopped by SIGTERM after step "
            f"{self.stopped_at_step} to be resumed from {checkpoint}; run the same command again to continue "
            f"(exit status {RESUMABLE_EXIT_STATUS})."
        )

    def raise_if_stopped(self, checkpoint: str) -> None:
        """After `train`: if the run was stopped, say so in one line on this rank and exit to be resumed."""
        if self.stopped_at_step is None:
            return
        # Every rank says it (`accelerator.print` would speak for the main process only): each one's log is read.
        sys.stderr.write(self.stop_message(checkpoint) + "\n")
        sys.stderr.flush()
        raise StoppedToResume(checkpoint)
