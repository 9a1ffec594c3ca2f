"""One task's selection, inside the active MLflow run: judge the predictors on held-out
candidates, rank every candidate, register the comparator, fine-tune the best-predicted
candidate when it has no version yet, and promote that version unless the gate refuses.

The caller (the `select_<task>` step) passes in the ZenML lineage it knows; the comparator's
version and any version fine-tuned here carry it, as every fine-tuned version does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from sftcast.data.rows import task_rows
from sftcast.evaluation.report import SFTRecord
from sftcast.promotion import PRODUCTION, PromotionRefused, promote
from sftcast.proxies.registry import lower_is_better
from sftcast.registry import Lineage, register_comparator
from sftcast.selection.config import TAG_MEASUREMENT_KEY, SelectionSettings
from sftcast.selection.ranking import ID, TARGET, Selection, fit_comparator, select
from sftcast.selection.report import (
    ProxyRow,
    SelectionSummary,
    importance_figure,
    selection_figures,
    selection_table,
    summarize,
)
from sftcast.sft.service import finetune_and_register
from sftcast.tracking import config_hash, log_json

# the comparator's held-out scores its registered version carries as `metric.<name>` tags
COMPARATOR_METRICS = (
    "pairwise_accuracy_mean", "pairwise_accuracy_std", "kendall_tau_mean", "top1_recall"
)  # fmt: skip


def promote_best_predicted(
    task: str,
    proxy_rows: Sequence[ProxyRow],
    records: Sequence[SFTRecord],
    candidates: Mapping[str, Path],
    datasets: Mapping[str, Path],
    settings: SelectionSettings,
    lineage: Lineage,
) -> SelectionSummary:
    """`candidates`: URI -> local folder, every candidate; `datasets`: task -> validated
    dataset; `records`: the labelled candidates' SFT."""
    selection = settings.selection
    table, proxies = selection_table(proxy_rows, records, task)
    lower = lower_is_better(proxies)
    chosen = select(task, table, proxies, lower, selection)
    _log_selection(chosen, table)
    comparator = None
    if chosen.methods:  # judged: the comparator can be trained and registered
        comparator = _register_comparator(chosen, table, proxies, lower, settings, lineage)
    own = [r for r in records if r.task == task and not r.replicate]
    if selection.active is not None:  # a score in hand beats a prediction: the best fine-tuned
        record = max(own, key=lambda r: r.score)
    else:
        record = next((r for r in own if r.candidate == chosen.best), None)
    if record is None:  # best predicted but never fine-tuned: fine-tune it now
        base = next(row.base_scores for row in proxy_rows if row.candidate == chosen.best)
        record = finetune_and_register(
            candidates[chosen.best], chosen.best, task, task_rows(datasets), base, settings.sft,
            settings.evaluation, settings.zoo, lineage,
        )  # fmt: skip
    summary = summarize(chosen, record).model_copy(
        update={
            "candidate": record.candidate,  # active selection: the best fine-tuned, not predicted
            "choices": [{"candidate": r.candidate, "why": r.choice} for r in own if r.choice],
        }
    )
    summary = _promote(summary, chosen, record, selection.force, lineage)
    if summary.promoted and comparator is not None:
        # the comparator behind the production model is the one `watch` ranks new checkpoints
        # with: it holds `production` of its own registered model
        mlflow.MlflowClient().set_registered_model_alias(
            comparator.name, PRODUCTION, comparator.version
        )
    return summary


def _log_selection(chosen: Selection, table: pd.DataFrame) -> None:
    """The table, the selection, the held-out accuracies and, when judged, the figures."""
    mlflow.log_table(table, f"{chosen.task}_candidates.json")
    log_json(chosen.model_dump(mode="json"), f"{chosen.task}_selection.json")
    for name, figure in (selection_figures(chosen) if chosen.methods else {}).items():
        mlflow.log_figure(figure, f"figures/{chosen.task}_{name}.png")
    mlflow.log_metrics(
        {f"pairwise_accuracy.{m}": v.pairwise_accuracy_mean
         for m, v in chosen.methods.items() if v.pairwise_accuracy_mean is not None}
    )  # fmt: skip


def _register_comparator(
    chosen: Selection,
    table: pd.DataFrame,
    proxies: list[str],
    lower: list[str],
    settings: SelectionSettings,
    lineage: Lineage,
) -> ModelVersion:
    """The comparator trained on every labelled candidate, as a registry version carrying its
    features, protocol, held-out scores, how its proxies were measured and its lineage, with
    its gain per proxy as a chart."""
    selection = settings.selection
    comparator = fit_comparator(table, proxies, lower, selection.seed, selection.comparator)
    gains = dict(zip(proxies, comparator.proxy_importance().tolist(), strict=True))
    mlflow.log_figure(
        importance_figure(chosen.task, gains, comparator.form_),
        f"figures/{chosen.task}_feature_importance.png",
    )
    # what the version is made from: the labelled rows, the features and the protocol (its
    # held-out scores depend on that too); the same key registers nothing new
    labelled = table.loc[table[TARGET].notna(), [ID, *proxies, TARGET]]
    key = config_hash(labelled.to_dict(orient="records"), proxies, lower, chosen.protocol)
    ltc = chosen.methods["ltc"]
    return register_comparator(
        comparator,
        labelled[proxies],
        lower,
        chosen.task,
        key,
        tags={
            "sftcast.features": json.dumps(proxies),
            "sftcast.lower_is_better": json.dumps(lower),
            "sftcast.protocol": json.dumps(chosen.protocol),
            "sftcast.feature_importance": json.dumps(gains),
            "sftcast.form": comparator.form_,
            "sftcast.form_inner_accuracy": json.dumps(comparator.inner_accuracy_),
            TAG_MEASUREMENT_KEY: settings.measurement_key(),
            **lineage.tags(),
        },
        metrics={m: v for m in COMPARATOR_METRICS if (v := getattr(ltc, m)) is not None},
    )


def _promote(
    summary: SelectionSummary,
    chosen: Selection,
    record: SFTRecord,
    force: bool,
    lineage: Lineage,
) -> SelectionSummary:
    """Move `production` to the chosen candidate's version, or say why not."""
    try:
        result = promote(
            record.registered_model,
            record.model_version,
            evidence={
                "ranking": chosen.ranking,
                "predicted": chosen.predicted,
                "pairwise_accuracy": summary.pairwise_accuracy,
                "pairwise_accuracy_std": summary.pairwise_accuracy_std,
                # whether the best predictor's lead over the runner-up exceeds its spread
                **({"lead": summary.lead.to_dict()} if summary.lead else {}),
                # active selection: the order in which candidates were fine-tuned, and why
                **({"choices": summary.choices} if summary.choices else {}),
            },
            pipeline_run_id=lineage.pipeline_run_id,
            predictor=chosen.predictor,
            force=force,
            beats_chance=chosen.beats_chance,
        )
    except PromotionRefused as refused:
        return summary.model_copy(update={"refused": str(refused)})
    return summary.model_copy(
        update={"promoted": True, "previous": result.previous, "changed": result.changed}
    )
