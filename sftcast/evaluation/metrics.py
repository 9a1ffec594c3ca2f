"""Scores of one prediction against its references, and the forgetting measure.

Exact match and token F1 follow the SQuAD evaluation script (lower case, no punctuation, no
articles, single spaces), taking the best over the answer's aliases; ROUGE-L comes from the
`rouge-score` package.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction).split()
    return max((_f1(pred, normalize_answer(a).split()) for a in answers), default=0.0)


@cache
def _rouge() -> RougeScorer:
    # imported here, not above: it loads nltk (about 2 s), which a cached rerun never needs
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"])


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """Best ROUGE-L F-measure over the references."""
    scorer = _rouge()
    return max((scorer.score(r, prediction)["rougeL"].fmeasure for r in references), default=0.0)


def mean_ratio_of_change(finetuned: Mapping[str, float], base: Mapping[str, float]) -> float:
    """MRC (Amuro & Char): mean over tasks of (fine-tuned - base) / base.

    Negative means the fine-tuned model forgot. Tasks whose base score is 0 have no ratio and
    are left out; NaN when no task is left.
    """
    ratios = [(finetuned[t] - base[t]) / base[t] for t in finetuned if base.get(t)]
    return sum(ratios) / len(ratios) if ratios else math.nan
