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
The GPU check's Python entry point: check the machine first (GPU, bf16, versions, every requirement of trl-spo and of
the carried wheels, the imports), then run the GPU preset of the step-cost benchmark (`python -m benchmarks.step_cost --preset
gpu`: SPO, DPO and precomputed-reference DPO, bf16, Qwen2-0.5B's shape, 1,024 tokens) and write its JSON and its
Markdown table into `--out`. `recipes/gpu/run.sh` installs the carried wheels and runs it on the lent machine; from the
repository's root, with the wheels on PYTHONPATH:

    python recipes/gpu/gpu_check.py --out DIR --require-cuda               # the check (run.sh)
    python recipes/gpu/gpu_check.py --out DIR --require-cuda --check-only  # only the environment check
    python recipes/gpu/gpu_check.py --out DIR --tiny                       # the same code, tiny, on a CPU (the tests)

Other arguments go to the benchmark (e.g. `--measure-steps 8 --warmup-steps 1`; `python -m benchmarks.step_cost --help`).
Files written into DIR: environment.json (first, also when the check fails), step_cost_gpu.json (rewritten after each
trainer; `"complete": true` at the end), step_cost_gpu.md.
"""

import argparse
import faulthandler
import importlib
import importlib.metadata
import json
import platform
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_wheels import WHEELS, project_requirements, requirement_closure  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[2]
# benchmarks/ lives in the checkout, not in the package: run.sh puts the root on PYTHONPATH, a direct run needs it too.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))
# Imported, in this order, before anything is measured: an error here costs seconds, not the lease.
IMPORTS = ("torch", "transformers", "accelerate", "datasets", "trl", "trl_spo", "benchmarks.step_cost")


class EnvironmentCheckError(SystemExit):
    """The machine cannot run the check; the message says what is wrong and what to do."""

    def __init__(self, message: str):
        super().__init__(f"GPU check: environment: {message}")


def installed_distributions() -> dict[str, tuple[str, list[str]]]:
    """Canonical name -> (version, Requires-Dist) of every distribution on sys.path, the first one found winning
    (PYTHONPATH comes first, so a carried wheel shadows the machine's copy, as at import)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for distribution in importlib.metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"] or "")
        if name and name not in found:
            found[name] = (distribution.version, distribution.requires or [])
    return found


def check_environment(require_cuda: bool, report: dict) -> None:
    """
    Fills `report` and raises `EnvironmentCheckError` on the first problem that would stop the benchmark:
    no GPU when one is required, a requirement of trl-spo missing or in a version outside trl-spo's pins, a carried
    requirement missing, an import that fails. A carried package's requirement met in another version than it asks
    for is printed as a warning (pip installed the wheels without resolving; the import may still work).
    """
    import torch

    report["python"] = platform.python_version()
    report["executable"] = sys.executable
    report["torch"] = torch.__version__
    report["torch_cuda_build"] = torch.version.cuda
    report["cuda_available"] = torch.cuda.is_available()
    print(f"python {report['python']} ({sys.executable}), torch {torch.__version__} (CUDA build {torch.version.cuda})")
    if report["cuda_available"]:
        properties = torch.cuda.get_device_properties(0)
        report["gpu"] = {
            "name": properties.name,
            "count": torch.cuda.device_count(),
            "capability": f"{properties.major}.{properties.minor}",
            "memory_mib": properties.total_memory // 2**20,
            "bf16": torch.cuda.is_bf16_supported(),
        }
        print(f"GPU: {report['gpu']}")
    elif require_cuda:
        raise EnvironmentCheckError(
            f"CUDA was asked for (--require-cuda) but torch {torch.__version__} (CUDA build {torch.version.cuda}) sees "
            "no GPU: torch.cuda.is_available() is False. On the lent machine, `nvidia-smi` lists what the driver "
            "sees; drop --require-cuda to run the code path on a CPU."
        )
    if require_cuda and not report["gpu"]["bf16"]:
        raise EnvironmentCheckError(f"the GPU {report['gpu']['name']} has no bf16, which the preset measures")

    installed = installed_distributions()
    carried = {canonicalize_name(name) for name in WHEELS}
    closure = requirement_closure(
        project_requirements(REPO_ROOT / "pyproject.toml"),
        {name: installed[name] for name in carried if name in installed},
        {name: version for name, (version, _) in installed.items() if name not in carried},
    )
    report["versions"] = {
        name: installed[name][0] if name in installed else None
        for name in ("torch", "transformers", "accelerate", "huggingface-hub", "pyarrow", *WHEELS)
    }
    print("versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()))
    for name, pinned in WHEELS.items():
        version = report["versions"][name]
        if version is not None and version != pinned:
            print(f"WARNING: {name} {version} is installed, not the carried {pinned}: are the wheels on PYTHONPATH?")
    fatal = closure.missing + [f for f in closure.conflicts if f.required_by == "trl-spo"]
    warnings = [f for f in closure.conflicts if f.required_by != "trl-spo"]
    report["requirements"] = {"fatal": [str(f) for f in fatal], "warnings": [str(f) for f in warnings]}
    for finding in warnings:
        print(f"WARNING: {finding}")
    if fatal:
        raise EnvironmentCheckError(
            "requirements not met: "
            + "; ".join(str(f) for f in fatal)
            + ". Carry what is missing as wheels (recipes/gpu/fetch_wheels.py, .whl in the run's carry list)."
        )

    report["imports"] = {}
    for module in IMPORTS:
        started = time.perf_counter()
        try:
            imported = importlib.import_module(module)
        except Exception as error:  # any failure here must stop the check with its cause
            raise EnvironmentCheckError(f"import {module} failed: {type(error).__name__}: {error}") from error
        report["imports"][module] = {
            "seconds": round(time.perf_counter() - started, 2),
            "from": str(Path(imported.__file__).parent),
        }
    print("imports: " + ", ".join(f"{m} {i['seconds']} s from {i['from']}" for m, i in report["imports"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for environment.json and the results")
    parser.add_argument("--require-cuda", action="store_true", help="fail at once if torch sees no GPU")
    parser.add_argument("--check-only", action="store_true", help="only the environment check")
    parser.add_argument("--tiny", action="store_true", help="the benchmark at a tiny size (the CPU code path)")
    parser.add_argument(
        "--watchdog-s",
        type=float,
        default=0.0,
        help="if still running after this many seconds, print every thread's stack (a hang shows where it hangs)",
    )
    args, benchmark_args = parser.parse_known_args(argv)
    if args.watchdog_s > 0:
        faulthandler.dump_traceback_later(args.watchdog_s, exit=False)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict = {"require_cuda": args.require_cuda}
    try:
        check_environment(args.require_cuda, report)
    except EnvironmentCheckError as error:
        report["error"] = str(error.code)
        raise
    finally:
        report["seconds"] = round(time.perf_counter() - started, 2)
        (args.out / "environment.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"environment check passed in {report['seconds']} s", flush=True)
    if args.check_only:
        return 0

    from benchmarks import step_cost

    benchmark_argv = [
        "--preset",
        "gpu",
        *(["--tiny"] if args.tiny else []),
        "--json",
        str(args.out / "step_cost_gpu.json"),
        "--output",
        str(args.out / "step_cost_gpu.md"),
        *benchmark_args,
    ]
    try:
        return step_cost.main(benchmark_argv)
    finally:
        faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    sys.exit(main())
