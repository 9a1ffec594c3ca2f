"""The main pipeline: validated data -> candidates -> proxies for all -> SFT + evaluation for
the labelled ones -> per task, judge the predictors, rank every candidate and promote the
best-predicted one's fine-tuned version to `production`."""

from __future__ import annotations

from zenml import pipeline

from pipelines.data import data_stage
from pipelines.sft import sft_stage, step_slug
from pipelines.zoo import zoo_stage
from sftcast.data import DataConfig
from sftcast.evaluation import EvaluationConfig
from sftcast.proxies import ProxyConfig
from sftcast.selection import SelectionConfig
from sftcast.sft import SFTConfig
from sftcast.zoo import ZooConfig
from steps.select import candidate_proxies, select_and_promote
from steps.sft import sft_report


@pipeline(name="sftcast_select")
def select_pipeline(
    data: DataConfig,
    zoo: ZooConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    proxies: ProxyConfig,
    selection: SelectionConfig,
) -> None:
    stage = data_stage(data)
    candidates = zoo_stage(stage.corpus, zoo, stage.validations)
    uris = list(candidates)
    labelled = selection.labelled_candidates(uris)  # checked against the zoo by the pre-flight
    # no seed replicates, prompt formats or forgetting here: they are the `sft` pipeline's study
    scoring = selection.finetuned_evaluation(evaluation)
    records, base_scores = sft_stage(
        candidates, stage.datasets, zoo, sft, evaluation, labelled, replicates=False,
        finetuned_evaluation=scoring,
    )  # fmt: skip
    proxy_rows = [
        candidate_proxies(
            candidate=candidates[uri], uri=uri, corpus=stage.corpus,
            base_scores=base_scores[uri], proxies=proxies, id=f"proxies_{step_slug(uri)}",
        )
        for uri in uris
    ]  # fmt: skip
    sft_report(records=records)
    tasks = list(stage.datasets)
    for task in sft.tasks:
        select_and_promote(
            task=task, proxy_rows=proxy_rows, records=records,
            candidates=[candidates[u] for u in uris], uris=uris,
            datasets=[stage.datasets[t] for t in tasks], tasks=tasks,
            selection=selection, sft=sft, evaluation=scoring, zoo=zoo,
            id=f"select_{task}",
        )  # fmt: skip
