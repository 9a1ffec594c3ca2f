"""The zoo pipeline: validated data, the shared tokenizer, every variant pre-trained (one step
each, so Kubernetes fans them out), every checkpoint fetched and verified as a candidate."""

from __future__ import annotations

from zenml import pipeline

from pipelines.data import data_stage
from sftcast.data import DataConfig
from sftcast.zoo import ZooConfig
from steps.zoo import fetch_candidate, pretrain, zoo_tokenizer


@pipeline(name="sftcast_zoo")
def zoo_pipeline(data: DataConfig, zoo: ZooConfig) -> None:
    corpus, validations = data_stage(data)
    tokenizer = zoo_tokenizer(corpus=corpus, zoo=zoo, after=validations)
    for variant in zoo.variants:
        run = pretrain(
            corpus=corpus,
            tokenizer=tokenizer,
            zoo=zoo,
            variant=variant.name,
            id=f"pretrain_{variant.name}",
        )
        for step in variant.checkpoint_steps:
            fetch_candidate(
                uri=f"zoo:{variant.name}@{step}",
                zoo=zoo,
                zoo_run=run,
                id=f"fetch_{variant.name}_{step}",
            )
