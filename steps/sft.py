"""SFT steps: each candidate's base scores, one fine-tune + evaluation + registration per
candidate x task (a GPU step), and the report across all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import mlflow
from transformers import AutoModelForCausalLM, AutoTokenizer
from zenml import get_step_context, step

from sftcast.data.io import load_task_dataset
from sftcast.device import resolve_device
from sftcast.evaluation import EvaluationConfig, evaluate_base, evaluate_finetuned
from sftcast.evaluation.report import (
    SFTRecord,
    plot_scores_by_step,
    records_table,
    signal_to_noise,
)
from sftcast.registry import register_finetuned
from sftcast.sft import SFTConfig, finetune
from sftcast.tracking import TAG_PIPELINE_RUN_ID, log_json, safe_tags
from sftcast.zoo import ZooConfig
from sftcast.zoo.fetch import parse_zoo_uri
from steps.lineage import MLFLOW_STEP, track

TaskRows = dict[str, dict[str, list[dict[str, Any]]]]


def _task_rows(datasets: list[Path], tasks: list[str]) -> TaskRows:
    """task -> split -> rows, from the validated datasets (aligned with `tasks`)."""
    return {
        task: {split: ds.to_list() for split, ds in load_task_dataset(path, task).items()}
        for task, path in zip(tasks, datasets, strict=True)
    }


def _load(folder: Path) -> tuple[Any, Any]:
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    return model.to(resolve_device()), AutoTokenizer.from_pretrained(folder)


@step(extra={"gpu": True}, **MLFLOW_STEP)
def evaluate_candidate(
    candidate: Path, uri: str, datasets: list[Path], tasks: list[str], evaluation: EvaluationConfig
) -> Annotated[dict[str, dict[str, float]], "base_scores"]:
    """The pre-trained candidate, few-shot on every task."""
    track(uri, evaluation, params={"candidate": uri, **evaluation.model_dump(mode="json")})
    model, tokenizer = _load(candidate)
    scores = evaluate_base(model, tokenizer, _task_rows(datasets, tasks), evaluation)
    mlflow.log_metrics({f"base.{t}.{m}": v for t, s in scores.items() for m, v in s.items()})
    mlflow.set_tags(safe_tags({"sftcast.candidate": uri}))
    return scores


def _variant_info(uri: str, zoo: ZooConfig) -> dict[str, Any]:
    if not uri.startswith("zoo:"):
        return {}
    name, checkpoint = parse_zoo_uri(uri)
    variant = zoo.variant(name)
    return {
        "variant": name,
        "family": variant.family,
        "objective": variant.objective,
        "checkpoint_step": checkpoint,
        "variant_config": variant.model_dump(mode="json"),
    }


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
    settings, seed = _task_settings(sft, task, seed)
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
    rows = _task_rows(datasets, tasks)
    return finetune_and_register(
        candidate, uri, task, rows, base_scores, sft, evaluation, zoo, seed=seed,
        replicate=replicate,
    )  # fmt: skip


def _task_settings(sft: SFTConfig, task: str, seed: int | None) -> tuple[SFTConfig, int]:
    """The task's SFT settings, and the seed: the given one, or the settings' own."""
    settings = sft.for_task(task)
    return settings, settings.seed if seed is None else seed


def finetune_and_register(
    candidate: Path,
    uri: str,
    task: str,
    rows: TaskRows,
    base_scores: dict[str, dict[str, float]],
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
    *,
    seed: int | None = None,
    replicate: bool = False,
) -> SFTRecord:
    """SFT, evaluation and registration inside the active MLflow run (shared by the SFT step
    and by `select`, which fine-tunes a best-predicted candidate that has no version yet)."""
    sft, seed = _task_settings(sft, task, seed)
    result = finetune(
        candidate,
        task,
        rows[task]["train"],
        sft,
        candidate_uri=uri,
        seed=seed,
        on_log=lambda s, metrics: mlflow.log_metrics(metrics, step=s),
    )
    mlflow.log_metrics(
        {
            "tokens_per_s": result.tokens_per_s,
            "final_loss": result.final_loss,
            "sft_wall_time_s": result.wall_time_s,
        }
    )
    model, tokenizer = _load(result.model_dir)
    scores = evaluate_finetuned(model, tokenizer, task, rows, base_scores, evaluation)
    metrics = scores.flat_metrics()
    mlflow.log_metrics(metrics)
    info = _variant_info(uri, zoo)
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
    name = sft.model_name(task)
    version = register_finetuned(
        model,
        tokenizer,
        name,
        result.sft_key,
        tags={
            "sftcast.candidate": uri,
            "sftcast.task": task,
            "sftcast.seed": seed,
            "sftcast.sft_config_hash": sft.training_hash(seed),
            "sftcast.sft_config": sft.model_dump(mode="json"),
            "sftcast.variant": info.get("variant_config", {}),
            TAG_PIPELINE_RUN_ID: str(get_step_context().pipeline_run.id),
            "sftcast.mlflow_run_id": record.mlflow_run_id,
        },
        metrics=metrics,
        description=f"{uri} fine-tuned on {task} ({sft.method}, seed {seed}): "
        f"score {scores.score:.4f}, base {scores.base_score:.4f}.",
    )
    return record.model_copy(
        update={"registered_model": name, "model_version": str(version.version)}
    )


@step(**MLFLOW_STEP)
def sft_report(records: list[SFTRecord]) -> Annotated[dict[str, Any], "sft_report"]:
    """The ground-truth table, seed noise against candidate spread, and a figure per task."""
    track([r.sft_key for r in records])
    table = records_table(records)
    mlflow.log_table(table, "sft_results.json")
    noise = signal_to_noise(records)
    log_json(noise, "signal_to_noise.json")
    for task, row in noise.items():
        mlflow.log_metrics({f"{task}.{k}": float(v) for k, v in row.items()})
        mlflow.log_figure(plot_scores_by_step(records, task), f"figures/{task}_scores_by_step.png")
    return {"signal_to_noise": noise, "results": table.to_dict(orient="records")}
