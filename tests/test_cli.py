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
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trl_spo import SPOConfig
from trl_spo.cli import split_arguments
from trl_spo.scripts.spo import make_parser, summarize


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
    summary = summarize(history)
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
