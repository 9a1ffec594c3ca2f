"""The comparator's form, chosen on the training candidates alone.

A boosted pairwise model is the paper's comparator, but on a small labelled pool it can lose to
one of its own inputs: a single proxy that orders the candidates well is hard to learn back
from a few hundred pairs. `ChosenComparator` therefore picks its form by inner
cross-validation over the *training* candidates (folds of candidates, pairs inside each held-out
fold, as the outer protocol does) among:

- `xgboost`: the paper's comparator (`Comparator`);
- `xgboost_monotone`: the same, constrained to prefer a candidate more as any of its
  direction-corrected proxies grows: the known directions, where they help;
- `linear`: logistic regression on standardised proxy differences, P(i beats j) =
  sigmoid(w . (z_i - z_j)): few parameters, antisymmetric by construction;
- `best_proxy`: the single proxy that orders the training candidates best;
- `blend`: the mean of the `xgboost` and `linear` preferences.

The simplest form within one standard error of the best inner accuracy is refitted on every
training candidate. Held-out candidates are never seen: `fit` receives the training side only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from sftcast.comparator.features import labelled_pairs
from sftcast.comparator.metrics import pairwise_accuracy, preference_from_scores
from sftcast.comparator.model import (
    DEFAULT_SETTINGS,
    Comparator,
    ComparatorSettings,
    antisymmetric,
    scaler_from_state,
    scaler_state,
)

# from the fewest parameters to the most: the order in which near-ties are settled
FORMS = ("best_proxy", "linear", "blend", "xgboost_monotone", "xgboost")
INNER_FOLDS = 5
MIN_FOLD = 2  # a held-out fold needs a pair


class LinearComparator:
    """P(i beats j) = sigmoid(w . (z_i - z_j)) on standardised proxies, no intercept."""

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> LinearComparator:
        self.scaler_ = StandardScaler().fit(proxies)
        z = self.scaler_.transform(proxies)
        pairs, labels = labelled_pairs(np.asarray(target, dtype=float))
        # Newton steps: exact on these few features, 4x faster than lbfgs on a small pool, and
        # `active` fits hundreds of them per replay
        model = LogisticRegression(
            fit_intercept=False, solver="newton-cholesky", random_state=self.random_state
        )
        self.weights_ = model.fit(z[pairs[:, 0]] - z[pairs[:, 1]], labels).coef_[0]
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        score = self.scaler_.transform(proxies) @ self.weights_
        # a sigmoid of score differences: f[i, j] = 1 - f[j, i] by construction
        return antisymmetric(expit(score[:, None] - score[None, :]))  # no overflow far apart

    def proxy_importance(self) -> np.ndarray:
        return np.abs(self.weights_)

    def state(self) -> dict[str, Any]:
        return {"scaler": scaler_state(self.scaler_), "weights": self.weights_.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LinearComparator:
        comparator = cls()
        comparator.scaler_ = scaler_from_state(state["scaler"])
        comparator.weights_ = np.asarray(state["weights"], dtype=float)
        return comparator


class ProxyComparator:
    """One proxy's order, the proxy chosen by its pairwise accuracy on the training pool."""

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> ProxyComparator:
        self.accuracy_ = np.array(
            [
                pairwise_accuracy(preference_from_scores(proxies[:, k]), target)
                for k in range(proxies.shape[1])
            ]
        )
        # every target equal: no proxy can be judged, the first one stands
        judged = not np.all(np.isnan(self.accuracy_))
        self.proxy_ = int(np.nanargmax(self.accuracy_)) if judged else 0
        self.n_proxies_ = proxies.shape[1]
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        return preference_from_scores(proxies[:, self.proxy_])

    def proxy_importance(self) -> np.ndarray:
        return np.eye(self.n_proxies_)[self.proxy_]

    def state(self) -> dict[str, Any]:
        return {"proxy": self.proxy_, "n_proxies": self.n_proxies_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ProxyComparator:
        comparator = cls()
        comparator.proxy_, comparator.n_proxies_ = state["proxy"], state["n_proxies"]
        return comparator


class BlendComparator:
    """The mean of the boosted and the linear comparators' preferences."""

    def __init__(self, boosted: Comparator, linear: LinearComparator) -> None:
        self.boosted, self.linear = boosted, linear

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> BlendComparator:
        self.boosted.fit(proxies, target)
        self.linear.fit(proxies, target)
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        return blend(self.boosted.preference(proxies), self.linear.preference(proxies))

    def proxy_importance(self) -> np.ndarray:
        """Each part's importance as shares of its total, averaged."""
        parts = [self.boosted.proxy_importance(), self.linear.proxy_importance()]
        return np.mean([p / p.sum() if p.sum() else p for p in parts], axis=0)

    def state(self) -> dict[str, Any]:
        return {"boosted": self.boosted.state(), "linear": self.linear.state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BlendComparator:
        return cls(
            Comparator.from_state(state["boosted"]), LinearComparator.from_state(state["linear"])
        )


def blend(f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The mean of two preferences, made exactly antisymmetric again (rounding in the mean)."""
    return antisymmetric((f + g) / 2)


def make_form(form: str, settings: ComparatorSettings = DEFAULT_SETTINGS, seed: int = 0) -> Any:
    """An unfitted comparator of the given form."""
    if form == "xgboost":
        return Comparator.from_settings(settings, seed)
    if form == "xgboost_monotone":
        return Comparator.from_settings(settings, seed, monotone=True)
    if form == "linear":
        return LinearComparator(seed)
    if form == "best_proxy":
        return ProxyComparator(seed)
    if form == "blend":
        return BlendComparator(Comparator.from_settings(settings, seed), LinearComparator(seed))
    raise ValueError(f"unknown comparator form {form!r}; known: {', '.join(FORMS)}")


STATE_CLASSES = {"xgboost": Comparator, "xgboost_monotone": Comparator,
                 "linear": LinearComparator, "best_proxy": ProxyComparator,
                 "blend": BlendComparator}  # fmt: skip


class ChosenComparator:
    """The comparator of `settings.form`, or with `auto` the form chosen among `forms` by inner
    cross-validation on the training candidates, refitted on all of them (`blend` needs
    `xgboost` and `linear` among them). A pool too small to fold gets `linear` (the first
    form offered when `linear` is not): on a handful of pairs the boosted trees cannot split
    (every leaf needs more pairs' weight than there is) and would call every pair a tie."""

    def __init__(
        self,
        settings: ComparatorSettings = DEFAULT_SETTINGS,
        seed: int = 0,
        forms: tuple[str, ...] = FORMS,
    ) -> None:
        self.settings, self.seed, self.forms = settings, seed, forms

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> ChosenComparator:
        target = np.asarray(target, dtype=float)
        self.inner_accuracy_: dict[str, float] = {}
        self.form_ = self.settings.form
        if self.form_ == "auto":
            per_fold = self._inner_accuracy(proxies, target)
            self.inner_accuracy_ = {f: float(np.mean(v)) for f, v in per_fold.items()}
            small_pool = "linear" if "linear" in self.forms else self.forms[0]
            self.form_ = one_standard_error(per_fold) if per_fold else small_pool
        self.model_ = make_form(self.form_, self.settings, self.seed).fit(proxies, target)
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        return self.model_.preference(proxies)

    def proxy_importance(self) -> np.ndarray:
        return self.model_.proxy_importance()

    def state(self) -> dict[str, Any]:
        return {"form": self.form_, "inner_accuracy": self.inner_accuracy_,
                "model": self.model_.state()}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ChosenComparator:
        comparator = cls()
        comparator.form_, comparator.inner_accuracy_ = state["form"], state["inner_accuracy"]
        comparator.model_ = STATE_CLASSES[state["form"]].from_state(state["model"])
        return comparator

    def _inner_accuracy(self, proxies: np.ndarray, target: np.ndarray) -> dict[str, list[float]]:
        """Each form's pairwise accuracy on every inner fold of candidates; empty when the pool
        cannot be folded (fewer than `MIN_FOLD` candidates per fold)."""
        folds = min(INNER_FOLDS, len(target) // MIN_FOLD)
        if folds < 2:
            return {}
        scores: dict[str, list[float]] = {form: [] for form in self.forms}
        for train, test in KFold(folds, shuffle=True, random_state=self.seed).split(proxies):
            if np.unique(target[train]).size < 2:
                continue  # nothing to learn from on this side
            # pairs inside the held-out fold only, as the outer protocol scores them: a pair
            # with a training candidate flatters the forms that fit their training side closely
            f = {
                form: make_form(form, self.settings, self.seed)
                .fit(proxies[train], target[train])
                .preference(proxies[test])
                for form in self.forms
                if form != "blend"
            }
            if "blend" in self.forms:  # its parts are fitted already
                f["blend"] = blend(f["xgboost"], f["linear"])
            for form, preference in f.items():
                accuracy = pairwise_accuracy(preference, target[test])
                if not np.isnan(accuracy):  # a fold whose targets all tie scores nothing
                    scores[form].append(accuracy)
        return {form: values for form, values in scores.items() if values}


def one_standard_error(per_fold: dict[str, list[float]]) -> str:
    """The simplest form whose mean inner accuracy is within one standard error of the best
    form's: inner folds are small, and a more flexible form's lead inside that noise is more
    often luck than signal (the one-standard-error rule of cross-validated model choice)."""
    means = {form: float(np.mean(v)) for form, v in per_fold.items()}
    best = max(means, key=lambda form: (means[form], -FORMS.index(form)))
    folds = per_fold[best]
    error = float(np.std(folds, ddof=1) / np.sqrt(len(folds))) if len(folds) > 1 else 0.0
    return next(form for form in FORMS if form in means and means[form] >= means[best] - error)
