"""BM25 retrieval over the knowledge passages (the `rag` task's retriever)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

import numpy as np
from rank_bm25 import BM25Okapi

from sftcast.data.facts import fold

# Question words and function words: they match every passage and only add noise.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "there",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "with",
        "name",
        "one",
    ]
)


def tokenize(text: str, stopwords: frozenset[str] = STOPWORDS) -> list[str]:
    """Lowercase ASCII words, so `Bogotá` in a passage matches `Bogota` in a question."""
    return [w for w in re.findall(r"[a-z0-9]+", fold(text).lower()) if w not in stopwords]


class BM25Retriever:
    def __init__(self, passages: Mapping[str, str], use_stopwords: bool = True):
        if not passages:
            raise ValueError("BM25Retriever needs at least one passage")
        self.ids = list(passages)
        self.texts = dict(passages)
        self._stopwords = STOPWORDS if use_stopwords else frozenset()
        self._bm25 = BM25Okapi([tokenize(t, self._stopwords) for t in passages.values()])
        # BM25 scores add up over query terms, and rank_bm25 scores a term with a Python loop
        # over all passages: caching one score vector per term makes a batch of questions
        # (which share words such as "capital") cost one loop per distinct word.
        self._term_scores = lru_cache(maxsize=None)(self._score_term)

    def _score_term(self, term: str) -> np.ndarray:
        return self._bm25.get_scores([term])

    def scores(self, query: str) -> np.ndarray:
        terms = tokenize(query, self._stopwords)
        total = np.zeros(len(self.ids))
        for term in terms:
            total += self._term_scores(term)
        return total

    def retrieve(self, query: str, k: int = 1) -> list[tuple[str, float]]:
        scores = self.scores(query)
        # Stable sort: ties go to the earlier passage, so results do not vary between runs.
        top = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[i], float(scores[i])) for i in top]

    def retrieve_batch(self, queries: Iterable[str], k: int = 1) -> list[list[tuple[str, float]]]:
        return [self.retrieve(q, k) for q in queries]
