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
Pairwise judges: which of two answers to a prompt is better.

A judge returns a [`Verdict`]: the probability (or 0/1 indicator) that the answer in position A is better, with the
judge's raw output for the record. The retry policy lives in [`PairwiseJudge.judge`] and holds for every judge: an
attempt that fails in a retryable way ([`JudgeAttemptError`]) is retried up to `max_retries` times, then the call
raises [`JudgeError`] with the last error and the number of attempts. The runner records that comparison as failed;
it is never dropped and never counted as a win or a loss.

- [`RewardModelJudge`]: a local sequence-classification reward model, verdict = sigmoid(r_a - r_b).
- [`OpenAIChatJudge`]: any OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM, ...), asked for "A" or "B".
"""

import http.client
import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .config import EvalArguments
from .metrics import comparison_score


__all__ = [
    "JUDGES",
    "DEFAULT_JUDGE_SYSTEM_PROMPT",
    "DEFAULT_JUDGE_USER_TEMPLATE",
    "JudgeAttemptError",
    "JudgeError",
    "OpenAIChatJudge",
    "PairwiseJudge",
    "RewardModelJudge",
    "Verdict",
    "build_judge",
    "judge_comparisons",
    "parse_ab_reply",
]

logger = logging.getLogger(__name__)


class JudgeAttemptError(Exception):
    """One judging attempt failed in a way that a retry may fix (network, server error, unusable reply)."""


class JudgeError(RuntimeError):
    """
    A judgement failed after every allowed attempt.

    Attributes:
        last_error (`str`): the message of the last failed attempt.
        attempts (`int`): how many attempts were made (1 + `max_retries`).
    """

    def __init__(self, last_error: str, attempts: int):
        super().__init__(f"judgement failed after {attempts} attempt(s): {last_error}")
        self.last_error = last_error
        self.attempts = attempts


@dataclass
class Verdict:
    """
    One pairwise judgement.

    Attributes:
        verdict (`float`): probability (or 0/1 indicator, 0.5 for a tie) that the answer in position A is better.
        raw (`Any`): what the judge produced (a reply text, a pair of rewards), JSON-serialisable.
        attempts (`int`): attempts it took, failed ones included.
    """

    verdict: float
    raw: Any
    attempts: int


class PairwiseJudge(ABC):
    """
    Base class of the judges: subclasses implement `_judge_once`; `judge` adds the bounded retries.

    Attributes:
        max_retries (`int`): retries after a failed attempt (so at most `1 + max_retries` attempts).
        retry_backoff_seconds (`float`): wait before retry k (k = 1, 2, ...) is `retry_backoff_seconds * 2**(k - 1)`.
    """

    max_retries: int = 0
    retry_backoff_seconds: float = 0.0

    def judge(self, prompt: str, answer_a: str, answer_b: str) -> Verdict:
        """
        Judge `answer_a` (position A) against `answer_b` (position B) for `prompt`.

        Returns:
            [`Verdict`] with `verdict` in [0, 1] = P(A is better).

        Raises:
            [`JudgeError`]: after `1 + max_retries` failed attempts. Only [`JudgeAttemptError`] is retried: any other
            exception is a bug or a misconfiguration and propagates at once.
        """
        attempts = 0
        while True:
            attempts += 1
            try:
                verdict, raw = self._judge_once(prompt, answer_a, answer_b)
                verdict = float(verdict)
                if not (0.0 <= verdict <= 1.0):
                    raise JudgeAttemptError(f"verdict must be a probability in [0, 1], found {verdict}")
                return Verdict(verdict=verdict, raw=raw, attempts=attempts)
            except JudgeAttemptError as error:
                if attempts > self.max_retries:
                    raise JudgeError(str(error), attempts) from error
                delay = self.retry_backoff_seconds * 2 ** (attempts - 1)
                logger.warning("Judge attempt %d failed (%s); retrying in %.1f s.", attempts, error, delay)
                if delay > 0:
                    time.sleep(delay)

    @abstractmethod
    def _judge_once(self, prompt: str, answer_a: str, answer_b: str) -> tuple[float, Any]:
        """One attempt: `(P(A is better), raw output)`; raise [`JudgeAttemptError`] for a retryable failure."""

    def prefetch(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Hint: every `(prompt, answer)` that will be judged, so a judge can batch its work. Default: nothing."""
        return None

    def describe(self) -> dict[str, Any]:
        """What identifies this judge in a results file (never a secret such as an API key)."""
        return {"type": type(self).__name__, "max_retries": self.max_retries}


