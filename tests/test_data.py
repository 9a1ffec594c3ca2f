"""The data layer on the real packaged data, at small task sizes."""

from __future__ import annotations

import sys
import types

import pytest
from pydantic import ValidationError

from sftcast.data import (
    BM25Retriever,
    CorpusConfig,
    DataConfig,
    TaskConfig,
    build_all,
    build_cbqa,
    build_cls,
    build_corpus,
    build_facts,
    build_rag,
    build_task,
    corpus_stats,
    load_bbc_articles,
    load_corpus,
    save_corpus,
    truncate_words,
)
from sftcast.data.facts import the
from sftcast.data.schema import CORPUS_DOMAINS, CORPUS_SPLITS, NEWS_TOPICS, SCHEMAS, SPLITS, TASKS

SMALL = TaskConfig(train_size=120, validation_size=30, test_size=40, max_chars=400)


@pytest.fixture(scope="module")
def facts():
    return build_facts()


@pytest.fixture(scope="module")
def retriever(facts):
    return BM25Retriever(facts.passages)


@pytest.fixture(scope="module")
def built():
    return build_all(DataConfig(tasks={t: SMALL for t in TASKS}))


def _fact(facts, relation, entity):
    return next(f for f in facts.qa if f["relation"] == relation and f["entity"] == entity)


def test_facts_are_real_with_aliases(facts):
    by_id = facts.by_id()
    assert by_id["capital:FR"]["answers"][0] == "Paris"
    assert by_id["continent:BR"]["answers"] == ["South America"]
    assert by_id["currency:JP"]["answers"] == ["Yen", "JPY"]
    assert by_id["only_neighbour:PT"]["answers"][0] == "Spain"
    assert _fact(facts, "country_of_city", "Tokyo")["answers"][0] == "Japan"
    usa = by_id["only_neighbour:CA"]["answers"]
    assert usa[0] == "United States"
    assert {"USA", "United States of America"} <= set(usa)
    assert "US" not in usa  # bare ISO alpha-2 codes are no answers
    assert {"Bogota", "Bogotá"} <= set(by_id["capital:CO"]["answers"])
    assert {"Washington", "Washington D.C."} <= set(by_id["capital:US"]["answers"])
    assert "capital:BI" not in by_id  # sources disagree (Gitega / Bujumbura): skipped
    assert "Thai" not in _fact(facts, "country_of_city", "Bangkok")["answers"]  # a demonym
    assert by_id["capital:RS"]["answers"] == ["Belgrade"]
    assert "Serbia and Montenegro" not in {f["entity"] for f in facts.qa}  # dissolved in 2006


def test_every_fact_is_stated_in_its_gold_passage(facts):
    assert len({f["id"] for f in facts.qa}) == len(facts.qa)
    for f in facts.qa:
        assert f["answers"] and all(isinstance(a, str) and a for a in f["answers"])
        assert len(set(f["answers"])) == len(f["answers"])
        assert f["answers"][0] in facts.passages[f["gold_passage_id"]], f
        assert the(f["entity"]).lower() in f["question"].lower()
    for relation in ("capital", "currency", "country_of_city"):
        wordings = {
            f["question"].replace(f["entity"], "{e}") for f in facts.qa if f["relation"] == relation
        }
        assert len(wordings) > 1, relation


def test_each_entity_belongs_to_one_group(facts):
    groups: dict[str, set[str]] = {}
    for f in facts.qa:
        groups.setdefault(f["entity"], set()).add(f["group"])
    assert all(len(g) == 1 for g in groups.values())
    # Paris (the city) travels with France (the country): one answers the other.
    assert _fact(facts, "country_of_city", "Paris")["group"] == "country:FR"


def test_tasks_have_schema_columns_and_sizes(built):
    _, data, stats = built
    for task in TASKS:
        assert list(data[task]) == list(SPLITS)
        for split, ds in data[task].items():
            assert ds.column_names == SCHEMAS[task].column_names
            assert len(ds) == SMALL.sizes[split] == stats["tasks"][task][split]
    for ds in data["cbqa"].values():
        assert all(a and all(isinstance(x, str) for x in a) for a in ds["answers"])
    assert set(data["cls"]["train"]["label"]) == set(NEWS_TOPICS)


