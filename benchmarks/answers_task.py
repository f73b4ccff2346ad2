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
Short answers with a known reward: the world of `python -m benchmarks.answers`, on a real chat model.

Every prompt asks for one member of a category ("Name a colour."), whose answer set is finite and short (six one-word
answers). Each answer has a known reward, set by its position in the category's list (`REWARD_LADDER`, best first);
the order is deliberately arbitrary, so what the model prefers before training says nothing about it. Preference pairs
are labelled by the Bradley-Terry model on that reward, rankings by Plackett-Luce. So SPO's fixed point over each
prompt's answers is known exactly: `Softmax(r / alpha)` (Theorems 1 and 4), and DPO's is the argmax.

A policy is measured exactly, not by sampling: for every prompt, `pi(y + EOS | x)` of each answer of the set, by one
teacher-forced forward pass (`answer_log_probs`). From those: the mass `pi(Y | x)` on the answer set, the policy
conditioned on the set, its total variation to the target and its entropy (`distribution_summary`).

Prompts come in three splits. `train`: the training categories asked with the training templates (the pairs, rankings
and the SFT data use these only). `heldout_template`: the same categories asked another way. `heldout_category`:
categories never trained on, every template; their reward order cannot be inferred from the training categories, so
there the distance to the target measures nothing learnable, while the entropy and the top answer's probability show
whether a method sharpens answers it was never trained on.

