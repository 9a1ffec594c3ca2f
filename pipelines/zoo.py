"""The zoo pipeline: validated data, the shared tokenizer, every variant pre-trained (one step
each, so Kubernetes fans them out), every checkpoint fetched and verified as a candidate."""

from __future__ import annotations

from typing import Any

from zenml import pipeline

from pipelines.data import data_stage
from sftcast.data import DataConfig
from sftcast.zoo import ZooConfig
from steps.zoo import fetch_candidate, pretrain, zoo_tokenizer


def zoo_stage(corpus: Any, zoo: ZooConfig, after: list[str]) -> dict[str, Any]:
    """Wire tokenizer, pre-training and fetches; returns candidate URI -> its artifact."""
    tokenizer = zoo_tokenizer(corpus=corpus, zoo=zoo, after=after)
    candidates = {}
    for variant in zoo.variants:
        run = pretrain(
            corpus=corpus,
            tokenizer=tokenizer,
            zoo=zoo,
            variant=variant.name,
            id=f"pretrain_{variant.name}",
        )
        for step in variant.checkpoint_steps:
            uri = f"zoo:{variant.name}@{step}"
            candidates[uri] = fetch_candidate(
                uri=uri, zoo=zoo, zoo_run=run, id=f"fetch_{variant.name}_{step}"
            )
    return candidates


@pipeline(name="sftcast_zoo")
def zoo_pipeline(data: DataConfig, zoo: ZooConfig) -> None:
    stage = data_stage(data)
    zoo_stage(stage.corpus, zoo, stage.validations)
