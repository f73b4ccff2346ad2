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

"""The step-cost benchmark runs end to end at a tiny size (no timing is asserted: that is what it reports)."""

import importlib
import os
import re
from types import SimpleNamespace

import pytest
import torch

from benchmarks import step_cost
from benchmarks.step_cost import TensorPeak
from trl_spo import _trl_compat

from .test_trainer import FakeVLLMGeneration


TINY = ["--hidden-size", "32", "--batch-size", "2", "--completion-length", "8", "--prompt-length", "10"]


def test_table_has_a_row_per_baseline_and_goes_into_the_docs(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n<!-- step-cost:begin -->\nold\n<!-- step-cost:end -->\nafter\n")
    argv = [*TINY, "--configs", "small", "--repeats", "1", "--measure-steps", "8", "--update_doc", str(doc)]
    assert step_cost.main(argv) == 0
    text = doc.read_text()
    assert "old" not in text and text.endswith("<!-- step-cost:end -->\nafter\n")
    rows = [line for line in text.splitlines() if line.startswith("| small |")]
    assert [row.split("|")[4].strip() for row in rows] == ["DPO", "DPO-precomputed"]
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        ratio = float(re.match(r"\*\*([\d.]+)x\*\*", cells[6]).group(1))
        # The ratio is SPO's s/step over the baseline's (one repeat each: the same runs). Both are printed to 3
        # decimals and the ratio to 2, which bounds how far the printed values can disagree.
        spo, baseline = float(cells[5]), float(cells[4])
        assert (spo - 5e-4) / (baseline + 5e-4) - 5e-3 <= ratio <= (spo + 5e-4) / (baseline - 5e-4) + 5e-3
        assert cells[-1] in ("yes", "no") and cells[11] != "—"  # the tensor peak is measured on a CPU too
    assert (
        "SPO vs DPO, cost per optimizer step on CPU (`python -m benchmarks.step_cost" in text and "- machine:" in text
    )


def test_a_model_config_needs_a_model_path():
    with pytest.raises(SystemExit):
        step_cost.parse_args(["--configs", "model"])


def test_tensor_peak_counts_the_live_tensors_and_the_allocations_of_the_window():
    model = torch.nn.Linear(256, 256)  # 257 KiB of parameters
    peak = TensorPeak(num_steps=1)
    peak.trainer = SimpleNamespace(model=model, ref_model=None)
    args = SimpleNamespace(use_cpu=True)
    peak.on_step_begin(args, SimpleNamespace(global_step=0), None)
    scratch = torch.empty(2**20)  # 4 MiB, freed before the window ends
    del scratch
    kept = torch.ones(2**18)  # 1 MiB, still alive
    peak.on_step_end(args, SimpleNamespace(global_step=1), None)
    parameters = (256 * 256 + 256) * 4
    # Both allocations were live at once only if `kept` came before the 4 MiB were freed; here they were not.
    assert parameters + 4 * 2**20 <= peak.peak_bytes < parameters + 6 * 2**20
    del kept


def test_tensor_peak_sees_temporaries_an_op_allocates_and_frees_inside_itself():
    # cross_entropy allocates its log-softmax (n x n float32) inside the op and frees it there; the backward builds
    # the softmax's gradient the same way. Net per op, those temporaries vanish; the peak must still contain them.
    n = 1024
    logits = torch.randn(n, n, requires_grad=True)
    targets = torch.randint(0, n, (n,))
    peak = TensorPeak(num_steps=1)
    peak.trainer = SimpleNamespace(model=torch.nn.Identity(), ref_model=None)
    args = SimpleNamespace(use_cpu=True)
    peak.on_step_begin(args, SimpleNamespace(global_step=0), None)
    torch.nn.functional.cross_entropy(logits, targets).backward()
    peak.on_step_end(args, SimpleNamespace(global_step=1), None)
    matrix = n * n * 4
    # The allocation records peak at three n x n matrices at once (the saved log-softmax, the softmax built from it
    # in the backward, the gradient of `logits`); net per op, the figures this replaced found two. Sizes are exact
    # (no rounding involved), and the rest of the step holds a few KiB.
    assert 3 * matrix <= peak.peak_bytes < 3 * matrix + 2**20


def test_gpu_preset_and_its_vllm_smoke_run_at_a_tiny_size(monkeypatch, capsys):
    monkeypatch.setattr(_trl_compat, "is_vllm_available", lambda: True)
    monkeypatch.setattr(_trl_compat, "VLLMGeneration", FakeVLLMGeneration)
    FakeVLLMGeneration.instances.clear()
    argv = ["--preset", "gpu", "--tiny", "--vllm", "--generation-interval", "2", "--measure-steps", "2"]
    assert step_cost.main([*argv, "--warmup-steps", "1"]) == 0
    report = capsys.readouterr().out
    for kind in ("SPO", "DPO", "DPO-precomputed"):
        assert re.search(rf"\| {kind} \| [\d.]+ \|", report), kind
    assert "vLLM colocate smoke run (3 steps, 2 refreshes)" in report
    (vllm,) = FakeVLLMGeneration.instances
    assert vllm.kwargs["mode"] == "colocate" and vllm.calls == ["sync", "generate", "sync", "generate"]


def test_importing_the_benchmark_keeps_the_callers_offline_setting(monkeypatch):
    # The module sets the hub's offline switches before transformers reads them, but only where the caller has not:
    # importing it (as this test file and gpu_check.py do) must not overwrite a session's own setting.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    importlib.reload(step_cost)
    assert os.environ["HF_HUB_OFFLINE"] == "0", "step_cost overwrote HF_HUB_OFFLINE=0 on import"
    assert os.environ["HF_DATASETS_OFFLINE"] == "1", "step_cost did not fill in the unset HF_DATASETS_OFFLINE"