def _sigmoid(x: float) -> float:
    # Branches keep exp() from overflowing for large |x|.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


# ---------------------------------------------------------------------------------------------------------------------
# Reward model
# ---------------------------------------------------------------------------------------------------------------------


class RewardModelJudge(PairwiseJudge):
    """
    Judge with a local reward model: `verdict = sigmoid(r(x, y_a) - r(x, y_b))` (the Bradley-Terry probability).

    The reward r(x, y) is the single logit of an `AutoModelForSequenceClassification` (`num_labels=1`) on the prompt
    and answer, tokenised by the reward model's own tokenizer. Rewards are cached per `(prompt, answer)`, so judging a
    pair in both orders scores each text once; [`prefetch`] scores all texts in batches up front.

    Args:
        model_name_or_path (`str`): local directory (or hub id) of the reward model.
        batch_size (`int`, *optional*, defaults to `8`): texts per forward pass.
        use_chat_template (`bool` or `None`, *optional*): render `[user: prompt, assistant: answer]` with the reward
            tokenizer's chat template (what chat reward models are trained on). `None`: if the tokenizer has one.
            `False`: score the plain concatenation `prompt + answer`.
        device (`str` or `None`, *optional*): defaults to CUDA when available, else CPU.
        dtype (`str`, *optional*, defaults to `"auto"`): dtype to load the model in.
        max_length (`int` or `None`, *optional*): truncate scored texts to this many tokens (from the right). `None`:
            no truncation.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `from_pretrained`.

    A non-finite reward is a failed judgement (not retried: the model is deterministic).

    Example:
    ```python
    >>> judge = RewardModelJudge("path/to/reward_model")
    >>> judge.judge("Name a planet:", " Saturn.", " Monday.").verdict  # P(" Saturn." is better)
    ```
    """

    def __init__(
        self,
        model_name_or_path: str,
        batch_size: int = 8,
        use_chat_template: bool | None = None,
        device: str | None = None,
        dtype: str = "auto",
        max_length: int | None = None,
        trust_remote_code: bool = False,
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, found {batch_size}.")
        self.model_name_or_path = model_name_or_path
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, dtype=dtype, trust_remote_code=trust_remote_code
        )
        if self.model.config.num_labels != 1:
            raise ValueError(
                f"A reward model judge needs a sequence-classification model with num_labels=1 (one scalar reward), "
                f"found num_labels={self.model.config.num_labels} in {model_name_or_path}."
            )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # The classifier reads the logit at the last non-pad token, which it finds through config.pad_token_id.
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()
        if use_chat_template is None:
            use_chat_template = self.tokenizer.chat_template is not None
        self.use_chat_template = use_chat_template
        self._rewards: dict[tuple[str, str], float] = {}

    def text(self, prompt: str, answer: str) -> str:
        """The exact text the reward model scores for `(prompt, answer)`."""
        if self.use_chat_template:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return prompt + answer

    def prefetch(self, pairs: Iterable[tuple[str, str]]) -> None:
        import torch

        todo = list(dict.fromkeys(pair for pair in pairs if pair not in self._rewards))
        # Similar lengths in a batch waste less compute on padding.
        texts = [self.text(prompt, answer) for prompt, answer in todo]
        order = sorted(range(len(todo)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in chunk],
                padding=True,
                truncation=self.max_length is not None,
                max_length=self.max_length,
                # A chat template already wrote its special tokens (BOS included) into the text.
                add_special_tokens=not self.use_chat_template,
                return_tensors="pt",
            ).to(self.device)
            with torch.no_grad():
                rewards = self.model(**batch).logits[:, 0].float().tolist()
            for i, reward in zip(chunk, rewards, strict=False):
                self._rewards[todo[i]] = reward

    def reward(self, prompt: str, answer: str) -> float:
        """r(x, y), from the cache or scored now."""
        if (prompt, answer) not in self._rewards:
            self.prefetch([(prompt, answer)])
        return self._rewards[(prompt, answer)]

    def _judge_once(self, prompt: str, answer_a: str, answer_b: str) -> tuple[float, Any]:
        reward_a, reward_b = self.reward(prompt, answer_a), self.reward(prompt, answer_b)
        if not (math.isfinite(reward_a) and math.isfinite(reward_b)):
            raise JudgeAttemptError(f"non-finite reward: r_a = {reward_a}, r_b = {reward_b}")
        return _sigmoid(reward_a - reward_b), {"reward_a": reward_a, "reward_b": reward_b}

    def describe(self) -> dict[str, Any]:
        return {
            "type": "reward_model",
            "model": self.model_name_or_path,
            "use_chat_template": self.use_chat_template,
            "max_length": self.max_length,
            "verdict": "sigmoid(r_a - r_b)",
        }


