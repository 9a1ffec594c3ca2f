"""Task datasets that are already DatasetDicts: a `save_to_disk` directory, `hf:<name>[@rev]`
from the Hugging Face Hub, or one built in code. Each is checked like a file, every split at
once, before it is cast to the task's features."""

from __future__ import annotations

from pathlib import Path

import datasets

from sftcast.data.cells import SplitChecker
from sftcast.data.errors import DatasetInputError, Location, Problems
from sftcast.data.loaded import REQUIRED_SPLITS, LoadedDataset, SplitProvenance, task_features
from sftcast.data.schema import SPLITS, TaskSchema, schema_for

HF_PREFIX = "hf:"


def read_saved(src: str, schema: TaskSchema) -> LoadedDataset:
    try:
        loaded = datasets.load_from_disk(src)
    except (OSError, ValueError, FileNotFoundError) as e:
        raise DatasetInputError(
            f"cannot load the save_to_disk directory: {e}", Location(src)
        ) from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise DatasetInputError(
            "holds a single Dataset; expected a DatasetDict with train and test splits",
            Location(src),
        )
    return _from_dataset_dict(loaded, src, {s: str(Path(src) / s) for s in loaded}, schema)


def parse_hub_source(source: str) -> tuple[str, str | None]:
    """`hf:owner/name@rev` -> ("owner/name", "rev")."""
    name, _, revision = source.removeprefix(HF_PREFIX).partition("@")
    return name, revision or None


def read_hub(src: str, schema: TaskSchema) -> LoadedDataset:
    name, revision = parse_hub_source(src)
    if not name:
        raise DatasetInputError(f"expected {HF_PREFIX}<name>[@revision]", Location(src))
    try:
        loaded = datasets.load_dataset(name, revision=revision)
    except Exception as e:  # offline, unknown name or revision, gated repo: all end the same way
        raise DatasetInputError(
            f"cannot load {name!r}"
            + (f" at revision {revision!r}" if revision else "")
            + f" from the Hugging Face Hub ({type(e).__name__}: {e}); check the name, the "
            "revision and the network (HF_HUB_OFFLINE=1 forbids downloads)",
            Location(src),
        ) from e
    if not isinstance(loaded, datasets.DatasetDict):
        raise DatasetInputError("expected a dataset with train and test splits", Location(src))
    return _from_dataset_dict(loaded, src, {s: src for s in loaded}, schema)


def read_dataset_dict(
    data: datasets.DatasetDict | dict[str, datasets.Dataset], task: str, name: str | None = None
) -> LoadedDataset:
    """A DatasetDict built in code, checked like a file (`name` stands for its file)."""
    return _from_dataset_dict(data, name, {s: name for s in data}, schema_for(task))


def _from_dataset_dict(
    dd: datasets.DatasetDict | dict[str, datasets.Dataset],
    src: str | None,
    files: dict[str, str | None],
    schema: TaskSchema,
) -> LoadedDataset:
    unknown = [s for s in dd if s not in SPLITS]
    if unknown:
        raise DatasetInputError(
            f"unexpected split(s) {', '.join(map(repr, unknown))}; expected {', '.join(SPLITS)}",
            Location(src),
        )
    for split in REQUIRED_SPLITS:
        if split not in dd:
            raise DatasetInputError("this required split is missing", Location(src, split))
    problems = Problems()  # one report over every split: nothing here depends on another split
    for split in (s for s in SPLITS if s in dd):
        ds, checker = dd[split], SplitChecker(files[split], split, schema, problems)
        if set(ds.column_names) != set(schema.column_names):
            problems.add(checker.column_set_error(ds.column_names))
        elif checker.check_arrow_types(ds.data.schema):
            checker.check_cells(ds.select_columns(schema.column_names).to_dict(), None)
    problems.raise_if_any()
    features = task_features(schema)
    splits = {
        s: dd[s].select_columns(schema.column_names).cast(features) for s in SPLITS if s in dd
    }
    provenance = {s: SplitProvenance(files[s]) for s in splits}
    return LoadedDataset(datasets.DatasetDict(splits), provenance, schema.name, src)