Everything here is pure Python and torch; the model is only touched by `answer_log_probs`.
"""

import math
import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


# Reward of the answer at each position of a category's list, best first: Softmax(r) puts 0.41 on the best answer
# and 0.03 on the worst (entropy 1.52 nats against log 6 = 1.79).
REWARD_LADDER = (1.5, 1.0, 0.5, 0.0, -0.5, -1.0)

# A short system message of our own: SmolLM2's template otherwise inserts its default one (about 20 more tokens in
# every sequence, which roughly doubles the cost of a step at this length).
SYSTEM_PROMPT = "Answer with one word."

SPLITS = ("train", "heldout_template", "heldout_category")


@dataclass(frozen=True)
class Category:
    """
    A question with a finite set of correct answers.

    Args:
        noun (`str`): what the templates ask for ("colour").
        answers (`tuple[str, ...]`): the correct answers, best first (the reward follows this order).
    """

    noun: str
    answers: tuple[str, ...]


TRAIN_CATEGORIES = (
    Category("colour", ("Purple", "Green", "Orange", "Blue", "Yellow", "Red")),
    Category("fruit", ("Mango", "Cherry", "Banana", "Peach", "Apple", "Grape")),
    Category("planet", ("Saturn", "Venus", "Neptune", "Mars", "Mercury", "Jupiter")),
    Category("farm animal", ("Goat", "Horse", "Pig", "Sheep", "Chicken", "Cow")),
    Category("metal", ("Copper", "Zinc", "Silver", "Iron", "Gold", "Tin")),
    Category("musical instrument", ("Violin", "Drum", "Flute", "Piano", "Trumpet", "Guitar")),
)
HELDOUT_CATEGORIES = (
    Category("vegetable", ("Cabbage", "Onion", "Pepper", "Carrot", "Tomato", "Potato")),
    Category("sport", ("Tennis", "Hockey", "Golf", "Soccer", "Baseball", "Basketball")),
)
TRAIN_TEMPLATES = ("Name a {noun}.", "Give me one {noun}.", "Tell me a {noun}, just one.")
HELDOUT_TEMPLATES = ("Which {noun} comes to mind first?",)

# A second, disjoint set of categories and templates: whether a statement about mass, collapse or the frontier holds
# beyond one choice of words. Orders again arbitrary, best first.
SECOND_TRAIN_CATEGORIES = (
    Category("tree", ("Willow", "Cedar", "Oak", "Birch", "Pine", "Maple")),
    Category("flower", ("Orchid", "Daisy", "Tulip", "Rose", "Lily", "Sunflower")),
    Category("bird", ("Parrot", "Owl", "Crow", "Eagle", "Robin", "Sparrow")),
    Category("country", ("Canada", "Egypt", "Japan", "India", "France", "Brazil")),
    Category("gemstone", ("Opal", "Ruby", "Pearl", "Diamond", "Sapphire", "Emerald")),
    Category("car brand", ("Honda", "Audi", "Tesla", "Ford", "Toyota", "BMW")),
)
SECOND_HELDOUT_CATEGORIES = (
    Category("drink", ("Milk", "Juice", "Tea", "Water", "Coffee", "Soda")),
    Category("shape", ("Oval", "Triangle", "Hexagon", "Square", "Circle", "Rectangle")),
)
SECOND_TRAIN_TEMPLATES = ("What is one {noun}?", "Say a {noun}.", "Pick any {noun}.")
SECOND_HELDOUT_TEMPLATES = ("Can you think of a {noun}?",)


@dataclass(frozen=True)
class PromptCase:
    """
    One prompt of the task: a category asked with one template.

    Args:
        category (`Category`): what is asked for.
        template (`str`): the question, with `{noun}`.
        split (`str`): one of `SPLITS`.
    """

    category: Category
    template: str
    split: str

    @property
    def question(self) -> str:
        return self.template.format(noun=self.category.noun)


@dataclass(frozen=True)
class AnswersTask:
    """
    The categories, templates and reward of the benchmark; the defaults are the SmolLM2 run.

    Args:
        train_categories (`tuple[Category, ...]`): categories of the training data (and of `heldout_template`).
        heldout_categories (`tuple[Category, ...]`): categories evaluated only.
        train_templates (`tuple[str, ...]`): templates of the training data.
        heldout_templates (`tuple[str, ...]`): templates evaluated only.
        reward_ladder (`tuple[float, ...]`): reward by position in a category's list; one per answer.
        system_prompt (`str`): the system message of every prompt.
    """

    train_categories: tuple[Category, ...] = TRAIN_CATEGORIES
    heldout_categories: tuple[Category, ...] = HELDOUT_CATEGORIES
    train_templates: tuple[str, ...] = TRAIN_TEMPLATES
    heldout_templates: tuple[str, ...] = HELDOUT_TEMPLATES
    reward_ladder: tuple[float, ...] = REWARD_LADDER
    system_prompt: str = SYSTEM_PROMPT
    _cases: tuple[PromptCase, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        for category in self.train_categories + self.heldout_categories:
            if len(category.answers) != len(self.reward_ladder):
                raise ValueError(
                    f"category {category.noun!r} has {len(category.answers)} answers, but the reward ladder has "
                    f"{len(self.reward_ladder)} rungs: each answer needs one reward"
                )
            if len(set(category.answers)) != len(category.answers):
                raise ValueError(f"category {category.noun!r} lists an answer twice: {category.answers}")
        if not self.train_categories or not self.train_templates:
            raise ValueError("the task needs at least one training category and one training template")
        cases = [PromptCase(c, t, "train") for c in self.train_categories for t in self.train_templates]
        cases += [PromptCase(c, t, "heldout_template") for c in self.train_categories for t in self.heldout_templates]
        every_template = self.train_templates + self.heldout_templates
        cases += [PromptCase(c, t, "heldout_category") for c in self.heldout_categories for t in every_template]
        object.__setattr__(self, "_cases", tuple(cases))

    @property
    def cases(self) -> tuple[PromptCase, ...]:
        """Every prompt of every split, train first."""
        return self._cases

    def split(self, name: str) -> list[PromptCase]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [case for case in self._cases if case.split == name]

    def messages(self, case: PromptCase) -> list[dict[str, str]]:
        """The conversational prompt of `case`: the system message and the question."""
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": case.question}]

    def rewards(self) -> torch.Tensor:
        """`r` of the answers of any category, in list order (best first), float64."""
        return torch.tensor(self.reward_ladder, dtype=torch.float64)

    def target(self, alpha: float) -> torch.Tensor:
        """SPO's fixed point over a category's answers (Theorem 1): `Softmax(r / alpha)`; `alpha = 0` is the argmax."""
        if alpha < 0:
            raise ValueError(f"the target Softmax(r / alpha) needs alpha >= 0, got {alpha}")
        rewards = self.rewards()
        if alpha == 0:
            return (rewards == rewards.max()).double() / (rewards == rewards.max()).sum()
        return torch.softmax(rewards / alpha, dim=0)

    # Training data: training categories asked with training templates only.

    def _training_cases(self) -> list[PromptCase]:
        return self.split("train")

    def preference_pairs(self, num_pairs: int, seed: int) -> list[dict]:
        """
        Conversational pairs: a training prompt drawn uniformly, two distinct answers drawn uniformly, the chosen one
        drawn from Bradley-Terry, `P(y1 preferred) = sigmoid(r(y1) - r(y2))`.
        """
        rng = random.Random(seed)
        cases = self._training_cases()
        rows = []
        for _ in range(num_pairs):
            case = rng.choice(cases)
            first, second = rng.sample(range(len(case.category.answers)), 2)
            gap = self.reward_ladder[first] - self.reward_ladder[second]
            if rng.random() >= 1.0 / (1.0 + math.exp(-gap)):
                first, second = second, first
            rows.append(
                {
                    "prompt": self.messages(case),
                    "chosen": [_assistant(case.category.answers[first])],
                    "rejected": [_assistant(case.category.answers[second])],
                }
            )
        return rows

    def rankings(self, num_rows: int, size: int, seed: int) -> list[dict]:
        """
        Conversational rankings for Eq. 15: `size` distinct answers of a training prompt, ordered by Plackett-Luce on
        the reward (the best drawn from `Softmax(r)` of the remaining answers, then the next, ...).
        """
        if not 2 <= size <= len(self.reward_ladder):
            raise ValueError(f"a ranking ranks 2 to {len(self.reward_ladder)} answers, got size={size}")
        rng = random.Random(seed)
        cases = self._training_cases()
        rows = []
        for _ in range(num_rows):
            case = rng.choice(cases)
            shown = rng.sample(range(len(case.category.answers)), size)
            remaining, order = list(range(size)), []
            while remaining:
                weights = [math.exp(self.reward_ladder[shown[i]]) for i in remaining]
                pick = rng.choices(remaining, weights=weights)[0]
                order.append(pick)
                remaining.remove(pick)
            rows.append(
                {
                    "prompt": self.messages(case),
                    "completions": [[_assistant(case.category.answers[i])] for i in shown],
                    "ranking": order,
                }
            )
        return rows

    def sft_rows(self, num_rows: int, seed: int, answer_weights: tuple[float, ...] | None = None) -> list[dict]:
        """
        Conversational prompt-completion rows for the SFT reference: a training prompt, and a correct answer drawn
        uniformly or, with `answer_weights` (one per position in a category's list, best first), in those proportions:
        a reference whose preferences among the good answers are not the expert's.
        """
        if answer_weights is not None and (
            len(answer_weights) != len(self.reward_ladder) or min(answer_weights) < 0 or sum(answer_weights) <= 0
        ):
            raise ValueError(
                f"answer_weights needs {len(self.reward_ladder)} non-negative weights (one per answer, best first) "
                f"with a positive sum, got {answer_weights}"
            )
        rng = random.Random(seed)
        cases = self._training_cases()
        rows = []
        for _ in range(num_rows):
            case = rng.choice(cases)
            if answer_weights is None:
                answer = rng.choice(case.category.answers)
            else:
                answer = rng.choices(case.category.answers, weights=answer_weights)[0]
            rows.append({"prompt": self.messages(case), "completion": [_assistant(answer)]})
        return rows


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


# ---------------------------------------------------------------------------------------------------------------------
# Exact measurement
# ---------------------------------------------------------------------------------------------------------------------


def encode_cases(
    tokenizer, task: AnswersTask, cases: list[PromptCase]
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """
    Token ids of each case's prompt (chat template with the generation prompt, as the trainers render it) and of each
    of its answers followed by EOS (what a sampled answer that stops looks like).
    """
    prompts, answers = [], []
    for case in cases:
        text = tokenizer.apply_chat_template(task.messages(case), add_generation_prompt=True, tokenize=False)
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        answers.append(
            [
                tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                for a in case.category.answers
            ]
        )
    return prompts, answers


@torch.no_grad()
def answer_log_probs(
    model, tokenizer, task: AnswersTask, cases: list[PromptCase], batch_size: int = 64
) -> torch.Tensor:
    """
    `log pi(y + EOS | x)` for every answer `y` of every case, `(len(cases), num_answers)`, float64, teacher-forced.

    EOS is part of the scored sequence: an answer the model would continue after does not count as that answer. The
    log-softmax runs in float32 on the positions that score an answer token only, then sums in float64.
    """
    prompts, answers = encode_cases(tokenizer, task, cases)
    sequences = [
        (i, j, p + a) for i, (p, row) in enumerate(zip(prompts, answers, strict=True)) for j, a in enumerate(row)
    ]
    result = torch.zeros(len(cases), len(task.reward_ladder), dtype=torch.float64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(len(s) for _, _, s in batch)
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for _, _, s in batch], device=model.device)
        attention_mask = torch.tensor(
            [[1] * len(s) + [0] * (width - len(s)) for _, _, s in batch], device=model.device
        )
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Position t predicts token t + 1: the answer's tokens are predicted from the prompt's last position on. Only
        # those positions go through the LM head, all of the batch's at once.
        rows, positions, targets, owners = [], [], [], []
        for row, (i, j, _) in enumerate(batch):
            begin, answer = len(prompts[i]), answers[i][j]
            rows += [row] * len(answer)
            positions += range(begin - 1, begin - 1 + len(answer))
            targets += answer
            owners += [(i, j)] * len(answer)
        logits = model.get_output_embeddings()(hidden[rows, positions]).float()
        token_logps = logits.log_softmax(-1).gather(-1, torch.tensor(targets, device=logits.device)[:, None])
        flat_index = torch.tensor([i * result.shape[1] + j for i, j in owners])
        result.view(-1).index_add_(0, flat_index, token_logps.squeeze(-1).double().cpu())
    model.train(was_training)
    return result


def bradley_terry_fit(task: AnswersTask, rows: list[dict], by: str = "category") -> dict[str, torch.Tensor]:
    """
    The maximum-likelihood Bradley-Terry scores of the answers, from labelled pairs: what the data say, as opposed to
    the reward that generated them. SPO's fixed point on these pairs is `Softmax(scores / alpha)`, so the distance of
    that distribution from `Softmax(r / alpha)` is the part of a policy's distance that no training on these pairs
    can remove (finite, noisy labels).

    Args:
        task (`AnswersTask`): whose training prompts the pairs come from.
        rows (`list[dict]`): conversational pairs, as `AnswersTask.preference_pairs` makes them.
        by (`str`): `"category"` pools a category's templates (a model that shares what it learns across the ways a
            question is asked), `"prompt"` fits each training prompt on its own pairs.

    Returns:
        `dict[str, torch.Tensor]`: per category noun (or question), the scores of its answers in list order, float64,
        centred on 0.
    """
    if by not in ("category", "prompt"):
        raise ValueError(f"by must be 'category' or 'prompt', got {by!r}")
    cases = {case.question: case for case in task.split("train")}
    comparisons: dict[str, list[tuple[int, int]]] = {}
    for row in rows:
        case = cases[row["prompt"][1]["content"]]
        index = {answer: i for i, answer in enumerate(case.category.answers)}
        key = case.category.noun if by == "category" else case.question
        comparisons.setdefault(key, []).append(
            (index[row["chosen"][0]["content"]], index[row["rejected"][0]["content"]])
        )
    return {key: _fit_scores(pairs, len(task.reward_ladder)) for key, pairs in comparisons.items()}


def _fit_scores(pairs: list[tuple[int, int]], num_answers: int) -> torch.Tensor:
    """Bradley-Terry maximum likelihood from `(winner, loser)` index pairs, by L-BFGS in float64; centred scores."""
    winners = torch.tensor([winner for winner, _ in pairs])
    losers = torch.tensor([loser for _, loser in pairs])
    scores = torch.zeros(num_answers, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([scores], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        optimizer.zero_grad()
        # A vanishing ridge pins the free constant (and keeps an answer that never won finite).
        loss = F.softplus(scores[losers] - scores[winners]).sum() + 1e-6 * scores.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return (scores - scores.mean()).detach()


def data_floor(task: AnswersTask, rows: list[dict], alpha: float, by: str = "category") -> float:
    """Mean TV between `Softmax(fitted scores / alpha)` and `Softmax(r / alpha)`: the pairs' own distance from the target."""
    target = task.target(alpha)
    fits = bradley_terry_fit(task, rows, by)
    return torch.stack([total_variation(torch.softmax(s / alpha, -1), target) for s in fits.values()]).mean().item()


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """`(1/2) sum_y |p(y) - q(y)|` over the last dimension."""
    return 0.5 * (p - q).abs().sum(-1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """`-sum_y p(y) log p(y)` in nats over the last dimension, with `0 log 0 = 0`."""
    return -torch.special.xlogy(p, p).sum(-1)


def distribution_summary(log_probs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """
    What the table reports for a set of prompts, each a mean over the prompts.

    Args:
        log_probs (`torch.Tensor`): `log pi(y + EOS | x)`, `(P, n)` for P prompts of n answers, float64.
        target (`torch.Tensor`): the distribution over the n answers the method aims at, `(n,)`.

    Returns:
        `dict`: `mass` (pi(Y | x)), `tv` (of pi(. | x, Y) to `target`), `entropy` and `target_entropy` (nats),
        `top_prob` (pi of the best-reward answer, conditioned on Y), `max_prob` (the largest conditional probability,
        whichever answer holds it).
    """
    conditional = torch.softmax(log_probs, dim=-1)
    return {
        "mass": log_probs.logsumexp(-1).exp().mean().item(),
        "tv": total_variation(conditional, target).mean().item(),
        "entropy": entropy(conditional).mean().item(),
        "target_entropy": entropy(target).item(),
        "top_prob": conditional[:, 0].mean().item(),
        "max_prob": conditional.max(-1).values.mean().item(),
    }
