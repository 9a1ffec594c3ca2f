"""The comparator chooses its form on its training candidates and does not lose to its inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sftcast.comparator import pairwise_accuracy, random_splits
from sftcast.comparator.forms import FORMS, ChosenComparator, make_form
from sftcast.comparator.metrics import preference_from_scores


def table(kind: str, n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    if kind == "one proxy":  # a single input already orders the candidates well
        return x, x[:, 0] + 0.3 * rng.normal(size=n)
    return x, x[:, 0] + x[:, 1] + 0.3 * rng.normal(size=n)  # two proxies combine


def held_out_accuracy(x: np.ndarray, y: np.ndarray, splits: int = 8) -> tuple[float, float]:
    """Mean held-out pairwise accuracy of the chosen comparator, and of the best single proxy
    (the one with the best mean over the same splits)."""
    chosen, singles = [], []
    for split in random_splits(len(y), splits, 0.6, seed=0):
        f = ChosenComparator().fit(x[split.train], y[split.train]).preference(x[split.test])
        chosen.append(pairwise_accuracy(f, y[split.test]))
        singles.append(
            [
                pairwise_accuracy(preference_from_scores(x[split.test, k]), y[split.test])
                for k in range(x.shape[1])
            ]
        )
    return float(np.mean(chosen)), float(np.mean(singles, axis=0).max())


def test_never_loses_to_its_best_single_input() -> None:
    chosen, best_single = held_out_accuracy(*table("one proxy"))
    assert chosen >= best_single - 0.005, (chosen, best_single)


def test_beats_every_single_input_when_proxies_combine() -> None:
    chosen, best_single = held_out_accuracy(*table("two proxies"))
    assert chosen > best_single + 0.05, (chosen, best_single)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_is_antisymmetric(form: str) -> None:
    x, y = table("two proxies", n=16)
    f = make_form(form, x.shape[1]).fit(x, y).preference(x)
    off = ~np.eye(len(y), dtype=bool)
    assert np.array_equal(f[off], (1 - f.T)[off])


def test_the_monotone_form_prefers_more_of_every_proxy() -> None:
    x, y = table("two proxies", n=24)
    model = make_form("xgboost_monotone", x.shape[1]).fit(x, y)
    base = np.zeros((1, x.shape[1]))
    for k in range(x.shape[1]):
        more = base.copy()
        more[0, k] = 2.0
        f = model.preference(np.vstack([more, base]))
        assert f[0, 1] >= 0.5  # never prefers the candidate with less of a proxy


def test_a_pool_too_small_to_fold_keeps_the_boosted_comparator() -> None:
    x, y = table("two proxies", n=3)
    assert ChosenComparator().fit(x, y).form_ == "xgboost"
