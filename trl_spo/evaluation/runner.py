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

import copy
import gc
import inspect
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .config import EvalArguments
from .judges import JudgeError, OpenAIChatJudge, PairwiseJudge, RewardModelJudge
from .metrics import comparison_score, length_controlled_win_rate, per_token_entropy, useful_entropy, win_rate


__all__ = [
    "JUDGES",
    "Completion",
    "build_judge",
    "completion_token_logps",
    "encode_prompt",
    "evaluate",
    "judge_comparisons",
    "load_prompt_dataset",
    "prompt_text",
    "reference_text",
    "sample_completions",
]

logger = logging.getLogger(__name__)

PREFERENCE_THRESHOLD = 0.5
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


# ---------------------------------------------------------------------------------------------------------------------
# Judges
# ---------------------------------------------------------------------------------------------------------------------


def _reward_model_judge(args: EvalArguments) -> PairwiseJudge:
    return RewardModelJudge(
        args.judge_model,
        batch_size=args.judge_batch_size,
        use_chat_template=args.judge_use_chat_template,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )


def _openai_judge(args: EvalArguments) -> PairwiseJudge:
    import os

    return OpenAIChatJudge(
        base_url=args.judge_url,
        model=args.judge_model,
        # "" rather than None when the variable is unset: None would fall back to OPENAI_API_KEY, which the user did
        # not ask for if they named another variable.
        api_key=os.environ.get(args.judge_api_key_env, ""),
        timeout=args.judge_timeout,
        max_retries=args.judge_max_retries,
        retry_backoff_seconds=args.judge_retry_backoff_seconds,
        max_tokens=args.judge_max_tokens,
        system_prompt=args.judge_system_prompt,
        user_template=args.judge_user_template,
    )


JUDGES = {"reward_model": _reward_model_judge, "openai": _openai_judge}


def build_judge(args: EvalArguments) -> PairwiseJudge:
    """The judge that `args.judge` names, configured from the `judge_*` fields."""
    if args.judge not in JUDGES:
        raise ValueError(f"`judge` must be one of {sorted(JUDGES)}, found {args.judge!r}.")
    return JUDGES[args.judge](args)


# ---------------------------------------------------------------------------------------------------------------------
# Prompts and references
# ---------------------------------------------------------------------------------------------------------------------


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


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value)


def encode_prompt(tokenizer, prompt: str | list[dict[str, str]], apply_chat_template: bool = False) -> list[int]:
    """
    Token ids the model is prompted with.

    A string is tokenised as is (with the tokenizer's special tokens, e.g. a BOS), or, with `apply_chat_template`,
    wrapped in a user turn first. A conversation is rendered with the chat template and a generation prompt.
    """
    if isinstance(prompt, str) and apply_chat_template:
        prompt = [{"role": "user", "content": prompt}]
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    if not _is_conversation(prompt):
        raise ValueError(
            f"A prompt must be a string or a list of {{'role', 'content'}} messages, found {type(prompt).__name__}: "
            f"{str(prompt)[:100]!r}."
        )
    if tokenizer.chat_template is None:
        raise ValueError("Conversational prompts (or apply_chat_template=True) need a tokenizer with a chat template.")
    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    # The template already wrote the special tokens it wants.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


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


# ---------------------------------------------------------------------------------------------------------------------
# Sampling and scoring
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Completion:
    """
    One sampled completion.

    Attributes:
        token_ids (`list[int]`): the tokens before the first EOS (EOS excluded); `[]` for an empty completion.
        stopped_at_eos (`bool`): whether an EOS ended it; `False` means it was cut at `max_new_tokens`.
    """

    token_ids: list[int]
    stopped_at_eos: bool


def _eos_token_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    if not eos:
        raise ValueError("The model has no EOS token (neither in its generation config nor in its tokenizer).")
    return eos


def _pad_token_id(tokenizer, eos_token_ids: list[int]) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids[0]


def generation_config_for(
    model,
    tokenizer,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generation_kwargs: dict[str, Any] | None = None,
):
    """The model's generation config with the evaluation's sampling settings; `temperature = 0` is greedy."""
    config = copy.deepcopy(model.generation_config)
    eos = _eos_token_ids(model, tokenizer)
    settings: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=_pad_token_id(tokenizer, eos)
    )
    if temperature == 0:
        settings.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        # top_k = 0 explicitly: transformers otherwise fills in top_k = 50, which would truncate the distribution.
        settings.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    settings.update(generation_kwargs or {})
    config.update(**settings)
    return config


