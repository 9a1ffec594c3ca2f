"""A validation's report: located failures, a headline, and the forms it is shown in (plain
lines, a rich table, a JSON-serialisable dict for MLflow)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sftcast.data.errors import Location, located, row_text

if TYPE_CHECKING:
    from rich.table import Table

# Rows kept per failure (the count is always exact) and rows shown per failure in messages.
MAX_ROWS_KEPT = 50
ROWS_SHOWN = 5
EXAMPLES_SHOWN = 3


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
