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

"""SPOTrainer on best-of-n and ranked data (section 5 of the paper)."""

import itertools

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM

from trl_spo import SPOTrainer
from trl_spo.data import ranking_to_best_of_n

from .helpers import assert_all_changed, assert_gradients_close, make_args, one_step_loss_and_grads, snapshot


@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0])
def test_two_responses_equal_pairwise_through_the_trainer(tmp_path, tiny_model_path, preference_rows, alpha):
    pairs = preference_rows[:6]
    datasets = {
        "pairwise": Dataset.from_list(pairs),
        "best_of_n": Dataset.from_list(
            [{"prompt": r["prompt"], "completions": [r["rejected"], r["chosen"]], "best_index": 1} for r in pairs]
        ),
        "ranking": Dataset.from_list(
            [{"prompt": r["prompt"], "completions": [r["rejected"], r["chosen"]], "ranking": [1, 0]} for r in pairs]
        ),
    }
    results = {}
    for name, dataset in datasets.items():
        trainer = SPOTrainer(
            model=tiny_model_path,
            args=make_args(tmp_path / name, alpha=alpha, beta=0.0, gamma=0.5),
            train_dataset=dataset,
        )
        assert trainer.preference_format == name
        results[name] = one_step_loss_and_grads(trainer, list(range(6)))
    pairwise_loss, pairwise_grads = results.pop("pairwise")
    for name, (loss, grads) in results.items():
        what = f"{name} rows [rejected, chosen] vs the same 6 pairs in the pairwise format (alpha = {alpha})"
        # The same sequences at other batch positions: their log-probs (~ -20) may round differently, by ~ulp(20) =
        # 2e-6, which does not shrink with the loss (-0.026 at alpha = 0, a difference of log-probs); hence the abs.
        assert loss == pytest.approx(pairwise_loss, rel=1e-6, abs=1e-5), f"loss: {what}"
        # Sums over the 12 sequences' 88 tokens in another order: observed <= 12 eps of the largest entry.
        assert_gradients_close(grads, pairwise_grads, what, ulps=100)


@pytest.mark.parametrize("preference_format", ["best_of_n", "ranking"])
def test_variable_n_in_a_batch_equals_each_row_alone(tmp_path, tiny_model_path, ranked_dataset, preference_format):
    dataset = ranked_dataset if preference_format == "ranking" else ranking_to_best_of_n(ranked_dataset)
    trainer = SPOTrainer(
        model=tiny_model_path, args=make_args(tmp_path, alpha=0.5, beta=0.0, gamma=0.0), train_dataset=dataset
    )
    rows = [0, 1, 2]  # n = 4, 3 and 2
    assert [len(trainer.train_dataset[i]["completions_ids"]) for i in rows] == [4, 3, 2]
    batch_loss, batch_grads = one_step_loss_and_grads(trainer, rows)
    alone = [one_step_loss_and_grads(trainer, [i]) for i in rows]
    what = "batch of rows [0, 1, 2] (n = 4, 3, 2) vs the mean of each row alone"
    # fp32 sums over the 9 sequences' 69 tokens, padded to other lengths: ~1e-6 relative (observed 3e-7).
    assert batch_loss == pytest.approx(sum(loss for loss, _ in alone) / 3, rel=1e-5), f"loss: {what}"
    # Each entry sums ~70 token contributions through 2 layers, in other orders and shapes: observed <= 19 eps of the
    # largest entry. A row weighted by n instead of 1 / 3, or a padded response in the loss, is off by > 0.1 of it.
    expected = {name: sum(grads[name] for _, grads in alone) / 3 for name in batch_grads}
    assert_gradients_close(batch_grads, expected, what, ulps=100)


