"""Pre-training objectives: a batch of token-id sequences → (input_ids, labels, attention_mask).

Labels follow the Hugging Face causal-LM convention: aligned with `input_ids` (the loss shifts
them by one position) and -100 where no loss is taken. Every row comes out exactly `seq_len`
long, right-padded with the pad id (attention_mask 0, label -100) when its content is shorter.
Randomness comes only from the `numpy.random.Generator` passed in, so a seeded generator gives
the same batch every time.

- CLM: loss on every token.
- SC (span corruption, T5 style, in decoder-only form): the input is the text with noise spans
  replaced by sentinels, followed by the targets `<extra_id_0> span0 <extra_id_1> span1 ...`;
  loss on the targets only.
- PLM (prefix LM): a random split point, loss on the suffix only. Attention stays causal in
  this decoder-only form (no bidirectional prefix), so it differs from CLM only in the loss.
- Mixtures (SC+CLM, UL2, UL2R, UL2R+CLM) pick one component per row, in proportion to weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import NamedTuple

import numpy as np
import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    bos: int
    eos: int
    sentinels: tuple[int, ...]  # <extra_id_0>, <extra_id_1>, ...


class ObjectiveBatch(NamedTuple):
    input_ids: torch.Tensor  # [batch, seq_len] int64
    labels: torch.Tensor  # [batch, seq_len] int64, IGNORE_INDEX where no loss
    attention_mask: torch.Tensor  # [batch, seq_len] int64, 0 on right padding

    def to(self, device: torch.device) -> ObjectiveBatch:
        """The batch on `device` (a no-op for tensors already there)."""
        return ObjectiveBatch(*(t.to(device, non_blocking=True) for t in self))


Row = tuple[np.ndarray, np.ndarray]  # (input ids, labels) of one row, at most seq_len long
RowFn = Callable[[np.ndarray, np.random.Generator, SpecialIds, int], Row]


def clm_row(tokens: np.ndarray, rng: np.random.Generator, ids: SpecialIds, seq_len: int) -> Row:
    x = tokens[:seq_len]
    return x, x.copy()


def prefix_lm_row(
    tokens: np.ndarray, rng: np.random.Generator, ids: SpecialIds, seq_len: int
) -> Row:
    x = tokens[:seq_len]
    labels = x.copy()
    if len(x) < 2:
        return x, np.full(len(x), IGNORE_INDEX)
    split = int(rng.integers(1, len(x)))  # prefix x[:split] (>= 1 token), loss on x[split:]
    labels[:split] = IGNORE_INDEX
    return x, labels


def noise_counts(
    length: int, noise_density: float, mean_span_length: float, max_spans: int
) -> tuple[int, int]:
    """(noise tokens, noise spans) of a segment, as T5's `random_spans_noise_mask` counts them;
    the spans are capped by the sentinels available and by the non-noise tokens around them."""
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(1, min(round(num_noise / mean_span_length), max_spans, length - num_noise))
    return num_noise, num_spans


@lru_cache(maxsize=256)
def sc_source_length(
    seq_len: int, noise_density: float, mean_span_length: float, max_spans: int
) -> int:
    """The longest raw segment whose corrupted input plus targets fit in `seq_len` tokens:
    each span adds one sentinel to the input and one to the targets."""
    for length in range(seq_len, 1, -1):
        _, spans = noise_counts(length, noise_density, mean_span_length, max_spans)
        if length + 2 * spans <= seq_len:
            return length
    return 1


def _random_segmentation(rng: np.random.Generator, total: int, parts: int) -> np.ndarray:
    """`total` split into `parts` positive lengths, uniformly over compositions (as in T5)."""
    cuts = np.sort(rng.choice(total - 1, parts - 1, replace=False)) + 1
    return np.diff(np.concatenate(([0], cuts, [total])))


def span_corruption_row(
    tokens: np.ndarray,
    rng: np.random.Generator,
    ids: SpecialIds,
    seq_len: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
) -> Row:
    max_spans = len(ids.sentinels)
    n = min(len(tokens), sc_source_length(seq_len, noise_density, mean_span_length, max_spans))
    x = tokens[:n]
    if n < 2:
        return x, np.full(n, IGNORE_INDEX)
    num_noise, num_spans = noise_counts(n, noise_density, mean_span_length, max_spans)
    noise_lengths = _random_segmentation(rng, num_noise, num_spans)
    keep_lengths = _random_segmentation(rng, n - num_noise, num_spans)
    inputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    pos = 0
    for sentinel, keep, noise in zip(ids.sentinels, keep_lengths, noise_lengths, strict=False):
        inputs += [x[pos : pos + keep], np.array([sentinel])]
        pos += keep
        targets += [np.array([sentinel]), x[pos : pos + noise]]
        pos += noise
    source, target = np.concatenate(inputs), np.concatenate(targets)
    labels = np.concatenate([np.full(len(source), IGNORE_INDEX), target])
    return np.concatenate([source, target]), labels


def collate(rows: Sequence[Row], ids: SpecialIds, seq_len: int) -> ObjectiveBatch:
    input_ids = np.full((len(rows), seq_len), ids.pad, dtype=np.int64)
    labels = np.full((len(rows), seq_len), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(rows), seq_len), dtype=np.int64)
    for r, (x, y) in enumerate(rows):
        input_ids[r, : len(x)] = x
        labels[r, : len(y)] = y
        mask[r, : len(x)] = 1
    return ObjectiveBatch(
        torch.from_numpy(input_ids), torch.from_numpy(labels), torch.from_numpy(mask)
    )


@dataclass(frozen=True)
class Component:
    name: str
    weight: float
    row: RowFn


class Objective:
    """Weighted components; each row of a batch goes through one component, drawn by weight."""

    def __init__(self, name: str, components: Sequence[Component]) -> None:
        total = sum(c.weight for c in components)
        self.name = name
        self.components = tuple(Component(c.name, c.weight / total, c.row) for c in components)
        self.weights = np.array([c.weight for c in self.components])

    def assign(self, n_rows: int, rng: np.random.Generator) -> np.ndarray:
        """The component index of each row."""
        if len(self.components) == 1:
            return np.zeros(n_rows, dtype=np.int64)
        return rng.choice(len(self.components), size=n_rows, p=self.weights)

    def __call__(
        self,
        seqs: Sequence[Sequence[int]] | np.ndarray | torch.Tensor,
        rng: np.random.Generator,
        ids: SpecialIds,
        seq_len: int | None = None,
    ) -> ObjectiveBatch:
        rows_in = [np.asarray(s, dtype=np.int64) for s in seqs]
        seq_len = seq_len or max(len(r) for r in rows_in)
        picks = self.assign(len(rows_in), rng)
        rows = [
            self.components[k].row(r, rng, ids, seq_len)
            for r, k in zip(rows_in, picks, strict=True)
        ]
        return collate(rows, ids, seq_len)

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.name}:{c.weight:.3g}" for c in self.components)
        return f"Objective({self.name!r}, [{parts}])"


def single(name: str, row: RowFn) -> Objective:
    return Objective(name, [Component(name, 1.0, row)])


def span_corruption_objective(noise_density: float, mean_span_length: float) -> Objective:
    if not 0 < noise_density < 1 or mean_span_length < 1:
        raise ValueError("span corruption needs 0 < noise_density < 1 and mean_span_length >= 1")
    row = partial(
        span_corruption_row, noise_density=noise_density, mean_span_length=mean_span_length
    )
    return single(f"sc({noise_density},{mean_span_length:g})", row)


def mixture(name: str, parts: Sequence[tuple[Objective, float]]) -> Objective:
    """A mixture of objectives (themselves possibly mixtures), flattened to components."""
    return Objective(
        name, [Component(c.name, c.weight * w, c.row) for obj, w in parts for c in obj.components]
    )


CLM = single("clm", clm_row)
PLM = single("plm", prefix_lm_row)
SC = span_corruption_objective(0.15, 3)
# UL2 (Tay et al. 2022): regular and extreme denoisers plus the sequential (prefix LM) one.
UL2 = mixture(
    "ul2",
    [
        (SC, 0.2),
        (span_corruption_objective(0.5, 3), 0.2),
        (span_corruption_objective(0.15, 8), 0.2),
        (span_corruption_objective(0.5, 64), 0.2),
        (PLM, 0.2),
    ],
)
# UL2R (U-PaLM, Tay et al. 2022): 50% prefix LM, 25% regular, 25% extreme denoising.
UL2R = mixture("ul2r", [(SC, 0.25), (span_corruption_objective(0.5, 32), 0.25), (PLM, 0.5)])

OBJECTIVES: dict[str, Objective] = {
    "clm": CLM,
    "sc": SC,
    "plm": PLM,
    "sc+clm": mixture("sc+clm", [(SC, 0.5), (CLM, 0.5)]),
    "ul2": UL2,
    "ul2r": UL2R,
    "ul2r+clm": mixture("ul2r+clm", [(UL2R, 0.5), (CLM, 0.5)]),
}


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; expected one of {list(OBJECTIVES)}"
        ) from None


def span_corruption(
    seqs: Sequence[Sequence[int]],
    rng: np.random.Generator,
    ids: SpecialIds,
    seq_len: int | None = None,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
) -> ObjectiveBatch:
    """SC with any setting; `OBJECTIVES["sc"]` is this with the defaults."""
    return span_corruption_objective(noise_density, mean_span_length)(seqs, rng, ids, seq_len)
