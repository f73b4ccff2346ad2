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
SPO training script: `trl dpo` with `SPOTrainer`/`SPOConfig`. Every `DPOConfig` flag works, plus SPO's.

# The tiny offline recipe (CPU, a few minutes)
```bash
trl-spo --config recipes/tiny/spo.yaml
```

# Full training
```bash
trl-spo \
    --dataset_name trl-lib/ultrafeedback_binarized \
    --model_name_or_path Qwen/Qwen2-0.5B-Instruct \
    --learning_rate 5.0e-7 \
    --per_device_train_batch_size 2 \
    --gradient_accumulation_steps 8 \
    --alpha 0.01 --beta 0.01 --gamma 0.01 \
    --generation_interval 8 --kl_batch_size 8 --max_completion_length 512 \
    --output_dir Qwen2-0.5B-SPO \
    --no_remove_unused_columns
```

# LoRA (the reference is the base model with the adapter disabled)
```bash
trl-spo --config recipes/tiny/spo.yaml --use_peft --lora_r 16 --lora_alpha 32
```

# Multi-GPU / DeepSpeed
```bash
trl-spo --config my_recipe.yaml --accelerate_config zero3
accelerate launch --config_file zero3.yaml -m trl_spo.scripts.spo --config my_recipe.yaml
```
"""

import argparse
import math
from dataclasses import fields


USAGE = """\
usage: trl-spo --config RECIPE.yaml [--accelerate_config NAME_OR_PATH] [--FIELD VALUE ...] [accelerate options]
       trl-spo eval [--config EVAL.yaml] [--FIELD VALUE ...]
       trl-spo pair_weights --model PATH --dataset PAIRS.jsonl [--alphas A ...]
       trl-spo upstream --trl-source TRL_TREE --output DIR

