"""Read users' task datasets (files, the Hub, DatasetDicts) into the task's schema; write ours.

This module owns the shape of a dataset: which files and splits, which columns, their types and
nulls. Whatever it returns has exactly the schema's columns, every text cell a string and every
list cell a list of strings; `sftcast.validation` then checks the content (blank or huge cells,
encoding garbage, labels, ids, leakage, sizes) and nothing here again.

A task dataset source is one of:

* a directory with one file per split, `<split>.jsonl`, `<split>.json` (a JSON array of objects,
  or JSON Lines), `<split>.csv` or `<split>.parquet`; `train` and `test` are required,
  `validation` is optional. Notes kept with the data are ignored (see `IGNORED`); any other
  entry, or a second data file for one split, is an error.
* a directory written by `DatasetDict.save_to_disk` (it holds `dataset_dict.json`);
* `hf:<name>[@<revision>]`, loaded with `datasets.load_dataset(name, revision=...)`.

Rows are numbered from 1 in the order of the file (the CSV header is not a row); `line` is the
1-based physical line where a row starts, kept per split in `LoadedDataset.provenance` so that
reading errors here and validation failures later can say
`data/test.jsonl: split 'test', row 3 (line 4), column 'answers': ...` (a `Location`).

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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from sftcast.data.schema import SPLITS, TaskSchema, schema_for

REQUIRED_SPLITS: tuple[str, ...] = ("train", "test")
FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "parquet")
HF_PREFIX = "hf:"
# Notes users keep with their data: read by people, never by sftcast, never an error. A file
# named after a split (`train.txt`) is no note: it is refused as a data file in no known format.
NOTE_NAMES: tuple[str, ...] = ("README", "LICENSE")  # any case, anything may follow
NOTE_SUFFIXES: tuple[str, ...] = (".md", ".rst", ".txt")
IGNORED = (
    "hidden entries (names starting with '.') and notes ("
    + ", ".join([*(f"{n}*" for n in NOTE_NAMES), *(f"*{s}" for s in NOTE_SUFFIXES)])
    + ") unless named after a split"
)
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


@dataclass(frozen=True)
class SplitProvenance:
    """Where one split came from: `lines[i]` is the 1-based line of row `i + 1` (None: no lines);
    `file` is None for a dataset built in memory and given no name."""

    file: str | None
    lines: tuple[int, ...] | None = None

    def line(self, row: int) -> int | None:
        """Line of the 1-based `row`, or None when the format has no lines (Parquet, Arrow)."""
        if self.lines is None or not 1 <= row <= len(self.lines):
            return None
        return self.lines[row - 1]


@dataclass(frozen=True)
class LoadedDataset:
    """A task dataset in its schema plus, per split, the file and line of every row."""

    dataset: datasets.DatasetDict
    provenance: dict[str, SplitProvenance]
    task: str
    source: str | None


def task_features(schema: TaskSchema) -> datasets.Features:
    return datasets.Features(
        {
            c.name: datasets.List(datasets.Value("string"))
            if c.kind == "str_list"
            else datasets.Value("string")
            for c in schema.columns
        }
    )


def load_task_dataset(source: str | os.PathLike[str], task: str) -> datasets.DatasetDict:
    """The task dataset at `source` (see the module docstring); raises `DatasetInputError`."""
    return read_task_dataset(source, task).dataset


def read_task_dataset(source: str | os.PathLike[str], task: str) -> LoadedDataset:
    """Like `load_task_dataset`, keeping each split's file and row-to-line mapping."""
    schema = schema_for(task)
    src = os.fspath(source)
    if src.startswith(HF_PREFIX):
        return _read_hub(src, schema)
    path = Path(src)
    if not path.exists():
        raise DatasetInputError(
            f"no such directory; expected a directory of split files, a save_to_disk directory "
            f"or {HF_PREFIX}<name>[@revision]",
            Location(src),
        )
    if not path.is_dir():
        raise DatasetInputError(
            "expected a directory holding one file per split (train.jsonl, test.jsonl, ...), "
            "not a single file",
            Location(src),
        )
    if (path / "dataset_dict.json").is_file():
        return _read_saved(src, schema)
    return _read_split_files(src, path, schema)


