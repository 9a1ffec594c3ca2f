"""The comparator's form, chosen on the training candidates alone.

A boosted pairwise model is the paper's comparator, but on a small labelled pool it can lose to
one of its own inputs: a single proxy that orders the candidates well is hard to learn back
from a few hundred pairs. `ChosenComparator` therefore picks its form by inner
cross-validation over the *training* candidates (folds of candidates; every pair with at least
one candidate of the held-out fold is scored) among:

- `xgboost`: the paper's comparator (`Comparator`);
- `xgboost_monotone`: the same, constrained to prefer a candidate more as any of its
  (direction-corrected) proxies grows: the known directions, where they help;
- `linear`: logistic regression on standardised proxy differences, P(i beats j) =
  sigmoid(w . (z_i - z_j)): few parameters, antisymmetric by construction;
- `best_proxy`: the single proxy that orders the inner folds best;
- `blend`: the mean of the `xgboost` and `linear` preferences.

The form with the best inner pairwise accuracy is refitted on every training candidate. Held-out
candidates are never seen: `fit` receives the training side only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from sftcast.comparator.features import labelled_pairs
from sftcast.comparator.metrics import pairwise_accuracy, preference_from_scores
from sftcast.comparator.model import Comparator, antisymmetric

FORMS = (
    "xgboost",
    "xgboost_monotone",
    "linear",
    "best_proxy",
    "blend",
)  # blend needs the first and the third
# from the fewest parameters to the most: the order in which near-ties are settled
SIMPLICITY = ("best_proxy", "linear", "blend", "xgboost_monotone", "xgboost")
INNER_FOLDS = 5
MIN_FOLD = 2  # a held-out fold needs a pair
# [d, product, p_i, p_j] per proxy: more of p_i (and of p_i - p_j) helps i, more of p_j helps j
MONOTONE = (1, 0, 1, -1)


class LinearComparator:
    """P(i beats j) = sigmoid(w . (z_i - z_j)) on standardised proxies, no intercept."""

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> LinearComparator:
        self.scaler_ = StandardScaler().fit(proxies)
        z = self.scaler_.transform(proxies)
        pairs, labels = labelled_pairs(np.asarray(target, dtype=float))
        self.model_ = LogisticRegression(fit_intercept=False, random_state=self.random_state)
        self.model_.fit(z[pairs[:, 0]] - z[pairs[:, 1]], labels)
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        score = self.scaler_.transform(proxies) @ self.model_.coef_[0]
        # sigmoid of a score difference: f[i, j] = 1 - f[j, i] by construction
        g = 1 / (1 + np.exp(-(score[:, None] - score[None, :])))
        return antisymmetric(g)


class ProxyComparator:
    """One proxy's order, the proxy chosen by its pairwise accuracy on the training pool."""

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> ProxyComparator:
        accuracy = [
            pairwise_accuracy(preference_from_scores(proxies[:, k]), target)
            for k in range(proxies.shape[1])
        ]
        self.proxy_ = int(np.nanargmax(accuracy))
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        return preference_from_scores(proxies[:, self.proxy_])


class BlendComparator:
    """The mean of the boosted and the linear comparators' preferences."""

    def __init__(self, random_state: int = 0) -> None:
        self.parts = (Comparator(random_state=random_state), LinearComparator(random_state))

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> BlendComparator:
        for part in self.parts:
            part.fit(proxies, target)
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        return np.mean([part.preference(proxies) for part in self.parts], axis=0)


def _monotone(random_state: int, n_proxies: int) -> Comparator:
    comparator = Comparator(random_state=random_state)
    comparator.params["monotone_constraints"] = "(" + ",".join(map(str, MONOTONE * n_proxies)) + ")"
    return comparator


def make_form(form: str, n_proxies: int, random_state: int = 0) -> Any:
    """An unfitted comparator of the given form."""
    makers: dict[str, Callable[[], Any]] = {
        "xgboost": lambda: Comparator(random_state=random_state),
        "xgboost_monotone": lambda: _monotone(random_state, n_proxies),
        "linear": lambda: LinearComparator(random_state),
        "best_proxy": lambda: ProxyComparator(random_state),
        "blend": lambda: BlendComparator(random_state),
    }
    return makers[form]()


class ChosenComparator:
    """The form with the best inner-cross-validated pairwise accuracy on the training
    candidates, refitted on all of them. Pools too small for inner folds keep `xgboost`."""

    def __init__(self, forms: tuple[str, ...] = FORMS, random_state: int = 0) -> None:
        self.forms = forms
        self.random_state = random_state

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> ChosenComparator:
        target = np.asarray(target, dtype=float)
        per_fold = self._inner_accuracy(proxies, target)
        self.inner_accuracy_ = {f: float(np.mean(v)) for f, v in per_fold.items()}
        self.form_ = _one_standard_error(per_fold) if per_fold else "xgboost"
        self.model_ = make_form(self.form_, proxies.shape[1], self.random_state)
        self.model_.fit(proxies, target)
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        return self.model_.preference(proxies)

    def _inner_accuracy(self, proxies: np.ndarray, target: np.ndarray) -> dict[str, list[float]]:
        """Each form's pairwise accuracy on every inner fold of candidates; empty when the pool
        cannot be folded (fewer than `MIN_FOLD` candidates per fold)."""
        folds = min(INNER_FOLDS, len(target) // MIN_FOLD)
        if folds < 2:
            return {}
        splitter = KFold(folds, shuffle=True, random_state=self.random_state)
        scores: dict[str, list[float]] = {f: [] for f in self.forms}
        for train, test in splitter.split(proxies):
            if np.unique(target[train]).size < 2:
                continue  # nothing to learn from on this side
            # each held-out candidate against the others, held-out or not: many more pairs
            # than inside a small fold, and how a new candidate meets a labelled pool
            rows = np.concatenate([test, train])
            held_out = np.arange(len(rows)) < len(test)
            fitted = {
                form: make_form(form, proxies.shape[1], self.random_state)
                .fit(proxies[train], target[train])
                .preference(proxies[rows])
                for form in self.forms
                if form != "blend"
            }
            if "blend" in self.forms:  # the blend's parts are already fitted on this fold
                fitted["blend"] = (fitted["xgboost"] + fitted["linear"]) / 2
            for form, f in fitted.items():
                scores[form].append(pairwise_accuracy(f, target[rows], held_out))
        return {
            form: [v for v in values if not np.isnan(v)]
            for form, values in scores.items()
            if any(not np.isnan(v) for v in values)
        }


def _one_standard_error(per_fold: dict[str, list[float]]) -> str:
    """The simplest form whose mean inner accuracy is within one standard error of the best
    form's: inner folds are small, and a more flexible form's lead inside that noise is more
    often luck than signal (the one-standard-error rule of cross-validated model choice)."""
    means = {f: float(np.mean(v)) for f, v in per_fold.items()}
    best = max(means, key=lambda f: (means[f], -SIMPLICITY.index(f)))
    folds = per_fold[best]
    error = float(np.std(folds, ddof=1) / np.sqrt(len(folds))) if len(folds) > 1 else 0.0
    return next(f for f in SIMPLICITY if f in means and means[f] >= means[best] - error)
