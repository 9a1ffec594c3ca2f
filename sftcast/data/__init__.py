"""Task datasets and the pre-training corpus, built from real text and facts in installed packages.

`build_all(DataConfig())` gives the corpus (split -> domain -> documents), the three task
`DatasetDict`s and a stats dict; the pieces are importable one by one.
"""

from sftcast.data.config import CorpusConfig, DataConfig, FactsConfig, TaskConfig
from sftcast.data.corpus import (
    Corpus,
    Document,
    build_corpus,
    corpus_stats,
    load_bbc_articles,
    load_corpus,
    load_trivia,
    save_corpus,
)
from sftcast.data.facts import Facts, QAFact, build_facts, fact_counts
from sftcast.data.retrieval import BM25Retriever, tokenize
from sftcast.data.tasks import (
    build_all,
    build_cbqa,
    build_cls,
    build_rag,
    build_task,
    retrieval_recall_at_1,
    split_facts,
    truncate_words,
)

__all__ = [
    "BM25Retriever",
    "Corpus",
    "CorpusConfig",
    "DataConfig",
    "Document",
    "Facts",
    "FactsConfig",
    "QAFact",
    "TaskConfig",
    "build_all",
    "build_cbqa",
    "build_cls",
    "build_corpus",
    "build_facts",
    "build_rag",
    "build_task",
    "corpus_stats",
    "fact_counts",
    "load_bbc_articles",
    "load_corpus",
    "load_trivia",
    "retrieval_recall_at_1",
    "save_corpus",
    "split_facts",
    "tokenize",
    "truncate_words",
]
