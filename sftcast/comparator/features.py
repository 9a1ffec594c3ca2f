"""Pairs of candidates and the comparator's features for a pair.

For a pair (i, j) and each proxy p, with p already direction-corrected and standardised:
`[p_i - p_j, p_i * p_j, p_i, p_j]`; the proxies' blocks of four are concatenated, so feature
`k` belongs to proxy `k // FEATURES_PER_PROXY`.

XGBoost works in float32, so every standardised proxy must stay within `MAX_STANDARDISED`:
then `p_i * p_j` is at most a quarter of float32's largest value and `p_i - p_j` is finite.
`check_standardising` checks it for every split before anything is fitted; a proxy that is
constant on a split's training side is standardised with scale 1 (scikit-learn's choice), so
it is there that a column of large values (FLOPs, say) can break it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sklearn.preprocessing import StandardScaler

from sftcast.comparator.protocols import Split
from sftcast.comparator.table import Candidates, ComparatorInputError

FEATURES_PER_PROXY = 4
MAX_STANDARDISED = float(np.sqrt(np.finfo(np.float32).max)) / 2  # about 9.2e18


def ordered_pairs(n: int) -> np.ndarray:
    """Every (i, j) with i != j, as an (n * (n - 1), 2) array of indices."""
    return np.argwhere(~np.eye(n, dtype=bool))


def labelled_pairs(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both orders of every pair with unequal targets, labelled 1 where the first is better.
    Pairs with equal targets say nothing about which is better, so they are left out."""
    pairs = ordered_pairs(len(target))
    first, second = target[pairs[:, 0]], target[pairs[:, 1]]
    keep = first != second
    return pairs[keep], (first[keep] > second[keep]).astype(int)


def pair_features(z: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(pairs, proxies * 4) features from per-candidate proxies `z` (candidates, proxies)."""
    zi, zj = z[pairs[:, 0]], z[pairs[:, 1]]
    # stacked as (pairs, proxies, 4) so that each proxy's four features stay side by side
    return np.stack([zi - zj, zi * zj, zi, zj], axis=2).reshape(len(pairs), -1)


def out_of_range(z: np.ndarray) -> np.ndarray:
    """Where standardised proxies are NaN, infinite or beyond `MAX_STANDARDISED`."""
    return ~(np.abs(z) <= MAX_STANDARDISED)


def check_standardising(candidates: Candidates, splits: Iterable[Split]) -> None:
    """Every proxy of every candidate, standardised on each split's training candidates as the
    comparator and `proxy_mean` do, is within range; else the worst cell is named."""
    x = candidates.proxies
    for split in splits:
        with np.errstate(all="ignore"):  # overflow is what is being looked for
            scaler = StandardScaler().fit(x[split.train])
            z = scaler.transform(x)
        bad = out_of_range(z)
        if not bad.any():
            continue
        column = int(np.flatnonzero(bad.any(axis=0))[0])
        size = np.where(np.isnan(z[:, column]), np.inf, np.abs(z[:, column]))
        # the most extreme cell; where the mean itself overflowed (all NaN), the largest value
        row = max(np.flatnonzero(bad[:, column]), key=lambda r: (size[r], abs(x[r, column])))
        name = candidates.proxy_names[column]
        sign = -1.0 if name in candidates.lower_is_better else 1.0  # back to the table's values
        raise ComparatorInputError(
            f"{candidates.where(row)}, column {name!r}: {sign * x[row, column]:g} standardises "
            f"to {sign * z[row, column]:.3g} in {split.name} (training candidates' mean "
            f"{sign * scaler.mean_[column]:.3g}, scale {scaler.scale_[column]:.3g}, 1 where "
            f"they are all equal); the comparator needs |z| <= {MAX_STANDARDISED:.2g} so that "
            "a pair's features stay finite in XGBoost's float32: rescale the column"
        )
