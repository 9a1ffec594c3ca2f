"""The held-out slice every candidate is scored on: corpus `heldout` documents, packed into blocks.

`heldout_docs` documents per domain are drawn with a seeded sample, tokenised as pre-training
tokenises them (`<s> text </s>`, no domain tag, so a tagged variant gets no hint the others
lack), concatenated domain by domain and cut into blocks of `seq_len` tokens; the tail that
does not fill a block is dropped. The candidates of a zoo share one tokenizer, so they all see
the same blocks, and no candidate trained on them: the heldout split never enters pre-training.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from sftcast.zoo.data import encode_documents, train_texts


def sample_heldout_texts(
    corpus: Mapping[str, Any], docs_per_domain: int, seed: int
) -> dict[str, list[str]]:
    """Domain → up to `docs_per_domain` held-out texts, the same ones for the same seed."""
    if "heldout" not in corpus:
        raise ValueError("the corpus has no 'heldout' split (load it with sftcast.data.corpus)")
    texts = train_texts(corpus["heldout"])  # the split's own domain → texts, sorted by domain
    sampled: dict[str, list[str]] = {}
    for domain, docs in texts.items():
        # One generator per domain, as the corpus split does: a domain's sample never depends
        # on which other domains the corpus has.
        picked = random.Random(f"{seed}/{domain}").sample(
            range(len(docs)), min(docs_per_domain, len(docs))
        )
        sampled[domain] = [docs[i] for i in picked]
    return sampled


def heldout_blocks(
    corpus: Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    docs_per_domain: int,
    seq_len: int,
    seed: int,
) -> np.ndarray:
    """[n_blocks, seq_len] int64 token ids of the held-out slice."""
    texts = sample_heldout_texts(corpus, docs_per_domain, seed)
    docs = [
        d
        for domain_docs in encode_documents(texts, tokenizer, domain_tag=False).values()
        for d in domain_docs
    ]
    tokens = np.concatenate(docs) if docs else np.zeros(0, np.int64)
    n_blocks = len(tokens) // seq_len
    if n_blocks == 0:
        raise ValueError(
            f"the held-out slice has {len(tokens)} tokens, fewer than one block of {seq_len}"
        )
    return tokens[: n_blocks * seq_len].reshape(n_blocks, seq_len).astype(np.int64)
