"""From the corpus to the token blocks one variant trains on.

Documents are tokenised as `<s> [<domain:...>] text </s>`, filtered by length, drawn by domain
in proportion to the variant's mixture and packed back to back into blocks of `seq_len` tokens
(no padding; a document may continue in the next block and attention crosses document
boundaries, as in GPT-style pre-training). The whole run's blocks are laid out up front from
the seed, so a resumed run reads exactly the blocks it would have read: the data position is
just the step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from sftcast.data.schema import CORPUS_SPLITS
from sftcast.zoo.tokenizer import domain_tag_token

DocLike = str | Mapping[str, Any]


def train_texts(corpus: Mapping[str, Any]) -> dict[str, list[str]]:
    """Domain → texts of the train split.

    Takes a whole corpus (`split → domain → docs`, as `sftcast.data.corpus` loads it) or one
    split (`domain → docs`); a document is a string or a record with a "text" field.
    """
    if corpus and set(corpus) <= set(CORPUS_SPLITS):
        corpus = corpus["train"]
    return {
        domain: [doc if isinstance(doc, str) else str(doc["text"]) for doc in docs]
        for domain, docs in sorted(corpus.items())
    }


def encode_documents(
    texts: Mapping[str, Sequence[str]], tokenizer: PreTrainedTokenizerBase, domain_tag: bool
) -> dict[str, list[np.ndarray]]:
    """Token ids of every document, with bos (and the domain tag) in front and eos behind."""
    encoded: dict[str, list[np.ndarray]] = {}
    for domain, docs in texts.items():
        head = [tokenizer.bos_token_id]
        if domain_tag:
            head.append(tokenizer.convert_tokens_to_ids(domain_tag_token(domain)))
        ids = (
            tokenizer(list(docs), add_special_tokens=False, verbose=False)["input_ids"]
            if docs
            else []
        )
        encoded[domain] = [np.array([*head, *d, tokenizer.eos_token_id], np.int32) for d in ids]
    return encoded


def length_filter(
    docs: Mapping[str, list[np.ndarray]], band: tuple[float, float]
) -> dict[str, list[np.ndarray]]:
    """Keep the documents whose token length lies in the quantile band of their own domain.

    Per domain, because lengths differ by an order of magnitude between news and trivia: a
    pooled band would drop whole domains and silently change the mixture.
    """
    if band == (0.0, 1.0):
        return dict(docs)
    kept: dict[str, list[np.ndarray]] = {}
    for domain, items in docs.items():
        if not items:
            kept[domain] = []
            continue
        lengths = np.array([len(d) for d in items])
        lo, hi = np.quantile(lengths, band)
        kept[domain] = [d for d, n in zip(items, lengths, strict=True) if lo <= n <= hi]
    return kept


def _shuffled_cycle(docs: list[np.ndarray], rng: np.random.Generator) -> Iterator[np.ndarray]:
    while True:
        for i in rng.permutation(len(docs)):
            yield docs[i]


@dataclass(frozen=True)
class Blocks:
    tokens: np.ndarray  # [n_blocks, seq_len] int32
    domain_tokens: dict[str, int]  # tokens drawn per domain


def pack_blocks(
    docs: Mapping[str, list[np.ndarray]],
    mixture: Mapping[str, float],
    n_blocks: int,
    seq_len: int,
    seed: int,
) -> Blocks:
    """`n_blocks` blocks of `seq_len` tokens, each domain's share of tokens following its
    mixture weight (documents recycle, reshuffled, when a domain runs out)."""
    missing = [d for d, w in mixture.items() if w > 0 and not docs.get(d)]
    if missing:
        raise ValueError(f"the mixture weights domain(s) {missing} but the corpus has no documents")
    domains = [d for d, w in mixture.items() if w > 0]
    share = {d: mixture[d] / sum(mixture[x] for x in domains) for d in domains}
    rng = np.random.default_rng([seed, 0xDA7A])
    cycles = {d: _shuffled_cycle(docs[d], rng) for d in domains}
    need = n_blocks * seq_len
    pieces: list[np.ndarray] = []
    drawn = dict.fromkeys(domains, 0)
    have = 0
    while have < need:
        # The domain furthest behind its token share goes next: shares stay within one
        # document of the weights, where drawing domains at random drifts with long documents.
        domain = max(domains, key=lambda d: share[d] * have - drawn[d])
        doc = next(cycles[domain])[: need - have]
        pieces.append(doc)
        drawn[domain] += len(doc)
        have += len(doc)
    tokens = np.concatenate(pieces).reshape(n_blocks, seq_len)
    return Blocks(tokens=tokens, domain_tokens=drawn)
