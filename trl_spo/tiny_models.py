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
The one factory of small random Qwen2 models that the tests, the tiny recipe and the benchmarks build offline (no hub).
"""

import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification


def tiny_qwen2(
    tokenizer,
    vocab_size: int | None = None,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    tie_word_embeddings: bool = True,
    seed: int | None = None,
    num_labels: int | None = None,
) -> Qwen2ForCausalLM | Qwen2ForSequenceClassification:
    """
    A random-init float32 Qwen2 that agrees with `tokenizer` on its special tokens.

    Args:
        tokenizer: gives the EOS and pad ids (and the vocabulary size if `vocab_size` is `None`); no BOS is used.
        vocab_size (`int`, *optional*): embedding rows; larger than the tokenizer means padded rows, as many released
            checkpoints have.
        hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, max_position_embeddings,
        tie_word_embeddings: as in `Qwen2Config`.
        intermediate_size (`int`, *optional*): the MLP width; `2 * hidden_size` if `None`.
        seed (`int`, *optional*): seeds the initialisation (the global torch RNG) when given.
        num_labels (`int`, *optional*): builds a `Qwen2ForSequenceClassification` (a reward model) with that many
            labels instead of a causal LM.

    Returns:
        The model. A causal LM's generation config holds the tokenizer's EOS and pad ids.
    """
    vocab_size = len(tokenizer) if vocab_size is None else vocab_size
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=2 * hidden_size if intermediate_size is None else intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **({} if num_labels is None else {"num_labels": num_labels}),
    )
    if seed is not None:
        torch.manual_seed(seed)
    if num_labels is not None:
        return Qwen2ForSequenceClassification(config).float()
    model = Qwen2ForCausalLM(config).float()
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return model
