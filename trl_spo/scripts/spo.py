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


# Metrics summarised at the end of a run, first logged value -> last logged value
SUMMARY_METRICS = (
    "loss",
    "loss/preference",
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
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print(summarize(trainer.state.log_history))

    trainer.save_model(training_args.output_dir)
    trainer.create_model_card(dataset_name=script_args.dataset_name)
    trainer.accelerator.print(f"Model and model card saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    trainer.end()
    return trainer


def summarize(log_history: list[dict]) -> str:
    """A table of what the run measured: each metric's first and last logged value, for training and evaluation."""
    rows = []
    for name in (*SUMMARY_METRICS, *(f"eval_{name}" for name in SUMMARY_METRICS)):
        values = [entry[name] for entry in log_history if name in entry]
        if values:
            rows.append(f"| {name} | {values[0]:.4g} | {values[-1]:.4g} |")
    runtime = next((e["train_runtime"] for e in reversed(log_history) if "train_runtime" in e), None)
    header = "SPO run summary" + (f" ({runtime:.0f} s of training)" if runtime is not None else "")
    return "\n".join([header, "| metric | first | last |", "| --- | --- | --- |", *rows])


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, TrlParser

    from trl_spo import SPOConfig

    dataclass_types = (ScriptArguments, SPOConfig, ModelConfig, DatasetMixtureConfig)
    if subparsers is not None:
        return subparsers.add_parser("spo", help="Run the SPO training script", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types, prog=prog)


if __name__ == "__main__":
    parser = make_parser()
    script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(fail_with_unknown_args=False)
    main(script_args, training_args, model_args, dataset_args)
