"""How well a method ranks the test candidates against their true targets.

Every method gives a preference matrix P (P[i, j]: how strongly it prefers i to j; 0.5 is a
tie) and ranking scores (higher ranks first): for a single proxy, P is 1/0.5/0 from comparing
values and the scores are the values; for the comparator, P is f and the scores are Borda
counts (under the deployment protocol, the mean f against the training candidates). Ties
count half (pairwise accuracy) or as a fraction (top-k recall, ties broken at random).
"""

from __future__ import annotations

from math import comb

import numpy as np
from scipy.stats import kendalltau


def preference_from_scores(scores: np.ndarray) -> np.ndarray:
    """P[i, j] = 1 if i scores higher than j, 0.5 if equal, 0 if lower."""
    above = scores[:, None] > scores[None, :]
    return above + 0.5 * (scores[:, None] == scores[None, :])


def pairwise_accuracy(preference: np.ndarray, target: np.ndarray) -> float:
    """Share of unordered pairs with unequal targets that P orders correctly; P = 0.5 counts
    half. NaN when every target is equal (no pair to score)."""
    i, j = np.triu_indices(len(target), 1)
    keep = target[i] != target[j]
    i, j = i[keep], j[keep]
    return accuracy_on_pairs(preference[i, j], target[i] > target[j])


def accuracy_on_pairs(preference: np.ndarray, first_better: np.ndarray) -> float:
    """Share of pairs whose preference for the first (P = 0.5 counts half) names the better
    one; NaN for no pair. Both arrays are per pair, none with equal targets."""
    if not len(first_better):
        return float("nan")
    return float(pair_correctness(preference, first_better).mean())


def pair_correctness(preference: np.ndarray, first_better: np.ndarray) -> np.ndarray:
    """Per pair, 1 where the preference names the better one, 0 where the worse, 0.5 for a
    tie (P = 0.5): what `accuracy_on_pairs` averages."""
    return np.where(preference == 0.5, 0.5, (preference > 0.5) == first_better)


def kendall_tau(scores: np.ndarray, target: np.ndarray) -> float:
    """Kendall's tau-b between the ranking and the targets. A constant ranking orders nothing,
    so it scores 0 (scipy would give NaN); NaN only when every target is equal."""
    if np.all(target == target[0]):
        return float("nan")
    if np.all(scores == scores[0]):
        return 0.0
    return float(kendalltau(scores, target).statistic)


def top1_shortfalls(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The best target minus the target of each candidate tied for the predicted top 1: with
    ties broken at random, each is the pick with equal chance."""
    return target.max() - target[scores == scores.max()]


def topk_recall(scores: np.ndarray, target: np.ndarray, k: int) -> float:
    """Expected share of the predicted top k that is truly in the top k, with ties in the
    prediction broken at random; candidates tied with the true k-th best all count as top k.
    k is capped at the number of candidates; k = 1 is top-1 recall."""
    k = min(k, len(scores))
    true_top = target >= np.sort(target)[::-1][k - 1]
    return float((_chance_in_top(scores, k) * true_top).sum() / k)


def best_in_top_k(scores: np.ndarray, target: np.ndarray, k: int) -> float:
    """The chance that the predicted top k holds a truly best candidate (one with the highest
    target), ties in the prediction broken at random; k = 1 is top-1 recall."""
    k = min(k, len(scores))
    kth = np.sort(scores)[::-1][k - 1]
    best = target == target.max()
    if (best & (scores > kth)).any():
        return 1.0
    # the open places go to a random draw from the candidates tied with the k-th score
    tied = scores == kth
    places = k - int((scores > kth).sum())
    drawn, best_drawn = int(tied.sum()), int((best & tied).sum())
    return 1.0 - comb(drawn - best_drawn, places) / comb(drawn, places)


def _chance_in_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Each candidate's chance of being among the top k when ties are broken at random."""
    kth = np.sort(scores)[::-1][k - 1]
    above, tied = scores > kth, scores == kth
    return above + tied * (k - above.sum()) / tied.sum()


def group_bootstrap_interval(
    correct: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray],
    n_groups: int,
    draws: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `correct` (methods x pairs, as `pair_correctness` gives them), a percentile
    interval on the pooled pairwise accuracy, bootstrapped over groups rather than pairs or
    splits: the pairs of one group's candidates are not independent. `groups` are the group
    indices (in range `n_groups`) of each pair's two candidates. A draw counts each group as
    often as a multinomial draw of `n_groups` picks it, and a pair weighs the product of its
    two groups' counts; draws that weigh no pair are left out (NaN bounds where all are)."""
    first, second = groups
    cells, size = first * n_groups + second, n_groups * n_groups
    # a pair's weight is its two groups' alone: pairs are summed per (group, group) cell once
    counts = np.bincount(cells, minlength=size).reshape(n_groups, n_groups)
    right = np.stack([np.bincount(cells, weights=c, minlength=size) for c in correct])
    right = right.reshape(len(correct), n_groups, n_groups)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=draws).astype(float)
    weighed = np.einsum("bi,ij,bj->b", w, counts, w)
    drawn = weighed > 0
    if not drawn.any():
        return np.full(len(correct), np.nan), np.full(len(correct), np.nan)
    w = w[drawn]
    accuracy = np.einsum("bi,mij,bj->bm", w, right, w, optimize=True) / weighed[drawn, None]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(accuracy, [tail, 100 - tail], axis=0)
    return low, high
