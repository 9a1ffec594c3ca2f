"""Data steps: build the corpus and the built-in task datasets, validate every task dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import mlflow
from zenml import step

from materializers import FolderMaterializer
from sftcast.data import DataConfig, build_all, corpus_stats, save_corpus
from sftcast.data.io import save_task_dataset
from sftcast.tracking import log_json
from sftcast.validation import validate_source
from steps.lineage import MLFLOW_STEP, track


# A mapping, not the class alone: ZenML 0.98 spreads a single materializer over a step's
# outputs in set order, which changes its cache key from one process to the next.
@step(
    **MLFLOW_STEP,
    output_materializers={"corpus": FolderMaterializer, "builtin_tasks": FolderMaterializer},
)
def build_data(
    config: DataConfig,
) -> tuple[Annotated[Path, "corpus"], Annotated[Path, "builtin_tasks"]]:
    """The pre-training corpus (named domains) and the built-in task datasets, as files."""
    chash = track(config, params={"seed": config.corpus.seed})
    out = Path(config.output_dir).resolve() / chash
    corpus, datasets, stats = build_all(config)
    save_corpus(corpus, out / "corpus")
    for task, dataset in datasets.items():
        if config.tasks[task].is_builtin:  # users' files are validated where they are
            save_task_dataset(dataset, out / "tasks" / task)
        for split, rows in dataset.num_rows.items():
            mlflow.log_metric(f"{task}.{split}.rows", rows)
    mlflow.log_table(corpus_stats(corpus), "corpus_stats.json")
    log_json(stats, "data_stats.json")
    return out / "corpus", out / "tasks"


@step(**MLFLOW_STEP, output_materializers=FolderMaterializer)
def validate_task_data(
    task: str, builtin_tasks: Path, config: DataConfig
) -> Annotated[Path, "task_dataset"]:
    """Great Expectations over one task's splits; a failure stops the pipeline here."""
    task_config = config.tasks[task]
    track(config, task, params={"task": task, "source": task_config.source})
    source = str(builtin_tasks / task) if task_config.source == "builtin" else task_config.source
    report = validate_source(source, task, bounds=task_config.validation)
    log_json(report.to_dict(), f"validation/{task}.json")
    mlflow.log_metric(f"{task}.validation_failures", len(report.failures))
    report.raise_for_failures()
    return Path(source)
