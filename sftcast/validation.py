"""Validate a task dataset's content with Great Expectations 1.x before anything downstream runs.

The shape is not checked here: every dataset first goes through `sftcast.data.io` (files, the
Hub, or a DatasetDict built in code), which guarantees the schema's columns, string cells and
lists of strings, and reports anything else as a `read` failure. Each split then becomes two
pandas frames (one row per dataset row; one row per text cell or answer) and GX expectation
suites on them check the content: blank strings, cell lengths, encoding garbage, the label set
(cls), non-empty answers, unique ids (within and across splits), train/test leakage of the
schema's `leakage_column`, and row counts. Each GX failure is mapped back to 1-based rows via
`unexpected_index_list` and to file and line via the loader's provenance
(`sftcast.data.io.LoadedDataset`), so a report reads
`data/test.jsonl: split 'test', row 3 (line 3), column 'label': ...`.

ZenML's Great Expectations integration does not support GX 1.x, so GX is called directly; it is
imported lazily because its import alone takes seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import datasets

from sftcast.data.config import ValidationBounds
from sftcast.data.io import (
    DatasetInputError,
    LoadedDataset,
    Location,
    SplitProvenance,
    located,
    read_dataset_dict,
    read_task_dataset,
    row_text,
)
from sftcast.data.schema import SPLITS, TaskSchema, schema_for

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

# Rows kept per failure (the count is always exact) and rows shown per failure in messages.
MAX_ROWS_KEPT = 50
ROWS_SHOWN = 5
EXAMPLES_SHOWN = 3

# GX's pandas regex metrics call `astype(str).str.contains`, which pandas 3 runs on pyarrow
# strings with RE2, where \s is ASCII-only: spell out Unicode whitespace (and the invisible
# U+200B, U+FEFF) so that "non-blank" means what str.strip() means.
NON_BLANK = "[^\\s\x1c-\x1f\x85\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]"
# U+FFFD (what a lossy decode leaves), C0 controls other than tab/LF/CR, and UTF-8 read as
# cp1252/latin-1 ("Ã©" for "é", "â€™" for "’"). Literal characters, not \u escapes: RE2 has none.
GARBAGE = "[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f]|[\u00c2\u00c3][\u0080-\u00bf]|\u00e2\u20ac"


@dataclass(frozen=True)
class ValidationFailure:
    """One check that failed on one column of one split; `location` names its first row, `rows`
    and `lines` the first `MAX_ROWS_KEPT` offending rows, `count` all of them."""

    location: Location
    check: str
    message: str
    examples: list[str] = field(default_factory=list)
    count: int = 1  # offending rows (or 1 for a check about the whole split)
    rows: list[int] = field(default_factory=list)
    lines: list[int | None] = field(default_factory=list)

    def rows_text(self) -> str:
        """`row 1 (line 1), row 3 (line 3) and 7 more`: the offending rows, countable."""
        shown = [
            row_text(r, ln)
            for r, ln in zip(self.rows[:ROWS_SHOWN], self.lines[:ROWS_SHOWN], strict=True)
        ]
        more = self.count - len(shown) if shown else 0
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

    def __str__(self) -> str:
        text = located(self.location, self.message)
        if self.examples:
            text += f" (e.g. {'; '.join(self.examples[:EXAMPLES_SHOWN])})"
        if len(self.rows) > 1:
            text += f"; {self.count} rows: {self.rows_text()}"
        return text


class DataValidationError(ValueError):
    """Raised by `ValidationReport.raise_for_failures`; `.report` holds every failure."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.describe())

    def __reduce__(self):  # pickle with the report, not the message string
        return (DataValidationError, (self.report,))


