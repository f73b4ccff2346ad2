# Copyright 2026 The trl-spo developers
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
"""Build the offline assets of the tiny SPO recipe: a synthetic preference dataset and a tiny reference model.

Everything is generated locally from a fixed seed, so the README's main command runs on a machine with no hub access:

    python recipes/tiny/build_assets.py                # writes into recipes/tiny/
    python recipes/tiny/build_assets.py --output-dir /tmp/tiny --pretrain-steps 300

Outputs (relative to ``--output-dir``):

* ``data/preferences.jsonl`` / ``data/preferences_eval.jsonl``: ``prompt``/``chosen``/``rejected`` rows (TRL's standard
  explicit-prompt preference format). Each prompt asks for a member of a category ("Name a fruit:"); every candidate
  answer has a fixed reward, and each pair is labelled by sampling the Bradley-Terry model
  ``P(y1 > y2) = sigmoid(r1 - r2)``. Several answers are good, so the target ``Softmax(r / alpha)`` is a spread-out
  distribution rather than a single best answer: that is what SPO is meant to preserve.
* ``data/README.md``: a dataset card whose ``configs`` block maps the two files to the ``train`` and ``test`` splits, so
  ``load_dataset("recipes/tiny/data")`` works as a ``dataset_name``.
* ``data/rewards.json``: ``{prompt: {completion: reward}}``, the keys being the exact completion strings of the dataset
  (leading space and final period included), so benchmarks can compute the target distribution exactly.
* ``model/``: a ~0.2M-parameter ``Qwen2ForCausalLM`` with a byte-level BPE tokenizer trained on this text and a
  ChatML-like chat template, briefly pretrained on prompts followed by near-uniformly sampled answers. It is the
  reference policy: diverse and fluent (answers end with EOS) but not aligned with the rewards.

The data and tokenizer are byte-for-byte reproducible. The model weights are reproducible for a given torch version and
thread count (``--num-threads``, 1 by default), since float summation order depends on both. About 1.5 minutes on a
laptop-class CPU.
"""

import argparse
import hashlib
import json
import math
import random
import time
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2ForCausalLM, Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_PRETOKENIZE_REGEX

from trl_spo.tiny_models import tiny_qwen2


# Each category lists its answers from most to least rewarded; rewards are spread linearly over [REWARD_MAX,
# REWARD_MIN] in that order. The order is arbitrary taste: the point is a known, non-uniform reward over several
# acceptable answers. Answers are single words, unique across categories, so an off-category answer is unambiguous.
CATEGORIES: dict[str, list[str]] = {
    "Name a fruit:": ["mango", "peach", "cherry", "apple", "banana", "grape", "lemon", "plum", "kiwi", "melon"],
    "Name a colour:": ["blue", "green", "red", "purple", "yellow", "pink", "white", "black"],
    "Name an animal that flies:": ["eagle", "owl", "parrot", "swan", "sparrow", "crow", "bat", "bee"],
    "Name a vegetable:": ["carrot", "spinach", "pea", "potato", "onion", "cabbage", "leek"],
    "Name a country:": ["Japan", "Norway", "Brazil", "Kenya", "Canada", "India", "Peru", "France", "Chile"],
    "Name a planet:": ["Saturn", "Jupiter", "Mars", "Earth", "Venus", "Neptune", "Mercury", "Uranus"],
    "Name a metal:": ["gold", "silver", "copper", "iron", "zinc", "tin"],
    "Name a sport:": ["tennis", "football", "rugby", "golf", "hockey", "cricket", "boxing", "rowing"],
    "Name a musical instrument:": ["piano", "violin", "guitar", "cello", "flute", "harp", "drum", "trumpet", "oboe"],
    "Name a day of the week:": ["Saturday", "Friday", "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday"],
    "Name a sea animal:": ["dolphin", "octopus", "whale", "seal", "shark", "crab", "squid", "eel"],
    "Name a tool:": ["hammer", "drill", "saw", "wrench", "chisel", "shovel", "axe"],
}
REWARD_MAX = 3.0
REWARD_MIN = 1.0
DISTRACTOR_REWARD = -2.0

