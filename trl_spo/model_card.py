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
The model card of an SPO run: TRL's language-model card, with SPO's settings, and links only where they resolve.

TRL's template links the base model and the dataset on the hub unconditionally, so a model trained from a local
directory reads "a fine-tuned version of [None](https://huggingface.co/None)" and a local dataset becomes a dead hub
link. Here a local base model or dataset is named as a path, and only hub ids are linked.
"""

import os
import re
from importlib.metadata import version

from huggingface_hub import ModelCard, ModelCardData
from transformers import is_wandb_available

from ._trl_compat import get_comet_experiment_url, get_config_model_id, get_trackio_space_url


# docstyle-ignore
TEMPLATE = """\
---
{{ card_data }}
---

# Model Card for {{ model_name }}

This model is a fine-tuned version of {% if base_model_is_hub %}[{{ base_model }}](https://huggingface.co/{{ base_model }}){% else %}the local model `{{ base_model }}`{% endif %}{% if dataset_name %} on the {% if dataset_is_hub %}[{{ dataset_name }}](https://huggingface.co/datasets/{{ dataset_name }}){% else %}local `{{ dataset_name }}`{% endif %} dataset{% endif %}.
It has been trained with trl-spo, on top of [TRL](https://github.com/huggingface/trl).

## Quick start

```python
from transformers import pipeline

question = "If you had a time machine, but could only go to the past or the future once and never return, which would you choose and why?"
generator = pipeline("text-generation", model="{{ model_id }}", device_map="auto")
output = generator([{"role": "user", "content": question}], max_new_tokens=128, return_full_text=False)[0]
print(output["generated_text"])
```

## Training procedure

{% for name, url in tracking_urls.items() %}{% if url %}[{{ name }} run]({{ url }}) {% endif %}{% endfor %}

This model was trained with {{ trainer_name }}, a method introduced in [{{ paper_title }}](https://huggingface.co/papers/{{ paper_id }}): a preference loss whose fixed point is `Softmax(r / alpha)` plus `beta` times a KL(policy || reference) measured on completions sampled from the policy during training.

| setting | value |
| --- | --- |
{% for name, value in spo_settings.items() %}| `{{ name }}` | `{{ value }}` |
{% endfor %}

### Framework versions

- trl-spo: {{ trl_spo_version }}
- TRL: {{ trl_version }}
- Transformers: {{ transformers_version }}
- Pytorch: {{ pytorch_version }}
- Datasets: {{ datasets_version }}
- Tokenizers: {{ tokenizers_version }}

## Citations

Cite {{ trainer_name }} as:

```bibtex
{{ trainer_citation }}
```

Cite TRL as:

```bibtex
{% raw %}@software{vonwerra2020trl,
  title   = {{TRL: Transformers Reinforcement Learning}},
  author  = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and Thrush, Tristan and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and Gallouédec, Quentin},
  license = {Apache-2.0},
  url     = {https://github.com/huggingface/trl},
  year    = {2020}
}{% endraw %}
```
"""

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def is_hub_id(name: str | None) -> bool:
    """Whether `name` reads as a hub id (`name` or `owner/name`) and is not a local path."""
    return bool(name) and not os.path.exists(name) and _HUB_ID.fullmatch(name) is not None


def spo_model_card(
    *,
    base_model: str | None,
    model_name: str,
    model_id: str,
    dataset_name: str | None,
    tags: list[str],
    spo_settings: dict[str, object],
    paper: dict[str, str],
    tracking_urls: dict[str, str | None],
) -> ModelCard:
    """
    Render the model card of an SPO run.

    Args:
        base_model (`str` or `None`): the model trained from: a hub id (linked) or a local path (named).
        model_name (`str`): the trained model's name, the card's title.
        model_id (`str`): what `pipeline(model=...)` loads: the hub id it is pushed to, or the output directory.
        dataset_name (`str` or `None`): the training dataset: a hub id (linked) or a local path (named).
        tags (`list[str]`): hub tags.
        spo_settings (`dict`): SPO's settings, shown as a table.
        paper (`dict`): `title`, `id` (arXiv) and `citation` (BibTeX).
        tracking_urls (`dict`): experiment-tracker run URLs by tracker name; `None` entries are skipped.
    """
    base_model_is_hub, dataset_is_hub = is_hub_id(base_model), is_hub_id(dataset_name)
    card_data = ModelCardData(
        base_model=base_model if base_model_is_hub else None,  # the hub validates this field as a repo id
        datasets=dataset_name if dataset_is_hub else None,
        library_name="transformers",
        model_name=model_name,
        tags=["generated_from_trainer", *tags],
    )
    return ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        base_model=base_model or "unknown",
        base_model_is_hub=base_model_is_hub,
        model_name=model_name,
        model_id=model_id,
        dataset_name=dataset_name,
        dataset_is_hub=dataset_is_hub,
        spo_settings=spo_settings,
        tracking_urls=tracking_urls,
        trainer_name="SPO",
        paper_title=paper["title"],
        paper_id=paper["id"],
        trainer_citation=paper["citation"],
        trl_spo_version=version("trl-spo"),
        trl_version=version("trl"),
        transformers_version=version("transformers"),
        pytorch_version=version("torch"),
        datasets_version=version("datasets"),
        tokenizers_version=version("tokenizers"),
    )


def write_model_card(
    trainer, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
) -> None:
    """
    Write an SPO trainer's model card to `output_dir/README.md` (the body of `SPOTrainer.create_model_card`).

    The base model is the one the trainer was built from (a hub id or a local path), the model name defaults to the
    output directory's name, and `pipeline(model=...)` points at the hub repo it is pushed to, else at that directory.
    """
    tags = {tags} if isinstance(tags, str) else set(tags or ())
    tags.update(trainer._tag_names)
    if "JOB_ID" in os.environ:
        tags.add("hf_jobs")
    args = trainer.args
    settings = {
        "alpha": args.alpha,
        "beta": args.beta,
        "gamma": args.gamma,
        "regularizer": args.regularizer,
        "learning_rate": args.learning_rate,
    }
    if args.uses_global_kl:
        settings |= {"generation_interval": args.generation_interval, "kl_batch_size": args.resolved_kl_batch_size}
    settings["preference format"] = trainer.preference_format
    wandb_url = None
    if is_wandb_available():
        import wandb

        wandb_url = wandb.run.url if wandb.run is not None else None
    card = spo_model_card(
        base_model=get_config_model_id(trainer.model.config),
        model_name=model_name or os.path.basename(os.path.normpath(args.output_dir)),
        model_id=trainer.hub_model_id or args.output_dir,
        dataset_name=dataset_name,
        tags=sorted(tags),
        spo_settings=settings,
        paper=trainer._paper,
        tracking_urls={
            "Weights & Biases": wandb_url,
            "Trackio": get_trackio_space_url(),
            "Comet": get_comet_experiment_url(),
        },
    )
    card.save(os.path.join(args.output_dir, "README.md"))
