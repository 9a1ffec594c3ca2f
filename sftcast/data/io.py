"""Read users' task datasets (files, the Hub, DatasetDicts) into the task's schema; write ours.

This module and the ones it reads with own the shape of a dataset: which files and splits,
which columns, their types and nulls. Whatever it returns has exactly the schema's columns,
every text cell a string and every list cell a list of strings; `sftcast.validation` then checks
the content (blank or huge cells, encoding garbage, labels, ids, leakage, sizes) and nothing here
again.

A task dataset source is one of:

* a directory with one file per split (`sftcast.data.folders`; the formats and CSV list cells
  are in `sftcast.data.readers`);
* a directory written by `DatasetDict.save_to_disk` (it holds `dataset_dict.json`);
* `hf:<name>[@<revision>]`, loaded with `datasets.load_dataset(name, revision=...)`.

Every problem is a `DatasetInputError` at a `Location` (`sftcast.data.errors`); the rows'
files and lines are kept per split in `LoadedDataset.provenance`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets

from sftcast.data.dicts import HF_PREFIX, read_dataset_dict, read_hub, read_saved
from sftcast.data.errors import MAX_PROBLEMS, DatasetInputError, Location
from sftcast.data.folders import read_split_files
from sftcast.data.loaded import LoadedDataset, SplitProvenance, task_features
from sftcast.data.schema import schema_for

__all__ = [
    "MAX_PROBLEMS",
    "DatasetInputError",
    "LoadedDataset",
    "Location",
    "SplitProvenance",
    "load_task_dataset",
    "read_dataset_dict",
    "read_task_dataset",
    "save_task_dataset",
    "task_features",
]


def load_task_dataset(source: str | os.PathLike[str], task: str) -> datasets.DatasetDict:
    """The task dataset at `source` (see the module docstring); raises `DatasetInputError`."""
    return read_task_dataset(source, task).dataset


def read_task_dataset(source: str | os.PathLike[str], task: str) -> LoadedDataset:
    """Like `load_task_dataset`, keeping each split's file and row-to-line mapping."""
    schema = schema_for(task)
    src = os.fspath(source)
    if src.startswith(HF_PREFIX):
        return read_hub(src, schema)
    path = Path(src)
    if not path.exists():
        raise DatasetInputError(
            f"no such directory; expected a directory of split files, a save_to_disk directory "
            f"or {HF_PREFIX}<name>[@revision]",
            Location(src),
        )
    if not path.is_dir():
        raise DatasetInputError(
            "expected a directory holding one file per split (train.jsonl, test.jsonl, ...), "
            "not a single file",
            Location(src),
        )
    if (path / "dataset_dict.json").is_file():
        return read_saved(src, schema)
    return read_split_files(src, path, schema)


def save_task_dataset(dd: datasets.DatasetDict, directory: str | os.PathLike[str]) -> list[Path]:
    """Write `<directory>/<split>.jsonl` per split, readable by `load_task_dataset`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for split, ds in dd.items():
        others = [p for p in out.glob(f"{split}.*") if p.suffix != ".jsonl"]
        if others:
            raise ValueError(
                f"{out}: already holds {', '.join(p.name for p in others)}; a split must have "
                "one file, remove it first"
            )
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            f.writelines(f"{json.dumps(r, ensure_ascii=False)}\n" for r in ds)
        written.append(path)
    return written
