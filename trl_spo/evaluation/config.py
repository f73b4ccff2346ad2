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

import json
import math
from dataclasses import dataclass, field
from typing import Any


JUDGE_TYPES = ("reward_model", "openai")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class EvalArguments:
    r"""
    Arguments of `trl-spo eval`: sample a policy, judge it against reference answers, report win rates and entropy.

    Parsed by [`~trl.TrlParser`], so every field is a command-line flag and `--config eval.yaml` works. See
    `docs/evaluation.md` for the metrics and the output files.

    Parameters:
        > Parameters that select the policy, the prompts and the reference answers

        model_name_or_path (`str`):
            The policy to evaluate: a local directory (or hub id) of a causal LM with its tokenizer.
        dataset_name (`str`):
            The prompt set: a local `.json` / `.jsonl` / `.csv` / `.parquet` file, a directory written by
            `Dataset.save_to_disk`, or a `datasets` hub name.
        dataset_config (`str` or `None`, *optional*):
            Configuration name of a hub dataset.
        dataset_split (`str`, *optional*, defaults to `"train"`):
            Split to read. Local files have a single split, `"train"`.
        prompt_column (`str`, *optional*, defaults to `"prompt"`):
            Column holding the prompts: strings, or conversations (lists of `{"role", "content"}` messages, rendered
            with the policy's chat template).
        reference_column (`str` or `None`, *optional*):
            Column holding the reference answers (strings, or conversations whose last message is the answer), e.g.
            `chosen`. Exactly one of `reference_column` and `reference_model_name_or_path` must be set.
        reference_model_name_or_path (`str` or `None`, *optional*):
            A causal LM that generates one reference answer per prompt (e.g. the SFT model, as in the paper's Table
            1), with the same sampling settings unless `reference_temperature` is set.
        reference_temperature (`float` or `None`, *optional*):
            Sampling temperature of the reference model; `0` is greedy decoding. `None`: the policy's `temperature`.
        max_prompts (`int` or `None`, *optional*):
            Evaluate only the first `max_prompts` prompts.
        apply_chat_template (`bool`, *optional*, defaults to `False`):
            Wrap string prompts in a user turn and render them with the policy's chat template (for instruct
            models). Conversational prompts always use the chat template.

        > Parameters that control sampling

        num_samples (`int`, *optional*, defaults to `1`):
            Completions sampled per prompt; each one is a comparison. Must be >= 1.
        max_new_tokens (`int`, *optional*, defaults to `512`):
            Maximum tokens per completion. A completion that reaches it without EOS is kept and flagged truncated.
        temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature; `0` is greedy decoding. It changes what is sampled, not the entropy estimator, which
            always scores the sampled tokens under the policy at temperature 1: only at `1.0` (and `top_p = 1`) is
            the estimate an entropy rather than a cross-entropy.
        top_p (`float`, *optional*, defaults to `1.0`):
            Nucleus sampling threshold, in (0, 1]. Top-k filtering is off unless set in `generation_kwargs`.
        seed (`int`, *optional*, defaults to `42`):
            Seed set before sampling (the samples also depend on `batch_size` and the hardware).
        batch_size (`int`, *optional*, defaults to `8`):
            Prompts per `generate` call, and sequences per log-prob forward pass.
        generation_kwargs (`dict` or `str` or `None`, *optional*):
            Extra `GenerationConfig` arguments (a JSON string on the command line); they override the fields above.
        dtype (`str`, *optional*, defaults to `"auto"`):
            Dtype to load the models in: `"auto"`, `"float32"`, `"bfloat16"` or `"float16"`. Log-probs are computed
            in float32 whatever the model's dtype.
        device (`str` or `None`, *optional*):
            Device of the models, e.g. `"cuda:0"`. `None`: CUDA when available, else CPU.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Allow custom model code when loading the models.

        > Parameters that control the judge

        judge (`str`, *optional*, defaults to `"reward_model"`):
            `"reward_model"` (a local sequence-classification model, `judge_model`) or `"openai"` (an
            OpenAI-compatible chat endpoint, `judge_url` + `judge_model`).
        judge_model (`str` or `None`, *optional*):
            Reward model path for `reward_model`; model name (e.g. `gpt-4-turbo`) for `openai`. Required.
        judge_url (`str` or `None`, *optional*):
            API root of the `openai` judge, e.g. `https://api.openai.com/v1` or `http://localhost:8000/v1`.
        judge_api_key_env (`str`, *optional*, defaults to `"OPENAI_API_KEY"`):
            Environment variable holding the `openai` judge's API key (never passed on the command line, never
            written to the outputs). Unset: no `Authorization` header.
        judge_timeout (`float`, *optional*, defaults to `60.0`):
            Seconds per HTTP request of the `openai` judge.
        judge_max_retries (`int`, *optional*, defaults to `3`):
            Retries of a failed `openai` judgement before it is recorded as failed.
        judge_retry_backoff_seconds (`float`, *optional*, defaults to `2.0`):
            Wait before retry k is `judge_retry_backoff_seconds * 2**(k - 1)`.
        judge_max_tokens (`int`, *optional*, defaults to `8`):
            Reply budget of the `openai` judge (it is asked for one letter).
        judge_system_prompt (`str` or `None`, *optional*):
            Replaces the `openai` judge's system message.
        judge_user_template (`str` or `None`, *optional*):
            Replaces the `openai` judge's user message; must contain `{instruction}`, `{answer_a}`, `{answer_b}`.
        judge_num_workers (`int`, *optional*, defaults to `1`):
            Judgements requested concurrently (threads); useful for an HTTP judge.
        judge_batch_size (`int`, *optional*, defaults to `8`):
            Texts per forward pass of the reward model judge.
        judge_use_chat_template (`bool` or `None`, *optional*):
            Whether the reward model scores `[user: prompt, assistant: answer]` through its chat template. `None`: if
            its tokenizer has one.

        > Parameters that control the output

        output_dir (`str`):
            Directory for `judgements.jsonl`, `summary.json` and `summary.md` (created; existing files replaced).
    """

    # Policy, prompts and references
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The policy to evaluate: a causal LM directory (or hub id). Required."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Prompt set: a local .json/.jsonl/.csv/.parquet file, a `save_to_disk` directory, or a hub "
            "dataset name. Required."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a hub dataset."})
    dataset_split: str = field(
        default="train", metadata={"help": "Split to read. Local files have a single split, 'train'."}
    )
    prompt_column: str = field(
        default="prompt",
        metadata={"help": "Column of prompts: strings, or conversations rendered with the chat template."},
    )
    reference_column: str | None = field(
        default=None,
        metadata={
            "help": "Column of reference answers (e.g. 'chosen'). Exactly one of reference_column and "
            "reference_model_name_or_path must be set."
        },
    )
    reference_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Causal LM that generates one reference answer per prompt (e.g. the SFT model)."},
    )
    reference_temperature: float | None = field(
        default=None,
        metadata={"help": "Sampling temperature of the reference model (0 = greedy); default: `temperature`."},
    )
    max_prompts: int | None = field(default=None, metadata={"help": "Evaluate only the first max_prompts prompts."})
    apply_chat_template: bool = field(
        default=False,
        metadata={"help": "Render string prompts as a user turn with the policy's chat template (instruct models)."},
    )

    # Sampling
    num_samples: int = field(default=1, metadata={"help": "Completions sampled per prompt. Must be >= 1."})
    max_new_tokens: int = field(
        default=512, metadata={"help": "Maximum tokens per completion; one that hits it is flagged truncated."}
    )
    temperature: float = field(
        default=1.0,
        metadata={
            "help": "Sampling temperature (0 = greedy). The entropy estimator always uses temperature 1; only 1.0 "
            "with top_p = 1 makes it an entropy rather than a cross-entropy."
        },
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold, in (0, 1]."})
    seed: int = field(default=42, metadata={"help": "Seed set before sampling."})
    batch_size: int = field(
        default=8, metadata={"help": "Prompts per generate call and sequences per log-prob forward pass."}
    )
    generation_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Extra GenerationConfig arguments (JSON on the command line); override the fields above."},
    )
    dtype: str = field(default="auto", metadata={"help": "Dtype to load the models in.", "choices": list(DTYPES)})
    device: str | None = field(
        default=None, metadata={"help": "Device of the models (e.g. 'cuda:0'); default: CUDA if available, else CPU."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code when loading models."})

    # Judge
    judge: str = field(
        default="reward_model",
        metadata={"help": f"Judge type, one of {list(JUDGE_TYPES)}."},
    )
    judge_model: str | None = field(
        default=None,
        metadata={"help": "Reward model path (judge=reward_model) or chat model name (judge=openai). Required."},
    )
    judge_url: str | None = field(
        default=None, metadata={"help": "API root of the openai judge, e.g. http://localhost:8000/v1."}
    )
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the openai judge's API key (never written to the outputs)."},
    )
    judge_timeout: float = field(default=60.0, metadata={"help": "Seconds per HTTP request of the openai judge."})
    judge_max_retries: int = field(
        default=3, metadata={"help": "Retries of a failed openai judgement before it is recorded as failed."}
    )
    judge_retry_backoff_seconds: float = field(
        default=2.0, metadata={"help": "Wait before retry k is judge_retry_backoff_seconds * 2**(k - 1)."}
    )
    judge_max_tokens: int = field(default=8, metadata={"help": "Reply budget of the openai judge (one letter)."})
    judge_system_prompt: str | None = field(
        default=None, metadata={"help": "Replaces the openai judge's system message."}
    )
    judge_user_template: str | None = field(
        default=None,
        metadata={"help": "Replaces the openai judge's user message; needs {instruction}, {answer_a}, {answer_b}."},
    )
    judge_num_workers: int = field(
        default=1, metadata={"help": "Judgements requested concurrently (threads); useful for an HTTP judge."}
    )
    judge_batch_size: int = field(default=8, metadata={"help": "Texts per forward pass of the reward model judge."})
    judge_use_chat_template: bool | None = field(
        default=None,
        metadata={
            "help": "Reward model scores [user: prompt, assistant: answer] through its chat template; default: if its "
            "tokenizer has one."
        },
    )

    # Output
    output_dir: str | None = field(
        default=None, metadata={"help": "Directory for judgements.jsonl, summary.json and summary.md. Required."}
    )

    def __post_init__(self):
        if isinstance(self.generation_kwargs, str):
            try:
                self.generation_kwargs = json.loads(self.generation_kwargs)
            except ValueError as error:
                raise ValueError(
                    f"`generation_kwargs` must be a JSON object, found {self.generation_kwargs!r}: {error}."
                ) from error
        if self.generation_kwargs is not None and not isinstance(self.generation_kwargs, dict):
            raise ValueError(f"`generation_kwargs` must be a dict, found {type(self.generation_kwargs).__name__}.")

        for name in ("model_name_or_path", "dataset_name", "output_dir", "judge_model"):
            if not getattr(self, name):
                raise ValueError(f"`{name}` is required, found {getattr(self, name)!r}.")
        if self.judge not in JUDGE_TYPES:
            raise ValueError(f"`judge` must be one of {list(JUDGE_TYPES)}, found {self.judge!r}.")
        if self.judge == "openai" and not self.judge_url:
            raise ValueError(
                "`judge_url` is required with judge='openai' (e.g. https://api.openai.com/v1), found None."
            )
        if (self.reference_column is None) == (self.reference_model_name_or_path is None):
            raise ValueError(
                "Exactly one of `reference_column` and `reference_model_name_or_path` must be set, found "
                f"reference_column={self.reference_column!r}, "
                f"reference_model_name_or_path={self.reference_model_name_or_path!r}."
            )

        for name, minimum in (
            ("num_samples", 1),
            ("max_new_tokens", 1),
            ("batch_size", 1),
            ("judge_max_retries", 0),
            ("judge_max_tokens", 1),
            ("judge_num_workers", 1),
            ("judge_batch_size", 1),
        ):
            if getattr(self, name) < minimum:
                raise ValueError(f"`{name}` must be an integer >= {minimum}, found {getattr(self, name)}.")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"`max_prompts` must be >= 1 (or None for all prompts), found {self.max_prompts}.")
        for name in ("temperature", "reference_temperature", "judge_retry_backoff_seconds"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, found {value}.")
        if not (0 < self.top_p <= 1):
            raise ValueError(f"`top_p` must be in (0, 1], found {self.top_p}.")
        if not (self.judge_timeout > 0):
            raise ValueError(f"`judge_timeout` must be > 0 seconds, found {self.judge_timeout}.")
