"""Check one split's columns, Arrow types and cells against the task's schema.

Whatever passes has exactly the schema's columns, every text cell a string and every list cell
a list of strings; problems are collected with their location (`Problems`) and raised as one
error, so one run shows most of what is wrong.
"""

from __future__ import annotations

from typing import Any

from sftcast.data.errors import MAX_PROBLEMS, DatasetInputError, Location, Problems
from sftcast.data.schema import TaskSchema


class SplitChecker:
    """The schema checks of one split; `SplitReader` reads a file into columns for them, a
    DatasetDict is checked as it is."""

    def __init__(
        self, file: str | None, split: str, schema: TaskSchema, problems: Problems | None = None
    ) -> None:
        self.file = file
        self.split = split
        self.schema = schema
        self.problems = problems if problems is not None else Problems()

    def error(
        self,
        problem: str,
        row: int | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> DatasetInputError:
        return DatasetInputError(problem, Location(self.file, self.split, row, line, column))

    def column_set_error(
        self, present: list[str], row: int | None = None, line: int | None = None
    ) -> DatasetInputError:
        expected = self.schema.column_names
        missing = [c for c in expected if c not in present]
        extra = [c for c in present if c not in expected]
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(map(repr, missing))}")
        if extra:
            problems.append(
                f"unexpected column(s) {', '.join(map(repr, extra))} (a typo? extra columns are "
                "not allowed)"
            )
        return self.error(
            f"{'; '.join(problems)}; expected columns: {', '.join(expected)}",
            row=row,
            line=line,
            column=(missing or extra)[0] if len(missing) + len(extra) == 1 else None,
        )

    def check_arrow_types(self, arrow_schema: Any, what: str = "") -> bool:
        """Record a problem per column whose Arrow type is not the schema's; True if none."""
        ok = True
        for column in self.schema.columns:
            arrow_type = arrow_schema.field(column.name).type
            if not _arrow_type_ok(arrow_type, column.kind):
                want = "list<string>" if column.kind == "str_list" else "string"
                self.problems.add(
                    self.error(f"expected {what}{want}, got {arrow_type}", column=column.name)
                )
                ok = False
        return ok

    def check_cells(self, columns: dict[str, list[Any]], lines: list[int] | None) -> None:
        """Record a problem per cell that is not a string (or a list of strings); the first
        `MAX_PROBLEMS` of a column are kept, all are counted."""
        for column in self.schema.columns:
            kept = 0
            for i, value in enumerate(columns[column.name]):
                problem = _cell_problem(value, column.kind)
                if problem is None:
                    continue
                if kept < MAX_PROBLEMS:
                    line = None if lines is None else lines[i]
                    self.problems.add(self.error(problem, i + 1, line, column.name))
                    kept += 1
                else:
                    self.problems.found += 1


def _arrow_type_ok(arrow_type: Any, kind: str) -> bool:
    import pyarrow as pa

    def is_str(t: Any) -> bool:
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)

    if kind == "str":
        return is_str(arrow_type)
    is_list = pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
    return is_list and is_str(arrow_type.value_type)


def _cell_problem(value: Any, kind: str) -> str | None:
    if kind == "str":
        return None if isinstance(value, str) else f"expected a string, got {describe(value)}"
    if not isinstance(value, list):
        return f"expected a list of strings, got {describe(value)}"
    for n, item in enumerate(value, start=1):
        if not isinstance(item, str):
            return f"expected a list of strings, item {n} is {describe(item)}"
    return None


def describe(value: Any) -> str:
    """A value as a message names it: `int 42`, `null`, cut to 60 characters."""
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
