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
A preference task whose answer is known exactly: the expert-distribution benchmark's world.

One prompt, a finite response set `Y` (every string of `length` letters over `alphabet`, 64 by default), a reward
`r(y)` known in closed form, and pairs labelled by the Bradley-Terry model on `r`. Theorem 1 says SPO's preference loss
is minimised by `Softmax(r / alpha)` over `Y`; a tiny causal LM trained on these pairs can be enumerated over `Y` exactly,
so the distance to that target is a measurement, not an estimate.

The reference policy is a tiny LM fitted (by exact cross-entropy over `Y`) to a distribution that disagrees with the
expert: it prefers the letter the reward likes least. That makes "moved towards pi_ref" visible when the global KL is
on, and it teaches the model to stop (EOS) after `length` letters, so online samples look like dataset completions.

Everything here is small and pure except `build_reference_model`, which trains for a second or two on a CPU.
"""

import itertools
import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F


PROMPT = "choose"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"


@dataclass(frozen=True)
class ExpertTask:
    """
    The known-answer task.

    Args:
        alphabet (`str`):
            Letters a response is made of; each letter is one token.
        length (`int`):
            Letters per response; `Y` has `len(alphabet) ** length` members.
        letter_rewards (`tuple[float, ...]`):
            Reward of each letter of `alphabet`, summed over the response.
        reference_letter_logit (`float`):
            Logit per occurrence of the last letter of `alphabet` (the one the reward likes least) in the reference
            distribution `pi_ref(y) ∝ exp(reference_letter_logit * count(y, alphabet[-1]))`.
    """

    alphabet: str = "abcd"
    length: int = 3
    letter_rewards: tuple[float, ...] = (1.0, 0.5, 0.0, -0.5)
    reference_letter_logit: float = 1.0

    def __post_init__(self):
        if len(self.letter_rewards) != len(self.alphabet):
            raise ValueError(
                f"letter_rewards must have one value per letter of alphabet={self.alphabet!r} "
                f"({len(self.alphabet)}), got {len(self.letter_rewards)}"
            )
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")

    @property
    def responses(self) -> list[str]:
        """`Y` as completion texts (`" a b c"`), in lexicographic order; the order every vector over `Y` uses."""
        return [" " + " ".join(letters) for letters in itertools.product(self.alphabet, repeat=self.length)]

    def reward(self, response: str) -> float:
        return sum(self.letter_rewards[self.alphabet.index(letter)] for letter in response.split())

    def rewards(self) -> torch.Tensor:
        """`r(y)` for every `y` in `Y`, float64."""
        return torch.tensor([self.reward(y) for y in self.responses], dtype=torch.float64)

    def target(self, alpha: float) -> torch.Tensor:
        """SPO's fixed point over `Y` (Theorem 1): `Softmax(r / alpha)`."""
        if alpha <= 0:
            raise ValueError(f"the target Softmax(r / alpha) needs alpha > 0, got {alpha}")
        return torch.softmax(self.rewards() / alpha, dim=0)

    def reference_distribution(self) -> torch.Tensor:
        """The distribution the reference LM is fitted to, over `Y`, float64."""
        disliked = self.alphabet[-1]
        logits = torch.tensor([self.reference_letter_logit * y.split().count(disliked) for y in self.responses])
        return torch.softmax(logits.double(), dim=0)

    def preference_pairs(self, num_pairs: int, seed: int) -> list[dict[str, str]]:
        """
        Pairs `(y1, y2)` drawn uniformly among distinct members of `Y`, the chosen one drawn from Bradley-Terry:
        `P(y1 preferred) = sigmoid(r(y1) - r(y2))`. Rows are TRL's standard preference format.
        """
        rng = random.Random(seed)
        responses = self.responses
        rows = []
        for _ in range(num_pairs):
            first, second = rng.sample(responses, 2)
            p_first = 1.0 / (1.0 + math.exp(self.reward(second) - self.reward(first)))
            chosen, rejected = (first, second) if rng.random() < p_first else (second, first)
            rows.append({"prompt": PROMPT, "chosen": chosen, "rejected": rejected})
        return rows


