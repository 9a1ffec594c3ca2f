"""The data pipeline: corpus and task datasets, each task validated before anything uses it."""

from __future__ import annotations

from typing import Any, NamedTuple

from zenml import pipeline

from sftcast.data import DataConfig
from steps.data import build_data, validate_task_data


class DataStage(NamedTuple):
    corpus: Any  # the corpus artifact
    validations: list[str]  # validation step ids: every later stage waits for them
    datasets: dict[str, Any]  # task -> its validated dataset artifact


def data_stage(data: DataConfig) -> DataStage:
    corpus, builtin_tasks = build_data(config=data)
    validations, datasets = [], {}
    for task in data.tasks:
        step_id = f"validate_{task}"
        datasets[task] = validate_task_data(
            task=task, builtin_tasks=builtin_tasks, config=data, id=step_id
        )
        validations.append(step_id)
    return DataStage(corpus, validations, datasets)


@pipeline(name="sftcast_data")
def data_pipeline(data: DataConfig) -> None:
    data_stage(data)
