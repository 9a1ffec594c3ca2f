"""SFT steps: each candidate's base scores, one fine-tune + evaluation + registration per
candidate x task (a GPU step), and the report across all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import mlflow
from zenml import step

from sftcast.data.rows import task_rows
from sftcast.evaluation import EvaluationConfig, evaluate_base
from sftcast.evaluation.report import SFTRecord, SFTReport, plot_scores_by_step
from sftcast.sft import SFTConfig
from sftcast.sft.service import finetune_and_register, task_settings
from sftcast.tracking import log_json, safe_tags
from sftcast.zoo import ZooConfig
from sftcast.zoo.model import load_model
from steps.lineage import MLFLOW_STEP, step_lineage, track


@step(extra={"gpu": True}, **MLFLOW_STEP)
def evaluate_candidate(
    candidate: Path, uri: str, datasets: list[Path], tasks: list[str], evaluation: EvaluationConfig
) -> Annotated[dict[str, dict[str, float]], "base_scores"]:
    """The pre-trained candidate, few-shot on every task."""
    track(uri, evaluation, params={"candidate": uri, **evaluation.model_dump(mode="json")})
    model, tokenizer = load_model(candidate)
    rows = task_rows(dict(zip(tasks, datasets, strict=True)))
    scores = evaluate_base(model, tokenizer, rows, evaluation)
    mlflow.log_metrics({f"base.{t}.{m}": v for t, s in scores.items() for m, v in s.items()})
    mlflow.set_tags(safe_tags({"sftcast.candidate": uri}))
    return scores


@step(extra={"gpu": True}, **MLFLOW_STEP)
def finetune_candidate(
    candidate: Path,
    uri: str,
    task: str,
    datasets: list[Path],
    tasks: list[str],
    base_scores: dict[str, dict[str, float]],
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
    seed: int | None = None,
    replicate: bool = False,
) -> Annotated[SFTRecord, "sft_record"]:
    """Fine-tune, evaluate, and (unless a seed replicate) register the fine-tuned model."""
    settings, seed = task_settings(sft, task, seed)
    track(
        settings.training_hash(seed),
        uri,
        task,
        params={
            "candidate": uri,
            "task": task,
            "seed": seed,
            **settings.model_dump(mode="json", exclude={"output_dir"}),
        },
    )
    rows = task_rows(dict(zip(tasks, datasets, strict=True)))
    return finetune_and_register(
        candidate, uri, task, rows, base_scores, sft, evaluation, zoo, step_lineage(), seed=seed,
        replicate=replicate,
    )  # fmt: skip


@step(**MLFLOW_STEP)
def sft_report(records: list[SFTRecord]) -> Annotated[SFTReport, "sft_report"]:
    """The ground-truth table, seed noise against candidate spread, and a figure per task."""
    track([r.sft_key for r in records])
    report = SFTReport.of(records)
    mlflow.log_table(report.table(), "sft_results.json")
    log_json(report.signal_to_noise, "signal_to_noise.json")
    for task, row in report.signal_to_noise.items():
        mlflow.log_metrics({f"{task}.{k}": float(v) for k, v in row.items()})
        mlflow.log_figure(plot_scores_by_step(records, task), f"figures/{task}_scores_by_step.png")
    return report