@dataclass
class ValidationReport:
    task: str
    name: str | None
    failures: list[ValidationFailure]
    rows: dict[str, int] = field(default_factory=dict)  # rows per split that was validated
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return not self.failures

    def headline(self) -> str:
        what = f"task dataset {self.name!r}" if self.name else "task dataset"
        if self.success:
            sizes = ", ".join(f"{s} {n}" for s, n in self.rows.items())
            return f"{what} ({self.task}) passed validation ({sizes} rows)"
        n = len(self.failures)
        return f"{what} ({self.task}) failed validation: {n} problem{'s' if n > 1 else ''}"

    def describe(self) -> str:
        return "\n".join([self.headline(), *(f"- {f}" for f in self.failures)])

    def raise_for_failures(self) -> None:
        if not self.success:
            raise DataValidationError(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (for MLflow `log_dict`)."""
        return {
            "task": self.task,
            "name": self.name,
            "success": self.success,
            "rows": dict(self.rows),
            "seconds": round(self.seconds, 3),
            "n_failures": len(self.failures),
            "failures": [asdict(f) for f in self.failures],
        }

    def to_lines(self) -> list[str]:
        """Plain lines for a pipe or a log: the headline, then one line per failure with its
        check, every field whole (no table cell wraps a path mid-name)."""
        return [self.headline(), *(f"{f} [{f.check}]" for f in self.failures)]

    def to_table(self) -> Table:
        from rich.table import Table

        title = f"{self.name or 'dataset'} ({self.task}): " + ("OK" if self.success else "FAILED")
        table = Table(title=title, show_lines=False)
        for header in ("file", "split", "rows (lines)", "column", "check", "count", "problem"):
            table.add_column(header, overflow="fold")
        for f in self.failures:
            where = f.location
            rows = f.rows_text() or (f"line {where.line}" if where.line else "")
            problem = f.message + (
                f" (e.g. {'; '.join(f.examples[:EXAMPLES_SHOWN])})" if f.examples else ""
            )
            table.add_row(
                where.file or "",
                where.split or "",
                rows,
                where.column or "",
                f.check,
                str(f.count),
                problem,
            )
        return table


# --- entry points -----------------------------------------------------------------------------


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
    failures = _Validator(schema, bounds, data.provenance).run(splits)
    rows = {s: len(ds) for s, ds in splits.items()}
    return ValidationReport(task, name, failures, rows, time.perf_counter() - start)


# --- the GX side ------------------------------------------------------------------------------

# Order in which checks are reported within a split.
CHECKS = (
    "row_count",
    "non_blank",
    "max_chars",
    "encoding",
    "label_set",
    "answers_non_empty",
    "unique_id",
    "unique_id_across_splits",
    "leakage",
    "gx_error",
)

# Two GX batches per split. The table frame has one row per dataset row: the schema's columns
# and derived helper columns (below). The cells frame has one row per text cell and per answer
# (columns CELL_COLUMNS), so the string checks run once per split rather than once per column:
# GX's cost is per expectation (~10 ms each), not per row.
HELPER = "__sftcast_"
CELL_COLUMNS = ("column", "row", "item", "value")


def _count(column: str) -> str:
    return f"{HELPER}count:{column}"  # a list column's length


def _seen(column: str) -> str:
    return f"{HELPER}seen:{column}"  # the earlier split that already uses this id


def _leak(column: str) -> str:
    return f"{HELPER}leak:{column}"  # the value, where its normalised form is also in train


# `seen:` and `leak:` are looked up here and checked with ExpectColumnValuesToBeNull instead of
# passing the other splits' values as a GX `value_set`: GX copies an expectation's kwargs on
# every access, which made that O(rows^2) (10 s at 20k rows).


def _norm(value: str) -> str:
    # Leakage compares case- and whitespace-insensitively: "Paris" and " paris" are one entity.
    return " ".join(value.casefold().split())


@dataclass
class _Frame:
    """One GX batch of one split; `cells` marks the long frame of text cells."""

    split: str
    df: pd.DataFrame
    cells: bool = False
    expectations: list[Any] = field(default_factory=list)


class _Validator:
    def __init__(
        self,
        schema: TaskSchema,
        bounds: ValidationBounds,
        provenance: Mapping[str, SplitProvenance],
    ) -> None:
        self.schema = schema
        self.bounds = bounds
        self.provenance = provenance

    def failure(
        self,
        split: str,
        check: str,
        message: str,
        column: str | None = None,
        rows: list[int] | None = None,
        values: list[Any] | None = None,
        items: list[int | None] | None = None,
        count: int | None = None,
    ) -> ValidationFailure:
        prov = self.provenance[split]
        rows = rows or []
        lines = [prov.line(r) for r in rows]
        values = values or []
        items = items or [None] * len(values)
        examples = [_example(check, v, i) for v, i in zip(values, items, strict=False)]
        return ValidationFailure(
            Location(
                prov.file,
                split,
                rows[0] if rows else None,
                lines[0] if lines else None,
                column,
            ),
            check,
            message,
            examples=list(dict.fromkeys(examples))[:EXAMPLES_SHOWN],
            count=count if count is not None else max(len(rows), 1),
            rows=rows,
            lines=lines,
        )

    # -- frames and suites --

    def build_frames(
        self, split: str, ds: datasets.Dataset, earlier_ids: dict[str, str], train: set[str]
    ) -> list[_Frame]:
        """The split's two frames; `sftcast.data.io` has made every cell a string or a list of
        strings, so nothing here checks a type."""
        import pandas as pd

        schema, data = self.schema, ds.to_dict()
        table: dict[str, pd.Series] = {}
        cells: dict[str, list[Any]] = {c: [] for c in CELL_COLUMNS}

        def add_cell(column: str, row: int, item: int | None, value: str) -> None:
            cells["column"].append(column)
            cells["row"].append(row)
            cells["item"].append(item)
            cells["value"].append(value)

        for column in schema.columns:
            values = data[column.name]
            table[column.name] = pd.Series(values, dtype=object)
            if column.kind == "str":
                for row, value in enumerate(values, start=1):
                    add_cell(column.name, row, None, value)
            else:
                table[_count(column.name)] = pd.Series([len(v) for v in values], dtype="int64")
                for row, answers in enumerate(values, start=1):
                    for item, answer in enumerate(answers, start=1):
                        add_cell(column.name, row, item, answer)
        if earlier_ids:
            seen = [earlier_ids.get(v) for v in data[schema.id_column]]
            table[_seen(schema.id_column)] = pd.Series(seen, dtype=object)
        leak = schema.leakage_column
        if split != "train" and train:
            leaked = [v if _norm(v) in train else None for v in data[leak]]
            table[_leak(leak)] = pd.Series(leaked, dtype=object)
        cell_df = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in cells.items()})
        return [
            _Frame(split, pd.DataFrame(table, index=range(len(ds)))),
            _Frame(split, cell_df, True),
        ]

    def add_expectations(self, frame: _Frame) -> None:
        import great_expectations as gx

        E, schema, split = gx.expectations, self.schema, frame.split
        columns = list(frame.df.columns)

        def add(exp_cls: type, check: str, reported: str | None, **kwargs: Any) -> None:
            meta = {"check": check, "column": reported}
            frame.expectations.append(exp_cls(**kwargs, meta=meta))

        if frame.cells:
            add(
                E.ExpectColumnValuesToMatchRegex, "non_blank", None, column="value", regex=NON_BLANK
            )
            add(
                E.ExpectColumnValueLengthsToBeBetween,
                "max_chars",
                None,
                column="value",
                max_value=self.bounds.max_chars,
            )
            add(
                E.ExpectColumnValuesToNotMatchRegex, "encoding", None, column="value", regex=GARBAGE
            )
            return

        add(
            E.ExpectTableRowCountToBeBetween,
            "row_count",
            None,
            min_value=self.bounds.min_rows[split],
            max_value=self.bounds.max_rows,
        )
        for column in schema.columns:
            if column.kind == "str_list":
                add(
                    E.ExpectColumnValuesToBeBetween,
                    "answers_non_empty",
                    column.name,
                    column=_count(column.name),
                    min_value=1,
                )
        label = schema.label_column
        if label and schema.label_set:
            add(
                E.ExpectColumnValuesToBeInSet,
                "label_set",
                label,
                column=label,
                value_set=list(schema.label_set),
            )
        id_col = schema.id_column
        add(E.ExpectColumnValuesToBeUnique, "unique_id", id_col, column=id_col)
        if _seen(id_col) in columns:
            add(
                E.ExpectColumnValuesToBeNull,
                "unique_id_across_splits",
                id_col,
                column=_seen(id_col),
            )
        leak = schema.leakage_column
        if _leak(leak) in columns:
            add(E.ExpectColumnValuesToBeNull, "leakage", leak, column=_leak(leak))

    def run(self, splits: Mapping[str, datasets.Dataset]) -> list[ValidationFailure]:
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
        leak, id_col = self.schema.leakage_column, self.schema.id_column
        train = {v for v in map(_norm, splits["train"][leak]) if v}
        for split, ds in splits.items():
            for frame in self.build_frames(split, ds, earlier_ids, train):
                self.add_expectations(frame)
                suite = gx.ExpectationSuite(name=f"sftcast-{self.schema.name}-{split}")
                for exp in frame.expectations:
                    suite.add_expectation(exp)
                batch = batch_def.get_batch(batch_parameters={"dataframe": frame.df})
                result = batch.validate(suite, result_format="COMPLETE")
                failures += self.collect(frame, result)
            for v in ds[id_col]:
                earlier_ids.setdefault(v, split)
        columns = self.schema.column_names
        failures.sort(
            key=lambda f: (
                SPLITS.index(f.location.split),
                CHECKS.index(f.check),
                columns.index(f.location.column) if f.location.column else -1,
            )
        )
        return failures

    # -- results to failures --

    def collect(self, frame: _Frame, result: Any) -> list[ValidationFailure]:
        failures: list[ValidationFailure] = []
        for res in result.results:
            if res.success:
                continue
            meta = res.expectation_config.meta or {}
            check, column = meta.get("check", "gx_error"), meta.get("column")
            error = _exception_message(res.exception_info)
            if error is not None:
                message = f"{check} check could not run: {error}"
                failures.append(self.failure(frame.split, "gx_error", message, column))
            elif frame.cells:
                failures += self.cell_failures(frame, check, res.result)
            else:
                failures += self.table_failures(frame, check, column, res.result)
        return failures

    def table_failures(
        self, frame: _Frame, check: str, column: str | None, result: dict[str, Any]
    ) -> list[ValidationFailure]:
        split = frame.split
        if check == "row_count":
            n = result.get("observed_value")
            lo, hi = self.bounds.min_rows[split], self.bounds.max_rows
            return [self.failure(split, check, f"{n} rows; expected between {lo} and {hi}")]
        positions = list(result.get("unexpected_index_list") or [])
        values = list(result.get("unexpected_list") or [])
        message = self.message(check, column, False, values)
        # Show the cell itself, not a helper column's value (a split name, a list's length).
        shown = [frame.df[column].iloc[p] for p in positions[:EXAMPLES_SHOWN]]
        return [
            self.failure(
                split,
                check,
                message,
                column,
                rows=[int(p) + 1 for p in positions[:MAX_ROWS_KEPT]],
                values=shown[:EXAMPLES_SHOWN],
                count=int(result.get("unexpected_count") or len(positions)),
            )
        ]

    def cell_failures(
        self, frame: _Frame, check: str, result: dict[str, Any]
    ) -> list[ValidationFailure]:
        """Split one failed cells-frame check into one failure per real column."""
        df = frame.df
        by_column: dict[str, list[int]] = {}
        for p in result.get("unexpected_index_list") or []:
            by_column.setdefault(df["column"].iloc[p], []).append(p)
        failures = []
        for column, positions in by_column.items():
            rows = list(dict.fromkeys(int(df["row"].iloc[p]) for p in positions))  # distinct
            shown = positions[:EXAMPLES_SHOWN]
            items = [df["item"].iloc[p] for p in shown]
            is_list = self.schema.kind(column) == "str_list"
            failures.append(
                self.failure(
                    frame.split,
                    check,
                    self.message(check, column, is_list, [df["value"].iloc[p] for p in positions]),
                    column,
                    rows=rows[:MAX_ROWS_KEPT],
                    values=[df["value"].iloc[p] for p in shown],
                    items=items,
                    count=len(rows),
                )
            )
        return failures

    def message(self, check: str, column: str | None, item: bool, values: list[Any]) -> str:
        """What is wrong; `item` when the cells are answers inside a list column."""
        what = "an answer" if item else "value"
        if check == "non_blank":
            return f"{what} is empty or whitespace-only"
        if check == "max_chars":
            return f"{what} is longer than {self.bounds.max_chars} characters (a huge row)"
        if check == "encoding":
            return (
                f"{what} contains encoding garbage (U+FFFD, a control character, or mojibake such "
                "as 'Ã©'); re-export the file as UTF-8"
            )
        if check == "label_set":
            return f"label not in the label set ({', '.join(self.schema.label_set or ())})"
        if check == "answers_non_empty":
            return "the answers list is empty"
        if check == "unique_id":
            return "duplicate id within the split"
        if check == "unique_id_across_splits":
            seen = sorted(set(values), key=SPLITS.index)
            return f"id also used in split {', '.join(map(repr, seen))}"
        if check == "leakage":
            return (
                f"{column} value also appears in the train split (train/test leakage; compared "
                "ignoring case and whitespace)"
            )
        return f"{check} failed"


def _exception_message(info: Any) -> str | None:
    """GX puts a raised metric error either flat or keyed by metric id; return its message."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _example(check: str, value: Any, item: int | None) -> str:
    prefix = f"answer {item}: " if item is not None else ""
    if check == "max_chars" and isinstance(value, str):
        return prefix + f"{_short(value)} ({len(value)} chars)"
    if check == "encoding" and isinstance(value, str):
        import re

        match = re.search(GARBAGE, value)
        if match:
            bad = ", ".join(f"U+{ord(c):04X}" for c in match.group())
            return prefix + f"{bad} at character {match.start() + 1} of {_short(value)}"
    return prefix + _short(value)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)  # escapes control characters, keeps readable non-ASCII text
    return text if len(text) <= limit else text[: limit - 3] + "..."
