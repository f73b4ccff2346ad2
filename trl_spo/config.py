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

import math
from dataclasses import dataclass, field, fields
from typing import Any

from trl import DPOConfig


REGULARIZERS = ("global_kl", "dataset_kl")
VLLM_MODES = ("colocate", "server")

# DPOConfig fields with no SPO meaning: the value SPOConfig requires, and why any other value has no SPO meaning.
DPO_ONLY_FIELDS = {
    "loss_type": (["sigmoid"], "SPO has its own preference loss (Eq. 8); DPO's loss variants do not apply"),
    "loss_weights": (None, "SPO's loss is not a weighted mix of DPO loss types"),
    "ld_alpha": (None, "LD-DPO reweights DPO's log-ratios; SPO's preference term has no reference ratio"),
    "f_divergence_type": ("reverse_kl", "SPO's regulariser is always KL(pi_theta || pi_ref) (Eq. 13)"),
    "f_alpha_divergence_coef": (0.5, "it only applies to f_divergence_type='alpha_divergence'"),
    "label_smoothing": (0.0, "robust DPO / EXO smoothing has no SPO counterpart"),
    "use_weighting": (False, "SPO weights pairs with its own stop-gradient mu; set `gamma` instead"),
    "discopop_tau": (0.05, "it only applies to DPO's 'discopop' loss"),
    "precompute_ref_log_probs": (False, "SPO never uses reference log-probs of the dataset pairs"),
    "precompute_ref_batch_size": (None, "SPO never uses reference log-probs of the dataset pairs"),
    "sync_ref_model": (False, "SPO's KL anchor pi_ref is fixed; TR-DPO reference syncing is not part of SPO"),
}


