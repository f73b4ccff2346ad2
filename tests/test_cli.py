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

"""The `trl-spo` command line and the YAML recipes."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trl_spo import SPOConfig, cli
from trl_spo.cli import split_arguments
from trl_spo.config import DPO_ONLY_FIELDS
from trl_spo.scripts.spo import loss_scale_note, make_parser, summarize_run


REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (REPO_ROOT / "recipes").rglob("*.yaml") if "accelerate_configs" not in p.parts)


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(REPO_ROOT)) for p in RECIPES])
def test_every_recipe_loads_into_spo_config(recipe, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    # GPU recipes ask for bf16, which TrainingArguments refuses to set up on a machine without a GPU unless told
    # to use the CPU: only the device is overridden.
    script_args, training_args, model_args, _ = make_parser().parse_args_and_config(
        ["--config", str(recipe), "--use_cpu", "true"], fail_with_unknown_args=True
    )
    assert isinstance(training_args, SPOConfig)
    values = yaml.safe_load(recipe.read_text())
    for name in ("alpha", "beta", "gamma", "generation_interval", "kl_batch_size", "rank_weight_decay"):
        if name in values:
            assert getattr(training_args, name) == values[name], name
    assert model_args.model_name_or_path == values["model_name_or_path"]


@pytest.mark.parametrize("name", ["spo_best_of_n.yaml", "spo_ranking.yaml"])
def test_tinystories_warmup_finishes_within_one_epoch(name, monkeypatch):
    # One epoch of the paper's 5,000 rows at batch 32 is 157 steps; the paper's 5,000 warm-up steps would never end.
    monkeypatch.chdir(REPO_ROOT)
    recipe = REPO_ROOT / "recipes" / "tinystories" / name
    _, training_args, _, _ = make_parser().parse_args_and_config(
        ["--config", str(recipe), "--use_cpu", "true"], fail_with_unknown_args=True
    )
    assert training_args.get_warmup_steps(157) == 16


def test_launch_and_training_arguments_are_split_like_trl():
    recipe = str(REPO_ROOT / "recipes" / "tiny" / "spo.yaml")
    launch, training = split_arguments(
        ["--config", recipe, "--num_processes", "2", "--alpha", "0.5", "--accelerate_config", "multi_gpu"]
    )
    assert launch[:2] == ["--config_file", launch[1]] and launch[1].endswith("multi_gpu.yaml")
    assert "--num_processes" in launch and "2" in launch
    assert training == ["--config", recipe, "--alpha", "0.5"]


def test_summary_reports_first_and_last_values():
    history = [
        {"loss": 2.0, "kl/global": 0.0, "step": 1},
        {"loss": 1.0, "kl/global": 0.5, "step": 2},
        {"train_runtime": 12.0, "step": 2},
    ]
    summary = summarize_run(history)
    assert "(12 s of training)" in summary
    assert "| loss | 2 | 1 |" in summary
    assert "| kl/global | 0 | 0.5 |" in summary


def test_readme_main_command_runs_offline(tmp_path):
    """`trl-spo --config recipes/tiny/spo.yaml`, shortened, through `accelerate launch` as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        *(sys.executable, "-m", "trl_spo.cli"),
        *("--config", "recipes/tiny/spo.yaml"),
        *(
            "--max_steps",
            "3",
            "--generation_interval",
            "2",
            "--logging_steps",
            "1",
            "--output_dir",
            str(tmp_path / "run"),
        ),
        *("--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SPO run summary" in result.stdout
    assert "| kl/global |" in result.stdout
    # The loss scale is explained where the user first sees it: before training and under the summary.
    assert result.stdout.count("starts near log(2) / alpha = 0.6931") == 2
    assert "| loss/preference_normalized |" in result.stdout
    card = (tmp_path / "run" / "README.md").read_text()
    assert "# Model Card for run" in card and "None" not in card
    assert "the local model `recipes/tiny/model`" in card and "huggingface.co/recipes" not in card
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert "Soft Preference Optimization" in (tmp_path / "run" / "README.md").read_text()


ACCELERATE_CONFIGS = sorted((REPO_ROOT / "recipes" / "accelerate_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=[p.name for p in ACCELERATE_CONFIGS])
def test_accelerate_configs_load_and_are_multi_node_ready(path):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(path))
    assert config.mixed_precision == "bf16"
    assert config.num_machines == 1 and config.machine_rank == 0
    text = path.read_text()
    for documented in ("machine_rank", "main_process_ip", "main_process_port", "num_machines"):
        assert documented in text
    if path.stem.startswith("zero"):
        assert config.distributed_type == "DEEPSPEED"
        assert config.deepspeed_config["zero_stage"] == int(path.stem[4])
        offload = "cpu" if "offload" in path.stem else "none"
        assert config.deepspeed_config["offload_optimizer_device"] == offload
        assert config.deepspeed_config["offload_param_device"] == offload


# ---------------------------------------------------------------------------------------------------------------------
# First contact: mistakes cost one clear line, before anything is launched


def _trl_spo(*args: str, capsys, **env: str) -> tuple[int, str, str]:
    """Runs `trl-spo ARGS` in this process (as the console script does) and returns (status, stdout, stderr)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)
        for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **env}.items():
            patch.setenv(name, value)
        try:
            status = cli.main(list(args))
        except SystemExit as exit:  # argparse's --help
            status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _error_lines(stderr: str) -> list[str]:
    # Library warnings (deprecations, DeepSpeed's accelerator probe) may precede the error; only our line counts.
    return [line for line in stderr.splitlines() if line.startswith("trl-spo: error:")]


def test_misspelt_recipe_key_is_one_line_naming_the_closest_field(tmp_path, capsys):
    recipe = (REPO_ROOT / "recipes" / "tiny" / "spo.yaml").read_text().replace("\nalpha: 1.0", "\nalpah: 1")
    (tmp_path / "typo.yaml").write_text(recipe)
    status, _, stderr = _trl_spo("--config", str(tmp_path / "typo.yaml"), capsys=capsys)
    assert status == 2
    assert _error_lines(stderr) == [
        f"trl-spo: error: {tmp_path / 'typo.yaml'}: unknown key 'alpah' (did you mean 'alpha'?): it is neither a "
        "training field (`trl-spo --help` lists them) nor an `accelerate launch` option."
    ]
    assert "usage:" not in stderr


def test_misspelt_flag_and_missing_recipe_are_one_line(capsys):
    status, _, stderr = _trl_spo("--config", "recipes/tiny/spo.yaml", "--bta", "0.1", capsys=capsys)
    assert status == 2
    assert _error_lines(stderr)[0].startswith("trl-spo: error: unknown option 'bta' (did you mean 'beta'?)")
    status, _, stderr = _trl_spo("--config", "recipes/tiny/nope.yaml", capsys=capsys)
    assert status == 2
    assert _error_lines(stderr) == ["trl-spo: error: --config recipes/tiny/nope.yaml: no such file."]


def test_accelerate_options_in_a_recipe_still_go_to_accelerate(tmp_path):
    recipe = (REPO_ROOT / "recipes" / "tiny" / "spo.yaml").read_text() + "num_processes: 1\n"
    (tmp_path / "recipe.yaml").write_text(recipe)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)  # the recipe's model path is relative to the repository
        launch, training = split_arguments(["--config", str(tmp_path / "recipe.yaml")])
    assert launch == ["--num_processes", "1"] and training == ["--config", str(tmp_path / "recipe.yaml")]


@pytest.mark.parametrize(
    "model, expected",
    [
        ("recipes/tiny/modle", "model_name_or_path 'recipes/tiny/modle' does not exist (resolved to {root}"),
        ("./my-model", "model_name_or_path './my-model' does not exist"),
        ("recipes/tiny/data", "model_name_or_path 'recipes/tiny/data' is a directory without config.json"),
        ("Qwen/Qwen2-0.5B", "model_name_or_path 'Qwen/Qwen2-0.5B' is not a local directory, and HF_HUB_OFFLINE=1"),
    ],
    ids=["typo", "relative", "not-a-model", "hub-id-offline"],
)
def test_a_model_that_cannot_be_loaded_is_one_line_before_launch(model, expected, tmp_path, capsys):
    # An empty hub cache: the user's own cache may hold that hub model.
    status, _, stderr = _trl_spo(
        *("--config", "recipes/tiny/spo.yaml", "--model_name_or_path", model),
        capsys=capsys,
        HF_HUB_CACHE=str(tmp_path / "hub"),
    )
    assert status == 2
    (line,) = _error_lines(stderr)
    assert line.startswith("trl-spo: error: " + expected.format(root=REPO_ROOT))


def test_a_failing_training_process_is_not_buried_under_the_launcher_traceback(capsys, monkeypatch):
    # The training process prints its own traceback; accelerate's launcher then raises CalledProcessError, which
    # trl-spo turns into one line and the process's exit status.
    import accelerate.commands.launch

    def failing_launch(args):
        raise subprocess.CalledProcessError(returncode=3, cmd=["python", "spo.py"])

    monkeypatch.setattr(accelerate.commands.launch, "launch_command", failing_launch)
    status, _, stderr = _trl_spo("--config", "recipes/tiny/spo.yaml", capsys=capsys)
    assert status == 3
    assert _error_lines(stderr) == ["trl-spo: error: training failed (exit status 3); its error is above."]


def test_no_arguments_prints_usage(capsys):
    status, _, stderr = _trl_spo(capsys=capsys)
    assert status == 2
    assert stderr.startswith("usage: trl-spo --config RECIPE.yaml") and "bf16" not in stderr


def test_help_says_how_to_run_and_lists_spo_fields_first(capsys):
    status, help_text, _ = _trl_spo("--help", capsys=capsys)
    assert status == 0
    head = help_text[: help_text.index("--output_dir")]
    for mentioned in ("--config", "--accelerate_config", "trl-spo eval", "trl-spo pair_weights", "accelerate launch"):
        assert mentioned in head, mentioned
    # SPO's own fields come before the ~150 inherited ones.
    spo_group, training_group = help_text.index("SPO (SPOConfig's own fields"), help_text.index("training (DPOConfig")
    for name in ("--beta", "--alpha", "--gamma", "--generation_interval", "--kl_batch_size"):
        assert spo_group < help_text.index(f"  {name} ") < training_group, name
    assert "trl-spo pair_weights --model" in help_text[spo_group:training_group]  # where alpha is chosen
    # Every DPO field SPOConfig refuses is in the last group, marked.
    refused_at = help_text.index("DPO options that SPOConfig refuses")
    for name in ("loss_type", "precompute_ref_log_probs", "f_divergence_type", "sync_ref_model", "use_weighting"):
        assert help_text.index(f"  --{name} ") > refused_at, name
    assert help_text[refused_at:].count("[refused by SPOConfig:") == len(DPO_ONLY_FIELDS)


def test_pair_weights_is_a_command_of_its_own(capsys):
    status, stdout, _ = _trl_spo("pair_weights", "--help", capsys=capsys)
    assert status == 0 and stdout.startswith("usage: trl-spo pair_weights") and "--alphas" in stdout


def test_bench_was_removed_and_says_where_each_benchmark_went(capsys):
    status, _, stderr = _trl_spo("bench", "answers", "--tiny", capsys=capsys)
    assert status == 2 and "`python -m benchmarks.answers`" in stderr and "not part of the installed package" in stderr
    status, _, stderr = _trl_spo("bench", "expert", capsys=capsys)
    assert status == 2 and "`python -m benchmarks.expert_distribution`" in stderr
    status, _, stderr = _trl_spo("bench", "pair_weights", capsys=capsys)
    assert status == 2 and "now `trl-spo pair_weights`" in stderr
    # Every removed name points to a module that exists in the checkout's benchmarks/.
    for name, command in cli.BENCHMARK_COMMANDS.items():
        module = command.removeprefix("python -m ").replace(".", "/") + ".py"
        assert name == "pair_weights" or (REPO_ROOT / module).is_file(), (name, command)


def test_bench_chat_says_the_benchmark_was_removed_and_where_the_reason_is(capsys):
    status, _, stderr = _trl_spo("bench", "chat", capsys=capsys)
    assert status == 2 and "`trl-spo bench chat` was removed" in stderr and "open-ended chat benchmark" in stderr
    assert "python -m benchmarks" not in stderr  # no command to run: there is none
    # The section it names exists: a heading of the doc whose GitHub anchor is the one printed.
    where = cli.REMOVED_BENCHMARKS["chat"][1]
    assert where in stderr
    doc, anchor = where.split("#")
    headings = re.findall(r"^#+ (.+)$", (REPO_ROOT / doc).read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert anchor in [re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings]
    assert not set(cli.REMOVED_BENCHMARKS) & set(cli.BENCHMARK_COMMANDS)


def test_summary_explains_the_loss_scale():
    note = loss_scale_note(SPOConfig(output_dir="x", alpha=0.01, use_cpu=True))
    assert "log(2) / alpha = 69.31" in note and "loss/preference_normalized" in note
    summary = summarize_run([{"loss": 69.3, "loss/preference_normalized": 0.693, "step": 1}], note)
    assert "| loss/preference_normalized | 0.693 | 0.693 |" in summary and summary.endswith(note)
    assert loss_scale_note(SPOConfig(output_dir="x", alpha=0.0, use_cpu=True)) is None


def test_training_stopped_by_sigterm_is_exit_status_75_with_one_line(capsys, monkeypatch):
    # The training process saved a whole checkpoint and exited 75 (trl_spo.preemption): a requeue script tests it.
    import accelerate.commands.launch

    def stopped_launch(args):
        raise subprocess.CalledProcessError(returncode=75, cmd=["python", "spo.py"])

    monkeypatch.setattr(accelerate.commands.launch, "launch_command", stopped_launch)
    status, _, stderr = _trl_spo("--config", "recipes/tiny/spo.yaml", capsys=capsys)
    assert status == 75
    assert stderr.strip().splitlines()[-1] == (
        "trl-spo: stopped to be resumed (exit status 75): run the same command again."
    )


@pytest.mark.parametrize(("rank_statuses", "expected"), [((75, 75), 75), ((75, 1), 1)])
def test_torchrun_ranks_all_stopped_by_sigterm_is_exit_status_75(capsys, monkeypatch, rank_statuses, expected):
    import accelerate.commands.launch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def launch(args):
        failures = {
            rank: ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=status, error_file="")
            for rank, status in enumerate(rank_statuses)
        }
        raise ChildFailedError("spo.py", failures)

    monkeypatch.setattr(accelerate.commands.launch, "launch_command", launch)
    status, _, _ = _trl_spo("--config", "recipes/tiny/spo.yaml", capsys=capsys)
    assert status == expected  # one rank that failed otherwise is a failure, not a stop
