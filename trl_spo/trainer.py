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

import os
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from transformers import (
    BitsAndBytesConfig,
    DataCollator,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    TrainerCallback,
    is_wandb_available,
)
from transformers.trainer_utils import EvalPrediction, get_last_checkpoint
from trl import DPOTrainer, is_conversational

from . import _trl_compat
from ._trl_compat import (
    disable_gradient_checkpointing,
    forward_through_wrapper,
    global_then_local_main_first,
    reference_adapter,
)
from .config import SPOConfig
from .data import (
    LABEL_COLUMNS,
    DataCollatorForNaryPreference,
    check_pairwise_completions,
    detect_preference_format,
    order_by_ranking,
    prepare_nary_dataset,
    scatter_sequence_logps,
    warn_identical_completions,
)
from .divergence import NonFiniteLogitsGuard, check_finite_terms, divergence_hints
from .kl import TokenKL, backbone_hidden_states, token_kl
from .losses import (
    dpo_plackett_luce_loss,
    dpo_softmax_loss,
    get_preference_loss,
    global_kl_per_sample,
    kendall_tau,
    spo_ranking_sample_scores,
    spo_ranking_sample_weights,
    spo_sample_scores,
    spo_sample_weights,
)
from .model_card import spo_model_card
from .sampling import (
    KLSamples,
    OnlineKLSamplingCallback,
    RecentPrompts,
    prompts_from_batch,
    sample_completions,
    sample_completions_with_vllm,
)


if is_wandb_available():
    import wandb

SPO_STATE_FILE = "spo_state_rank{rank}.pt"


@dataclass
class SPOTerms:
    """
    What one SPO forward produces for a micro-batch of B rows with up to n responses each (n = 2 for pairs), and K KL
    samples in this micro-batch's shard.

    Attributes:
        loss (`torch.Tensor`, scalar): `preference_loss + beta * kl_term` (+ the MoE auxiliary loss, if any).
        preference_loss (`torch.Tensor`, scalar): mean over rows of Eq. 10, 14 or 15 (or of a baseline).
        kl_term (`torch.Tensor`, scalar): this shard's share of KL_hat (Eq. 13), scaled so that the shares of one
            optimizer step add up to KL_hat once the trainer divides by the accumulation steps.
        response_logps (`torch.Tensor`, shape `(B, n)`): sequence log-probs, detached, in labelled order: `[chosen,
            rejected]` for pairs, best to worst for rankings, dataset order for best-of-n.
        response_mask (`torch.Tensor`, shape `(B, n)`): which responses exist (rows may have fewer than n).
        winner_index (`torch.Tensor`, shape `(B,)`): column of the labelled best response in `response_logps`.
        weights (`torch.Tensor`, *optional*): μ of Eq. 12, `(B,)` (or `(B, n - 1)` per rank term), when `gamma > 0`.
        per_sample_kl (`torch.Tensor`, shape `(K,)`, *optional*): Σ_t KL on each sample of the shard, detached.
        token_kl (`TokenKL`, *optional*): per-token KL and entropy on the shard.
        outputs: the fused LM head's outputs on the sequences (per-token entropy, mean logits, top-1 flags).
    """

    loss: torch.Tensor
    preference_loss: torch.Tensor
    kl_term: torch.Tensor
    response_logps: torch.Tensor
    response_mask: torch.Tensor
    winner_index: torch.Tensor
    weights: torch.Tensor | None
    per_sample_kl: torch.Tensor | None
    token_kl: TokenKL | None
    outputs: object


