"""Champion and challenger (MLflow's convention): `production` stays the champion, a fine-tuned
model; the best-predicted checkpoint not yet fine-tuned holds `challenger`, on a version of its
own (the pre-trained weights, marked so that no gate promotes them as they are). With
`finetune_when: beats-production`, a checkpoint predicted to beat production beyond the
comparator's spread is fine-tuned, scored, and promoted through `select`'s gate if its measured
score beats production's.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from pydantic import BaseModel, ConfigDict

from sftcast.data.rows import TaskRows
from sftcast.evaluation.config import EvaluationConfig
from sftcast.promotion import PromotionRefused, promote
from sftcast.registry import (
    TAG_CANDIDATE,
    TAG_CHECKPOINT_KEY,
    Lineage,
    alias_version,
    register_pretrained,
)
from sftcast.selection.ranking import CHANCE, ID
from sftcast.sft.config import SFTConfig
from sftcast.sft.service import BaseScores, finetune_and_register
from sftcast.watch.locks import locked
from sftcast.watch.pool import ComparatorPool
from sftcast.watch.records import TAG_COMPARATOR_VERSION, TAG_STEP
from sftcast.watch.scoring import WatchScore
from sftcast.zoo.config import ZooConfig
from sftcast.zoo.model import load_model

CHALLENGER = "challenger"
TAG_PROXIES = "sftcast.watch.proxies"  # the comparator's features, to compare challengers


def update_challenger(
    score: WatchScore,
    pool: ComparatorPool,
    candidate: Path,
    model_name: str,
    lineage: Lineage,
    lock_dir: Path,
) -> str:
    """Give `challenger` to this checkpoint if the comparator prefers it to the current
    holder (or there is none); one line saying what happened."""
    if score.unscorable:
        return ""
    client = mlflow.MlflowClient()
    with locked(lock_dir / f"challenger-{model_name}.lock"):  # two watchers, one alias
        current = alias_version(model_name, CHALLENGER)
        if current is not None:
            if current.tags.get(TAG_CHECKPOINT_KEY) == score.content_hash:
                return f"challenger: already {model_name} v{current.version}"
            p = _p_beats(score, current, pool)
            if p is not None and p <= CHANCE:
                held = current.tags.get(TAG_CANDIDATE, "?")
                return (
                    f"challenger stays {model_name} v{current.version} ({held}): "
                    f"P(this one beats it) = {p:.2f}"
                )
        model, tokenizer = load_model(candidate)
        version = register_pretrained(
            model, tokenizer, model_name, score.content_hash,
            tags={
                TAG_CANDIDATE: score.checkpoint, "sftcast.task": score.task,
                TAG_STEP: "" if score.step is None else score.step,
                TAG_PROXIES: json.dumps(score.proxies, sort_keys=True),
                TAG_COMPARATOR_VERSION: score.comparator_version,
                "sftcast.watch.standing": score.standing,
                "sftcast.watch.p_beats_production": score.p_beats_production,
                **lineage.tags(),
            },
            description=f"{score.checkpoint}, pre-trained (not fine-tuned): the checkpoint "
            f"predicted best by {pool.task}'s comparator v{pool.version} so far.",
        )  # fmt: skip
        client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return f"challenger: {model_name} v{version.version} ({score.name})"


def _p_beats(score: WatchScore, current: ModelVersion, pool: ComparatorPool) -> float | None:
    """P(this checkpoint beats the current challenger) by today's comparator; None when the
    challenger was measured on other features (another comparator), which cannot compare."""
    theirs = json.loads(current.tags.get(TAG_PROXIES, "{}"))
    if set(theirs) != set(pool.proxies):
        return None
    frame = pd.DataFrame([{ID: "new", **score.proxies}, {ID: "challenger", **theirs}])
    return float(pool.preference(frame)[0, 1])


class FinetuneOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: str
    checkpoint: str
    finetuned: bool = False
    model: str | None = None
    version: str | None = None
    score: float | None = None  # measured after SFT
    production_score: float | None = None
    promoted: bool = False
    note: str

    def line(self) -> str:
        return f"{self.checkpoint.rstrip('/').rsplit('/', 1)[-1]} {self.task}: {self.note}"


def finetune_if_ahead(
    score: WatchScore,
    pool: ComparatorPool,
    candidate: Path,
    rows: TaskRows,
    base_scores: BaseScores,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
    lineage: Lineage,
) -> FinetuneOutcome:
    """Fine-tune the checkpoint when it is predicted to beat production beyond the spread;
    promote it when its measured score beats production's, through `select`'s gate."""
    outcome = FinetuneOutcome(task=score.task, checkpoint=score.checkpoint, note="")
    if not score.beyond_spread:
        return outcome.model_copy(
            update={
                "note": "not fine-tuned: not predicted to beat production beyond the "
                "comparator's spread"
            }
        )
    record = finetune_and_register(
        candidate, score.checkpoint, score.task, rows, base_scores, sft, evaluation, zoo, lineage
    )
    _drop_challenger(record.registered_model or "", score.content_hash)  # fine-tuned now
    production = pool.production
    done = outcome.model_copy(
        update={"finetuned": True, "model": record.registered_model,
                "version": record.model_version, "score": record.score,
                "production_score": production.score if production else None}
    )  # fmt: skip
    if production and production.score is not None and record.score <= production.score:
        note = (
            f"fine-tuned to {record.score:.4f} (v{record.model_version}), not above production "
            f"v{production.version}'s {production.score:.4f}: not promoted"
        )
        return done.model_copy(update={"note": note})
    try:
        result = promote(
            record.registered_model or "",
            record.model_version or "",
            evidence={
                "watch": score.model_dump(mode="json", exclude={"proxies"}),
                "measured": record.score,
                "production_score": production.score if production else None,
                "pairwise_accuracy": pool.accuracy,
                "pairwise_accuracy_std": pool.accuracy_std,
            },
            pipeline_run_id=lineage.pipeline_run_id,
            predictor="ltc",
            beats_chance=pool.accuracy is not None and pool.accuracy > CHANCE,
        )
    except PromotionRefused as refused:
        return done.model_copy(update={"note": f"fine-tuned to {record.score:.4f}; {refused}"})
    return done.model_copy(
        update={"promoted": True, "note": f"fine-tuned to {record.score:.4f}; {result.summary}"}
    )


def _drop_challenger(model_name: str, content_hash: str) -> None:
    holder = alias_version(model_name, CHALLENGER)
    if holder is not None and holder.tags.get(TAG_CHECKPOINT_KEY) == content_hash:
        mlflow.MlflowClient().delete_registered_model_alias(model_name, CHALLENGER)
