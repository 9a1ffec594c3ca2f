"""Reading task datasets from files (`sftcast.data.io`) and validating them with GX
(`sftcast.validation`).

Datasets are written into `tmp_path` at test time. Rows are 1-based data rows (a CSV header is
not a row); lines are 1-based physical lines: the 3rd data row is line 3 in JSON Lines and
line 4 in CSV.
"""

from __future__ import annotations

import copy
import csv
import json
import pickle
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftcast.data.io import (
    MAX_PROBLEMS,
    DatasetInputError,
    load_task_dataset,
    read_task_dataset,
    save_task_dataset,
)
from sftcast.data.schema import SCHEMAS
from sftcast.validation import (
    ROWS_SHOWN,
    DataValidationError,
    ValidationBounds,
    validate_source,
    validate_task_dataset,
)

Rows = dict[str, list[dict[str, Any]]]


def qa_row(i: int, entity: str, task: str) -> dict[str, Any]:
    row = {
        "id": f"q{i}",
        "question": f"What is the capital of {entity}?",
        "answers": [f"Capital of {entity}", f"capital-{entity.lower()}"],
        "entity": entity,
        "relation": "capital",
    }
    if task == "rag":
        row |= {
            "passage": f"The capital of {entity} is Capital of {entity}.",
            "passage_id": f"p{i}",
            "gold_passage_id": f"p{i}",
        }
    return row


def valid_rows(task: str) -> Rows:
    """Tiny hand-made rows with the schema's columns: 4 train, 2 validation, 3 test."""
    if task == "cls":
        texts = {
            "train": [
                ("Shares rose after the merger.", "business"),
                ("The film won three awards.", "entertainment"),
                ("Parliament passed the bill.", "politics"),
                ("The striker scored twice.", "sports"),
            ],
            "validation": [
                ("A new phone chip was unveiled.", "tech"),
                ("Oil prices fell.", "business"),
            ],
            "test": [
                ("The band announced a tour.", "entertainment"),
                ("The minister resigned.", "politics"),
                ("The keeper saved a penalty.", "sports"),
            ],
        }
        n = 0
        rows: Rows = {}
        for split, pairs in texts.items():
            rows[split] = []
            for text, label in pairs:
                n += 1
                rows[split].append({"id": f"n{n}", "text": text, "label": label})
        return rows
    entities = {
        "train": ["France", "Spain", "Italy", "Peru"],
        "validation": ["Chile", "Japan"],
        "test": ["Kenya", "Nepal", "Ghana"],
    }
    n = 0
    rows = {}
    for split, names in entities.items():
        rows[split] = []
        for entity in names:
            n += 1
            rows[split].append(qa_row(n, entity, task))
    return rows


