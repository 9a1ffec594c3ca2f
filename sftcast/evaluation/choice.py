"""Multiple-choice scoring of a QA task: the gold answer against distractors, ranked by the
model's probability of producing each (the cloze scoring of lm-evaluation-harness).

Why: a tiny model that does not know a fact generates the split's most common answer, so
generated-answer F1 ties every candidate that knows little (on the study's cbqa, 51% of the
candidates on one score, 0.175: "China" to every question). The probability a model gives the
gold answer against plausible others still orders them.

Distractors are other gold answers of the same relation (a capital against capitals), drawn
from every split of the task's dataset with a seed and the row's id, so every model answers the
same questions with the same options.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sftcast.evaluation.metrics import normalize_answer


def answer_pools(dataset: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[str]]:
    """relation -> its distinct gold answers over every split, sorted (rows without a
    `relation` share one pool)."""
    pools: dict[str, set[str]] = {}
    for rows in dataset.values():
        for row in rows:
            pools.setdefault(str(row.get("relation", "")), set()).add(row["answers"][0])
    return {relation: sorted(answers) for relation, answers in pools.items()}


def options(
    row: Mapping[str, Any], pools: Mapping[str, Sequence[str]], n: int, seed: int
) -> list[str]:
    """The gold answer first, then up to `n - 1` distractors from its relation's pool, none of
    them one of the row's own answers (aliases included)."""
    own = {normalize_answer(a) for a in row["answers"]}
    pool = [a for a in pools[str(row.get("relation", ""))] if normalize_answer(a) not in own]
    key = str(row.get("id", row.get("question", "")))
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    picked = rng.choice(len(pool), size=min(n - 1, len(pool)), replace=False)
    return [row["answers"][0], *(pool[int(i)] for i in sorted(picked))]
