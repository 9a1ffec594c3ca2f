"""What one `sftcast_watch` pipeline run is given: `parameters.watch`, filled in by the command
for the checkpoint in hand (a run configuration's `watch` section may set `finetune_when`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sftcast.data.schema import TaskName

FinetuneWhen = Literal["never", "beats-production"]


class WatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    checkpoint: Path | None = Field(None, description="the checkpoint folder being scored")
    content_hash: str = Field("", description="sha256 of its content files: its identity")
    step: int | None = Field(None, description="its pre-training step")
    folder: Path | None = Field(None, description="the watched folder")
    folder_run_id: str = Field("", description="the folder's MLflow run: figure and history")
    tasks: list[TaskName] = Field(default_factory=list)
    comparators: dict[TaskName, str] = Field(
        default_factory=dict, description="task -> the comparator version it is ranked with"
    )
    finetune_when: FinetuneWhen = "never"
    lock_dir: Path | None = Field(None, description="where watchers of this machine hold locks")

    @property
    def uri(self) -> str:
        """The checkpoint as a candidate URI (a local path)."""
        return str(self.checkpoint)