@pytest.mark.parametrize("task", ["cbqa", "rag"])
def test_qa_splits_share_no_entity(built, task):
    data = built[1][task]
    entities = {split: set(data[split]["entity"]) for split in SPLITS}
    assert not entities["train"] & entities["test"]
    assert not entities["validation"] & entities["test"]
    assert not entities["train"] & entities["validation"]


def test_cls_splits_share_no_text_and_cut_on_words(built):
    data = built[1]["cls"]
    texts = {split: set(data[split]["text"]) for split in SPLITS}
    assert not texts["train"] & texts["test"] and not texts["validation"] & texts["test"]
    assert not texts["train"] & texts["validation"]
    full = dict(zip(*load_bbc_articles()[["id", "text"]].T.values, strict=True))
    for row in data["test"]:
        assert len(row["text"]) <= SMALL.max_chars
        article = full[row["id"]]
        assert article.startswith(row["text"])
        rest = article[len(row["text"]) :]
        assert not rest or rest[0].isspace()
        assert row["label"] == row["id"].split(":")[1]


def test_bbc_duplicates_are_removed():
    articles = load_bbc_articles()
    assert articles["text"].is_unique and articles["headline"].is_unique
    assert 2000 < len(articles) < 2225  # the raw dataset has 2225 files, some repeated


def test_truncate_words():
    assert truncate_words("short text", 50) == "short text"
    assert truncate_words("alpha beta gamma", 12) == "alpha beta"
    assert truncate_words("alpha beta gamma", 10) == "alpha beta"
    assert truncate_words("unbreakable", 4) == "unbr"


def _rows(data):
    return {split: ds.to_list() for split, ds in data.items()}


def test_same_seed_same_data_other_seed_other_split(facts, retriever):
    rebuilt = build_facts()  # a rebuild from scratch, not the same object
    assert rebuilt == facts
    assert _rows(build_cbqa(SMALL, rebuilt)) == _rows(build_cbqa(SMALL, facts))
    rag = build_rag(SMALL, facts, retriever)
    assert _rows(build_rag(SMALL, rebuilt, BM25Retriever(rebuilt.passages))) == _rows(rag)
    assert _rows(build_cls(SMALL)) == _rows(build_cls(SMALL))
    other = SMALL.model_copy(update={"seed": 1})
    test_entities = set(build_cbqa(SMALL, facts)["test"]["entity"])
    assert set(build_cbqa(other, facts)["test"]["entity"]) != test_entities
    assert build_cls(other)["test"]["id"] != build_cls(SMALL)["test"]["id"]
    # cbqa and rag with one seed ask about the same entities in each split
    assert set(rag["test"]["entity"]) == test_entities


def test_bm25_finds_the_gold_passage(facts, retriever):
    top = retriever.retrieve("What is the capital of France?", k=3)
    assert top[0][0] == "country:FR"
    assert top[0][1] >= top[1][1] >= top[2][1]
    tokyo = _fact(facts, "country_of_city", "Tokyo")
    assert retriever.retrieve(tokyo["question"])[0][0] == tokyo["gold_passage_id"]
    # accents folded: the question's "Bogota" matches the passage's "Bogotá"
    bogota = _fact(facts, "country_of_city", "Bogotá")
    assert "Bogotá" in facts.passages[bogota["gold_passage_id"]]
    assert retriever.retrieve("In which country is Bogota?")[0][0] == bogota["gold_passage_id"]
    queries = ["What is the capital of France?", tokyo["question"]]
    assert retriever.retrieve_batch(queries, k=2) == [retriever.retrieve(q, k=2) for q in queries]


def test_rag_rows_carry_the_retrieved_passage(built, facts):
    _, data, stats = built
    for row in data["rag"]["test"]:
        assert row["passage"] == facts.passages[row["passage_id"]]
        assert row["gold_passage_id"] == facts.by_id()[row["id"]]["gold_passage_id"]
    recall = stats["rag_recall_at_1"]["test"]
    hits = [r["passage_id"] == r["gold_passage_id"] for r in data["rag"]["test"]]
    assert recall == sum(hits) / len(hits) >= 0.8