class SPOTrainer(DPOTrainer):
    """
    Trainer for Soft Preference Optimization (SPO), from the paper [Soft Preference Optimization: Aligning Language
    Models to Expert Distributions](https://arxiv.org/abs/2405.00747).

    A drop-in replacement for [`~trl.DPOTrainer`]: the constructor takes the same arguments, and the tokenisation,
    collation, reference-model handling (including `ref_model=None` and PEFT's disabled adapter) and metrics plumbing
    are DPO's. Two things change:

    - the preference term is SPO's (Eq. 10), on the policy's sequence log-probs only: no reference forward on the
      pairs;
    - `beta` weights a global token-wise KL(π_θ ‖ π_ref) (Eq. 13) on completions sampled from the policy every
      `generation_interval` optimizer steps and reused in between.

    Example:

    ```python
    >>> from datasets import load_dataset
    >>> from trl_spo import SPOConfig, SPOTrainer

    >>> dataset = load_dataset("trl-lib/ultrafeedback_binarized", split="train")
    >>> trainer = SPOTrainer(
    ...     model="Qwen/Qwen2.5-0.5B-Instruct",
    ...     args=SPOConfig(output_dir="Qwen2.5-0.5B-SPO", alpha=0.01, beta=0.01),
    ...     train_dataset=dataset,
    ... )
    >>> trainer.train()
    ```

    Args:
        model (`str` or [`~transformers.PreTrainedModel`] or [`~peft.PeftModel`]):
            Model to train: a model id or local path, a causal LM, or a PEFT model, as for [`~trl.DPOTrainer`].
        ref_model ([`~transformers.PreTrainedModel`], *optional*):
            π_ref of the global KL. If `None`, a copy of `model` is loaded from its path, or, for a PEFT model, the
            base model with the adapter disabled is used (no second copy of the weights). Not loaded at all when the
            KL is off (`beta=0` or `regularizer="none"`).
        args ([`SPOConfig`], *optional*):
            Training configuration. A [`~trl.DPOConfig`] is refused: SPO gives `beta` another meaning.
        data_collator, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks, optimizers,
        quantization_config, peft_config:
            As for [`~trl.DPOTrainer`]. Datasets are preference datasets (`prompt`/`chosen`/`rejected`, standard or
            conversational, explicit or implicit prompt).
    """

    _tag_names = ["trl", "spo"]
    _name = "SPO"
    _paper = {
        "title": "Soft Preference Optimization: Aligning Language Models to Expert Distributions",
        "id": "2405.00747",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{sharifnassab2024soft,
                title        = {{Soft Preference Optimization: Aligning Language Models to Expert Distributions}},
                author       = {Arsalan Sharifnassab and Saber Salehkaleybar and Sina Ghiassian and Surya Kanoria and Dale Schuurmans},
                year         = 2024,
                eprint       = {arXiv:2405.00747},
            }"""),
    }

    def __init__(
        self,
        model: "str | PreTrainedModel",
        ref_model: PreTrainedModel | None = None,
        args: SPOConfig | None = None,
        data_collator: DataCollator | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | DatasetDict
        | IterableDatasetDict
        | dict[str, Dataset | IterableDataset]
        | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        quantization_config: "BitsAndBytesConfig | None" = None,
        peft_config=None,
    ):
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = SPOConfig(f"{str(model_name).rstrip('/').split('/')[-1]}-SPO")
        elif not isinstance(args, SPOConfig):
            raise TypeError(
                f"SPOTrainer needs an `SPOConfig`, got `{type(args).__name__}`. SPO gives `beta` another meaning (the "
                "weight of the global KL) and adds `alpha`, `gamma` and the sampling fields: build the config with "
                "`SPOConfig(...)` using the same keyword arguments."
            )
        if train_dataset is not None:
            self.preference_format = _dataset_format(train_dataset)
            if self.preference_format == "pairwise" and args.nary_loss_type != "spo":
                raise ValueError(
                    f"`nary_loss_type={args.nary_loss_type!r}` is a baseline for best-of-n or ranked data, but the "
                    "train dataset is pairwise. Use DPOTrainer for pairwise DPO."
                )
            if self.preference_format == "best_of_n" and args.nary_loss_type == "pl_dpo":
                raise ValueError(
                    "`nary_loss_type='pl_dpo'` needs full rankings, but the train dataset is best-of-n (only the best "
                    "response is labelled). On best-of-n data use `nary_loss_type='s_dpo'`."
                )

        super().__init__(
            model=model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        if self._is_vision_dataset and args.uses_global_kl:
            raise NotImplementedError(
                "The global KL samples completions from text prompts; vision datasets are not supported with it yet. "
                "Set `beta=0` or `regularizer='none'` to train on the preference term alone."
            )

        if self.preference_format != "pairwise" and data_collator is None:
            # DPOTrainer built its pairwise collator; n-ary rows need every (row, response) pair in one batch.
            self.data_collator = DataCollatorForNaryPreference(
                pad_token_id=self._tokenizer.pad_token_id,
                max_length=args.max_length,
                truncation_mode=args.truncation_mode,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
        self.alpha = args.alpha
        self.gamma = args.gamma
        self.kl_batch_size = args.resolved_kl_batch_size
        self._kl_samples: KLSamples | None = None
        self._accumulation_index = 0
        self._resume_from_checkpoint: str | None = None
        self._recent_prompts = RecentPrompts(
            capacity=max(self.kl_batch_size, args.per_device_train_batch_size * args.gradient_accumulation_steps)
        )

        if not args.needs_reference:
            # DPOTrainer loaded a reference for its log-ratios; without the KL, SPO never reads it.
            self.ref_model = None
        if not args.uses_global_kl:
            self.kl_sampling_callback = self.vllm_generation = None
            return
        self._check_eos_token("to end the completions it samples for the global KL")

        eos_token_ids = {self._tokenizer.eos_token_id}
        model_eos = self.model.generation_config.eos_token_id
        eos_token_ids.update(model_eos if isinstance(model_eos, list) else [model_eos])
        self.eos_token_ids = sorted(i for i in eos_token_ids if i is not None)
        generation_kwargs = {
            "max_new_tokens": args.max_completion_length,
            "do_sample": True,
            "pad_token_id": self._tokenizer.pad_token_id,
            "bos_token_id": self._tokenizer.bos_token_id,
            "eos_token_id": self.eos_token_ids,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "top_k": args.top_k,
            "min_p": args.min_p,
            "repetition_penalty": args.repetition_penalty,
            **(args.generation_kwargs or {}),
        }
        self.generation_config = GenerationConfig(**generation_kwargs, disable_compile=True)
        self.vllm_generation = self._build_vllm_generation(args) if args.use_vllm else None
        self.kl_sampling_callback = OnlineKLSamplingCallback(
            refresh=self.refresh_kl_samples,
            needs_refresh=lambda: self._kl_samples is None,
            restore=self._restore_on_resume,
            generation_interval=args.generation_interval,
            set_metric=lambda name, value: self._metrics["train"].__setitem__(name, [value]),
        )
        self.add_callback(self.kl_sampling_callback)

    # ----------------------------------------------------------------------------------------------------------------
    # Data

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        preference_format = _dataset_format(dataset)
        first_example = next(iter(dataset))
        if args.uses_global_kl:
            self._check_eos_token("to end the completions it samples for the global KL")
        elif not is_conversational(first_example) and "prompt_ids" not in first_example:
            self._check_eos_token(f"to end every completion of the standard (plain-text) {dataset_name} dataset")
        if "prompt_ids" not in first_example:
            warn_identical_completions(dataset, preference_format, dataset_name)
        if preference_format != self.preference_format:
            raise ValueError(
                f"The {dataset_name} dataset is in the {preference_format} format but the train dataset is "
                f"{self.preference_format}: one trainer collates one format. Convert it (see `trl_spo.data`)."
            )
        if preference_format != "pairwise":
            with global_then_local_main_first():
                return prepare_nary_dataset(
                    dataset,
                    processing_class,
                    preference_format,
                    max_length=args.max_length,
                    num_proc=args.dataset_num_proc if isinstance(dataset, Dataset) else None,
                    dataset_name=dataset_name,
                    truncation_mode=args.truncation_mode,
                )
        if {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(first_example):
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        dataset = dataset.map(check_pairwise_completions, with_indices=True, fn_kwargs={"dataset_name": dataset_name})
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _check_eos_token(self, needed_for: str) -> None:
        # DPOTrainer would fail deep inside its tokenisation (`endswith(None)`), and generation would never stop.
        if self._tokenizer.eos_token is None:
            raise ValueError(
                f"SPOTrainer needs a tokenizer with an EOS token {needed_for}, but "
                f"`{type(self._tokenizer).__name__}.eos_token` is None. Set the token that ends your model's answers "
                'and pass the tokenizer as `processing_class`, e.g. `tokenizer.eos_token = "<|im_end|>"` for a '
                'ChatML model or `"</s>"` for Llama-2 (it must be in the vocabulary).'
            )

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.preference_format != "pairwise":
            self._signature_columns = ["prompt_ids", "completions_ids", *LABEL_COLUMNS.values()]

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # The batches of an optimizer step are fetched before the step begins, so their prompts are in the pool when
        # the sampling callback refreshes the KL samples at `on_step_begin`.
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.args.uses_global_kl:
            for batch in batch_samples:
                self._recent_prompts.add(prompts_from_batch(batch))
        return batch_samples, num_items_in_batch

    # ----------------------------------------------------------------------------------------------------------------
    # Online samples for the global KL

    def _build_vllm_generation(self, args: SPOConfig):
        if not _trl_compat.is_vllm_available():
            raise ImportError("`use_vllm=True` needs vLLM: `pip install vllm` (on a machine with a supported GPU).")
        return _trl_compat.VLLMGeneration(
            model=self.model,
            accelerator=self.accelerator,
            processing_class=self.processing_class,
            mode=args.vllm_mode,
            server_base_url=args.vllm_server_base_url,
            server_host=args.vllm_server_host,
            server_port=args.vllm_server_port,
            group_port=args.vllm_group_port,
            server_timeout=args.vllm_server_timeout,
            tensor_parallel_size=args.vllm_tensor_parallel_size,
            gpu_memory_utilization=args.vllm_gpu_memory_utilization,
            max_model_length=args.vllm_max_model_length,
            max_num_seqs=self.kl_batch_size * args.vllm_tensor_parallel_size,
            enable_sleep_mode=args.vllm_enable_sleep_mode,
            model_impl=args.vllm_model_impl,
            trust_remote_code=args.trust_remote_code,
            repetition_penalty=args.repetition_penalty,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            min_p=0.0 if args.min_p is None else args.min_p,
            max_completion_length=args.max_completion_length,
            logprobs=None,  # Eq. 13 recomputes the policy's distributions; vLLM's log-probs are not needed
            generation_kwargs=args.generation_kwargs,
        )

    def refresh_kl_samples(self, step: int) -> None:
        """Sample `kl_batch_size` completions from the current policy for the most recent prompts (Algorithm 1)."""
        prompts = self._recent_prompts.latest(self.kl_batch_size)
        if self.vllm_generation is not None:
            samples = sample_completions_with_vllm(
                self.vllm_generation,
                prompts,
                pad_token_id=self._tokenizer.pad_token_id,
                eos_token_ids=self.eos_token_ids,
                step=step,
                device=self.accelerator.device,
            )
        else:
            samples = sample_completions(
                self.model_wrapped,
                self.accelerator,
                prompts,
                self.generation_config,
                pad_token_id=self._tokenizer.pad_token_id,
                eos_token_ids=self.eos_token_ids,
                step=step,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
                logits_guard=NonFiniteLogitsGuard(step + 1, divergence_hints(self.model, self.args.learning_rate)),
            )
        self._set_kl_samples(samples)
        lengths = self.accelerator.gather(samples.completion_lengths.float())
        clipped = self.accelerator.gather((samples.completion_lengths >= self.args.max_completion_length).float())
        self._metrics["train"]["samples/mean_length"].append(lengths.mean().item())
        self._metrics["train"]["samples/clipped_ratio"].append(clipped.mean().item())

    def _set_kl_samples(self, samples: KLSamples) -> None:
        samples.reference_hidden = self._reference_hidden_states(samples.input_ids, samples.attention_mask)
        self._kl_samples = samples

    def _reference_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # π_ref and the samples stay fixed until the next refresh, so the reference forward runs once per refresh.
        with torch.no_grad(), self.compute_loss_context_manager():
            if self.ref_model is None:  # PEFT: the reference is the policy with its adapter disabled
                unwrapped = self.accelerator.unwrap_model(self.model_wrapped)
                with (
                    reference_adapter(unwrapped),
                    disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
                ):
                    return forward_through_wrapper(
                        self.model_wrapped,
                        unwrapped,
                        backbone_hidden_states,
                        unwrapped,
                        input_ids,
                        attention_mask,
                    )
            unwrapped_ref = self.accelerator.unwrap_model(self.ref_model)
            return forward_through_wrapper(
                self.ref_model,
                unwrapped_ref,
                backbone_hidden_states,
                unwrapped_ref,
                input_ids,
                attention_mask,
            )

    def _next_kl_shard(self) -> KLSamples | None:
        # Micro-batch i of an optimizer step with G micro-batches takes the i-th of G slices of the buffer, so the
        # KL is computed once per optimizer step whatever the gradient accumulation.
        num_shards = self.current_gradient_accumulation_steps
        index = self._accumulation_index % num_shards
        self._accumulation_index = (index + 1) % num_shards
        shard = self._kl_samples.shard(index, num_shards)
        return shard if len(shard) > 0 else None

    # ----------------------------------------------------------------------------------------------------------------
    # Loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        kl_shard = None
        if mode == "train" and self.args.uses_global_kl:
            kl_shard = self._next_kl_shard()
        unwrapped = self.accelerator.unwrap_model(model)
        # One pass through the wrapper for both terms: DDP registers a single backward, ZeRO-3 keeps the weights the
        # KL's LM-head projection reads gathered.
        terms = forward_through_wrapper(model, unwrapped, self._spo_terms, unwrapped, inputs, kl_shard)
        if mode == "train":
            self._check_finite(terms)
        self._log_terms(mode, inputs, terms)
        if return_outputs:
            warnings.warn(
                "`return_outputs=True` recomputes the logits with an extra forward pass; it is deprecated in "
                "DPOTrainer and kept only for `compute_metrics`.",
                FutureWarning,
                stacklevel=2,
            )
            with torch.no_grad():
                model_kwargs = {k: v for k, v in inputs.items() if k != "completion_mask"}
                return terms.loss, model(**model_kwargs)
        return terms.loss

    def _check_finite(self, terms: SPOTerms) -> None:
        # A non-finite loss means the weights or activations already diverged: stop with the step and the quantity
        # rather than train on (DPOTrainer does) or fail later inside a metric or the sampler.
        logps = terms.response_logps[terms.response_mask]
        num_bad = int((~torch.isfinite(logps)).sum())
        details = f" ({num_bad} of {logps.numel()} sequence log-probs of the batch are non-finite)" if num_bad else ""
        check_finite_terms(
            self.state.global_step + 1,
            {"preference loss": terms.preference_loss, "KL term": terms.kl_term},
            details,
            divergence_hints(self.model, self.args.learning_rate),
        )

    def _sequence_logps(self, model, inputs) -> tuple[torch.Tensor, object]:
        """Sequence log-probs `(N,)` of every completion in the batch, from one forward with the fused LM head."""
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        # Prompt-learning PEFT prepends virtual tokens; keep the positions of the real tokens.
        return outputs.log_probs[:, -(completion_mask.size(1) - 1) :].sum(dim=1), outputs

    def _reference_sequence_logps(self, model, inputs) -> torch.Tensor:
        """Sequence log-probs `(N,)` under π_ref, for the DPO-family baselines."""
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "use_cache": False}
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if self.ref_model is None:
                with reference_adapter(model):
                    outputs = model(**kwargs, labels=labels, fused_lm_head=True)
            else:
                outputs = self.ref_model(**kwargs, labels=labels, fused_lm_head=True)
        return outputs.log_probs[:, -(inputs["completion_mask"].size(1) - 1) :].sum(dim=1)

    def _response_grid(self, logps: torch.Tensor, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(logps (B, n), response_mask (B, n), winner_index (B,))` in labelled order (see `SPOTerms`)."""
        if self.preference_format == "pairwise":
            grid = torch.stack(logps.chunk(2, dim=0), dim=1)  # the batch is [chosen; rejected]
            zeros = torch.zeros(grid.size(0), dtype=torch.long, device=grid.device)
            return grid, torch.ones_like(grid, dtype=torch.bool), zeros
        num_rows = inputs["num_responses"].size(0)
        if self.preference_format == "ranking":
            ranking = inputs["ranking"]
            grid, _ = scatter_sequence_logps(
                logps, inputs["row_index"], inputs["response_index"], num_rows, ranking.size(1)
            )
            grid, mask = order_by_ranking(grid, ranking)
            return grid, mask, torch.zeros(num_rows, dtype=torch.long, device=grid.device)
        grid, mask = scatter_sequence_logps(
            logps, inputs["row_index"], inputs["response_index"], num_rows, int(inputs["num_responses"].max())
        )
        return grid, mask, inputs["best_index"]

    def _sample_weights(self, grid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """μ of Eq. 12: per row, or per rank term on ranked data, centred on the batch mean across ranks."""
        if self.gamma == 0:
            return None
        if self.preference_format != "ranking":
            batch_mean = self.accelerator.gather(spo_sample_scores(grid, self.gamma, response_mask=mask)).mean()
            return spo_sample_weights(grid, self.gamma, batch_mean=batch_mean, response_mask=mask)
        # Per rank term k, the mean over the rows (of every rank) that have a term k; ranks may have different n.
        scores = spo_ranking_sample_scores(grid, self.gamma, response_mask=mask)
        valid = mask[:, 1:]  # term k exists iff response k + 1 does (valid responses form a prefix)
        totals = torch.stack([(scores * valid).sum(0), valid.sum(0).to(scores.dtype)])
        totals = self.accelerator.gather(self.accelerator.pad_across_processes(totals, dim=1)[None]).sum(0)
        batch_mean = totals[0, : grid.size(1) - 1] / totals[1, : grid.size(1) - 1].clamp(min=1)
        return spo_ranking_sample_weights(
            grid, self.gamma, decay=self.args.rank_weight_decay, response_mask=mask, batch_mean=batch_mean
        )

    def _preference_loss(self, model, inputs, grid, mask, winner_index, weights) -> torch.Tensor:
        """Eq. 10, 14 or 15 per row (or a DPO-family baseline), averaged over rows."""
        nary_loss_type = self.args.nary_loss_type
        if self.preference_format == "pairwise":
            losses = get_preference_loss("pairwise")(grid[:, 0], grid[:, 1], self.alpha, weights=weights)
        elif nary_loss_type == "spo" and self.preference_format == "best_of_n":
            losses = get_preference_loss("best_of_n")(grid, winner_index, self.alpha, weights, response_mask=mask)
        elif nary_loss_type == "spo":
            losses = get_preference_loss("ranking")(grid, self.alpha, weights, response_mask=mask)
        else:
            reference, _, _ = self._response_grid(self._reference_sequence_logps(model, inputs), inputs)
            if self.preference_format == "best_of_n":
                losses = dpo_softmax_loss(grid, reference, winner_index, self.beta, response_mask=mask)
            else:  # on rankings S-DPO as the paper applies it (App. E.3) and PL-DPO are the same loss
                losses = dpo_plackett_luce_loss(grid, reference, self.beta, response_mask=mask)
        return losses.mean()

    def _spo_terms(self, model, inputs, kl_shard: KLSamples | None) -> SPOTerms:
        sequence_logps, outputs = self._sequence_logps(model, inputs)
        grid, mask, winner_index = self._response_grid(sequence_logps, inputs)
        weights = self._sample_weights(grid, mask)
        preference_loss = self._preference_loss(model, inputs, grid, mask, winner_index, weights)

        kl_term = preference_loss.new_zeros(())
        per_sample_kl = shard_token_kl = None
        if self.args.uses_dataset_kl and self.model.training:
            # Table 6's "in-dataset (tokenwise)" ablation: Eq. 13's estimator on the batch's own completions.
            policy_hidden = backbone_hidden_states(model, inputs["input_ids"], inputs["attention_mask"])
            reference_hidden = self._reference_hidden_states(inputs["input_ids"], inputs["attention_mask"])
            reference_model = model if self.ref_model is None else self.accelerator.unwrap_model(self.ref_model)
            shard_token_kl = token_kl(
                policy_hidden, model, reference_hidden, reference_model, inputs["completion_mask"]
            )
            per_sample = global_kl_per_sample(shard_token_kl.kl, shard_token_kl.mask)
            kl_term = per_sample.mean()
            per_sample_kl = per_sample.detach()
        if kl_shard is not None:
            policy_hidden = backbone_hidden_states(model, kl_shard.input_ids, kl_shard.attention_mask)
            reference_model = model if self.ref_model is None else self.accelerator.unwrap_model(self.ref_model)
            shard_token_kl = token_kl(
                policy_hidden, model, kl_shard.reference_hidden, reference_model, kl_shard.completion_mask
            )
            per_sample = global_kl_per_sample(shard_token_kl.kl, shard_token_kl.mask)
            # Eq. 13 averages over the whole buffer; the trainer divides each micro-batch's loss by the number of
            # micro-batches, which the factor undoes for the shard sum.
            kl_term = per_sample.sum() * (self.current_gradient_accumulation_steps / len(self._kl_samples))
            per_sample_kl = per_sample.detach()

        loss = preference_loss if self.args.nary_loss_type != "spo" else preference_loss + self.beta * kl_term
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
        return SPOTerms(
            loss=loss,
            preference_loss=preference_loss.detach(),
            kl_term=kl_term.detach(),
            response_logps=grid.detach(),
            response_mask=mask,
            winner_index=winner_index,
            weights=weights,
            per_sample_kl=per_sample_kl,
            token_kl=shard_token_kl,
            outputs=outputs,
        )

    def _log_terms(self, mode: str, inputs, terms: SPOTerms) -> None:
        gather, metrics = self.accelerator.gather, self._metrics[mode]
        outputs = terms.outputs
        shift_mask = inputs["completion_mask"][:, 1:]
        seq_len = shift_mask.size(1)

        def token_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
            total, count = gather((values * mask).sum().float()).sum(), gather(mask.sum().float()).sum()
            return (total / count).item() if count > 0 else 0.0

        preference_loss = gather(terms.preference_loss).mean().item()
        metrics["loss/preference"].append(preference_loss)
        if self.args.nary_loss_type == "spo" and self.alpha > 0:
            # Eq. 8 is DPO's log-loss divided by alpha (log(2) / alpha at a 50/50 pair); this is it on DPO's scale.
            metrics["loss/preference_normalized"].append(self.alpha * preference_loss)
        metrics["entropy"].append(token_mean(outputs.entropy[:, -seq_len:].detach(), shift_mask))
        is_top1 = outputs.is_top1[:, -seq_len:].float()
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        if self.preference_format == "pairwise":
            chosen_mask, rejected_mask = shift_mask.bool().chunk(2, dim=0)
            chosen_mean_logits, rejected_mean_logits = outputs.mean_logits[:, -seq_len:].detach().chunk(2, dim=0)
            metrics["logits/chosen"].append(token_mean(chosen_mean_logits, chosen_mask))
            metrics["logits/rejected"].append(token_mean(rejected_mean_logits, rejected_mask))
            metrics["mean_token_accuracy"].append(token_mean(is_top1.chunk(2, dim=0)[0], chosen_mask))
            self._log_pairwise(metrics, gather(terms.response_logps))
        else:
            metrics["mean_token_accuracy"].append(token_mean(is_top1, shift_mask))
            self._log_nary(metrics, terms)
        if terms.weights is not None:
            weights = self.accelerator.pad_across_processes(terms.weights, dim=terms.weights.dim() - 1)
            valid = gather(weights != 0)  # padded rank terms have weight 0; NaN stays in, as DPO logs NaN
            weights = gather(weights)[valid]
            metrics["mu/mean"].append(weights.mean().item())
            metrics["mu/min"].append(weights.min().item())
            metrics["mu/max"].append(weights.max().item())
        if self.aux_loss_enabled:
            metrics["aux_loss"].append(gather(outputs.aux_loss.detach()).mean().item())
        if terms.per_sample_kl is not None and self.args.uses_dataset_kl:
            metrics["kl/dataset"].append(gather(terms.per_sample_kl).mean().item())
        elif terms.per_sample_kl is not None:
            metrics["kl/global"].append(gather(terms.per_sample_kl).mean().item())
            metrics["samples/entropy"].append(token_mean(terms.token_kl.entropy, terms.token_kl.mask))

    def _log_pairwise(self, metrics, logps: torch.Tensor) -> None:
        chosen_logps, rejected_logps = logps[:, 0], logps[:, 1]
        metrics["logps/chosen"].append(chosen_logps.mean().item())
        metrics["logps/rejected"].append(rejected_logps.mean().item())
        # At the fixed point π ∝ exp(r / alpha) (Theorem 1), so alpha * log π is SPO's implicit reward.
        chosen_rewards, rejected_rewards = self.alpha * chosen_logps, self.alpha * rejected_logps
        metrics["rewards/chosen"].append(chosen_rewards.mean().item())
        metrics["rewards/rejected"].append(rejected_rewards.mean().item())
        metrics["rewards/accuracies"].append((chosen_logps > rejected_logps).float().mean().item())
        metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())

    def _log_nary(self, metrics, terms: SPOTerms) -> None:
        pad, gather = self.accelerator.pad_across_processes, self.accelerator.gather
        logps = gather(pad(terms.response_logps, dim=1))
        mask = gather(pad(terms.response_mask, dim=1))
        winner = gather(terms.winner_index)
        rows = torch.arange(logps.size(0), device=logps.device)
        # Top-1 accuracy: the model's most likely response is the labelled best.
        predicted = logps.masked_fill(~mask, float("-inf")).argmax(dim=1)
        metrics["rewards/top1_accuracy"].append((predicted == winner).float().mean().item())
        if self.preference_format == "ranking":
            for rank in range(logps.size(1)):
                if mask[:, rank].any():
                    metrics[f"logps/rank_{rank + 1}"].append(logps[mask[:, rank], rank].mean().item())
            metrics["rewards/kendall_tau"].append(kendall_tau(logps, mask).mean().item())
        else:
            is_best = torch.zeros_like(mask).index_put_((rows, winner), torch.tensor(True, device=mask.device))
            metrics["logps/best"].append(logps[is_best].mean().item())
            metrics["logps/others"].append(logps[mask & ~is_best].mean().item())

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ):
        """
        Write `README.md` to `output_dir`: TRL's card, naming a local base model or dataset as a path instead of a
        hub link, with SPO's settings and the paper. `model_name` defaults to the output directory's name.
        """
        if not self.is_world_process_zero():
            return
        tags = {tags} if isinstance(tags, str) else set(tags or ())
        tags.update(self._tag_names)
        if "JOB_ID" in os.environ:
            tags.add("hf_jobs")
        output_dir = self.args.output_dir
        settings = ("alpha", "beta", "gamma", "regularizer", "generation_interval", "learning_rate")
        card = spo_model_card(
            base_model=_trl_compat.get_config_model_id(self.model.config),
            model_name=model_name or os.path.basename(os.path.normpath(output_dir)),
            model_id=self.hub_model_id or output_dir,
            dataset_name=dataset_name,
            tags=sorted(tags),
            spo_settings={name: getattr(self.args, name) for name in settings}
            | {"kl_batch_size": self.kl_batch_size, "preference format": self.preference_format},
            paper=self._paper,
            tracking_urls={
                "Weights & Biases": wandb.run.url if is_wandb_available() and wandb.run is not None else None,
                "Trackio": _trl_compat.get_trackio_space_url(),
                "Comet": _trl_compat.get_comet_experiment_url(),
            },
        )
        card.save(os.path.join(output_dir, "README.md"))

    # ----------------------------------------------------------------------------------------------------------------
    # Checkpoints: the KL samples and the prompt pool are training state too

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        self._resume_from_checkpoint = resume_from_checkpoint or None
        self._accumulation_index = 0
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if not self.args.uses_global_kl:
            return
        checkpoint_dir = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        state = {
            "kl_samples": None if self._kl_samples is None else self._kl_samples.state_dict(),
            "recent_prompts": self._recent_prompts.state_dict(),
            "num_refreshes": self.kl_sampling_callback.num_refreshes,
        }
        torch.save(state, os.path.join(checkpoint_dir, SPO_STATE_FILE.format(rank=self.accelerator.process_index)))

    def _restore_on_resume(self) -> None:
        # Runs at `on_train_begin`, once the model is wrapped: the reference forward of `load_spo_state` needs it.
        if self._resume_from_checkpoint:
            self.load_spo_state(self._resume_from_checkpoint)

    def load_spo_state(self, checkpoint_dir: str) -> None:
        """Restore the KL samples, the prompt pool and the refresh count saved with a checkpoint."""
        path = os.path.join(checkpoint_dir, SPO_STATE_FILE.format(rank=self.accelerator.process_index))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"The checkpoint {checkpoint_dir} has no SPO state ({os.path.basename(path)}): it holds the KL samples "
                "that the run was using. Resume from a checkpoint written by SPOTrainer with the global KL on, and "
                "the same number of processes."
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            samples, prompts = state["kl_samples"], state["recent_prompts"]
        except Exception as error:  # a truncated file fails in many ways; all of them mean the same thing here
            raise ValueError(
                f"The SPO state {path} of checkpoint {checkpoint_dir} is corrupt or partial ({error!r}); the run that "
                "wrote it was probably stopped while saving. Resume from an earlier checkpoint."
            ) from error
        self._recent_prompts.load_state_dict(prompts)
        self.kl_sampling_callback.num_refreshes = state["num_refreshes"]
        if samples is not None:
            self._set_kl_samples(KLSamples.from_state_dict(samples, self.accelerator.device))


def _dataset_format(dataset) -> str:
    """The preference format of a raw or already tokenised dataset, from its columns."""
    columns = dataset.column_names if isinstance(dataset, Dataset) else None
    columns = columns or list(next(iter(dataset)).keys())
    if "completions_ids" in columns:  # tokenised by `prepare_nary_dataset`
        return "ranking" if "ranking" in columns else "best_of_n"
    if "chosen_ids" in columns:  # tokenised by `DPOTrainer._prepare_dataset`
        return "pairwise"
    return detect_preference_format(columns)
