"""One checkpoint on one task, inside the active MLflow run (a step of the `sftcast_watch`
pipeline): ranked by the comparator the command named, recorded, the challenger updated; and,
when asked, fine-tuned and promoted if it is ahead."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import mlflow

from sftcast.data.rows import TaskRows
from sftcast.evaluation.config import EvaluationConfig
from sftcast.registry import Lineage, comparator_model_name
from sftcast.sft.config import SFTConfig
from sftcast.sft.service import BaseScores
from sftcast.watch.challenger import FinetuneOutcome, finetune_if_ahead, update_challenger
from sftcast.watch.config import WatchConfig
from sftcast.watch.pool import ComparatorPool, load_pool
from sftcast.watch.records import record_score
from sftcast.watch.scoring import WatchScore, rank_checkpoint
from sftcast.zoo.config import ZooConfig


def pool_for(task: str, watch: WatchConfig, sft: SFTConfig) -> ComparatorPool:
    """The comparator version the command chose for `task`, with its pool and production."""
    version = mlflow.MlflowClient().get_model_version(
        comparator_model_name(task), watch.comparators[task]
    )
    return load_pool(task, version, sft.model_name(task))


def score_checkpoint(
    task: str,
    values: Mapping[str, float],
    candidate: Path,
    watch: WatchConfig,
    sft: SFTConfig,
    lineage: Lineage,
) -> WatchScore:
    """Rank the checkpoint (`values`: its proxies), record it, update the challenger."""
    assert watch.folder is not None and watch.lock_dir is not None  # the command sets them
    pool = pool_for(task, watch, sft)
    score = rank_checkpoint(
        pool, values, checkpoint=watch.uri, step=watch.step, content_hash=watch.content_hash
    )
    record_score(score, watch.folder, watch.folder_run_id, pool)
    note = update_challenger(score, pool, candidate, sft.model_name(task), lineage, watch.lock_dir)
    return score.model_copy(update={"challenger": note})


def finetune_checkpoint(
    score: WatchScore,
    candidate: Path,
    rows: TaskRows,
    base_scores: BaseScores,
    watch: WatchConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
    lineage: Lineage,
) -> FinetuneOutcome:
    """Fine-tune and maybe promote the checkpoint, against production as it stands now."""
    pool = pool_for(score.task, watch, sft)
    outcome = finetune_if_ahead(
        score, pool, candidate, rows, base_scores, sft, evaluation, zoo, lineage
    )
    mlflow.set_tags({"sftcast.watch.finetuned": str(outcome.finetuned).lower(),
                     "sftcast.watch.promoted": str(outcome.promoted).lower()})  # fmt: skip
    return outcome
