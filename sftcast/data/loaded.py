"""What reading a task dataset gives: the dataset in the task's Arrow features, plus where every
row came from (kept per split, so that validation failures later name file and line too)."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from sftcast.data.schema import TaskSchema

REQUIRED_SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class SplitProvenance:
    """Where one split came from: `lines[i]` is the 1-based line of row `i + 1` (None: no lines);
    `file` is None for a dataset built in memory and given no name."""

    file: str | None
    lines: tuple[int, ...] | None = None

    def line(self, row: int) -> int | None:
        """Line of the 1-based `row`, or None when the format has no lines (Parquet, Arrow)."""
        if self.lines is None or not 1 <= row <= len(self.lines):
            return None
        return self.lines[row - 1]


@dataclass(frozen=True)
class LoadedDataset:
    """A task dataset in its schema plus, per split, the file and line of every row."""

    dataset: datasets.DatasetDict
    provenance: dict[str, SplitProvenance]
    task: str
    source: str | None


def task_features(schema: TaskSchema) -> datasets.Features:
    return datasets.Features(
        {
            c.name: datasets.List(datasets.Value("string"))
            if c.kind == "str_list"
            else datasets.Value("string")
            for c in schema.columns
        }
    )
