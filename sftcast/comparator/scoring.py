"""What one split is scored on, and every method's predictions there.

Under the paper's protocol (random splits, or leave-one-group-out) the scored pairs are the
held-out candidates' pairs among themselves, and the comparator ranks them by Borda count.
Under the deployment protocol the scored pairs are (held-out candidate, training candidate),
as `select` meets a new candidate: against the labelled pool; never two training candidates.
The comparator then ranks the held-out candidates by their mean predicted preference over the
training candidates. Either way every method is fitted on the training candidates alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import StandardScaler

from sftcast.comparator.baselines import (
    BASELINES,
    KNOWN_SCORES,
    baseline_scores,
    training_ranks,
)
from sftcast.comparator.config import DEFAULT_SETTINGS, ComparatorSettings
from sftcast.comparator.forms import ChosenComparator
from sftcast.comparator.metrics import preference_from_scores
from sftcast.comparator.model import borda_scores
from sftcast.comparator.protocols import Split
from sftcast.comparator.table import Candidates

# per method: its preference over the shown candidates, and its ranking of the held-out ones
Predictions = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ScoredPairs:
    """The candidates every method compares (`shown`, indices into the table, the held-out
    ones first) and the scored pairs as positions in `shown` (`first`, `second`): pairs with
    unequal targets only, each with a held-out candidate first."""

    shown: np.ndarray
    n_held_out: int
    first: np.ndarray
    second: np.ndarray
    deployment: bool

    def __len__(self) -> int:
        return len(self.first)

    def clear(self, target: np.ndarray, gap: float) -> np.ndarray:
        """Which pairs' targets (`target`: the whole table's) differ by more than `gap`."""
        with np.errstate(over="ignore"):  # a difference beyond float64 is inf: clear indeed
            return np.abs(target[self.shown[self.first]] - target[self.shown[self.second]]) > gap


def scored_pairs(split: Split, target: np.ndarray, deployment: bool = False) -> ScoredPairs:
    """The pairs `split` is scored on: held-out with held-out, or (deployment) held-out with
    training candidates."""
    n_held_out = len(split.test)
    if deployment:
        shown = np.concatenate([split.test, split.train])
        first, second = np.divmod(np.arange(n_held_out * len(split.train)), len(split.train))
        second = second + n_held_out
    else:
        shown = split.test
        first, second = np.triu_indices(n_held_out, 1)
    keep = target[shown[first]] != target[shown[second]]
    return ScoredPairs(shown, n_held_out, first[keep], second[keep], deployment)


def predict_split(
    candidates: Candidates,
    split: Split,
    pairs: ScoredPairs,
    seed: int = 0,
    comparator: ComparatorSettings = DEFAULT_SETTINGS,
) -> tuple[Predictions, ChosenComparator]:
    """Every method's predictions on the shown candidates, fitted on the training candidates'
    proxies and targets only, and the fitted comparator."""
    train_x, shown_x = candidates.proxies[split.train], candidates.proxies[pairs.shown]
    held_out = slice(0, pairs.n_held_out)
    predictions = {
        name: (preference_from_scores(shown_x[:, k]), shown_x[held_out, k])
        for k, name in enumerate(candidates.proxy_names)
    }
    mean = StandardScaler().fit(train_x).transform(shown_x).mean(axis=1)
    predictions["proxy_mean"] = (preference_from_scores(mean), mean[held_out])
    train_y = candidates.target[split.train]
    groups = None if candidates.groups is None else candidates.groups[split.train]
    for name in BASELINES:
        score = baseline_scores(name, train_x, train_y, shown_x, groups, seed)
        if name == KNOWN_SCORES and pairs.deployment:  # the pool as its known scores
            known = np.full(len(candidates.target), np.nan)
            known[split.train] = training_ranks(train_y)
            score[pairs.n_held_out :] = known[pairs.shown[pairs.n_held_out :]]
        predictions[name] = (preference_from_scores(score), score[held_out])
    ltc = ChosenComparator(comparator, seed).fit(train_x, candidates.target[split.train])
    f = ltc.preference(shown_x)
    # under deployment, strength against the labelled pool; else against each other
    pool = f[held_out, pairs.n_held_out :]
    predictions["ltc"] = (f, pool.mean(axis=1) if pairs.deployment else borda_scores(f))
    return predictions, ltc
