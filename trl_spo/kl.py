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
The global KL regulariser of Eq. 13: per-token KL(π_θ ‖ π_ref) on sampled completions, from hidden states, without
`[N, V]` logits (`token_kl`, with TRL's chunked divergence kernel: `beta=1.0` is the reverse KL KL(student ‖ teacher),
here KL(policy ‖ reference)), and its sum over each completion's positions (`global_kl_per_sample`); the trainer
averages over the samples.
"""

from dataclasses import dataclass

import torch

from ._trl_compat import ChunkedDivergenceFunction, logit_transform


def vocabulary_size(model) -> int:
    """Rows of the model's output embedding (the LM head), under ZeRO-3 too; `config.vocab_size` without one."""
    head = model.get_output_embeddings()
    if head is None:
        return model.config.get_text_config().vocab_size
    return getattr(head.weight, "ds_shape", head.weight.shape)[0]


def check_same_vocabulary(policy_model, reference_model) -> None:
    """
    Raise a `ValueError` naming both sizes and the fix if the policy and the reference have different vocabularies.

    The KL of Eq. 13 compares their next-token distributions token id by token id: with another vocabulary (typically
    the policy's embeddings resized after adding a token, the reference loaded from the original checkpoint) it would
    train silently on a meaningless quantity.
    """
    policy_size, reference_size = vocabulary_size(policy_model), vocabulary_size(reference_model)
    if policy_size != reference_size:
        raise ValueError(
            f"The reference model's vocabulary has {reference_size} tokens but the policy's has {policy_size} (rows of "
            "their output embeddings). The KL term compares their next-token distributions token by token, so they "
            "need the same vocabulary. This happens when the policy's embeddings were resized (`model."
            "resize_token_embeddings(len(tokenizer))` after adding tokens) and the reference was loaded from the "
            "original checkpoint, which `ref_model=None` also does. Resize the reference the same way "
            f"(`ref_model.resize_token_embeddings({policy_size})`), or save the resized policy (`model.save_pretrained"
            "(path)`, with the tokenizer) and pass that path as `model`, so that `ref_model=None` loads the reference "
            "from it."
        )


@dataclass
class TokenKL:
    """
    Per-token quantities on the completion positions of a batch of samples.

    Attributes:
        kl (`torch.Tensor`, shape `(B, L - 1)`):
            KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t)) at every position whose next token is a completion token, 0
            elsewhere. Differentiable w.r.t. the policy.
        entropy (`torch.Tensor`, shape `(B, L - 1)`):
            Entropy of π_θ(·|x, y_<t) at the same positions, 0 elsewhere. No gradient.
        mask (`torch.Tensor`, shape `(B, L - 1)`):
            Which positions count: the completion mask shifted by one, as position t predicts token t + 1.
    """

    kl: torch.Tensor
    entropy: torch.Tensor
    mask: torch.Tensor


def completion_positions(completion_mask: torch.Tensor) -> torch.Tensor:
    """
    Flat indices `(T,)`, into the `(B, L - 1)` grid of next-token predictions, of the positions that predict a
    completion token: what `token_kl` projects. Sizing them reads the device (a host sync): the trainer takes them once
    per refresh of the KL samples, which stay fixed in between.
    """
    return completion_mask[:, 1:].bool().flatten().nonzero().squeeze(1)


def token_kl(
    policy_hidden: torch.Tensor,
    policy_model,
    reference_hidden: torch.Tensor,
    reference_model,
    completion_mask: torch.Tensor,
    positions: torch.Tensor,
) -> TokenKL:
    """
    Full-vocabulary KL(π_θ ‖ π_ref) at the completion positions of sampled sequences.

    Args:
        policy_hidden (`torch.Tensor`, shape `(B, L - 1, H)`):
            Policy hidden states from [`backbone_hidden_states`]; the gradient flows through them and the policy's LM
            head.
        policy_model, reference_model:
            Unwrapped models whose LM heads (and logit scale / soft-capping) turn hidden states into logits. For a PEFT
            policy whose reference is the adapter-free base model, both are the same model.
        reference_hidden (`torch.Tensor`, shape `(T, H_ref)`):
            Reference hidden states at the T `positions`, without gradient.
        completion_mask (`torch.Tensor`, shape `(B, L)`):
            1 on the sampled completion tokens (EOS included), 0 on the prompt and padding.
        positions (`torch.Tensor`, shape `(T,)`):
            `completion_positions(completion_mask)`, taken once: given, they cost no host sync here.
    """
    mask = completion_mask[:, 1:].bool()
    policy_head = policy_model.get_output_embeddings()
    reference_head = reference_model.get_output_embeddings()
    policy_scale, policy_softcap = logit_transform(policy_model.config)
    reference_scale, reference_softcap = logit_transform(reference_model.config)
    # Only the completion positions are projected: the prompt and the padding contribute nothing to Eq. 13.
    kl, entropy = ChunkedDivergenceFunction.apply(
        policy_hidden.flatten(0, 1).index_select(0, positions),
        policy_head.weight,
        policy_head.bias,
        reference_hidden.to(policy_hidden.device),
        reference_head.weight,
        reference_head.bias,
        1.0,  # beta = 1: the reverse KL, KL(policy || reference)
        1.0,  # temperature: Eq. 13 compares the untempered distributions
        policy_scale,
        policy_softcap,
        reference_scale,
        reference_softcap,
    )
    # `index_copy` keeps the result connected to the policy even when no position is valid.
    kl = kl.new_zeros(mask.numel()).index_copy(0, positions, kl).view(mask.shape)
    entropy = entropy.new_zeros(mask.numel()).index_copy(0, positions, entropy).view(mask.shape)
    return TokenKL(kl=kl, entropy=entropy, mask=mask)


def global_kl_per_sample(token_kl: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Token-wise KL of each sampled completion, the inner sums of the global regulariser.

    Paper: Soft Preference Optimization, section 4, Eq. (13) (the estimator used in Algorithm 1).

    Formula:
        KL_hat = (1/|B|) * sum_{(x, y) in B} sum_{tau=1}^{|y|} KL( pi_theta(. | x, y_<tau) || pi_ref(. | x, y_<tau) )
        this function returns, per sample, sum_{tau=1}^{|y|} KL_tau; the caller averages over the |B| samples.

    Where:
        y ~ pi_theta(. | x): an online sample (fixed; no gradient through the sampling).
        KL_tau: full-vocabulary KL between the next-token distributions of pi_theta and pi_ref at completion
            position tau (`token_kl` above), the `token_kl` entries.
        |y|: completion length, the positions where `completion_mask` is set.

    Args:
        token_kl (`torch.Tensor`): KL_tau, shape (B, L). Values at masked positions are ignored (may be NaN).
        completion_mask (`torch.Tensor`): bool or {0, 1}, shape (B, L); True at completion tokens.

    Returns:
        `torch.Tensor`: summed KL per sample, shape (B,), float32 (float64 for float64 inputs).
    """
    dtype = torch.float64 if token_kl.dtype == torch.float64 else torch.float32
    # Eq. (13) sums over the completion's positions, not averages: longer samples carry more KL, as in the paper.
    return torch.where(completion_mask.bool(), token_kl.to(dtype), 0.0).sum(-1)
