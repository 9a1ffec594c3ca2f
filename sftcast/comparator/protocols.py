"""Evaluation protocols: splits of *candidates*, never of pairs, so that no held-out candidate
is seen in fitting.

- `paper`: seeded random splits; the scored pairs are built inside the held-out side.
- `group`: leave-one-group-out; pairs as in `paper`.
- `deployment`: the same random splits as `paper`; the scored pairs are (held-out candidate,
  training candidate), as `select` meets a new candidate against its labelled pool.
- `variant`: seeded random splits of the *groups* (a variant's checkpoints, near-duplicates of
  one another, are one group): a held-out candidate never has a sibling in training. Pairs
  as in `paper`.
- `transfer`: one split, fixed: every candidate of another table (`train_table`: past variants,
  labelled) to fit on, every candidate of the judged one (new variants) held out. Pairs as in
  `paper`; a group column, if given, only groups the held-out pairs for the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, LeaveOneGroupOut, ShuffleSplit

from sftcast.comparator.config import DEFAULT_JUDGEMENT
from sftcast.comparator.table import ComparatorInputError

MIN_SIDE = 2  # a side with fewer candidates has no pair to learn from or to score
PROTOCOLS = ("paper", "group", "deployment", "variant", "transfer")
GROUPED = ("group", "variant")  # the protocols that need a group column


@dataclass(frozen=True)
class Split:
    name: str  # "split 3", "group 'gpt2'"
    train: np.ndarray  # candidate indices
    test: np.ndarray


def resolve_protocol(protocol: str | None, groups: str | None) -> str:
    """The protocol to run: `group` when a group column is given, else `paper`, unless named;
    a group column belongs to `group` alone."""
    if protocol is None:
        return "paper" if groups is None else "group"
    if protocol not in PROTOCOLS:
        raise ComparatorInputError(
            f"protocol {protocol!r} is not one of {', '.join(map(repr, PROTOCOLS))}"
        )
    if protocol in GROUPED and groups is None:
        raise ComparatorInputError(
            f"protocol {protocol!r} holds out whole groups: name the group column (--group-column)"
        )
    if protocol not in (*GROUPED, "transfer") and groups is not None:
        raise ComparatorInputError(
            f"a group column ({groups!r}) goes with protocol 'group', 'variant' or 'transfer', "
            f"not {protocol!r}, whose splits ignore groups"
        )
    return protocol


def random_splits(
    n: int,
    splits: int = DEFAULT_JUDGEMENT.splits,
    train_fraction: float = DEFAULT_JUDGEMENT.train_fraction,
    seed: int = DEFAULT_JUDGEMENT.seed,
) -> list[Split]:
    """`splits` seeded random splits, `train_fraction` of the candidates (rounded) to train."""
    if splits < 1:
        raise ComparatorInputError(f"splits is {splits}; it must be at least 1")
    if not 0 < train_fraction < 1:
        raise ComparatorInputError(f"train fraction is {train_fraction}; it must be in (0, 1)")
    n_train = round(train_fraction * n)
    if min(n_train, n - n_train) < MIN_SIDE:
        raise ComparatorInputError(
            f"{n} candidates with train fraction {train_fraction} leave {n_train} to train and "
            f"{n - n_train} to test; each side needs at least {MIN_SIDE}"
        )
    # integer sizes: ShuffleSplit's own rounding of fractions can overshoot n
    shuffle = ShuffleSplit(splits, train_size=n_train, test_size=n - n_train, random_state=seed)
    return [
        Split(f"split {k + 1}", np.sort(train), np.sort(test))
        for k, (train, test) in enumerate(shuffle.split(np.zeros(n)))
    ]


def group_random_splits(
    groups: np.ndarray,
    splits: int = DEFAULT_JUDGEMENT.splits,
    train_fraction: float = DEFAULT_JUDGEMENT.train_fraction,
    seed: int = DEFAULT_JUDGEMENT.seed,
) -> list[Split]:
    """`splits` seeded random splits of the groups, `train_fraction` of them (rounded) to
    train: every candidate of a group on one side."""
    if splits < 1:
        raise ComparatorInputError(f"splits is {splits}; it must be at least 1")
    if not 0 < train_fraction < 1:
        raise ComparatorInputError(f"train fraction is {train_fraction}; it must be in (0, 1)")
    names = np.unique(groups)
    n_train = round(train_fraction * len(names))
    if min(n_train, len(names) - n_train) < 1:
        raise ComparatorInputError(
            f"{len(names)} groups with train fraction {train_fraction} leave {n_train} to "
            f"train and {len(names) - n_train} to test; each side needs at least one group"
        )
    # integer sizes count groups, not candidates
    shuffle = GroupShuffleSplit(
        splits, train_size=n_train, test_size=len(names) - n_train, random_state=seed
    )
    found = [
        Split(f"split {k + 1}", np.sort(train), np.sort(test))
        for k, (train, test) in enumerate(shuffle.split(np.zeros(len(groups)), groups=groups))
    ]
    if any(min(len(s.train), len(s.test)) < MIN_SIDE for s in found):
        raise ComparatorInputError(
            f"a random split of the {len(names)} groups leaves a side with fewer than "
            f"{MIN_SIDE} candidates; use more groups or another train fraction"
        )
    return found


def leave_one_group_out(groups: np.ndarray) -> list[Split]:
    """One split per group: train on the other groups, test on the held-out one."""
    names, counts = np.unique(groups, return_counts=True)
    names = names.tolist()  # plain str, for messages
    if len(names) < 2:
        raise ComparatorInputError(
            f"leave-one-group-out needs at least 2 groups; found {len(names)}"
        )
    small = [f"{g!r} ({c})" for g, c in zip(names, counts.tolist(), strict=True) if c < MIN_SIDE]
    if small:
        raise ComparatorInputError(
            f"group(s) {', '.join(small)}: each held-out group needs at least {MIN_SIDE} candidates"
        )
    if len(groups) - counts.max() < MIN_SIDE:
        raise ComparatorInputError(
            f"holding out group {names[counts.argmax()]!r} leaves fewer than {MIN_SIDE} "
            "candidates to train on"
        )
    return [
        Split(f"group {str(groups[test[0]])!r}", train, test)
        for train, test in LeaveOneGroupOut().split(np.zeros(len(groups)), groups=groups)
    ]


def transfer_split(n_held_out: int, n_train: int) -> Split:
    """The held-out table's candidates first (so that a row named in an error is that table's
    row), then the training table's."""
    return Split(
        "the training table to the judged one",
        np.arange(n_held_out, n_held_out + n_train),
        np.arange(n_held_out),
    )
