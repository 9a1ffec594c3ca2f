"""The root of a run configuration: its `parameters`, one section per concern.

Each pipeline takes the sections it needs (its signature names their models); this model holds
every section a run configuration may have, so the checks that read one section against
another live here, once. A section it does not know is an error, as is any unknown key inside
a section.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from sftcast.data.config import DataConfig
from sftcast.evaluation.config import EvaluationConfig
from sftcast.proxies.config import ProxyConfig
from sftcast.selection.config import SelectionConfig
from sftcast.sft.config import SFTConfig
from sftcast.study.config import StudyConfig
from sftcast.watch.config import WatchConfig
from sftcast.zoo.config import ZooConfig


class SectionConflict(ValueError):
    """One section contradicts another; `key` is the setting at fault, as a dotted path."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


class RunParameters(BaseModel):
    """`parameters` of a run configuration; a pipeline's sections are those it takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    data: DataConfig | None = None
    zoo: ZooConfig | None = None
    sft: SFTConfig | None = None
    evaluation: EvaluationConfig | None = None
    proxies: ProxyConfig | None = None
    selection: SelectionConfig | None = None
    study: StudyConfig | None = None
    watch: WatchConfig | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _given_sections_are_mappings(cls, value: Any) -> Any:
        # Absent is fine (a pipeline that needs it says so); `proxies:` with nothing under it
        # is a mistake, not "the defaults".
        if value is None:
            raise ValueError("expected a mapping of settings")
        return value

    @model_validator(mode="after")
    def _sections_agree(self) -> RunParameters:
        """Candidate URIs named in `selection.labelled` and `sft.replicate_candidates` must be
        candidates of the run; `sft.tasks` must have datasets."""
        if self.sft is not None and self.data is not None:
            missing = [t for t in self.sft.tasks if t not in self.data.tasks]
            if missing:
                raise SectionConflict("sft.tasks", f"{missing} have no dataset in data.tasks")
        if self.zoo is None:
            return self
        uris = self.zoo.all_candidates()
        if self.selection is not None:
            try:
                self.selection.labelled_candidates(uris)
            except ValueError as err:
                raise SectionConflict("selection.labelled", str(err)) from err
        if self.sft is not None:
            unknown = [
                u
                for u in self.sft.replicate_candidates
                if not any(fnmatch.fnmatchcase(uri, u) for uri in uris)
            ]
            if unknown:
                raise SectionConflict(
                    "sft.replicate_candidates",
                    f"{unknown} name or match no candidate of this run ({len(uris)} candidates: "
                    "zoo.variants' checkpoints and zoo.candidates)",
                )
        return self
