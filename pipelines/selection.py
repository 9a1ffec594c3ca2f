"""The main pipeline: validated data -> candidates -> proxies for all -> SFT + evaluation for
the labelled ones (chosen up front, or round by round with the active strategy) -> per task,
judge the predictors, rank every candidate and promote to `production` the best-predicted
candidate's fine-tuned version (active: the best fine-tuned one's)."""

from __future__ import annotations

from zenml import pipeline

from pipelines.data import data_stage
from pipelines.sft import sft_stage, step_slug
from pipelines.zoo import zoo_stage
from sftcast.data import DataConfig
from sftcast.evaluation import EvaluationConfig
from sftcast.proxies import ProxyConfig
from sftcast.selection.config import SelectionConfig, SelectionSettings
from sftcast.sft import SFTConfig
from sftcast.zoo import ZooConfig
from steps.select import active_round, candidate_proxies, select_and_promote
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
    # no seed replicates, prompt formats or forgetting here, for the base models either (the
    # k-shot proxies are their training-format scores): they are the `sft` pipeline's study
    scoring = selection.finetuned_evaluation(evaluation)
    records, base_scores = sft_stage(
        candidates, stage.datasets, zoo, sft, scoring, labelled, replicates=False
    )
    proxy_rows = [
        candidate_proxies(
            candidate=candidates[uri], uri=uri, corpus=stage.corpus,
            base_scores=base_scores[uri], proxies=proxies, id=f"proxies_{step_slug(uri)}",
        )
        for uri in uris
    ]  # fmt: skip
    tasks = list(stage.datasets)
    settings = SelectionSettings(
        selection=selection,
        sft=sft,
        evaluation=scoring,
        zoo=zoo,
        uris=uris,
        tasks=tasks,
        proxies=proxies,
    )
    shared = {
        "proxy_rows": proxy_rows, "candidates": [candidates[u] for u in uris],
        "datasets": [stage.datasets[t] for t in tasks], "settings": settings,
    }  # fmt: skip
    per_task = {task: records for task in sft.tasks}
    if selection.active is not None:  # rounds unrolled to the budget, one step each
        for task in sft.tasks:
            per_task[task] = []
            for r in range(1, selection.active.budget + 1):
                step_id = f"active_{task}_{r}"
                record = active_round(
                    task=task, previous=list(per_task[task]), **shared, id=step_id
                )
                per_task[task].append(record)
        records = [r for task in sft.tasks for r in per_task[task]]
    sft_report(records=records)
    for task in sft.tasks:
        select_and_promote(task=task, records=per_task[task], **shared, id=f"select_{task}")
