"""The watch pipeline: one new checkpoint of a watched folder, fetched and verified as any
candidate, its base scores and proxies measured as `select` measures them, then ranked per task
by the comparator in production (and, with `finetune_when: beats-production`, fine-tuned and
promoted if it is ahead). `sftcast watch` runs it once per checkpoint."""

from __future__ import annotations

from zenml import pipeline

from pipelines.data import data_stage
from sftcast.data import DataConfig
from sftcast.evaluation import EvaluationConfig
from sftcast.proxies import ProxyConfig
from sftcast.selection.config import SelectionConfig
from sftcast.sft import SFTConfig
from sftcast.watch.config import WatchConfig
from sftcast.zoo import ZooConfig
from steps.select import candidate_proxies
from steps.sft import evaluate_candidate
from steps.watch import finetune_watched, score_watched
from steps.zoo import fetch_candidate

# `sftcast watch` fills `watch` in for each checkpoint; a run configuration need not have it
NO_CHECKPOINT = WatchConfig()


@pipeline(name="sftcast_watch")
def watch_pipeline(
    data: DataConfig,
    zoo: ZooConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    proxies: ProxyConfig,
    selection: SelectionConfig,
    watch: WatchConfig = NO_CHECKPOINT,
) -> None:
    stage = data_stage(data)
    uri, tasks = watch.uri, list(stage.datasets)
    datasets = [stage.datasets[t] for t in tasks]
    candidate = fetch_candidate(
        uri=uri, zoo=zoo, content_hash=watch.content_hash, id="fetch_checkpoint"
    )
    scoring = selection.finetuned_evaluation(evaluation)  # as `select` scored its candidates
    base = evaluate_candidate(
        candidate=candidate, uri=uri, datasets=datasets, tasks=tasks, evaluation=scoring,
        id="evaluate_checkpoint",
    )  # fmt: skip
    row = candidate_proxies(
        candidate=candidate, uri=uri, corpus=stage.corpus, base_scores=base, proxies=proxies,
        id="proxies_checkpoint",
    )  # fmt: skip
    for task in watch.tasks:
        score = score_watched(
            task=task, row=row, candidate=candidate, watch=watch, sft=sft, id=f"score_{task}"
        )
        if watch.finetune_when == "beats-production":
            finetune_watched(
                score=score, candidate=candidate, datasets=datasets, tasks=tasks,
                base_scores=base, watch=watch, sft=sft, evaluation=scoring, zoo=zoo,
                id=f"finetune_{task}",
            )  # fmt: skip
