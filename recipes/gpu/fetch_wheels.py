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
Download, here, the wheels that a lent GPU machine needs to run trl-spo's GPU check (recipes/gpu/run.sh), into the
ignored folder `.whl/` at the repository's root, and check them before they travel. From the repository's root:

    python recipes/gpu/fetch_wheels.py             # download into .whl/ (network), check, print the list and sizes
    python recipes/gpu/fetch_wheels.py --offline   # no download: check what .whl/ already holds

That machine has no network and runs Python 3.12 on x86_64, with torch, transformers, accelerate, peft, pandas,
pyarrow, ... but neither trl nor datasets (its package list: the `device` tool's KINDS.md, copied into
`DEVICE_PACKAGES` below). trl-spo itself travels as source with the working tree. The checks, each a failure:

* closure: every requirement of trl-spo (pyproject.toml), and of every carried wheel, for Python 3.12 on Linux
  x86_64, is met by a carried wheel or by a package of that machine, in the version given where the list gives one.
  Packages whose version there nobody has read are listed; `gpu_check.py` checks them there, first thing;
* one version of each wheel (two stop the whole install), and no wheel that nothing requires;
* size: what travels, the working tree (tracked files and untracked files git does not ignore) plus `.whl/`, stays
  within the 64 MiB a call may carry.
"""

import argparse
import email.parser
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version


REPO_ROOT = Path(__file__).resolve().parents[2]
WHEEL_DIR = REPO_ROOT / ".whl"
MIB = 2**20
BUDGET_BYTES = 64 * MIB  # the working tree plus carried paths, per call (the device tool's README)

# What the machine lacks, pinned. Each line says why it travels.
WHEELS = {
    "trl": "1.16.0",  # SPOTrainer subclasses its DPOTrainer (trl-spo: trl>=1.16,<1.17); not on the machine
    "datasets": "5.2.0",  # trl and trl-spo import it; not on the machine; the version this repository's suite runs
    "dill": "0.4.1",  # datasets: dill>=0.3.0,<0.4.2; not on the machine
    "multiprocess": "0.70.19",  # datasets: multiprocess<0.70.20; not on the machine
    # datasets: fsspec>=2023.1.0,<=2026.9.0. The machine has fsspec in a version nobody has read, and the cap is there
    # because datasets uses fsspec's internals: 0.2 MiB buys certainty.
    "fsspec": "2026.9.0",
}

# The machine's Python packages (KINDS.md, "Python packages already there", read there on 2026-11-17), with the
# version where KINDS.md gives one ("pip list, as a session saw it") and None where it gives only the name.
_KNOWN_VERSIONS = {
    "accelerate": "1.15.0",
    "botorch": "0.18.1",
    "cupy-cuda13x": "14.2.0",
    "gpytorch": "1.15.2",
    "huggingface-hub": "1.33.0",
    "jax": "0.11.2",
    "jaxlib": "0.11.2",
    "numpy": "2.5.2",
    "safetensors": "0.8.0",
    "sentence-transformers": "6.0.1",
    "sentencepiece": "0.2.2",
    "tiktoken": "0.14.0",
    "tokenizers": "0.23.2",
    "torch": "2.11.0",
    "torchaudio": "2.11.0",
    "torchvision": "0.26.0",
    "transformers": "5.17.0",
    "triton": "3.6.0",
}
_NAMES_ONLY = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
"""
DEVICE_PACKAGES: dict[str, str | None] = {
    canonicalize_name(name): _KNOWN_VERSIONS.get(canonicalize_name(name)) for name in _NAMES_ONLY.split()
}

# The machine's interpreter and platform, for the markers of the requirements (PEP 508).
DEVICE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
# `pip download` flags for that interpreter (the device tool's README); pip matches each manylinux tag exactly.
PIP_PLATFORM_FLAGS = [
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    *(
        arg
        for tag in (
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "manylinux1_x86_64",
        )
        for arg in ("--platform", tag)
    ),
]


# ----------------------------------------------------------------------------------------------------------------------
# The requirements' closure


