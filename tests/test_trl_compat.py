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
from trl_spo._trl_compat import (
    CLASS_ATTRIBUTES,
    FUSED_LM_HEAD_OUTPUTS,
    INSTANCE_ATTRIBUTES,
    OVERRIDDEN_METHODS,
    seam_problems,
)

from .helpers import make_args


@pytest.fixture
def trainer(tmp_path, tiny_model_path, standard_preference_dataset):
    return SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=standard_preference_dataset)


def test_every_seam_holds_on_the_installed_trl(trainer):
    problems = seam_problems(trainer)
    assert problems == [], "TRL changed a seam SPOTrainer relies on:\n" + "\n".join(problems)


def test_the_seams_cover_what_spo_trainer_overrides():
    # A method SPOTrainer overrides from DPOTrainer (or Trainer) that the list forgot would drift unnoticed.
    overridden = {
        name
        for name, value in vars(SPOTrainer).items()
        if callable(value) and not name.startswith("__") and hasattr(DPOTrainer, name)
    }
    assert overridden == set(OVERRIDDEN_METHODS), "update trl_spo._trl_compat.OVERRIDDEN_METHODS"
    # And every class attribute it redefines for TRL's model card.
    redefined = {
        name for name in vars(SPOTrainer) if not callable(vars(SPOTrainer)[name]) and hasattr(DPOTrainer, name)
    }
    assert redefined - {"__doc__", "__module__", "__annotations__"} == set(CLASS_ATTRIBUTES)


def test_a_changed_seam_is_named(trainer, monkeypatch):
    def renamed(self, data, processing_class, args, dataset_name):  # `dataset` renamed: a breaking change
        return data

    def keeps_everything(self, dataset, description=None):  # a refactor that no longer reads the signature columns
        return dataset

    monkeypatch.setattr(DPOTrainer, "_prepare_dataset", renamed)
    monkeypatch.delattr(transformers.Trainer, "get_batch_samples")  # where DPOTrainer inherits it from
    monkeypatch.setattr(transformers.Trainer, "_remove_unused_columns", keeps_everything)
    monkeypatch.setattr(DPOTrainer, "_paper", "Direct Preference Optimization")
    del trainer.__dict__["_tp_size"]
    problems = seam_problems(trainer)
    assert any(p.startswith("DPOTrainer._prepare_dataset takes ('data',") for p in problems), problems
    assert "DPOTrainer.get_batch_samples is gone (SPOTrainer overrides it)" in problems
    assert any(
        p.startswith("Trainer._remove_unused_columns no longer contains `self._signature_columns`") for p in problems
    )
    assert any(p.startswith("DPOTrainer._paper is no longer a dict") for p in problems), problems
    assert any(p.startswith("DPOTrainer.__init__ no longer sets `_tp_size`") for p in problems)
    assert len(INSTANCE_ATTRIBUTES) >= 10 and FUSED_LM_HEAD_OUTPUTS[0] == "log_probs"


def test_a_changed_fused_lm_head_is_named(trainer, monkeypatch):
    model = trainer.model
    original = model.forward

    def without_the_keyword(input_ids=None, attention_mask=None, labels=None):  # the forward before TRL patched it
        return original(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    monkeypatch.setattr(model, "forward", without_the_keyword)
    (problem,) = seam_problems(trainer)
    assert problem.startswith("the model's forward no longer takes `fused_lm_head=True`"), problem

    def one_field_fewer_and_unshifted(*args, **kwargs):
        outputs = original(*args, **kwargs)
        outputs.is_top1 = None
        outputs.entropy = torch.nn.functional.pad(outputs.entropy, (1, 0))  # one value per token: width L
        return outputs

    monkeypatch.setattr(model, "forward", one_field_fewer_and_unshifted)
    assert seam_problems(trainer) == [
        "the fused LM head's `entropy` has shape (1, 3) for 1 sequence of 3 tokens; SPOTrainer reads (1, 2), one value "
        "per position that predicts a token",
        "the fused LM head no longer returns `is_top1` (DPOTrainer used to request it)",
    ]


def test_private_trl_names_are_imported_in_one_module():
    # Every TRL name below the top-level API comes through _trl_compat; its __all__ lists them. Import statements
    # are read from the syntax tree, since the upstream kit holds `from trl.experimental.spo import ...` inside the
    # text of the code it generates; the pull request's test file is a template (templates/*.tmpl), not a module.
    import ast
    import pathlib

    package = pathlib.Path(_trl_compat.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "_trl_compat.py":
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


def test_every_module_of_the_package_imports():
    # `import trl_spo.<module>` works for every module: templates of generated code are not modules.
    import importlib
    import pkgutil

    import trl_spo

    modules = [info.name for info in pkgutil.walk_packages(trl_spo.__path__, "trl_spo.")]
    assert len(modules) > 30 and "trl_spo.trainer" in modules
    failures = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - every failure is reported by module, whatever it is
            failures[name] = repr(error)
    assert failures == {}, failures


def test_the_pull_request_test_template_ships_with_the_package():
    # `trl-spo upstream` reads it from the installed package: it must be package data, not only a repository file.
    from setuptools.config.pyprojecttoml import read_configuration

    from trl_spo.upstream import PACKAGE_DIR, TESTS_TEMPLATE

    assert TESTS_TEMPLATE.is_file()
    pyproject = read_configuration(PACKAGE_DIR.parent / "pyproject.toml")
    patterns = pyproject["tool"]["setuptools"]["package-data"]["trl_spo"]
    assert any(TESTS_TEMPLATE.relative_to(PACKAGE_DIR).match(pattern) for pattern in patterns), patterns
