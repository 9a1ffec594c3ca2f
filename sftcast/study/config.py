"""The study's own settings: `parameters.study` of a run configuration."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class StudyConfig(BaseModel):
    """Where the results table goes and how `compare` judges it (the summary's protocols)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    results: Path = Field(Path("benchmarks/study/results.csv"), description="one row per candidate")
    splits: int = Field(20, ge=1, description="random 60/40 splits of the paper's protocol")
    train_fraction: float = Field(0.6, gt=0, lt=1)
    seed: int = 0
    top_k: int = Field(3, ge=1)
    jobs: int = Field(2, ge=1, description="processes judging the splits (compare --jobs)")
    # A chunk: only the variants matching one of these shell patterns (`clm-*`); the table is
    # written by a run of them all, which reuses every chunk's steps from the cache.
    variants: list[str] | None = None

    def includes(self, variant: str) -> bool:
        return self.variants is None or any(fnmatch(variant, p) for p in self.variants)