# ChatML-like, without a system prompt. The separator between turns is emitted before the next turn instead of after
# `<|im_end|>`, so an assistant completion ends exactly at EOS (`<|im_end|>`), as in the plain-text form, and rendering
# a prefix of a conversation is a prefix of the rendering (TRL's DPO and GRPO both rely on that). Newlines are written
# as `{{ '\n' }}` because transformers renders templates with `trim_blocks`, which eats a literal newline after a tag.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if not loop.first %}{{ '\\n' }}{% endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if messages %}{{ '\\n' }}{% endif -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- endif -%}"
)
# No BOS, as in Qwen2: sequences start with their first text token. The pad token is distinct from EOS so that code
# which confuses padding with end-of-sequence shows up in tests.
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, "<|im_start|>", EOS_TOKEN]


def completion_text(answer: str) -> str:
    # Standard-format completions start with a space so that "prompt + completion" reads naturally and the BPE
    # pre-tokenizer splits at the prompt/completion boundary (the prompt ends with ':').
    return f" {answer}."


def build_reward_table(rng: random.Random, num_distractors: int) -> dict[str, dict[str, float]]:
    table = {}
    for prompt, answers in CATEGORIES.items():
        rewards = {}
        for i, answer in enumerate(answers):
            reward = REWARD_MAX - (REWARD_MAX - REWARD_MIN) * i / (len(answers) - 1)
            rewards[completion_text(answer)] = round(reward, 3)
        others = sorted(a for p, ans in CATEGORIES.items() if p != prompt for a in ans)
        for answer in rng.sample(others, num_distractors):
            rewards[completion_text(answer)] = DISTRACTOR_REWARD
        table[prompt] = rewards
    return table


def sample_pairs(rng: random.Random, table: dict[str, dict[str, float]], num_rows: int) -> list[dict[str, str]]:
    prompts = list(table)
    rows = []
    for _ in range(num_rows):
        prompt = rng.choice(prompts)
        (y1, r1), (y2, r2) = rng.sample(sorted(table[prompt].items()), 2)
        # Bradley-Terry labels, not argmax labels: the noise is what makes Softmax(r / alpha) with alpha = 1 the
        # distribution that generated the data.
        if rng.random() < 1.0 / (1.0 + math.exp(-(r1 - r2))):
            chosen, rejected = y1, y2
        else:
            chosen, rejected = y2, y1
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_dataset_card(data_dir: Path, table: dict[str, dict[str, float]], num_train: int, num_eval: int) -> None:
    # The `configs` block is what makes `load_dataset("recipes/tiny/data")` (the CLI's `dataset_name`) return the
    # train/test splits: without it, datasets infers splits from file names, reads "preferences_eval" as the only
    # (test) split, and would also pick up rewards.json as data.
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: preferences.jsonl",
        "  - split: test",
        "    path: preferences_eval.jsonl",
        "---",
        "",
        "# Tiny synthetic preference dataset (generated)",
        "",
        "Written by `recipes/tiny/build_assets.py`; do not edit by hand, rebuild instead (see `recipes/tiny/README.md`).",
        "",
        f"- `preferences.jsonl` (train, {num_train} rows) and `preferences_eval.jsonl` (test, {num_eval} rows): TRL's",
        '  standard explicit-prompt format, e.g. `{"prompt": "Name a fruit:", "chosen": " mango.", "rejected": " kiwi."}`.',
        "- `rewards.json`: `{prompt: {completion: reward}}` for every candidate, keyed by the exact completion string.",
        "",
        f"In-category answers have rewards spread evenly over [{REWARD_MIN}, {REWARD_MAX}], off-category",
        f"distractors {DISTRACTOR_REWARD}. Each row draws a prompt and two distinct candidates uniformly and labels",
        "the pair with the Bradley-Terry model, P(y1 preferred) = sigmoid(r1 - r2): the expert distribution is",
        "Softmax(r) over each prompt's candidates, and SPO with softness alpha targets Softmax(r / alpha).",
        "",
        "| prompt | candidates | best answer |",
        "| --- | --- | --- |",
    ]
    for prompt, rewards in table.items():
        lines.append(f"| {prompt} | {len(rewards)} | {max(rewards, key=rewards.get).strip()} |")
    (data_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def render_plain(prompt: str, completion: str) -> str:
    return prompt + completion + EOS_TOKEN


def render_chat(tokenizer: Qwen2Tokenizer, prompt: str, completion: str) -> str:
    # Conversational datasets carry the answer without the leading space that only the plain format needs.
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion.strip()}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def train_tokenizer(table: dict[str, dict[str, float]], vocab_size: int) -> Qwen2Tokenizer:
    # The pipeline must be Qwen2's own (NFC, Qwen's split regex, then byte-level): for `model_type: qwen2`,
    # AutoTokenizer always builds a `Qwen2Tokenizer` from the saved vocab and merges with that pipeline, whatever
    # `tokenizer_class` says. Training with anything else would give a tokenizer that is not the one loaded later.
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # The full byte alphabet keeps every string encodable, even text the corpus never showed.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Bare and space-prefixed forms of every word: the plain format uses " banana", the chat format "banana". The
    # vocabulary saturates (every word a single token) before `vocab_size` on a corpus this small.
    words = set()
    for prompt, rewards in table.items():
        words.update(prompt.split())
        words.update(c.strip(" .") for c in rewards)
    corpus = []
    for word in sorted(words):
        corpus += [word, " " + word, word.lower(), " " + word.lower(), word + ".", " " + word + "."]
    corpus += ["user", "assistant", "system", "\n"]
    tokenizer.train_from_iterator(corpus, trainer)

    state = json.loads(tokenizer.to_str())["model"]
    qwen_tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]],
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
    )
    # Qwen2Tokenizer only registers its named special tokens; the chat delimiter must not be split either.
    qwen_tokenizer.add_tokens([AddedToken("<|im_start|>", special=True)])
    for text in corpus + ["Name a fruit: mango.<|im_end|>", "<|im_start|>user\nHi<|im_end|>", "a  b\n\n  c 12 é"]:
        if qwen_tokenizer(text)["input_ids"] != tokenizer.encode(text).ids:
            raise RuntimeError(f"Qwen2Tokenizer and the trained tokenizer disagree on {text!r}")
    return qwen_tokenizer


