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

"""The library (`trl_spo/`) stands alone; the benchmarks (`benchmarks/`) use it and run from the checkout."""

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import BENCHMARKS


REPO_ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    """Absolute module names that `path` imports (relative imports stay inside their own package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_library_never_imports_the_benchmarks_or_the_tests():
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(
            name for name in _imported_modules(path) if name.split(".")[0] in ("benchmarks", "tests", "recipes")
        )
        for path in (REPO_ROOT / "trl_spo").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_every_listed_benchmark_runs_as_a_module_with_a_main():
    for name in BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        assert callable(module.main), name
        assert 'if __name__ == "__main__":' in Path(module.__file__).read_text(encoding="utf-8"), name


def test_python_m_benchmarks_lists_each_command():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for name in BENCHMARKS:
        assert f"python -m benchmarks.{name} " in result.stdout, name


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_each_benchmark_runs_with_its_documented_command(name):
    # `python -m benchmarks.NAME` from the checkout's root, as docs/benchmarks.md says: the root is on the path only
    # because it is the working directory.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    command = [sys.executable, "-m", f"benchmarks.{name}", "--help"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: python -m benchmarks.{name}"), result.stdout[:200]


def test_the_docs_name_no_command_of_the_old_layout():
    # Marked blocks are generated from a run's JSON and keep the command that run was made with; the rest of every doc
    # names today's commands (`python -m benchmarks.NAME`, `trl-spo pair_weights`).
    old = re.compile(r"trl-spo bench\b|trl_spo[./]benchmarks")
    docs = [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md"), *(REPO_ROOT / "recipes").rglob("README.md")]
    found = []
    for doc in docs:
        text = re.sub(
            r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->", "", doc.read_text(encoding="utf-8"), flags=re.DOTALL
        )
        found += [
            f"{doc.relative_to(REPO_ROOT)}: {line.strip()[:100]}" for line in text.splitlines() if old.search(line)
        ]
    assert found == [], "docs still name the old layout's commands:\n" + "\n".join(found)