# Distances between distributions over Y: float64 vectors that sum to one.


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """`TV(p, q) = (1/2) sum_y |p(y) - q(y)|`, in [0, 1]."""
    return 0.5 * (p - q).abs().sum().item()


def entropy(p: torch.Tensor) -> float:
    """`H(p) = -sum_y p(y) log p(y)` in nats, with `0 log 0 = 0`."""
    return -torch.special.xlogy(p, p).sum().item()


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """`KL(p || q) = sum_y p(y) (log p(y) - log q(y))` in nats; infinite if `p` puts mass where `q` has none."""
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum().item()


# The tiny language model the task is played by.


def build_tokenizer():
    """A word-level tokenizer: the prompt word, one token per letter, EOS, PAD and UNK (unknown input is visible)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD_TOKEN: 0, EOS_TOKEN: 1, UNK_TOKEN: 2, PROMPT: 3}
    for letter in ExpertTask.alphabet:
        vocab.setdefault(letter, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, unk_token=UNK_TOKEN
    )


def response_token_ids(tokenizer, task: ExpertTask) -> torch.Tensor:
    """`[|Y|, length + 1]`: each response's letters followed by EOS, the completion the trainers score."""
    ids = [tokenizer(y, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for y in task.responses]
    if any(len(row) != task.length + 1 for row in ids) or tokenizer.unk_token_id in sum(ids, []):
        raise ValueError(f"the tokenizer does not map the alphabet {task.alphabet!r} to one token per letter")
    return torch.tensor(ids)


def response_log_probs(model, tokenizer, task: ExpertTask) -> torch.Tensor:
    """
    `log pi(y + EOS | prompt)` for every `y` in `Y` (float64, `[|Y|]`), by one exact forward pass over all of `Y`.

    EOS is part of the sequence, as in the trainers' completions: a model that would go on after `y` does not get
    credit for `y`.
    """
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    completions = response_token_ids(tokenizer, task).to(model.device)
    prompts = torch.tensor(prompt_ids, device=model.device).expand(len(completions), -1)
    input_ids = torch.cat([prompts, completions], dim=1)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits[:, len(prompt_ids) - 1 : -1].double()
    model.train(was_training)
    return logits.log_softmax(-1).gather(-1, completions.unsqueeze(-1)).squeeze(-1).sum(-1).cpu()


def distribution_over_responses(model, tokenizer, task: ExpertTask) -> tuple[torch.Tensor, float]:
    """`(pi(. | prompt, Y), pi(Y | prompt))`: the policy conditioned on answering within `Y`, and its mass on `Y`."""
    log_probs = response_log_probs(model, tokenizer, task)
    return torch.softmax(log_probs, dim=0), log_probs.logsumexp(0).exp().item()


def build_reference_model(tokenizer, task: ExpertTask, seed: int, steps: int = 300, learning_rate: float = 3e-3):
    """
    A tiny Qwen2 LM fitted to `task.reference_distribution()` by minimising the exact cross-entropy
    `-sum_y q(y) log pi(y + EOS | prompt)` over `Y` (full batch, no sampling noise).
    """
    from trl_spo.tiny_models import tiny_qwen2

    model = tiny_qwen2(
        tokenizer,
        hidden_size=64,
        intermediate_size=128,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        seed=seed,
    )
    target = task.reference_distribution().float()
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    completions = response_token_ids(tokenizer, task)
    input_ids = torch.cat([torch.tensor(prompt_ids).expand(len(completions), -1), completions], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        logits = model(input_ids=input_ids).logits[:, len(prompt_ids) - 1 : -1]
        log_probs = F.log_softmax(logits, -1).gather(-1, completions.unsqueeze(-1)).squeeze(-1).sum(-1)
        loss = -(target * log_probs).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
