"""What SFT measured, across candidates: the ground-truth table, seed noise, and the figure.

- `SFTRecord`: one fine-tuned candidate on one task (scores, lineage, registry version).
- `SFTReport`: every record of a run with its signal-to-noise, the `sft_report` step's artifact.
- `signal_to_noise`: per task, the spread of post-SFT scores across candidates against the
  spread across seeds of one candidate; the comparator is only meaningful when the first
  clearly exceeds the second.
- `plot_scores_by_step` / `plot_base_vs_finetuned`: Amuro & Char's figure: base (few-shot)
  and fine-tuned (zero-shot) score against pre-training step, one line per variant, one panel
  per variant family.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global figure state, no GUI backend
from pydantic import BaseModel, ConfigDict

CLEAR_SIGNAL = 2.0  # candidates' spread must be at least twice the seed noise


class SFTRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: str
    candidate: str
    variant: str | None = None
    family: str | None = None
    objective: str | None = None
    checkpoint_step: int | None = None
    seed: int
    replicate: bool = False  # an extra seed for the noise estimate, not registered
    score: float  # post-SFT, zero-shot, training format (primary metric)
    base_score: float  # the base model, few-shot (primary metric)
    mrc: float
    metrics: dict[str, float]
    sft_key: str
    registered_model: str | None = None
    model_version: str | None = None
    mlflow_run_id: str | None = None
    choice: str | None = None  # why active selection fine-tuned this candidate, in its round


class SFTReport(BaseModel):
    """The records of one run (replicates included) and, per task, `signal_to_noise`."""

    model_config = ConfigDict(frozen=True)

    results: list[SFTRecord]
    signal_to_noise: dict[str, dict[str, float]]

    @classmethod
    def of(cls, records: Sequence[SFTRecord]) -> SFTReport:
        return cls(results=list(records), signal_to_noise=signal_to_noise(records))

    def table(self) -> pd.DataFrame:
        return records_table(self.results)


def records_table(records: Sequence[SFTRecord]) -> pd.DataFrame:
    columns = [
        "task", "candidate", "variant", "family", "objective", "checkpoint_step", "seed",
        "replicate", "base_score", "score", "mrc", "registered_model", "model_version",
    ]  # fmt: skip
    return pd.DataFrame([r.model_dump(include=set(columns)) for r in records], columns=columns)


def signal_to_noise(records: Sequence[SFTRecord]) -> dict[str, dict[str, float]]:
    """Per task: std of scores across candidates (main seed), the pooled std across seeds of
    the replicated candidates (root of their mean variance: the standard estimate of one
    within-candidate std, larger than the mean of their stds), their ratio, and whether the
    signal is clear."""
    out: dict[str, dict[str, float]] = {}
    for task in sorted({r.task for r in records}):
        rows = [r for r in records if r.task == task]
        main = [r.score for r in rows if not r.replicate]
        by_candidate: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            by_candidate[r.candidate].append(r.score)
        replicated = [np.var(s, ddof=1) for s in by_candidate.values() if len(s) > 1]
        spread = float(np.std(main, ddof=1)) if len(main) > 1 else math.nan
        noise = float(np.sqrt(np.mean(replicated))) if replicated else math.nan
        ratio = spread / noise if noise > 0 else (math.inf if spread > 0 else math.nan)
        out[task] = {
            "candidates": len(main),
            "replicated": len(replicated),
            "candidate_std": spread,
            "seed_std": noise,
            "ratio": ratio,
            "clear_signal": float(ratio >= CLEAR_SIGNAL) if not math.isnan(ratio) else math.nan,
        }
    return out


def plot_scores_by_step(records: Sequence[SFTRecord], task: str) -> Figure:
    rows = [r for r in records if r.task == task and not r.replicate and r.checkpoint_step]
    frame = pd.DataFrame(
        [(r.variant, r.family, r.checkpoint_step, r.base_score, r.score) for r in rows],
        columns=["variant", "family", "checkpoint_step", "base", "score"],
    )
    return plot_base_vs_finetuned(frame, task)


def plot_base_vs_finetuned(frame: pd.DataFrame, task: str) -> Figure:
    """Amuro & Char's figure from a frame of `variant`, `family`, `checkpoint_step`, `base`
    (few-shot) and `score` (fine-tuned, zero-shot): one panel per family, a line per variant."""
    frame = frame.assign(family=frame["family"].fillna("other").replace("", "other"))
    families = sorted(frame["family"].unique()) or ["other"]
    fig = Figure(figsize=(4.5 * len(families), 3.6), layout="tight")
    axes = fig.subplots(1, len(families), squeeze=False, sharey=True)
    for ax, family in zip(axes[0], families, strict=True):
        in_family = frame[frame["family"] == family]
        variants = sorted(in_family["variant"].unique())
        for i, variant in enumerate(variants):
            pts = in_family[in_family["variant"] == variant].sort_values("checkpoint_step")
            color = f"C{i % 10}"
            ax.plot(pts["checkpoint_step"], pts["score"], "o-", color=color,
                    label=f"{variant} (fine-tuned)")  # fmt: skip
            ax.plot(pts["checkpoint_step"], pts["base"], "s--", color=color, alpha=0.6,
                    label=f"{variant} (base)")  # fmt: skip
        ax.set_title(family)
        ax.set_xlabel("pre-training step")
        ax.grid(alpha=0.3)
        if len(variants) <= 6:  # beyond that a legend hides the lines
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{task} score")
    fig.suptitle(f"{task}: base (few-shot) vs fine-tuned (zero-shot) by checkpoint")
    return fig
