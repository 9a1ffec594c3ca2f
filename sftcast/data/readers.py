"""Read one split file (JSON Lines, a JSON array, CSV or Parquet) into the schema's columns.

In CSV, a `str_list` cell holds a JSON list of strings (`["Paris", "paris"]`); any other text is
a list of one answer (`Paris` reads as `["Paris"]`), and an empty cell an empty list. A cell
that parses as a JSON object or a JSON string (`{"a": 1}`, `"Paris"`) is refused: it is almost
always a mistake, and the message says to write `["..."]`. In JSON and Parquet the cell is a
list of strings.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from sftcast.data.cells import SplitChecker, describe


def _json_problem(e: json.JSONDecodeError) -> str:
    """`Expecting ',' delimiter at character 12`; json's own message may end in "at" already
    ("Unterminated string starting at"), which must not read "at at"."""
    return f"{e.msg.removesuffix(' at')} at character {e.colno}"


class SplitReader(SplitChecker):
    """Reads one split file into columns of the schema, collecting located problems.

    Hand-written rather than `datasets.load_dataset("json"/"csv")`: those infer and coerce types
    (a numeric id column becomes int64, a null passes) and report no line numbers.
    """

    def read(self, path: Path, fmt: str) -> tuple[dict[str, list[Any]], list[int] | None]:
        try:
            return self._read(path, fmt)
        except OSError as err:  # gone since it was listed, or not readable by this user
            raise self.error(f"cannot be read: {err.strerror or err}") from None

    def _read(self, path: Path, fmt: str) -> tuple[dict[str, list[Any]], list[int] | None]:
        if fmt == "parquet":
            if path.stat().st_size == 0:
                raise self.error("file is empty (0 bytes)")
            columns, lines = self._read_parquet(path), None
        else:
            data = path.read_bytes()
            if not data.strip():
                raise self.error("file is empty (0 bytes)" if not data else "file has no rows")
            if fmt == "csv":
                columns, lines = self._read_csv(data)
            else:
                records, lines = (
                    self._read_json_array(data)
                    if fmt == "json" and data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
                    else self._read_json_lines(data)
                )
                columns = self._records_to_columns(records, lines)
        self.check_cells(columns, lines)
        self.problems.raise_if_any()
        return columns, lines

    # -- decoding --

    def _decode(self, data: bytes, line_offset: int = 0, row: int | None = None) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            line_start = data.rfind(b"\n", 0, e.start) + 1
            line = line_offset + data.count(b"\n", 0, e.start) + 1
            raise self.error(
                f"invalid UTF-8 byte 0x{data[e.start]:02x} at byte {e.start - line_start + 1} of "
                "the line; save the file as UTF-8",
                row=row,
                line=line,
            ) from None

    @staticmethod
    def _strip_bom(data: bytes) -> bytes:
        return data[3:] if data.startswith(b"\xef\xbb\xbf") else data

    # -- JSON Lines and JSON arrays --

    def _read_json_lines(self, data: bytes) -> tuple[list[Any], list[int]]:
        records: list[Any] = []
        lines: list[int] = []
        for i, raw in enumerate(self._strip_bom(data).split(b"\n")):
            if not raw.strip():
                continue
            line, row = i + 1, len(records) + 1
            text = self._decode(raw, line_offset=i, row=row)
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError as e:
                hint = " (a .json file must be a JSON array of objects or JSON Lines)"
                raise self.error(
                    f"invalid JSON: {_json_problem(e)}"
                    + (hint if (self.file or "").endswith(".json") else ""),
                    row=row,
                    line=line,
                ) from None
            lines.append(line)
        if not records:
            raise self.error("file has no rows")
        return records, lines

    def _read_json_array(self, data: bytes) -> tuple[list[Any], list[int]]:
        text = self._decode(self._strip_bom(data))
        decoder = json.JSONDecoder()
        records: list[Any] = []
        lines: list[int] = []
        line, counted = 1, 0

        def skip(i: int) -> int:
            while i < len(text) and text[i] in " \t\r\n":
                i += 1
            return i

        def line_at(pos: int) -> int:  # counts incrementally: positions only move forward
            nonlocal line, counted
            line += text.count("\n", counted, pos)
            counted = pos
            return line

        i = skip(skip(0) + 1)  # past "["
        while i < len(text) and text[i] != "]":
            try:
                record, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise self.error(
                    f"invalid JSON: {_json_problem(e)}", row=len(records) + 1, line=e.lineno
                ) from None
            records.append(record)
            lines.append(line_at(i))
            i = skip(end)
            if i < len(text) and text[i] == ",":
                i = skip(i + 1)
            elif i >= len(text) or text[i] != "]":
                raise self.error(
                    "invalid JSON: expected ',' or ']' after an array element", line=line_at(i)
                )
        if i >= len(text):
            raise self.error("invalid JSON: the array is not closed with ']'", line=line_at(i))
        if skip(i + 1) != len(text):
            raise self.error("invalid JSON: extra data after the array", line=line_at(skip(i + 1)))
        if not records:
            raise self.error("file has no rows (an empty JSON array)")
        return records, lines

    def _records_to_columns(self, records: list[Any], lines: list[int]) -> dict[str, list[Any]]:
        expected = self.schema.column_names
        expected_set = set(expected)
        columns: dict[str, list[Any]] = {c: [] for c in expected}
        for row, (record, line) in enumerate(zip(records, lines, strict=True), start=1):
            if not isinstance(record, dict):
                raise self.error(
                    f"expected a JSON object, got {describe(record)}", row=row, line=line
                )
            if record.keys() != expected_set:
                # The column set is structural: report it at once instead of once per row.
                raise self.column_set_error(list(record), row=row, line=line)
            for c in expected:
                columns[c].append(record[c])
        return columns

    # -- CSV --

    def _read_csv(self, data: bytes) -> tuple[dict[str, list[Any]], list[int]]:
        text = self._decode(self._strip_bom(data))
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header: list[str] | None = None
        rows: list[list[str]] = []
        lines: list[int] = []
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:  # bad quoting, or a field over csv's 128 KiB limit
                raise self.error(
                    f"invalid CSV: {e}", row=len(rows) + 1 if header else None, line=start
                ) from None
            if not fields:  # a blank line
                continue
            if header is None:
                header = fields
                continue
            if len(fields) != len(header):
                raise self.error(
                    f"ragged row: {len(fields)} fields but the header has {len(header)}",
                    row=len(rows) + 1,
                    line=start,
                )
            rows.append(fields)
            lines.append(start)
        if header is None:
            raise self.error("file has no rows")
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise self.error(
                f"duplicated column(s) in the header: {', '.join(map(repr, duplicated))}", line=1
            )
        if set(header) != set(self.schema.column_names):
            raise self.column_set_error(header, line=1)
        if not rows:
            raise self.error("file has no data rows (only a header)")
        index = {name: i for i, name in enumerate(header)}
        columns: dict[str, list[Any]] = {}
        for column in self.schema.columns:
            values = [fields[index[column.name]] for fields in rows]
            if column.kind == "str_list":
                values = [
                    self._csv_list(v, row, line, column.name)
                    for row, (v, line) in enumerate(zip(values, lines, strict=True), start=1)
                ]
            columns[column.name] = values
        return columns, lines

    def _csv_list(self, cell: str, row: int, line: int, column: str) -> Any:
        """A CSV list cell (see the module docstring); a refused cell reads as [] after its
        problem is recorded, so the other cells are still checked."""
        text = cell.strip()
        if not text:
            return []
        if text[0] not in '[{"':
            return [cell]  # plain text: one answer
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            if text[0] != "[":
                return [cell]  # `"Quoted" text` or `{braces}` that is no JSON: one answer
            problem = (
                f"starts with '[' but is not a JSON list ({_json_problem(e)}); write a list as "
                '["a", "b"], or quote one answer that starts with \'[\' as ["[...]"]'
            )
        else:
            if isinstance(value, list):
                return value
            problem = (
                f"a JSON string, not a list of answers; write one answer as {json.dumps([value])}"
                if isinstance(value, str)
                else "a JSON object, not a list of answers; write the answers as a JSON list of "
                'strings, ["a", "b"]'
            )
        self.problems.add(self.error(problem, row=row, line=line, column=column))
        return []

    # -- Parquet --

    def _read_parquet(self, path: Path) -> dict[str, list[Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise self.error(f"not a readable Parquet file: {e}") from None
        if set(table.column_names) != set(self.schema.column_names):
            raise self.column_set_error(table.column_names)
        self.check_arrow_types(table.schema, "Parquet type ")
        self.problems.raise_if_any()
        if table.num_rows == 0:
            raise self.error("file has no rows")
        return {c: table.column(c).to_pylist() for c in self.schema.column_names}
