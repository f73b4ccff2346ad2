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

"""The drift guard: every TRL seam SPOTrainer relies on still holds, and a changed one is named."""

import pytest
import torch
import transformers
from trl import DPOTrainer

from trl_spo import SPOTrainer, _trl_compat
from trl_spo._trl_compat import FUSED_LM_HEAD_OUTPUTS, INSTANCE_ATTRIBUTES, OVERRIDDEN_METHODS, seam_problems

from .helpers import make_args


@pytest.fixture
def trainer_and_fused_outputs(tmp_path, tiny_model_path, standard_preference_dataset):
    trainer = SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=standard_preference_dataset)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        outputs = trainer.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True
        )
    return trainer, outputs


def test_every_seam_holds_on_the_installed_trl(trainer_and_fused_outputs):
    trainer, outputs = trainer_and_fused_outputs
    problems = seam_problems(trainer, outputs)
    assert problems == [], "TRL changed a seam SPOTrainer relies on:\n" + "\n".join(problems)


def test_the_seams_cover_what_spo_trainer_overrides():
    # A method SPOTrainer overrides from DPOTrainer (or Trainer) that the list forgot would drift unnoticed.
    overridden = {
        name
        for name, value in vars(SPOTrainer).items()
        if callable(value) and not name.startswith("__") and hasattr(DPOTrainer, name)
    }
    assert overridden == set(OVERRIDDEN_METHODS), "update trl_spo._trl_compat.OVERRIDDEN_METHODS"


def test_a_changed_seam_is_named(trainer_and_fused_outputs, monkeypatch):
    trainer, outputs = trainer_and_fused_outputs

    def renamed(self, data, processing_class, args, dataset_name):  # `dataset` renamed: a breaking change
        return data

    monkeypatch.setattr(DPOTrainer, "_prepare_dataset", renamed)
    monkeypatch.delattr(transformers.Trainer, "get_batch_samples")  # where DPOTrainer inherits it from
    del trainer.__dict__["_tp_size"]
    outputs.is_top1 = None
    problems = seam_problems(trainer, outputs)
    assert any(p.startswith("DPOTrainer._prepare_dataset takes ('data',") for p in problems), problems
    assert "DPOTrainer.get_batch_samples is gone (SPOTrainer overrides it)" in problems
    assert any(p.startswith("DPOTrainer.__init__ no longer sets `_tp_size`") for p in problems)
    assert "the fused LM head no longer returns `is_top1` (DPOTrainer used to request it)" in problems
    assert len(INSTANCE_ATTRIBUTES) >= 9 and FUSED_LM_HEAD_OUTPUTS[0] == "log_probs"


def test_private_trl_names_are_imported_in_one_module():
    # Every TRL name below the top-level API comes through _trl_compat; its __all__ lists them. Import statements
    # are read from the syntax tree, since the upstream kit holds `from trl.experimental.spo import ...` inside the
    # text of the code it generates. upstream_tests.py is exempt: it is the source of the pull request's test file,
    # which imports SPO from its place in TRL; this package never imports it.
    import ast
    import pathlib

    package = pathlib.Path(_trl_compat.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name in ("_trl_compat.py", "upstream_tests.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("trl."):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}: from {node.module} import ...")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path.relative_to(package)}:{node.lineno}: import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("trl.")
                ]
    assert offenders == [], offenders
