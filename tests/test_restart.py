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
A job killed at any moment restarts with the same command and ends where an uninterrupted run would (issue 24).

The subprocess tests run the tiny recipe as a requeued cluster job would: the same command line every time, with
`--resume_from_checkpoint true`, killed (SIGKILL, or SIGTERM first) at moments chosen by what the run has written so
far, many of them in the middle of a checkpoint, which a slowed `torch.save` (a slow filesystem's stand-in) keeps
open long enough to land in.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from trl_spo import SPOTrainer
from trl_spo.checkpoints import STAGING_DIR, find_resume_checkpoint
from trl_spo.preemption import RESUMABLE_EXIT_STATUS

from .helpers import died_in_gloo_teardown, make_args


REPO_ROOT = Path(__file__).resolve().parents[1]

# The training script with every `torch.save` (optimizer, scheduler, RNG, SPO's state, training arguments: five per
# checkpoint) slowed by argv[1] seconds, so that a checkpoint takes long enough to be killed inside.
SLOW_FILESYSTEM = """
import runpy, sys, time
import torch
delay = float(sys.argv[1])
save = torch.save
def slow_save(*args, **kwargs):
    time.sleep(delay)
    return save(*args, **kwargs)
torch.save = slow_save
sys.argv = ["spo", *sys.argv[2:]]
runpy.run_module("trl_spo.scripts.spo", run_name="__main__")
"""
SAVE_DELAY = 0.1  # seconds per torch.save: each checkpoint stays partial for at least 5 x 0.1 s
MAX_STEPS = 8


def command(output_dir: Path, save_delay: float = SAVE_DELAY) -> list[str]:
    """The job's command line, the same for every restart."""
    return [
        sys.executable,
        "-c",
        SLOW_FILESYSTEM,
        str(save_delay),
        "--config",
        "recipes/tiny/spo.yaml",
        "--output_dir",
        str(output_dir),
        "--max_steps",
        str(MAX_STEPS),
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--save_total_limit",
        "2",  # rotation runs at every checkpoint, and must never delete the last whole one
        "--eval_strategy",
        "no",
        "--eval_on_start",
        "false",
        "--logging_steps",
        "100",
        "--resume_from_checkpoint",
        "true",
    ]


def start(output_dir: Path, save_delay: float = SAVE_DELAY) -> subprocess.Popen:
    # One thread: the same fp32 sums in the same order in every process, so restarts can be compared bitwise.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen(
        command(output_dir, save_delay),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def written_files(output_dir: Path) -> set[str]:
    # os.walk skips what the running job deletes while it is listed (the staging folder, rotated checkpoints).
    return {
        os.path.relpath(os.path.join(root, name), output_dir)
        for root, dirs, files in os.walk(output_dir)
        for name in (*dirs, *files)
    }


def checkpoint_being_written(output_dir: Path) -> bool:
    """
    After a kill: a checkpoint was partly on disk, in the staging folder, or (before issue 24) as the newest
    `checkpoint-N` without the trainer state that transformers writes last.
    """
    staging = output_dir / STAGING_DIR
    if staging.is_dir() and any(staging.iterdir()):
        return True
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return bool(checkpoints) and not (checkpoints[-1] / "trainer_state.json").exists()


def run_until(process: subprocess.Popen, output_dir: Path, new_files: int, timeout: float = 120) -> bool:
    """Wait until the run has written `new_files` more paths; `False` if it ended first."""
    before = written_files(output_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if len(written_files(output_dir) - before) >= new_files:
            return True
        time.sleep(0.01)
    raise TimeoutError(f"the run wrote fewer than {new_files} files in {timeout} s")


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    return output


def final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(output_dir / "model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted_weights(tmp_path_factory) -> dict[str, torch.Tensor]:
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    process = start(output_dir, save_delay=0.0)
    output = finish(process)
    assert process.returncode == 0, output
    return final_weights(output_dir)


def assert_same_weights(output_dir: Path, expected: dict[str, torch.Tensor]) -> None:
    found = final_weights(output_dir)
    assert found.keys() == expected.keys()
    # Bitwise: every process ran the same fp32 CPU kernels on one thread, on the same batches in the same order, with
    # the RNG (KL sampling) restored from the checkpoint; any lost or repeated step, or a stale optimizer, scheduler,
    # RNG or SPO state, changes the weights.
    different = [name for name in expected if not torch.equal(found[name], expected[name])]
    assert different == [], f"final weights differ from the uninterrupted run's in {different}"


def test_sigkill_at_many_moments_then_the_same_command_ends_where_an_uninterrupted_run_would(
    tmp_path, uninterrupted_weights
):
    output_dir = tmp_path / "job"
    # Kill once the run has written this many more paths: a few land between checkpoints (right after one got its
    # name, since publishing shows its files under a new path at once), most inside a checkpoint's slowed writes.
    kill_after_new_files = [2, 5, 9, 14, 6]
    kills_inside_a_write = 0
    for new_files in kill_after_new_files:
        process = start(output_dir)
        assert run_until(process, output_dir, new_files), finish(process)
        process.send_signal(signal.SIGKILL)
        output = finish(process)
        assert process.returncode == -signal.SIGKILL, output
        kills_inside_a_write += checkpoint_being_written(output_dir)  # read once nothing moves any more
        # What a requeue script (or HF's example scripts) would pick is whole at every moment.
        latest = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        if latest:
            assert (latest[-1] / "trainer_state.json").exists() and (latest[-1] / "spo_state_rank0.pt").exists()
    assert kills_inside_a_write >= 3, f"only {kills_inside_a_write} kills landed inside a checkpoint write"
    print(f"\n{len(kill_after_new_files)} SIGKILLs, {kills_inside_a_write} inside a checkpoint write")  # noqa: T201
    process = start(output_dir)
    output = finish(process)
    assert process.returncode == 0, output
    assert "Resuming from" in output, output
    assert_same_weights(output_dir, uninterrupted_weights)
    assert not (output_dir / STAGING_DIR).exists()


def test_sigterm_writes_a_whole_checkpoint_and_exits_to_be_resumed(tmp_path, uninterrupted_weights):
    output_dir = tmp_path / "job"
    stops = []
    # Once between checkpoints (right after the first has its name), once in the middle of a checkpoint's writes.
    for new_files, during_write in ((1, False), (3, True)):
        process = start(output_dir)
        if not during_write:
            while not (output_dir / "checkpoint-2").exists():
                assert process.poll() is None, finish(process)
                time.sleep(0.01)
        else:
            assert run_until(process, output_dir, new_files), finish(process)
            assert checkpoint_being_written(output_dir)
        process.send_signal(signal.SIGTERM)
        output = finish(process)
        assert process.returncode == RESUMABLE_EXIT_STATUS, output
        stop_lines = [line for line in output.splitlines() if "stopped by SIGTERM after step" in line]
        assert len(stop_lines) == 1, output
        step = int(stop_lines[0].split("after step ")[1].split()[0])
        stops.append(step)
        assert f"{output_dir / f'checkpoint-{step}'}" in stop_lines[0]
        checkpoint, skipped = find_resume_checkpoint(str(output_dir), "spo_state_rank{rank}.pt")
        assert (checkpoint, skipped) == (str(output_dir / f"checkpoint-{step}"), [])
        assert not (output_dir / "model.safetensors").exists()  # the script did not go on as if training had ended
    assert stops[0] < stops[1] < MAX_STEPS, stops
    process = start(output_dir)
    output = finish(process)
    assert process.returncode == 0, output
    assert f"Resuming from {output_dir / f'checkpoint-{stops[1]}'}" in output, output
    assert_same_weights(output_dir, uninterrupted_weights)


# ---------------------------------------------------------------------------------------------------------------------
# In Python: which checkpoint `resume_from_checkpoint=True` picks


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step == self.step


def train(output_dir, model, dataset, max_steps, resume=None, stop_at=None, **overrides):
    args = make_args(
        output_dir, max_steps=max_steps, save_strategy="steps", save_steps=2, learning_rate=1e-3, **overrides
    )
    trainer = SPOTrainer(model=model, args=args, train_dataset=dataset)
    if stop_at is not None:
        trainer.add_callback(StopAt(stop_at))
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def losses(trainer) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}


@pytest.mark.parametrize(
    ("left_behind", "lacks"),
    [
        (("config.json", "generation_config.json"), "no trainer_state.json; no spo_state_rank0.pt"),  # the issue's
        (("config.json", "trainer_state.json"), "no spo_state_rank0.pt"),  # killed before SPO's state was written
    ],
)
def test_resume_true_skips_a_partial_newest_checkpoint(
    tmp_path, tiny_model_path, standard_preference_dataset, capsys, left_behind, lacks
):
    output_dir = tmp_path / "run"
    uninterrupted = losses(train(tmp_path / "full", tiny_model_path, standard_preference_dataset, max_steps=6))
    train(output_dir, tiny_model_path, standard_preference_dataset, max_steps=6, stop_at=4)
    # A checkpoint that an older trl-spo (or transformers itself) left partial under its final name.
    partial = output_dir / "checkpoint-6"
    partial.mkdir()
    for name in left_behind:
        (partial / name).write_text((output_dir / "checkpoint-4" / name).read_text())
    capsys.readouterr()
    resumed = train(output_dir, tiny_model_path, standard_preference_dataset, max_steps=6, resume=True)
    printed = capsys.readouterr().out
    assert f"Skipped the partial checkpoint checkpoint-6 ({lacks}" in printed
    assert f"Resuming from {output_dir / 'checkpoint-4'}, the newest whole checkpoint." in printed
    # Steps 1-4 come with checkpoint-4's state, 5 and 6 were trained after it: nothing lost, nothing repeated, and
    # bitwise the uninterrupted run's losses (the same process, threads and fp32 computation).
    logged_steps = [entry["step"] for entry in resumed.state.log_history if "loss" in entry]
    assert logged_steps == [1, 2, 3, 4, 5, 6]
    assert losses(resumed) == uninterrupted
    # The partial directory was replaced by the whole checkpoint of step 6.
    assert find_resume_checkpoint(str(output_dir), "spo_state_rank{rank}.pt") == (str(partial), [])


@pytest.mark.parametrize("resume", [True, "true", "True"])
def test_resume_true_without_a_checkpoint_starts_from_scratch(
    tmp_path, tiny_model_path, standard_preference_dataset, capsys, resume
):
    # transformers raises "No valid checkpoint found" here; the first run of a requeued job has no checkpoint yet.
    trainer = train(tmp_path / "run", tiny_model_path, standard_preference_dataset, max_steps=2, resume=resume)
    assert sorted(losses(trainer)) == [1, 2]
    assert f"No whole checkpoint in {tmp_path / 'run'}: training from scratch." in capsys.readouterr().out


def test_a_checkpoint_gets_its_name_only_once_whole_and_rotation_keeps_the_last_whole_one(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    output_dir = tmp_path / "run"
    args = make_args(output_dir, max_steps=6, save_strategy="steps", save_steps=2, save_total_limit=1)
    trainer = SPOTrainer(model=tiny_model_path, args=args, train_dataset=standard_preference_dataset)
    # A leftover of a run killed while saving: removed at the start, never resumed from.
    (output_dir / STAGING_DIR / "checkpoint-4").mkdir(parents=True)
    seen_while_writing = []
    save_spo_state = trainer.kl_sampler.save

    def save_and_look(checkpoint_dir, rank):  # SPO's state is the last part of a checkpoint to be written
        seen_while_writing.append(sorted(p.name for p in output_dir.glob("checkpoint-*")))
        save_spo_state(checkpoint_dir, rank)

    trainer.kl_sampler.save = save_and_look
    trainer.train()
    # While checkpoint-N was written, only the previous whole one carried a checkpoint name.
    assert seen_while_writing == [[], ["checkpoint-2"], ["checkpoint-4"]]
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-6"]
    assert not (output_dir / STAGING_DIR).exists()


# ---------------------------------------------------------------------------------------------------------------------
# Two processes under `accelerate launch`


def launch_command(output_dir: Path, config: str) -> list[str]:
    import socket

    with socket.socket() as probe:  # a rendezvous port that is free now (see tests/test_distributed.py)
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    configs = REPO_ROOT / "recipes" / "accelerate_configs"
    return [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(configs / f"{config}.yaml")),
        *("--num_processes", "2", "--main_process_port", port, "--mixed_precision", "no", "-m", "trl_spo.scripts.spo"),
        *command(output_dir, save_delay=0.0)[4:],
        *("--per_device_train_batch_size", "8"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["multi_gpu", "zero3"])
def test_sigterm_stops_every_rank_with_a_whole_checkpoint_and_the_same_command_resumes(tmp_path, config):
    if config.startswith("zero"):
        pytest.importorskip("deepspeed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def launch(output_dir):
        # A session of its own: the test signals every process of the job, as a scheduler does.
        return subprocess.Popen(
            launch_command(output_dir, config),
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def launch_to_the_end(output_dir):
        process = launch(output_dir)
        output = finish(process)
        if died_in_gloo_teardown(process.returncode, output):  # the same command again, as a requeue would
            process = launch(output_dir)
            output += finish(process)  # both runs' output: what the first one said stays checked
        return process, output

    uninterrupted = tmp_path / "uninterrupted"
    process, output = launch_to_the_end(uninterrupted)
    assert process.returncode == 0, output

    job = tmp_path / "job"
    process = launch(job)
    while not (job / "checkpoint-2").exists():
        assert process.poll() is None, finish(process)
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGTERM)
    output = finish(process)
    # The launcher itself got the signal: torchrun forwards it, waits for the ranks, and exits 128 + SIGTERM.
    assert process.returncode == 128 + signal.SIGTERM, output
    stop_lines = [line for line in output.splitlines() if "stopped by SIGTERM after step" in line]
    assert sorted(line.split("(rank ")[1][0] for line in stop_lines) == ["0", "1"], output
    steps = {int(line.split("after step ")[1].split()[0]) for line in stop_lines}
    assert len(steps) == 1, f"the ranks stopped at different steps: {stop_lines}"  # they agree through the trigger
    (step,) = steps
    assert step < MAX_STEPS
    assert find_resume_checkpoint(str(job), "spo_state_rank{rank}.pt") == (str(job / f"checkpoint-{step}"), [])
    assert {p.name for p in (job / f"checkpoint-{step}").glob("spo_state_rank*.pt")} == {
        "spo_state_rank0.pt",
        "spo_state_rank1.pt",
    }

    process, output = launch_to_the_end(job)
    assert process.returncode == 0, output
    assert f"Resuming from {job / f'checkpoint-{step}'}" in output, output
    assert_same_weights(job, final_weights(uninterrupted))


def test_the_best_checkpoint_is_recorded_under_its_published_name(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    # transformers records `best_model_checkpoint` where it writes, which is the staging folder; with
    # `save_total_limit=1` a wrong record would let rotation delete the best checkpoint, or make
    # `load_best_model_at_end` read a folder that no longer exists.
    output_dir = tmp_path / "run"
    args = make_args(
        output_dir,
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        greater_is_better=True,  # the later checkpoint is not always the best: rotation must keep both
    )
    trainer = SPOTrainer(
        model=tiny_model_path,
        args=args,
        train_dataset=standard_preference_dataset,
        eval_dataset=standard_preference_dataset,
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best in (str(output_dir / "checkpoint-2"), str(output_dir / "checkpoint-4")), best
    assert os.path.isdir(best)
    import json

    # At the end, with `save_total_limit=1`, transformers keeps the best checkpoint only. It became the best when it
    # was written, so its own trainer state records it: under its published name, not the staging folder.
    remaining = sorted(output_dir.glob("checkpoint-*"))
    assert [str(p) for p in remaining] == [best]
    recorded = json.loads((remaining[0] / "trainer_state.json").read_text())["best_model_checkpoint"]
    assert recorded == best
