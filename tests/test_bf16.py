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

"""bf16 mixed precision (float32 weights, `bf16=True`) on the tiny model, with the global KL on, against float32."""

import math

import pytest
import torch

from trl_spo import SPOTrainer

from .helpers import make_args


def test_bf16_mixed_precision_trains_like_float32_with_the_global_kl(
    tmp_path, tiny_model_path, standard_preference_dataset
):
    # `bf16=True` on a CPU is bf16 autocast over float32 weights, as on a GPU. SPO's forward calls the backbone and the
    # LM head itself, outside the `model.forward` that accelerate wraps in autocast, so the trainer opens that autocast
    # around it; before it did, this run was float32 throughout and bit-identical to the other.
    # Where the precision goes: the matmuls (the backbone's, and the LM head's tiles in TRL's ChunkedLogProbFunction)
    # run in bf16; the log-softmax accumulators and the per-token log-probs are float32, and so are the sequence
    # log-prob sums (`log_probs.sum(dim=1)` in `SPOTrainer._spo_terms`) and the losses (`trl_spo.losses` upcasts).
    runs = {}
    for bf16 in (False, True):
        trainer = SPOTrainer(
            model=tiny_model_path,
            # alpha = 1: the preference loss is softplus(b - a), of order 1, so its rounding is that of the log-probs.
            # One draw of KL samples (step 0), reused: both runs measure the KL on the same completions.
            args=make_args(
                tmp_path / f"bf16-{bf16}", bf16=bf16, max_steps=4, generation_interval=100, alpha=1.0, beta=0.5
            ),
            train_dataset=standard_preference_dataset,
        )
        assert next(trainer.model.parameters()).dtype == torch.float32  # float32 master weights in both runs
        trainer.train()
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        runs[bf16] = (history, trainer.kl_sampler.samples.input_ids)
    (fp32, fp32_samples), (bf16, bf16_samples) = runs[False], runs[True]
    assert len(fp32) == len(bf16) == 4
    for entry in fp32 + bf16:
        for key in ("loss", "loss/preference", "kl/global", "grad_norm"):
            assert math.isfinite(entry[key]), (key, entry)
    assert [e["loss"] for e in bf16] != [e["loss"] for e in fp32], "bf16 autocast never reached SPO's forward"

    # Step 1 (the same weights): the pairs' log-probs are sums of <= 3 completion tokens of about -7 nats each (a
    # near-uniform 790-token vocabulary). bf16 keeps 8 significant bits (rounding 2^-9 = 0.2%), so a token's log-prob
    # carries ~0.2% of 7 = 0.014 nats, a sequence <= 0.04, and softplus(b - a), of slope <= 1 in each, <= 0.08
    # (observed: 7e-5).
    assert bf16[0]["loss/preference"] == pytest.approx(fp32[0]["loss/preference"], abs=0.08)

    # The KL: 0 at step 1 (pi_theta = pi_ref; only the rounding of two forwards of other batch shapes separates them,
    # and a KL is second order in that: ~(2e-3)^2 per position), then ~0.05 nats once the policy has moved.
    assert torch.equal(fp32_samples, bf16_samples)  # the same completions, so the KLs are comparable
    assert fp32[0]["kl/global"] == pytest.approx(0.0, abs=1e-5) and bf16[0]["kl/global"] == pytest.approx(
        0.0, abs=1e-4
    )
    for step in range(1, 4):
        assert fp32[step]["kl/global"] > 0.01
        # Policy and reference are rounded alike in bf16 (nearly the same weights and inputs), so their rounding
        # largely cancels in log p - log q; what remains, with the slightly different updates of the two runs, is
        # observed at 0.3-1.6% of the KL. 10% leaves room for other CPUs' kernels; a KL the bf16 path broke (0, or
        # measured on mismatched distributions) is far outside.
        assert bf16[step]["kl/global"] == pytest.approx(fp32[step]["kl/global"], rel=0.1), step
