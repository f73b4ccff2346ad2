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
Per-token KL(π_θ ‖ π_ref) on sampled completions, from hidden states, without `[N, V]` logits.

The sum over positions and the mean over samples (Eq. 13) live in `trl_spo.losses.global_kl_per_sample`; this module
only produces the per-token full-vocabulary KL, with TRL's chunked divergence kernel (`beta=1.0` is the reverse KL
KL(student ‖ teacher), here KL(policy ‖ reference)).
"""

from dataclasses import dataclass

import torch

from ._trl_compat import ChunkedDivergenceFunction, logit_transform


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


def token_kl(
    policy_hidden: torch.Tensor,
    policy_model,
    reference_hidden: torch.Tensor,
    reference_model,
    completion_mask: torch.Tensor,
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
        reference_hidden (`torch.Tensor`, shape `(B, L - 1, H_ref)`):
            Reference hidden states at the same positions, without gradient.
        completion_mask (`torch.Tensor`, shape `(B, L)`):
            1 on the sampled completion tokens (EOS included), 0 on the prompt and padding.
    """
    mask = completion_mask[:, 1:].bool()
    policy_head = policy_model.get_output_embeddings()
    reference_head = reference_model.get_output_embeddings()
    policy_scale, policy_softcap = logit_transform(policy_model.config)
    reference_scale, reference_softcap = logit_transform(reference_model.config)
    # Only the completion positions are projected: the prompt and the padding contribute nothing to Eq. 13.
    kl, entropy = ChunkedDivergenceFunction.apply(
        policy_hidden[mask],
        policy_head.weight,
        policy_head.bias,
        reference_hidden[mask].to(policy_hidden.device),
        reference_head.weight,
        reference_head.bias,
        1.0,  # beta = 1: the reverse KL, KL(policy || reference)
        1.0,  # temperature: Eq. 13 compares the untempered distributions
        policy_scale,
        policy_softcap,
        reference_scale,
        reference_softcap,
    )
    # `masked_scatter` keeps the result connected to the policy even when no position is valid.
    kl = kl.new_zeros(mask.shape, dtype=kl.dtype).masked_scatter(mask, kl)
    entropy = entropy.new_zeros(mask.shape, dtype=entropy.dtype).masked_scatter(mask, entropy)
    return TokenKL(kl=kl, entropy=entropy, mask=mask)
