"""The comparator's form, chosen on the training candidates alone.

A boosted pairwise model is the paper's comparator, but on a small labelled pool it can lose to
one of its own inputs: a single proxy that orders the candidates well is hard to learn back
from a few hundred pairs. `ChosenComparator` therefore scores forms by inner cross-validation
over the *training* candidates (folds of candidates, pairs inside each held-out fold, as the
outer protocol does). The forms:

- `xgboost`: the paper's comparator (`Comparator`);
- `xgboost_monotone`: the same, constrained to be monotone in each proxy, in the direction of
  its rank correlation with the target on the training candidates (a registry direction is a
  prior, not a fact);
- `linear`: logistic regression on standardised proxy differences, P(i beats j) =
  sigmoid(w . (z_i - z_j)): few parameters, antisymmetric by construction;
- `best_proxy`: the single proxy that orders the training candidates best;
- `blend`: the mean of the `xgboost` and `linear` preferences;
- `ensemble`: the mean of the `best_proxy`, `linear`, `xgboost_monotone` and `xgboost`
  preferences.

A default form stands unless another beats it on the inner folds by more than one standard
error of their paired per-fold differences: inner folds are small, and picking the best inner
mean among noisy forms lands below the best form (docs/experiments.md). `ltc`'s default is the
`ensemble`, against `best_proxy`: no single form wins on the study's tables, and the mean of
all of them is within 0.01 of the best one where a single proxy orders the candidates alone.
Held-out candidates are never seen: `fit` receives the training side only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from sftcast.comparator.config import DEFAULT_SETTINGS, ComparatorSettings
from sftcast.comparator.features import labelled_pairs
from sftcast.comparator.metrics import pairwise_accuracy, preference_from_scores
from sftcast.comparator.model import (
    Comparator,
    antisymmetric,
    scaler_from_state,
    scaler_state,
)

# from the fewest parameters to the most
FORMS = ("best_proxy", "linear", "blend", "xgboost_monotone", "xgboost", "ensemble")
# the forms that are the mean of other forms' preferences, and their parts
MEANS = {
    "blend": ("xgboost", "linear"),
    "ensemble": ("best_proxy", "linear", "xgboost_monotone", "xgboost"),
}
# `auto`'s choice: the default form (last) stands unless the other clearly beats it
AUTO_FORMS = ("best_proxy", "ensemble")
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


class MeanComparator:
    """The mean of several comparators' preferences (its parts, by form)."""

    def __init__(self, parts: dict[str, Any]) -> None:
        self.parts = parts

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> MeanComparator:
        for part in self.parts.values():
            part.fit(proxies, target)
        return self

    def preference(self, proxies: np.ndarray) -> np.ndarray:
        return mean_preference([part.preference(proxies) for part in self.parts.values()])

    def proxy_importance(self) -> np.ndarray:
        """Each part's importance as shares of its total, averaged."""
        parts = [part.proxy_importance() for part in self.parts.values()]
        return np.mean([p / p.sum() if p.sum() else p for p in parts], axis=0)

    def state(self) -> dict[str, Any]:
        return {"parts": {form: part.state() for form, part in self.parts.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MeanComparator:
        return cls({form: STATE_CLASSES[form].from_state(s) for form, s in state["parts"].items()})


def mean_preference(preferences: list[np.ndarray]) -> np.ndarray:
    """The mean of preferences, made exactly antisymmetric again (rounding in the mean)."""
    return antisymmetric(np.mean(preferences, axis=0))


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
    if form in MEANS:
        return MeanComparator({part: make_form(part, settings, seed) for part in MEANS[form]})
    raise ValueError(f"unknown comparator form {form!r}; known: {', '.join(FORMS)}")


STATE_CLASSES = {"xgboost": Comparator, "xgboost_monotone": Comparator,
                 "linear": LinearComparator, "best_proxy": ProxyComparator,
                 "blend": MeanComparator, "ensemble": MeanComparator}  # fmt: skip


class ChosenComparator:
    """The comparator of `settings.form`, or with `auto` the form chosen among `forms` by inner
    cross-validation on the training candidates (`default` unless another clearly beats it),
    refitted on all of them. A pool too small to fold gets `linear` (`default` when `linear`
    is not offered): on a handful of pairs the boosted trees cannot split (every leaf needs
    more pairs' weight than there is) and would call every pair a tie."""

    def __init__(
        self,
        settings: ComparatorSettings = DEFAULT_SETTINGS,
        seed: int = 0,
        forms: tuple[str, ...] = AUTO_FORMS,
        default: str | None = None,
    ) -> None:
        self.settings, self.seed, self.forms = settings, seed, forms
        self.default = default or forms[-1]
        unknown = [f for f in (*forms, self.default) if f not in FORMS]
        if unknown or self.default not in forms:
            raise ValueError(
                f"comparator forms {forms!r} with default {self.default!r}: the default must be "
                f"one of the forms, and every form one of {', '.join(FORMS)}"
            )

    def fit(self, proxies: np.ndarray, target: np.ndarray) -> ChosenComparator:
        target = np.asarray(target, dtype=float)
        self.inner_accuracy_: dict[str, float] = {}
        self.form_ = self.settings.form
        if self.form_ == "auto":
            per_fold = self._inner_accuracy(proxies, target)
            self.inner_accuracy_ = {f: float(np.mean(v)) for f, v in per_fold.items()}
            small_pool = "linear" if "linear" in self.forms else self.default
            self.form_ = clear_winner(per_fold, self.default) if per_fold else small_pool
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
        # every single form once per fold; the means are taken from their parts' preferences
        singles = {p for f in self.forms for p in MEANS.get(f, (f,))}
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
                for form in sorted(singles)
            }
            for form in self.forms:
                parts = MEANS.get(form, (form,))
                accuracy = pairwise_accuracy(mean_preference([f[p] for p in parts]), target[test])
                if not np.isnan(accuracy):  # a fold whose targets all tie scores nothing
                    scores[form].append(accuracy)
        return {form: values for form, values in scores.items() if values}


def clear_winner(per_fold: dict[str, list[float]], default: str) -> str:
    """`default`, unless another form's inner accuracy beats it by more than one standard error
    of their paired per-fold differences (then the form that beats it most). Every form is
    scored on the same folds, so the differences pair up."""
    base = np.asarray(per_fold[default])
    leads = {}
    for form, values in per_fold.items():
        difference = np.asarray(values) - base
        if len(difference) > 1:
            error = difference.std(ddof=1) / np.sqrt(len(difference))
            if difference.mean() > error:
                leads[form] = float(difference.mean())
    return max(leads, key=lambda form: leads[form]) if leads else default
