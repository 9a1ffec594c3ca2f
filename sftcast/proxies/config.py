"""Proxy settings: `parameters.proxies` of a run configuration. Unknown keys are errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sftcast.data.schema import TaskName, check_tasks
from sftcast.proxies.registry import COMPUTED, PROXIES


class ProbeSettings(BaseModel):
    """One task's probe: `proxies.probes.<task>` of a run configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    train_rows: int = Field(64, ge=1, description="seeded slice of the train split")
    validation_rows: int = Field(100, ge=1, description="seeded slice of the validation split")
    batch_size: int = Field(8, ge=1)
    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    seed: int = Field(0, ge=0, description="which rows, which batch order")
    score: bool = Field(
        True, description="also generate answers and score them (probe_<task>): the costly read-out"
    )


class ProxyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    heldout_docs: int = Field(64, ge=1, description="documents per domain of the heldout split")
    seq_len: int = Field(256, ge=2, description="tokens per held-out block")
    batch_size: int = Field(16, ge=1)
    seed: int = Field(0, ge=0, description="which held-out documents, which SC corruption")
    which: list[str] = Field(default_factory=lambda: list(COMPUTED), min_length=1)
    # Fine-tuning probes (sftcast.proxies.probe), per task; none unless configured: each costs
    # a short fine-tune per candidate and task.
    probes: dict[TaskName, ProbeSettings] = Field(default_factory=dict)

    @field_validator("probes", mode="before")
    @classmethod
    def _known_probe_tasks(cls, probes: Any) -> Any:
        if isinstance(probes, dict):
            check_tasks(probes, "proxies.probes")
        return probes

    @field_validator("which")
    @classmethod
    def _known(cls, which: list[str]) -> list[str]:
        unknown = [n for n in which if n not in PROXIES]
        if unknown:
            raise ValueError(f"unknown proxy name(s) {unknown}; expected among {list(COMPUTED)}")
        elsewhere = [n for n in which if n not in COMPUTED]
        if elsewhere:
            raise ValueError(
                f"{elsewhere} come from sftcast.evaluation.evaluate_base scores: map those "
                "with sftcast.proxies.kshot_proxies instead"
            )
        return list(dict.fromkeys(which))  # each once, in the order given