# ---------------------------------------------------------------------------------------------------------------------
# OpenAI-compatible chat endpoint
# ---------------------------------------------------------------------------------------------------------------------

DEFAULT_JUDGE_SYSTEM_PROMPT = (
    "You are an impartial judge. You compare two answers to the same instruction and reply with a single letter."
)

DEFAULT_JUDGE_USER_TEMPLATE = """\
Which answer follows the instruction better? Judge helpfulness, accuracy and clarity. Do not let the order in which \
the answers appear or their length decide.

## Instruction
{instruction}

## Answer A
{answer_a}

## Answer B
{answer_b}

Reply with exactly one letter: "A" if Answer A is better, "B" if Answer B is better."""

# What may surround the letter in a reply that still clearly means "A" or "B": whitespace, markdown emphasis, quotes,
# brackets, a final full stop, an "Answer" prefix. Anything else ("A and B", "Neither") is not an answer.
_AB_REPLY = re.compile(r"""^[\s*_"'`]*(?:answer\s*)?[(\[]?\s*([AB])\s*[)\]]?[\s*_"'`.]*$""", re.IGNORECASE)


def parse_ab_reply(content: str) -> str | None:
    """`"A"` or `"B"` if the reply clearly names one answer (`"A"`, `" b."`, `"**B**"`, `"Answer A"`), else `None`."""
    match = _AB_REPLY.match(content)
    return match.group(1).upper() if match else None


