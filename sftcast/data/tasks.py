"""The three fine-tuning tasks as `datasets.DatasetDict`s with the columns of `SCHEMAS[task]`.

- `cbqa`: closed-book geography questions (`sftcast.data.facts`).
- `rag`: the same questions, each with the BM25 top-1 passage and the gold passage id.
- `cls`: BBC News topic classification (headline + body, cut to `max_chars`).

QA splits are by entity group: every question about an entity (and about its capital city,
which would give the answer away) lands in one split. `cls` splits deduplicated articles. With
the same seed and sizes, `cbqa` and `rag` ask about the same entities in each split.
"""

from __future__ import annotations

import random
import re
import time
from collections import defaultdict
from typing import Any

import datasets

from sftcast.data.config import DataConfig, TaskConfig
from sftcast.data.corpus import Corpus, build_corpus, corpus_stats, load_bbc_articles
from sftcast.data.facts import Facts, QAFact, build_facts, fact_counts
from sftcast.data.io import task_features
from sftcast.data.retrieval import BM25Retriever
from sftcast.data.schema import SPLITS, TASKS, schema_for


def _to_dataset_dict(task: str, rows: dict[str, list[dict[str, Any]]]) -> datasets.DatasetDict:
    names = schema_for(task).column_names
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(
                [{c: r[c] for c in names} for r in rows[split]],
                features=task_features(schema_for(task)),
            )
            for split in SPLITS
        }
    )


def _not_enough(task: str, cfg: TaskConfig, available: int, unit: str) -> ValueError:
    wanted = sum(cfg.sizes.values())
    return ValueError(
        f"{task} asks for {wanted} {unit} ({cfg.sizes}) but only {available} are available; "
        "lower the sizes"
    )


def split_facts(facts: list[QAFact], cfg: TaskConfig, task: str) -> dict[str, list[QAFact]]:
    """Assign whole entity groups to test, then validation, then train, in a seeded order."""
    by_group: dict[str, list[QAFact]] = defaultdict(list)
    for fact in facts:
        by_group[fact["group"]].append(fact)
    groups = sorted(by_group)
    random.Random(cfg.seed).shuffle(groups)
    out: dict[str, list[QAFact]] = {split: [] for split in SPLITS}
    groups_iter = iter(groups)
    for split in ("test", "validation", "train"):
        while len(out[split]) < cfg.sizes[split]:
            group = next(groups_iter, None)
            if group is None:
                raise _not_enough(task, cfg, len(facts), "questions")
            out[split].extend(by_group[group])
        # Trimming the last group's surplus keeps the split by entity intact.
        out[split] = out[split][: cfg.sizes[split]]
    return out


def _qa_row(fact: QAFact) -> dict[str, Any]:
    return {
        "id": fact["id"],
        "question": fact["question"],
        "answers": fact["answers"],
        "entity": fact["entity"],
        "relation": fact["relation"],
    }


def build_cbqa(cfg: TaskConfig, facts: Facts) -> datasets.DatasetDict:
    splits = split_facts(facts.qa, cfg, "cbqa")
    return _to_dataset_dict("cbqa", {s: [_qa_row(f) for f in fs] for s, fs in splits.items()})


def build_rag(cfg: TaskConfig, facts: Facts, retriever: BM25Retriever) -> datasets.DatasetDict:
    rows: dict[str, list[dict[str, Any]]] = {}
    for split, chosen in split_facts(facts.qa, cfg, "rag").items():
        hits = retriever.retrieve_batch([f["question"] for f in chosen], k=1)
        rows[split] = [
            {
                **_qa_row(fact),
                "passage": retriever.texts[hit[0][0]],
                "passage_id": hit[0][0],
                "gold_passage_id": fact["gold_passage_id"],
            }
            for fact, hit in zip(chosen, hits, strict=True)
        ]
    return _to_dataset_dict("rag", rows)


