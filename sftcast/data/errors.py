"""Where a problem in a task dataset is, and the error that names it.

Rows are numbered from 1 in the order of the file (the CSV header is not a row); `line` is the
1-based physical line where a row starts, so that reading errors and validation failures can say
`data/test.jsonl: split 'test', row 3 (line 4), column 'answers': ...` (a `Location`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sftcast.data.schema import SPLITS

# Cell-level problems listed per file (the rest are counted), so one run shows most of what is
# wrong without printing a million lines.
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Location:
    """Where a problem is; any part may be unknown. `str()`:
    `data/test.jsonl: split 'test', row 3 (line 4), column 'answers'`."""

    file: str | None = None
    split: str | None = None
    row: int | None = None
    line: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.split is not None:
            parts.append(f"split {self.split!r}")
        if self.row is not None:
            parts.append(row_text(self.row, self.line))
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        where = ", ".join(parts)
        if self.file is None:
            return where
        return f"{self.file}: {where}" if where else self.file


def row_text(row: int, line: int | None) -> str:
    """`row 3 (line 4)`, or `row 3` where the format has no lines."""
    return f"row {row}" + (f" (line {line})" if line is not None else "")


def located(location: Location, text: str) -> str:
    """`<location>: <text>`, or the text alone where nothing is known."""
    where = str(location)
    return f"{where}: {text}" if where else text


class DatasetInputError(ValueError):
    """A task dataset that cannot be read into the task's schema.

    `problem` at `location` is the first problem; `others` holds further problems found at the
    same time (at most `MAX_PROBLEMS` in all) and `omitted` counts those not kept. `str()` lists
    them all, one per line.
    """

    def __init__(
        self,
        problem: str,
        location: Location,
        others: tuple[DatasetInputError, ...] = (),
        omitted: int = 0,
    ) -> None:
        self.problem = problem
        self.location = location
        self.others = others
        self.omitted = omitted
        super().__init__(str(self))

    def one_line(self) -> str:
        return located(self.location, self.problem)

    def __str__(self) -> str:
        lines = [self.one_line(), *(o.one_line() for o in self.others)]
        if self.omitted:
            lines.append(f"... and {self.omitted} more problem(s) not listed")
        return "\n".join(lines)

    def __reduce__(self):  # pickle (multiprocessing, ZenML) with the fields, not the message
        return (DatasetInputError, (self.problem, self.location, self.others, self.omitted))


@dataclass
class Problems:
    """Problems found in one go, raised as one error: the first `MAX_PROBLEMS` by split and row
    are listed, all are counted."""

    kept: list[DatasetInputError] = field(default_factory=list)
    found: int = 0

    def add(self, error: DatasetInputError) -> None:
        self.kept.append(error)
        self.found += 1

    def raise_if_any(self) -> None:
        if not self.kept:
            return

        def order(p: DatasetInputError) -> tuple[int, int, int]:
            where = p.location
            return SPLITS.index(where.split or "train"), where.row or 0, where.line or 0

        first, *others = sorted(self.kept, key=order)[:MAX_PROBLEMS]
        raise DatasetInputError(
            first.problem, first.location, tuple(others), self.found - 1 - len(others)
        )
