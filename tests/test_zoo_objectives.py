"""Objectives on hand-made batches: masking layout, label positions, noise statistics, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sftcast.zoo.objectives import (
    CLM,
    IGNORE_INDEX,
    OBJECTIVES,
    PLM,
    SC,
    SpecialIds,
    get_objective,
    noise_counts,
    sc_source_length,
    span_corruption,
)

IDS = SpecialIds(pad=0, bos=1, eos=2, sentinels=tuple(range(1000, 1100)))
SENTINELS = set(IDS.sentinels)


def rows(n_rows: int, length: int, seed: int = 0) -> np.ndarray:
    """Ordinary token ids (10..999): never a special id, so layouts can be read back."""
    return np.random.default_rng(seed).integers(10, 1000, size=(n_rows, length))


def decode_sc(input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[list[int], list[int]]:
    """Split one SC row into its corrupted source and its targets, checking the label layout."""
    ids, lab = input_ids.tolist(), labels.tolist()
    first_target = next(i for i, y in enumerate(lab) if y != IGNORE_INDEX)
    end = next((i for i, t in enumerate(ids) if t == IDS.pad), len(ids))
    assert all(y == IGNORE_INDEX for y in lab[:first_target])
    assert lab[first_target:end] == ids[first_target:end]  # loss on every target token
    assert all(y == IGNORE_INDEX for y in lab[end:])
    return ids[:first_target], ids[first_target:end]


def reconstruct(source: list[int], targets: list[int]) -> tuple[list[int], list[list[int]]]:
    spans: list[list[int]] = []
    for t in targets:
        if t in SENTINELS:
            assert t == IDS.sentinels[len(spans)]  # <extra_id_0>, <extra_id_1>, ... in order
            spans.append([])
        else:
            spans[-1].append(t)
    text: list[int] = []
    used = 0
    for t in source:
        if t in SENTINELS:
            assert t == IDS.sentinels[used]
            text += spans[used]
            used += 1
        else:
            text.append(t)
    assert used == len(spans)
    return text, spans


def test_clm_labels_every_token_and_pads_short_rows() -> None:
    batch = CLM([[5, 6, 7, 8], [9, 10]], np.random.default_rng(0), IDS)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch.labels.tolist() == [[5, 6, 7, 8], [9, 10, -100, -100]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.input_ids.dtype == torch.int64


def test_seq_len_truncates_and_pads() -> None:
    batch = CLM(rows(2, 10), np.random.default_rng(0), IDS, seq_len=6)
    assert batch.input_ids.shape == (2, 6)
    batch = CLM(rows(2, 4), np.random.default_rng(0), IDS, seq_len=6)
    assert batch.attention_mask.sum().item() == 8


def test_prefix_lm_loss_on_suffix_only() -> None:
    data = rows(400, 32)
    batch = PLM(data, np.random.default_rng(1), IDS)
    assert torch.equal(batch.input_ids, torch.from_numpy(data))  # the text itself, unchanged
    splits = []
    for x, y in zip(batch.input_ids, batch.labels, strict=True):
        split = int((y == IGNORE_INDEX).sum())
        assert 1 <= split <= 31  # a non-empty prefix and a non-empty suffix
        assert (y[:split] == IGNORE_INDEX).all() and torch.equal(y[split:], x[split:])
        splits.append(split)
    assert len(set(splits)) > 20  # the split point is random


def test_span_corruption_layout_reconstructs_the_text() -> None:
    data = rows(50, 64)
    batch = SC(data, np.random.default_rng(2), IDS)
    assert batch.input_ids.shape == (50, 64)
    for r in range(50):
        source, targets = decode_sc(batch.input_ids[r], batch.labels[r])
        text, spans = reconstruct(source, targets)
        n = len(text)
        assert text == data[r, :n].tolist()
        assert len(source) + len(targets) == n + 2 * len(spans) <= 64
        assert source[-1] == IDS.sentinels[len(spans) - 1]  # T5 layout: the last span is noise
        assert batch.attention_mask[r].sum().item() == len(source) + len(targets)


@pytest.mark.parametrize(("density", "span"), [(0.15, 3), (0.5, 3), (0.15, 8), (0.5, 32)])
def test_span_corruption_noise_statistics(density: float, span: float) -> None:
    rng = np.random.default_rng(3)
    noise, spans, source_tokens = 0, 0, 0
    for seed in range(20):
        batch = span_corruption(
            rows(25, 256, seed), rng, IDS, noise_density=density, mean_span_length=span
        )
        for r in range(25):
            source, targets = decode_sc(batch.input_ids[r], batch.labels[r])
            text, found = reconstruct(source, targets)
            noise += sum(len(s) for s in found)
            spans += len(found)
            source_tokens += len(text)
    assert noise / source_tokens == pytest.approx(density, abs=0.01)
    assert noise / spans == pytest.approx(span, rel=0.1)


def test_span_corruption_fits_the_sequence() -> None:
    for seq_len in (16, 64, 100, 256, 512):
        for density, span in ((0.15, 3), (0.5, 3), (0.5, 64)):
            n = sc_source_length(seq_len, density, span, 100)
            assert n + 2 * noise_counts(n, density, span, 100)[1] <= seq_len
            longer = n + 1
            assert longer + 2 * noise_counts(longer, density, span, 100)[1] > seq_len


def test_span_corruption_never_uses_more_sentinels_than_exist() -> None:
    few = SpecialIds(pad=0, bos=1, eos=2, sentinels=(1000, 1001, 1002))
    batch = span_corruption(rows(5, 256), np.random.default_rng(0), few, noise_density=0.5)
    for r in range(5):
        assert int(torch.isin(batch.input_ids[r], torch.tensor([1000, 1001, 1002])).sum()) <= 6


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_seeded_objectives_are_deterministic(name: str) -> None:
    objective = get_objective(name)
    data = rows(16, 128)
    a = objective(data, np.random.default_rng(7), IDS)
    b = objective(data, np.random.default_rng(7), IDS)
    c = objective(data, np.random.default_rng(8), IDS)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    if name != "clm":  # the only objective without randomness
        assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_row_has_labels_and_fits(name: str) -> None:
    batch = get_objective(name)(torch.from_numpy(rows(32, 96)), np.random.default_rng(0), IDS)
    assert batch.input_ids.shape == batch.labels.shape == batch.attention_mask.shape == (32, 96)
    assert ((batch.labels != IGNORE_INDEX).sum(dim=1) > 0).all()
    assert ((batch.attention_mask == 0) <= (batch.labels == IGNORE_INDEX)).all()


def test_mixture_samples_components_in_proportion() -> None:
    batch = OBJECTIVES["sc+clm"](rows(4000, 64), np.random.default_rng(0), IDS)
    has_sentinel = torch.isin(batch.input_ids, torch.tensor(IDS.sentinels)).any(dim=1)
    assert has_sentinel.float().mean().item() == pytest.approx(0.5, abs=0.03)

    expected = {
        "ul2": {
            "sc(0.15,3)": 0.2,
            "sc(0.5,3)": 0.2,
            "sc(0.15,8)": 0.2,
            "sc(0.5,64)": 0.2,
            "plm": 0.2,
        },
        "ul2r": {"sc(0.15,3)": 0.25, "sc(0.5,32)": 0.25, "plm": 0.5},
        "ul2r+clm": {"sc(0.15,3)": 0.125, "sc(0.5,32)": 0.125, "plm": 0.25, "clm": 0.5},
    }
    for name, weights in expected.items():
        objective = OBJECTIVES[name]
        picks = objective.assign(20000, np.random.default_rng(1))
        counts = np.bincount(picks, minlength=len(objective.components)) / len(picks)
        seen = {c.name: counts[i] for i, c in enumerate(objective.components)}
        assert seen == pytest.approx(weights, abs=0.015)


def test_mixture_rows_follow_their_component() -> None:
    """A PLM row in UL2R masks a prefix; an SC row carries sentinels; nothing else happens."""
    batch = OBJECTIVES["ul2r+clm"](rows(500, 64), np.random.default_rng(4), IDS)
    sc_rows = torch.isin(batch.input_ids, torch.tensor(IDS.sentinels)).any(dim=1)
    clm_rows = (batch.labels == batch.input_ids).all(dim=1)
    plm_rows = ~sc_rows & ~clm_rows
    assert sc_rows.float().mean().item() == pytest.approx(0.25, abs=0.06)
    assert clm_rows.float().mean().item() == pytest.approx(0.5, abs=0.06)
    for r in torch.nonzero(plm_rows).flatten().tolist():
        assert batch.labels[r, 0] == IGNORE_INDEX and batch.labels[r, -1] == batch.input_ids[r, -1]


def test_registry_names_the_studys_objectives() -> None:
    assert list(OBJECTIVES) == ["clm", "sc", "plm", "sc+clm", "ul2", "ul2r", "ul2r+clm"]
    with pytest.raises(ValueError, match="unknown objective 'mlm'"):
        get_objective("mlm")
    with pytest.raises(ValueError, match="noise_density"):
        span_corruption(rows(1, 10), np.random.default_rng(0), IDS, noise_density=1.5)
