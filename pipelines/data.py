"""The data pipeline: corpus and task datasets, each task validated before anything uses it."""

from __future__ import annotations

from typing import Any

from zenml import pipeline

from sftcast.data import DataConfig
from steps.data import build_data, validate_task_data


def data_stage(data: DataConfig) -> tuple[Any, list[str]]:
    """Wire the data steps; returns the corpus artifact and the validation step ids, which
    every later stage waits for."""
    corpus, builtin_tasks = build_data(config=data)
    validations = []
    for task in data.tasks:
        step_id = f"validate_{task}"
        validate_task_data(task=task, builtin_tasks=builtin_tasks, config=data, id=step_id)
        validations.append(step_id)
    return corpus, validations


@pipeline(name="sftcast_data")
def data_pipeline(data: DataConfig) -> None:
    data_stage(data)
