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

import contextlib
import os
import shutil
import textwrap
import warnings
from collections.abc import Callable

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from transformers import (
    BitsAndBytesConfig,
    DataCollator,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    TrainerCallback,
)
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalPrediction, rotate_checkpoints
from trl import DPOTrainer

from ._trl_compat import forward_through_wrapper, get_config_model_id
from .checkpoints import (
    STAGING_DIR,
    find_resume_checkpoint,
    publish_checkpoint,
    remove_staging,
    resolve_resume,
    staging_path,
)
from .config import SPOConfig
from .data import (
    LABEL_COLUMNS,
    DataCollatorForNaryPreference,
    check_eos_token,
    detect_preference_format,
    first_row,
    prepare_preference_dataset,
)
from .forward import NUM_COMPLETION_TOKENS, count_completion_tokens, policy_forward, reference_hidden_states
from .kl import check_same_vocabulary, completion_positions, global_kl_per_sample, token_kl
from .losses import PREFERENCE_LOSSES, grid_sample_weights
from .metrics import DeviceMetrics, SPOTerms
from .model_card import write_model_card  # upstream: drop
from .nonfinite import NonFiniteTermsGuard, divergence_hints
from .preemption import StopOnSigterm
from .responses import response_grid
from .sampling import (
    KLSamples,
    OnlineKLSampler,
    build_vllm_generation,
    draw_kl_samples,
    eos_token_ids,
    kl_generation_config,
)


