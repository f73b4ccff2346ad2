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
The evaluation run: sample the policy, score its samples, judge them against references, write the results.

Steps of [`evaluate`]:

1. Prompts from a dataset column; reference answers from another column or sampled from a reference model.
2. `num_samples` completions per prompt with `model.generate`. A completion is the tokens *before* the first EOS: the
   EOS is the decision to stop, not part of the answer the judge reads, so it is neither counted in |y| nor scored.
   A completion that never emits EOS within `max_new_tokens` is kept whole and flagged `truncated`.
3. log pi(y_t | x, y_<t) of the sampled tokens under the policy *at temperature 1*, by one forward pass over prompt +
   completion, and the per-completion entropy estimate of [`~trl_spo.evaluation.metrics.per_token_entropy`].
4. Each completion judged against its reference in both orders; see [`~trl_spo.evaluation.metrics.comparison_score`].
5. `judgements.jsonl` (one row per completion), `summary.json`, `summary.md` in `output_dir`.

An empty completion (EOS first) is judged like any other answer (an empty answer is a real, bad output; dropping it
would inflate the win rate), flagged `empty`, given a `null` entropy (|y| = 0) and counted in `num_empty`.
"""

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from .config import EvalArguments
from .generation import (
    _is_conversation,
    completion_entropies,
    completion_token_logps,
    encode_prompt,
    generation_config_for,
    load_causal_lm,
    release,
    sample_answers,
)
from .judges import PairwiseJudge, build_judge, judge_comparisons
from .report import PREFERENCE_THRESHOLD, summarize_evaluation, summary_markdown


__all__ = ["evaluate", "load_prompt_dataset", "prompt_text", "reference_text"]

logger = logging.getLogger(__name__)

_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load_prompt_dataset(dataset_name: str, dataset_config: str | None = None, dataset_split: str = "train"):
    """A `datasets.Dataset` from a local data file, a `save_to_disk` directory, or the hub."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(dataset_name)
    if path.is_file():
        if path.suffix not in _FILE_BUILDERS:
            raise ValueError(
                f"Cannot read prompts from {path}: expected one of {sorted(_FILE_BUILDERS)}, found '{path.suffix}'."
            )
        return load_dataset(_FILE_BUILDERS[path.suffix], data_files=str(path), split="train")
    if path.is_dir() and any((path / name).exists() for name in ("state.json", "dataset_dict.json")):
        data = load_from_disk(str(path))
        if isinstance(data, DatasetDict):
            if dataset_split not in data:
                raise ValueError(f"{path} has splits {list(data)}, found no split {dataset_split!r}.")
            data = data[dataset_split]
        return data
    return load_dataset(dataset_name, dataset_config, split=dataset_split)


def prompt_text(prompt: str | list[dict[str, str]]) -> str:
    """The prompt as the judge reads it: the string itself, a lone user turn's content, else `role: content` blocks."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and prompt[0].get("role") == "user":
        return prompt[0]["content"]
    return "\n\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in prompt)


def reference_text(reference: Any) -> str:
    """A reference answer from a dataset cell: a string, or the content of a conversation's last message."""
    if isinstance(reference, str):
        return reference
    if _is_conversation(reference) and reference:
        return reference[-1]["content"]
    raise ValueError(
        f"A reference answer must be a string or a list of messages, found {type(reference).__name__}: "
        f"{str(reference)[:100]!r}."
    )


