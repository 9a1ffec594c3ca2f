"""Watch steps: one checkpoint ranked on one task by the comparator in production (recorded,
the challenger updated), and, when asked, fine-tuned and promoted if it is ahead."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from zenml import step

from sftcast.data.rows import task_rows
from sftcast.evaluation import EvaluationConfig
from sftcast.selection.report import ProxyRow
from sftcast.sft import SFTConfig
from sftcast.watch.challenger import FinetuneOutcome
from sftcast.watch.config import WatchConfig
from sftcast.watch.scoring import WatchScore
from sftcast.watch.service import finetune_checkpoint, score_checkpoint
from sftcast.zoo import ZooConfig
from steps.lineage import MLFLOW_STEP, step_lineage, track


# uncached: it moves the `challenger` alias and records the scoring MLflow reads back
@step(enable_cache=False, **MLFLOW_STEP)
def score_watched(
    task: str, row: ProxyRow, candidate: Path, watch: WatchConfig, sft: SFTConfig
) -> Annotated[WatchScore, "watch_score"]:
    """Rank the checkpoint among the comparator's labelled pool and against production."""
    track(task, watch, params={"task": task, "checkpoint": watch.uri, "step": watch.step,
                               "comparator_version": watch.comparators[task]})  # fmt: skip
    return score_checkpoint(task, row.values, candidate, watch, sft, step_lineage())


@step(extra={"gpu": True}, enable_cache=False, **MLFLOW_STEP)
def finetune_watched(
    score: WatchScore,
    candidate: Path,
    datasets: list[Path],
    tasks: list[str],
    base_scores: dict[str, dict[str, float]],
    watch: WatchConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
) -> Annotated[FinetuneOutcome, "finetune"]:
    """Fine-tune the checkpoint if it is predicted to beat production beyond the spread, and
    promote it if its measured score does."""
    track(score.task, watch, sft, params={"task": score.task, "checkpoint": watch.uri})
    rows = task_rows(dict(zip(tasks, datasets, strict=True)))
    return finetune_checkpoint(
        score, candidate, rows, base_scores, watch, sft, evaluation, zoo, step_lineage()
    )