class SPOTrainer(DPOTrainer):
    """
    Trainer for Soft Preference Optimization (SPO), from the paper [Soft Preference Optimization: Aligning Language
    Models to Expert Distributions](https://huggingface.co/papers/2405.00747).

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
            KL is off (`beta=0`).
        args ([`SPOConfig`], *optional*):
            Training configuration. A [`~trl.DPOConfig`] is refused: SPO gives `beta` another meaning.
        data_collator, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks, optimizers,
        quantization_config, peft_config:
            As for [`~trl.DPOTrainer`]. Datasets are preference datasets (`prompt`/`chosen`/`rejected`, standard or
            conversational, explicit or implicit prompt).
    """

    _tag_names = ["trl", "spo"]
    _name = "SPO"
    _loss_has_alpha = True  # the preference loss has SPO's alpha (implicit rewards, pair weight, normalized loss)
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
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = SPOConfig(f"{str(model_name).rstrip('/').split('/')[-1]}-SPO")
        elif not isinstance(args, SPOConfig):
            raise TypeError(
                f"SPOTrainer needs an `SPOConfig`, got `{type(args).__name__}`. SPO gives `beta` another meaning (the "
                "weight of the global KL) and adds `alpha`, `gamma` and the sampling fields: build the config with "
                "`SPOConfig(...)` using the same keyword arguments."
            )
        if train_dataset is not None:
            first_row(train_dataset, "train")  # an empty dataset is named as such, not a StopIteration deep inside
            self.preference_format = detect_preference_format(train_dataset)
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
        if is_peft_model(self.model) and self.model.active_peft_config.is_prompt_learning:
            raise NotImplementedError(
                "Prompt-learning PEFT (prompt, prefix or p-tuning) is not supported: SPO scores the sequences through "
                "the backbone, where the virtual tokens are not. Use LoRA (or another adapter inside the layers)."
            )
        if self._is_vision_dataset and args.uses_global_kl:
            raise NotImplementedError(
                "The global KL samples completions from text prompts; vision datasets are not supported with it yet. "
                "Set `beta=0` to train on the preference term alone."
            )
        if self.preference_format != "pairwise" and data_collator is None:
            # DPOTrainer built its pairwise collator; n-ary rows need every (row, response) pair in one batch.
            self.data_collator = DataCollatorForNaryPreference(
                pad_token_id=self._tokenizer.pad_token_id,
                max_length=args.max_length,
                truncation_mode=args.truncation_mode,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
        if not args.needs_reference:
            # DPOTrainer loaded a reference for its log-ratios; without the KL, SPO never reads it.
            self.ref_model = None
        elif self.ref_model is not None:
            check_same_vocabulary(
                self.accelerator.unwrap_model(self.model), self.accelerator.unwrap_model(self.ref_model)
            )
        # Metrics and the non-finite guard stay on the device until a log or a checkpoint reads them.
        alpha = args.alpha if self._loss_has_alpha else None
        self._device_metrics = DeviceMetrics(self.accelerator, alpha, on_samples=args.uses_global_kl)
        self._nonfinite_terms = NonFiniteTermsGuard()
        self.kl_sampler = self._build_kl_sampler(args) if args.uses_global_kl else None
        self._staging = False  # while `_save_checkpoint` writes, `_get_output_dir` points into the staging folder
        self.stop_on_sigterm = StopOnSigterm(self.accelerator)
        self.add_callback(self.stop_on_sigterm)

    def _build_kl_sampler(self, args: SPOConfig) -> OnlineKLSampler:
        check_eos_token(self._tokenizer, "to end the completions it samples for the global KL")
        self.eos_token_ids = eos_token_ids(self._tokenizer, self.model)
        self.generation_config = kl_generation_config(self._tokenizer, self.eos_token_ids, args)
        kl_batch_size = args.resolved_kl_batch_size
        self.vllm_generation = None
        if args.use_vllm:
            self.vllm_generation = build_vllm_generation(
                self.model, self.accelerator, self.processing_class, args, max_num_seqs=kl_batch_size
            )
        sampler = OnlineKLSampler(
            draw=self._draw_kl_samples,
            reference_hidden_states=self._reference_hidden_states,
            batch_size=kl_batch_size,
            pool_size=max(kl_batch_size, args.per_device_train_batch_size * args.gradient_accumulation_steps),
            generation_interval=args.generation_interval,
            max_completion_length=args.max_completion_length,
            gather=self.accelerator.gather,
            device=self.accelerator.device,
        )
        self.add_callback(sampler)
        return sampler

    # ----------------------------------------------------------------------------------------------------------------
    # Data

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return prepare_preference_dataset(
            dataset,
            processing_class,
            args,
            dataset_name,
            train_format=self.preference_format,
            tokenizer=self._tokenizer,
            prepare_pairs=super()._prepare_dataset,
        )

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.preference_format != "pairwise":
            self._signature_columns = ["prompt_ids", "completions_ids", *LABEL_COLUMNS.values()]

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        if self.state.global_step >= self.state.max_steps > 0:
            # Resumed from the checkpoint of the last step (a job killed after it, before the end): transformers' loop
            # would take one step more before it checks `max_steps`. No batch, and the loop stops.
            self.control.should_training_stop = True
            return [], None
        # The batches of an optimizer step are fetched before the step begins, so their prompts are in the pool when
        # the sampler refreshes the KL samples at `on_step_begin`.
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        # The LM head projects completion tokens only; their counts are read once per optimizer step, here.
        count_completion_tokens(batch_samples)
        if self.kl_sampler is not None:
            for batch in batch_samples:
                self.kl_sampler.add_batch(batch)
        return batch_samples, num_items_in_batch

    # ----------------------------------------------------------------------------------------------------------------
    # What the KL sampler needs: a way to sample from the policy, a way to run the reference

    def _draw_kl_samples(self, prompts: list[list[int]], step: int) -> KLSamples:
        # A refresh reads the device anyway: a non-finite step before it is named here, not as non-finite logits.
        self._raise_if_diverged()
        hints = divergence_hints(self.model, self.args.learning_rate)
        return draw_kl_samples(
            self.model_wrapped,
            self.accelerator,
            prompts,
            step,
            self.args,
            self.generation_config,
            self._tokenizer.pad_token_id,
            self.eos_token_ids,
            self.vllm_generation,
            hints,
        )

    def _reference_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # The KL samples stay fixed between refreshes, so their reference forward runs once per refresh.
        return reference_hidden_states(
            self.accelerator,
            self.model_wrapped,
            self.ref_model,
            input_ids,
            attention_mask,
            self.args.gradient_checkpointing_kwargs,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        kl_shard = None
        if mode == "train" and self.kl_sampler is not None:
            kl_shard = self.kl_sampler.next_shard(self.current_gradient_accumulation_steps)
        unwrapped = self.accelerator.unwrap_model(model)
        # One pass through the wrapper for both terms: DDP registers a single backward, ZeRO-3 keeps the weights the
        # KL's LM-head projection reads gathered.
        # Mixed precision: accelerate applies `bf16`/`fp16` autocast by wrapping `model.forward`, which SPO's forward
        # bypasses (it calls the backbone and the LM head itself), so it opens the same autocast here.
        with self.accelerator.autocast():
            terms = forward_through_wrapper(model, unwrapped, self._spo_terms, unwrapped, inputs, kl_shard)
        if mode == "train":  # recorded on the device, raised at the next log or checkpoint (`_raise_if_diverged`)
            self._nonfinite_terms.observe(self.state.global_step + 1, terms)
        self._device_metrics.record(mode, inputs, terms, self.preference_format)
        if return_outputs:
            warnings.warn(
                "`return_outputs=True` recomputes the logits with an extra forward pass; it is deprecated in "
                "DPOTrainer and kept only for `compute_metrics`.",
                FutureWarning,
                stacklevel=2,
            )
            with torch.no_grad():
                model_kwargs = {k: v for k, v in inputs.items() if k not in ("completion_mask", NUM_COMPLETION_TOKENS)}
                return terms.loss, model(**model_kwargs)
        return terms.loss

    def _spo_terms(self, model, inputs, kl_shard: KLSamples | None) -> SPOTerms:
        """Eq. 5 for a micro-batch: the preference loss of its rows plus `beta` times its share of the KL term."""
        dataset_kl = self.args.uses_dataset_kl and self.model.training
        forward = policy_forward(
            model,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["completion_mask"],
            None if kl_shard is None else kl_shard.input_ids,
            None if kl_shard is None else kl_shard.attention_mask,
            router_aux_loss=self.aux_loss_enabled,
            keep_hidden=dataset_kl,
            num_completion_tokens=inputs.get(NUM_COMPLETION_TOKENS),
        )
        outputs = forward.token_outputs
        grid, mask, winner_index = response_grid(outputs.log_probs.sum(dim=1), inputs, self.preference_format)
        weights = self._sample_weights(grid, mask)
        row_losses = self._row_losses(model, inputs, grid, mask, winner_index, weights)
        preference_loss = row_losses.mean()
        kl_term, per_sample_kl, kl_tokens = self._kl_term(model, inputs, forward, kl_shard, dataset_kl)
        if kl_term is None:  # no KL on this micro-batch
            kl_term = preference_loss.new_zeros(())
        loss = preference_loss + self.beta * kl_term
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
        return SPOTerms(
            loss=loss,
            row_losses=row_losses.detach(),
            kl_term=kl_term.detach(),
            response_logps=grid.detach(),
            response_mask=mask,
            winner_index=winner_index,
            weights=weights,
            per_sample_kl=per_sample_kl,
            token_kl=kl_tokens,
            outputs=outputs,
        )

    def _sample_weights(self, grid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """μ of Eq. 12, centred on the mean over every process's micro-batch; `None` (μ = 1) at `gamma = 0`."""
        if self.args.gamma == 0:
            return None
        return grid_sample_weights(
            grid,
            mask,
            self.preference_format,
            self.args.gamma,
            self.args.rank_weight_decay,
            self._sum_across_processes,
        )

    def _kl_term(self, model, inputs, forward, kl_shard: KLSamples | None, dataset_kl: bool):
        """
        This micro-batch's share of the KL term, before `beta`, as `(term, per-sample KL, token KL)`: on the online
        samples (Eq. 13, the global KL), on the batch's own completions (Table 6's ablation), or `(None, None, None)`
        when there is none (`beta = 0`, evaluation, or a micro-batch whose slice of the samples is empty).
        """
        if kl_shard is not None:
            kl_tokens, per_sample = self._sequence_kl(
                model,
                forward.extra_hidden,
                kl_shard.reference_hidden,
                kl_shard.completion_mask,
                kl_shard.completion_positions,
            )
            # Eq. 13 averages over the whole buffer; the trainer divides each micro-batch's loss by the number of
            # micro-batches, which the factor undoes for the shard sum.
            term = per_sample.sum() * (self.current_gradient_accumulation_steps / len(self.kl_sampler.samples))
            return term, per_sample.detach(), kl_tokens
        if dataset_kl:
            # Table 6's "in-dataset (tokenwise)" ablation: Eq. 13's estimator on the batch's own completions, whose
            # positions change with every batch (sizing them reads the device: this ablation pays a host sync).
            positions = completion_positions(inputs["completion_mask"])
            reference_hidden = self._reference_hidden_states(inputs["input_ids"], inputs["attention_mask"])
            reference_hidden = reference_hidden.flatten(0, 1).index_select(0, positions)
            kl_tokens, per_sample = self._sequence_kl(
                model, forward.hidden, reference_hidden, inputs["completion_mask"], positions
            )
            return per_sample.mean(), per_sample.detach(), kl_tokens
        return None, None, None

    def _sum_across_processes(self, totals: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return totals
        if self.preference_format == "ranking":
            # Processes may hold rows of different n, hence different numbers of rank terms: pad before summing
            # (accelerate reads every process's width: a host sync, on ranked data only).
            totals = self.accelerator.pad_across_processes(totals, dim=1)
        return self.accelerator.gather(totals[None]).sum(0)

    def _row_losses(self, model, inputs, grid, mask, winner_index, weights) -> torch.Tensor:
        """SPO's preference loss per row: Eq. 10 (pairs), 14 (best-of-n) or 15 (rankings), one signature for all."""
        return PREFERENCE_LOSSES[self.preference_format](grid, winner_index, self.args.alpha, weights, mask)

    def _sequence_kl(self, model, policy_hidden, reference_hidden, completion_mask, positions):
        """Per-token KL(π_θ ‖ π_ref) on the completions of these sequences, and its sum per sequence (Eq. 13)."""
        reference_model = model if self.ref_model is None else self.accelerator.unwrap_model(self.ref_model)
        tokens = token_kl(policy_hidden, model, reference_hidden, reference_model, completion_mask, positions)
        return tokens, global_kl_per_sample(tokens.kl, tokens.mask)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Where the device is read: the non-finite guard, the tokens and the metrics of the window (one gather each),
        # handed to DPOTrainer, which averages them with the metrics the host already has.
        mode = "train" if self.model.training else "eval"
        self._raise_if_diverged()
        self._total_train_tokens += self._device_metrics.read_tokens() // self._tp_size
        if self._device_metrics.windows[mode].entries:
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        for name, value in self._device_metrics.read(mode).items():
            self._metrics[mode][name] = [value]
        if mode == "train" and self.kl_sampler is not None:  # the sampler's own: sample lengths, generation share
            for name, values in self.kl_sampler.take_metrics().items():
                self._metrics[mode][name].extend(values)
        super().log(logs, start_time)

    def _raise_if_diverged(self) -> None:
        self._nonfinite_terms.raise_if_diverged(divergence_hints(self.model, self.args.learning_rate))

    # ----------------------------------------------------------------------------------------------------------------
    # Model card and checkpoints

    # upstream: drop-begin (TRL's own model card, from `_name` and `_paper`)
    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ):
        """
        Write `README.md` to `output_dir`: TRL's card, naming a local base model or dataset as a path instead of a
        hub link, with SPO's settings and the paper. `model_name` defaults to the output directory's name.
        """
        if not self.is_world_process_zero():
            return
        write_model_card(self, model_name=model_name, dataset_name=dataset_name, tags=tags)

    # upstream: drop-end

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """
        As [`~transformers.Trainer.train`], with two differences.

        - `resume_from_checkpoint=True` (or `"true"`, as the command line passes it) resumes from the newest *whole*
          checkpoint in `output_dir`, skipping partial ones (saying so), and starts from scratch when there is none
          instead of failing: the same command restarts a killed job.
        - A SIGTERM finishes the current optimizer step, writes a whole checkpoint and raises
          `StoppedToResume` (in `preemption.py`), a `SystemExit` with status 75, after a one-line message.
        """
        resume_from_checkpoint = resolve_resume(resume_from_checkpoint) or None
        if resume_from_checkpoint is True:
            resume_from_checkpoint = self._find_resume_checkpoint()
        if self.args.should_save:
            removed = remove_staging(self.args.output_dir)
            if removed:
                self.accelerator.print(
                    f"Deleted {', '.join(removed)} from {os.path.join(self.args.output_dir, STAGING_DIR)}: partial "
                    "checkpoints of a run stopped while saving."
                )
        if resume_from_checkpoint and self.kl_sampler is not None:
            # The KL samples, their prompt pool and the refresh count are training state too.
            self.kl_sampler.load(resume_from_checkpoint, self.accelerator.process_index)
        with self.stop_on_sigterm.handling_sigterm():
            output = super().train(resume_from_checkpoint, *args, **kwargs)
        last_checkpoint = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self.stop_on_sigterm.raise_if_stopped(os.path.join(self.args.output_dir, last_checkpoint))
        return output

    def _find_resume_checkpoint(self) -> str | None:
        spo_state_file = None if self.kl_sampler is None else self.kl_sampler.STATE_FILE
        checkpoint, skipped = find_resume_checkpoint(self.args.output_dir, spo_state_file)
        for line in skipped:
            self.accelerator.print(f"Skipped the partial checkpoint {line}.")
        if checkpoint is None:
            self.accelerator.print(f"No whole checkpoint in {self.args.output_dir}: training from scratch.")
        else:
            self.accelerator.print(f"Resuming from {checkpoint}, the newest whole checkpoint.")
        return checkpoint

    def _get_output_dir(self, trial):
        run_dir = super()._get_output_dir(trial=trial)
        return os.path.join(run_dir, STAGING_DIR) if self._staging else run_dir

    def _save_checkpoint(self, model, trial):
        """
        Transformers' checkpoint plus the KL sampler's state, written into the staging folder and renamed to
        `checkpoint-N` once every rank has written its part (see `checkpoints.py`); older checkpoints are rotated
        out (`save_total_limit`) only after that.
        """
        self._raise_if_diverged()  # a checkpoint of non-finite weights is never written
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged_dir = staging_path(run_dir, name)
        if self.args.should_save and os.path.isdir(staged_dir):
            shutil.rmtree(staged_dir)  # left by a run killed while writing this step
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        if self.kl_sampler is not None:
            self.kl_sampler.save(staged_dir, self.accelerator.process_index)
        best = self.state.best_model_checkpoint
        if best is not None and best.startswith(os.path.join(run_dir, STAGING_DIR)):
            # Transformers recorded the best checkpoint where it was written; it will be read where it is published.
            self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staged_dir, TRAINER_STATE_NAME))
        self.accelerator.wait_for_everyone()  # every rank's part is written
        if self.args.should_save:
            publish_checkpoint(staged_dir, os.path.join(run_dir, name))
            with contextlib.suppress(OSError):  # a staging folder left empty is not left behind
                os.rmdir(os.path.dirname(staged_dir))
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()  # no rank goes on before the checkpoint has its name
