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

"""The global KL's pieces: the per-sample sum of Eq. 13 and the compaction of the completion positions."""

import torch

from trl_spo.kl import completion_positions, global_kl_per_sample


# fp32 sums of two values against float64: an ulp or two (eps = 1.2e-7), so 1e-6 = 8 eps.
FP32 = {"rtol": 1e-6, "atol": 1e-6}


def test_global_kl_per_sample_hand_worked():
    token_kl = torch.tensor([[0.1, 0.2, float("nan")], [float("inf"), 0.5, 0.6]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    kl = global_kl_per_sample(token_kl, mask)
    # Eq. (13): sum over the completion's positions; padded positions (here NaN / inf) are ignored.
    torch.testing.assert_close(kl, torch.tensor([0.1 + 0.2, 0.5 + 0.6]), **FP32)
    kl.sum().backward()
    torch.testing.assert_close(token_kl.grad, mask.float(), rtol=0, atol=0)  # exact: a masked sum's gradient is 0 / 1
    bf16 = global_kl_per_sample(
        torch.tensor([[0.125, 0.25]], dtype=torch.bfloat16), torch.ones(1, 2, dtype=torch.bool)
    )
    assert bf16.dtype == torch.float32 and bf16.item() == 0.375  # exact in binary


def test_completion_positions_are_the_flat_indices_of_the_shifted_mask():
    # Position t predicts token t + 1: row 0's completion tokens 2, 3 are predicted at 1, 2; row 1's token 3 at 2.
    completion_mask = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 1]])
    assert completion_positions(completion_mask).tolist() == [1, 2, 3 + 2]
