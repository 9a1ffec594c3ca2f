"""The fine-tuning seed noise of a target, and how much of a ranking it leaves to be learned.

A table may hold a target's extra fine-tuning seeds beside it, as `<target>_seed<s>` columns
(on the replicated candidates only; empty elsewhere). `pooled_seed_std` is one seed's std of
the target, pooled over the replicated candidates: the unit of regret in `sftcast.curves` and
in a judgement's `regret_noise_units`. `noise_ceiling` is the pairwise accuracy that even an
oracle knowing every candidate's true score could expect against the observed one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np
from scipy.stats import norm


def seed_columns(columns: Iterable[object], target: str) -> list[str]:
    """The columns of `target`'s extra seeds, `<target>_seed<s>` exactly: never a column that
    merely starts so, such as a summary of the seeds."""
    pattern = re.compile(rf"{re.escape(target)}_seed\d+")
    return [str(c) for c in columns if pattern.fullmatch(str(c))]


def pooled_seed_std(scores: np.ndarray) -> float:
    """One seed's std of the score: the root of the mean within-candidate variance (ddof=1)
    over the rows of `scores` (candidates x seeds, NaN where a seed was not run) that have two
    seeds or more; NaN where none has."""
    replicated = scores[np.sum(~np.isnan(scores), axis=1) > 1]
    if not len(replicated):
        return math.nan
    return float(np.sqrt(np.mean(np.nanvar(replicated, axis=1, ddof=1))))


def noise_ceiling(means: np.ndarray, seeds: np.ndarray, noise: float) -> float | None:
    """The expected pairwise accuracy, against the observed seed means `means` (of `seeds`
    seeds each), of an oracle that ranks by the true means: over the pairs with unequal
    observed means, the chance that the observed order is the true one, Phi(|m_i - m_j| /
    sqrt(noise^2 / n_i + noise^2 / n_j)), with `noise` one seed's std. None where the noise is
    unknown (NaN) or no pair differs.

    A plug-in estimate: the observed differences stand in for the true ones, and observed
    differences are on average wider than true ones (the noise adds to them), so the ceiling
    is biased upwards: a conservative ceiling, which a method may fall short of by noise alone
    more than it says."""
    if not math.isfinite(noise):
        return None
    i, j = np.triu_indices(len(means), 1)
    keep = means[i] != means[j]
    i, j = i[keep], j[keep]
    if not len(i):
        return None
    spread = noise * np.sqrt(1 / seeds[i] + 1 / seeds[j])
    with np.errstate(divide="ignore"):  # no noise: every observed order is the true one
        z = np.abs(means[i] - means[j]) / spread
    return float(norm.cdf(z).mean())
