"""The watched folder's picture: each checkpoint's predicted standing against its pre-training
step, beside the post-SFT scores already measured for the labelled pool (Amuro & Char's view
of a run's checkpoints, drawn live as they land)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure  # not pyplot: no global figure state, no GUI backend

from sftcast.selection.ranking import ID, TARGET

if TYPE_CHECKING:
    from sftcast.watch.pool import ComparatorPool
    from sftcast.watch.scoring import WatchScore

_STEP = re.compile(r"@(\d+)$")  # zoo:<variant>@<step>


def standing_figure(scores: Sequence[WatchScore], pool: ComparatorPool, folder: Path) -> Figure:
    fig = Figure(figsize=(7, 4), layout="tight")
    ax = fig.subplots()
    ranked = sorted(
        (s for s in scores if s.standing is not None), key=lambda s: (s.step is None, s.step or 0)
    )
    steps = [s.step if s.step is not None else 0 for s in ranked]
    ax.plot(steps, [s.standing for s in ranked], "o-", color="tab:blue", label="predicted")
    for s, x in zip(ranked, steps, strict=True):
        if s.beyond_spread:
            ax.annotate("beats production", (x, s.standing), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7)  # fmt: skip
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("pre-training step")
    ax.set_ylabel("predicted standing\n(share of the labelled pool beaten)", color="tab:blue")
    known = [
        (int(m[1]), float(row[TARGET]))
        for _, row in pool.labelled.iterrows()
        if (m := _STEP.search(str(row[ID])))
    ]
    if known:
        right = ax.twinx()
        right.scatter(*zip(*known, strict=True), marker="x", color="tab:gray",
                      label="fine-tuned score (labelled pool)")  # fmt: skip
        if pool.production is not None and pool.production.score is not None:
            right.axhline(pool.production.score, color="tab:green", linestyle="--",
                          label=f"production v{pool.production.version}")  # fmt: skip
        right.set_ylabel(f"post-SFT {pool.task} score", color="tab:gray")
        right.legend(loc="lower right", fontsize=7)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"{pool.task}: checkpoints of {folder.name} (comparator v{pool.version})")
    return fig
