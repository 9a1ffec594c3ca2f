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
from sftcast.data.rows import task_rows
from sftcast.evaluation import EvaluationConfig
from sftcast.proxies import ProxyConfig
from sftcast.sft import SFTConfig
from sftcast.study import judge, study_settings, write_table
from sftcast.study.candidate import StudyRow, study_candidate
from sftcast.study.config import StudyConfig
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
    workers: int = 1,
) -> Annotated[StudyRow, "study_row"]:
    """Every proxy of the candidate, probes included, and its score after SFT on each task."""
    track(uri, sft, evaluation, proxies, params={"candidate": uri})
    rows = task_rows(dict(zip(tasks, datasets, strict=True)))
    row = study_candidate(
        candidate, uri, load_corpus(corpus), rows, sft, evaluation, proxies, workers
    )
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


@step(enable_cache=False)
def write_study_table(
    table: pd.DataFrame,
    study: StudyConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    proxies: ProxyConfig,
) -> Annotated[str, "study_results_path"]:
    """The table written to `study.results` (a chunk adds its rows to those measured with the
    same settings). Never cached: a rerun whose every other step comes from the cache still
    writes it."""
    settings = study_settings(sft, evaluation, proxies)
    return str(write_table(table, study, settings, merge=study.variants is not None))


@step(enable_cache=False)
def judge_study(
    results: str, study: StudyConfig, tasks: list[str]
) -> Annotated[list[str], "study_judgement"]:
    """The table just written (`results`) judged by `compare` under every protocol: the summary,
    the reports and the figures beside it; returns their paths."""
    return [str(path) for path in judge(study.model_copy(update={"results": Path(results)}), tasks)]
