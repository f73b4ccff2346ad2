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
One backbone pass for a training micro-batch: the preference sequences and the KL samples together.

SPO's step scores the preference sequences (their log-probs, through the LM head) and measures the KL on other
sequences (the online samples, through the chunked divergence). Stacking both into one batch runs every layer once,
forward and backward, instead of twice on two smaller batches: on a CPU, or with a small KL shard on a GPU, the second
pass costs far more than its share of tokens (every weight is read again, and the embedding's gradient is built twice).
Rows are right-padded to a common length; with causal attention, padding after a sequence changes none of its
positions.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate.utils import is_peft_model

from ._trl_compat import (
    FUSED_LM_HEAD_OUTPUTS,
    disable_gradient_checkpointing,
    forward_through_wrapper,
    lm_head_token_outputs,
    reference_adapter,
)


# The batch key under which `SPOTrainer` passes each micro-batch's number of completion tokens, read on the host when
# the batches of an optimizer step are fetched.
NUM_COMPLETION_TOKENS = "num_completion_tokens"


@dataclass
class TokenOutputs:
    """
    Per-token outputs of TRL's fused LM head on N right-padded preference sequences of length L, at the L - 1 positions
    that predict a token (position t predicts token t + 1). Each tensor has shape `(N, L - 1)` and is 0 where token
    t + 1 is not a completion token.

    Attributes:
        log_probs (`torch.Tensor`): log π_θ(token t + 1 | tokens ≤ t); summed per row, the sequence log-probs of the
            losses. Differentiable.
        entropy (`torch.Tensor`): entropy of π_θ(· | tokens ≤ t), DPO's `entropy` metric. No gradient.
        mean_logits (`torch.Tensor`): mean of the logits over the vocabulary, DPO's `logits/chosen|rejected`.
        is_top1 (`torch.Tensor`): whether token t + 1 is π_θ's most likely one, DPO's `mean_token_accuracy`.
        aux_loss (`torch.Tensor`, scalar, *optional*): the MoE router's load-balancing loss, when asked for.
    """

    log_probs: torch.Tensor
    entropy: torch.Tensor
    mean_logits: torch.Tensor
    is_top1: torch.Tensor
    aux_loss: torch.Tensor | None = None


@dataclass
class PolicyForward:
    """
    What one pass of the policy gives for a micro-batch of N preference sequences of length L and K extra rows.

    Attributes:
        token_outputs (`TokenOutputs`): the fused LM head's outputs on the preference sequences, each `(N, L - 1)`.
        hidden (`torch.Tensor`, shape `(N, L - 1, H)`, *optional*): the preference sequences' last hidden states
            (`None` on the MoE path unless asked for: TRL's fused forward does not return them).
        extra_hidden (`torch.Tensor`, shape `(K, L_extra - 1, H)`, *optional*): the extra rows' last hidden states.
    """

    token_outputs: TokenOutputs
    hidden: torch.Tensor | None
    extra_hidden: torch.Tensor | None


def backbone_hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """
    Last hidden states `(B, L - 1, H)` of a causal LM, i.e. what its LM head would turn into next-token logits.

    The last position is dropped: it predicts a token that is not in the sequence. `model` is the unwrapped policy or
    reference (a `PreTrainedModel` or a `PeftModel`, whose adapters stay active inside the backbone).
    """
    if is_peft_model(model):
        model = model.base_model.model
    outputs = model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return outputs.last_hidden_state[:, :-1]


@torch.no_grad()
def reference_hidden_states(
    accelerator,
    model_wrapped,
    ref_model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    gradient_checkpointing_kwargs: dict | None = None,
) -> torch.Tensor:
    """
    π_ref's last hidden states `(B, L - 1, H)`, without gradient, under the run's mixed precision: the reference model
    if there is one, else (PEFT) the policy with its adapter disabled, through the wrapper either way (ZeRO-3 gathers
    the weights it runs).
    """
    with accelerator.autocast():
        if ref_model is None:
            unwrapped = accelerator.unwrap_model(model_wrapped)
            with (
                reference_adapter(unwrapped),
                disable_gradient_checkpointing(unwrapped, gradient_checkpointing_kwargs),
            ):
                return forward_through_wrapper(
                    model_wrapped, unwrapped, backbone_hidden_states, unwrapped, input_ids, attention_mask
                )
        unwrapped_ref = accelerator.unwrap_model(ref_model)
        return forward_through_wrapper(
            ref_model, unwrapped_ref, backbone_hidden_states, unwrapped_ref, input_ids, attention_mask
        )


def count_completion_tokens(batches: list[dict[str, torch.Tensor]]) -> None:
    """
    Store in each collated batch its number of completion tokens (under `NUM_COMPLETION_TOKENS`), for
    `policy_forward`: one read from the device for all the batches, instead of one per batch inside the forward.
    """
    if not batches:
        return
    counts = torch.stack([batch["completion_mask"][:, 1:].sum() for batch in batches]).tolist()
    for batch, count in zip(batches, counts, strict=True):
        batch[NUM_COMPLETION_TOKENS] = count


def policy_forward(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    extra_input_ids: torch.Tensor | None = None,
    extra_attention_mask: torch.Tensor | None = None,
    router_aux_loss: bool = False,
    keep_hidden: bool = False,
    num_completion_tokens: int | None = None,
) -> PolicyForward:
    """
    One backbone pass over the preference sequences `(N, L)` and, if given, extra rows `(K, L_extra)`, then TRL's
    fused LM head on the preference sequences' completion tokens.

    Args:
        model: the unwrapped policy (a causal LM or a PEFT model).
        input_ids, attention_mask, completion_mask (`torch.Tensor`, shape `(N, L)`): right-padded `prompt + completion`
            sequences, as DPO's collator builds them.
        extra_input_ids, extra_attention_mask (`torch.Tensor`, shape `(K, L_extra)`, *optional*): right-padded rows
            whose hidden states are wanted too (the KL samples).
        router_aux_loss (`bool`): a mixture-of-experts model whose router loss is trained: TRL's fused forward returns
            it, so the preference sequences go through that forward and the extra rows get a pass of their own.
        keep_hidden (`bool`): on that path, also return the preference sequences' hidden states (a second pass).
        num_completion_tokens (`int`, *optional*): `completion_mask[:, 1:].sum()`, when known on the host: the LM head
            then reads nothing back from the device (see `lm_head_token_outputs`).
    """
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    if router_aux_loss:
        fused = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            fused_lm_head=True,
            use_cache=False,
            output_router_logits=True,
        )
        token_outputs = TokenOutputs(
            **{name: getattr(fused, name) for name in FUSED_LM_HEAD_OUTPUTS}, aux_loss=fused.aux_loss
        )
        hidden = backbone_hidden_states(model, input_ids, attention_mask) if keep_hidden else None
        extra_hidden = None
        if extra_input_ids is not None:
            extra_hidden = backbone_hidden_states(model, extra_input_ids, extra_attention_mask)
        return PolicyForward(token_outputs=token_outputs, hidden=hidden, extra_hidden=extra_hidden)

    num_rows, length = input_ids.shape
    if extra_input_ids is None:
        hidden = backbone_hidden_states(model, input_ids, attention_mask)
        extra_hidden = None
    else:
        width = max(length, extra_input_ids.size(1))

        def padded(tensor: torch.Tensor) -> torch.Tensor:
            return F.pad(tensor, (0, width - tensor.size(1)), value=0)

        stacked = backbone_hidden_states(
            model,
            torch.cat([padded(input_ids), padded(extra_input_ids)]),
            torch.cat([padded(attention_mask), padded(extra_attention_mask)]),
        )
        hidden = stacked[:num_rows, : length - 1]
        extra_hidden = stacked[num_rows:, : extra_input_ids.size(1) - 1]
    per_token = lm_head_token_outputs(model, hidden, labels[:, 1:], FUSED_LM_HEAD_OUTPUTS, num_completion_tokens)
    token_outputs = TokenOutputs(**{name: getattr(per_token, name) for name in FUSED_LM_HEAD_OUTPUTS})
    return PolicyForward(token_outputs=token_outputs, hidden=hidden, extra_hidden=extra_hidden)
