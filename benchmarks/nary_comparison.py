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
The paper's Tables 4-5 in miniature, measured exactly: SPO, PL-DPO, S-DPO and Best-response SFT on best-of-n and ranked
data of `python -m benchmarks.answers --settings nary`, each policy against Best-response SFT.

The paper's metric is the win rate against Best-response SFT under the expert's reward. With every answer's
probability known exactly it needs no sampling: `P(r(y) > r(y')) + P(r(y) = r(y')) / 2` for `y` from the policy and
`y'` from Best-response SFT, where an answer outside the set loses to any answer in it and ties with another one
(`win_rate`). Beside it: entropy, mass on the set, E[r] and the deficit to the maximum-entropy frontier
(`benchmarks.frontier`), and the total variation to each method's own fixed point (`own_target`).
"""

import itertools

import torch

from .frontier import SPLIT_NAMES, dpo_fixed_point, frontier_summary


def win_rate(policy_log_probs: torch.Tensor, baseline_log_probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """
    Per prompt, the probability that the policy's answer beats the baseline's under `rewards`, ties counting half.

    Args:
        policy_log_probs, baseline_log_probs (`torch.Tensor`): `log pi(y | x)` of each answer of the set, `(P, n)`;
            what they leave outside the set is an answer outside it.
        rewards (`torch.Tensor`): `(n,)`.

    Returns:
        `torch.Tensor`: `(P,)`, float64.
    """
    policy = policy_log_probs.double().exp()
    baseline = baseline_log_probs.double().exp()
    # The measured probabilities can exceed 1 in sum only by rounding; what is left is the outside answer's.
    policy_out = (1 - policy.sum(-1)).clamp_min(0)
    baseline_out = (1 - baseline.sum(-1)).clamp_min(0)
    rewards = rewards.double()
    beats = (rewards[:, None] > rewards[None, :]).double() + 0.5 * (rewards[:, None] == rewards[None, :]).double()
    inside = torch.einsum("pi,ij,pj->p", policy, beats, baseline)
    return inside + policy.sum(-1) * baseline_out + 0.5 * policy_out * baseline_out


def plackett_luce_top_of_n(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """
    The distribution of the top answer of a Plackett-Luce ranking (on `rewards`) of `n` answers drawn uniformly
    without replacement, by enumerating every subset: Best-response SFT's fixed point on such data, `(len(rewards),)`.
    """
    rewards = rewards.double()
    total = torch.zeros_like(rewards)
    subsets = list(itertools.combinations(range(len(rewards)), n))
    for subset in subsets:
        index = torch.tensor(subset)
        total[index] += torch.softmax(rewards[index], -1)
    return total / len(subsets)


def own_target(setting: dict, reference_log_probs: torch.Tensor, rewards: torch.Tensor, n: int) -> torch.Tensor:
    """
    A method's fixed point over each prompt's answers, `(P, n_answers)` probabilities: `Softmax(r / alpha)` for SPO
    (Theorems 1 and 4); the top of a Plackett-Luce ranking of `n` random answers for Best-response SFT;
    `pi_ref exp(r / beta)` normalised for the DPO family, whose Plackett-Luce likelihood is maximised by the
    reference log-ratio `beta log(pi / pi_ref) = r + const`.
    """
    prompts = reference_log_probs.shape[0]
    if setting["method"] == "spo":
        return torch.softmax(rewards.double() / setting["alpha"], -1).expand(prompts, -1)
    if setting["method"] == "br_sft":
        return plackett_luce_top_of_n(rewards, n).expand(prompts, -1)
    return dpo_fixed_point(reference_log_probs, rewards, setting["beta"]).exp()


DATA_NAMES = {"best_of_n": "best-of-n data (Table 4)", "rankings": "ranked data (Table 5)"}


def comparison_rows(payload: dict) -> list[dict]:
    """Every trained policy of an `answers_nary` run, per split, against Best-response SFT and its own fixed point."""
    from .answers_task import SPLITS

    rewards = torch.tensor(payload["config"]["task"]["reward_ladder"], dtype=torch.float64)
    n = payload["config"]["plan"]["ranking_size"]
    reference = {
        split: torch.tensor(payload["reference"]["SFT reference"]["log_probs"][split], dtype=torch.float64)
        for split in SPLITS
    }
    finals = {
        run["setting"]["name"]: {s: torch.tensor(v, dtype=torch.float64) for s, v in run["final"].items()}
        for run in payload["runs"]
    }
    baseline_runs = [run for run in payload["runs"] if run["setting"]["method"] == "br_sft"]
    if len(baseline_runs) != 1:
        raise ValueError(f"the comparison needs one Best-response SFT run, found {len(baseline_runs)}")
    baseline = finals[baseline_runs[0]["setting"]["name"]]
    baseline_target = plackett_luce_top_of_n(rewards, n).log()
    rows = []
    for run in payload["runs"]:
        setting = run["setting"]
        for split in SPLITS:
            log_probs = finals[setting["name"]][split]
            conditional = torch.softmax(log_probs, -1)
            target = own_target(setting, reference[split], rewards, n)
            # What theory predicts: the method's fixed point against Best-response SFT's, both all on the set.
            target_win_rate = win_rate(target.log(), baseline_target.expand_as(target), rewards)
            # Both policies conditioned on the set: the part of the win rate that is the shape, not the mass.
            shape_win_rate = win_rate(conditional.log(), torch.log_softmax(baseline[split], -1), rewards)
            rows.append(
                {
                    **{key: setting[key] for key in ("name", "method", "alpha", "beta", "data")},
                    "split": split,
                    "win_rate": win_rate(log_probs, baseline[split], rewards).mean().item(),
                    "win_rate_given_set": shape_win_rate.mean().item(),
                    "fixed_point_win_rate": target_win_rate.mean().item(),
                    "tv_to_own_target": (0.5 * (conditional - target).abs().sum(-1)).mean().item(),
                    **frontier_summary(log_probs, reference[split], rewards),
                }
            )
    return rows


def _fmt(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_tables(rows: list[dict], split: str = "train") -> str:
    """One table per data type, laid out like the paper's Tables 4 and 5; Best-response SFT in both."""
    blocks = []
    for data, title in DATA_NAMES.items():
        chosen = [r for r in rows if r["split"] == split and (r["data"] == data or r["method"] == "br_sft")]
        lines = [
            f"| {r['name']} | {_fmt(100 * r['win_rate'], 1)} | {_fmt(100 * r['win_rate_given_set'], 1)} | "
            f"{_fmt(100 * r['fixed_point_win_rate'], 1)} | "
            f"{_fmt(r['entropy'], 2)} | {_fmt(r['mass'], 2)} | "
            f"{_fmt(r['expected_reward'], 2)} | {_fmt(r['deficit'])} | {_fmt(r['tv_to_own_target'])} |"
            for r in chosen
        ]
        blocks.append(
            f"**{title.capitalize()}, {SPLIT_NAMES[split]}.**\n\n"
            "| method | win rate vs Best-response SFT (%) | given the set (%) | the fixed points' (%) | entropy | "
            "π(answer set) | E[r given the set] | deficit | TV to own fixed point |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(lines) + "\n"
        )
    return "\n".join(blocks)


