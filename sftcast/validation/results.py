"""GX results back to located failures: each offending frame row to its 1-based dataset row,
and that row to its file and line through the reader's provenance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sftcast.data.config import ValidationBounds
from sftcast.data.errors import Location
from sftcast.data.loaded import SplitProvenance
from sftcast.data.schema import SPLITS, TaskSchema
from sftcast.validation.report import EXAMPLES_SHOWN, MAX_ROWS_KEPT, ValidationFailure
from sftcast.validation.suites import GARBAGE, Frame


class Failures:
    """Makes the failures of one dataset's checks."""

    def __init__(
        self,
        schema: TaskSchema,
        bounds: ValidationBounds,
        provenance: Mapping[str, SplitProvenance],
    ) -> None:
        self.schema = schema
        self.bounds = bounds
        self.provenance = provenance

    def collect(self, frame: Frame, result: Any) -> list[ValidationFailure]:
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
        self, frame: Frame, check: str, column: str | None, result: dict[str, Any]
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
        self, frame: Frame, check: str, result: dict[str, Any]
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
