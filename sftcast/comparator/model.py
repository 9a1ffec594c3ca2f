"""The comparator: an XGBoost classifier over pairs of candidates ("learning to compare").

`g(i, j)` is the classifier's probability that candidate i ends up better than j after SFT.
Its predictions are made antisymmetric, `f(i, j) = (g(i, j) + 1 - g(j, i)) / 2`, so that
`f(i, j) = 1 - f(j, i)` and the order in which a pair is presented does not matter. Candidates
are ranked by Borda count over f.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from sftcast.comparator.baselines import learned_signs
from sftcast.comparator.config import DEFAULT_SETTINGS, ComparatorSettings
from sftcast.comparator.features import (
    FEATURES_PER_PROXY,
    MAX_STANDARDISED,
    labelled_pairs,
    ordered_pairs,
    out_of_range,
    pair_features,
)
from sftcast.comparator.table import ComparatorInputError

# [d, product, p_i, p_j] per proxy that helps its candidate: more of p_i (and of p_i - p_j)
# can only help i, more of p_j only help j; a proxy that hurts gets the opposite signs
MONOTONE = (1, 0, 1, -1)


class Comparator:
    """Fit on training candidates' proxies (direction-corrected) and targets; `preference`
    then compares any candidates, seen or not. Proxies are standardised on the training
    candidates only."""

    def __init__(
        self,
        n_estimators: int = DEFAULT_SETTINGS.n_estimators,
        max_depth: int = DEFAULT_SETTINGS.max_depth,
        learning_rate: float = DEFAULT_SETTINGS.learning_rate,
        n_jobs: int = 1,  # one thread: comparisons are small, and many run one after another
        random_state: int = 0,
        monotone: bool = False,
    ) -> None:
        self.params = dict(
            n_estimators=n_estimators,
            max_depth=max_depth,
            learning_rate=learning_rate,
            n_jobs=n_jobs,
            random_state=random_state,
        )
        self.monotone = monotone

    @classmethod
    def from_settings(
        cls, settings: ComparatorSettings, random_state: int = 0, monotone: bool = False
    ) -> Comparator:
        return cls(
            **settings.model_dump(exclude={"form"}), random_state=random_state, monotone=monotone
        )

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> Comparator:
        self.scaler_ = StandardScaler().fit(proxies)
        pairs, labels = labelled_pairs(np.asarray(target, dtype=float))
        if not len(pairs):
            raise ComparatorInputError("every training candidate has the same target")
        features = pair_features(self._standardised(proxies), pairs)
        constraints = (
            {"monotone_constraints": monotone_constraints(proxies, target)} if self.monotone else {}
        )
        self.model_ = XGBClassifier(**self.params, **constraints).fit(features, labels)
        self.n_proxies_ = proxies.shape[1]
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        """(n, n) matrix f with f[i, j] = P(i beats j), antisymmetric; 0.5 on the diagonal."""
        z = self._standardised(proxies)
        pairs = ordered_pairs(len(z))
        g = np.full((len(z), len(z)), 0.5)
        if len(pairs):
            g[pairs[:, 0], pairs[:, 1]] = self.model_.predict_proba(pair_features(z, pairs))[:, 1]
        return antisymmetric(g)

    def _standardised(self, proxies: np.ndarray) -> np.ndarray:
        """Proxies on the training candidates' scale; a clear error, not XGBoost's, for a value
        its float32 cannot take (`compare_table` refuses such tables before fitting)."""
        with np.errstate(all="ignore"):
            z = self.scaler_.transform(proxies)
        bad = np.argwhere(out_of_range(z))
        if len(bad):
            row, column = bad[0]
            raise ComparatorInputError(
                f"candidate {row + 1}, proxy {column + 1}: {proxies[row, column]:g} standardises "
                f"to {z[row, column]:.3g}, beyond the comparator's ±{MAX_STANDARDISED:.2g}"
            )
        return z

    def proxy_importance(self) -> np.ndarray:
        """Gain per proxy: XGBoost's per-feature gain summed over the proxy's four features
        (features the trees never split on have none)."""
        gains = self.model_.get_booster().get_score(importance_type="gain")
        out = np.zeros(self.n_proxies_)
        for name, gain in gains.items():  # names are f0, f1, ... for array input
            out[int(name[1:]) // FEATURES_PER_PROXY] += gain
        return out

    def state(self) -> dict[str, Any]:
        """Everything `from_state` needs, as JSON-ready data: the scaler and XGBoost's own
        JSON model (no pickle)."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.json"
            self.model_.save_model(path)
            booster = json.loads(path.read_text())
        return {"scaler": scaler_state(self.scaler_), "n_proxies": self.n_proxies_,
                "booster": booster}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Comparator:
        comparator = cls()
        comparator.scaler_ = scaler_from_state(state["scaler"])
        comparator.n_proxies_ = state["n_proxies"]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.json"
            path.write_text(json.dumps(state["booster"]))
            comparator.model_ = XGBClassifier()
            comparator.model_.load_model(path)
        return comparator


def monotone_constraints(proxies: np.ndarray, target: np.ndarray) -> tuple[int, ...]:
    """XGBoost's constraint per pair feature: each proxy's `MONOTONE` block signed by its rank
    correlation with the target on these (training) candidates, unconstrained where it has
    none. Learned, not taken from the registry's direction: a direction is a prior, and a proxy
    that orders the training candidates backwards would otherwise be forced the wrong way."""
    signs = learned_signs(proxies, np.asarray(target, dtype=float))
    return tuple(int(sign) * m for sign in signs for m in MONOTONE)


def scaler_state(scaler: StandardScaler) -> dict[str, list[float]]:
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}


def scaler_from_state(state: dict[str, list[float]]) -> StandardScaler:
    """A fitted StandardScaler from its mean and scale (what `transform` uses)."""
    scaler = StandardScaler()
    scaler.mean_ = np.asarray(state["mean"], dtype=float)
    scaler.scale_ = np.asarray(state["scale"], dtype=float)
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = len(scaler.mean_)
    return scaler


def antisymmetric(g: np.ndarray) -> np.ndarray:
    """`(g + 1 - g.T) / 2`, computed as the winner's value `0.5 + |g - g.T| / 2` and `1 - that`
    for the loser: `1 - x` is exact for x in [0.5, 1], so `f[i, j] == 1 - f[j, i]` holds in
    floating point too, and `f > 0.5` for one order means `f < 0.5` for the other."""
    diff = g - g.T  # a - b == -(b - a) exactly in IEEE arithmetic
    winner = 0.5 + np.abs(diff) / 2
    return np.where(diff >= 0, winner, 1 - winner)


def borda_scores(preference: np.ndarray) -> np.ndarray:
    """How many others each candidate beats (f > 0.5); a tie at exactly 0.5 counts half."""
    off_diagonal = ~np.eye(len(preference), dtype=bool)
    wins = (preference > 0.5) + 0.5 * (preference == 0.5)
    return (wins * off_diagonal).sum(axis=1)


def strength(preference: np.ndarray) -> np.ndarray:
    """Each candidate's predicted strength: its Borda wins, ties broken by its mean win
    probability (which stays below one win)."""
    return borda_scores(preference) + mean_win_probability(preference) / 2


def mean_win_probability(preference: np.ndarray) -> np.ndarray:
    """Each candidate's mean f against every other candidate."""
    n = len(preference)
    if n < 2:
        return np.full(n, 0.5)
    return (preference.sum(axis=1) - np.diag(preference)) / (n - 1)
