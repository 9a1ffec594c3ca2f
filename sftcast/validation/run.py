"""Validating a task dataset: read it (`sftcast.data.io`), run the GX suites on every split, and
report the located failures; reading errors become `read` failures of the same report."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import datasets

from sftcast.data.config import ValidationBounds
from sftcast.data.dicts import read_dataset_dict
from sftcast.data.errors import DatasetInputError, Location
from sftcast.data.io import read_task_dataset
from sftcast.data.loaded import LoadedDataset, SplitProvenance
from sftcast.data.schema import SPLITS, TaskSchema, schema_for
from sftcast.validation.report import ValidationFailure, ValidationReport
from sftcast.validation.results import Failures
from sftcast.validation.suites import CHECKS, add_expectations, build_frames, norm


def validate_source(
    source: str | os.PathLike[str], task: str, bounds: ValidationBounds | None = None
) -> ValidationReport:
    """Load `source` (see `sftcast.data.io`) and validate it; reading errors become failures."""
    start = time.perf_counter()
    name = os.fspath(source)
    try:
        loaded = read_task_dataset(source, task)
    except DatasetInputError as e:
        return ValidationReport(task, name, read_failures(e), seconds=time.perf_counter() - start)
    return validate_task_dataset(loaded, task, bounds, name=name)


def read_failures(error: DatasetInputError) -> list[ValidationFailure]:
    """One `read` failure per problem the reader found, and one counting those it did not list."""
    failures = [
        ValidationFailure(
            p.location,
            "read",
            p.problem,
            rows=[p.location.row] if p.location.row is not None else [],
            lines=[p.location.line] if p.location.row is not None else [],
        )
        for p in (error, *error.others)
    ]
    if error.omitted:
        where = error.location
        failures.append(
            ValidationFailure(
                Location(where.file, where.split),
                "read",
                f"{error.omitted} more problem(s) like the above, not listed; fix those first",
                count=error.omitted,
            )
        )
    return failures


def validate_task_dataset(
    data: LoadedDataset | datasets.DatasetDict | Mapping[str, datasets.Dataset],
    task: str,
    bounds: ValidationBounds | None = None,
    name: str | None = None,
) -> ValidationReport:
    """Run the GX checks on every split of a task dataset and collect located failures; a
    dataset built in code is first read like a file (`name` standing for the file)."""
    start = time.perf_counter()
    schema = schema_for(task)
    bounds = bounds or ValidationBounds()
    if not isinstance(data, LoadedDataset):
        try:
            data = read_dataset_dict(dict(data), task, name)
        except DatasetInputError as e:
            return ValidationReport(
                task, name, read_failures(e), seconds=time.perf_counter() - start
            )
    if data.task != task:
        raise ValueError(f"dataset was read for task {data.task!r}, not {task!r}")
    name = name or data.source
    splits = dict(data.dataset)
    failures = run_suites(schema, bounds, data.provenance, splits)
    rows = {s: len(ds) for s, ds in splits.items()}
    return ValidationReport(task, name, failures, rows, time.perf_counter() - start)


def run_suites(
    schema: TaskSchema,
    bounds: ValidationBounds,
    provenance: Mapping[str, SplitProvenance],
    splits: Mapping[str, datasets.Dataset],
) -> list[ValidationFailure]:
    """Every split's failures, in split, check and column order."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # One in-memory context per validation (cheap next to the GX import): no data docs
    # site, no progress bars, no usage statistics.
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch_def = (
        context.data_sources.add_pandas("sftcast")
        .add_dataframe_asset("task_split")
        .add_batch_definition_whole_dataframe("whole")
    )
    failures: list[ValidationFailure] = []
    earlier_ids: dict[str, str] = {}  # id -> the first split that uses it
    leak, id_col = schema.leakage_column, schema.id_column
    train = {v for v in map(norm, splits["train"][leak]) if v}
    results = Failures(schema, bounds, provenance)
    for split, ds in splits.items():
        for frame in build_frames(schema, split, ds, earlier_ids, train):
            add_expectations(frame, schema, bounds)
            suite = gx.ExpectationSuite(name=f"sftcast-{schema.name}-{split}")
            for exp in frame.expectations:
                suite.add_expectation(exp)
            batch = batch_def.get_batch(batch_parameters={"dataframe": frame.df})
            result = batch.validate(suite, result_format="COMPLETE")
            failures += results.collect(frame, result)
        for v in ds[id_col]:
            earlier_ids.setdefault(v, split)
    columns = schema.column_names
    failures.sort(
        key=lambda f: (
            SPLITS.index(f.location.split),
            CHECKS.index(f.check),
            columns.index(f.location.column) if f.location.column else -1,
        )
    )
    return failures
