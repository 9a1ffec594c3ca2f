"""A new checkpoint ranked by the task's registered comparator: its predicted standing among
the labelled pool the comparator was trained with, and its chance of beating production.

A lead over production counts ("beyond the spread") only when the comparator's own held-out
judgement supports a call: its pairwise accuracy beats a coin by more than its std over the
judged splits (accuracy - std > 0.5), and the call's margin over a coin exceeds that std
(P(beats production) - 0.5 > std). A comparator whose accuracy wobbles by 0.1 between splits
cannot tell 0.55 from a coin flip, however often it says 0.55.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from sftcast.comparator import ComparatorInputError
from sftcast.comparator.model import borda_scores, mean_win_probability, strength
from sftcast.selection.ranking import CHANCE, ID
from sftcast.watch.pool import ComparatorPool


class WatchScore(BaseModel):
    """One checkpoint on one task, as the comparator sees it."""

    model_config = ConfigDict(frozen=True)

    task: str
    checkpoint: str
    step: int | None
    content_hash: str
    comparator_version: str
    proxies: dict[str, float]  # the comparator's features, measured on the checkpoint
    labelled: int  # the labelled pool's size
    standing: float | None = None  # share of the labelled pool it is predicted to beat
    rank: int | None = None  # among the labelled pool and itself; 1 is the best
    win_probability: float | None = None  # its mean P(beats) over the labelled pool
    production: str | None = None  # the candidate production was fine-tuned from
    production_version: str | None = None
    p_beats_production: float | None = None
    beyond_spread: bool = False
    accuracy: float | None = None  # the comparator's held-out pairwise accuracy
    accuracy_std: float | None = None
    unscorable: str | None = None  # why it could not be ranked
    challenger: str = ""  # what became of the `challenger` alias

    @property
    def name(self) -> str:
        step = "" if self.step is None else f" (step {self.step})"
        return f"{self.checkpoint.rstrip('/').rsplit('/', 1)[-1]}{step}"

    def line(self) -> str:
        """One line for people."""
        return "; ".join(filter(None, [self._ranking(), self.challenger]))

    def _ranking(self) -> str:
        if self.unscorable:
            return f"{self.name} {self.task}: not ranked: {self.unscorable}"
        assert self.rank is not None and self.standing is not None
        text = (
            f"{self.name} {self.task}: predicted to beat {self.standing:.0%} of the "
            f"{self.labelled} labelled candidates (rank {self.rank} of {self.labelled + 1})"
        )
        if self.p_beats_production is None:
            return f"{text}; no production model to compare with"
        judged = f"{_fmt(self.accuracy)} ± {_fmt(self.accuracy_std)}"
        behind = beyond_spread(1 - self.p_beats_production, self.accuracy, self.accuracy_std)
        verdict = (
            "ahead beyond" if self.beyond_spread else "behind beyond" if behind
            else "not told apart within"
        )  # fmt: skip
        return (
            f"{text}; P(beats production v{self.production_version}, {self.production}) = "
            f"{self.p_beats_production:.2f}: {verdict} the comparator's spread "
            f"(held-out pairwise accuracy {judged})"
        )


def rank_checkpoint(
    pool: ComparatorPool,
    values: Mapping[str, float],
    *,
    checkpoint: str,
    step: int | None,
    content_hash: str,
) -> WatchScore:
    """`values`: the checkpoint's proxies (every one measured; the comparator reads its own)."""
    features = {p: float(values.get(p, math.nan)) for p in pool.proxies}
    base = WatchScore(
        task=pool.task, checkpoint=checkpoint, step=step, content_hash=content_hash,
        comparator_version=pool.version, proxies=features, labelled=len(pool.labelled),
        accuracy=pool.accuracy, accuracy_std=pool.accuracy_std,
    )  # fmt: skip
    missing = [p for p, v in features.items() if not math.isfinite(v)]
    if missing:
        why = f"the comparator needs {', '.join(missing)}, not measured on this checkpoint"
        return base.model_copy(update={"unscorable": why})
    frame, production = _frame(pool, features, checkpoint)
    try:
        preference = pool.preference(frame)
    except ComparatorInputError as err:  # a proxy far outside what the comparator saw
        return base.model_copy(update={"unscorable": str(err)})
    n = len(pool.labelled)
    own = preference[: n + 1, : n + 1]  # the labelled pool and the checkpoint, last
    strengths = strength(own)
    p_production = None if production is None else float(preference[n, production])
    return base.model_copy(
        update={
            "standing": float(borda_scores(own)[n] / n) if n else None,
            "rank": int(1 + np.sum(strengths[:n] > strengths[n])),
            "win_probability": float(mean_win_probability(own)[n]),
            "production": pool.production.candidate if production is not None else None,
            "production_version": pool.production.version if production is not None else None,
            "p_beats_production": p_production,
            "beyond_spread": beyond_spread(p_production, pool.accuracy, pool.accuracy_std),
        }
    )


def beyond_spread(p: float | None, accuracy: float | None, std: float | None) -> bool:
    """Whether a call with probability `p` stands beyond the comparator's judged spread."""
    if p is None or accuracy is None or std is None:
        return False
    return accuracy - std > CHANCE and p - CHANCE > std


def _frame(
    pool: ComparatorPool, features: Mapping[str, float], checkpoint: str
) -> tuple[pd.DataFrame, int | None]:
    """The labelled pool, the checkpoint after it, and production's candidate when it is not
    among the labelled (`select` may have fine-tuned it after ranking); production's index."""
    rows = pool.labelled[[ID, *pool.proxies]]
    frame = pd.concat([rows, pd.DataFrame([{ID: checkpoint, **features}])], ignore_index=True)
    production = pool.production.candidate if pool.production else None
    if not production:
        return frame, None
    labelled = rows[ID].tolist()
    if production in labelled:
        return frame, labelled.index(production)
    row = pool.row(production)
    if row is None or not all(math.isfinite(float(row[p])) for p in pool.proxies):
        return frame, None  # production came from another run's candidates: no proxies here
    extra = pd.DataFrame([{ID: production, **{p: float(row[p]) for p in pool.proxies}}])
    return pd.concat([frame, extra], ignore_index=True), len(frame)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