@dataclass
class Finding:
    """One requirement and what was found for it."""

    requirement: str  # PEP 508, as written by whoever requires it
    required_by: str  # "trl-spo", or "NAME VERSION" of a carried distribution
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.requirement} (required by {self.required_by})" + (f": {self.detail}" if self.detail else "")


@dataclass
class Closure:
    """What `requirement_closure` found: failures, and what only the machine itself can confirm."""

    missing: list[Finding] = field(default_factory=list)  # required, neither carried nor there
    conflicts: list[Finding] = field(default_factory=list)  # required in a version other than the one there
    unverified: list[Finding] = field(default_factory=list)  # there, in a version nobody has read: checked there
    unused: list[str] = field(default_factory=list)  # carried, required by nothing

    @property
    def ok(self) -> bool:
        return not (self.missing or self.conflicts or self.unused)


def applies(requirement: Requirement, extras: set[str], markers: dict[str, str]) -> bool:
    """Whether a requirement holds on the machine for a distribution asked for with `extras` (none: the base)."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**markers, "extra": extra}) for extra in {"", *extras})


def requirement_closure(
    roots: list[str],
    carried: dict[str, tuple[str, list[str]]],
    there: dict[str, str | None],
    markers: dict[str, str] = DEVICE_MARKERS,
) -> Closure:
    """
    Walks the requirements from `roots` through the carried distributions.

    Args:
        roots (`list[str]`): PEP 508 requirements to meet (trl-spo's own).
        carried (`dict[str, tuple[str, list[str]]]`): canonical name -> (version, its `Requires-Dist` lines), the
            distributions that travel; their requirements are walked in turn.
        there (`dict[str, str | None]`): canonical name -> version (None: unknown), what the machine already has. A
            carried distribution shadows the machine's copy; requirements of the machine's own packages are its
            business and are not walked.
        markers (`dict[str, str]`): the machine's PEP 508 environment.
    """
    closure = Closure()
    reached: set[str] = set()
    queue = [(line, "trl-spo", set()) for line in roots]
    while queue:
        line, required_by, extras = queue.pop(0)
        requirement = Requirement(line)
        if not applies(requirement, extras, markers):
            continue
        name = canonicalize_name(requirement.name)
        finding = Finding(str(requirement), required_by)
        if name in carried:
            version, requires = carried[name]
            if not requirement.specifier.contains(Version(version), prereleases=True):
                finding.detail = f"carried {name} {version}"
                closure.conflicts.append(finding)
            key = f"{name}[{','.join(sorted(requirement.extras))}]"
            if key not in reached:
                reached.add(key)
                queue += [(sub, f"{name} {version}", set(requirement.extras)) for sub in requires]
        elif name in there:
            version = there[name]
            if version is None:
                if requirement.specifier:
                    closure.unverified.append(finding)
            elif not requirement.specifier.contains(Version(version), prereleases=True):
                finding.detail = f"the machine has {name} {version}"
                closure.conflicts.append(finding)
        else:
            closure.missing.append(finding)
    walked = {key.split("[")[0] for key in reached}
    closure.unused = sorted(name for name in carried if name not in walked)
    return closure


def project_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """trl-spo's install requirements (`[project].dependencies`)."""
    import tomllib  # Python >= 3.11: this script runs on the machine's 3.12 and on the development machine

    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]


# ----------------------------------------------------------------------------------------------------------------------
# The wheels


@dataclass
class Wheel:
    path: Path
    name: str  # canonical
    version: str
    requires: list[str]

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def read_wheel(path: Path) -> Wheel:
    """A wheel's name and version (from its file name) and its `Requires-Dist` lines (from its METADATA)."""
    name, version, _, _ = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as archive:
        (metadata,) = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        message = email.parser.BytesParser().parsebytes(archive.read(metadata), headersonly=True)
    return Wheel(
        path=path, name=canonicalize_name(name), version=str(version), requires=message.get_all("Requires-Dist") or []
    )