def evaluate(args: EvalArguments, judge: PairwiseJudge | None = None, dataset=None) -> dict[str, Any]:
    """
    Run the evaluation that `args` describes and write `judgements.jsonl`, `summary.json`, `summary.md`.

    Args:
        args ([`EvalArguments`]): the run's settings.
        judge ([`PairwiseJudge`] or `None`, *optional*): a judge to use instead of the one `args` describes.
        dataset (`datasets.Dataset` or `None`, *optional*): prompts to use instead of loading `args.dataset_name`.

    Returns:
        `dict`: the summary written to `summary.json`.
    """
    from transformers import set_seed

    started = time.time()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    if dataset is None:
        dataset = load_prompt_dataset(args.dataset_name, args.dataset_config, args.dataset_split)
    for role, column in (("prompt", args.prompt_column), ("reference", args.reference_column)):
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"The prompt set {args.dataset_name!r} has no {role} column {column!r}; expected it among the "
                f"columns found: {dataset.column_names}. Set --{role}_column."
            )
    if args.max_prompts is not None:
        dataset = dataset.select(range(min(args.max_prompts, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"The prompt set {args.dataset_name!r} has no rows.")
    prompts = list(dataset[args.prompt_column])
    prompt_texts = [prompt_text(p) for p in prompts]

    # References first, so that only one causal LM is in memory at a time.
    if args.reference_column is not None:
        references = [reference_text(r) for r in dataset[args.reference_column]]
        reference_info: dict[str, Any] = {"column": args.reference_column}
    else:
        temperature = args.temperature if args.reference_temperature is None else args.reference_temperature
        reference_model, reference_tokenizer = load_causal_lm(args.reference_model_name_or_path, args, device)
        reference_ids = [encode_prompt(reference_tokenizer, p, args.apply_chat_template) for p in prompts]
        config = generation_config_for(
            reference_model, reference_tokenizer, args.max_new_tokens, temperature, args.top_p, args.generation_kwargs
        )
        set_seed(args.seed)
        generated = sample_answers(reference_model, reference_tokenizer, reference_ids, 1, config, args.batch_size)
        references = [reference_tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in generated]
        reference_info = {"model": args.reference_model_name_or_path, "temperature": temperature}
        release(reference_model)

    logger.info("Sampling %d x %d completions from %s.", len(prompts), args.num_samples, args.model_name_or_path)
    model, tokenizer = load_causal_lm(args.model_name_or_path, args, device)
    prompt_ids = [encode_prompt(tokenizer, p, args.apply_chat_template) for p in prompts]
    config = generation_config_for(
        model, tokenizer, args.max_new_tokens, args.temperature, args.top_p, args.generation_kwargs
    )
    set_seed(args.seed)
    completions = sample_answers(model, tokenizer, prompt_ids, args.num_samples, config, args.batch_size)
    owners = [i for i in range(len(prompts)) for _ in range(args.num_samples)]
    token_logps = completion_token_logps(
        model,
        [prompt_ids[i] for i in owners],
        [c.token_ids for c in completions],
        args.batch_size,
        config.pad_token_id,
    )
    entropies = completion_entropies(token_logps)
    release(model)

    completion_texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in completions]
    if judge is None:
        judge = build_judge(args)
    logger.info("Judging %d comparisons in both orders.", len(completions))
    judged = judge_comparisons(
        judge,
        [(prompt_texts[i], text, references[i]) for i, text in zip(owners, completion_texts, strict=False)],
        num_workers=args.judge_num_workers,
    )

    records = []
    for k, (i, completion, text, entropy, result) in enumerate(
        zip(owners, completions, completion_texts, entropies, judged, strict=False)
    ):
        reference_tokens = len(tokenizer(references[i], add_special_tokens=False)["input_ids"])
        records.append(
            {
                "prompt_index": i,
                "sample_index": k % args.num_samples,
                "prompt": prompts[i],
                "prompt_text": prompt_texts[i],
                "completion": text,
                "reference": references[i],
                "completion_token_ids": completion.token_ids,
                "completion_num_tokens": len(completion.token_ids),
                "completion_num_chars": len(text),
                "reference_num_tokens": reference_tokens,
                "reference_num_chars": len(references[i]),
                "length_difference": len(text) - len(references[i]),
                "empty": not completion.token_ids,
                "truncated": not completion.stopped_at_eos,
                "entropy": entropy,
                **result,
                "preferred": result["score"] is not None and result["score"] > PREFERENCE_THRESHOLD,
            }
        )

    summary = summarize_evaluation(records, args, judge.describe(), reference_info, time.time() - started)
    with (output_dir / "judgements.jsonl").open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (output_dir / "summary.md").write_text(summary_markdown(summary), "utf-8")
    return summary
