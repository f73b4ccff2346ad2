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
The maximum-entropy frontier of reward and entropy: a yardstick that compares SPO and DPO whatever knob each turns.

Over a finite answer set with rewards `r`, `Softmax(lambda * r)` maximises entropy among all distributions with the
same expected reward (the Gibbs variational principle: `Softmax(r / alpha)` maximises `E[r] + alpha * H`). So the
curve `lambda -> (E[r], H)` is the exact frontier, and a policy's **entropy deficit**, the frontier's entropy at the
policy's own expected reward minus the policy's entropy, is >= 0 and says how much spread the policy gave up that it
did not need to for its reward. SPO's fixed point sits on the frontier (deficit 0); DPO's, `pi_ref * exp(r / beta)`
normalised, sits on it only when the reference's preferences among the answers are a function of `r`.

Everything is per prompt, over the answers of that prompt's set, in float64: pure torch, no model.
"""

import math

import torch


def expected_reward(probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """`E_p[r]` over the last dimension."""
    return (probs * rewards).sum(-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """`-sum p log p` in nats over the last dimension, with `0 log 0 = 0`."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """`KL(p || q)` in nats over the last dimension, from log-probabilities (normalised over that dimension)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def frontier_entropy(rewards: torch.Tensor, target_reward: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """
    The largest entropy of a distribution over answers with rewards `rewards` `(n,)` whose expected reward is
    `target_reward` (any shape): the entropy of `Softmax(lambda * r)` with `lambda` solved by bisection.

    `E[r]` under `Softmax(lambda * r)` rises monotonically with `lambda` (its derivative is the variance of r), from
    `min r` at `-inf` to `max r` at `+inf`, so bisection on `lambda` converges; a target at or beyond an end gets that
    end's entropy limit (0 for a unique best or worst answer).
    """
    rewards = rewards.double()
    target = torch.as_tensor(target_reward, dtype=torch.float64)
    spread = (rewards.max() - rewards.min()).clamp_min(1e-12)
    # |lambda| * spread = 700 makes exp underflow to 0 for every answer but the extremes: both ends are reached.
    low = torch.full_like(target, -700.0 / spread.item())
    high = torch.full_like(target, 700.0 / spread.item())
    for _ in range(iterations):
        middle = (low + high) / 2
        below = expected_reward(torch.softmax(middle[..., None] * rewards, -1), rewards) < target
        low = torch.where(below, middle, low)
        high = torch.where(below, high, middle)
    return entropy(torch.softmax(((low + high) / 2)[..., None] * rewards, -1))


def dpo_fixed_point(reference_log_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """
    DPO's optimum on Bradley-Terry pairs of reward `r` (DPO paper, Eq. 4), over the answer set:
    `pi_ref(y) * exp(r(y) / beta)` normalised, as log-probabilities `(P, n)` from the reference's `(P, n)`.
    """
    return torch.log_softmax(reference_log_probs.double() + rewards.double() / beta, -1)


def frontier_summary(log_probs: torch.Tensor, reference_log_probs: torch.Tensor, rewards: torch.Tensor) -> dict:
    """
    A policy's place against the frontier, per prompt then averaged over prompts.

    Args:
        log_probs (`torch.Tensor`): the policy's `log pi(y | x)` of each answer, `(P, n)` (not conditioned: the mass
            on the set is read from it).
        reference_log_probs (`torch.Tensor`): the reference's, `(P, n)`.
        rewards (`torch.Tensor`): `r` of the n answers, `(n,)`.

    Returns:
        `dict` of floats: `expected_reward` (E[r] of the policy conditioned on the set), `entropy`,
        `frontier_entropy` (at that E[r]), `deficit` (their difference), `kl_to_reference` (KL of the conditioned
        policy to the conditioned reference), `mass` (pi of the set).
    """
    log_probs = log_probs.double()
    conditional = torch.log_softmax(log_probs, -1)
    reference = torch.log_softmax(reference_log_probs.double(), -1)
    probs = conditional.exp()
    reward = expected_reward(probs, rewards.double())
    spread = entropy(probs)
    frontier = frontier_entropy(rewards, reward)
    return {
        "expected_reward": reward.mean().item(),
        "entropy": spread.mean().item(),
        "frontier_entropy": frontier.mean().item(),
        "deficit": (frontier - spread).mean().item(),
        "kl_to_reference": kl_divergence(conditional, reference).mean().item(),
        "mass": log_probs.logsumexp(-1).exp().mean().item(),
    }


# ---------------------------------------------------------------------------------------------------------------------
# The report: every trained policy of `benchmarks.answers` placed against the frontier
# ---------------------------------------------------------------------------------------------------------------------

# The runs the report reads, in this order (a missing file is skipped and said so): the default run and the beta
# sweep (SPO's alpha grid, DPO at beta 0.1 and 0.01), DPO's larger betas, the skewed reference, the second category set.
SOURCES = ("answers", "answers_beta_sweep", "answers_dpo_beta", "answers_skewed", "answers_second")
SPLIT_NAMES = {
    "train": "training prompts",
    "heldout_template": "held-out template",
    "heldout_category": "held-out categories",
}


def describe_run(payload: dict) -> tuple[str, str]:
    """`(reference, categories)` of a run from its stored config: `uniform`/`skewed` and `first`/`second`."""
    weights = payload["config"]["reference"].get("answer_weights")
    reference = "uniform" if weights is None or len(set(weights)) == 1 else "skewed"
    nouns = [category["noun"] for category in payload["config"]["task"]["train_categories"]]
    return reference, "first" if "colour" in nouns else "second"


def run_rows(payload: dict, source: str) -> list[dict]:
    """The frontier rows of one run's JSON: its SFT reference and every trained policy, per split."""
    from .answers_task import SPLITS

    rewards = torch.tensor(payload["config"]["task"]["reward_ladder"], dtype=torch.float64)
    reference_kind, categories = describe_run(payload)
    reference = {
        split: torch.tensor(payload["reference"]["SFT reference"]["log_probs"][split], dtype=torch.float64)
        for split in SPLITS
    }
    common = {"source": source, "reference": reference_kind, "categories": categories}
    rows = []
    for split in SPLITS:
        rows.append(
            {**common, "name": "SFT reference", "method": "reference", "alpha": None, "beta": None, "split": split}
            | frontier_summary(reference[split], reference[split], rewards)
        )
    for run in payload["runs"]:
        setting = run["setting"]
        if setting["data"] != "pairs" or setting["regularizer"] not in (None, "global_kl"):
            continue  # rankings and the dataset-KL ablation are other comparisons
        for split in SPLITS:
            row = {**common, **{key: setting[key] for key in ("name", "method", "alpha", "beta")}, "split": split}
            row |= frontier_summary(torch.tensor(run["final"][split], dtype=torch.float64), reference[split], rewards)
            if setting["method"] == "dpo":
                fixed_point = dpo_fixed_point(reference[split], rewards, setting["beta"])
                theory = frontier_summary(fixed_point, reference[split], rewards)
                row["fixed_point"] = {key: theory[key] for key in ("expected_reward", "entropy", "deficit")}
                row["fixed_point"]["kl_to_reference"] = theory["kl_to_reference"]
            rows.append(row)
    return rows


def matched_comparisons(
    rows: list[dict], tolerance: float = 0.1, splits: tuple[str, ...] = ("train", "heldout_template")
) -> list[dict]:
    """
    For every SPO row (with the KL), the DPO row of the same reference, categories and split whose expected reward is
    closest, if within `tolerance`: SPO's entropy above DPO's at matched reward, and the difference of their deficits
    (which also corrects for the small gap between the two rewards). Held-out categories are left out by default:
    their rewards cannot be learned from the training categories, so a match there is a coincidence.
    """
    matches = []
    for spo in (row for row in rows if row["method"] == "spo" and row["beta"] > 0 and row["split"] in splits):
        candidates = [
            row
            for row in rows
            if row["method"] == "dpo" and all(row[key] == spo[key] for key in ("reference", "categories", "split"))
        ]
        if not candidates:
            continue
        dpo = min(candidates, key=lambda row: abs(row["expected_reward"] - spo["expected_reward"]))
        if abs(dpo["expected_reward"] - spo["expected_reward"]) <= tolerance:
            matches.append(
                {
                    **{key: spo[key] for key in ("reference", "categories", "split")},
                    "spo": spo["name"],
                    "spo_beta": spo["beta"],
                    "dpo": dpo["name"],
                    "spo_expected_reward": spo["expected_reward"],
                    "dpo_expected_reward": dpo["expected_reward"],
                    "spo_mass": spo["mass"],
                    "dpo_mass": dpo["mass"],
                    "entropy_gap": spo["entropy"] - dpo["entropy"],
                    "deficit_gap": dpo["deficit"] - spo["deficit"],
                }
            )
    return matches


REFERENCE_NAMES = {"uniform": "the uniform SFT reference", "skewed": "the skewed SFT reference"}
CATEGORY_NAMES = {"first": "the first category set", "second": "the second category set"}


def headlines(matches: list[dict], split: str = "train", spo_beta: float = 0.1) -> list[str]:
    """
    One sentence per reference and category set, on `split`: the fair comparison as measured, for the docs' headline.
    SPO speaks with its default KL weight `spo_beta` (the sweep's other betas are in the table); where several of its
    alphas found a match, the one whose reward is closest to its DPO match's.
    """
    sentences = []
    chosen = [m for m in matches if m["split"] == split and m.get("spo_beta", spo_beta) == spo_beta]
    for key in sorted({(m["reference"], m["categories"]) for m in chosen}, key=lambda k: (k[0] != "uniform", k)):
        group = [m for m in chosen if (m["reference"], m["categories"]) == key]
        m = min(group, key=lambda m: abs(m["spo_expected_reward"] - m["dpo_expected_reward"]))
        direction = "more" if m["entropy_gap"] >= 0 else "less"
        matched = "matched" if abs(m["spo_expected_reward"] - m["dpo_expected_reward"]) <= 0.1 else "the nearest"
        sentences.append(
            f"From {REFERENCE_NAMES[key[0]]} ({CATEGORY_NAMES[key[1]]}, {SPLIT_NAMES[split]}), at {matched} expected "
            f"reward ({m['spo']}: E[r] {m['spo_expected_reward']:.2f}; {m['dpo']}, the DPO β whose trained reward is "
            f"closest: {m['dpo_expected_reward']:.2f}), SPO's entropy is {abs(m['entropy_gap']):.2f} nats {direction} "
            f"than DPO's; {'DPO' if m['deficit_gap'] >= 0 else 'SPO'}'s entropy deficit to the frontier exceeds "
            f"{'SPO' if m['deficit_gap'] >= 0 else 'DPO'}'s by {abs(m['deficit_gap']):.3f} nats; SPO keeps "
            f"{m['spo_mass']:.2f} of the probability on the answer sets, DPO {m['dpo_mass']:.2f}."
        )
    return sentences


def dpo_curve(reference_log_probs: torch.Tensor, rewards: torch.Tensor, betas) -> list[dict]:
    """DPO's fixed point over a beta grid: `(beta, E[r], entropy, KL to the reference)` means over prompts."""
    points = []
    for beta in betas:
        summary = frontier_summary(dpo_fixed_point(reference_log_probs, rewards, beta), reference_log_probs, rewards)
        points.append({"beta": beta, **{k: summary[k] for k in ("expected_reward", "entropy", "kl_to_reference")}})
    return points


def _fmt(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[dict], split: str) -> str:
    """One split's table: every policy with its place against the frontier (and DPO's fixed point beside it)."""
    header = (
        "| reference / categories | policy | E[r given the set] | entropy | frontier entropy at that E[r] | deficit | "
        "KL to the reference | π(answer set) | DPO's fixed point: E[r] / entropy / deficit |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for row in rows:
        if row["split"] != split:
            continue
        theory = row.get("fixed_point")
        fixed = (
            f"{_fmt(theory['expected_reward'])} / {_fmt(theory['entropy'])} / {_fmt(theory['deficit'])}"
            if theory
            else "—"
        )
        lines.append(
            f"| {row['reference']} / {row['categories']} | {row['name']} | {_fmt(row['expected_reward'])} | "
            f"{_fmt(row['entropy'])} | {_fmt(row['frontier_entropy'])} | {_fmt(row['deficit'])} | "
            f"{_fmt(row['kl_to_reference'])} | {_fmt(row['mass'], 2)} | {fixed} |"
        )
    return header + "\n".join(lines) + "\n"


def matched_table(matches: list[dict]) -> str:
    header = (
        "| reference / categories | split | SPO | DPO (β matched) | E[r] SPO / DPO | SPO's entropy above DPO's | "
        "DPO's deficit minus SPO's |\n| --- | --- | --- | --- | ---: | ---: | ---: |\n"
    )
    lines = [
        f"| {m['reference']} / {m['categories']} | {SPLIT_NAMES[m['split']]} | {m['spo']} | {m['dpo']} | "
        f"{_fmt(m['spo_expected_reward'])} / {_fmt(m['dpo_expected_reward'])} | {_fmt(m['entropy_gap'])} | "
        f"{_fmt(m['deficit_gap'])} |"
        for m in matches
    ]
    return header + "\n".join(lines) + "\n"


def plot(rows: list[dict], curves: dict, rewards: torch.Tensor, path) -> None:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("the figure needs matplotlib: `pip install trl-spo[bench]`") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (entropy_panel, kl_panel) = plt.subplots(1, 2, figsize=(14, 5.5))
    grid = torch.linspace(-8, 40, 400, dtype=torch.float64)
    frontier = torch.softmax(grid[:, None] * rewards, -1)
    entropy_panel.plot(
        expected_reward(frontier, rewards), entropy(frontier), color="black", linewidth=1, label="frontier"
    )
    colours = {("uniform", "first"): "tab:blue", ("skewed", "first"): "tab:red", ("uniform", "second"): "tab:green"}
    for (reference, categories), curve in curves.items():
        colour = colours.get((reference, categories), "grey")
        label = f"DPO's fixed point, {reference} reference, {categories} categories"
        entropy_panel.plot(
            [p["expected_reward"] for p in curve], [p["entropy"] for p in curve], "--", color=colour, label=label
        )
        kl_panel.plot([p["expected_reward"] for p in curve], [p["kl_to_reference"] for p in curve], "--", color=colour)
    markers = {"spo": "o", "dpo": "s", "reference": "*"}
    for row in rows:
        if row["split"] != "train":
            continue
        colour = colours.get((row["reference"], row["categories"]), "grey")
        marker = markers[row["method"]]
        size = 160 if row["method"] == "reference" else 45
        fill = colour if row["method"] != "spo" else "white"
        for panel, y in ((entropy_panel, row["entropy"]), (kl_panel, row["kl_to_reference"])):
            panel.scatter(row["expected_reward"], y, marker=marker, s=size, facecolor=fill, edgecolor=colour, zorder=3)
        if row["method"] != "reference":
            entropy_panel.annotate(
                row["name"].replace(" β=0.1", "") if row["method"] == "spo" else row["name"],
                (row["expected_reward"], row["entropy"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    entropy_panel.set(
        xlabel="E[r] of π(· | x, answer set)",
        ylabel="entropy of π(· | x, answer set) (nats)",
        title="Reward against entropy, training prompts (circles SPO, squares DPO, stars references)",
    )
    entropy_panel.set_xlim(-0.1, 1.55)  # the frontier's left half (rewards below the uniform mean) holds no policy
    entropy_panel.legend(fontsize=7, loc="lower left")
    kl_panel.set(xlabel="E[r] of π(· | x, answer set)", ylabel="KL(π || π_ref) on the answer set (nats)")
    kl_panel.set_title("Reward against KL to the reference (dashed: DPO's fixed points)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(results_dir, doc=None, command: str = "python -m benchmarks.frontier", log=print) -> dict:
    """
    Reads the runs in `results_dir` (`SOURCES`), writes `frontier.json` and `frontier.png` there, and the tables into
    `doc`'s block `frontier`. Returns the payload. Seconds: the runs are already measured; this only computes.
    """
    import hashlib
    import json
    from pathlib import Path

    from .reporting import update_doc, write_atomically

    results_dir = Path(results_dir)
    rows, curves, read = [], {}, []
    rewards = None
    for source in SOURCES:
        path = results_dir / f"{source}.json"
        if not path.is_file():
            log(f"{path} not found: its runs are not in the report")
            continue
        payload = json.loads(path.read_text())
        read.append(source)
        new_rows = run_rows(payload, source)
        # A run repeats the reference of another (the beta sweep's is the default run's): keep one row of each.
        seen = {(r["reference"], r["categories"], r["split"], r["name"]) for r in rows}
        rows += [r for r in new_rows if (r["reference"], r["categories"], r["split"], r["name"]) not in seen]
        rewards = torch.tensor(payload["config"]["task"]["reward_ladder"], dtype=torch.float64)
        key = describe_run(payload)
        if key not in curves:
            reference = torch.tensor(payload["reference"]["SFT reference"]["log_probs"]["train"], dtype=torch.float64)
            betas = torch.logspace(-1.3, 1.3, 60).tolist()
            curves[key] = dpo_curve(reference, rewards, betas)
    if rewards is None:
        raise FileNotFoundError(f"none of {[f'{s}.json' for s in SOURCES]} is in {results_dir}")
    matches = matched_comparisons(rows)
    # The headline compares SPO with the DPO beta whose reward is closest, however close: the sentence states both
    # rewards, and the deficit already corrects for their gap.
    summary = headlines(matched_comparisons(rows, tolerance=math.inf))
    caption = (
        "Every trained policy of `benchmarks.answers` against the maximum-entropy frontier, per prompt then averaged, "
        "of the policy conditioned on each prompt's answer set; the deficit is the frontier's entropy at the "
        "policy's own E[r] minus its entropy. DPO's fixed point, `π_ref exp(r/β)` normalised, from the same "
        f"reference's measured log-probabilities. Read from {', '.join(f'`{s}.json`' for s in read)}. Command: "
        f"`{command}`"
    )
    tables = "\n".join(
        f"**{SPLIT_NAMES[split].capitalize()}.**\n\n" + markdown_table(rows, split) for split in SPLIT_NAMES
    )
    block = (
        f"{caption}\n\n{tables}\n**At matched expected reward** (each SPO row with the KL beside the DPO row of the "
        "same reference, categories and split whose E[r] is closest, when within 0.1; training prompts and held-out "
        "template):\n\n" + matched_table(matches) + "".join(f"\n{sentence}\n" for sentence in summary)
    )
    figure = results_dir / "frontier.png"
    plot(rows, curves, rewards, figure)
    payload = {
        "command": command,
        "sources": read,
        "rows": rows,
        "matched": matches,
        "headlines": summary,
        "dpo_curves": {f"{reference}/{categories}": curve for (reference, categories), curve in curves.items()},
        "table": block,
        "figure_sha256": hashlib.sha256(figure.read_bytes()).hexdigest(),
    }
    write_atomically(results_dir / "frontier.json", json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    if doc is not None:
        update_doc(Path(doc), block, name="frontier")
    return payload


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks.frontier") -> int:
    import argparse
    import shlex
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--results_dir", default="docs/results", help="where the runs of benchmarks.answers are")
    parser.add_argument("--update_doc", default=None, help="Markdown file whose block `frontier` receives the tables")
    parsed = parser.parse_args(argv)
    payload = report(parsed.results_dir, parsed.update_doc, command=shlex.join(prog.split() + argv))
    print(
        f"Written to {parsed.results_dir}/frontier.json: {len(payload['rows'])} rows, {len(payload['matched'])} matches"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
