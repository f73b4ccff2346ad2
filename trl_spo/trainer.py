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
)
from transformers.trainer_utils import EvalPrediction, get_last_checkpoint
from trl import DPOTrainer

from ._trl_compat import disable_gradient_checkpointing, forward_through_wrapper, reference_adapter
from .config import SPOConfig
from .kl import TokenKL, backbone_hidden_states, token_kl
from .losses import global_kl_per_sample, spo_pairwise_loss, spo_sample_scores, spo_sample_weights
from .sampling import KLSamples, OnlineKLSamplingCallback, RecentPrompts, prompts_from_batch, sample_completions


SPO_STATE_FILE = "spo_state_rank{rank}.pt"


@dataclass
class SPOTerms:
    """
    What one SPO forward produces for a micro-batch of pairs (B pairs, K KL samples in this micro-batch's shard).

    Attributes:
        loss (`torch.Tensor`, scalar): `preference_loss + beta * kl_term` (+ the MoE auxiliary loss, if any).
        preference_loss (`torch.Tensor`, scalar): mean of Eq. 10 over the pairs.
        kl_term (`torch.Tensor`, scalar): this shard's share of KL_hat (Eq. 13), scaled so that the shares of one
            optimizer step add up to KL_hat once the trainer divides by the accumulation steps.
        chosen_logps, rejected_logps (`torch.Tensor`, shape `(B,)`): sequence log-probs, detached.
        weights (`torch.Tensor`, shape `(B,)`, *optional*): μ of Eq. 12, when `gamma > 0`.
        per_sample_kl (`torch.Tensor`, shape `(K,)`, *optional*): Σ_t KL on each sample of the shard, detached.
        token_kl (`TokenKL`, *optional*): per-token KL and entropy on the shard.
        outputs: the fused LM head's outputs on the pairs (per-token entropy, mean logits, top-1 flags).
    """

    loss: torch.Tensor
    preference_loss: torch.Tensor
    kl_term: torch.Tensor
    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
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

        self.alpha = args.alpha
        self.gamma = args.gamma
        self.kl_batch_size = args.resolved_kl_batch_size
        self._kl_samples: KLSamples | None = None
        self._accumulation_index = 0
        self._resume_from_checkpoint: str | None = None
        self._recent_prompts = RecentPrompts(
            capacity=max(self.kl_batch_size, args.per_device_train_batch_size * args.gradient_accumulation_steps)
        )

        if not args.uses_global_kl:
            # DPOTrainer loaded a reference for its log-ratios; without the KL, SPO never reads it.
            self.ref_model = None
            self.kl_sampling_callback = None
            return

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
        self.kl_sampling_callback = OnlineKLSamplingCallback(
            refresh=self.refresh_kl_samples,
            needs_refresh=lambda: self._kl_samples is None,
            restore=self._restore_on_resume,
            generation_interval=args.generation_interval,
            record_metric=lambda name, value: self._metrics["train"][name].append(value),
        )
        self.add_callback(self.kl_sampling_callback)

    # ----------------------------------------------------------------------------------------------------------------
    # Data

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        first_example = next(iter(dataset))
        if {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(first_example):
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        missing = {"chosen", "rejected"} - set(first_example)
        if missing:
            raise ValueError(
                f"SPOTrainer expects a pairwise preference dataset with the columns 'chosen' and 'rejected' (and "
                f"'prompt' unless the prompt is implicit in them), but the {dataset_name} dataset has the columns "
                f"{sorted(first_example)}; missing: {sorted(missing)}."
            )
        dataset = dataset.map(_check_completions_not_empty, with_indices=True, fn_kwargs={"name": dataset_name})
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

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

    def refresh_kl_samples(self, step: int) -> None:
        """Sample `kl_batch_size` completions from the current policy for the most recent prompts (Algorithm 1)."""
        samples = sample_completions(
            self.model_wrapped,
            self.accelerator,
            self._recent_prompts.latest(self.kl_batch_size),
            self.generation_config,
            pad_token_id=self._tokenizer.pad_token_id,
            eos_token_ids=self.eos_token_ids,
            step=step,
            gather_deepspeed3_params=self.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
        )
        self._set_kl_samples(samples)
        lengths = self.accelerator.gather(samples.completion_lengths.float())
        clipped = self.accelerator.gather((samples.completion_lengths >= self.args.max_completion_length).float())
        self._metrics["train"]["samples/mean_length"].append(lengths.mean().item())
        self._metrics["train"]["samples/clipped_ratio"].append(clipped.mean().item())

    def _set_kl_samples(self, samples: KLSamples) -> None:
        samples.reference_hidden = self._reference_hidden_states(samples)
        self._kl_samples = samples

    def _reference_hidden_states(self, samples: KLSamples) -> torch.Tensor:
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
                        samples.input_ids,
                        samples.attention_mask,
                    )
            unwrapped_ref = self.accelerator.unwrap_model(self.ref_model)
            return forward_through_wrapper(
                self.ref_model,
                unwrapped_ref,
                backbone_hidden_states,
                unwrapped_ref,
                samples.input_ids,
                samples.attention_mask,
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

    def _spo_terms(self, model, inputs, kl_shard: KLSamples | None) -> SPOTerms:
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items() if k != "completion_mask"}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        # Prompt-learning PEFT prepends virtual tokens; keep the positions of the real tokens.
        per_token_logps = outputs.log_probs[:, -(completion_mask.size(1) - 1) :]
        chosen_logps, rejected_logps = per_token_logps.sum(dim=1).chunk(2, dim=0)

        weights = None
        if self.gamma > 0:
            pair_logps = torch.stack([chosen_logps, rejected_logps], dim=1)
            # Eq. 12 centres s on the batch mean; the batch here is this micro-batch across all ranks.
            batch_mean = self.accelerator.gather(spo_sample_scores(pair_logps, self.gamma)).mean()
            weights = spo_sample_weights(pair_logps, self.gamma, batch_mean=batch_mean)
        preference_loss = spo_pairwise_loss(chosen_logps, rejected_logps, self.alpha, weights=weights).mean()

        kl_term = preference_loss.new_zeros(())
        per_sample_kl = shard_token_kl = None
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

        loss = preference_loss + self.beta * kl_term
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
        return SPOTerms(
            loss=loss,
            preference_loss=preference_loss.detach(),
            kl_term=kl_term.detach(),
            chosen_logps=chosen_logps.detach(),
            rejected_logps=rejected_logps.detach(),
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
        chosen_mask, rejected_mask = shift_mask.bool().chunk(2, dim=0)

        def token_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
            total, count = gather((values * mask).sum().float()).sum(), gather(mask.sum().float()).sum()
            return (total / count).item() if count > 0 else 0.0

        metrics["loss/preference"].append(gather(terms.preference_loss).mean().item())
        metrics["entropy"].append(token_mean(outputs.entropy[:, -seq_len:].detach(), shift_mask))
        chosen_mean_logits, rejected_mean_logits = outputs.mean_logits[:, -seq_len:].detach().chunk(2, dim=0)
        metrics["logits/chosen"].append(token_mean(chosen_mean_logits, chosen_mask))
        metrics["logits/rejected"].append(token_mean(rejected_mean_logits, rejected_mask))
        chosen_is_top1, _ = outputs.is_top1[:, -seq_len:].chunk(2, dim=0)
        metrics["mean_token_accuracy"].append(token_mean(chosen_is_top1.float(), chosen_mask))
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]

        chosen_logps, rejected_logps = gather(terms.chosen_logps), gather(terms.rejected_logps)
        metrics["logps/chosen"].append(chosen_logps.mean().item())
        metrics["logps/rejected"].append(rejected_logps.mean().item())
        # At the fixed point π ∝ exp(r / alpha) (Theorem 1), so alpha * log π is SPO's implicit reward.
        chosen_rewards, rejected_rewards = self.alpha * chosen_logps, self.alpha * rejected_logps
        metrics["rewards/chosen"].append(chosen_rewards.mean().item())
        metrics["rewards/rejected"].append(rejected_rewards.mean().item())
        metrics["rewards/accuracies"].append((chosen_logps > rejected_logps).float().mean().item())
        metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
        if terms.weights is not None:
            weights = gather(terms.weights)
            metrics["mu/mean"].append(weights.mean().item())
            metrics["mu/min"].append(weights.min().item())
            metrics["mu/max"].append(weights.max().item())
        if self.aux_loss_enabled:
            metrics["aux_loss"].append(gather(outputs.aux_loss.detach()).mean().item())
        if terms.per_sample_kl is not None:
            metrics["kl/global"].append(gather(terms.per_sample_kl).mean().item())
            metrics["samples/entropy"].append(token_mean(terms.token_kl.entropy, terms.token_kl.mask))

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
        state = torch.load(path, map_location="cpu", weights_only=True)
        self._recent_prompts.load_state_dict(state["recent_prompts"])
        self.kl_sampling_callback.num_refreshes = state["num_refreshes"]
        if state["kl_samples"] is not None:
            self._set_kl_samples(KLSamples.from_state_dict(state["kl_samples"], self.accelerator.device))


def _check_completions_not_empty(example: dict, index: int, name: str) -> dict:
    for column in ("chosen", "rejected"):
        completion = example[column]
        if isinstance(completion, str):
            empty = completion.strip() == ""
        else:  # conversational: a list of messages
            empty = len(completion) == 0 or all(
                not str(message.get("content") or "").strip() for message in completion
            )
        if empty:
            raise ValueError(
                f"Row {index} of the {name} dataset has an empty '{column}' completion ({completion!r}). Each pair "
                "needs two non-empty completions: drop or fix that row."
            )
    return example
