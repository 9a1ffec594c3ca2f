"""Tag the step's MLflow run with its ZenML identity, so lineage reads from either side."""

from __future__ import annotations

from typing import Any

import mlflow
from zenml import get_step_context
from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import (
    MLFlowExperimentTrackerSettings,
)

from sftcast.registry import Lineage
from sftcast.tracking import (
    TAG_PIPELINE_NAME,
    TAG_PIPELINE_RUN_ID,
    TAG_PIPELINE_RUN_NAME,
    config_hash,
    lineage_tags,
    safe_tags,
    to_jsonable,
)

# Each step logs to its own MLflow run, nested under the pipeline run's: without `nested`,
# ZenML puts every step of a pipeline run into one MLflow run and their params collide.
MLFLOW_STEP = {
    "experiment_tracker": True,
    "settings": {"experiment_tracker": MLFlowExperimentTrackerSettings(nested=True)},
}


def track(*configs: Any, params: dict[str, Any] | None = None) -> str:
    """Tag the active MLflow run (ZenML run id, step name, config hash); log flat params.

    Returns the config hash, which also names what the step writes.
    """
    context = get_step_context()
    run = context.pipeline_run
    chash = config_hash(*configs)
    tags = lineage_tags(str(run.id), run.name, context.pipeline.name, context.step_name, chash)
    mlflow.set_tags(safe_tags(tags))
    # The parent MLflow run stands for the whole pipeline run: give it the run's identity.
    if parent_id := mlflow.active_run().data.tags.get("mlflow.parentRunId"):
        client = mlflow.MlflowClient()
        for key in (TAG_PIPELINE_RUN_ID, TAG_PIPELINE_RUN_NAME, TAG_PIPELINE_NAME):
            client.set_tag(parent_id, key, tags[key])
    if params:
        mlflow.log_params(safe_tags(to_jsonable(params)))
    return chash


def step_lineage() -> Lineage:
    """The running step's ZenML identity, for the registry versions the library makes."""
    context = get_step_context()
    return Lineage(str(context.pipeline_run.id), context.step_name)
