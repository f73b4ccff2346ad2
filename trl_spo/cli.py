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
`trl-spo`: the SPO counterpart of `trl dpo`, plus evaluation and benchmarks.

- `trl-spo [--accelerate_config NAME_OR_PATH] [accelerate flags] [training flags] [--config recipe.yaml]` parses the
  arguments like `trl dpo`, then runs `accelerate launch ... trl_spo/scripts/spo.py <training flags>`. Flags that the
  training parser does not know (`--num_processes`, `--config_file`, ...) go to `accelerate launch`.
- `trl-spo eval ...`: win rate and useful entropy of a trained model (`trl_spo.evaluation.cli`).
- `trl-spo bench expert ...`: the expert-distribution benchmark (`trl_spo.benchmarks.expert_distribution`).
"""

import sys
from importlib import resources


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """`(accelerate launch arguments, training script arguments)` from a `trl-spo` command line."""
    from ._trl_compat import resolve_accelerate_config_argument, subtract_subsequence
    from .scripts.spo import make_parser

    parser = make_parser(prog="trl-spo")
    *_, config_remaining, cli_remaining = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    return launch_args, subtract_subsequence(argv, cli_remaining)


BENCHMARKS = {"expert": "trl_spo.benchmarks.expert_distribution"}


def run_benchmark(argv: list[str]) -> int:
    import importlib

    if not argv or argv[0] not in BENCHMARKS:
        found = repr(argv[0]) if argv else "nothing"
        raise SystemExit(
            f"usage: trl-spo bench {{{','.join(BENCHMARKS)}}} [options]; expected a benchmark name, got {found}"
        )
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return module.main(argv[1:], prog=f"trl-spo bench {argv[0]}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Subcommands come first; anything else is a training command line, as with `trl dpo`.
    if argv[:1] == ["eval"]:
        from .evaluation.cli import main as eval_main

        return eval_main(argv[1:])
    if argv[:1] == ["bench"]:
        return run_benchmark(argv[1:])

    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_args, training_args = split_arguments(argv)
    script = resources.files("trl_spo.scripts").joinpath("spo.py")
    launch_command(launch_command_parser().parse_args(launch_args + [str(script)] + training_args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
