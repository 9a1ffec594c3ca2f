"""The study's own settings: `parameters.study` of a run configuration."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sftcast.comparator.config import (
    DEFAULT_JUDGEMENT,
    JudgementSettings,
    Splits,
    TopK,
    TrainFraction,
)


class StudyConfig(BaseModel):
    """Where the results table goes and how `compare` judges it (the summary's protocols)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    results: Path = Field(Path("benchmarks/study/results.csv"), description="one row per candidate")
    splits: Splits = Field(
        DEFAULT_JUDGEMENT.splits, description="random splits of the paper's protocol"
    )
    train_fraction: TrainFraction = DEFAULT_JUDGEMENT.train_fraction
    seed: int = DEFAULT_JUDGEMENT.seed
    top_k: TopK = DEFAULT_JUDGEMENT.top_k
    jobs: int = Field(2, ge=1, description="processes judging the splits (compare --jobs)")
    workers: int = Field(
        2, ge=1, description="single-thread processes measuring a candidate's parts; 1: in-process"
    )
    # A chunk: only the variants matching one of these shell patterns (`clm-*`); the table is
    # written by a run of them all, which reuses every chunk's steps from the cache.
    variants: list[str] | None = None
    freeze_commit: str | None = Field(
        None, description="the commit the judging code was frozen at; recorded in summary.json"
    )
    # a held-out zoo's judgement adds `transfer`: every method fitted on this table's candidates
    # (past variants, labelled), judged on all of this study's (new variants)
    transfer_from: Path | None = None

    def includes(self, variant: str) -> bool:
        return self.variants is None or any(fnmatch(variant, p) for p in self.variants)

    def judgement(
        self, protocol: str, groups: str | None = None, seed_noise: float | None = None
    ) -> JudgementSettings:
        """How `compare` judges the study's table under `protocol` (with its group column),
        knowing the target's seed noise; `transfer` fitted on `transfer_from`."""
        return JudgementSettings(
            protocol=protocol,
            train_table=self.transfer_from if protocol == "transfer" else None,
            seed=self.seed,
            top_k=self.top_k,
            jobs=self.jobs,
            groups=groups,
            splits=self.splits,
            train_fraction=self.train_fraction,
            seed_noise=seed_noise,
        )