def report(
    results_dir, doc=None, command: str = "python -m benchmarks.nary_comparison", log=print, name: str = "answers_nary"
) -> dict:
    """
    Reads the run `name`.json in `results_dir` (`answers_nary` by default) and writes its comparison beside it, named
    without the `answers_` prefix (`nary.json`), and its tables into `doc`'s block of that name (`nary`).
    """
    import json
    from pathlib import Path

    from .reporting import update_doc, write_atomically

    results_dir = Path(results_dir)
    output = name.removeprefix("answers_")
    payload = json.loads((results_dir / f"{name}.json").read_text())
    rows = comparison_rows(payload)
    caption = (
        f"Every policy of `{name}.json` against Best-response SFT (exact win rate under the expert's reward; an "
        "answer outside the set loses to any in it) and against its own fixed point: `Softmax(r/α)` for SPO, the top "
        "of a Plackett-Luce ranking of "
        f"{payload['config']['plan']['ranking_size']} random answers for Best-response SFT, `π_ref exp(r/β)` "
        "normalised for PL-DPO and S-DPO. 'Given the set': both policies conditioned on the answer set (what is "
        "left of the win rate when neither loses mass). 'The fixed points'': theory's prediction, the method's fixed "
        "point against Best-response SFT's, both with all their mass on the set. "
        f"Command: `{command}`"
    )
    if "total_seconds" in payload:
        caption += f" (the run: {payload['total_seconds'] / 60:.0f} min on {payload['threads']} CPU threads)."
    block = caption + "\n\n" + "\n".join(markdown_tables(rows, split) for split in SPLIT_NAMES)
    result = {"command": command, "rows": rows, "table": block}
    write_atomically(results_dir / f"{output}.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    if doc is not None:
        update_doc(Path(doc), block, name=output)
    log(f"Written to {results_dir / f'{output}.json'}: {len(rows)} rows")
    return result


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks.nary_comparison") -> int:
    import argparse
    import shlex
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--results_dir", default="docs/results", help="where the run's JSON is")
    parser.add_argument(
        "--name", default="answers_nary", help="the run (`--name` of `benchmarks.answers`): reads NAME.json"
    )
    parser.add_argument(
        "--update_doc", default=None, help="Markdown file whose block (NAME without `answers_`) receives the tables"
    )
    parsed = parser.parse_args(argv)
    report(parsed.results_dir, parsed.update_doc, command=shlex.join(prog.split() + argv), name=parsed.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
