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

"""`trl-spo pair_weights`: Eq. 8's gradient weight on a dataset's pairs, before training."""

import json
import math
import re
from pathlib import Path

import pytest
import torch

from trl_spo.losses import spo_pairwise_loss
from trl_spo.pair_weights import completion_ids, main, pair_weight, read_rows, weight_profile

from .doc_figures import REPO_ROOT, assert_figures_in, fmt, passage, read_doc


TINY_MODEL_DIR = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "model"


def test_pair_weight_is_the_gradient_of_eq_8():
    chosen = torch.tensor([-10.0, -30.0, -5.0], requires_grad=True)
    rejected = torch.tensor([-12.0, -20.0, -5.0])
    alpha = 0.3
    spo_pairwise_loss(chosen, rejected, alpha).sum().backward()
    # d loss / d log pi(y_w) = -w (Eq. 8, section 3); fp32 sigmoid against fp32 autograd: a few ulps.
    assert pair_weight((chosen - rejected).detach(), alpha).tolist() == pytest.approx(
        (-chosen.grad).tolist(), abs=1e-6
    )
    assert pair_weight(torch.tensor([0.0]), alpha).item() == 0.5  # a tie


def test_weight_profile_counts_saturated_pairs():
    gaps = torch.tensor([0.0, 10.0, -10.0, 1000.0], dtype=torch.float64)
    (one,) = weight_profile(gaps, [1.0])
    # w = 0.5, sigmoid(-10) = 4.5e-5 (< 0.01), sigmoid(10) (> 0.99), sigmoid(-1000) = 0: exact shares of 4 pairs.
    assert (one["share_below"], one["share_above"]) == (0.5, 0.25)
    assert one["mean_weight"] == pytest.approx((0.5 + 1 / (1 + math.exp(10)) + 1 / (1 + math.exp(-10))) / 4, abs=1e-12)
    (small,) = weight_profile(gaps, [1e-4])
    assert (small["share_below"], small["share_above"]) == (0.0, 0.0)  # alpha * gap <= 0.1: nothing saturates


def test_completions_are_tokenized_as_dpo_does():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    prompt = [{"role": "user", "content": "Name a fruit."}]
    completion = [{"role": "assistant", "content": "Mango"}]
    prompt_ids, answer_ids = completion_ids(tokenizer, prompt, completion)
    full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    assert tokenizer.decode(prompt_ids + answer_ids) == full
    assert tokenizer.decode(answer_ids).startswith("Mango<|im_end|>")
    prompt_ids, answer_ids = completion_ids(tokenizer, "Name a fruit:", " Mango")
    assert answer_ids[-1] == tokenizer.eos_token_id  # standard rows get EOS appended, as DPOTrainer does


def test_cli_reports_and_writes_every_pair(tmp_path, capsys):
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Name a fruit, {i}."}],
            "chosen": [{"role": "assistant", "content": "Mango"}],
            "rejected": [{"role": "assistant", "content": "a stone that is not a fruit at all"}],
        }
        for i in range(6)
    ]
    dataset = tmp_path / "pairs.jsonl"
    dataset.write_text("\n".join(json.dumps(row) for row in rows))
    output = tmp_path / "weights.json"
    argv = [
        "--model",
        str(TINY_MODEL_DIR),
        "--dataset",
        str(dataset),
        "--alphas",
        "1",
        "0.001",
        "--output",
        str(output),
    ]
    assert main(argv) == 0
    result = json.loads(output.read_text())
    assert result["num_pairs"] == 6 and len(result["gaps"]) == 6
    # The profile is a function of the stored gaps: recompute it (same float64 computation, same process).
    assert weight_profile(torch.tensor(result["gaps"], dtype=torch.float64), [1.0, 0.001]) == result["profile"]
    # A 9-word loser against a 1-word winner: tens of nats apart, saturated at alpha = 1, not at alpha = 0.001.
    assert result["abs_gap_quantiles"]["p10"] > 10
    assert result["profile"][0]["share_below"] + result["profile"][0]["share_above"] == 1.0
    assert "| 1 | 0.00 | 100 % | 0 % |" in capsys.readouterr().out  # the table shows the profile
    with pytest.raises(ValueError, match="missing \\['chosen', 'rejected'\\]"):
        dataset.write_text(json.dumps({"prompt": "x", "completion": "y"}))
        main(["--model", str(TINY_MODEL_DIR), "--dataset", str(dataset)])


