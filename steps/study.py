"""Study steps: one candidate measured end to end (proxies, probes, SFT per task), then the
results table across all of them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import mlflow
import pandas as pd
from zenml import step

from sftcast.data import load_corpus
from sftcast.evaluation import EvaluationConfig
from sftcast.proxies import ProxyConfig
from sftcast.sft import SFTConfig
from sftcast.sft.service import task_rows
from sftcast.study.candidate import StudyRow, study_candidate
from sftcast.study.table import results_table
from sftcast.tracking import safe_tags
from sftcast.zoo import ZooConfig
from steps.lineage import MLFLOW_STEP, track


@step(extra={"gpu": True}, **MLFLOW_STEP)
def measure_candidate(
    candidate: Path,
    uri: str,
    corpus: Path,
    datasets: list[Path],
    tasks: list[str],
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    proxies: ProxyConfig,
) -> Annotated[StudyRow, "study_row"]:
    """Every proxy of the candidate, probes included, and its score after SFT on each task."""
    track(uri, sft, evaluation, proxies, params={"candidate": uri})
    rows = task_rows(dict(zip(tasks, datasets, strict=True)))
    row = study_candidate(candidate, uri, load_corpus(corpus), rows, sft, evaluation, proxies)
    mlflow.log_metrics({f"proxy.{k}": v for k, v in row.proxies.items() if math.isfinite(v)})
    mlflow.log_metrics({f"score.{t}": v for t, v in row.scores.items()})
    mlflow.log_metrics({f"seconds.{k}": v for k, v in row.seconds.items()})
    mlflow.set_tags(safe_tags({"sftcast.candidate": uri}))
    return row


@step(**MLFLOW_STEP)
def study_table(rows: list[StudyRow], zoo: ZooConfig) -> Annotated[pd.DataFrame, "study_results"]:
    """One row per candidate: configuration, proxies, post-SFT scores, costs."""
    track([r.candidate for r in rows])
    table = results_table(rows, zoo)
    mlflow.log_text(table.to_csv(index=False), "study/results.csv")
    mlflow.log_metric("candidates", len(table))
    return table