Train a model with Soft Preference Optimization (SPO), as `trl dpo` trains one with DPO:

  trl-spo --config recipes/tiny/spo.yaml                    a YAML recipe: every key is a field listed by --help
  trl-spo --config recipe.yaml --alpha 0.5 --beta 0.01      flags override the recipe
  trl-spo --config recipe.yaml --accelerate_config zero3    launch through accelerate (TRL's configs or a path)

Options the training parser does not know (--num_processes, --config_file, ...) go to `accelerate launch`.
`trl-spo pair_weights --help`: before training, the pair weights each alpha gives your pairs (choosing alpha).
`trl-spo eval --help`: win rates and useful entropy of a trained model.
`trl-spo upstream --help`: SPO as a ready TRL pull request.
`trl-spo --help`: every training field, SPO's own first."""

# Metrics summarized at the end of a run, first logged value -> last logged value
SUMMARY_METRICS = (
    "loss",
    "loss/preference",
    "loss/preference_normalized",
    "kl/global",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "mu/mean",
    "samples/mean_length",
    "samples/entropy",
    "time/generation_share",
)


def main(script_args, training_args, model_args, dataset_args):
    from datasets import load_dataset
    from trl import get_dataset, get_peft_config, get_quantization_config

    from trl_spo import SPOTrainer

    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    if dataset_args.datasets:
        dataset = get_dataset(dataset_args)
    elif script_args.dataset_name:
        dataset = load_dataset(
            script_args.dataset_name, name=script_args.dataset_config, streaming=script_args.dataset_streaming
        )
    else:
        raise ValueError("Either `datasets` or `dataset_name` must be provided.")

    trainer = SPOTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    note = loss_scale_note(training_args)
    if note:
        trainer.accelerator.print(note)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print(summarize_run(trainer.state.log_history, note))

    trainer.save_model(training_args.output_dir)
    trainer.create_model_card(dataset_name=script_args.dataset_name)
    trainer.accelerator.print(f"Model and model card saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    trainer.end()
    return trainer


def loss_scale_note(args) -> str | None:
    """Why `loss` reads ~100x DPO's at alpha = 0.01, for the start and the end of a run; `None` if it does not."""
    if not args.alpha:  # alpha = 0 (Eq. 9) or a DPO-family baseline
        return None
    return (
        f"Note: SPO's preference loss is DPO's log-loss divided by alpha (Eq. 8), so with alpha = {args.alpha:g} it "
        f"starts near log(2) / alpha = {math.log(2) / args.alpha:.4g} on pairs where DPO's starts at log(2) = 0.693. "
        "loss/preference_normalized = alpha * loss/preference is on DPO's scale."
    )


def summarize_run(log_history: list[dict], note: str | None = None) -> str:
    """
    A table of what the run measured: each metric's first and last logged value, for training and evaluation,
    followed by `note` (e.g. `loss_scale_note`).
    """
    rows = []
    for name in (*SUMMARY_METRICS, *(f"eval_{name}" for name in SUMMARY_METRICS)):
        values = [entry[name] for entry in log_history if name in entry]
        if values:
            rows.append(f"| {name} | {values[0]:.4g} | {values[-1]:.4g} |")
    runtime = next((e["train_runtime"] for e in reversed(log_history) if "train_runtime" in e), None)
    header = "SPO run summary" + (f" ({runtime:.0f} s of training)" if runtime is not None else "")
    return "\n".join([header, "| metric | first | last |", "| --- | --- | --- |", *rows, *([note] if note else [])])


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    """
    `TrlParser` over `ScriptArguments`, `SPOConfig`, `ModelConfig` and `DatasetMixtureConfig`, like `trl dpo`'s.

    Its help starts with how to run the command and lists SPOConfig's own fields first; the DPO fields that SPOConfig
    refuses come last, marked as such.
    """
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, TrlParser

    from trl_spo import SPOConfig

    dataclass_types = (ScriptArguments, SPOConfig, ModelConfig, DatasetMixtureConfig)
    if subparsers is not None:
        return subparsers.add_parser("spo", help="Run the SPO training script", dataclass_types=dataclass_types)
    usage, _, description = USAGE.partition("\n\n")
    parser = TrlParser(
        dataclass_types,
        prog=prog,
        usage=usage.removeprefix("usage: "),
        description=description,
        formatter_class=_HelpFormatter,
    )
    _group_help(parser, dataclass_types)
    return parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (as HfArgumentParser shows them), and the description's examples kept as written."""


def _group_help(parser: argparse.ArgumentParser, dataclass_types: tuple) -> None:
    # HfArgumentParser puts every field in one group, TrainingArguments' ~150 first; regroup them so that a DPO user
    # reads what SPO adds first and sees which DPO fields SPOConfig refuses.
    from trl_spo.config import DPO_ONLY_FIELDS, SPO_FIELDS

    script, training, model, mixture = ({f.name for f in fields(cls)} for cls in dataclass_types)
    spo = {"beta", *SPO_FIELDS}  # beta is DPOConfig's field with SPO's meaning
    groups = [
        (
            parser.add_argument_group(
                "SPO (SPOConfig's own fields; beta is the weight of the global KL)",
                "Pick alpha before training: `trl-spo pair_weights --model MODEL --dataset PAIRS` prints the pair "
                "weight each alpha gives your pairs (docs/choosing_alpha.md).",
            ),
            spo,
        ),
        (parser.add_argument_group("training (DPOConfig and transformers.TrainingArguments)"), training),
        (parser.add_argument_group("model (trl.ModelConfig)"), model),
        (parser.add_argument_group("dataset (trl.ScriptArguments)"), script),
        (parser.add_argument_group("dataset mixture (trl.DatasetMixtureConfig)"), mixture),
        (parser.add_argument_group("DPO options that SPOConfig refuses (any value but the default is an error)"), ()),
    ]
    refused_group = groups[-1][0]
    for action in list(parser._actions):  # argparse has no public API to move an argument between groups
        if action.dest in DPO_ONLY_FIELDS:
            target = refused_group
            action.help = f"[refused by SPOConfig: {DPO_ONLY_FIELDS[action.dest][1]}] {action.help or ''}"
        else:
            target = next((group for group, names in groups if action.dest in names), None)
        if target is None:
            continue
        for group in parser._action_groups:
            if action in group._group_actions:
                group._group_actions.remove(action)
        target._group_actions.append(action)
    # The new groups were appended after argparse's own; show them first, keeping `-h` where it is.
    new_groups = [group for group, _ in groups]
    parser._action_groups = [g for g in parser._action_groups if g not in new_groups] + new_groups


if __name__ == "__main__":
    parser = make_parser()
    script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(fail_with_unknown_args=False)
    main(script_args, training_args, model_args, dataset_args)
