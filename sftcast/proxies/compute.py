"""All proxies of one candidate checkpoint, each timed."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from transformers import AutoModelForCausalLM

from sftcast.device import resolve_device
from sftcast.proxies.config import ProxyConfig
from sftcast.proxies.heldout import heldout_blocks
from sftcast.proxies.measures import ProxyInputs, ProxyUnavailable, read_run_info
from sftcast.proxies.registry import PROXIES
from sftcast.zoo.tokenizer import load_tokenizer


class ProxyResult(BaseModel):
    values: dict[str, float]  # proxy name → value, for every proxy that could be computed
    seconds: dict[str, float]  # proxy name → wall time, for every proxy attempted
    unavailable: dict[str, str] = {}  # proxy name → why it could not be computed
    setup_seconds: float = 0.0  # loading the model and tokenizer, building the held-out blocks


def compute_proxies(
    candidate_dir: str | Path, corpus: Mapping[str, Any], config: ProxyConfig | None = None
) -> ProxyResult:
    """The proxies `config.which` of the checkpoint in `candidate_dir` (a Hugging Face folder),
    perplexities on the held-out slice of `corpus` (split → domain → documents)."""
    config = config or ProxyConfig()
    candidate_dir = Path(candidate_dir)
    start = time.perf_counter()
    device = resolve_device()
    model = AutoModelForCausalLM.from_pretrained(candidate_dir, use_safetensors=True).to(device)
    # Frozen as well as in eval mode: inference never needs a gradient of any kind.
    model.eval().requires_grad_(False)
    tokenizer = load_tokenizer(candidate_dir)
    specs = [PROXIES[name] for name in config.which]
    blocks = None
    if any(spec.source == "heldout" for spec in specs):
        max_len = getattr(model.config, "max_position_embeddings", None)
        if max_len is not None and config.seq_len > max_len:
            raise ValueError(
                f"seq_len {config.seq_len} exceeds the model's {max_len} positions "
                f"({candidate_dir})"
            )
        blocks = heldout_blocks(corpus, tokenizer, config.heldout_docs, config.seq_len, config.seed)
    inputs = ProxyInputs(
        model=model,
        tokenizer=tokenizer,
        blocks=blocks,
        run=read_run_info(candidate_dir),
        batch_size=config.batch_size,
        seed=config.seed,
        device=device,
    )
    result = ProxyResult(values={}, seconds={}, setup_seconds=time.perf_counter() - start)
    for spec in specs:
        assert spec.fn is not None  # ProxyConfig admits only proxies computed here
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                result.values[spec.name] = spec.fn(inputs)
        except ProxyUnavailable as why:
            result.unavailable[spec.name] = str(why)
        result.seconds[spec.name] = time.perf_counter() - t0
    return result
