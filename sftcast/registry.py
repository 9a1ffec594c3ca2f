"""Fine-tuned models and comparators in the MLflow model registry: one registered model per
task, one version per fine-tuned candidate (or per trained comparator), carrying its lineage
(ZenML pipeline run id and step name) and metrics as tags.

Registration goes through `mlflow.register_model` on the logged model's `models:/m-...` URI:
ZenML's registry step registers `runs:/<id>/model`, which MLflow 3 cannot load back.
Registering is idempotent: a version whose key tag matches (`sftcast.sft_key` for a fine-tune,
`sftcast.comparator_key` for a comparator) is returned instead of creating a duplicate, so a
rerun after a crash never registers a candidate twice. Two runs registering the same key at
once both pass that check; MLflow has no unique constraint on tags, so each one looks again
after registering and the lowest version of the key wins: the other deletes its own version
(and the race ends with exactly one, whatever the timing).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from huggingface_hub import ModelCard, ModelCardData
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sftcast.tracking import TAG_PIPELINE_RUN_ID, TAG_STEP_NAME, safe_tags

if TYPE_CHECKING:
    import pandas as pd

    from sftcast.comparator.forms import ChosenComparator

TAG_SFT_KEY = "sftcast.sft_key"
TAG_COMPARATOR_KEY = "sftcast.comparator_key"
# A pre-trained checkpoint registered as a task's `challenger` by `watch`: its content hash
TAG_CHECKPOINT_KEY = "sftcast.checkpoint_key"
TAG_STAGE = "sftcast.stage"  # "pretrained" on such a version: never promoted as it is
PRETRAINED = "pretrained"
COMPARATOR_PREFIX = "sftcast-comparator-"
TAG_CANDIDATE = "sftcast.candidate"
METRIC_TAG_PREFIX = "metric."
# Pinned from what is installed: inferring requirements imports torchvision, absent here.
REQUIREMENTS = ("torch", "transformers", "safetensors", "tokenizers")
COMPARATOR_REQUIREMENTS = ("xgboost-cpu", "scikit-learn", "pandas")


@dataclass(frozen=True)
class Lineage:
    """Which ZenML pipeline run and step made a version; the steps, which know, pass it in."""

    pipeline_run_id: str
    step_name: str

    def tags(self) -> dict[str, str]:
        return {TAG_PIPELINE_RUN_ID: self.pipeline_run_id, TAG_STEP_NAME: self.step_name}


def comparator_model_name(task: str) -> str:
    return f"{COMPARATOR_PREFIX}{task}"


def key_tag(name: str) -> str:
    """The tag naming what made a version of `name`: a comparator's training key, else the
    SFT key."""
    return TAG_COMPARATOR_KEY if name.startswith(COMPARATOR_PREFIX) else TAG_SFT_KEY


def find_version(name: str, key: str, tag: str | None = None) -> ModelVersion | None:
    """The version of `name` whose key tag (`tag`, else `key_tag(name)`) is `key`."""
    client = mlflow.MlflowClient()
    found = client.search_model_versions(
        f"name = '{name}' and tag.`{tag or key_tag(name)}` = '{key}'"
    )
    return min(found, key=lambda v: int(v.version)) if found else None


def alias_version(name: str, alias: str) -> ModelVersion | None:
    """The version of `name` holding `alias`; None when the model or the alias is unknown."""
    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_finetuned(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    sft_key: str,
    tags: Mapping[str, Any],
    metrics: Mapping[str, float],
    description: str = "",
    card: Path | None = None,
) -> ModelVersion:
    """Log the model (already loaded from its folder, for evaluation) and its tokenizer as a
    transformers model in the active run, and register it under `name`.

    `tags` and `metrics` (as `metric.<name>` tags) go on the version, so the registry alone
    answers "which candidate, trained how, scoring what, made by which pipeline run". `card`
    is the candidate's model card (README.md), logged with the model.
    """

    def log_model() -> str:
        return _log_transformers(model, tokenizer, model_card(card, description))

    return register_version(name, sft_key, log_model, tags, metrics, description)


def register_pretrained(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    content_hash: str,
    tags: Mapping[str, Any],
    description: str,
) -> ModelVersion:
    """A pre-trained checkpoint as a version of the task's registered model (`watch`'s
    challenger), once per content hash, marked `sftcast.stage: pretrained` so that no gate
    promotes it before it is fine-tuned."""

    def log_model() -> str:
        return _log_transformers(model, tokenizer, model_card(None, description))

    return register_version(
        name, content_hash, log_model, {**tags, TAG_STAGE: PRETRAINED}, {}, description,
        tag=TAG_CHECKPOINT_KEY,
    )  # fmt: skip


def _log_transformers(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, card: ModelCard
) -> str:
    """Log model and tokenizer as a transformers model in the active run; its URI."""
    return mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-generation",
        pip_requirements=[f"{p}=={version(p)}" for p in REQUIREMENTS],
        model_card=card,
    ).model_uri


def model_card(card: Path | None, description: str) -> ModelCard:
    """The candidate's card (when it has one) with the fine-tune described on top. Given to
    MLflow, which otherwise looks the model up on the Hub by its folder name; a card that
    declares no license says `unknown`, the truth for a checkpoint pre-trained here on text
    from several sources, and MLflow records that instead of warning about it."""
    text = card.read_text(encoding="utf-8") if card is not None and card.is_file() else ""
    if text.startswith("---"):  # a metadata block (the Hub's cards have one; the zoo's not)
        parsed = ModelCard(text)
        data, body = parsed.data, parsed.text
    else:
        data, body = ModelCardData(), text
    if not data.license:
        data.license = "unknown"
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{description}\n\n{body}")


def register_comparator(
    comparator: ChosenComparator,
    examples: pd.DataFrame,
    lower_is_better: Sequence[str],
    task: str,
    key: str,
    tags: Mapping[str, Any],
    metrics: Mapping[str, float],
) -> ModelVersion:
    """The comparator as a pyfunc model that ranks candidates from their proxy columns (its
    JSON state and the code that loads it: no pickle), logged in the active run and registered
    as a version of `sftcast-comparator-<task>`, once per `key` (what it was trained on, and
    how). `examples`: candidates' proxy columns, in the comparator's order (its signature and
    input example)."""
    from sftcast.comparator import mlflow_model

    proxies = list(examples.columns)

    def log_model() -> str:
        state = {"proxies": proxies, "lower_is_better": list(lower_is_better),
                 "comparator": comparator.state()}  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "comparator.json"
            path.write_text(json.dumps(state))
            return mlflow.pyfunc.log_model(
                name="comparator",
                python_model=mlflow_model.__file__,
                artifacts={mlflow_model.STATE_ARTIFACT: str(path)},
                pip_requirements=[f"{p}=={version(p)}" for p in COMPARATOR_REQUIREMENTS],
                input_example=examples.head(3),
                signature=ModelSignature(
                    inputs=Schema([ColSpec("double", name) for name in proxies]),
                    outputs=Schema([ColSpec("double", "strength")]),
                ),
            ).model_uri

    return register_version(comparator_model_name(task), key, log_model, tags, metrics)


def register_version(
    name: str,
    key: str,
    log_model: Callable[[], str],
    tags: Mapping[str, Any],
    metrics: Mapping[str, float],
    description: str = "",
    tag: str | None = None,
) -> ModelVersion:
    """The version of `name` made from `key`: the existing one, or the model `log_model` logs
    (returning its URI) registered with `tags`, `metrics` as tags and `key` as its key tag
    (`tag`, else `key_tag(name)`)."""
    tag = tag or key_tag(name)
    metric_tags = {f"{METRIC_TAG_PREFIX}{k}": f"{v:.6g}" for k, v in metrics.items()}
    existing = find_version(name, key, tag)
    if existing is not None:
        # a study run (`sft`) after `select` adds the metrics select skipped; none is rewritten
        client = mlflow.MlflowClient()
        for tag, value in metric_tags.items():
            if tag not in existing.tags:
                client.set_model_version_tag(name, existing.version, tag, value)
        return existing
    model_uri = log_model()
    version_tags = {
        **safe_tags(tags),
        **metric_tags,
        tag: key,
    }
    # Tags go in with the version, in one transaction: a crash never leaves a version without
    # its key, which the rerun would not recognise.
    registered = mlflow.register_model(model_uri, name, tags=version_tags)
    client = mlflow.MlflowClient()
    winner = find_version(name, key, tag)
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
