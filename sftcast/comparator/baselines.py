"""The baselines a user would try before a comparator, each chosen on the training candidates
alone, so that the comparator is judged against the strongest simple rival and not against a
yardstick picked after the fact or pointed the wrong way:

- `best_proxy_fit`: the single proxy that orders the training candidates best, in the
  direction that orders them best (a registry direction is a prior, not a fact: a proxy
  ordering them backwards is turned round);
- `signed_mean`: the mean of the standardised proxies, each signed by its rank correlation
  with the target on the training candidates (`proxy_mean` with learned signs);
- `linear_tuned`: logistic regression on standardised proxy differences (the comparator's
  `linear` form) with its regularisation chosen by inner cross-validation over the training
  candidates, by group where groups are known;
- `ridge`: a ridge regression of the score's rank among the training candidates on the
  standardised proxies (its penalty by leave-one-out on the training candidates; ranks, since
  a judgement reads only the order of the target). Under the deployment protocol the training
  candidates stand as their known scores and a held-out candidate as its predicted one: the
  training labels used as much as the comparator uses them, which a boosted comparator that
  memorises its training pairs would otherwise be flattered against.

Each returns a score per candidate (higher: predicted better); its pairwise preference is the
order of the scores.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sftcast.comparator.config import BASELINES
from sftcast.comparator.features import labelled_pairs
from sftcast.comparator.metrics import pairwise_accuracy, preference_from_scores

# the inverse regularisation strengths `linear_tuned` chooses among, strongest first (a tie
# keeps the stronger one)
CS = (0.01, 0.1, 1.0, 10.0, 100.0)
INNER_FOLDS = 5
KNOWN_SCORES = "ridge"  # predicts the score itself: comparable with a known one
ALPHAS = tuple(np.logspace(-3, 3, 13))  # ridge's penalties, chosen among by leave-one-out


def baseline_scores(
    name: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    x: np.ndarray,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Baseline `name` fitted on (`train_x`, `train_y`), scoring the rows of `x`."""
    if name == "best_proxy_fit":
        column, sign = best_signed_proxy(train_x, train_y)
        return sign * x[:, column]
    if name == "signed_mean":
        scaler = StandardScaler().fit(train_x)
        return (scaler.transform(x) * learned_signs(train_x, train_y)).mean(axis=1)
    if name == "ridge":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
        return model.fit(train_x, training_ranks(train_y)).predict(x)
    if name == "linear_tuned":
        scaler = StandardScaler().fit(train_x)
        c = tuned_c(scaler.transform(train_x), train_y, groups, seed)
        weights = _pairwise_weights(scaler.transform(train_x), train_y, c, seed)
        return scaler.transform(x) @ weights
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")


def training_ranks(train_y: np.ndarray) -> np.ndarray:
    """The training targets as ranks in (0, 1]: their order alone, whatever their scale."""
    return rankdata(train_y) / len(train_y)


def best_signed_proxy(train_x: np.ndarray, train_y: np.ndarray) -> tuple[int, float]:
    """The column whose order, or reverse order, agrees with the most training pairs, and the
    sign (+1 or -1) that makes it agree; the first column when no pair can be judged."""
    accuracy = np.array(
        [
            pairwise_accuracy(preference_from_scores(train_x[:, k]), train_y)
            for k in range(train_x.shape[1])
        ]
    )
    if np.all(np.isnan(accuracy)):
        return 0, 1.0
    signed = np.where(np.isnan(accuracy), -np.inf, np.maximum(accuracy, 1 - accuracy))
    column = int(np.argmax(signed))
    return column, 1.0 if accuracy[column] >= 0.5 else -1.0


def learned_signs(train_x: np.ndarray, train_y: np.ndarray) -> np.ndarray:
    """Each column's sign of rank correlation with the target (0 where undefined)."""
    signs = np.zeros(train_x.shape[1])
    if np.ptp(train_y) == 0:
        return signs
    for k in range(train_x.shape[1]):
        if np.ptp(train_x[:, k]) > 0:  # a constant column has no correlation (scipy warns)
            rho = spearmanr(train_x[:, k], train_y).statistic
            signs[k] = float(np.sign(rho)) if np.isfinite(rho) else 0.0
    return signs


def tuned_c(z: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, seed: int = 0) -> float:
    """The C of `CS` with the best mean pairwise accuracy on inner folds of candidates (of
    groups where given; pairs inside each held-out fold, as the outer protocol scores them);
    1.0 when the pool is too small to fold."""
    if groups is not None and np.unique(groups).size >= 2:
        folds = GroupKFold(min(INNER_FOLDS, np.unique(groups).size)).split(z, y, groups)
    elif len(y) >= 4:
        folds = KFold(min(INNER_FOLDS, len(y) // 2), shuffle=True, random_state=seed).split(z)
    else:
        return 1.0
    scores: dict[float, list[float]] = {c: [] for c in CS}
    for train, test in folds:
        if np.unique(y[train]).size < 2 or np.unique(y[test]).size < 2:
            continue
        for c in CS:
            weights = _pairwise_weights(z[train], y[train], c, seed)
            scores[c].append(pairwise_accuracy(preference_from_scores(z[test] @ weights), y[test]))
    means = {c: float(np.nanmean(v)) for c, v in scores.items() if v}
    return max(means, key=lambda c: (means[c], -c)) if means else 1.0


def _pairwise_weights(z: np.ndarray, y: np.ndarray, c: float, seed: int) -> np.ndarray:
    pairs, labels = labelled_pairs(np.asarray(y, dtype=float))
    model = LogisticRegression(
        C=c, fit_intercept=False, solver="newton-cholesky", random_state=seed
    )
    return model.fit(z[pairs[:, 0]] - z[pairs[:, 1]], labels).coef_[0]
