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
`trl-spo eval` end to end on the tiny assets: SPO and DPO trained by their recipes, judged against the base model.

    HF_HUB_OFFLINE=1 python recipes/tiny/compare_spo_dpo.py [--output_dir outputs/compare] [--update_doc docs/results.md]

Trains `recipes/tiny/spo.yaml` (`trl-spo`) and `recipes/tiny/dpo.yaml` (`trl dpo`), then evaluates the base model,
SPO and DPO with `trl_spo.evaluation.evaluate` on the 64 held-out prompts, 4 samples each, against answers sampled from
the base model, under two judges:

- `reward model`: the shipped `recipes/tiny/reward_model` (built by `build_reward_model.py`), the kind of judge a user
  has for a real model: learned, and blind to inputs unlike its training data;
- `known rewards`: the rewards the data were drawn from (`data/rewards.json`); an answer not listed for its prompt
  (malformed, or another prompt's) gets `OFF_LIST_REWARD`, below every listed one. Verdict `sigmoid(r_a - r_b)` for
  both judges: the expert's own Bradley-Terry preference.

It prints (and with `--update_doc` writes between `<!-- tiny-eval:begin -->` and `<!-- tiny-eval:end -->`) one table;
`well-formed` is the share of completions that are a listed answer of their prompt. About 2 minutes on 2 CPU cores.
"""

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
OFF_LIST_REWARD = -3.0  # below the distractors' -2: a malformed answer is worse than a wrong but well-formed one


def known_reward_judge_class():
    from trl_spo.evaluation import PairwiseJudge

    class KnownRewardJudge(PairwiseJudge):
        """The oracle of the tiny world: the reward table the preference data were drawn from."""

        def __init__(self, table: dict[str, dict[str, float]]):
            self.table = table

        def reward(self, prompt: str, answer: str) -> float:
            return self.table[prompt].get(answer, OFF_LIST_REWARD)

        def _judge_once(self, prompt, answer_a, answer_b):
            reward_a, reward_b = self.reward(prompt, answer_a), self.reward(prompt, answer_b)
            # Rewards lie in [-3, 3]: exp cannot overflow.
            return 1 / (1 + math.exp(reward_b - reward_a)), {"reward_a": reward_a, "reward_b": reward_b}

        def describe(self):
            return {"type": "known_rewards", "off_list_reward": OFF_LIST_REWARD}

    return KnownRewardJudge


def train(output_root: Path) -> dict[str, str]:
    """The two recipes, unchanged but for their output directories; returns the model directories."""
    models = {"SPO": output_root / "tiny-spo", "DPO": output_root / "tiny-dpo"}
    commands = {
        "SPO": ["trl-spo", "--config", "recipes/tiny/spo.yaml", "--output_dir", str(models["SPO"])],
        "DPO": ["trl", "dpo", "--config", "recipes/tiny/dpo.yaml", "--output_dir", str(models["DPO"])],
    }
    for name, command in commands.items():
        print(f"training {name}: {shlex.join(command)}", flush=True)
        subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"base": str(HERE / "model"), **{name: str(path) for name, path in models.items()}}


def evaluate_all(models: dict[str, str], output_root: Path) -> list[dict]:
    from trl_spo.evaluation import EvalArguments, RewardModelJudge, evaluate

    table = json.loads((HERE / "data" / "rewards.json").read_text())
    judges = {
        "reward model": RewardModelJudge(str(HERE / "reward_model")),
        "known rewards": known_reward_judge_class()(table),
    }
    rows = []
    for model_name, path in models.items():
        for judge_name, judge in judges.items():
            args = EvalArguments(
                model_name_or_path=path,
                reference_model_name_or_path=str(HERE / "model"),
                dataset_name=str(HERE / "data" / "preferences_eval.jsonl"),
                judge="reward_model",  # recorded only: the judge object below is the one used
                judge_model=str(HERE / "reward_model"),
                num_samples=4,
                max_new_tokens=16,
                seed=0,
                output_dir=str(output_root / f"eval-{model_name}-{judge_name.replace(' ', '-')}"),
            )
            summary = evaluate(args, judge=judge)
            records = [json.loads(line) for line in (Path(args.output_dir) / "judgements.jsonl").open()]
            well_formed = sum(r["completion"] in table[r["prompt"]] for r in records) / len(records)
            rows.append({**summary, "model": model_name, "judge": judge_name, "well_formed": well_formed})
            print(f"{model_name} / {judge_name}: win rate {summary['win_rate']:.3f}", flush=True)
    return rows


def markdown(rows: list[dict], command: str) -> str:
    def number(value, scale=1.0, digits=2):
        return "—" if value is None else f"{value * scale:.{digits}f}"

    lines = [
        f"Tiny model, 64 held-out prompts x 4 samples, references sampled from the base model, seed 0. Command: "
        f"`{command}`",
        "",
        "| model | judge | win rate (%) ± SE | LC win rate (%) | mean entropy | useful entropy (n) | well-formed | "
        "empty / truncated |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['judge']} | {number(r['win_rate'], 100, 1)} ± {number(r['win_rate_stderr'], 100, 1)} "
            f"| {number(r['lc_win_rate'], 100, 1)} | {number(r['mean_entropy'])} "
            f"| {number(r['useful_entropy'])} ({r['num_preferred']}) | {r['well_formed']:.2f} "
            f"| {r['num_empty']} / {r['num_truncated']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--output_dir", default="outputs/compare", help="models, judgements and the table go here")
    parser.add_argument("--update_doc", default=None, help="Markdown file whose tiny-eval block receives the table")
    args = parser.parse_args(argv)
    output_root = (REPO_ROOT / args.output_dir).resolve()
    output_root.mkdir(parents=True, exist_ok=True)
    rows = evaluate_all(train(output_root), output_root)
    table = markdown(rows, shlex.join(["python", "recipes/tiny/compare_spo_dpo.py", *argv]))
    (output_root / "comparison.md").write_text(table)
    (output_root / "comparison.json").write_text(json.dumps(rows, indent=1) + "\n")
    if args.update_doc:
        sys.path.insert(0, str(REPO_ROOT))
        from benchmarks.reporting import update_doc

        update_doc(REPO_ROOT / args.update_doc, table, name="tiny-eval")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
