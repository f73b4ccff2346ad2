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
The one module that reaches into TRL below its top-level API.

Everything trl-spo needs from TRL that `import trl` does not export (helpers in `trl.trainer.utils`,
`trl.models.utils`, kernels, the CLI's helpers, underscored names) is imported or re-implemented here, so a TRL upgrade
touches this file only. The supported TRL minor is pinned in `pyproject.toml`; `TESTED_TRL_MINOR` states it at
runtime.

The other contact surface is inheritance, which cannot live here: `SPOTrainer` overrides the `DPOTrainer` seams
`_prepare_dataset`, `_set_signature_columns_if_needed`, `compute_loss`, `get_batch_samples` and `_save_checkpoint`, and
reads the attributes `DPOTrainer.__init__` sets: `_tokenizer`, `_is_vision_dataset`, `_metrics`,
`_total_train_tokens`, `_tp_size`, `aux_loss_enabled`, `router_aux_loss_coef`, `ref_model`. Check these first when the
pin moves.
"""

import warnings

import trl
from packaging.version import Version
from trl.cli.accelerate_config import resolve_accelerate_config_argument
from trl.cli.commands.training import _subtract_subsequence as subtract_subsequence
from trl.generation.vllm_generation import VLLMGeneration
from trl.import_utils import is_vllm_available
from trl.kernels.chunked_divergence import ChunkedDivergenceFunction
from trl.models.utils import _ForwardRedirection, disable_gradient_checkpointing, unwrap_model_for_generation
from trl.trainer.utils import (
    flush_left,
    get_comet_experiment_url,
    get_config_model_id,
    get_trackio_space_url,
    global_then_local_main_first,
    pad,
    use_adapter,
)


TESTED_TRL_MINOR = "1.16"

if Version(trl.__version__).base_version.rsplit(".", 1)[0] != TESTED_TRL_MINOR:
    warnings.warn(
        f"trl-spo is tested against TRL {TESTED_TRL_MINOR}.x, but TRL {trl.__version__} is installed. SPOTrainer wraps "
        "DPOTrainer internals that may have changed; see trl_spo/_trl_compat.py.",
        stacklevel=2,
    )

__all__ = [
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