def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    num_samples: int,
    generation_config,
    batch_size: int,
) -> list[Completion]:
    """
    `num_samples` completions per prompt, prompt-major: entry `i * num_samples + j` is sample j of prompt i.

    Prompts are left-padded into batches of `batch_size`; each completion is cut before its first EOS. The caller sets
    the seed. Greedy decoding (`do_sample=False`) is run once per prompt and repeated `num_samples` times.
    """
    eos = generation_config.eos_token_id
    eos = set([eos] if isinstance(eos, int) else eos)
    pad = generation_config.pad_token_id
    draws = num_samples if generation_config.do_sample else 1
    device = model.device
    completions: list[Completion] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(len(p) for p in batch)
        input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in batch], device=device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        with torch.no_grad():
            sequences = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=generation_config,
                num_return_sequences=draws,
            )
        for row in sequences[:, width:].tolist():
            cut = next((t for t, token in enumerate(row) if token in eos), None)
            completion = Completion(row if cut is None else row[:cut], stopped_at_eos=cut is not None)
            completions.extend([completion] * (num_samples // draws))
    return completions


def completion_token_logps(
    model, prompts: Sequence[list[int]], completions: Sequence[list[int]], batch_size: int, pad_token_id: int
) -> list[list[float]]:
    """
    log pi(y_t | x, y_<t) of each completion token under `model` at temperature 1 (raw logits, no sampling warper).

    Sequences `prompt + completion` are right-padded into batches of `batch_size`; log-softmax runs in float32 whatever
    the model's dtype. Empty completions get `[]` and no forward pass.

    Returns:
        `list[list[float]]`: per completion, one log-prob per token.
    """
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    result: list[list[float]] = [[] for _ in completions]
    todo = [i for i, c in enumerate(completions) if c]
    for start in range(0, len(todo), batch_size):
        rows = todo[start : start + batch_size]
        sequences = [list(prompts[i]) + list(completions[i]) for i in rows]
        width = max(len(s) for s in sequences)
        input_ids = torch.tensor([s + [pad_token_id] * (width - len(s)) for s in sequences], device=model.device)
        attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=model.device)
        # Only positions from the earliest completion on are needed: with long prompts and a large vocabulary the
        # full (B, L, V) logits would dominate memory.
        first = min(len(prompts[i]) for i in rows) - 1
        kwargs = {"logits_to_keep": width - first} if keep_arg else {}
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
        offset = width - logits.shape[1]
        for b, i in enumerate(rows):
            begin = len(prompts[i]) - 1 - offset  # the position whose logits predict the first completion token
            targets = torch.tensor(completions[i], device=logits.device)
            row_logits = logits[b, begin : begin + len(targets)].float()
            logps = torch.log_softmax(row_logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            result[i] = logps.tolist()
        del logits
    return result


def _entropies(token_logps: list[list[float]]) -> list[float | None]:
    """Per-completion entropy estimate, `None` for an empty completion."""
    nonempty = [i for i, lp in enumerate(token_logps) if lp]
    entropies: list[float | None] = [None] * len(token_logps)
    if not nonempty:
        return entropies
    width = max(len(token_logps[i]) for i in nonempty)
    values = torch.zeros(len(nonempty), width, dtype=torch.float64)
    mask = torch.zeros(len(nonempty), width, dtype=torch.bool)
    for row, i in enumerate(nonempty):
        values[row, : len(token_logps[i])] = torch.tensor(token_logps[i], dtype=torch.float64)
        mask[row, : len(token_logps[i])] = True
    for i, h in zip(nonempty, per_token_entropy(values, mask).tolist()):
        entropies[i] = h
    return entropies


def _load_causal_lm(path: str, args: EvalArguments, device: torch.device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=args.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    return model.to(device).eval(), tokenizer


def _release(model) -> None:
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------------------------------------


ORDERS = ("model_first", "reference_first")


def _judge_order(judge: PairwiseJudge, prompt: str, answer_a: str, answer_b: str) -> dict[str, Any]:
    try:
        verdict = judge.judge(prompt, answer_a, answer_b)
    except JudgeError as error:
        return {"verdict": None, "raw": None, "attempts": error.attempts, "error": error.last_error}
    return {"verdict": verdict.verdict, "raw": verdict.raw, "attempts": verdict.attempts, "error": None}


def judge_comparisons(
    judge: PairwiseJudge, comparisons: Sequence[tuple[str, str, str]], num_workers: int = 1
) -> list[dict[str, Any]]:
    """
    Judge each `(prompt, completion, reference)` in both orders.

    Returns, per comparison: `{"judgements": {"model_first": ..., "reference_first": ...}, "score", "failed",
    "error", "attempts"}`. Each order holds `verdict` (P(position A is better)), `model_score` (the model's outcome in
    that order), `raw`, `attempts` and `error`. A comparison fails if either order failed (after the judge's retries):
    `score` is then `None` and `error` names the failed order(s).
    """
    judge.prefetch([(p, answer) for p, completion, reference in comparisons for answer in (completion, reference)])
    calls = []
    for prompt, completion, reference in comparisons:
        calls.append((prompt, completion, reference))  # model_first: the model's answer in position A
        calls.append((prompt, reference, completion))  # reference_first
    if num_workers > 1:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            outcomes = list(pool.map(lambda call: _judge_order(judge, *call), calls))
    else:
        outcomes = [_judge_order(judge, *call) for call in calls]

    results = []
    for k in range(len(comparisons)):
        orders = dict(zip(ORDERS, outcomes[2 * k : 2 * k + 2]))
        first, second = orders["model_first"], orders["reference_first"]
        first["model_score"] = first["verdict"]
        second["model_score"] = None if second["verdict"] is None else 1.0 - second["verdict"]
        score = comparison_score(first["verdict"], second["verdict"])
        errors = [f"{name}: {o['error']}" for name, o in orders.items() if o["error"] is not None]
        results.append(
            {
                "judgements": orders,
                "score": score,
                "failed": score is None,
                "error": "; ".join(errors) or None,
                "attempts": first["attempts"] + second["attempts"],
            }
        )
    return results


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------


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
        reference_model, reference_tokenizer = _load_causal_lm(args.reference_model_name_or_path, args, device)
        reference_ids = [encode_prompt(reference_tokenizer, p, args.apply_chat_template) for p in prompts]
        config = generation_config_for(
            reference_model, reference_tokenizer, args.max_new_tokens, temperature, args.top_p, args.generation_kwargs
        )
        set_seed(args.seed)
        generated = sample_completions(reference_model, reference_tokenizer, reference_ids, 1, config, args.batch_size)
        references = [reference_tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in generated]
        reference_info = {"model": args.reference_model_name_or_path, "temperature": temperature}
        _release(reference_model)

    logger.info("Sampling %d x %d completions from %s.", len(prompts), args.num_samples, args.model_name_or_path)
    model, tokenizer = _load_causal_lm(args.model_name_or_path, args, device)
    prompt_ids = [encode_prompt(tokenizer, p, args.apply_chat_template) for p in prompts]
    config = generation_config_for(
        model, tokenizer, args.max_new_tokens, args.temperature, args.top_p, args.generation_kwargs
    )
    set_seed(args.seed)
    completions = sample_completions(model, tokenizer, prompt_ids, args.num_samples, config, args.batch_size)
    owners = [i for i in range(len(prompts)) for _ in range(args.num_samples)]
    token_logps = completion_token_logps(
        model,
        [prompt_ids[i] for i in owners],
        [c.token_ids for c in completions],
        args.batch_size,
        config.pad_token_id,
    )
    entropies = _entropies(token_logps)
    _release(model)

    completion_texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in completions]
    if judge is None:
        judge = build_judge(args)
    logger.info("Judging %d comparisons in both orders.", len(completions))
    judged = judge_comparisons(
        judge,
        [(prompt_texts[i], text, references[i]) for i, text in zip(owners, completion_texts)],
        num_workers=args.judge_num_workers,
    )

    records = []
    for k, (i, completion, text, entropy, result) in enumerate(
        zip(owners, completions, completion_texts, entropies, judged)
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

    summary = summarize(records, args, judge.describe(), reference_info, time.time() - started)
    with (output_dir / "judgements.jsonl").open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (output_dir / "summary.md").write_text(summary_markdown(summary), "utf-8")
    return summary


def summarize(
    records: Sequence[dict[str, Any]],
    args: EvalArguments,
    judge_info: dict[str, Any],
    reference_info: dict[str, Any],
    elapsed_seconds: float,
) -> dict[str, Any]:
    """The run's summary from its `judgements.jsonl` records (see `docs/evaluation.md` for every field)."""
    import transformers

    from trl_spo import __version__

    scores = [r["score"] for r in records]
    rate = win_rate(scores)
    lc = length_controlled_win_rate(scores, [r["length_difference"] for r in records])
    entropy = useful_entropy([r["entropy"] for r in records], scores, threshold=PREFERENCE_THRESHOLD)
    num_empty = sum(r["empty"] for r in records)

    notes = []
    if rate.num_judged == 0:
        notes.append("Every comparison failed: no win rate, no useful entropy.")
    if rate.num_failed:
        notes.append(
            f"{rate.num_failed} of {len(records)} comparisons failed (no usable verdict in at least one order after "
            "the judge's retries). They are excluded from every rate, counted in num_failed, and listed with their "
            "error in judgements.jsonl."
        )
    if entropy.useful_entropy is None:
        notes.append(
            "No completion with an entropy was preferred to its reference (score > 0.5): useful entropy is "
            "undefined (null), not 0."
        )
    if num_empty:
        notes.append(
            f"{num_empty} completion(s) are empty (EOS first): judged as empty answers, without entropy (|y| = 0)."
        )
    if args.temperature != 1.0 or args.top_p != 1.0:
        notes.append(
            f"Sampled at temperature {args.temperature}, top_p {args.top_p}: the entropy figures are cross-entropies "
            "of that sampler under the policy at temperature 1, not the policy's entropy."
        )

    return {
        "num_prompts": len({r["prompt_index"] for r in records}),
        "num_samples_per_prompt": args.num_samples,
        "num_comparisons": len(records),
        "num_judged": rate.num_judged,
        "num_failed": rate.num_failed,
        "win_rate": rate.win_rate,
        "win_rate_stderr": rate.stderr,
        "lc_win_rate": lc.win_rate,
        "lc_fit": {
            **{k: v for k, v in asdict(lc).items() if k != "win_rate"},
            "length_unit": "characters",
            "feature": "tanh(length_difference / length_scale)",
        },
        "mean_entropy": entropy.mean_entropy,
        "num_entropy": entropy.num_entropy,
        "useful_entropy": entropy.useful_entropy,
        "num_preferred": entropy.num_preferred,
        "preference_threshold": PREFERENCE_THRESHOLD,
        "num_empty": num_empty,
        "num_truncated": sum(r["truncated"] for r in records),
        "notes": notes,
        "model": args.model_name_or_path,
        "reference": reference_info,
        "judge": judge_info,
        "dataset": {
            "name": args.dataset_name,
            "config": args.dataset_config,
            "split": args.dataset_split,
            "prompt_column": args.prompt_column,
            "max_prompts": args.max_prompts,
            "apply_chat_template": args.apply_chat_template,
        },
        "sampling": {
            "num_samples": args.num_samples,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "generation_kwargs": args.generation_kwargs,
            "batch_size": args.batch_size,
            "dtype": args.dtype,
        },
        "seed": args.seed,
        "versions": {"trl_spo": __version__, "torch": torch.__version__, "transformers": transformers.__version__},
        "elapsed_seconds": round(elapsed_seconds, 2),
    }


def _percent(value: float | None, stderr: float | None = None) -> str:
    if value is None:
        return "undefined"
    text = f"{100 * value:.2f} %"
    return text + (f" ± {100 * stderr:.2f}" if stderr is not None else "")


def _nats(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f} nats/token"


def summary_markdown(summary: dict[str, Any]) -> str:
    """`summary.md`: the headline numbers as a Markdown table, then the settings and the notes."""
    judge = summary["judge"]
    reference = summary["reference"]
    if "column" in reference:
        reference_name = f"column `{reference['column']}`"
    else:
        reference_name = f"model `{reference['model']}` (temperature {reference['temperature']})"
    shape = f"{summary['num_prompts']} prompts x {summary['num_samples_per_prompt']} samples"
    rows = [
        ("comparisons", f"{summary['num_comparisons']} ({shape})"),
        ("judged / failed", f"{summary['num_judged']} / {summary['num_failed']}"),
        ("win rate ± SE", _percent(summary["win_rate"], summary["win_rate_stderr"])),
        ("LC win rate", _percent(summary["lc_win_rate"])),
        ("mean entropy", f"{_nats(summary['mean_entropy'])} over {summary['num_entropy']} completions"),
        (
            "useful entropy",
            f"{_nats(summary['useful_entropy'])} over {summary['num_preferred']} preferred completions",
        ),
        ("empty / truncated completions", f"{summary['num_empty']} / {summary['num_truncated']}"),
        ("model", f"`{summary['model']}`"),
        ("reference", reference_name),
        ("judge", f"{judge.get('type')} `{judge.get('model')}`"),
        ("sampling", ", ".join(f"{k}={v}" for k, v in summary["sampling"].items() if k != "generation_kwargs")),
        ("seed", str(summary["seed"])),
    ]
    lines = ["# Evaluation summary", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if summary["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"
