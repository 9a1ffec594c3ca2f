"""The baselines every judgement reports beside the comparator (issue #31): each chosen on the
training candidates only, and each fixing what the after-the-fact yardsticks get wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from sftcast.comparator import compare_table, pairwise_accuracy
from sftcast.comparator.baselines import (
    baseline_scores,
    best_signed_proxy,
    learned_signs,
    tuned_c,
)
from sftcast.comparator.config import BASELINES, Columns, JudgementSettings
from sftcast.comparator.metrics import preference_from_scores
from sftcast.comparator.report import CompareReport


def _pool(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A target that falls as column 0 rises (a proxy pointed backwards), rises a little with
    column 1, and ignores column 2."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = -x[:, 0] + 0.3 * x[:, 1] + 0.1 * rng.normal(size=n)
    return x, y


def _judged(n: int = 36) -> CompareReport:
    """`compare_table` on the pool's proxies: one backwards, one weak, one noise."""
    x, y = _pool(n)
    df = pd.DataFrame({"id": [f"c{i}" for i in range(n)], "score": y,
                       "backwards": x[:, 0], "weak": x[:, 1], "noise": x[:, 2]})  # fmt: skip
    columns = Columns(id_column="id", target="score", proxies=["backwards", "weak", "noise"])
    return compare_table(df, columns, JudgementSettings(splits=5, final_fit=False))


def _accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return pairwise_accuracy(preference_from_scores(scores), y)


def test_a_backwards_proxy_is_turned_round_on_the_training_side():
    x, y = _pool()
    assert best_signed_proxy(x, y) == (0, -1.0)
    assert learned_signs(x, y).tolist() == [-1.0, 1.0, learned_signs(x, y)[2]]
    held_out_x, held_out_y = _pool(seed=1)
    for name in ("best_proxy_fit", "signed_mean", "linear_tuned"):
        assert _accuracy(baseline_scores(name, x, y, held_out_x), held_out_y) > 0.65, name
    # the registry's direction taken as a fact would order them backwards
    assert _accuracy(held_out_x[:, 0], held_out_y) < 0.25


def test_the_regularisation_is_chosen_on_inner_folds_by_group():
    x, y = _pool(60)
    groups = np.repeat(np.arange(20), 3)
    c = tuned_c(x, y, groups)
    assert c in (0.01, 0.1, 1.0, 10.0, 100.0)
    # pure noise: nothing to learn, so the strongest regularisation ties or wins
    noise = np.random.default_rng(3).normal(size=60)
    assert tuned_c(x, noise, groups) <= 1.0
    assert tuned_c(x[:3], y[:3]) == 1.0  # too few candidates to fold


def test_every_judgement_reports_the_baselines_and_they_beat_the_registry_directions():
    report = _judged()

    accuracy = {m: v.pairwise_accuracy_mean for m, v in report.methods.items()}
    assert set(BASELINES) <= set(accuracy)
    assert accuracy["proxy_mean"] < 0.5 < min(accuracy[b] for b in BASELINES)
    assert accuracy["best_proxy_fit"] > accuracy["backwards"] + 0.5


def test_the_comparator_is_compared_with_every_method_split_by_split():
    report = _judged()

    assert set(report.paired) == set(report.methods) - {"ltc"}
    for method, paired in report.paired.items():
        mean = report.methods["ltc"].pairwise_accuracy_mean
        assert paired.difference_mean == pytest.approx(
            mean - report.methods[method].pairwise_accuracy_mean
        )
        assert paired.ltc_wins + paired.ltc_losses <= paired.splits == 5
        assert paired.ltc_better == (paired.difference_mean > paired.difference_std)
    assert report.paired["backwards"].ltc_better and report.paired["backwards"].ltc_wins == 5
    assert "paired" in report.to_dict()


def test_ridge_meets_the_pool_as_its_known_scores_under_deployment():
    from sftcast.selection.ranking import TARGET, predict_strength

    x, y = _pool(30)
    y_noisy = y + np.random.default_rng(5).normal(scale=0.5, size=30)
    df = pd.DataFrame({"id": [f"c{i}" for i in range(30)], "score": y_noisy,
                       "backwards": x[:, 0], "weak": x[:, 1], "noise": x[:, 2]})  # fmt: skip
    columns = Columns(id_column="id", target="score", proxies=["backwards", "weak", "noise"])
    deployment = JudgementSettings(protocol="deployment", splits=5, final_fit=False)
    report = compare_table(df, columns, deployment)
    assert report.methods["ridge"].pairwise_accuracy_mean > 0.7

    table = pd.DataFrame({"candidate": df["id"], "backwards": x[:, 0], "weak": x[:, 1],
                          "noise": x[:, 2], TARGET: [*y_noisy[:20], *[np.nan] * 10]})  # fmt: skip
    strength = predict_strength(table, ["backwards", "weak", "noise"], [], "ridge", seed=0)
    # the labelled stand as what they scored (as ranks: only the target's order is read)
    assert np.allclose(strength[:20], rankdata(y_noisy[:20]) / 20)
    assert np.corrcoef(strength[20:], y[20:])[0, 1] > 0.8  # the others as predicted
