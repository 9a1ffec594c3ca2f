"""SFT examples as length-bucketed batches, with the loss masked to the answer tokens.

Bucketing instead of packing: packed examples would attend to each other under a plain causal
mask, and per-example masks would cost SDPA its fast kernel. Sorting by length inside
shuffled windows of `BUCKET_WINDOW` batches keeps padding to a few percent while each epoch
still sees the batches in a random order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from sftcast.prompts import Encoded, encode_example, pad_right
from sftcast.zoo.objectives import IGNORE_INDEX, ObjectiveBatch

BUCKET_WINDOW = 32  # batches per sorting window


def encode_split(
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    max_length: int,
) -> list[Encoded]:
    return [encode_example(tokenizer, task, row, fmt, max_length=max_length) for row in rows]


def collate(examples: Sequence[Encoded], pad_id: int) -> ObjectiveBatch:
    """Right-padded ids; labels are the target tokens only (prompt and padding: ignored)."""
    ids = pad_right([e.input_ids for e in examples], pad_id)
    labels = pad_right(
        [[IGNORE_INDEX] * len(e.prompt_ids) + e.target_ids for e in examples], IGNORE_INDEX
    )
    lengths = torch.tensor([len(e.input_ids) for e in examples])
    mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
    return ObjectiveBatch(ids, labels, mask)


def bucketed_batches(
    examples: Sequence[Encoded], batch_size: int, seed: int, pad_id: int
) -> list[ObjectiveBatch]:
    """One epoch of batches: shuffled, then sorted by length within windows; seeded."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(examples))
    window = batch_size * BUCKET_WINDOW
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(examples[i].input_ids))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)  # in place; windows' long and short batches interleave
    return [collate([examples[i] for i in b], pad_id) for b in batches]


def sample_rows(rows: Sequence[Any], n: int | None, seed: int) -> list[Any]:
    """A seeded sample of `n` rows (all of them, in order, when `n` is None or too large)."""
    if n is None or n >= len(rows):
        return list(rows)
    picked = np.random.default_rng(seed).choice(len(rows), size=n, replace=False)
    return [rows[int(i)] for i in sorted(picked)]
