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
The maximum-entropy frontier of reward and entropy: a yardstick that compares SPO and DPO whatever knob each turns.

Over a finite answer set with rewards `r`, `Softmax(lambda * r)` maximises entropy among all distributions with the
same expected reward (the Gibbs variational principle: `Softmax(r / alpha)` maximises `E[r] + alpha * H`). So the
curve `lambda -> (E[r], H)` is the exact frontier, and a policy's **entropy deficit**, the frontier's entropy at the
policy's own expected reward minus the policy's entropy, is >= 0 and says how much spread the policy gave up that it
did not need to for its reward. SPO's fixed point sits on the frontier (deficit 0); DPO's, `pi_ref * exp(r / beta)`
normalised, sits on it only when the reference's preferences among the answers are a function of `r`.

Everything is per prompt, over the answers of that prompt's set, in float64: pure torch, no model.
"""

import torch


def expected_reward(probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """`E_p[r]` over the last dimension."""
    return (probs * rewards).sum(-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """`-sum p log p` in nats over the last dimension, with `0 log 0 = 0`."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """`KL(p || q)` in nats over the last dimension, from log-probabilities (normalised over that dimension)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def frontier_entropy(rewards: torch.Tensor, target_reward: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """
    The largest entropy of a distribution over answers with rewards `rewards` `(n,)` whose expected reward is
    `target_reward` (any shape): the entropy of `Softmax(lambda * r)` with `lambda` solved by bisection.

    `E[r]` under `Softmax(lambda * r)` rises monotonically with `lambda` (its derivative is the variance of r), from
    `min r` at `-inf` to `max r` at `+inf`, so bisection on `lambda` converges; a target at or beyond an end gets that
    end's entropy limit (0 for a unique best or worst answer).
    """
    rewards = rewards.double()
    target = torch.as_tensor(target_reward, dtype=torch.float64)
    spread = (rewards.max() - rewards.min()).clamp_min(1e-12)
    # |lambda| * spread = 700 makes exp underflow to 0 for every answer but the extremes: both ends are reached.
    low = torch.full_like(target, -700.0 / spread.item())
    high = torch.full_like(target, 700.0 / spread.item())
    for _ in range(iterations):
        middle = (low + high) / 2
        below = expected_reward(torch.softmax(middle[..., None] * rewards, -1), rewards) < target
        low = torch.where(below, middle, low)
        high = torch.where(below, high, middle)
    return entropy(torch.softmax(((low + high) / 2)[..., None] * rewards, -1))


def dpo_fixed_point(reference_log_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """
    DPO's optimum on Bradley-Terry pairs of reward `r` (DPO paper, Eq. 4), over the answer set:
    `pi_ref(y) * exp(r(y) / beta)` normalised, as log-probabilities `(P, n)` from the reference's `(P, n)`.
    """
    return torch.log_softmax(reference_log_probs.double() + rewards.double() / beta, -1)


def frontier_summary(log_probs: torch.Tensor, reference_log_probs: torch.Tensor, rewards: torch.Tensor) -> dict:
    """
    A policy's place against the frontier, per prompt then averaged over prompts.

    Args:
        log_probs (`torch.Tensor`): the policy's `log pi(y | x)` of each answer, `(P, n)` (not conditioned: the mass
            on the set is read from it).
        reference_log_probs (`torch.Tensor`): the reference's, `(P, n)`.
        rewards (`torch.Tensor`): `r` of the n answers, `(n,)`.

    Returns:
        `dict` of floats: `expected_reward` (E[r] of the policy conditioned on the set), `entropy`,
        `frontier_entropy` (at that E[r]), `deficit` (their difference), `kl_to_reference` (KL of the conditioned
        policy to the conditioned reference), `mass` (pi of the set).
    """
    log_probs = log_probs.double()
    conditional = torch.log_softmax(log_probs, -1)
    reference = torch.log_softmax(reference_log_probs.double(), -1)
    probs = conditional.exp()
    reward = expected_reward(probs, rewards.double())
    spread = entropy(probs)
    frontier = frontier_entropy(rewards, reward)
    return {
        "expected_reward": reward.mean().item(),
        "entropy": spread.mean().item(),
        "frontier_entropy": frontier.mean().item(),
        "deficit": (frontier - spread).mean().item(),
        "kl_to_reference": kl_divergence(conditional, reference).mean().item(),
        "mass": log_probs.logsumexp(-1).exp().mean().item(),
    }