def read_wheels(folder: Path) -> tuple[dict[str, Wheel], list[str]]:
    """The wheels of `folder` by canonical name, and one error per name that has more than one version there."""
    wheels: dict[str, Wheel] = {}
    errors = []
    for path in sorted(folder.glob("*.whl")):
        wheel = read_wheel(path)
        if wheel.name in wheels:
            errors.append(f"two versions of {wheel.name}: {wheels[wheel.name].path.name} and {path.name}")
        wheels[wheel.name] = wheel
    return wheels, errors


def download(pins: dict[str, str], folder: Path) -> None:
    """`pip download` each pinned wheel for the machine's Python, after removing wheels that are not pinned."""
    folder.mkdir(exist_ok=True)
    wanted = {canonicalize_name(name): version for name, version in pins.items()}
    for path in folder.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        if wanted.get(canonicalize_name(name)) != str(version):
            print(f"removing {path.name}: not pinned in WHEELS")
            path.unlink()
    for name, version in pins.items():
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *PIP_PLATFORM_FLAGS]
        subprocess.run([*command, "-d", str(folder), f"{name}=={version}"], check=True)


# ----------------------------------------------------------------------------------------------------------------------
# The size of what travels


def tree_bytes(repo: Path = REPO_ROOT) -> int:
    """What the working tree weighs as it travels: tracked files and untracked files that git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    total = 0
    for name in set(listed.decode().split("\0")) - {""}:
        path = repo / name
        if os.path.lexists(path):  # a tracked file deleted in the work tree does not travel
            total += path.lstat().st_size
    return total


def budget_error(tree: int, wheels: int, budget: int = BUDGET_BYTES) -> str | None:
    """None when the tree and the wheels fit in the budget; otherwise what is over, in MiB."""
    if tree + wheels <= budget:
        return None
    return (
        f"over budget: the working tree ({tree / MIB:.2f} MiB) and the wheels ({wheels / MIB:.2f} MiB) weigh "
        f"{(tree + wheels) / MIB:.2f} MiB, more than the {budget / MIB:.0f} MiB a call carries; drop a wheel, or "
        "ignore (.gitignore) what need not travel"
    )


# ----------------------------------------------------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--offline", action="store_true", help="no download: check what the folder holds")
    parser.add_argument("--folder", type=Path, default=WHEEL_DIR, help="where the wheels go (ignored by git)")
    args = parser.parse_args(argv)

    if not args.offline:
        download(WHEELS, args.folder)
    wheels, errors = read_wheels(args.folder)
    for name, version in WHEELS.items():
        found = wheels.get(canonicalize_name(name))
        if found is None or found.version != version:
            errors.append(f"{name}=={version} is pinned but {args.folder} holds {found and found.path.name}")
    closure = requirement_closure(
        project_requirements(),
        {wheel.name: (wheel.version, wheel.requires) for wheel in wheels.values()},
        {name: version for name, version in DEVICE_PACKAGES.items() if name not in wheels},
    )
    errors += [f"missing on the machine and not carried: {line}" for line in closure.missing]
    errors += [f"version conflict: {line}" for line in closure.conflicts]
    errors += [f"carried but required by nothing: {name}" for name in closure.unused]

    print(f"wheels in {args.folder} (for CPython 3.12, manylinux x86_64):")
    for wheel in wheels.values():
        print(f"  {wheel.path.name:60s} {wheel.size / MIB:6.2f} MiB")
    wheel_total = sum(wheel.size for wheel in wheels.values())
    tree = tree_bytes()
    print(
        f"wheels {wheel_total / MIB:.2f} MiB + working tree {tree / MIB:.2f} MiB = {(wheel_total + tree) / MIB:.2f} "
        f"MiB of {BUDGET_BYTES / MIB:.0f} MiB ({(BUDGET_BYTES - wheel_total - tree) / MIB:.2f} MiB to spare)"
    )
    if closure.unverified:
        print("present on the machine in a version nobody has read there (gpu_check.py checks these first):")
        for line in closure.unverified:
            print(f"  {line}")
    over = budget_error(tree, wheel_total)
    if over:
        errors.append(over)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if not errors:
        print("OK: every requirement is carried or on the machine, and what travels fits")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
