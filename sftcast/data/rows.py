"""Task datasets as plain rows (task -> split -> rows), the form evaluation and SFT read."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sftcast.data.io import load_task_dataset

TaskRows = dict[str, dict[str, list[dict[str, Any]]]]


def task_rows(datasets: Mapping[str, Path]) -> TaskRows:
    """task -> split -> rows, from the validated datasets (task -> folder)."""
    return {
        task: {split: ds.to_list() for split, ds in load_task_dataset(path, task).items()}
        for task, path in datasets.items()
    }