@dataclass
class SPOConfig(DPOConfig):
    r"""
    Configuration class for the [`SPOTrainer`].

    SPO ([Soft Preference Optimization](https://huggingface.co/papers/2405.00747)) keeps every field of [`~trl.DPOConfig`] and
    changes what two of them mean: the preference term has its own softness `alpha`, and `beta` weights a *global*
    token-wise KL(π_θ ‖ π_ref) measured on completions sampled online from the policy. DPO fields that have no meaning
    for SPO (other loss types, f-divergences, precomputed reference log-probs, ...) are rejected when set to anything
    but their default, so a migrated DPO config never silently trains something else.

    Using [`~transformers.HfArgumentParser`] we can turn this class into
    [argparse](https://docs.python.org/3/library/argparse#module-argparse) arguments that can be specified on the
    command line.

    Parameters:
        > Parameters that control the SPO loss

        alpha (`float`, *optional*, defaults to `0.01`):
            Softness of the preference loss (Eq. 8 of the paper). The loss's unique minimiser in the tabular model is
            `Softmax(r / alpha)` (Theorem 1): `alpha = 1` recovers the Bradley-Terry expert distribution, smaller
            values sharpen it, and `alpha = 0` is the deterministic `argmax` (Eq. 9). Must be `>= 0`. The paper gives
            grids, not a default: `{0.001, 0.01}` on Llama-2-7B and Llama-3-8B (best on Llama-2-7B: `0.01`, Table 7)
            and `0.001` on TinyStories (App. E). The loss is DPO's log-loss divided by `alpha`: on pairs
            it starts near `log(2) / alpha` (69.3 at `alpha = 0.01`) where DPO's starts at `log(2) = 0.693`; the
            logged `loss/preference_normalized` (`alpha` times the preference loss) is on DPO's scale. `alpha` sets
            how many nats apart two answers may sit per unit of reward, on *sequence* log-probabilities: pick it
            around `1 / (median |log π(chosen) - log π(rejected)|)` of your pairs under the starting model.
        beta (`float`, *optional*, defaults to `0.01`):
            Weight of the global KL regulariser `KL(π_θ ‖ π_ref)` (Eq. 5 and 13). As in DPO, a higher β keeps the
            policy closer to the reference model, but here it acts on freshly sampled completions rather than on the
            dataset pairs. `0` switches the regulariser off and skips online generation. Must be `>= 0`. The paper's
            grids: `{0.001, 0.01}` on Llama-2-7B and Llama-3-8B (best on Llama-2-7B: `0.01`, Table 7) and
            `{0.01, 0.1}` on TinyStories (App. E).
        gamma (`float`, *optional*, defaults to `0.01`):
            Exponent of the sample weight μ of Eq. 12, `μ = 2 σ(s - mean(s))` with `s = (π(y_w) + π(y_l))^γ`. μ
            changes the training dynamics but not the fixed point (Theorem 2). `0` gives μ = 1 ("SPO-basic"); the
            paper uses `0.01` without tuning. Must be `>= 0`.
        regularizer (`str`, *optional*, defaults to `"global_kl"`):
            Where the KL regulariser is measured. `"global_kl"`: the paper's token-wise KL on online samples
            (Eq. 13). `"dataset_kl"`: the paper's ablation "in-dataset (tokenwise)" (Table 6), the same token-wise KL
            measured on the dataset's own completions instead of on samples from the policy; no generation, but a
            reference forward on every batch, as DPO has. `beta = 0` turns either off (no reference model, no
            generation).

        > Parameters for best-of-n and ranked data (section 5 of the paper)

        rank_weight_decay (`float`, *optional*, defaults to `1.0`):
            η of the decayed rank weights `η^k μ_k` of Eq. 15 (App. E.3 uses `{1, 0.5}`). Must be `> 0`; `1`
            disables the decay. Only used with ranked data.

        > Parameters that control the online samples for the global KL

        generation_interval (`int`, *optional*, defaults to `8`):
            Number of optimizer steps between two refreshes of the KL sample buffer (T in Algorithm 1). The buffer
            sampled at step `k * generation_interval` is reused until the next refresh. Must be `>= 1`. The default
            is the paper's T on TinyStories (App. E.3).
        kl_batch_size (`int`, *optional*):
            Number of completions sampled per device at each refresh. If `None`, half the number of preference pairs
            one device sees per optimizer step (`per_device_train_batch_size * gradient_accumulation_steps // 2`,
            at least 1), the ratio the paper uses (16 pairs, 8 samples).
        max_completion_length (`int`, *optional*, defaults to `256`):
            Maximum number of tokens of a sampled completion.
        temperature (`float`, *optional*, defaults to `1.0`):
            Temperature for sampling. The KL estimator of Eq. 13 assumes samples from π_θ itself, so leave it at `1.0`
            unless you mean to estimate the KL under a tempered sampler.
        top_p (`float`, *optional*, defaults to `1.0`):
            Cumulative probability of the top tokens to sample from. Must be in `(0, 1]`.
        top_k (`int`, *optional*, defaults to `0`):
            Number of highest-probability tokens to sample from. `0` disables top-k filtering.
        min_p (`float`, *optional*):
            Minimum token probability, scaled by the probability of the most likely token. Must be in `[0, 1]`.
        repetition_penalty (`float`, *optional*, defaults to `1.0`):
            Penalty on tokens already present in the prompt and the completion so far. Must be `> 0`.
        generation_kwargs (`dict[str, Any]`, *optional*):
            Extra keyword arguments for [`~transformers.GenerationConfig`]; they override the fields above. Settings
            that stop sampling from the policy (`do_sample=False`, `num_beams > 1`, `penalty_alpha`, a temperature
            of 0) are refused: Eq. 13 is an expectation over samples from π_θ.
        ds3_gather_for_generation (`bool`, *optional*, defaults to `True`):
            Under DeepSpeed ZeRO-3, gather the policy's weights for generation (faster). `False` streams them layer by
            layer, which trains models that do not fit on one device, at the cost of slower generation.

        > Parameters that control vLLM sampling of the KL completions (as in [`~trl.GRPOConfig`])

        use_vllm (`bool`, *optional*, defaults to `False`):
            Sample the KL completions with vLLM (TRL's `VLLMGeneration`) instead of `model.generate`. The policy's
            weights are pushed to vLLM before every refresh. Requires `vllm`; untested in this repository (no GPU).
        vllm_mode (`str`, *optional*, defaults to `"colocate"`):
            `"colocate"`: vLLM runs in each training process; `"server"`: a separate `trl vllm-serve` process.
        vllm_server_base_url (`str`, *optional*):
            Base URL of the vLLM server (server mode); overrides `vllm_server_host` and `vllm_server_port`.
        vllm_server_host (`str`, *optional*, defaults to `"0.0.0.0"`):
            Host of the vLLM server (server mode).
        vllm_server_port (`int`, *optional*, defaults to `8000`):
            Port of the vLLM server (server mode).
        vllm_server_timeout (`float`, *optional*, defaults to `240.0`):
            Seconds to wait for the vLLM server to come up (server mode).
        vllm_group_port (`int`, *optional*, defaults to `51216`):
            Port of the weight-update group (server mode).
        vllm_tensor_parallel_size (`int`, *optional*, defaults to `1`):
            Tensor parallel size of the colocated vLLM engine.
        vllm_gpu_memory_utilization (`float`, *optional*, defaults to `0.3`):
            Share of GPU memory the colocated vLLM engine may take.
        vllm_max_model_length (`int`, *optional*):
            Context length of the colocated vLLM engine; the model's own if `None`.
        vllm_enable_sleep_mode (`bool`, *optional*, defaults to `False`):
            Release the colocated engine's memory between refreshes (its weights are re-pushed at each refresh).
        vllm_model_impl (`str`, *optional*, defaults to `"vllm"`):
            Model implementation vLLM uses: `"vllm"` or `"transformers"`.

    > [!NOTE]
    > These parameters have default values different from [`~trl.DPOConfig`]: `beta` defaults to `0.01` instead of
    > `0.1`. The paper gives grids, not defaults; `0.01` is the best of its `beta` grid on Llama-2-7B (Table 7).
    """

    _VALID_DICT_FIELDS = DPOConfig._VALID_DICT_FIELDS + ["generation_kwargs"]

    # Parameters that control the SPO loss
    alpha: float = field(
        default=0.01,
        metadata={
            "help": "Softness of the preference loss (Eq. 8). Its tabular minimiser is Softmax(r / alpha): 1 recovers "
            "the Bradley-Terry expert distribution, 0 is argmax (Eq. 9). Must be >= 0. The loss scales as 1/alpha: "
            "log(2)/alpha at a 50/50 pair (69.3 at 0.01, where DPO shows 0.693); loss/preference_normalized = alpha * "
            "loss/preference is on DPO's scale. Pick it around 1 / (median |log pi(chosen) - log pi(rejected)|) of "
            "your pairs under the starting model (sequence log-probs)."
        },
    )
    beta: float = field(
        default=0.01,
        metadata={
            "help": "Weight of the global KL(pi_theta || pi_ref) measured on completions sampled online from the "
            "policy (Eq. 5, 13). Higher keeps the policy closer to the reference. 0 disables the regulariser and "
            "skips generation. Must be >= 0."
        },
    )
    gamma: float = field(
        default=0.01,
        metadata={
            "help": "Exponent of the stop-gradient sample weight mu = 2 sigmoid(s - mean(s)), s = (pi(y_w) + "
            "pi(y_l))^gamma (Eq. 12). 0 gives mu = 1 (SPO-basic). Must be >= 0."
        },
    )
    regularizer: str = field(
        default="global_kl",
        metadata={
            "help": "Where the KL regulariser is measured: 'global_kl' (token-wise KL on online samples, Eq. 13) or "
            "'dataset_kl' (the same KL on the dataset's own completions: the paper's Table 6 ablation). beta = 0 "
            "turns it off.",
            "choices": list(REGULARIZERS),
        },
    )

    # Parameters for best-of-n and ranked data
    rank_weight_decay: float = field(
        default=1.0,
        metadata={
            "help": "eta of the decayed rank weights eta^k mu_k of Eq. 15 (App. E.3 uses 1 and 0.5). Must be > 0; 1 "
            "disables the decay. Only used with ranked data."
        },
    )
    # Parameters that control the online samples for the global KL
    generation_interval: int = field(
        default=8,
        metadata={
            "help": "Optimizer steps between two refreshes of the KL sample buffer (T in Algorithm 1). Must be >= 1."
        },
    )
    kl_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Completions sampled per device at each refresh. Defaults to half the preference pairs one device "
            "sees per optimizer step (per_device_train_batch_size * gradient_accumulation_steps // 2, at least 1)."
        },
    )
    max_completion_length: int = field(
        default=256,
        metadata={"help": "Maximum number of tokens of a sampled completion."},
    )
    temperature: float = field(
        default=1.0,
        metadata={
            "help": "Temperature for sampling. Eq. 13 assumes samples from pi_theta itself: leave at 1.0 unless you "
            "mean to estimate the KL under a tempered sampler."
        },
    )
    top_p: float = field(
        default=1.0,
        metadata={"help": "Cumulative probability of the top tokens to sample from. Must be in (0, 1]."},
    )
    top_k: int = field(
        default=0,
        metadata={"help": "Number of highest-probability tokens to sample from. 0 disables top-k filtering."},
    )
    min_p: float | None = field(
        default=None,
        metadata={
            "help": "Minimum token probability, scaled by the probability of the most likely token. Must be in [0, 1]."
        },
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata={"help": "Penalty on tokens already in the prompt and completion so far. Must be > 0."},
    )
    generation_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Extra keyword arguments for `GenerationConfig`; they override the sampling fields above. "
            "Settings that stop sampling from the policy (do_sample=False, beams, contrastive search) are refused."
        },
    )
    ds3_gather_for_generation: bool = field(
        default=True,
        metadata={
            "help": "Under DeepSpeed ZeRO-3, gather the policy weights for generation (faster). False streams them, "
            "which fits larger models at the cost of slower generation."
        },
    )

    # Parameters that control vLLM sampling of the KL completions
    use_vllm: bool = field(
        default=False,
        metadata={
            "help": "Sample the KL completions with vLLM instead of `model.generate`; weights are pushed to vLLM "
            "before every refresh. Requires `vllm`."
        },
    )
    vllm_mode: str = field(
        default="colocate",
        metadata={
            "help": "'colocate' (vLLM in each training process) or 'server' (a `trl vllm-serve` process).",
            "choices": list(VLLM_MODES),
        },
    )
    vllm_server_base_url: str | None = field(
        default=None,
        metadata={"help": "Base URL of the vLLM server (server mode); overrides host and port."},
    )
    vllm_server_host: str = field(default="0.0.0.0", metadata={"help": "Host of the vLLM server (server mode)."})
    vllm_server_port: int = field(default=8000, metadata={"help": "Port of the vLLM server (server mode)."})
    vllm_server_timeout: float = field(
        default=240.0, metadata={"help": "Seconds to wait for the vLLM server to come up (server mode)."}
    )
    vllm_group_port: int = field(default=51216, metadata={"help": "Port of the weight-update group (server mode)."})
    vllm_tensor_parallel_size: int = field(
        default=1, metadata={"help": "Tensor parallel size of the colocated vLLM engine."}
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "Share of GPU memory the colocated vLLM engine may take."}
    )
    vllm_max_model_length: int | None = field(
        default=None, metadata={"help": "Context length of the colocated vLLM engine; the model's own if None."}
    )
    vllm_enable_sleep_mode: bool = field(
        default=False,
        metadata={"help": "Release the colocated engine's memory between refreshes (weights re-pushed each refresh)."},
    )
    vllm_model_impl: str = field(
        default="vllm", metadata={"help": "Model implementation vLLM uses: 'vllm' or 'transformers'."}
    )

    def __post_init__(self):
        super().__post_init__()
        self._reject_dpo_only_fields()
        self._validate_spo_fields()

    @property
    def uses_global_kl(self) -> bool:
        """Whether the trainer samples online completions for the global KL."""
        return self.regularizer == "global_kl" and self.beta > 0

    @property
    def uses_dataset_kl(self) -> bool:
        """Whether the KL is measured on the dataset's completions (the Table 6 ablation)."""
        return self.regularizer == "dataset_kl" and self.beta > 0

    @property
    def needs_reference(self) -> bool:
        """Whether the trainer reads the reference model: only for the KL term."""
        return self.uses_global_kl or self.uses_dataset_kl

    def _reject_dpo_only_fields(self):
        for name, (expected, why) in DPO_ONLY_FIELDS.items():
            value = getattr(self, name)
            if value != expected:
                raise ValueError(
                    f"`{name}={value!r}` is a DPO option that SPOConfig does not support: {why}. "
                    f"Leave it at its default ({expected!r}) or use DPOTrainer."
                )

    def _validate_spo_fields(self):
        def check(name: str, ok: bool, expected: str):
            if not ok:
                raise ValueError(f"`{name}` must be {expected}, got {getattr(self, name)!r}.")

        def is_number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        check("alpha", is_number(self.alpha) and self.alpha >= 0, "a finite number >= 0")
        check("beta", is_number(self.beta) and self.beta >= 0, "a finite number >= 0")
        check("gamma", is_number(self.gamma) and self.gamma >= 0, "a finite number >= 0")
        if self.regularizer == "none":
            raise ValueError("`regularizer='none'` is gone: `beta=0` turns the KL regulariser off.")
        check("regularizer", self.regularizer in REGULARIZERS, f"one of {list(REGULARIZERS)}")
        check(
            "rank_weight_decay",
            is_number(self.rank_weight_decay) and self.rank_weight_decay > 0,
            "a finite number > 0",
        )
        check(
            "generation_interval",
            isinstance(self.generation_interval, int) and self.generation_interval >= 1,
            "an integer >= 1 (optimizer steps between two refreshes of the KL samples)",
        )
        check(
            "kl_batch_size",
            self.kl_batch_size is None or (isinstance(self.kl_batch_size, int) and self.kl_batch_size >= 1),
            "None or an integer >= 1",
        )
        check(
            "max_completion_length",
            isinstance(self.max_completion_length, int) and self.max_completion_length >= 1,
            "an integer >= 1",
        )
        check("temperature", is_number(self.temperature) and self.temperature > 0, "a finite number > 0")
        check("top_p", is_number(self.top_p) and 0 < self.top_p <= 1, "in (0, 1]")
        check("top_k", isinstance(self.top_k, int) and self.top_k >= 0, "an integer >= 0")
        check("min_p", self.min_p is None or (is_number(self.min_p) and 0 <= self.min_p <= 1), "None or in [0, 1]")
        check("repetition_penalty", is_number(self.repetition_penalty) and self.repetition_penalty > 0, "> 0")
        check("vllm_mode", self.vllm_mode in VLLM_MODES, f"one of {list(VLLM_MODES)}")
        check(
            "vllm_gpu_memory_utilization",
            is_number(self.vllm_gpu_memory_utilization) and 0 < self.vllm_gpu_memory_utilization <= 1,
            "in (0, 1]",
        )
        check(
            "vllm_tensor_parallel_size",
            isinstance(self.vllm_tensor_parallel_size, int) and self.vllm_tensor_parallel_size >= 1,
            "an integer >= 1",
        )
        if self.use_vllm and not self.ds3_gather_for_generation:
            raise ValueError(
                "`use_vllm=True` needs `ds3_gather_for_generation=True`: the weights pushed to vLLM are gathered."
            )
        check(
            "generation_kwargs",
            self.generation_kwargs is None or isinstance(self.generation_kwargs, dict),
            "None or a dict (a JSON string on the command line)",
        )
        if self.generation_kwargs and self.uses_global_kl:
            not_sampling = _settings_that_stop_sampling(self.generation_kwargs)
            if not_sampling:
                raise ValueError(
                    f"`generation_kwargs` sets {', '.join(not_sampling)}, which stops the KL completions from being "
                    "samples of the policy: the global KL of Eq. 13 is an expectation over y ~ π_θ(·|x), and greedy, "
                    "beam or contrastive decoding makes it another quantity. Remove these keys (use `temperature`, "
                    "`top_p`, `top_k`, `min_p` to shape the sampler)."
                )

    @property
    def resolved_kl_batch_size(self) -> int:
        """Completions sampled per device at each refresh, with the `None` default resolved."""
        if self.kl_batch_size is not None:
            return self.kl_batch_size
        return max(1, self.per_device_train_batch_size * self.gradient_accumulation_steps // 2)


def _settings_that_stop_sampling(generation_kwargs: dict[str, Any]) -> list[str]:
    """The `generation_kwargs` entries that turn sampling from the policy into a deterministic search."""
    found = []
    for name, stops in (
        ("do_sample", lambda v: v is False),  # greedy decoding
        ("num_beams", lambda v: v is not None and v > 1),  # beam search
        ("num_beam_groups", lambda v: v is not None and v > 1),  # diverse beam search
        ("penalty_alpha", lambda v: v is not None and v > 0),  # contrastive search
        ("temperature", lambda v: v is not None and v <= 0),  # vLLM reads 0 as greedy
        ("use_beam_search", lambda v: bool(v)),  # vLLM's beam search
    ):
        if name in generation_kwargs and stops(generation_kwargs[name]):
            found.append(f"`{name}={generation_kwargs[name]!r}`")
    return found


SPO_FIELDS = tuple(f.name for f in fields(SPOConfig) if f.name not in {f.name for f in fields(DPOConfig)})
