"""Scoring candidates the way the source papers do: TokenProb, EM/F1, ROUGE-L, MRC, formats."""

from sftcast.evaluation.config import EvaluationConfig
from sftcast.evaluation.evaluate import (
    PRIMARY_METRIC,
    FinetunedScores,
    evaluate_base,
    evaluate_finetuned,
    evaluate_task,
    primary,
)
from sftcast.evaluation.metrics import exact_match, mean_ratio_of_change, rouge_l, token_f1

__all__ = [
    "PRIMARY_METRIC",
    "EvaluationConfig",
    "FinetunedScores",
    "evaluate_base",
    "evaluate_finetuned",
    "evaluate_task",
    "exact_match",
    "mean_ratio_of_change",
    "primary",
    "rouge_l",
    "token_f1",
]