def truncate_words(text: str, max_chars: int) -> str:
    """Cut to at most `max_chars` on a word boundary.

    Hand-written because textwrap.shorten also collapses the line break after the headline.
    """
    if len(text) <= max_chars:
        return text
    head = re.match(r"(.*)\s", text[: max_chars + 1], flags=re.DOTALL)
    return (head.group(1) if head else text[:max_chars]).rstrip()


def build_cls(cfg: TaskConfig) -> datasets.DatasetDict:
    articles = load_bbc_articles()
    order = list(range(len(articles)))
    random.Random(cfg.seed).shuffle(order)
    if sum(cfg.sizes.values()) > len(order):
        raise _not_enough("cls", cfg, len(order), "articles")
    rows: dict[str, list[dict[str, Any]]] = {}
    start = 0
    for split in ("test", "validation", "train"):
        picked = articles.iloc[order[start : start + cfg.sizes[split]]]
        start += cfg.sizes[split]
        rows[split] = [
            {"id": a.id, "text": truncate_words(a.text, cfg.max_chars), "label": a.topic}
            for a in picked.itertuples()
        ]
    return _to_dataset_dict("cls", rows)


def build_task(
    task: str,
    cfg: TaskConfig,
    facts: Facts | None = None,
    retriever: BM25Retriever | None = None,
) -> datasets.DatasetDict:
    """Build a task from the built-in sources, or read the user's data (`cfg.source`)."""
    schema_for(task)  # fails clearly on an unknown task name
    if not cfg.is_builtin:
        from sftcast.data.io import load_task_dataset  # only needed for user data

        return load_task_dataset(cfg.source, task)
    if task == "cls":
        return build_cls(cfg)
    facts = facts or build_facts()
    if task == "cbqa":
        return build_cbqa(cfg, facts)
    return build_rag(cfg, facts, retriever or BM25Retriever(facts.passages))


def retrieval_recall_at_1(dataset: datasets.DatasetDict) -> dict[str, float]:
    """Share of rows per split whose retrieved passage is the gold one."""
    return {
        split: sum(p == g for p, g in zip(ds["passage_id"], ds["gold_passage_id"], strict=True))
        / max(len(ds), 1)
        for split, ds in dataset.items()
    }


def _evaluation_passages(task_data: dict[str, datasets.DatasetDict], facts: Facts) -> set[str]:
    """Knowledge passages that QA validation/test questions need (kept in the corpus train)."""
    gold = {f["id"]: f["gold_passage_id"] for f in facts.qa}
    keep: set[str] = set()
    for task in ("cbqa", "rag"):
        for split in ("validation", "test"):
            ds = task_data[task].get(split)
            if ds is None:
                continue
            if "gold_passage_id" in ds.column_names:
                keep.update(ds["gold_passage_id"])
            else:
                keep.update(gold[i] for i in ds["id"] if i in gold)
    return keep


def build_all(
    cfg: DataConfig | None = None,
) -> tuple[Corpus, dict[str, datasets.DatasetDict], dict[str, Any]]:
    """Facts, the three tasks, then the corpus (whose heldout spares the QA test facts)."""
    cfg = cfg or DataConfig()
    start = time.perf_counter()
    facts = build_facts(cfg.facts)
    retriever = BM25Retriever(facts.passages)
    task_data = {t: build_task(t, cfg.tasks[t], facts, retriever) for t in TASKS}
    corpus = build_corpus(cfg.corpus, facts, keep_in_train=_evaluation_passages(task_data, facts))
    stats: dict[str, Any] = {
        "facts": fact_counts(facts),
        "passages": len(facts.passages),
        "tasks": {t: {s: len(ds) for s, ds in dd.items()} for t, dd in task_data.items()},
        "corpus": corpus_stats(corpus).to_dict(orient="records"),
    }
    if "passage_id" in task_data["rag"]["test"].column_names:
        stats["rag_recall_at_1"] = retrieval_recall_at_1(task_data["rag"])
    stats["seconds"] = round(time.perf_counter() - start, 2)
    return corpus, task_data, stats
