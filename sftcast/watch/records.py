"""What MLflow holds of a watched folder.

- Every scoring is a run of the `sftcast_watch` experiment (the pipeline's step run) tagged
  with the checkpoint's content hash, task, folder, path, step and the comparator version:
  a finished one means "scored", whatever process or restart made it.
- A rejected checkpoint is one run of its own, tagged the same with the reason.
- The folder has one run whose metrics are the history (`standing.<task>` at each pre-training
  step, so MLflow's own charts draw it) and whose `figures/watch_<task>.png` is redrawn with
  every checkpoint: predicted standing against step, beside the fine-tuned scores known.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import mlflow
from mlflow.entities import RunStatus

from sftcast.tracking import safe_tags
from sftcast.watch.figure import standing_figure
from sftcast.watch.pool import ComparatorPool
from sftcast.watch.scoring import WatchScore

EXPERIMENT = "sftcast_watch"  # the pipeline's name: ZenML's tracker logs its steps there
TAG_HASH = "sftcast.watch.content_hash"
TAG_TASK = "sftcast.watch.task"
TAG_FOLDER = "sftcast.watch.folder"
TAG_CHECKPOINT = "sftcast.watch.checkpoint"
TAG_STEP = "sftcast.watch.step"
TAG_OUTCOME = "sftcast.watch.outcome"  # scored, unscorable or rejected
TAG_REASON = "sftcast.watch.reason"
TAG_COMPARATOR_VERSION = "sftcast.watch.comparator_version"
TAG_FOLDER_RUN = "sftcast.watch.folder_run"
REJECTED = "rejected"
ALL_TASKS = "*"  # a rejection holds for every task


def experiment_id() -> str:
    """The watch experiment's id (made by the command line before anything runs)."""
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return mlflow.create_experiment(EXPERIMENT)
    return experiment.experiment_id


def recorded(content_hash: str) -> set[str]:
    """The tasks a checkpoint was scored for by a finished run, or {ALL_TASKS} when it was
    rejected."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id()],
        f"tags.`{TAG_HASH}` = '{content_hash}' and attributes.status = 'FINISHED'",
    )
    return {run.data.tags.get(TAG_TASK, "") for run in runs} - {""}


def record_rejection(
    folder: Path, checkpoint: Path, content_hash: str, step: int | None, reason: str
) -> str:
    """One finished run saying why the checkpoint can never be used; its id."""
    client = mlflow.MlflowClient()
    tags = _tags(folder, checkpoint, content_hash, step, ALL_TASKS)
    run = client.create_run(
        experiment_id(),
        run_name=f"rejected {checkpoint.name}",
        tags=safe_tags({**tags, TAG_OUTCOME: REJECTED, TAG_REASON: reason}),
    )
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run.info.run_id


def folder_run(folder: Path) -> str:
    """The folder's run (made on first use); the caller holds the folder's lock."""
    client = mlflow.MlflowClient()
    found = client.search_runs(
        [experiment_id()], f"tags.`{TAG_FOLDER_RUN}` = '{_quoted(folder)}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id(),
        run_name=f"watch {folder.name}",
        tags=safe_tags({TAG_FOLDER_RUN: str(folder), TAG_FOLDER: str(folder)}),
    )
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run.info.run_id


def record_score(score: WatchScore, folder: Path, folder_run_id: str, pool: ComparatorPool) -> None:
    """Tag and log the active (scoring) run, add the point to the folder's history and
    redraw its figure from every finished scoring of the folder and task, this one included."""
    outcome = "unscorable" if score.unscorable else "scored"
    tags = _tags(folder, Path(score.checkpoint), score.content_hash, score.step, score.task)
    mlflow.set_tags(
        safe_tags(
            {**tags, TAG_OUTCOME: outcome, TAG_COMPARATOR_VERSION: score.comparator_version,
             **({TAG_REASON: score.unscorable} if score.unscorable else {})}
        )
    )  # fmt: skip
    metrics = _metrics(score)
    mlflow.log_metrics(metrics)
    mlflow.log_dict(score.model_dump(mode="json"), f"watch_{score.task}.json")
    if score.unscorable:
        return
    client = mlflow.MlflowClient()
    step = score.step if score.step is not None else 0
    for name, value in metrics.items():
        client.log_metric(folder_run_id, f"{name}.{score.task}", value, step=step)
    points = [*history(folder, score.task, exclude=score.content_hash), score]
    client.log_figure(
        folder_run_id, standing_figure(points, pool, folder), f"figures/watch_{score.task}.png"
    )


def history(folder: Path, task: str, exclude: str = "") -> list[WatchScore]:
    """Every finished scoring of `folder`'s checkpoints on `task`, as logged."""
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [experiment_id()],
        f"tags.`{TAG_FOLDER}` = '{_quoted(folder)}' and tags.`{TAG_TASK}` = '{task}' "
        f"and tags.`{TAG_OUTCOME}` = 'scored' and attributes.status = 'FINISHED'",
    )
    scores = {}
    for run in runs:
        if run.data.tags[TAG_HASH] == exclude:
            continue
        local = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=f"watch_{task}.json"
        )
        score = WatchScore.model_validate_json(Path(local).read_text())
        scores[score.content_hash] = score
    return list(scores.values())


def _tags(
    folder: Path, checkpoint: Path, content_hash: str, step: int | None, task: str
) -> dict[str, str]:
    return {
        TAG_HASH: content_hash, TAG_TASK: task, TAG_FOLDER: str(folder),
        TAG_CHECKPOINT: str(checkpoint), TAG_STEP: "" if step is None else str(step),
    }  # fmt: skip


def _metrics(score: WatchScore) -> dict[str, float]:
    values = {
        "standing": score.standing,
        "win_probability": score.win_probability,
        "p_beats_production": score.p_beats_production,
    }
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


def _quoted(path: Path | str) -> str:
    """A value inside MLflow's single-quoted filter strings."""
    return str(path).replace("'", "\\'")


def tasks_left(wanted: Iterable[str], done: set[str]) -> list[str]:
    """The tasks of `wanted` a checkpoint still needs scoring for (none once rejected)."""
    return [] if ALL_TASKS in done else [t for t in wanted if t not in done]
