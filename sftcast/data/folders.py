"""A directory of split files: which entries are data, which are notes, which are errors.

One file per split, `<split>.jsonl`, `<split>.json` (a JSON array of objects, or JSON Lines),
`<split>.csv` or `<split>.parquet`; `train` and `test` are required, `validation` is optional.
Notes kept with the data are ignored (see `IGNORED`); any other entry, or a second data file for
one split, is an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import datasets

from sftcast.data.errors import DatasetInputError, Location
from sftcast.data.loaded import REQUIRED_SPLITS, LoadedDataset, SplitProvenance, task_features
from sftcast.data.readers import SplitReader
from sftcast.data.schema import SPLITS, TaskSchema

FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "parquet")
# Notes users keep with their data: read by people, never by sftcast, never an error. A file
# named after a split (`train.txt`) is no note: it is refused as a data file in no known format.
NOTE_NAMES: tuple[str, ...] = ("README", "LICENSE")  # any case, anything may follow
NOTE_SUFFIXES: tuple[str, ...] = (".md", ".rst", ".txt")
IGNORED = (
    "hidden entries (names starting with '.') and notes ("
    + ", ".join([*(f"{n}*" for n in NOTE_NAMES), *(f"*{s}" for s in NOTE_SUFFIXES)])
    + ") unless named after a split"
)


def read_split_files(src: str, path: Path, schema: TaskSchema) -> LoadedDataset:
    """The split files in the directory `path` (`src` as the user named it), each read and
    checked on its own."""
    features = task_features(schema)
    splits: dict[str, datasets.Dataset] = {}
    provenance: dict[str, SplitProvenance] = {}
    for split, file_path in _find_split_files(src, path).items():
        file = str(Path(src) / file_path.name)
        fmt = file_path.name.partition(".")[2]
        reader = SplitReader(file, split, schema)
        columns, lines = reader.read(file_path, fmt)
        splits[split] = _to_dataset(columns, features, file, split)
        provenance[split] = SplitProvenance(file, None if lines is None else tuple(lines))
    return LoadedDataset(datasets.DatasetDict(splits), provenance, schema.name, src)


def _to_dataset(
    columns: dict[str, list[Any]], features: datasets.Features, file: str, split: str
) -> datasets.Dataset:
    try:
        return datasets.Dataset.from_dict(columns, features=features)
    except (UnicodeEncodeError, ValueError, TypeError) as e:  # e.g. lone surrogates from \ud800
        raise DatasetInputError(f"cannot convert to Arrow: {e}", Location(file, split)) from e


def _find_split_files(src: str, path: Path) -> dict[str, Path]:
    found: dict[str, list[Path]] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    dangling: list[Path] = []
    for entry in sorted(path.iterdir()):
        stem, _, ext = entry.name.partition(".")
        if is_note(entry):
            ignored.append(entry.name)
        elif is_dangling(entry):
            dangling.append(entry)
        elif entry.is_file() and stem in SPLITS and ext in FORMATS:
            found.setdefault(stem, []).append(entry)
        else:
            unexpected.append(entry.name)
    if dangling:
        raise _dangling_error(src, dangling)
    if unexpected:
        raise DatasetInputError(
            f"unexpected {'entry' if len(unexpected) == 1 else 'entries'} "
            f"{', '.join(map(repr, unexpected))}; expected only <split>.<format> files with split "
            f"in {', '.join(SPLITS)} and format in {', '.join(FORMATS)}, besides {IGNORED}",
            Location(src),
        )
    for split, files in found.items():
        if len(files) > 1:
            raise DatasetInputError(
                f"more than one file for this split ({', '.join(f.name for f in files)}); "
                "keep exactly one",
                Location(src, split),
            )
    for split in REQUIRED_SPLITS:
        if split not in found:
            names = ", ".join(f"{split}.{ext}" for ext in FORMATS)
            seen = f" (ignored: {', '.join(ignored)}; {IGNORED} are not read)" if ignored else ""
            raise DatasetInputError(
                f"no file for this required split; expected one of {names}{seen}",
                Location(src, split),
            )
    return {s: found[s][0] for s in SPLITS if s in found}


def is_note(entry: Path) -> bool:
    """Whether a folder entry is one of the `IGNORED` ones."""
    if entry.name.startswith("."):  # .DS_Store, .gitkeep, .ipynb_checkpoints/ and the like
        return True
    if not (entry.is_file() or is_dangling(entry)) or entry.name.partition(".")[0] in SPLITS:
        return False
    return entry.name.upper().startswith(NOTE_NAMES) or entry.suffix.lower() in NOTE_SUFFIXES


def is_dangling(entry: Path) -> bool:
    """Whether `entry` is a symbolic link that leads nowhere (a missing target, or a loop)."""
    return entry.is_symlink() and not entry.exists()


def _dangling_error(src: str, links: list[Path]) -> DatasetInputError:
    """One problem per dangling link, each naming its file, split (if named after one) and
    target."""
    problems = []
    for link in links:
        stem, _, ext = link.name.partition(".")
        try:
            link.stat()
            why = "its target appeared just now"  # between the listing and this look
        except OSError as err:
            why = (err.strerror or str(err)).lower()
        split = stem if stem in SPLITS and ext in FORMATS else None
        problem = (
            f"cannot be read: a symbolic link to {os.readlink(link)!r}, which leads nowhere ({why})"
        )
        problems.append(DatasetInputError(problem, Location(str(Path(src) / link.name), split)))
    first, *others = problems
    return DatasetInputError(first.problem, first.location, tuple(others))
