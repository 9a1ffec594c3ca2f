"""Pairs of candidates and the comparator's features for a pair.

For a pair (i, j) and each proxy p, with p already direction-corrected and standardised:
`[p_i - p_j, p_i * p_j, p_i, p_j]`; the proxies' blocks of four are concatenated, so feature
`k` belongs to proxy `k // FEATURES_PER_PROXY`.
"""

from __future__ import annotations

import numpy as np

FEATURES_PER_PROXY = 4


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
