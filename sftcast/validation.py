"""Validate a task dataset with Great Expectations 1.x before anything downstream runs.

Each split becomes two pandas frames (one row per dataset row; one row per text cell or answer)
and GX expectation suites on them check: the columns (present, none extra), types, nulls, blank
strings, cell lengths, encoding garbage, the label set (cls), non-empty answers, unique ids
(within and across splits), train/test leakage of the schema's `leakage_column`, and row counts.
Each GX failure is mapped back to 1-based rows via `unexpected_index_list` and to file and line
via the loader's provenance (`sftcast.data.io.LoadedDataset`), so a report reads
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
    REQUIRED_SPLITS,
    DatasetInputError,
    LoadedDataset,
    SplitProvenance,
    format_location,
    read_task_dataset,
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
    """One check that failed on one column of one split; `row`/`line` locate its first row."""

    file: str | None
    split: str | None
    row: int | None
    line: int | None
    column: str | None
    check: str
    message: str
    examples: list[str] = field(default_factory=list)
    count: int = 1  # offending rows (or 1 for a check about the whole split)
    rows: list[int] = field(default_factory=list)  # the first MAX_ROWS_KEPT offending rows
    lines: list[int | None] = field(default_factory=list)

    @property
    def location(self) -> str:
        return format_location(self.file, self.split, self.row, self.line, self.column)

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.examples:
            text += f" (e.g. {'; '.join(self.examples[:EXAMPLES_SHOWN])})"
        if len(self.rows) > 1:
            shown = [
                _row_text(r, ln)
                for r, ln in zip(self.rows[1:ROWS_SHOWN], self.lines[1:ROWS_SHOWN], strict=True)
            ]
            more = self.count - 1 - len(shown)
            text += f"; also {', '.join(shown)}" + (f" and {more} more" if more > 0 else "")
        return text


def _row_text(row: int, line: int | None) -> str:
    return f"row {row}" + (f" (line {line})" if line is not None else "")


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

    def describe(self) -> str:
        what = f"task dataset {self.name!r}" if self.name else "task dataset"
        if self.success:
            sizes = ", ".join(f"{s} {n}" for s, n in self.rows.items())
            return f"{what} ({self.task}) passed validation ({sizes} rows)"
        n = len(self.failures)
        head = f"{what} ({self.task}) failed validation: {n} problem{'s' if n > 1 else ''}"
        return "\n".join([head, *(f"- {f}" for f in self.failures)])

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

    def to_table(self) -> Table:
        from rich.table import Table

        title = f"{self.name or 'dataset'} ({self.task}): " + ("OK" if self.success else "FAILED")
        table = Table(title=title, show_lines=False)
        for header in ("file", "split", "row (line)", "column", "check", "count", "problem"):
            table.add_column(header, overflow="fold")
        for f in self.failures:
            where = (
                _row_text(f.row, f.line)
                if f.row is not None
                else (f"line {f.line}" if f.line else "")
            )
            problem = f.message + (
                f" (e.g. {'; '.join(f.examples[:EXAMPLES_SHOWN])})" if f.examples else ""
            )
            table.add_row(
                f.file or "", f.split or "", where, f.column or "", f.check, str(f.count), problem
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
        failures = [
            ValidationFailure(
                file=p.file,
                split=p.split,
                row=p.row,
                line=p.line,
                column=p.column,
                check="read",
                message=p.problem,
                rows=[p.row] if p.row is not None else [],
                lines=[p.line] if p.row is not None else [],
            )
            for p in (e, *e.others)
        ]
        return ValidationReport(task, name, failures, seconds=time.perf_counter() - start)
    return validate_task_dataset(loaded, task, bounds, name=name)


def validate_task_dataset(
    data: LoadedDataset | datasets.DatasetDict | Mapping[str, datasets.Dataset],
    task: str,
    bounds: ValidationBounds | None = None,
    name: str | None = None,
) -> ValidationReport:
    """Run the GX checks on every split of a task dataset and collect located failures."""
    start = time.perf_counter()
    schema = schema_for(task)
    bounds = bounds or ValidationBounds()
    if isinstance(data, LoadedDataset):
        if data.task != task:
            raise ValueError(f"dataset was read for task {data.task!r}, not {task!r}")
        provenance, name, splits = data.provenance, name or data.source, dict(data.dataset)
    else:
        provenance, splits = {}, dict(data)
    validator = _Validator(schema, bounds, name, provenance)
    failures = validator.check_splits(splits)
    known = {s: splits[s] for s in SPLITS if s in splits}
    failures += validator.run(known)
    rows = {s: len(ds) for s, ds in known.items()}
    return ValidationReport(task, name, failures, rows, time.perf_counter() - start)


# --- the GX side ------------------------------------------------------------------------------

# Order in which checks are reported within a split.
CHECKS = (
    "splits",
    "columns_exist",
    "no_extra_columns",
    "row_count",
    "type",
    "not_null",
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
CELL_COLUMNS = ("column", "row", "item", "value", "text")


def _text(column: str) -> str:
    """The column with non-strings blanked, so string checks skip what the type check reports."""
    return f"{HELPER}text:{column}"


def _count(column: str) -> str:
    return f"{HELPER}count:{column}"  # a list column's length


def _seen(column: str) -> str:
    return f"{HELPER}seen:{column}"  # the earlier split that already uses this id


def _leak(column: str) -> str:
    return f"{HELPER}leak:{column}"  # the value, where its normalised form is also in train


# `seen:` and `leak:` are looked up here and checked with ExpectColumnValuesToBeNull instead of
# passing the other splits' values as a GX `value_set`: GX copies an expectation's kwargs on
# every access, which made that O(rows^2) (10 s at 20k rows).


def _norm(value: Any) -> Any:
    # Leakage compares case- and whitespace-insensitively: "Paris" and " paris" are one entity.
    return " ".join(value.casefold().split()) if isinstance(value, str) else None


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
        name: str | None,
        provenance: Mapping[str, SplitProvenance],
    ) -> None:
        self.schema = schema
        self.bounds = bounds
        self.name = name
        self.provenance = provenance

    def file(self, split: str | None) -> str | None:
        prov = self.provenance.get(split) if split else None
        return prov.file if prov else self.name

    def line(self, split: str, row: int) -> int | None:
        prov = self.provenance.get(split)
        return prov.line(row) if prov else None

    def failure(
        self,
        split: str | None,
        check: str,
        message: str,
        column: str | None = None,
        rows: list[int] | None = None,
        values: list[Any] | None = None,
        items: list[int | None] | None = None,
        count: int | None = None,
    ) -> ValidationFailure:
        rows = rows or []
        lines = [self.line(split, r) for r in rows] if split else [None] * len(rows)
        values = values or []
        items = items or [None] * len(values)
        examples = [_example(check, v, i) for v, i in zip(values, items, strict=False)]
        return ValidationFailure(
            file=self.file(split),
            split=split,
            row=rows[0] if rows else None,
            line=lines[0] if lines else None,
            column=column,
            check=check,
            message=message,
            examples=list(dict.fromkeys(examples))[:EXAMPLES_SHOWN],
            count=count if count is not None else max(len(rows), 1),
            rows=rows,
            lines=lines,
        )

    def check_splits(self, splits: Mapping[str, Any]) -> list[ValidationFailure]:
        failures = [
            self.failure(None, "splits", f"unexpected split {s!r}; expected {', '.join(SPLITS)}")
            for s in splits
            if s not in SPLITS
        ]
        failures += [
            self.failure(s, "splits", "this required split is missing")
            for s in REQUIRED_SPLITS
            if s not in splits
        ]
        return failures

    # -- frames and suites --

    def build_frames(
        self, split: str, ds: datasets.Dataset, earlier_ids: dict[str, str], train: set[str]
    ) -> list[_Frame]:
        import pandas as pd

        schema, n = self.schema, len(ds)
        present = [c for c in schema.column_names if c in ds.column_names]
        data = ds.select_columns(present).to_dict() if present else {}
        table: dict[str, pd.Series] = {}
        for name in ds.column_names:  # extra columns too, so the column-set check sees them
            if name not in present:
                table[name] = pd.Series([None] * n, dtype=object)
        cells: dict[str, list[Any]] = {c: [] for c in CELL_COLUMNS}

        def add_cell(column: str, row: int, item: int | None, value: Any) -> None:
            cells["column"].append(column)
            cells["row"].append(row)
            cells["item"].append(item)
            cells["value"].append(value)
            cells["text"].append(value if isinstance(value, str) else None)

        for name in present:
            values = data[name]
            table[name] = pd.Series(values, dtype=object)
            if schema.kind(name) == "str":
                for row, value in enumerate(values, start=1):
                    add_cell(name, row, None, value)
            else:
                counts = [len(v) if isinstance(v, list) else None for v in values]
                table[_count(name)] = pd.Series(counts, dtype="float64")
                for row, value in enumerate(values, start=1):
                    if isinstance(value, list):
                        for item, answer in enumerate(value, start=1):
                            add_cell(name, row, item, answer)
        for name in (schema.id_column, schema.label_column):
            if name in present:
                texts = [v if isinstance(v, str) else None for v in data[name]]
                table[_text(name)] = pd.Series(texts, dtype=object)
        if schema.id_column in present and earlier_ids:
            ids = data[schema.id_column]
            seen = [earlier_ids.get(v) if isinstance(v, str) else None for v in ids]
            table[_seen(schema.id_column)] = pd.Series(seen, dtype=object)
        leak = schema.leakage_column
        if split != "train" and leak in present and train:
            leaked = [v if _norm(v) in train else None for v in data[leak]]
            table[_leak(leak)] = pd.Series(leaked, dtype=object)
        cell_df = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in cells.items()})
        return [_Frame(split, pd.DataFrame(table, index=range(n))), _Frame(split, cell_df, True)]

    def add_expectations(self, frame: _Frame) -> None:
        import great_expectations as gx

        E, schema, split = gx.expectations, self.schema, frame.split
        columns = list(frame.df.columns)

        def add(exp_cls: type, check: str, reported: str | None, **kwargs: Any) -> None:
            meta = {"check": check, "column": reported}
            frame.expectations.append(exp_cls(**kwargs, meta=meta))

        if frame.cells:
            add(E.ExpectColumnValuesToBeInTypeList, "type", None, column="value", type_list=["str"])
            add(E.ExpectColumnValuesToNotBeNull, "not_null", None, column="value")
            add(E.ExpectColumnValuesToMatchRegex, "non_blank", None, column="text", regex=NON_BLANK)
            add(
                E.ExpectColumnValueLengthsToBeBetween,
                "max_chars",
                None,
                column="text",
                max_value=self.bounds.max_chars,
            )
            add(E.ExpectColumnValuesToNotMatchRegex, "encoding", None, column="text", regex=GARBAGE)
            return

        add(
            E.ExpectTableRowCountToBeBetween,
            "row_count",
            None,
            min_value=self.bounds.min_rows[split],
            max_value=self.bounds.max_rows,
        )
        add(
            E.ExpectTableColumnsToMatchSet,
            "columns",
            None,
            column_set=[*schema.column_names, *(c for c in columns if c.startswith(HELPER))],
            exact_match=True,
        )
        for name in schema.column_names:
            if name in columns and schema.kind(name) == "str_list":
                add(
                    E.ExpectColumnValuesToBeInTypeList,
                    "type",
                    name,
                    column=name,
                    type_list=["list"],
                )
                add(E.ExpectColumnValuesToNotBeNull, "not_null", name, column=name)
                add(
                    E.ExpectColumnValuesToBeBetween,
                    "answers_non_empty",
                    name,
                    column=_count(name),
                    min_value=1,
                )
        label = schema.label_column
        if label and _text(label) in columns and schema.label_set:
            add(
                E.ExpectColumnValuesToBeInSet,
                "label_set",
                label,
                column=_text(label),
                value_set=list(schema.label_set),
            )
        id_col = schema.id_column
        if _text(id_col) in columns:
            add(E.ExpectColumnValuesToBeUnique, "unique_id", id_col, column=_text(id_col))
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
        train: set[str] = set()
        leak = self.schema.leakage_column
        if "train" in splits and leak in splits["train"].column_names:
            train = {v for v in map(_norm, splits["train"][leak]) if v}
        id_col = self.schema.id_column
        for split, ds in splits.items():
            for frame in self.build_frames(split, ds, earlier_ids, train):
                self.add_expectations(frame)
                suite = gx.ExpectationSuite(name=f"sftcast-{self.schema.name}-{split}")
                for exp in frame.expectations:
                    suite.add_expectation(exp)
                batch = batch_def.get_batch(batch_parameters={"dataframe": frame.df})
                result = batch.validate(suite, result_format="COMPLETE")
                failures += self.collect(frame, result)
            if id_col in ds.column_names:
                for v in ds[id_col]:
                    if isinstance(v, str):
                        earlier_ids.setdefault(v, split)
        order = {s: i for i, s in enumerate(SPLITS)}
        columns = {c: i for i, c in enumerate(self.schema.column_names)}
        failures.sort(
            key=lambda f: (
                order.get(f.split, -1) if f.split else -1,
                CHECKS.index(f.check),
                columns.get(f.column, len(columns)) if f.column else -1,
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
        if check == "columns":
            mismatched = result.get("details", {}).get("mismatched", {})
            expected = ", ".join(self.schema.column_names)
            failures = [
                self.failure(
                    split, "columns_exist", f"missing column; expected columns: {expected}", c
                )
                for c in mismatched.get("missing", [])
            ]
            extra = list(mismatched.get("unexpected", []))
            if extra:
                message = (
                    f"unexpected column(s) {', '.join(map(repr, extra))} (a typo? extra columns "
                    f"are not allowed); expected columns: {expected}"
                )
                failures.append(
                    self.failure(
                        split, "no_extra_columns", message, extra[0] if len(extra) == 1 else None
                    )
                )
            return failures
        positions = list(result.get("unexpected_index_list") or [])
        values = list(result.get("unexpected_list") or [])
        message = self.message(check, column, False, values)
        # Show the cell itself, not a helper column's value (a split name, a list's length).
        shown = values
        if column in frame.df.columns:
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
        if check == "type":
            listed = column is not None and self.schema.kind(column) == "str_list" and not item
            got = sorted({_type_name(v) for v in values})
            return f"expected {'a list of strings' if listed else 'a string'}" + (
                f", got {', '.join(got)}" if got else ""
            )
        if check == "not_null":
            return "null answer in the list" if item else "null value"
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


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _example(check: str, value: Any, item: int | None) -> str:
    prefix = f"answer {item}: " if item is not None else ""
    if check == "type":
        return prefix + f"{_type_name(value)} {_short(value)}"
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