# --- a directory of split files --------------------------------------------------------------


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


def _read_split_files(src: str, path: Path, schema: TaskSchema) -> LoadedDataset:
    features = task_features(schema)
    splits: dict[str, datasets.Dataset] = {}
    provenance: dict[str, SplitProvenance] = {}
    for split, file_path in _find_split_files(src, path).items():
        file = str(Path(src) / file_path.name)
        fmt = file_path.name.partition(".")[2]
        reader = _SplitReader(file, split, schema)
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


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _json_problem(e: json.JSONDecodeError) -> str:
    """`Expecting ',' delimiter at character 12`; json's own message may end in "at" already
    ("Unterminated string starting at"), which must not read "at at"."""
    return f"{e.msg.removesuffix(' at')} at character {e.colno}"


@dataclass
class _Problems:
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


class _SplitReader:
    """Reads one split file into columns of the schema, collecting located problems.

    Hand-written rather than `datasets.load_dataset("json"/"csv")`: those infer and coerce types
    (a numeric id column becomes int64, a null passes) and report no line numbers.
    """

    def __init__(
        self, file: str | None, split: str, schema: TaskSchema, problems: _Problems | None = None
    ) -> None:
        self.file = file
        self.split = split
        self.schema = schema
        self.problems = problems if problems is not None else _Problems()

    def error(
        self,
        problem: str,
        row: int | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> DatasetInputError:
        return DatasetInputError(problem, Location(self.file, self.split, row, line, column))

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
                    f"expected a JSON object, got {_describe(record)}", row=row, line=line
                )
            if record.keys() != expected_set:
                # The column set is structural: report it at once instead of once per row.
                raise self.column_set_error(list(record), row=row, line=line)
            for c in expected:
                columns[c].append(record[c])
        return columns

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

    # -- types and cells --

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
        return None if isinstance(value, str) else f"expected a string, got {_describe(value)}"
    if not isinstance(value, list):
        return f"expected a list of strings, got {_describe(value)}"
    for n, item in enumerate(value, start=1):
        if not isinstance(item, str):
            return f"expected a list of strings, item {n} is {_describe(item)}"
    return None


# --- DatasetDicts: save_to_disk directories, the Hub, and datasets built in code --------------


def _read_saved(src: str, schema: TaskSchema) -> LoadedDataset:
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


def _read_hub(src: str, schema: TaskSchema) -> LoadedDataset:
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
    problems = _Problems()  # one report over every split: nothing here depends on another split
    for split in (s for s in SPLITS if s in dd):
        ds, reader = dd[split], _SplitReader(files[split], split, schema, problems)
        if set(ds.column_names) != set(schema.column_names):
            problems.add(reader.column_set_error(ds.column_names))
        elif reader.check_arrow_types(ds.data.schema):
            reader.check_cells(ds.select_columns(schema.column_names).to_dict(), None)
    problems.raise_if_any()
    features = task_features(schema)
    splits = {
        s: dd[s].select_columns(schema.column_names).cast(features) for s in SPLITS if s in dd
    }
    provenance = {s: SplitProvenance(files[s]) for s in splits}
    return LoadedDataset(datasets.DatasetDict(splits), provenance, schema.name, src)


# --- writing ---------------------------------------------------------------------------------


def save_task_dataset(dd: datasets.DatasetDict, directory: str | os.PathLike[str]) -> list[Path]:
    """Write `<directory>/<split>.jsonl` per split, readable by `load_task_dataset`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for split, ds in dd.items():
        others = [p for p in out.glob(f"{split}.*") if p.suffix != ".jsonl"]
        if others:
            raise ValueError(
                f"{out}: already holds {', '.join(p.name for p in others)}; a split must have "
                "one file, remove it first"
            )
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            f.writelines(f"{json.dumps(r, ensure_ascii=False)}\n" for r in ds)
        written.append(path)
    return written