def test_alpha_guide_figures_are_the_committed_runs():
    """docs/choosing_alpha.md's table of what alpha did: each figure formatted from the two JSON files it names."""
    import itertools

    guide = passage(read_doc("docs/choosing_alpha.md"), "### What alpha did in this repository's runs", "## A healthy")
    chat = json.loads((REPO_ROOT / "docs" / "results" / "chat_pair_weights.json").read_text(encoding="utf-8"))
    # The doc's command reads pairs the repository holds, as many as the JSON measured. The JSON was made before the
    # file was renamed (same bytes: recipes/smollm2/README.md).
    renamed = {"recipes/smollm2/data/preferences_train.jsonl": "recipes/smollm2/open_ended_pairs.jsonl"}
    command = re.search(r"--dataset (\S+) --num_pairs (\d+) --output docs/results/chat_pair_weights\.json", guide)
    assert command, "docs/choosing_alpha.md has no command that makes chat_pair_weights.json"
    assert (command[1], int(command[2])) == (renamed.get(chat["dataset"], chat["dataset"]), chat["num_pairs"])
    assert len(read_rows(REPO_ROOT / command[1])) >= chat["num_pairs"]
    quantiles = chat["abs_gap_quantiles"]
    profile = {row["alpha"]: row for row in chat["profile"]}
    saturated = {alpha: 100 * (row["share_below"] + row["share_above"]) for alpha, row in profile.items()}
    figures = {
        "chat gaps: median (10-90 %: p10-p90)": f"median {fmt(quantiles['median'], 1)} nats (10-90 %: "
        f"{fmt(quantiles['p10'], 1)}-{fmt(quantiles['p90'], 1)})",
        "chat pairs saturated at alpha = 1": f"`alpha = 1`: {saturated[1.0]:.0f} %",
        "chat pairs saturated at alpha = 0.1": f"`alpha = 0.1`: {saturated[0.1]:.0f} %",
        "chat pairs saturated at alpha = 0.01 and 0.001": f"{saturated[0.01]:.0f} %",
        "chat mean pair weight, alpha = 1 and 0.1": fmt(profile[1.0]["mean_weight"], 2),
        "chat mean pair weight, alpha = 0.01": fmt(profile[0.01]["mean_weight"], 2),
        "chat mean pair weight, alpha = 0.001": fmt(profile[0.001]["mean_weight"], 2),
        "chat answers' mean length": f"~{chat['mean_completion_tokens']:.0f} tokens",
        "chat pairs measured": f"{chat['num_pairs']} of the pairs",
        "chat median gap, in the reading": f"median gap {quantiles['median']:.0f} nats",
    }
    # The doc states one figure for alpha 1 and 0.1, and one for 0.01 and 0.001.
    assert fmt(profile[1.0]["mean_weight"], 2) == fmt(profile[0.1]["mean_weight"], 2)
    assert f"{saturated[0.01]:.0f}" == f"{saturated[0.001]:.0f}"

    answers = json.loads((REPO_ROOT / "docs" / "results" / "answers.json").read_text(encoding="utf-8"))
    reference = torch.tensor(answers["reference"]["SFT reference"]["log_probs"]["train"], dtype=torch.float64)
    gaps = torch.tensor(
        [abs(row[i] - row[j]).item() for row in reference for i, j in itertools.combinations(range(6), 2)],
        dtype=torch.float64,
    )
    # Quantiles of 270 committed float64 gaps: the same interpolation on any machine.
    low, high = torch.quantile(gaps, torch.tensor([0.1, 0.9], dtype=torch.float64)).tolist()
    logs = {
        run["setting"]["name"]: [entry for entry in run["train_log"] if "pair_weight/mean" in entry]
        for run in answers["runs"]
    }
    names = [f"SPO α={alpha} β=0.1" for alpha in ("0.5", "1", "2")]
    first = [logs[name][0]["pair_weight/mean"] for name in names]
    last = [logs[name][-1]["pair_weight/mean"] for name in names]
    worst = {name: max(entry["pair_weight/saturated"] for entry in logs[name]) for name in names}
    assert logs["SPO α=1 β=0.1"][0]["pair_weight/saturated"] == 0, "the doc says 0 % saturated in the first steps"
    figures.update(
        {
            "answers gaps: median (10-90 %: p10-p90)": f"median {fmt(gaps.median().item(), 2)} nats (10-90 %: "
            f"{fmt(low, 2)}-{fmt(high, 2)})",
            "answers mean pair weight, first window": f"{fmt(min(first), 2)}-{fmt(max(first), 2)}",
            "answers mean pair weight, last window": f"{fmt(min(last), 2)}-{fmt(max(last), 2)}",
            "answers most saturated window, alpha 0.5 and 1": f"at most {100 * max(worst[names[0]], worst[names[1]]):.0f} %",
            "answers most saturated window, alpha 2": f"{fmt(100 * worst[names[2]], 1)} %",
        }
    )
    assert_figures_in(guide, figures, "docs/choosing_alpha.md's table of what alpha did")