@pytest.mark.parametrize("preference_format", ["best_of_n", "ranking"])
def test_each_format_trains_every_parameter_and_logs_its_metrics(
    tmp_path, tiny_model_path, ranked_dataset, preference_format
):
    dataset = ranked_dataset if preference_format == "ranking" else ranking_to_best_of_n(ranked_dataset)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    before = snapshot(model)
    trainer = SPOTrainer(
        model=model,
        args=make_args(tmp_path, max_steps=4, gamma=0.5, rank_weight_decay=0.5),
        train_dataset=dataset,
    )
    trainer.train()
    assert_all_changed(before, trainer.model)
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(history) == 4
    for entry in history:
        assert 0 <= entry["rewards/top1_accuracy"] <= 1
        # KL >= 0 up to rounding (it is 0 at step 0, where pi_theta = pi_ref)
        assert entry["kl/global"] >= -1e-5 and entry["samples/entropy"] > 0
        assert 0 < entry["mu/min"] <= entry["mu/mean"] <= entry["mu/max"]
        if preference_format == "ranking":
            assert -1 <= entry["rewards/kendall_tau"] <= 1
            assert {"logps/rank_1", "logps/rank_2"} <= set(entry)
            # eta^k decay: the top term's weight is at most 2 * eta, the last one's at most 2 * eta^3
            assert entry["mu/max"] < 2 * 0.5
        else:
            assert entry["logps/best"] < 0 and entry["logps/others"] < 0
    if preference_format == "ranking":  # rows have 2 to 4 responses
        assert any("logps/rank_4" in entry for entry in history)
        assert not any("logps/rank_5" in entry for entry in history)


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "Name a fruit:", "completions": [" kiwi.", " mango."], "best_index": 2}, "best_index"),
        ({"prompt": "Name a fruit:", "completions": [" kiwi.", " mango."], "ranking": [0, 0]}, "permutation"),
        ({"prompt": "Name a fruit:", "completions": [" kiwi."], "ranking": [0]}, "at least 2"),
    ],
)
def test_bad_rows_are_reported_with_their_index(tmp_path, tiny_model_path, row, message):
    good = dict(row, completions=[" kiwi.", " mango."])
    if "best_index" in row:
        good["best_index"] = 0
    else:
        good["ranking"] = [1, 0]
    dataset = Dataset.from_list([good, good, row])
    with pytest.raises(ValueError, match=rf"Row 2 of the train dataset.*{message}"):
        SPOTrainer(model=tiny_model_path, args=make_args(tmp_path), train_dataset=dataset)


def test_eval_dataset_must_match_the_train_format(
    tmp_path, tiny_model_path, ranked_dataset, standard_preference_dataset
):
    with pytest.raises(ValueError, match="eval dataset is in the pairwise format but the train dataset is ranking"):
        SPOTrainer(
            model=tiny_model_path,
            args=make_args(tmp_path),
            train_dataset=ranked_dataset,
            eval_dataset=standard_preference_dataset,
        )


def test_top1_accuracy_and_kendall_tau_match_a_hand_computation(tmp_path, tiny_model_path, ranked_dataset):
    import torch.nn.functional as F

    trainer = SPOTrainer(model=tiny_model_path, args=make_args(tmp_path, beta=0.0), train_dataset=ranked_dataset)
    model = trainer.model
    model.train()
    rows = list(range(8))
    examples = [trainer.train_dataset[i] for i in rows]
    with torch.no_grad():
        trainer.compute_loss(model, trainer.data_collator(examples))
    metrics = trainer._device_metrics.windows["train"]  # per micro-batch, on the device until a log

    # By hand: each completion scored alone from materialised logits, then compared with the labelled order
    top1, taus, gaps = [], [], []
    for example in examples:
        scores = []
        for completion in example["completions_ids"]:
            ids = torch.tensor([example["prompt_ids"] + completion])
            with torch.no_grad():
                logps = F.log_softmax(model(ids).logits[0, :-1], -1)
            targets = ids[0, 1:]
            scores.append(logps[torch.arange(len(targets)), targets][-len(completion) :].sum().item())
        # The comparisons below hold on any machine only if no two scores are within rounding (~1e-5) of a tie.
        gaps.extend(abs(a - b) for a, b in itertools.combinations(scores, 2))
        ordered = [scores[i] for i in example["ranking"]]
        top1.append(float(max(range(len(scores)), key=scores.__getitem__) == example["ranking"][0]))
        pairs = [(k, j) for k in range(len(ordered)) for j in range(k + 1, len(ordered))]
        taus.append(sum((ordered[k] > ordered[j]) - (ordered[k] < ordered[j]) for k, j in pairs) / len(pairs))
    assert min(gaps) > 1e-3, (
        f"two completions' log-probs differ by only {min(gaps)}: the ranking metrics are a coin flip"
    )
    # Means of 8 values that are multiples of 1 / 6 (tau) or 0 and 1 (top-1), in fp32: a few ulps.
    assert metrics.values("rewards/top1_accuracy")[-1] == pytest.approx(sum(top1) / len(top1), abs=1e-6)
    assert metrics.values("rewards/kendall_tau")[-1] == pytest.approx(sum(taus) / len(taus), abs=1e-6)
