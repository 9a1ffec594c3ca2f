"""Supervised fine-tuning settings: `parameters.sft` of a run configuration.

Unknown keys are errors, so a typo in YAML names itself instead of being ignored.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sftcast.data.schema import TASKS, TaskName, check_tasks
from sftcast.prompts import PromptFormat
from sftcast.tracking import config_hash


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    r: int = Field(8, gt=0)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    )


class TaskOverrides(BaseModel):
    """Settings that differ for one task (a copying task like `rag` needs more steps)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    learning_rate: float | None = Field(None, gt=0)
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=8)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    train_examples: int | None = Field(None, ge=1)


class SFTConfig(BaseModel):
    """How each candidate is fine-tuned on each task."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    output_dir: Path = Path("artifacts/sft")
    tasks: list[TaskName] = Field(default_factory=lambda: list(TASKS))
    method: Literal["full", "lora"] = "full"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(1e-3, gt=0)
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(256, ge=8, description="tokens per example, prompt + target")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    train_examples: int | None = Field(None, ge=1, description="seeded sample of train rows")
    prompt_format: PromptFormat = "train"
    # Seed noise: these candidates (URIs or shell patterns of URIs: "*" is every candidate)
    # are also fine-tuned with these extra seeds (not registered).
    replicate_candidates: list[str] = Field(default_factory=list)
    replicate_seeds: list[int] = Field(default_factory=list)
    registered_model: str = Field(
        "sftcast-{task}", description="MLflow registered model name; {task} is filled in"
    )
    per_task: dict[TaskName, TaskOverrides] = Field(default_factory=dict)
    # Partial fine-tunes seen for free: the validation loss at these fractions of the steps
    # (the same schedule, so a truncated run is what successive halving would have seen), on
    # `fidelity_rows` seeded validation rows. None by default; the study records them.
    fidelities: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=list)
    fidelity_rows: int = Field(64, ge=1, description="validation rows the fidelities read")

    @field_validator("fidelities")
    @classmethod
    def _increasing(cls, fidelities: list[float]) -> list[float]:
        if fidelities != sorted(set(fidelities)):
            raise ValueError(f"fidelities must be increasing fractions, each once: {fidelities}")
        return fidelities

    @field_validator("tasks")
    @classmethod
    def _once_each(cls, tasks: list[TaskName]) -> list[TaskName]:
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks listed twice: {tasks}")
        return tasks

    @field_validator("per_task", mode="before")
    @classmethod
    def _known_override_tasks(cls, per_task: Any) -> Any:
        if isinstance(per_task, dict):  # one error naming them, not one per key
            check_tasks(per_task, "sft.per_task")
        return per_task

    def for_task(self, task: str) -> SFTConfig:
        """The settings one task trains with: these, with its `per_task` entry applied."""
        overrides = self.per_task.get(task)
        update = overrides.model_dump(exclude_none=True) if overrides else {}
        return self.model_copy(update={**update, "per_task": {}})

    @field_validator("registered_model")
    @classmethod
    def _has_task(cls, name: str) -> str:
        if "{task}" not in name:
            raise ValueError("registered_model must contain {task}: one registered model per task")
        return name

    def identity(self) -> dict[str, Any]:
        """These settings for hashes that name a measurement; without fidelities, as they were
        before fidelities existed (a study's table keeps its settings hash)."""
        return self.model_dump(mode="json", exclude=self._unused_fidelity_fields())

    def _unused_fidelity_fields(self) -> set[str]:
        return set() if self.fidelities else {"fidelities", "fidelity_rows"}

    def extra_seeds(self, uri: str) -> list[int]:
        """The seeds `uri` is fine-tuned with besides `seed`: `replicate_seeds` when one of
        `replicate_candidates` names or matches it."""
        named = any(fnmatchcase(uri, pattern) for pattern in self.replicate_candidates)
        return list(self.replicate_seeds) if named else []

    def training_hash(self, seed: int | None = None) -> str:
        """What a fine-tuned model's weights depend on among these settings (call it on
        `for_task(task)`: the overrides are not part of the hash, their effect is)."""
        fields = self.model_dump(
            mode="json",
            exclude={
                "output_dir",
                "tasks",
                "replicate_candidates",
                "replicate_seeds",
                "registered_model",
                "per_task",
                *self._unused_fidelity_fields(),  # a plain fine-tune keeps the key it had
            },
        )
        if seed is not None:
            fields["seed"] = seed
        return config_hash(fields)

    def model_name(self, task: str) -> str:
        return self.registered_model.format(task=task)
