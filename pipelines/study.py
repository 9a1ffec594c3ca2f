"""The study pipeline: validated data, the zoo (or the chunk of it `study.variants` names),
each candidate measured (proxies, probes, SFT on every task; seed replicates for
`sft.replicate_candidates`), the results table written to `study.results`, and (for the
whole zoo, not a chunk) its judgement beside it. Killed and rerun, it resumes: finished
steps come from ZenML's cache, pre-training and fine-tunes from their keys on disk."""

from __future__ import annotations

from zenml import pipeline

from pipelines.data import data_stage
from pipelines.zoo import step_slug, zoo_stage
from sftcast.data import DataConfig
from sftcast.evaluation import EvaluationConfig
from sftcast.proxies import ProxyConfig
from sftcast.sft import SFTConfig
from sftcast.study.config import StudyConfig
from sftcast.zoo import ZooConfig
from steps.study import judge_study, measure_candidate, study_table, write_study_table


@pipeline(name="sftcast_study")
def study_pipeline(
    data: DataConfig,
    zoo: ZooConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    proxies: ProxyConfig,
    study: StudyConfig,
) -> None:
    stage = data_stage(data)
    candidates = zoo_stage(stage.corpus, zoo, stage.validations, only=study.includes)
    tasks = list(stage.datasets)
    rows = [
        measure_candidate(
            candidate=candidate, uri=uri, corpus=stage.corpus,
            datasets=[stage.datasets[t] for t in tasks], tasks=tasks, sft=sft,
            evaluation=evaluation, proxies=proxies, workers=study.workers,
            id=f"measure_{step_slug(uri)}",
        )
        for uri, candidate in candidates.items()
    ]  # fmt: skip
    table = study_table(rows=rows, zoo=zoo)
    results = write_study_table(table, study, sft, evaluation, proxies)
    if study.variants is None:  # a chunk's rows are judged with the whole table's
        judge_study(results, study, sft.tasks)