def write_split(directory: Path, split: str, rows: list[dict[str, Any]], fmt: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{split}.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        # an array with one object per line, so that row 1 is line 2
        body = ",\n".join(json.dumps(r) for r in rows)
        path.write_text(f"[\n{body}\n]\n", encoding="utf-8")
    elif fmt == "csv":
        columns = list(rows[0])
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for r in rows:
                writer.writerow(
                    json.dumps(r[c]) if isinstance(r[c], list) else r[c] for c in columns
                )
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_dataset(directory: Path, rows: Rows, fmt: str = "jsonl") -> Path:
    for split, split_rows in rows.items():
        write_split(directory, split, split_rows, fmt)
    return directory


# --- valid datasets pass ----------------------------------------------------------------------


@pytest.mark.parametrize("task", ["cbqa", "rag", "cls"])
def test_valid_dataset_passes(tmp_path: Path, task: str) -> None:
    source = write_dataset(tmp_path / "data", valid_rows(task))
    report = validate_source(source, task)
    assert report.success, report.describe()
    assert report.rows == {"train": 4, "validation": 2, "test": 3}
    report.raise_for_failures()  # no error
    dd = load_task_dataset(source, task)
    assert dd["train"].column_names == SCHEMAS[task].column_names


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet", "save_to_disk"])
def test_formats_round_trip(tmp_path: Path, fmt: str) -> None:
    rows = valid_rows("cbqa")
    rows["train"][0]["answers"] = ['Saint-Étienne, "quoted"', "[not a list]", "line\nbreak"]
    rows["train"][0]["question"] = "A question\non two lines?"
    dd = load_task_dataset(write_dataset(tmp_path / "src", rows), "cbqa")
    out = tmp_path / "out"
    if fmt == "save_to_disk":
        dd.save_to_disk(str(out))
    elif fmt == "jsonl":  # the library writes built-in datasets in JSON Lines
        written = save_task_dataset(dd, out)
        assert sorted(p.name for p in written) == sorted(f"{s}.{fmt}" for s in rows)
    else:
        write_dataset(out, {s: dd[s].to_list() for s in dd}, fmt)
    loaded = read_task_dataset(out, "cbqa")
    for split in rows:
        assert loaded.dataset[split].to_list() == rows[split]
    assert validate_task_dataset(loaded, "cbqa").success
    if fmt == "csv":  # the multi-line cell in row 1 pushes row 2 down one line
        assert loaded.provenance["train"].lines[:3] == (2, 4, 5)


def test_csv_plain_string_is_one_answer(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "data", valid_rows("cbqa"), "csv")
    text = (source / "test.csv").read_text(encoding="utf-8")
    (source / "test.csv").write_text(
        text.replace('"[""Capital of Kenya"", ""capital-kenya""]"', "Nairobi"), encoding="utf-8"
    )
    assert load_task_dataset(source, "cbqa")["test"][0]["answers"] == ["Nairobi"]


# --- malformed datasets are rejected, naming file, split, row, line and column ----------------

# A case edits valid rows or files under `d` and returns what the message must contain.
Case = Callable[[Path], None]


def jsonl_edit(task: str, split: str, row: int, **changes: Any) -> Case:
    """Write valid JSONL, then set `changes` on the 1-based `row` of `split`."""

    def make(d: Path) -> None:
        rows = copy.deepcopy(valid_rows(task))
        rows[split][row - 1].update(changes)
        write_dataset(d, rows)

    return make


def raw_line(task: str, split: str, line: int, raw: bytes) -> Case:
    """Write valid JSONL, then replace (1-based) `line` of `split` with raw bytes."""

    def make(d: Path) -> None:
        write_dataset(d, valid_rows(task))
        path = d / f"{split}.jsonl"
        lines = path.read_bytes().split(b"\n")
        lines[line - 1] = raw
        path.write_bytes(b"\n".join(lines))

    return make


def drop_column(task: str, split: str, column: str) -> Case:
    def make(d: Path) -> None:
        rows = copy.deepcopy(valid_rows(task))
        for r in rows[split]:
            del r[column]
        write_dataset(d, rows)

    return make


def rename_column(task: str, split: str, old: str, new: str, fmt: str = "jsonl") -> Case:
    def make(d: Path) -> None:
        rows = copy.deepcopy(valid_rows(task))
        rows[split] = [{(new if k == old else k): v for k, v in r.items()} for r in rows[split]]
        write_dataset(d, rows, fmt)

    return make


def with_file(task: str, name: str, content: bytes, fmt: str = "jsonl") -> Case:
    """Write valid files, then (over)write `name` with `content`."""

    def make(d: Path) -> None:
        write_dataset(d, valid_rows(task), fmt)
        (d / name).write_bytes(content)

    return make


NEPAL_ANSWERS = '"[""Capital of Nepal"", ""capital-nepal""]"'  # test row 2 as CSV writes it


def csv_edit(task: str, split: str, edit: Callable[[str], str]) -> Case:
    def make(d: Path) -> None:
        write_dataset(d, valid_rows(task), "csv")
        path = d / f"{split}.csv"
        path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")

    return make


def csv_answers(cell: str) -> Case:
    """Valid `cbqa` CSV files whose test row 2 (line 3) has this raw `answers` cell."""
    return csv_edit("cbqa", "test", lambda t: t.replace(NEPAL_ANSWERS, cell, 1))


def parquet_with(task: str, split: str, table_edit: Callable[[pa.Table], pa.Table]) -> Case:
    def make(d: Path) -> None:
        write_dataset(d, valid_rows(task), "parquet")
        path = d / f"{split}.parquet"
        pq.write_table(table_edit(pq.read_table(path)), path)

    return make


def leak_cls(d: Path) -> None:
    rows = copy.deepcopy(valid_rows("cls"))
    rows["test"][1]["text"] = "  shares ROSE after the merger. "  # same text as train row 1
    write_dataset(d, rows)


def duplicate_id(d: Path) -> None:
    rows = copy.deepcopy(valid_rows("cbqa"))
    rows["train"][2]["id"] = rows["train"][0]["id"]
    write_dataset(d, rows)


def id_across_splits(d: Path) -> None:
    rows = copy.deepcopy(valid_rows("cls"))
    rows["test"][2]["id"] = rows["train"][1]["id"]
    write_dataset(d, rows)


def missing_test_split(d: Path) -> None:
    rows = valid_rows("cbqa")
    write_split(d, "train", rows["train"], "jsonl")


def two_formats(d: Path) -> None:
    rows = valid_rows("cbqa")
    write_dataset(d, rows)
    write_split(d, "test", rows["test"], "csv")


def double_row(d: Path) -> None:  # 4 answers, two blank: one failure on one row
    rows = copy.deepcopy(valid_rows("rag"))
    rows["validation"][1]["answers"] = ["ok", "", "fine", "   "]
    write_dataset(d, rows, "json")


HUGE = "x" * 20_001
# (case id, task, make, expected substrings in the message, (check, split, row, line, column))
CASES: list[tuple[str, str, Case, list[str], tuple[Any, ...]]] = [
    (
        "number_where_string",
        "cbqa",
        jsonl_edit("cbqa", "test", 2, id=5),
        ["test.jsonl: split 'test', row 2 (line 2), column 'id'", "expected a string, got int 5"],
        ("read", "test", 2, 2, "id"),
    ),
    (
        "null_value",
        "cbqa",
        jsonl_edit("cbqa", "train", 3, entity=None),
        ["train.jsonl: split 'train', row 3 (line 3), column 'entity'", "got null"],
        ("read", "train", 3, 3, "entity"),
    ),
    (
        "dict_where_string",
        "cls",
        jsonl_edit("cls", "validation", 1, text={"title": "x"}),
        ["validation.jsonl: split 'validation', row 1 (line 1), column 'text'", "got dict"],
        ("read", "validation", 1, 1, "text"),
    ),
    (
        "answers_not_a_list",
        "cbqa",
        jsonl_edit("cbqa", "test", 3, answers="Accra"),
        ["column 'answers'", "expected a list of strings, got str 'Accra'"],
        ("read", "test", 3, 3, "answers"),
    ),
    (
        "answer_item_not_string",
        "rag",
        jsonl_edit("rag", "train", 2, answers=["Madrid", 7]),
        ["row 2 (line 2), column 'answers'", "item 2 is int 7"],
        ("read", "train", 2, 2, "answers"),
    ),
    (
        "missing_column",
        "cbqa",
        drop_column("cbqa", "validation", "relation"),
        ["validation.jsonl", "missing column(s) 'relation'", "expected columns: id, question"],
        ("read", "validation", 1, 1, "relation"),
    ),
    (
        "extra_column_typo",
        "cbqa",
        rename_column("cbqa", "train", "question", "qestion", "csv"),
        ["train.csv: split 'train', line 1", "unexpected column(s) 'qestion'", "'question'"],
        ("read", "train", None, 1, None),
    ),
    (
        "empty_string",
        "cbqa",
        jsonl_edit("cbqa", "test", 3, question=""),
        ["test.jsonl: split 'test', row 3 (line 3), column 'question'", "empty or whitespace"],
        ("non_blank", "test", 3, 3, "question"),
    ),
    (
        "whitespace_only",
        "cls",
        jsonl_edit("cls", "train", 2, text=" \t\u00a0 "),
        ["train.jsonl: split 'train', row 2 (line 2), column 'text'", "whitespace-only"],
        ("non_blank", "train", 2, 2, "text"),
    ),
    (
        "unknown_label",
        "cls",
        jsonl_edit("cls", "test", 3, label="Sport"),
        ["split 'test', row 3 (line 3), column 'label'", "not in the label set", "'Sport'"],
        ("label_set", "test", 3, 3, "label"),
    ),
    (
        "duplicate_ids",
        "cbqa",
        duplicate_id,
        ["train.jsonl: split 'train', row 1 (line 1), column 'id'", "duplicate id", "row 3"],
        ("unique_id", "train", 1, 1, "id"),
    ),
    (
        "duplicate_ids_across_splits",
        "cls",
        id_across_splits,
        ["test.jsonl: split 'test', row 3 (line 3), column 'id'", "also used in split 'train'"],
        ("unique_id_across_splits", "test", 3, 3, "id"),
    ),
    (
        "train_test_leakage",
        "cls",
        leak_cls,
        ["test.jsonl: split 'test', row 2 (line 2), column 'text'", "leakage"],
        ("leakage", "test", 2, 2, "text"),
    ),
    (
        "entity_leakage",
        "rag",
        jsonl_edit("rag", "validation", 2, entity="france"),
        ["split 'validation', row 2 (line 2), column 'entity'", "also appears in the train"],
        ("leakage", "validation", 2, 2, "entity"),
    ),
    (
        "invalid_utf8_bytes",
        "cbqa",
        raw_line("cbqa", "train", 3, b'{"id": "q3", "question": "caf\xe9?"}'),
        ["train.jsonl: split 'train', row 3 (line 3)", "invalid UTF-8 byte 0xe9"],
        ("read", "train", 3, 3, None),
    ),
    (
        "replacement_character",
        "cls",
        jsonl_edit("cls", "validation", 2, text="Oil prices fell \ufffd sharply."),
        ["split 'validation', row 2 (line 2), column 'text'", "encoding garbage", "U+FFFD"],
        ("encoding", "validation", 2, 2, "text"),
    ),
    (
        "control_character",
        "rag",
        jsonl_edit("rag", "test", 1, passage="bell \x07 inside"),
        ["row 1 (line 1), column 'passage'", "encoding garbage", "U+0007"],
        ("encoding", "test", 1, 1, "passage"),
    ),
    (
        "mojibake",
        "cbqa",
        jsonl_edit("cbqa", "train", 4, answers=["CafÃ©"]),
        ["row 4 (line 4), column 'answers'", "encoding garbage", "answer 1"],
        ("encoding", "train", 4, 4, "answers"),
    ),
    (
        "empty_file",
        "cbqa",
        with_file("cbqa", "test.jsonl", b""),
        ["test.jsonl: split 'test'", "empty (0 bytes)"],
        ("read", "test", None, None, None),
    ),
    (
        "csv_header_only",
        "cls",
        with_file("cls", "validation.csv", b"id,text,label\r\n", "csv"),
        ["validation.csv: split 'validation'", "only a header"],
        ("read", "validation", None, None, None),
    ),
    (
        "huge_row",
        "cls",
        jsonl_edit("cls", "train", 3, text=HUGE),
        ["row 3 (line 3), column 'text'", "longer than 20000 characters", "20001 chars"],
        ("max_chars", "train", 3, 3, "text"),
    ),
    (
        "empty_answers_list",
        "cbqa",
        jsonl_edit("cbqa", "test", 2, answers=[]),
        ["test.jsonl: split 'test', row 2 (line 2), column 'answers'", "answers list is empty"],
        ("answers_non_empty", "test", 2, 2, "answers"),
    ),
    (
        "blank_answers_in_list",
        "rag",
        double_row,
        ["validation.json: split 'validation', row 2 (line 3), column 'answers'", "answer 2: ''"],
        ("non_blank", "validation", 2, 3, "answers"),
    ),
    (
        "invalid_json_line",
        "cbqa",
        raw_line("cbqa", "validation", 2, b'{"id": "q6", "question": "x",'),
        ["validation.jsonl: split 'validation', row 2 (line 2)", "invalid JSON"],
        ("read", "validation", 2, 2, None),
    ),
    (
        "json_line_not_object",
        "cls",
        raw_line("cls", "test", 1, b'["n7", "text", "tech"]'),
        ["test.jsonl: split 'test', row 1 (line 1)", "expected a JSON object, got list"],
        ("read", "test", 1, 1, None),
    ),
    (
        "ragged_csv",
        "cls",
        csv_edit("cls", "train", lambda t: t.replace("business\n", "business,extra\n", 1)),
        ["train.csv: split 'train', row 1 (line 2)", "ragged row: 4 fields but the header has 3"],
        ("read", "train", 1, 2, None),
    ),
    (
        "csv_answers_bad_json_list",
        "cbqa",
        csv_edit("cbqa", "test", lambda t: t.replace('"[""Capital of Nepal""', '"[Nepal', 1)),
        ["test.csv: split 'test', row 2 (line 3), column 'answers'", "not a JSON list"],
        ("read", "test", 2, 3, "answers"),
    ),
    (
        "parquet_wrong_column_type",
        "cls",
        parquet_with(
            "cls", "test", lambda t: t.set_column(0, "id", pa.array([1, 2, 3], pa.int64()))
        ),
        ["test.parquet: split 'test', column 'id'", "expected Parquet type string, got int64"],
        ("read", "test", None, None, "id"),
    ),
    (
        "parquet_answers_as_string",
        "cbqa",
        parquet_with(
            "cbqa",
            "train",
            lambda t: t.set_column(2, "answers", pa.array(["a", "b", "c", "d"], pa.string())),
        ),
        ["train.parquet: split 'train', column 'answers'", "expected Parquet type list<string>"],
        ("read", "train", None, None, "answers"),
    ),
    (
        "missing_required_split",
        "cbqa",
        missing_test_split,
        ["split 'test': no file for this required split", "test.jsonl, test.json, test.csv"],
        ("read", "test", None, None, None),
    ),
    (
        "two_formats_for_a_split",
        "cbqa",
        two_formats,
        ["split 'test': more than one file", "test.csv, test.jsonl"],
        ("read", "test", None, None, None),
    ),
    (
        "unexpected_file",
        "cls",
        with_file("cls", "dev.jsonl", b"{}\n"),
        ["unexpected entry 'dev.jsonl'"],
        ("read", None, None, None, None),
    ),
    (
        "csv_answers_json_object",
        "cbqa",
        csv_answers('"{""gold"": ""x""}"'),
        ["test.csv: split 'test', row 2 (line 3), column 'answers'", "a JSON object, not a list"],
        ("read", "test", 2, 3, "answers"),
    ),
    (
        "csv_answers_json_string",
        "cbqa",
        csv_answers('"""Kathmandu"""'),
        ["row 2 (line 3), column 'answers'", "a JSON string", 'write one answer as ["Kathmandu"]'],
        ("read", "test", 2, 3, "answers"),
    ),
    (
        "csv_answers_unterminated_list",
        "cbqa",
        csv_answers('"[""Kathmandu]"'),
        ["row 2 (line 3), column 'answers'", "(Unterminated string starting at character 2)"],
        ("read", "test", 2, 3, "answers"),
    ),
    (
        "json_array_newline_in_string",
        "cls",
        with_file("cls", "validation.json", b'[\n{"id": "v1", "text": "x\n]\n', "json"),
        [
            "validation.json: split 'validation', row 1 (line 2)",
            "Invalid control character at character 24",
        ],
        ("read", "validation", 1, 2, None),
    ),
    (
        "file_named_after_a_split_is_no_note",
        "cls",
        with_file("cls", "validation.txt", b"notes\n"),
        ["unexpected entry 'validation.txt'", "unless named after a split"],
        ("read", None, None, None, None),
    ),
]


@pytest.mark.parametrize(
    ("task", "make", "expected", "where"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_malformed_dataset_is_rejected(
    tmp_path: Path, task: str, make: Case, expected: list[str], where: tuple[Any, ...]
) -> None:
    source = tmp_path / "data"
    make(source)
    report = validate_source(source, task)
    assert not report.success
    with pytest.raises(DataValidationError) as info:
        report.raise_for_failures()
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"
    first, loc = report.failures[0], report.failures[0].location
    assert (first.check, loc.split, loc.row, loc.line, loc.column) == where, message
    if loc.file is not None and loc.split is not None:
        assert loc.file.startswith(str(source))
    if first.check == "read":  # the loader raises the same problem on its own
        with pytest.raises(DatasetInputError) as read_info:
            load_task_dataset(source, task)
        assert read_info.value.problem == first.message


def test_enough_malformed_cases() -> None:
    assert len({case[0] for case in CASES}) >= 15


# --- rows, lines and reports ------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "line"), [("jsonl", 3), ("csv", 4), ("json", 4)])
def test_third_data_row_is_row_3(tmp_path: Path, fmt: str, line: int) -> None:
    rows = copy.deepcopy(valid_rows("cls"))
    rows["train"][2]["label"] = "weather"
    report = validate_source(write_dataset(tmp_path / "d", rows, fmt), "cls")
    (failure,) = report.failures
    assert astuple(failure.location) == (
        str(tmp_path / "d" / f"train.{fmt}"),
        "train",
        3,
        line,
        "label",
    )
    assert f"train.{fmt}: split 'train', row 3 (line {line}), column 'label'" in str(failure)


def test_blank_lines_and_multiline_cells_shift_lines_not_rows(tmp_path: Path) -> None:
    rows = copy.deepcopy(valid_rows("cls"))
    rows["test"][0]["text"] = "two\nlines"
    rows["test"][2]["label"] = "weather"
    d = write_dataset(tmp_path / "csv", rows, "csv")
    assert (
        validate_source(d, "cls").failures[0].location.line == 5
    )  # header, 2 lines, 1 line, row 3
    d = write_dataset(tmp_path / "jsonl", rows)
    text = (d / "test.jsonl").read_text(encoding="utf-8")
    (d / "test.jsonl").write_text("\n" + text.replace("\n", "\n\n", 1), encoding="utf-8")
    (failure,) = validate_source(d, "cls").failures
    assert (failure.location.row, failure.location.line) == (3, 5)


def test_report_to_dict_is_json_serialisable_and_lists_every_failure(tmp_path: Path) -> None:
    rows = copy.deepcopy(valid_rows("cbqa"))
    rows["test"][0]["question"] = " "
    rows["test"][1]["question"] = ""
    rows["test"][2]["entity"] = "Spain"
    report = validate_source(write_dataset(tmp_path / "d", rows), "cbqa")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["success"] is False
    assert data["n_failures"] == 2
    blank = next(f for f in data["failures"] if f["check"] == "non_blank")
    assert (blank["rows"], blank["lines"], blank["count"]) == ([1, 2], [1, 2], 2)
    assert "row 2 (line 2)" in str(report.failures[0])  # the further rows are listed too
    table = report.to_table()
    assert table.row_count == 2
    # a reading error becomes a one-failure report, serialisable the same way
    (tmp_path / "d" / "test.jsonl").write_bytes(b"\xff\n")
    report = validate_source(tmp_path / "d", "cbqa")
    assert json.loads(json.dumps(report.to_dict()))["failures"][0]["check"] == "read"


def test_input_error_message_and_fields(tmp_path: Path) -> None:
    rows = copy.deepcopy(valid_rows("cbqa"))
    rows["test"][2]["answers"] = 5
    rows["test"][1]["id"] = None
    d = write_dataset(tmp_path / "data", rows)
    with pytest.raises(DatasetInputError) as info:
        load_task_dataset(d, "cbqa")
    e = info.value
    assert isinstance(e, ValueError)
    assert astuple(e.location) == (str(d / "test.jsonl"), "test", 2, 2, "id")
    assert str(e).splitlines() == [
        f"{d}/test.jsonl: split 'test', row 2 (line 2), column 'id': expected a string, got null",
        f"{d}/test.jsonl: split 'test', row 3 (line 3), column 'answers': expected a list of "
        "strings, got int 5",
    ]


def test_dataset_dict_with_wrong_types_and_columns(tmp_path: Path) -> None:
    """A DatasetDict built in code has no files: it is read like one (its shape is the
    reader's), and every split's problems are reported, naming the split, row and column."""
    rows = copy.deepcopy(valid_rows("cls"))
    train = datasets.Dataset.from_list([{**r, "id": i} for i, r in enumerate(rows["train"])])
    test = datasets.Dataset.from_list(rows["test"]).remove_columns("label")
    test = test.add_column("extra", ["a", "b", "c"])
    valid = datasets.Dataset.from_dict(
        {"id": ["v1", None], "text": ["x", "y"], "label": ["tech", "tech"]}
    )
    dd = datasets.DatasetDict({"train": train, "test": test, "validation": valid})
    report = validate_task_dataset(dd, "cls", name="in-memory")
    found = {
        (f.location.split, f.check, f.location.column, f.location.row) for f in report.failures
    }
    assert found == {
        ("train", "read", "id", None),  # the whole column is int64
        ("validation", "read", "id", 2),
        ("test", "read", None, None),
    }
    with pytest.raises(DataValidationError) as info:
        report.raise_for_failures()
    message = str(info.value)
    assert "in-memory: split 'train', column 'id': expected string, got int64" in message
    assert "in-memory: split 'validation', row 2, column 'id': expected a string, got null" in (
        message
    )
    assert "in-memory: split 'test': missing column(s) 'label'; unexpected column(s) 'extra'" in (
        message
    )
    # a saved DatasetDict with int ids is refused by the loader, naming the column
    saved = datasets.DatasetDict({"train": train, "test": datasets.Dataset.from_list(rows["test"])})
    saved.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DatasetInputError, match=r"split 'train', column 'id': expected string"):
        load_task_dataset(tmp_path / "saved", "cls")


def test_bounds_per_split_and_task(tmp_path: Path) -> None:
    d = write_dataset(tmp_path / "d", valid_rows("cls"))
    bounds = ValidationBounds(min_rows={"validation": 3}, max_rows=3, max_chars=25)
    report = validate_source(d, "cls", bounds)
    checks = {(f.location.split, f.check) for f in report.failures}
    assert ("train", "row_count") in checks  # 4 > max_rows
    assert ("validation", "row_count") in checks  # 2 < 3
    assert ("test", "max_chars") in checks
    assert "4 rows; expected between 1 and 3" in report.describe()
    assert ValidationBounds(min_rows=2).min_rows == {"train": 2, "validation": 2, "test": 2}
    with pytest.raises(ValueError, match="extra"):
        ValidationBounds(max_row=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown split"):
        ValidationBounds(min_rows={"dev": 1})


def test_validation_split_is_optional(tmp_path: Path) -> None:
    rows = valid_rows("rag")
    del rows["validation"]
    loaded = read_task_dataset(write_dataset(tmp_path / "d", rows, "csv"), "rag")
    assert set(loaded.dataset) == {"train", "test"}
    assert validate_task_dataset(loaded, "rag").success


def test_hub_source(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetInputError, match=r"hf:someone/qa@v1: cannot load 'someone/qa'"):
        load_task_dataset("hf:someone/qa@v1", "cbqa")
    report = validate_source("hf:someone/qa", "cbqa")
    assert not report.success and report.failures[0].check == "read"

    calls = []
    rows = valid_rows("cbqa")

    def fake_load_dataset(name: str, revision: str | None = None) -> datasets.DatasetDict:
        calls.append((name, revision))
        return datasets.DatasetDict({s: datasets.Dataset.from_list(r) for s, r in rows.items()})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = read_task_dataset("hf:someone/qa@abc123", "cbqa")
    assert calls == [("someone/qa", "abc123")]
    assert loaded.provenance["test"].file == "hf:someone/qa@abc123"
    assert validate_task_dataset(loaded, "cbqa").success


def test_a_2k_row_dataset_validates_in_full(tmp_path: Path) -> None:
    n = {"train": 1400, "validation": 300, "test": 300}
    rows: Rows = {}
    k = 0
    for split, m in n.items():
        rows[split] = []
        for _ in range(m):
            k += 1
            rows[split].append(qa_row(k, f"Country {k}", "cbqa"))
    d = write_dataset(tmp_path / "d", rows)
    report = validate_source(d, "cbqa")
    assert report.success, report.describe()
    assert report.rows == n


# --- what a dataset folder may hold -----------------------------------------------------------


def test_notes_beside_the_data_are_ignored(tmp_path: Path) -> None:
    d = write_dataset(tmp_path / "d", valid_rows("cls"))
    for name in ("README.md", "readme", "LICENSE-data", "notes.txt", "CHANGES.rst", ".DS_Store"):
        (d / name).write_text("not data\n")
    (d / ".git").mkdir()
    report = validate_source(d, "cls")
    assert report.success, report.describe()
    assert report.rows == {"train": 4, "validation": 2, "test": 3}


def test_a_missing_split_names_what_was_ignored(tmp_path: Path) -> None:
    d = tmp_path / "d"
    write_split(d, "test", valid_rows("cls")["test"], "jsonl")
    (d / "README.md").write_text("# data\n")
    with pytest.raises(DatasetInputError) as info:
        load_task_dataset(d, "cls")
    assert str(info.value).startswith(f"{d}: split 'train': no file for this required split")
    assert "(ignored: README.md; hidden entries (names starting with '.') and notes" in str(
        info.value
    )


def test_csv_answer_cells_that_are_text(tmp_path: Path) -> None:
    """Text that only looks like JSON is one answer; `[]` and an empty cell are empty lists,
    which validation then refuses as empty answers."""
    source = write_dataset(tmp_path / "data", valid_rows("cbqa"), "csv")
    path = source / "test.csv"
    text = path.read_text(encoding="utf-8")
    for cell, answers in [
        ('"""Quoted"" text"', ['"Quoted" text']),
        ('"{not json"', ["{not json"]),
        ("1984", ["1984"]),
        ("[]", []),
        ("", []),
    ]:
        path.write_text(text.replace(NEPAL_ANSWERS, cell), encoding="utf-8")
        assert load_task_dataset(source, "cbqa")["test"][1]["answers"] == answers, cell


# --- every problem is countable ---------------------------------------------------------------


def test_read_problems_past_the_listed_ones_are_counted(tmp_path: Path) -> None:
    rows = copy.deepcopy(valid_rows("cls"))
    rows["train"] = [{"id": f"t{i}", "text": 7, "label": None} for i in range(15)]
    d = write_dataset(tmp_path / "d", rows)
    with pytest.raises(DatasetInputError) as info:
        load_task_dataset(d, "cls")
    e = info.value
    assert 1 + len(e.others) == MAX_PROBLEMS
    assert e.omitted == 30 - MAX_PROBLEMS
    assert str(e).splitlines()[-1] == f"... and {30 - MAX_PROBLEMS} more problem(s) not listed"
    copied = pickle.loads(pickle.dumps(e))
    assert (str(copied), copied.location, copied.omitted) == (str(e), e.location, e.omitted)
    report = validate_source(d, "cls")
    assert len(report.failures) == MAX_PROBLEMS + 1
    last = report.failures[-1]
    assert (last.check, last.count, astuple(last.location)) == (
        "read",
        30 - MAX_PROBLEMS,
        (str(d / "train.jsonl"), "train", None, None, None),
    )


def test_a_failure_counts_every_row_and_shows_the_first(tmp_path: Path) -> None:
    rows = copy.deepcopy(valid_rows("cls"))
    rows["train"] = [
        {"id": f"t{i}", "text": f"Text {i}.", "label": "weather"} for i in range(ROWS_SHOWN + 3)
    ]
    report = validate_source(write_dataset(tmp_path / "d", rows), "cls")
    (failure,) = report.failures
    assert failure.count == ROWS_SHOWN + 3
    shown = ", ".join(f"row {r} (line {r})" for r in range(1, ROWS_SHOWN + 1))
    assert failure.rows_text() == f"{shown} and 3 more"
    assert f"; {ROWS_SHOWN + 3} rows: {shown} and 3 more" in str(failure)
    (line,) = report.to_lines()[1:]
    assert line == f"{failure} [label_set]"


# --- the validate command ---------------------------------------------------------------------


def _validate(*args: str) -> Any:
    from typer.testing import CliRunner

    from pipelines.run import app

    return CliRunner().invoke(app, list(args))


def test_validate_prints_plain_lines_when_piped(tmp_path: Path) -> None:
    rows = copy.deepcopy(valid_rows("cls"))
    rows["test"][0]["label"] = "weather"
    d = write_dataset(tmp_path / ("a-long-folder-name-" * 5), rows)
    result = _validate("--stack", "no-such-stack", "validate", "--task", "cls", "--dataset", str(d))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert (
        f"{d}/test.jsonl: split 'test', row 1 (line 1), column 'label': label not in" in (lines[1])
    )
    assert lines[1].endswith("[label_set]")
    assert lines[-1] == f"{d}: cls dataset failed validation"
    assert "\x1b[" not in result.output and "│" not in result.output
    assert result.stderr.startswith("warning: validation report not logged: stack")


def test_validate_verdict_stands_when_the_report_cannot_be_logged(tmp_path: Path) -> None:
    d = write_dataset(tmp_path / "d", valid_rows("cls"))
    result = _validate("--stack", "no-such-stack", "validate", "--task", "cls", "--dataset", str(d))
    assert result.exit_code == 0, result.output
    assert result.exception is None
    (warning,) = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warning.startswith(
        "warning: validation report not logged: stack 'no-such-stack' does not load: no stack file"
    )
    assert f"{d}: cls dataset is valid" in result.output


def test_validate_help_documents_the_exit_codes() -> None:
    result = _validate("validate", "--help")
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "0 the dataset is valid" in text
    assert "1 it failed validation or could not be read" in text
    assert "2 a usage error" in text
    assert "one warning line on stderr, and the exit code is still the data's" in text
