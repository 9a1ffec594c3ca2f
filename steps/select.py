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
from sftcast.evaluation import EvaluationConfig
from sftcast.evaluation.report import SFTRecord
from sftcast.proxies import ProxyConfig, compute_proxies, kshot_proxies
from sftcast.selection import SelectionConfig
from sftcast.selection.report import ProxyRow, SelectionSummary
from sftcast.selection.service import promote_best_predicted
from sftcast.sft import SFTConfig
from sftcast.sft.service import finetune_and_register, task_rows
from sftcast.tracking import safe_tags
from sftcast.zoo import ZooConfig
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
    uris: list[str],
    datasets: list[Path],
    tasks: list[str],
    selection: SelectionConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
) -> Annotated[SFTRecord, "sft_record"]:
    """One round of active selection: choose the next candidate from the scores so far,
    fine-tune, evaluate and register it."""
    choice = next_candidate(task, proxy_rows, previous, selection.active, selection.seed)
    row, round_ = proxy_rows[choice.candidate], len(previous) + 1
    track(task, row.candidate, sft, [r.sft_key for r in previous],
          params={"task": task, "candidate": row.candidate, "round": round_})  # fmt: skip
    mlflow.set_tags(
        safe_tags({"sftcast.active_round": round_, "sftcast.active_choice": choice.reason})
    )
    record = finetune_and_register(
        candidates[uris.index(row.candidate)], row.candidate, task,
        task_rows(dict(zip(tasks, datasets, strict=True))), row.base_scores, sft, evaluation,
        zoo, step_lineage(),
    )  # fmt: skip
    return record.model_copy(update={"choice": f"round {round_}: {choice.reason}"})


@step(extra={"gpu": True}, **MLFLOW_STEP)
def select_and_promote(
    task: str,
    proxy_rows: list[ProxyRow],
    records: list[SFTRecord],
    candidates: list[Path],
    uris: list[str],
    datasets: list[Path],
    tasks: list[str],
    selection: SelectionConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
) -> Annotated[SelectionSummary, "selection"]:
    """Judge the predictors, rank every candidate, promote the best-predicted one."""
    track(task, selection, params={"task": task, **selection.model_dump(mode="json")})
    summary = promote_best_predicted(
        task, proxy_rows, records, dict(zip(uris, candidates, strict=True)),
        dict(zip(tasks, datasets, strict=True)), selection, sft, evaluation, zoo,
        step_lineage(),
    )  # fmt: skip
    outcome = {"sftcast.promoted": summary.promoted, "sftcast.best": summary.candidate}
    mlflow.set_tags(safe_tags(outcome))
    return summary
