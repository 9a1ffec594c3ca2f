"""One candidate fine-tuned on one task, evaluated and registered, inside the active MLflow run.

The SFT step calls it for each candidate x task; `select` calls it for a best-predicted
candidate that has no fine-tuned version yet. The caller passes the ZenML lineage it knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sftcast.data.rows import TaskRows
from sftcast.evaluation import EvaluationConfig, evaluate_finetuned
from sftcast.evaluation.report import SFTRecord
from sftcast.registry import Lineage, register_finetuned
from sftcast.sft.config import SFTConfig
from sftcast.sft.train import SFTResult, finetune
from sftcast.tracking import safe_tags
from sftcast.zoo.config import ZooConfig
from sftcast.zoo.model import load_model
from sftcast.zoo.variants import variant_info

BaseScores = Mapping[str, Mapping[str, float]]


def task_settings(sft: SFTConfig, task: str, seed: int | None = None) -> tuple[SFTConfig, int]:
    """The task's SFT settings, and the seed: the given one, or the settings' own."""
    settings = sft.for_task(task)
    return settings, settings.seed if seed is None else seed


def finetune_and_register(
    candidate: Path,
    uri: str,
    task: str,
    rows: TaskRows,
    base_scores: BaseScores,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
    lineage: Lineage,
    *,
    seed: int | None = None,
    replicate: bool = False,
) -> SFTRecord:
    """SFT, evaluation and (unless a seed replicate) registration with `lineage`; the record
    names the registered version."""
    sft, seed = task_settings(sft, task, seed)
    result = _finetune_logged(candidate, uri, task, rows[task], sft, seed)
    model, tokenizer = load_model(result.model_dir)
    scores = evaluate_finetuned(model, tokenizer, task, rows, base_scores, evaluation)
    metrics = scores.flat_metrics()
    mlflow.log_metrics(metrics)
    info = variant_info(uri, zoo)
    record = SFTRecord(
        task=task,
        candidate=uri,
        seed=seed,
        replicate=replicate,
        score=scores.score,
        base_score=scores.base_score,
        mrc=scores.mrc,
        metrics=metrics,
        sft_key=result.sft_key,
        mlflow_run_id=mlflow.active_run().info.run_id,
        **{k: v for k, v in info.items() if k != "variant_config"},
    )
    mlflow.set_tags(
        safe_tags({"sftcast.candidate": uri, "sftcast.task": task, "sftcast.reused": result.reused})
    )
    if replicate:  # a noise measurement, not a model anyone should deploy
        return record
    version = _register(
        record, model, tokenizer, sft, info.get("variant_config", {}), lineage, candidate
    )
    return record.model_copy(update=version)


def _finetune_logged(
    candidate: Path,
    uri: str,
    task: str,
    splits: Mapping[str, list[dict[str, Any]]],
    sft: SFTConfig,
    seed: int,
) -> SFTResult:
    """The fine-tune, its loss curve logged as it trains, its throughput once done, and its
    validation loss at each of `sft.fidelities` (`val_loss`, by step)."""
    result = finetune(
        candidate,
        task,
        splits["train"],
        sft,
        candidate_uri=uri,
        seed=seed,
        on_log=lambda s, metrics: mlflow.log_metrics(metrics, step=s),
        validation_rows=splits.get("validation", []),
    )
    for fidelity in result.fidelities:
        mlflow.log_metric("val_loss", fidelity.loss, step=fidelity.step)
    mlflow.log_metrics(
        {
            "tokens_per_s": result.tokens_per_s,
            "final_loss": result.final_loss,
            "sft_wall_time_s": result.wall_time_s,
        }
    )
    return result


def _register(
    record: SFTRecord,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sft: SFTConfig,
    variant_config: dict[str, Any],
    lineage: Lineage,
    candidate: Path,
) -> dict[str, str]:
    """A registry version of the fine-tuned model, tagged with how it was made and by which
    step; returns the record's `registered_model` and `model_version`."""
    name = sft.model_name(record.task)
    version = register_finetuned(
        model,
        tokenizer,
        name,
        record.sft_key,
        tags={
            "sftcast.candidate": record.candidate,
            "sftcast.task": record.task,
            "sftcast.seed": record.seed,
            "sftcast.sft_config_hash": sft.training_hash(record.seed),
            "sftcast.sft_config": sft.model_dump(mode="json"),
            "sftcast.variant": variant_config,
            **lineage.tags(),
            "sftcast.mlflow_run_id": record.mlflow_run_id,
        },
        metrics=record.metrics,
        description=f"{record.candidate} fine-tuned on {record.task} ({sft.method}, seed "
        f"{record.seed}): score {record.score:.4f}, base {record.base_score:.4f}.",
        card=candidate / "README.md",
    )
    return {"registered_model": name, "model_version": str(version.version)}
