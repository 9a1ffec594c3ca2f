"""What is checked: each split as two pandas frames, and the GX expectations on them.

The table frame has one row per dataset row: the schema's columns and derived helper columns
(below). The cells frame has one row per text cell and per answer (columns `CELL_COLUMNS`), so
the string checks run once per split rather than once per column: GX's cost is per expectation
(~10 ms each), not per row. `sftcast.data.io` has made every cell a string or a list of
strings, so nothing here checks a type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import datasets

from sftcast.data.config import ValidationBounds
from sftcast.data.schema import TaskSchema

if TYPE_CHECKING:
    import pandas as pd

# GX's pandas regex metrics call `astype(str).str.contains`, which pandas 3 runs on pyarrow
# strings with RE2, where \s is ASCII-only: spell out Unicode whitespace (and the invisible
# U+200B, U+FEFF) so that "non-blank" means what str.strip() means.
NON_BLANK = "[^\\s\x1c-\x1f\x85\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]"
# U+FFFD (what a lossy decode leaves), C0 controls other than tab/LF/CR, and UTF-8 read as
# cp1252/latin-1 ("Ã©" for "é", "â€™" for "’"). Literal characters, not \u escapes: RE2 has none.
GARBAGE = "[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f]|[\u00c2\u00c3][\u0080-\u00bf]|\u00e2\u20ac"

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

# Prefix of the table frame's derived columns, which no schema column starts with.
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


def norm(value: str) -> str:
    # Leakage compares case- and whitespace-insensitively: "Paris" and " paris" are one entity.
    return " ".join(value.casefold().split())


@dataclass
class Frame:
    """One GX batch of one split; `cells` marks the long frame of text cells."""

    split: str
    df: pd.DataFrame
    cells: bool = False
    expectations: list[Any] = field(default_factory=list)


def build_frames(
    schema: TaskSchema,
    split: str,
    ds: datasets.Dataset,
    earlier_ids: dict[str, str],
    train: set[str],
) -> list[Frame]:
    """The split's two frames: `earlier_ids` maps an id to the first split that used it,
    `train` holds the train split's normalised leakage values."""
    import pandas as pd

    data = ds.to_dict()
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
        leaked = [v if norm(v) in train else None for v in data[leak]]
        table[_leak(leak)] = pd.Series(leaked, dtype=object)
    cell_df = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in cells.items()})
    return [
        Frame(split, pd.DataFrame(table, index=range(len(ds)))),
        Frame(split, cell_df, True),
    ]


def add_expectations(frame: Frame, schema: TaskSchema, bounds: ValidationBounds) -> None:
    """The frame's expectations, each tagged with the check and column it reports."""
    import great_expectations as gx

    E, split = gx.expectations, frame.split
    columns = list(frame.df.columns)

    def add(exp_cls: type, check: str, reported: str | None, **kwargs: Any) -> None:
        meta = {"check": check, "column": reported}
        frame.expectations.append(exp_cls(**kwargs, meta=meta))

    if frame.cells:
        add(E.ExpectColumnValuesToMatchRegex, "non_blank", None, column="value", regex=NON_BLANK)
        add(
            E.ExpectColumnValueLengthsToBeBetween,
            "max_chars",
            None,
            column="value",
            max_value=bounds.max_chars,
        )
        add(E.ExpectColumnValuesToNotMatchRegex, "encoding", None, column="value", regex=GARBAGE)
        return

    add(
        E.ExpectTableRowCountToBeBetween,
        "row_count",
        None,
        min_value=bounds.min_rows[split],
        max_value=bounds.max_rows,
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
