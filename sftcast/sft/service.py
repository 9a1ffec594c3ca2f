"""One candidate fine-tuned on one task, evaluated and registered, inside the active MLflow run.

The SFT step calls it for each candidate x task; `select` calls it for a best-predicted
candidate that has no fine-tuned version yet. The caller passes the ZenML lineage it knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from transformers import AutoModelForCausalLM, AutoTokenizer

from sftcast.data.io import load_task_dataset
from sftcast.device import resolve_device
from sftcast.evaluation import EvaluationConfig, evaluate_finetuned
from sftcast.evaluation.report import SFTRecord
from sftcast.registry import Lineage, register_finetuned
from sftcast.sft.config import SFTConfig
from sftcast.sft.train import finetune
from sftcast.tracking import safe_tags
from sftcast.zoo import ZooConfig
from sftcast.zoo.fetch import parse_zoo_uri

TaskRows = dict[str, dict[str, list[dict[str, Any]]]]
BaseScores = Mapping[str, Mapping[str, float]]


def task_rows(datasets: Mapping[str, Path]) -> TaskRows:
    """task -> split -> rows, from the validated datasets (task -> folder)."""
    return {
        task: {split: ds.to_list() for split, ds in load_task_dataset(path, task).items()}
        for task, path in datasets.items()
    }


def load_model(folder: Path) -> tuple[Any, Any]:
    """A saved causal LM and its tokenizer, the model on the resolved device."""
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    return model.to(resolve_device()), AutoTokenizer.from_pretrained(folder)


def task_settings(sft: SFTConfig, task: str, seed: int | None = None) -> tuple[SFTConfig, int]:
    """The task's SFT settings, and the seed: the given one, or the settings' own."""
    settings = sft.for_task(task)
    return settings, settings.seed if seed is None else seed


def variant_info(uri: str, zoo: ZooConfig) -> dict[str, Any]:
    """What the zoo knows of a `zoo:` candidate (nothing for a Hub model)."""
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
            **lineage.tags(),
            "sftcast.mlflow_run_id": record.mlflow_run_id,
        },
        metrics=metrics,
        description=f"{uri} fine-tuned on {task} ({sft.method}, seed {seed}): "
        f"score {scores.score:.4f}, base {scores.base_score:.4f}.",
        card=candidate / "README.md",
    )
    return record.model_copy(
        update={"registered_model": name, "model_version": str(version.version)}
    )
