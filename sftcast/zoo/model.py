"""Tiny Llama models from transformers, and the checkpoint folders they are saved in and loaded
from (a zoo checkpoint, a fine-tuned model, any verified candidate)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from sftcast.device import resolve_device
from sftcast.zoo.config import ModelSize, Variant

WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_META = "sftcast_checkpoint.json"
TMP_PREFIX = ".tmp-"  # checkpoints being written; a crash may leave one behind


def llama_config(size: ModelSize, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_heads,
        max_position_embeddings=size.max_length,
        tie_word_embeddings=True,  # the embedding is a third of these tiny models
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=False,
    )


def build_model(
    size: ModelSize, tokenizer: PreTrainedTokenizerBase, seed: int = 0
) -> LlamaForCausalLM:
    """A freshly initialised model; the same seed gives the same weights."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = LlamaForCausalLM._from_config(
            llama_config(size, tokenizer), attn_implementation="sdpa"
        )
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters, tied ones counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_card(
    variant: Variant,
    step: int,
    tokens_seen: int,
    n_params: int,
    loss_history: list[float],
    domain_tokens: dict[str, int],
) -> str:
    """README.md of a checkpoint: what was trained, on how much, and how the loss went."""
    config = yaml.safe_dump(variant.model_dump(mode="json"), sort_keys=False).rstrip()
    rows = _loss_table(loss_history)
    shares = ", ".join(
        f"{d} {n / max(1, sum(domain_tokens.values())):.0%}" for d, n in domain_tokens.items()
    )
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [sftcast, sftcast-zoo, llama]
---
# {variant.name} @ step {step}

A tiny Llama ({n_params:,} parameters) pre-trained from scratch by `sftcast.zoo`: variant
`{variant.name}` (config hash `{variant.config_hash[:12]}`), checkpoint after {step} of
{variant.steps} steps, {tokens_seen:,} tokens seen. Load it with
`sftcast.zoo.load_candidate("zoo:{variant.name}@{step}")` or `AutoModelForCausalLM`.

Token shares of the data mixture over the whole run: {shares}.

## Configuration

```yaml
{config}
```

## Training loss

| steps | mean loss |
|---|---|
{rows}
"""


def _loss_table(losses: list[float], rows: int = 12) -> str:
    if not losses:
        return "| - | - |"
    edges = sorted({round(i * len(losses) / rows) for i in range(rows + 1)})
    lines = []
    for lo, hi in itertools.pairwise(edges):
        window = losses[lo:hi]
        lines.append(f"| {lo + 1}-{hi} | {sum(window) / len(window):.4f} |")
    return "\n".join(lines)


def save_checkpoint(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    card: str,
    meta: dict[str, Any],
) -> Path:
    """Write a Hugging Face folder (safetensors, config, tokenizer, README) atomically: into a
    temporary sibling first, renamed into place once complete, so a crash never leaves a
    half-written checkpoint under the final name."""
    tmp = out_dir.with_name(f"{TMP_PREFIX}{out_dir.name}-{uuid.uuid4().hex[:8]}")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per checkpoint is noise
    try:
        model.save_pretrained(tmp)  # transformers 5 always writes safetensors
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(tmp)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    meta = {**meta, "weights_sha256": {WEIGHTS_FILE: file_sha256(tmp / WEIGHTS_FILE)}}
    (tmp / CHECKPOINT_META).write_text(json.dumps(meta, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def load_model(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A saved causal LM and its tokenizer, the model on the resolved device."""
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    return model.to(resolve_device()), AutoTokenizer.from_pretrained(folder)
