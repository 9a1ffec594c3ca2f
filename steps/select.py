"""Select steps: proxies per candidate, the rounds of active selection (one fine-tune each),
then per task the judged predictor, the ranking of every candidate and the promotion."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import mlflow
from zenml import step

from sftcast.active import next_candidate
from sftcast.data import load_corpus
from sftcast.data.rows import task_rows
from sftcast.evaluation.report import SFTRecord
from sftcast.proxies import ProxyConfig, compute_proxies, kshot_proxies
from sftcast.selection.config import SelectionSettings
from sftcast.selection.report import ProxyRow, SelectionSummary
from sftcast.selection.service import promote_best_predicted
from sftcast.sft.service import finetune_and_register
from sftcast.tracking import safe_tags
from steps.lineage import MLFLOW_STEP, step_lineage, track


@step(extra={"gpu": True}, **MLFLOW_STEP)
def candidate_proxies(
    candidate: Path,
    uri: str,
    corpus: Path,
    base_scores: dict[str, dict[str, float]],
    proxies: ProxyConfig,
) -> Annotated[ProxyRow, "proxies"]:
    """Proxy features from the pre-trained weights alone, each with its wall time."""
    track(uri, proxies, params={"candidate": uri, **proxies.model_dump(mode="json")})
    result = compute_proxies(candidate, load_corpus(corpus), proxies)
    values = {**result.values, **kshot_proxies(base_scores)}
    mlflow.log_metrics({f"proxy.{k}": v for k, v in values.items() if math.isfinite(v)})
    mlflow.log_metrics({f"seconds.{k}": v for k, v in result.seconds.items()})
    mlflow.set_tags(safe_tags({"sftcast.candidate": uri}))
    return ProxyRow(candidate=uri, values=values, seconds=result.seconds, base_scores=base_scores)


@step(extra={"gpu": True}, **MLFLOW_STEP)
def active_round(
    task: str,
    proxy_rows: list[ProxyRow],
    previous: list[SFTRecord],
    candidates: list[Path],
    datasets: list[Path],
    settings: SelectionSettings,
) -> Annotated[SFTRecord, "sft_record"]:
    """One round of active selection: choose the next candidate from the scores so far,
    fine-tune, evaluate and register it."""
    selection = settings.selection
    choice = next_candidate(task, proxy_rows, previous, selection.active, selection.seed)
    row, round_ = proxy_rows[choice.candidate], len(previous) + 1
    track(task, row.candidate, settings.sft, [r.sft_key for r in previous],
          params={"task": task, "candidate": row.candidate, "round": round_})  # fmt: skip
    mlflow.set_tags(
        safe_tags({"sftcast.active_round": round_, "sftcast.active_choice": choice.reason})
    )
    record = finetune_and_register(
        settings.by_uri(candidates)[row.candidate], row.candidate, task,
        task_rows(settings.by_task(datasets)), row.base_scores, settings.sft,
        settings.evaluation, settings.zoo, step_lineage(),
    )  # fmt: skip
    return record.model_copy(update={"choice": f"round {round_}: {choice.reason}"})


@step(extra={"gpu": True}, **MLFLOW_STEP)
def select_and_promote(
    task: str,
    proxy_rows: list[ProxyRow],
    records: list[SFTRecord],
    candidates: list[Path],
    datasets: list[Path],
    settings: SelectionSettings,
) -> Annotated[SelectionSummary, "selection"]:
    """Judge the predictors, rank every candidate, promote the best-predicted one."""
    selection = settings.selection
    track(task, selection, params={"task": task, **selection.model_dump(mode="json")})
    summary = promote_best_predicted(
        task, proxy_rows, records, settings.by_uri(candidates), settings.by_task(datasets),
        settings, step_lineage(),
    )  # fmt: skip
    outcome = {"sftcast.promoted": summary.promoted, "sftcast.best": summary.candidate}
    mlflow.set_tags(safe_tags(outcome))
    return summary
