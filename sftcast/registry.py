"""Fine-tuned models in the MLflow model registry: one registered model per task, one version
per fine-tuned candidate, carrying its lineage and metrics as tags.

Registration goes through `mlflow.register_model` on the logged model's `models:/m-...` URI:
ZenML's registry step registers `runs:/<id>/model`, which MLflow 3 cannot load back.
Registering is idempotent: a version whose `sftcast.sft_key` tag matches is returned instead
of creating a duplicate, so a rerun after a crash never registers a candidate twice. Two runs
registering the same key at once both pass that check; MLflow has no unique constraint on
tags, so each one looks again after registering and the lowest version of the key wins: the
other deletes its own version (and the race ends with exactly one, whatever the timing).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sftcast.tracking import safe_tags

TAG_SFT_KEY = "sftcast.sft_key"
TAG_CANDIDATE = "sftcast.candidate"
METRIC_TAG_PREFIX = "metric."
# Pinned from what is installed: inferring requirements imports torchvision, absent here.
REQUIREMENTS = ("torch", "transformers", "safetensors", "tokenizers")


def find_version(name: str, sft_key: str) -> ModelVersion | None:
    client = mlflow.MlflowClient()
    found = client.search_model_versions(f"name = '{name}' and tag.`{TAG_SFT_KEY}` = '{sft_key}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def register_finetuned(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    sft_key: str,
    tags: Mapping[str, Any],
    metrics: Mapping[str, float],
    description: str = "",
) -> ModelVersion:
    """Log the model (already loaded from its folder, for evaluation) and its tokenizer as a
    transformers model in the active run, and register it under `name`.

    `tags` and `metrics` (as `metric.<name>` tags) go on the version, so the registry alone
    answers "which candidate, trained how, scoring what, made by which pipeline run".
    """
    metric_tags = {f"{METRIC_TAG_PREFIX}{k}": f"{v:.6g}" for k, v in metrics.items()}
    existing = find_version(name, sft_key)
    if existing is not None:
        # a study run (`sft`) after `select` adds the metrics select skipped; none is rewritten
        client = mlflow.MlflowClient()
        for key, value in metric_tags.items():
            if key not in existing.tags:
                client.set_model_version_tag(name, existing.version, key, value)
        return existing
    info = mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-generation",
        pip_requirements=[f"{p}=={version(p)}" for p in REQUIREMENTS],
    )
    version_tags = {
        **safe_tags(tags),
        **metric_tags,
        TAG_SFT_KEY: sft_key,
    }
    # Tags go in with the version, in one transaction: a crash never leaves a version without
    # its key, which the rerun would not recognise.
    registered = mlflow.register_model(info.model_uri, name, tags=version_tags)
    client = mlflow.MlflowClient()
    winner = find_version(name, sft_key)
    if winner is not None and str(winner.version) != str(registered.version):
        client.delete_model_version(name, registered.version)  # lost a concurrent race
        return winner
    if description:
        client.update_model_version(name, registered.version, description)
    return registered


def load_version(name: str, version: str | int) -> tuple[Any, Any]:
    """Model and tokenizer of a registered version, by `models:/<name>/<version>`."""
    components = mlflow.transformers.load_model(
        f"models:/{name}/{version}", return_type="components"
    )
    return components["model"], components["tokenizer"]


def version_metrics(version: ModelVersion) -> dict[str, float]:
    n = len(METRIC_TAG_PREFIX)
    return {k[n:]: float(v) for k, v in version.tags.items() if k.startswith(METRIC_TAG_PREFIX)}
