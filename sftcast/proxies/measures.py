"""The proxies computed here, each a function of `ProxyInputs` returning one float.

A proxy that cannot be computed for a candidate (a Hugging Face folder has no zoo run records,
a foreign tokenizer has no sentinels) raises `ProxyUnavailable` with the reason; it is left out
of the result rather than written as NaN, which the comparator would refuse.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sftcast.zoo.model import CHECKPOINT_META
from sftcast.zoo.objectives import IGNORE_INDEX, ObjectiveBatch, get_objective
from sftcast.zoo.tokenizer import special_ids
from sftcast.zoo.train import RUN_MANIFEST, lm_loss

SLOPE_FRACTION = 0.2  # loss_slope fits the last 20% of the steps up to the checkpoint,
SLOPE_MIN_POINTS = 5  # but at least 5: over fewer the slope is step-to-step noise
TOKENS_SEEN = re.compile(r"([\d,]+) tokens seen")  # as `sftcast.zoo.model.model_card` writes it


class ProxyUnavailable(Exception):
    """This proxy cannot be computed for this candidate; the message says why."""


@dataclass(frozen=True)
class RunInfo:
    """What the zoo recorded about a checkpoint; all None for a folder from elsewhere."""

    step: int | None  # the checkpoint's pre-training step
    manifest: Mapping[str, Any] | None  # `sftcast_run.json` of its run, if it is this run's
    card: str | None  # README.md (the model card)


@dataclass(frozen=True)
class ProxyInputs:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    blocks: np.ndarray | None  # held-out blocks [n, seq_len]; None when no proxy needs them
    run: RunInfo
    batch_size: int
    seed: int
    device: torch.device


def read_run_info(candidate_dir: Path) -> RunInfo:
    """The checkpoint's step, its run manifest (the parent folder's) and its model card."""
    try:
        meta = json.loads((candidate_dir / CHECKPOINT_META).read_text())
    except (OSError, ValueError):
        return RunInfo(step=None, manifest=None, card=None)
    try:
        manifest = json.loads((candidate_dir.parent / RUN_MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if manifest is not None and manifest.get("config_hash") != meta.get("config_hash"):
        manifest = None  # a folder copied next to another configuration's run
    card_path = candidate_dir / "README.md"
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
    return RunInfo(step=int(meta["step"]), manifest=manifest, card=card)


def _slices(batch: ObjectiveBatch, size: int) -> Iterator[ObjectiveBatch]:
    for start in range(0, len(batch.input_ids), size):
        yield ObjectiveBatch(*(t[start : start + size] for t in batch))


def perplexity(
    model: PreTrainedModel, batch: ObjectiveBatch, batch_size: int, device: torch.device
) -> float:
    """exp of the mean next-token loss over every labelled position of `batch` (token-weighted,
    so a row with more targets counts for more), run `batch_size` rows at a time."""
    total, count = 0.0, 0
    with torch.inference_mode():
        for part in _slices(batch, batch_size):
            n = int((part.labels[:, 1:] != IGNORE_INDEX).sum())
            if n == 0:
                continue
            part = part.to(device)
            total += lm_loss(model, part).item() * n  # lm_loss is the mean over those n
            count += n
    if count == 0:
        raise ProxyUnavailable("no labelled tokens in the held-out slice")
    return math.exp(total / count)


def _blocks(inputs: ProxyInputs) -> np.ndarray:
    if inputs.blocks is None:
        raise ProxyUnavailable("no held-out blocks were built")
    return inputs.blocks


def ppl_clm(inputs: ProxyInputs) -> float:
    ids = torch.from_numpy(_blocks(inputs))
    batch = ObjectiveBatch(ids, ids.clone(), torch.ones_like(ids))  # full blocks: no padding
    return perplexity(inputs.model, batch, inputs.batch_size, inputs.device)


def ppl_sc(inputs: ProxyInputs) -> float:
    blocks = _blocks(inputs)
    try:
        ids = special_ids(inputs.tokenizer)
    except ValueError as err:
        raise ProxyUnavailable(str(err)) from err
    # The zoo's own SC objective (noise density 0.15, mean span 3), with a generator seeded
    # here: every candidate gets the same corruption of the same blocks.
    batch = get_objective("sc")(blocks, np.random.default_rng(inputs.seed), ids, blocks.shape[1])
    return perplexity(inputs.model, batch, inputs.batch_size, inputs.device)


def loss_slope(inputs: ProxyInputs) -> float:
    """Least-squares slope (loss per step) of the training loss over the last 20% of the steps
    up to the checkpoint (at least 5 of them; all of them before step 5). The losses are of the
    variant's own objective, so an SC run's slope is on its target tokens' loss."""
    run = inputs.run
    if run.step is None or run.manifest is None:
        raise ProxyUnavailable("no zoo run manifest (sftcast_run.json) for this checkpoint")
    losses = list(run.manifest.get("loss_history", []))[: run.step]
    if run.step < 2 or len(losses) < run.step:
        raise ProxyUnavailable(f"the run recorded {len(losses)} losses for step {run.step}")
    window = losses[-max(SLOPE_MIN_POINTS, round(SLOPE_FRACTION * run.step)) :]
    return float(np.polyfit(np.arange(len(window)), window, deg=1)[0])


def tokens_seen(inputs: ProxyInputs) -> float:
    """Input tokens processed in pre-training up to the checkpoint (padding excluded), as its
    model card states; the run manifest's count, when the checkpoint is the run's last."""
    run = inputs.run
    match = TOKENS_SEEN.search(run.card or "") if run.step is not None else None
    if match:
        return float(match[1].replace(",", ""))
    saved = [int(s) for s in (run.manifest or {}).get("checkpoints", {})]
    if run.manifest is not None and saved and max(saved) == run.step:
        return float(run.manifest["tokens_seen"])  # written when that last checkpoint was saved
    raise ProxyUnavailable("no model card or run manifest states the tokens seen")


def weight_norm(inputs: ProxyInputs) -> float:
    """Root mean square of the weights: global L2 norm / sqrt(parameters), tied ones once."""
    params = [p.detach() for p in inputs.model.parameters()]  # parameters() skips tied repeats
    n = sum(p.numel() for p in params)
    return float(torch.nn.utils.get_total_norm(params)) / math.sqrt(n)
