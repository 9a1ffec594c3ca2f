"""The comparator a task's new checkpoints are ranked with, and what it is ranked against.

The comparator is the version of `sftcast-comparator-<task>` holding `production` (`select`
moves it there with the model it chose), loaded from the registry as the pyfunc it is. Its
labelled pool is the selection table `select` logged in the run that trained it: every
candidate of that run with its proxies, and the post-SFT score of the labelled ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from sftcast.promotion import PRODUCTION, production_version
from sftcast.registry import (
    TAG_CANDIDATE,
    alias_version,
    comparator_model_name,
    version_metrics,
)
from sftcast.selection.config import TAG_MEASUREMENT_KEY
from sftcast.selection.ranking import ID, TARGET

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from sftcast.comparator.mlflow_model import ComparatorModel


class NoComparator(LookupError):
    """No comparator holds `production` for the task; the message says how to make one."""


@dataclass(frozen=True)
class Production:
    """The task's production model: its version and the candidate it was fine-tuned from."""

    model: str
    version: str
    candidate: str
    score: float | None  # its measured post-SFT score


@dataclass(frozen=True)
class ComparatorPool:
    task: str
    version: str  # of sftcast-comparator-<task>
    model: ComparatorModel
    table: pd.DataFrame  # `select`'s table: candidate, the proxies, score (NaN: unlabelled)
    accuracy: float | None  # its pairwise accuracy on held-out candidates, mean over splits
    accuracy_std: float | None  # and its std
    measurement_key: str | None  # how its proxies were measured (None on older versions)
    production: Production | None

    @property
    def proxies(self) -> list[str]:
        return list(self.model.proxies)

    @property
    def labelled(self) -> pd.DataFrame:
        return self.table[self.table[TARGET].notna()].reset_index(drop=True)

    def row(self, candidate: str) -> pd.Series | None:
        """A candidate's row of the table, or None."""
        found = self.table[self.table[ID] == candidate]
        return None if found.empty else found.iloc[0]

    def preference(self, frame: pd.DataFrame) -> np.ndarray:
        """P(row i beats row j) over `frame`'s proxy columns, by the registered comparator."""
        return self.model.preference(frame)


def production_comparator(task: str) -> ModelVersion:
    """The comparator version holding `production` for `task`; `NoComparator` otherwise."""
    name = comparator_model_name(task)
    version = alias_version(name, PRODUCTION)
    if version is None:
        raise NoComparator(
            f"task {task!r} has no comparator in production ({name}, alias {PRODUCTION!r}): "
            f"run `sftcast select` with a configuration that fine-tunes {task}; its comparator "
            "takes the alias when the model it chose is promoted"
        )
    return version


def load_pool(task: str, version: ModelVersion, model_name: str) -> ComparatorPool:
    """The comparator `version` of `task` with its labelled pool, and `model_name`'s
    production model (the fine-tuned models' registered model of the task)."""
    pyfunc = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    model = pyfunc.unwrap_python_model()
    # logged from code, the class is loaded as a module of its own: isinstance cannot tell
    if not callable(getattr(model, "preference", None)):
        raise NoComparator(f"{version.name} v{version.version} is not an sftcast comparator")
    client = mlflow.MlflowClient()
    table = client.load_table(
        client.get_run(version.run_id).info.experiment_id,
        f"{task}_candidates.json",
        run_ids=[version.run_id],
    )
    metrics = version_metrics(version)
    return ComparatorPool(
        task=task,
        version=str(version.version),
        model=model,
        table=table,
        accuracy=metrics.get("pairwise_accuracy_mean"),
        accuracy_std=metrics.get("pairwise_accuracy_std"),
        measurement_key=version.tags.get(TAG_MEASUREMENT_KEY),
        production=_production(model_name),
    )


def _production(model_name: str) -> Production | None:
    try:
        holder = production_version(model_name)
    except MlflowException:  # no model registered for the task yet
        return None
    if holder is None:
        return None
    return Production(
        model=model_name,
        version=str(holder.version),
        candidate=holder.tags.get(TAG_CANDIDATE, ""),
        score=version_metrics(holder).get("score"),
    )
