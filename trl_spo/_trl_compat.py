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
What SPOTrainer takes from TRL beyond `DPOTrainer` itself: helpers of TRL's submodules (generation under ZeRO-3, the
chunked kernels, PEFT's reference adapter, the fused LM head applied to hidden states), and the list of the seams it
inherits.

Inheritance is the other contact surface: the methods of `DPOTrainer` (and of transformers' `Trainer` under it) that
`SPOTrainer` overrides or calls, the attributes their `__init__` sets that it reads, and the outputs it reads from
TRL's fused LM head. They are listed below as data, and `seam_problems` checks each one against the installed code, so
that a change to any of them fails a test that names it instead of drifting silently.
"""

# upstream: drop-begin
# In trl-spo this is the one module that reaches into TRL below its top-level API: every import of a TRL submodule or
# underscored name is here, so a TRL upgrade touches this file only. The supported TRL minor is pinned in
# pyproject.toml and stated at runtime (`TESTED_TRL_MINOR`); tests/test_trl_compat.py runs `seam_problems`.
# upstream: drop-end

import inspect
import warnings
from types import SimpleNamespace

import torch
import trl
from packaging.version import Version
from torch.distributed.tensor import DTensor
from transformers import Trainer
from trl import DPOTrainer
from trl.cli.accelerate_config import resolve_accelerate_config_argument
from trl.cli.commands.training import _subtract_subsequence as subtract_subsequence
from trl.generation.vllm_generation import VLLMGeneration
from trl.import_utils import is_vllm_available
from trl.kernels import ChunkedLogProbFunction
from trl.kernels.chunked_divergence import ChunkedDivergenceFunction
from trl.models.utils import _ForwardRedirection, disable_gradient_checkpointing, unwrap_model_for_generation
from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE as LOG_PROB_CHUNK_SIZE
from trl.trainer.utils import (
    flush_left,
    get_comet_experiment_url,
    get_config_model_id,
    get_trackio_space_url,
    global_then_local_main_first,
    maybe_gather_lm_head_ctx,
    pad,
    use_adapter,
)


# upstream: drop-begin (inside TRL there is no other version to be out of step with)
TESTED_TRL_MINOR = "1.16"

if Version(trl.__version__).base_version.rsplit(".", 1)[0] != TESTED_TRL_MINOR:
    warnings.warn(
        f"trl-spo is tested against TRL {TESTED_TRL_MINOR}.x, but TRL {trl.__version__} is installed. SPOTrainer wraps "
        "DPOTrainer internals that may have changed; see trl_spo/_trl_compat.py.",
        stacklevel=2,
    )
# upstream: drop-end

__all__ = [
    "CALLED_METHODS",
    "CLASS_ATTRIBUTES",
    "FUSED_LM_HEAD_OUTPUTS",
    "INSTANCE_ATTRIBUTES",
    "OVERRIDDEN_METHODS",
    "SOURCE_SEAMS",
    "fused_lm_head_problems",
    "seam_problems",
    "ChunkedDivergenceFunction",
    "VLLMGeneration",
    "is_vllm_available",
    "disable_gradient_checkpointing",
    "flush_left",
    "get_comet_experiment_url",
    "get_config_model_id",
    "get_trackio_space_url",
    "forward_through_wrapper",
    "global_then_local_main_first",
    "lm_head_token_outputs",
    "logit_transform",
    "pad",
    "reference_adapter",
    "resolve_accelerate_config_argument",
    "subtract_subsequence",
    "unwrap_model_for_generation",
]

_forward_redirection = _ForwardRedirection()


def forward_through_wrapper(wrapped_model, unwrapped_model, method, *args, **kwargs):
    """
    Call `method(*args, **kwargs)` as if it were `wrapped_model.forward`.

    DDP only registers the backward all-reduce, and DeepSpeed ZeRO-3 only gathers the top-level parameters, when the
    wrapper's `forward` runs. The KL term calls the backbone and the LM head of the unwrapped model directly (to get
    hidden states instead of logits), so it is routed through the wrapper with TRL's forward redirection.
    """
    if wrapped_model is unwrapped_model:
        return method(*args, **kwargs)
    return _forward_redirection(wrapped_model, unwrapped_model, method, *args, **kwargs)


def reference_adapter(unwrapped_model):
    """
    Context in which a PEFT policy computes the reference distribution.

    Mirrors `DPOTrainer`: a fresh adapter is disabled (the base model is the reference); an adapter that was already
    trained before SPO has a frozen copy named `"ref"`, which is activated instead.
    """
    adapter_name = "ref" if "ref" in unwrapped_model.peft_config else None
    return use_adapter(unwrapped_model, adapter_name=adapter_name)


def logit_transform(config) -> tuple[float, float | None]:
    """
    `(logit_scale, final_logit_softcapping)` that turn `lm_head(hidden)` into the model's logits.

    Same reading of the config as TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`), so the KL term sees the
    distribution the model samples from.
    """
    text_config = config.get_text_config()
    softcap = getattr(text_config, "final_logit_softcapping", None)
    scale = getattr(text_config, "logit_scale", None)
    if scale is None:
        scale = getattr(text_config, "output_multiplier", None)
    if scale is None:
        scale = getattr(text_config, "lm_head_multiplier", None)
    if scale is None and getattr(text_config, "logits_scaling", None) is not None:
        scaling = text_config.logits_scaling
        scale = scaling if text_config.model_type == "hyperclovax" else 1 / scaling
    return (1.0 if scale is None else scale), softcap


def lm_head_token_outputs(
    model, hidden_states, labels, outputs: tuple[str, ...] = ("log_probs",), num_positions: int | None = None
) -> SimpleNamespace:
    """
    TRL's fused LM head (`add_fused_lm_head`) applied to hidden states the caller already has.

    `model(..., labels=labels, fused_lm_head=True)` runs the backbone and then this projection; SPOTrainer runs the
    backbone once for its preference sequences and its KL samples together (`trl_spo.forward`), so it needs the head on
    its own. Same kernel, scale and soft-capping as TRL's; one difference: only the positions whose label is not -100
    are projected on every device (TRL projects every position on devices without Triton, to keep tile shapes stable
    for compilers such as Neuron's; on CPU and GPU that is only wasted work).

    Sizing those positions needs their number, which is data: read from the device, it is a host sync (TRL's own fused
    head makes that read on a GPU, `hidden_states[mask]`). `SPOTrainer` reads the numbers of all the micro-batches of
    an optimizer step at once, when it fetches them (`get_batch_samples`), and passes each as `num_positions`, so the
    projection itself reads nothing back. Projecting every position instead would avoid the read but costs more than
    it at the shapes SPO trains: the LM head is 7% of a 7B model's FLOPs per token (27% of Qwen2-0.5B's), and prompts
    and padding are often half the positions.

    Args:
        model: the unwrapped causal LM (or PEFT model) whose LM head scores the positions.
        hidden_states (`torch.Tensor`, shape `(B, T, H)`): hidden states, position t predicting `labels[:, t]`.
        labels (`torch.Tensor`, shape `(B, T)`): next-token ids, -100 where nothing is scored.
        outputs (`tuple[str, ...]`): fields besides `log_probs`, among `entropy`, `mean_logits`, `is_top1`,
            `log_sum_sq_probs`.
        num_positions (`int`, *optional*): how many labels are not -100, when the caller knows it on the host;
            `None` reads it from the device.

    Returns:
        A namespace with one `(B, T)` tensor per requested field (0 where the label is -100), the others `None`.
    """
    lm_head = model.get_output_embeddings()
    weight, bias = lm_head.weight, lm_head.bias
    if isinstance(weight, DTensor):  # FSDP2: one gather instead of one per chunk
        weight = weight.full_tensor()
        bias = None if bias is None else bias.full_tensor()
    scale, softcap = logit_transform(model.config)
    hidden_states = hidden_states.to(weight.device)
    labels = labels.to(weight.device)
    mask = labels != -100
    if num_positions is None:
        positions = mask.flatten().nonzero().squeeze(1)  # reads the count from the device (see above)
    else:
        # The scored positions in order, without reading the device: a stable sort puts them first.
        positions = mask.flatten().to(torch.uint8).argsort(descending=True, stable=True)[:num_positions]
    with maybe_gather_lm_head_ctx(weight, bias):
        per_token = ChunkedLogProbFunction.apply(
            hidden_states.flatten(0, 1).index_select(0, positions),
            weight,
            bias,
            labels.flatten().index_select(0, positions),
            1.0,
            LOG_PROB_CHUNK_SIZE,
            softcap,
            scale,
            outputs,
        )
    names = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    # `index_copy` keeps the output connected to the model even when no label is valid.
    return SimpleNamespace(
        **{
            name: None if x is None else x.new_zeros(mask.numel()).index_copy(0, positions, x).view(mask.shape)
            for name, x in zip(names, per_token, strict=False)
        }
    )


# ---------------------------------------------------------------------------------------------------------------------
# The inheritance seams
# ---------------------------------------------------------------------------------------------------------------------

# Methods SPOTrainer overrides (calling the parent's), with the leading parameters it relies on.
OVERRIDDEN_METHODS: dict[str, tuple[str, ...]] = {
    "_prepare_dataset": ("dataset", "processing_class", "args", "dataset_name"),  # DPOTrainer: tokenisation
    "_set_signature_columns_if_needed": (),  # Trainer: the columns the n-ary collator needs
    "compute_loss": ("model", "inputs", "return_outputs", "num_items_in_batch"),  # Trainer's loss hook
    "get_batch_samples": ("epoch_iterator", "num_batches", "device"),  # Trainer: the prompts of a step's batches
    "log": ("logs", "start_time"),  # DPOTrainer: SPO's device-side metrics are read and handed to it here
    "_save_checkpoint": ("model", "trial"),  # Trainer: the KL sampler's state goes with each checkpoint
    "create_model_card": ("model_name", "dataset_name", "tags"),  # TRL's BaseTrainer  # upstream: drop
    "train": ("resume_from_checkpoint",),  # Trainer: the KL sampler's state is restored on resume
    "_get_output_dir": ("trial",),  # Trainer: points into the staging folder while a checkpoint is written
}

# Methods SPOTrainer calls that are not part of the documented API, with the leading parameters it passes.
CALLED_METHODS: dict[str, tuple[str, ...]] = {}

# Attributes the parents' `__init__` sets and SPOTrainer reads (or writes for them to read), and what for.
INSTANCE_ATTRIBUTES: dict[str, str] = {
    "_tokenizer": "the tokenizer inside `processing_class` (EOS and pad ids)",
    "_is_vision_dataset": "the global KL refuses vision datasets",
    "_metrics": "SPO's metrics are handed to DPO's at each log, which averages and clears them",
    "_total_train_tokens": "the `num_tokens` metric",
    "_tp_size": "the `num_tokens` metric under tensor parallelism",
    "aux_loss_enabled": "the MoE router loss is added to SPO's loss",
    "router_aux_loss_coef": "its weight",
    "ref_model": "pi_ref of the KL term (`None` for PEFT: the adapter is disabled instead)",
    "beta": "the weight of the KL term",
    "_signature_columns": "SPOTrainer writes the n-ary batch columns into it, which Trainer keeps in the dataset",
}

# What the parents' code does with SPOTrainer's state, read in their source: (owner, method, code it must contain,
# what SPOTrainer relies on). A refactor that keeps the behaviour under other words fails too, and is checked by hand.
SOURCE_SEAMS: tuple[tuple[type, str, str, str], ...] = (
    (
        Trainer,
        "_remove_unused_columns",
        "self._signature_columns",
        "Trainer keeps the dataset columns named in `_signature_columns` (the n-ary ones, written by SPOTrainer)",
    ),
    (
        Trainer,
        "_run_epoch",
        "self.current_gradient_accumulation_steps = len(batch_samples)",
        "Trainer sets `current_gradient_accumulation_steps` to the micro-batches of each optimizer step (the KL "
        "sampler shards its samples over them)",
    ),
    (
        Trainer,
        "training_step",
        "loss / self.current_gradient_accumulation_steps",
        "Trainer divides each micro-batch's loss by `current_gradient_accumulation_steps` (the KL term's factor "
        "undoes that for its shard sum)",
    ),
    (
        Trainer,
        "_run_epoch",
        "if self.control.should_epoch_stop or self.control.should_training_stop:",
        "Trainer stops its loop over optimizer steps when `should_training_stop` is set; SPOTrainer's "
        "`get_batch_samples` sets it (and fetches nothing) when resumed from the checkpoint of the last step",
    ),
    (
        Trainer,
        "_save_checkpoint",
        "run_dir = self._get_output_dir(trial=trial)",
        "Trainer writes a checkpoint, and rotates the older ones, under `_get_output_dir`, which SPOTrainer points "
        "into its staging folder while it saves (the checkpoint gets its final name once whole)",
    ),
    (
        Trainer,
        "_save_checkpoint",
        "self.state.best_model_checkpoint = best_checkpoint_dir",
        "Trainer records the best checkpoint under the directory it writes to; SPOTrainer moves the record to the "
        "published name",
    ),
    (
        DPOTrainer,
        "create_model_card",
        "self._tag_names",
        "TRL's model card adds the trainer's `_tag_names` to its tags",
    ),
    (
        DPOTrainer,
        "create_model_card",
        "self._paper",
        "TRL's model card cites the trainer's `_paper` (title, id, citation) and names it by `_name`",
    ),
)

# Class attributes of DPOTrainer that SPOTrainer redefines for TRL's model card (and its own), with their type.
CLASS_ATTRIBUTES: dict[str, type] = {"_tag_names": list, "_name": str, "_paper": dict}

# Per-token outputs of TRL's fused LM head (`add_fused_lm_head`, which `DPOTrainer.__init__` installs with these
# outputs) that SPOTrainer reads: the log-probs of the preference term, and DPO's token metrics. The MoE branch of
# `trl_spo.forward.policy_forward` and `NaryDPOTrainer`'s reference forward call the head through the model's forward,
# `model(..., labels=labels, fused_lm_head=True)`, and read these fields at the `L - 1` positions that predict a token.
FUSED_LM_HEAD_OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")


def _parameters(function) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(function).parameters if name != "self")


def fused_lm_head_problems(model) -> list[str]:
    """What changed in the `fused_lm_head=True` forward keyword of a model `DPOTrainer.__init__` prepared."""
    input_ids = torch.zeros(1, 3, dtype=torch.long, device=model.device)
    try:
        with torch.no_grad():
            outputs = model(input_ids=input_ids, labels=input_ids, fused_lm_head=True)
    except TypeError as error:
        return [
            f"the model's forward no longer takes `fused_lm_head=True` ({error}); DPOTrainer.__init__ used to install "
            "TRL's fused LM head, which SPOTrainer's MoE branch and NaryDPOTrainer's reference forward call"
        ]
    problems = []
    for name in FUSED_LM_HEAD_OUTPUTS:
        value = getattr(outputs, name, None)
        if value is None:
            problems.append(f"the fused LM head no longer returns `{name}` (DPOTrainer used to request it)")
        elif tuple(value.shape) != (1, input_ids.size(1) - 1):
            problems.append(
                f"the fused LM head's `{name}` has shape {tuple(value.shape)} for 1 sequence of 3 tokens; SPOTrainer "
                "reads (1, 2), one value per position that predicts a token"
            )
    return problems


def seam_problems(trainer=None) -> list[str]:
    """
    What changed in the installed TRL (and transformers) at the seams SPOTrainer relies on; empty if nothing did.

    Args:
        trainer (`SPOTrainer`, *optional*): a built trainer, to check the attributes `DPOTrainer.__init__` sets and
            the `fused_lm_head=True` forward of its model.

    Returns:
        `list[str]`: one line per broken seam, naming it and what SPOTrainer needs from it.
    """
    problems = []
    for kind, methods in (("overrides", OVERRIDDEN_METHODS), ("calls", CALLED_METHODS)):
        for name, expected in methods.items():
            method = inspect.getattr_static(DPOTrainer, name, None)
            if method is None:
                problems.append(f"DPOTrainer.{name} is gone (SPOTrainer {kind} it)")
                continue
            found = _parameters(getattr(DPOTrainer, name))
            if found[: len(expected)] != expected:
                problems.append(
                    f"DPOTrainer.{name} takes {found}, SPOTrainer {kind} it with {expected} first: check the change"
                )
    for owner, name, code, why in SOURCE_SEAMS:
        method = getattr(owner, name, None)
        if method is None or code not in inspect.getsource(method):
            problems.append(f"{owner.__name__}.{name} no longer contains `{code}`: {why}")
    for name, kind in CLASS_ATTRIBUTES.items():
        value = inspect.getattr_static(DPOTrainer, name, None)
        if not isinstance(value, kind):
            problems.append(
                f"DPOTrainer.{name} is no longer a {kind.__name__} ({value!r}): TRL's model card reads SPOTrainer's"
            )
    if trainer is not None:
        for name, why in INSTANCE_ATTRIBUTES.items():
            if name not in vars(trainer):
                problems.append(f"DPOTrainer.__init__ no longer sets `{name}` (SPOTrainer reads it: {why})")
        problems += fused_lm_head_problems(trainer.accelerator.unwrap_model(trainer.model))
    return problems