def test_corpus_domains_and_disjoint_heldout(built):
    corpus = built[0]
    assert list(corpus) == list(CORPUS_SPLITS)
    for split in CORPUS_SPLITS:
        assert list(corpus[split]) == list(CORPUS_DOMAINS)
        for domain, docs in corpus[split].items():
            assert docs, (split, domain)
            assert all(d["text"].strip() and d["domain"] == domain for d in docs)
    for domain in CORPUS_DOMAINS:
        train = corpus["train"][domain]
        heldout = corpus["heldout"][domain]
        assert not {d["id"] for d in train} & {d["id"] for d in heldout}
        assert not {d["text"] for d in train} & {d["text"] for d in heldout}
        share = len(heldout) / (len(train) + len(heldout))
        assert 0.02 < share < 0.1  # default heldout_fraction is 0.05
    trivia = corpus["train"]["trivia"][0]["text"]
    assert trivia.startswith("Question: ") and "\nAnswer: " in trivia
    assert all("http" not in d["text"] for d in corpus["train"]["trivia"])


def test_qa_evaluation_facts_are_in_pretraining(built, facts):
    corpus, data, _ = built
    knowledge = {d["id"]: d["text"] for d in corpus["train"]["knowledge"]}
    assert len(knowledge) + len(corpus["heldout"]["knowledge"]) == len(facts.passages)
    gold = facts.by_id()
    for split in ("validation", "test"):
        for row in data["cbqa"][split]:
            assert row["answers"][0] in knowledge[gold[row["id"]]["gold_passage_id"]]


def test_corpus_save_load_and_stats(built, tmp_path):
    corpus = built[0]
    save_corpus(corpus, tmp_path)
    assert (tmp_path / "heldout" / "news-tech.jsonl").is_file()
    assert load_corpus(tmp_path) == corpus
    stats = corpus_stats(corpus)
    assert len(stats) == len(CORPUS_SPLITS) * len(CORPUS_DOMAINS)
    assert (stats["docs"] > 0).all() and (stats["words"] > stats["docs"]).all()
    (tmp_path / "train" / "trivia.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"trivia\.jsonl"):
        load_corpus(tmp_path)


def test_corpus_caps_and_seed(facts):
    capped = build_corpus(CorpusConfig(max_docs={"trivia": 40}, heldout_fraction=0.25), facts)
    assert len(capped["train"]["trivia"]) == 30 and len(capped["heldout"]["trivia"]) == 10
    again = build_corpus(CorpusConfig(max_docs={"trivia": 40}, heldout_fraction=0.25), facts)
    other = build_corpus(
        CorpusConfig(max_docs={"trivia": 40}, heldout_fraction=0.25, seed=1), facts
    )
    assert again == capped
    assert other["heldout"]["trivia"] != capped["heldout"]["trivia"]


def test_config_validation():
    assert list(DataConfig.model_validate({"tasks": {"cls": {"test_size": 5}}}).tasks) == list(
        TASKS
    )
    bad = [
        {"corpus": {"heldout_fraction": 1.0}},
        {"corpus": {"seeed": 1}},
        {"corpus": {"max_docs": {"knowledge": 10}}},
        {"corpus": {"max_docs": {"news-weather": 10}}},
        {"tasks": {"summarise": {}}},
        {"tasks": {"cbqa": {"train_size": 0}}},
        {"tasks": {"cbqa": {"source": "hf:"}}},
        {"facts": {"n_cities": -1}},
    ]
    for raw in bad:
        with pytest.raises(ValidationError):
            DataConfig.model_validate(raw)


def test_too_large_sizes_fail_clearly(facts):
    with pytest.raises(ValueError, match="lower the sizes"):
        build_cbqa(TaskConfig(train_size=100_000), facts)
    with pytest.raises(ValueError, match="lower the sizes"):
        build_cls(TaskConfig(train_size=100_000))


def test_user_source_is_read_by_io(monkeypatch):
    calls = []
    fake = types.ModuleType("sftcast.data.io")
    fake.load_task_dataset = lambda source, task: calls.append((source, task)) or "loaded"
    monkeypatch.setitem(sys.modules, "sftcast.data.io", fake)
    assert build_task("cls", TaskConfig(source="hf:someone/news@v1")) == "loaded"
    assert calls == [("hf:someone/news@v1", "cls")]
    with pytest.raises(ValueError, match="unknown task"):
        build_task("summarise", TaskConfig())
