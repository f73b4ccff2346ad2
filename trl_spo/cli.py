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
`trl-spo`: the SPO counterpart of `trl dpo`, plus the alpha probe and evaluation.

- `trl-spo [--accelerate_config NAME_OR_PATH] [accelerate flags] [training flags] [--config recipe.yaml]` parses the
  arguments like `trl dpo`, then runs `accelerate launch ... trl_spo/scripts/spo.py <training flags>`. Flags that the
  training parser does not know (`--num_processes`, `--config_file`, ...) go to `accelerate launch`. Before anything
  is launched, the recipe's keys, the flags and a local model path are checked, so a typo costs one line, not an
  `accelerate launch` usage dump.
- `trl-spo pair_weights --model PATH --dataset FILE`: before training, Eq. 8's pair weights on your pairs for each
  alpha (`trl_spo.pair_weights`, docs/choosing_alpha.md).
- `trl-spo eval ...`: win rate and useful entropy of a trained model (`trl_spo.evaluation.cli`).
- `trl-spo upstream --trl-source DIR --output DIR`: SPO as a TRL pull request (`trl_spo.upstream`).
"""

import difflib
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path


class CommandLineError(ValueError):
    """A `trl-spo` command line or recipe that cannot be launched; the message is one line for the user."""


def _long_options(parser) -> set[str]:
    # argparse keeps every option string here; there is no public accessor.
    return {option[2:] for option in parser._option_string_actions if option.startswith("--")}


def _accelerate_options() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    return _long_options(launch_command_parser()) | {"accelerate_config"}


def _check_unknown(remaining: list[str], where: str, training_options: set[str], accelerate_options: set[str]) -> None:
    """Every unknown `--flag` must be an `accelerate launch` option: anything else is a typo."""
    for item in remaining:
        if not item.startswith("--"):
            continue  # a value
        name = item[2:].split("=", 1)[0]
        if name in accelerate_options:
            continue
        close = difflib.get_close_matches(name, sorted(training_options | accelerate_options), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise CommandLineError(
            f"{where} '{name}'{hint}: it is neither a training field (`trl-spo --help` lists them) nor an "
            "`accelerate launch` option."
        )


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def check_model_path(name_or_path: str | None) -> None:
    """
    Fail early, in one line, on a model that cannot be loaded: a local path that does not exist (or holds no model),
    or, offline, a hub id that is not in the local cache.
    """
    if not name_or_path:
        raise CommandLineError("no model: set `model_name_or_path` in the recipe or pass --model_name_or_path.")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
            raise CommandLineError(
                f"model_name_or_path '{name_or_path}' is a directory without config.json: not a saved model."
            )
        return
    if path.exists():
        raise CommandLineError(f"model_name_or_path '{name_or_path}' is a file; expected a model directory or hub id.")
    # A hub id is `name` or `owner/name`; anything else can only have meant a local path.
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path
    if looks_local:
        raise CommandLineError(f"model_name_or_path '{name_or_path}' does not exist (resolved to {path.resolve()}).")
    if _is_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            raise CommandLineError(
                f"model_name_or_path '{name_or_path}' is not a local directory, and HF_HUB_OFFLINE=1 forbids "
                "downloading it from the hub (it is not in the local cache either)."
            )


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """
    `(accelerate launch arguments, training script arguments)` from a `trl-spo` command line.

    Raises:
        `CommandLineError`: a missing recipe file, a recipe key or flag that nothing accepts (with the closest valid
            name), or a model that cannot be found.
    """
    from ._trl_compat import resolve_accelerate_config_argument, subtract_subsequence
    from .scripts.spo import make_parser

    config_path = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    if config_path is not None and not Path(config_path).is_file():
        raise CommandLineError(f"--config {config_path}: no such file.")
    parser = make_parser(prog="trl-spo")
    _, _, model_args, _, config_remaining, cli_remaining = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    training_options, accelerate_options = _long_options(parser), _accelerate_options()
    _check_unknown(config_remaining, f"{config_path}: unknown key", training_options, accelerate_options)
    _check_unknown(cli_remaining, "unknown option", training_options, accelerate_options)
    check_model_path(model_args.model_name_or_path)
    try:
        launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    return launch_args, subtract_subsequence(argv, cli_remaining)


# The benchmarks left the package for the repository's `benchmarks/` folder (a wheel holds the library alone): the
# removed `trl-spo bench NAME` says where each one went rather than failing as an unknown training flag.
BENCHMARK_COMMANDS = {
    "answers": "python -m benchmarks.answers",
    "frontier": "python -m benchmarks.frontier",
    "nary": "python -m benchmarks.nary_comparison",
    "expert": "python -m benchmarks.expert_distribution",
    "step_cost": "python -m benchmarks.step_cost",
    "pair_weights": "trl-spo pair_weights",
}
# Benchmarks removed from the repository altogether: what was removed, and the doc section that says why.
REMOVED_BENCHMARKS = {
    "chat": (
        "the open-ended chat benchmark",
        "docs/results.md#open-ended-answers-not-measured-on-this-machine",
    ),
}


def removed_bench_message(argv: list[str]) -> str:
    """The one-line error of `trl-spo bench ...`, naming the command that replaced it (or why there is none)."""
    name = argv[0] if argv else None
    if name == "pair_weights":
        return "`trl-spo bench pair_weights` is now `trl-spo pair_weights` (same options)."
    if name in REMOVED_BENCHMARKS:
        what, why = REMOVED_BENCHMARKS[name]
        return f"`trl-spo bench {name}` was removed, and {what} with it; why: {why} (in the repository)."
    where = f"`{BENCHMARK_COMMANDS[name]}`" if name in BENCHMARK_COMMANDS else "`python -m benchmarks.NAME`"
    return (
        f"`trl-spo bench` was removed: the benchmarks are not part of the installed package. From a checkout of the "
        f"repository, at its root, run {where} (`python -m benchmarks` lists them; docs/benchmarks.md)."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        from .scripts.spo import USAGE

        print(USAGE, file=sys.stderr)
        return 2
    # Subcommands come first; anything else is a training command line, as with `trl dpo`.
    if argv[0] == "eval":
        from .evaluation.cli import main as eval_main

        return eval_main(argv[1:])
    if argv[0] == "pair_weights":
        from .pair_weights import main as pair_weights_main

        return pair_weights_main(argv[1:])
    if argv[0] == "bench":
        print(f"trl-spo: error: {removed_bench_message(argv[1:])}", file=sys.stderr)
        return 2
    if argv[0] == "upstream":
        from .upstream import main as upstream_main

        return upstream_main(argv[1:])

    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        launch_args, training_args = split_arguments(argv)
    except CommandLineError as error:
        print(f"trl-spo: error: {error}", file=sys.stderr)
        return 2
    script = resources.files("trl_spo.scripts").joinpath("spo.py")
    try:
        launch_command(launch_command_parser().parse_args(launch_args + [str(script)] + training_args))
    except (subprocess.CalledProcessError, ChildFailedError) as error:
        from .preemption import RESUMABLE_EXIT_STATUS

        if isinstance(error, subprocess.CalledProcessError):
            statuses = {error.returncode}
        else:  # torchrun: one status per failed rank
            statuses = {failure.exitcode for failure in error.failures.values()}
        if statuses == {RESUMABLE_EXIT_STATUS}:
            # Every rank stopped on a SIGTERM after a whole checkpoint: a requeue script tests this status.
            print(
                f"trl-spo: stopped to be resumed (exit status {RESUMABLE_EXIT_STATUS}): run the same command again.",
                file=sys.stderr,
            )
            return RESUMABLE_EXIT_STATUS
        # The training processes printed their own tracebacks; the launcher's traceback would only bury them.
        status = error.returncode if isinstance(error, subprocess.CalledProcessError) else 1
        print(f"trl-spo: error: training failed (exit status {status}); its error is above.", file=sys.stderr)
        return status or 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