def pretraining_texts(
    rng: random.Random, tokenizer: Qwen2Tokenizer, table: dict[str, dict[str, float]], num: int, noise: float
) -> list[str]:
    texts = []
    prompts = list(table)
    for _ in range(num):
        prompt = rng.choice(prompts)
        good = [c for c, r in table[prompt].items() if r > 0]
        bad = [c for c, r in table[prompt].items() if r <= 0]
        # Uniform over the good answers, with a little mass on the distractors: the reference is fluent but neither
        # reward-aligned nor clean, so preference training has something measurable to change.
        completion = rng.choice(bad if rng.random() < noise else good)
        if rng.random() < 0.5:
            texts.append(render_plain(prompt, completion))
        else:
            texts.append(render_chat(tokenizer, prompt, completion))
    return texts


def build_model(tokenizer: Qwen2Tokenizer) -> Qwen2ForCausalLM:
    return tiny_qwen2(tokenizer, hidden_size=64, intermediate_size=256)


def pretrain(
    model: Qwen2ForCausalLM,
    tokenizer: Qwen2Tokenizer,
    texts: list[str],
    steps: int,
    batch_size: int,
    lr: float,
) -> float:
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    generator = torch.Generator().manual_seed(0)
    model.train()
    recent = []
    for step in range(steps):
        idx = torch.randint(len(encoded), (batch_size,), generator=generator).tolist()
        batch = [encoded[i] for i in idx]
        length = max(len(ids) for ids in batch)
        input_ids = torch.full((batch_size, length), tokenizer.pad_token_id)
        labels = torch.full((batch_size, length), -100)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        recent = (recent + [loss.item()])[-50:]
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"  step {step:5d}  lm loss {loss.item():.4f}  lr {scheduler.get_last_lr()[0]:.2e}")
    model.eval()
    return sum(recent) / len(recent)


