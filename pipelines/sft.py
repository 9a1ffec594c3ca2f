"""The SFT pipeline: validated data, the zoo's candidates, each candidate's base scores, then
one fine-tune + evaluation + registration per candidate x task, and the report."""

from __future__ import annotations

from typing import Any

from zenml import pipeline

from pipelines.data import data_stage
from pipelines.zoo import step_slug, zoo_stage
from sftcast.data import DataConfig
from sftcast.evaluation import EvaluationConfig
from sftcast.sft import SFTConfig
from sftcast.zoo import ZooConfig
from steps.sft import evaluate_candidate, finetune_candidate, sft_report


def sft_stage(
    candidates: dict[str, Any],
    datasets: dict[str, Any],
    zoo: ZooConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    labelled: list[str] | None = None,
    replicates: bool = True,
) -> tuple[list[Any], dict[str, Any]]:
    """Wire base evaluation for `candidates` (URI -> artifact) and SFT for the `labelled`
    ones (all by default), with `sft.replicate_seeds` unless `replicates` is off; base and
    fine-tuned models are scored with `evaluation`. Returns the SFT records and each
    candidate's base scores."""
    tasks = list(datasets)
    task_datasets = [datasets[t] for t in tasks]
    records, base_scores = [], {}
    for uri, candidate in candidates.items():
        slug = step_slug(uri)
        shared = {
            "candidate": candidate,
            "uri": uri,
            "datasets": task_datasets,
            "tasks": tasks,
            "evaluation": evaluation,
        }
        base = base_scores[uri] = evaluate_candidate(**shared, id=f"evaluate_{slug}")
        if labelled is not None and uri not in labelled:
            continue
        seeds = sft.extra_seeds(uri) if replicates else []
        for task in sft.tasks:
            common = {
                **shared, "task": task, "base_scores": base, "sft": sft, "zoo": zoo,
            }  # fmt: skip
            records.append(finetune_candidate(**common, id=f"sft_{task}_{slug}"))
            records += [
                finetune_candidate(
                    **common, seed=s, replicate=True, id=f"sft_{task}_{slug}_seed{s}"
                )
                for s in seeds
            ]
    return records, base_scores


@pipeline(name="sftcast_sft")
def sft_pipeline(
    data: DataConfig, zoo: ZooConfig, sft: SFTConfig, evaluation: EvaluationConfig
) -> None:
    stage = data_stage(data)
    candidates = zoo_stage(stage.corpus, zoo, stage.validations)
    records, _ = sft_stage(candidates, stage.datasets, zoo, sft, evaluation)
    sft_report(records=records)
