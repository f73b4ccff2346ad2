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
Checkpoints that exist only once they are whole, and the choice of the one to resume from.

`SPOTrainer` writes `checkpoint-N` under `output_dir/_staging_checkpoints/` (transformers' files from every rank, then
SPO's state of every rank), waits for every rank, and only then renames it to `output_dir/checkpoint-N`: a rename is
atomic on POSIX filesystems, so a kill at any moment leaves either the whole checkpoint or none under that name, and
`transformers.trainer_utils.get_last_checkpoint` (which HF's example scripts and requeue scripts call) never finds a
partial one. The staging folder matches neither `get_last_checkpoint`'s `^checkpoint-\\d+$` nor the `checkpoint-*` of
transformers' rotation, and its leading underscore keeps it out of `push_to_hub` uploads.

Checkpoints written before this scheme (or by `DPOTrainer`) could be partial under their final name; resuming with
`resume_from_checkpoint=True` skips those, by what they lack (`checkpoint_problems`).
"""

import os
import re
import shutil

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


STAGING_DIR = "_staging_checkpoints"
CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")  # the pattern of `get_last_checkpoint`
RANK_RNG_STATE = re.compile(r"^rng_state_(\d+)\.pth$")  # transformers' RNG state of rank r, when world_size > 1

# `--resume_from_checkpoint` words: a requeue script runs the same command every time (see `resolve_resume`).
RESUME_WORDS = {"true": True, "false": None}


def staging_path(run_dir: str, checkpoint_name: str) -> str:
    """Where `checkpoint_name` is written before it is whole."""
    return os.path.join(run_dir, STAGING_DIR, checkpoint_name)


def publish_checkpoint(staged_dir: str, final_dir: str) -> None:
    """
    Give a whole checkpoint its final name in one rename. A directory already there (a run started again from
    scratch in the same `output_dir`) is moved aside first and deleted after, so there is never a partial mix.
    """
    if os.path.isdir(final_dir):
        replaced = staged_dir + "-replaced"
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final_dir, replaced)
        os.replace(staged_dir, final_dir)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        os.replace(staged_dir, final_dir)


def remove_staging(run_dir: str) -> list[str]:
    """Delete what runs stopped while saving left in the staging folder; returns the names deleted."""
    root = os.path.join(run_dir, STAGING_DIR)
    if not os.path.isdir(root):
        return []
    names = sorted(os.listdir(root))
    shutil.rmtree(root, ignore_errors=True)
    return names


def checkpoint_problems(checkpoint_dir: str, spo_state_file: str | None) -> list[str]:
    """
    What a `checkpoint-N` directory lacks to be resumed from; empty when nothing is missing.

    A checkpoint published through the staging folder is whole by construction; these checks catch the partial ones
    that older runs (and transformers itself) left under the final name when killed while saving: transformers writes
    `trainer_state.json` after the weights, optimizer, scheduler and RNG states, and SPO wrote each rank's state after
    transformers' files.

    Args:
        checkpoint_dir (`str`): the directory.
        spo_state_file (`str` or `None`): SPO's per-rank state file pattern (`"spo_state_rank{rank}.pt"`) when the
            run has the global KL on, else `None`.
    """
    files = set(os.listdir(checkpoint_dir))
    problems = []
    if TRAINER_STATE_NAME not in files:
        problems.append(f"no {TRAINER_STATE_NAME}")
    if spo_state_file is not None:
        # Ranks whose transformers' part was written; each must have SPO's state too.
        ranks = sorted(int(m.group(1)) for m in map(RANK_RNG_STATE.match, files) if m) or [0]
        missing = [spo_state_file.format(rank=r) for r in ranks if spo_state_file.format(rank=r) not in files]
        if missing:
            problems.append(f"no {', '.join(missing)}")
    return problems


def find_resume_checkpoint(output_dir: str, spo_state_file: str | None) -> tuple[str | None, list[str]]:
    """
    The newest whole `checkpoint-N` in `output_dir` (`None` if there is none), and one line per newer partial one
    skipped, saying what it lacks.
    """
    if not os.path.isdir(output_dir):
        return None, []
    numbered = [
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := CHECKPOINT_NAME.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    ]
    skipped = []
    for _, name in sorted(numbered, reverse=True):
        path = os.path.join(output_dir, name)
        problems = checkpoint_problems(path, spo_state_file)
        if not problems:
            return path, skipped
        skipped.append(f"{name} ({'; '.join(problems)}: it was being written when the run was killed)")
    return None, skipped


def resolve_resume(resume_from_checkpoint: str | bool | None) -> str | bool | None:
    """`True` for `"true"` (any case), `None` for `"false"`; anything else unchanged."""
    if isinstance(resume_from_checkpoint, str):
        return RESUME_WORDS.get(resume_from_checkpoint.strip().lower(), resume_from_checkpoint)
    return resume_from_checkpoint
