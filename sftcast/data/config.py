"""Settings for building the facts, the pre-training corpus and the three task datasets.

Every model forbids unknown keys, so a typo in a YAML file fails with the key's name instead
of being ignored. The defaults build a small but real run (every fact, the whole BBC and
trivia text, about a thousand training rows per task) in a few seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sftcast.data.schema import CORPUS_DOMAINS, SPLITS, TASKS, SplitName, TaskName

BUILTIN = "builtin"


class FactsConfig(BaseModel):
    """Which real facts become QA questions and knowledge passages."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    seed: int = 0  # picks question and passage wording among the templates
    n_cities: int = Field(1500, gt=0, description="most populous cities to consider")


class CorpusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    seed: int = 0
    heldout_fraction: float = Field(0.05, gt=0, lt=1, description="share of each domain held out")
    # Optional cap on the documents of a domain (seeded sample), e.g. {"trivia": 2000}.
    max_docs: dict[str, int] = Field(default_factory=dict)

    @field_validator("max_docs")
    @classmethod
    def _known_domains(cls, caps: dict[str, int]) -> dict[str, int]:
        for domain, cap in caps.items():
            if domain not in CORPUS_DOMAINS:
                raise ValueError(
                    f"unknown corpus domain {domain!r}; expected one of {', '.join(CORPUS_DOMAINS)}"
                )
            if domain == "knowledge":
                # Closed-book QA needs every fact in pre-training; shrink facts.n_cities instead.
                raise ValueError("the knowledge domain cannot be capped; lower facts.n_cities")
            if cap < 2:
                raise ValueError(f"max_docs[{domain!r}] must be at least 2 (train + heldout)")
        return caps


class ValidationBounds(BaseModel):
    """Size limits for one task's dataset; `min_rows` is per split (an int applies to all)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_rows: dict[SplitName, int] = Field(default_factory=lambda: dict.fromkeys(SPLITS, 1))
    max_rows: int = Field(1_000_000, ge=1)
    max_chars: int = Field(20_000, ge=1, description="longest text cell (or answer) allowed")

    @field_validator("min_rows", mode="before")
    @classmethod
    def _per_split(cls, value: Any) -> Any:
        if isinstance(value, int):
            return dict.fromkeys(SPLITS, value)
        if isinstance(value, Mapping):
            unknown = [s for s in value if s not in SPLITS]
            if unknown:
                raise ValueError(f"unknown split(s) {unknown}; expected {', '.join(SPLITS)}")
            return {**dict.fromkeys(SPLITS, 1), **value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ValidationBounds:
        for split, n in self.min_rows.items():
            if not 0 <= n <= self.max_rows:
                raise ValueError(
                    f"min_rows[{split!r}]={n} must be in [0, max_rows={self.max_rows}]"
                )
        return self


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # "builtin", a path to the user's files, or "hf:<name>[@revision]" (read by sftcast.data.io)
    source: str = BUILTIN
    train_size: int = Field(1000, gt=0)
    validation_size: int = Field(200, gt=0)
    test_size: int = Field(300, gt=0)
    seed: int = 0
    max_chars: int = Field(1000, ge=50, description="cls text length, cut on a word boundary")
    validation: ValidationBounds = Field(default_factory=ValidationBounds)

    @field_validator("source")
    @classmethod
    def _valid_source(cls, source: str) -> str:
        source = source.strip()
        if not source:
            raise ValueError('source must be "builtin", a path, or "hf:<name>[@revision]"')
        if source.startswith("hf:") and not source[3:].split("@")[0]:
            raise ValueError(f"source {source!r} names no dataset; write hf:<name>[@revision]")
        return source

    @property
    def is_builtin(self) -> bool:
        return self.source == BUILTIN

    @property
    def sizes(self) -> dict[str, int]:
        return dict(
            zip(SPLITS, (self.train_size, self.validation_size, self.test_size), strict=True)
        )


def _default_tasks() -> dict[TaskName, TaskConfig]:
    return {task: TaskConfig() for task in TASKS}


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    output_dir: Path = Path("artifacts/data")
    facts: FactsConfig = Field(default_factory=FactsConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    tasks: dict[TaskName, TaskConfig] = Field(default_factory=_default_tasks)

    @field_validator("tasks")
    @classmethod
    def _all_tasks(cls, tasks: dict[TaskName, TaskConfig]) -> dict[TaskName, TaskConfig]:
        # A YAML file that configures one task still gets the defaults for the others.
        return {task: tasks.get(task, TaskConfig()) for task in TASKS}

    @classmethod
    def from_yaml(cls, path: str | Path) -> DataConfig:
        raw: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return cls.model_validate(raw)