@torch.no_grad()
def completion_distribution(
    model: Qwen2ForCausalLM, tokenizer: Qwen2Tokenizer, prompt: str, completions: list[str]
) -> torch.Tensor:
    """Sequence log-probabilities log pi(y | x) of each completion, EOS included."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    logps = []
    for completion in completions:
        ids = tokenizer(prompt + completion + EOS_TOKEN)["input_ids"]
        logits = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        targets = torch.tensor(ids[1:])
        token_logps = logits.gather(-1, targets[:, None]).squeeze(-1)
        logps.append(token_logps[len(prompt_ids) - 1 :].sum())
    return torch.stack(logps)


def report_model(model: Qwen2ForCausalLM, tokenizer: Qwen2Tokenizer, table: dict[str, dict[str, float]]):
    # A good reference puts most mass on the table, spread evenly over the in-category answers (normalised entropy
    # near 1) rather than following the rewards (that is the preference training's job).
    print("Sequence mass (plain format): in-category / distractors / off-table; in-category entropy / log(n)")
    for prompt, rewards in table.items():
        completions = list(rewards)
        probs = completion_distribution(model, tokenizer, prompt, completions).exp()
        good = torch.stack([p for p, c in zip(probs, completions, strict=False) if rewards[c] > 0])
        bad = sum(p.item() for p, c in zip(probs, completions, strict=False) if rewards[c] <= 0)
        within = good / good.sum()
        entropy = -(within * within.log()).sum().item() / math.log(len(within))
        off = max(0.0, 1 - good.sum().item() - bad)
        print(f"  {prompt!r:30} {good.sum().item():.3f} / {bad:.3f} / {off:.3f};  {entropy:.3f}")

    torch.manual_seed(0)
    print("Samples (temperature 1):")
    for prompt in ["Name a fruit:", "Name a planet:"]:
        inputs = tokenizer([prompt] * 6, return_tensors="pt")
        out = model.generate(**inputs, do_sample=True, max_new_tokens=8, top_k=0, top_p=1.0)
        texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :])
        print(f"  {prompt!r}: {texts}")
    messages = [{"role": "user", "content": "Name a colour:"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, do_sample=True, max_new_tokens=8, top_k=0, top_p=1.0, num_return_sequences=6)
    texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :])
    print(f"  chat {messages[0]['content']!r}: {texts}")


def file_report(root: Path) -> None:
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.parent in (root / "data", root / "model")):
        size = path.stat().st_size
        total += size
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        print(f"  {path.relative_to(root)!s:40} {size / 1024:9.1f} KiB  sha256 {digest}")
    print(f"  {'total':40} {total / 1024:9.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=600, help="training preference pairs")
    parser.add_argument("--num-eval", type=int, default=64, help="held-out preference pairs")
    parser.add_argument("--num-distractors", type=int, default=3, help="off-category candidates per prompt")
    parser.add_argument("--vocab-size", type=int, default=1024, help="BPE upper bound (the corpus saturates below)")
    parser.add_argument("--pretrain-steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--noise", type=float, default=0.1, help="share of pretraining answers that are distractors")
    # One thread: the weights then do not depend on the machine's core count, and a tiny model gains little from more
    # threads while suffering badly when they compete with another busy process.
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (the weights depend on it)")
    args = parser.parse_args()

    start = time.time()
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    # Independent streams, so that changing e.g. --num-train leaves the reward table and the eval split unchanged.
    table = build_reward_table(random.Random(f"{args.seed}-rewards"), args.num_distractors)
    train_rows = sample_pairs(random.Random(f"{args.seed}-train"), table, args.num_train)
    eval_rows = sample_pairs(random.Random(f"{args.seed}-eval"), table, args.num_eval)

    data_dir = args.output_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(data_dir / "preferences.jsonl", train_rows)
    write_jsonl(data_dir / "preferences_eval.jsonl", eval_rows)
    (data_dir / "rewards.json").write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_dataset_card(data_dir, table, len(train_rows), len(eval_rows))
    num_candidates = [len(r) for r in table.values()]
    print(
        f"Data: {len(table)} prompts, {min(num_candidates)}-{max(num_candidates)} candidates each "
        f"(rewards in [{REWARD_MIN}, {REWARD_MAX}], distractors {DISTRACTOR_REWARD}), "
        f"{len(train_rows)} train / {len(eval_rows)} eval pairs"
    )

    tokenizer = train_tokenizer(table, args.vocab_size)
    print(
        f"Tokenizer: byte-level BPE, {len(tokenizer)} tokens, eos={tokenizer.eos_token!r} pad={tokenizer.pad_token!r}"
    )

    texts = pretraining_texts(random.Random(f"{args.seed}-pretrain"), tokenizer, table, 20_000, args.noise)
    model = build_model(tokenizer)
    num_params = sum(p.numel() for p in model.parameters())
    print(f"Model: Qwen2ForCausalLM, {num_params / 1e6:.3f}M parameters; pretraining {args.pretrain_steps} steps")
    final_loss = pretrain(model, tokenizer, texts, args.pretrain_steps, args.batch_size, args.lr)
    print(f"Final LM loss (mean of the last 50 steps): {final_loss:.4f}")
    report_model(model, tokenizer, table)

    model_dir = args.output_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    # Drop files a previous build may have left (e.g. a renamed weight file), but only the kinds this script writes.
    for stale in model_dir.iterdir():
        if stale.is_file() and stale.suffix in (".json", ".safetensors", ".jinja", ".txt", ".bin"):
            stale.unlink()
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    print(f"Wrote {args.output_dir} in {time.time() - start:.1f}s:")
    file_report(args.output_dir)


if __name__ == "__main__":
    main()
