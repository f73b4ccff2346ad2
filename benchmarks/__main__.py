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

"""`python -m benchmarks`: the benchmarks and the command that runs each."""

from . import BENCHMARKS


def main() -> int:
    width = max(len(f"python -m benchmarks.{name}") for name in BENCHMARKS)
    print("Run from the repository's root; `python -m benchmarks.NAME --help` lists a benchmark's options.\n")
    for name, about in BENCHMARKS.items():
        print(f"  {f'python -m benchmarks.{name}':<{width}}  {about}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