class OpenAIChatJudge(PairwiseJudge):
    """
    Judge with a chat model behind an OpenAI-compatible API: POST `{base_url}/chat/completions`, expect "A" or "B".

    The request is `{"model": model, "messages": [system, user], "temperature": 0, "max_tokens": max_tokens}`, where
    the user message is `user_template` with `{instruction}`, `{answer_a}` and `{answer_b}` filled in (defaults:
    [`DEFAULT_JUDGE_SYSTEM_PROMPT`], [`DEFAULT_JUDGE_USER_TEMPLATE`]). Verdict: 1.0 for "A", 0.0 for "B". Only the
    standard library is used (`urllib.request`).

    Retried, then a [`JudgeError`]: HTTP errors (any status), timeouts, connection errors, a body that is not JSON or
    has no `choices[0].message.content`, and a reply that is not clearly "A" or "B" ([`parse_ab_reply`]).

    Args:
        base_url (`str`): API root, e.g. `https://api.openai.com/v1` or `http://localhost:8000/v1` (vLLM).
        model (`str`): model name sent in the request, e.g. `gpt-4-turbo`.
        api_key (`str` or `None`, *optional*): bearer token; `None` reads the environment variable `OPENAI_API_KEY`;
            if that is unset too, no `Authorization` header is sent (local servers).
        timeout (`float`, *optional*, defaults to `60.0`): seconds per HTTP request.
        max_retries (`int`, *optional*, defaults to `3`): retries per judgement after a failed attempt.
        retry_backoff_seconds (`float`, *optional*, defaults to `2.0`): base of the exponential wait between attempts.
        max_tokens (`int`, *optional*, defaults to `8`): reply budget; one token is asked for, the slack lets "A." or
            "**A**" through.
        system_prompt (`str` or `None`, *optional*): replaces the default system message.
        user_template (`str` or `None`, *optional*): replaces the default user message; must contain `{instruction}`,
            `{answer_a}` and `{answer_b}` (literal braces doubled, as in `str.format`).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff_seconds: float = 2.0,
        max_tokens: int = 8,
        system_prompt: str | None = None,
        user_template: str | None = None,
    ):
        if not (timeout > 0):
            raise ValueError(f"`timeout` must be > 0 seconds, found {timeout}.")
        if max_retries < 0:
            raise ValueError(f"`max_retries` must be >= 0, found {max_retries}.")
        if retry_backoff_seconds < 0:
            raise ValueError(f"`retry_backoff_seconds` must be >= 0, found {retry_backoff_seconds}.")
        if max_tokens < 1:
            raise ValueError(f"`max_tokens` must be >= 1, found {max_tokens}.")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff_seconds = retry_backoff_seconds
        self.max_tokens = max_tokens
        self.system_prompt = DEFAULT_JUDGE_SYSTEM_PROMPT if system_prompt is None else system_prompt
        self.user_template = DEFAULT_JUDGE_USER_TEMPLATE if user_template is None else user_template
        try:
            self.user_template.format(instruction="", answer_a="", answer_b="")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                "`user_template` must be a str.format template with the fields {instruction}, {answer_a} and "
                f"{{answer_b}} only (double literal braces), found an error: {error!r}."
            ) from error
        missing = [f for f in ("{instruction}", "{answer_a}", "{answer_b}") if f not in self.user_template]
        if missing:
            raise ValueError(f"`user_template` must contain {missing}; the judge could not see what it judges.")

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def request_body(self, prompt: str, answer_a: str, answer_b: str) -> dict[str, Any]:
        """The JSON body sent for one judgement."""
        user = self.user_template.format(instruction=prompt, answer_a=answer_a, answer_b=answer_b)
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }

    def _judge_once(self, prompt: str, answer_a: str, answer_b: str) -> tuple[float, Any]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            self.url,
            data=json.dumps(self.request_body(prompt, answer_a, answer_b)).encode("utf-8"),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read()[:300].decode("utf-8", errors="replace")
            raise JudgeAttemptError(f"HTTP {error.code} from {self.url}: {detail}") from error
        except urllib.error.URLError as error:
            raise JudgeAttemptError(f"cannot reach {self.url}: {error.reason}") from error
        except TimeoutError as error:
            raise JudgeAttemptError(f"no reply from {self.url} within {self.timeout} s") from error
        except (OSError, http.client.HTTPException) as error:
            raise JudgeAttemptError(f"connection error with {self.url}: {error!r}") from error

        try:
            content = json.loads(payload)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            snippet = payload[:300].decode("utf-8", errors="replace")
            raise JudgeAttemptError(f"malformed reply (no choices[0].message.content): {snippet!r}") from error
        if not isinstance(content, str):
            raise JudgeAttemptError(f"malformed reply: message content is {content!r}, not text")
        letter = parse_ab_reply(content)
        if letter is None:
            raise JudgeAttemptError(f"reply is neither 'A' nor 'B': {content[:200]!r}")
        return (1.0 if letter == "A" else 0.0), content

    def describe(self) -> dict[str, Any]:
        return {
            "type": "openai",
            "base_url": self.base_url,
            "model": self.model,
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "retry_backoff_seconds": self.retry_backoff_seconds,
            "system_prompt": self.system_prompt,
            "user_template": self.user_template,
        }


# ---------------------------------------------------------------------------------------------------------------------
# The judge factory and the two-order comparison
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
        orders = dict(zip(ORDERS, outcomes[2 * k : 2 * k + 2], strict=False))
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
