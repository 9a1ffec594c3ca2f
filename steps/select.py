"""Select steps: proxies per candidate, then per task the judged predictor, the ranking of
every candidate and the promotion of the best-predicted one's fine-tuned version."""

from __future__ import annotations

import json
import math
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from zenml import get_step_context, step

from sftcast.data import load_corpus
from sftcast.evaluation import EvaluationConfig
from sftcast.evaluation.report import SFTRecord
from sftcast.promotion import PromotionRefused, promote
from sftcast.proxies import ProxyConfig, compute_proxies, directions, kshot_proxies
from sftcast.selection import ID, TARGET, Selection, SelectionConfig, fit_comparator, select
from sftcast.sft import SFTConfig
from sftcast.tracking import log_json, safe_tags
from sftcast.zoo import ZooConfig
from steps.lineage import MLFLOW_STEP, track
from steps.sft import _task_rows, finetune_and_register


@step(extra={"gpu": True}, **MLFLOW_STEP)
def candidate_proxies(
    candidate: Path,
    uri: str,
    corpus: Path,
    base_scores: dict[str, dict[str, float]],
    proxies: ProxyConfig,
) -> Annotated[dict[str, Any], "proxies"]:
    """Proxy features from the pre-trained weights alone, each with its wall time."""
    track(uri, proxies, params={"candidate": uri, **proxies.model_dump(mode="json")})
    result = compute_proxies(candidate, load_corpus(corpus), proxies)
    values = {**result.values, **kshot_proxies(base_scores)}
    mlflow.log_metrics({f"proxy.{k}": v for k, v in values.items() if math.isfinite(v)})
    mlflow.log_metrics({f"seconds.{k}": v for k, v in result.seconds.items()})
    mlflow.set_tags(safe_tags({"sftcast.candidate": uri}))
    return {"candidate": uri, "values": values, "seconds": result.seconds,
            "base_scores": base_scores}  # fmt: skip


def selection_table(proxy_rows: list[dict[str, Any]], records: list[SFTRecord], task: str):
    """One row per candidate: its proxies, and its post-SFT score when it was labelled."""
    scores = {r.candidate: r.score for r in records if r.task == task and not r.replicate}
    table = pd.DataFrame([{ID: row["candidate"], **row["values"]} for row in proxy_rows])
    table[TARGET] = table[ID].map(scores)
    # a proxy some candidate lacks (e.g. loss_slope of a Hub model) cannot rank them all
    proxies = [c for c in table.columns if c not in (ID, TARGET) and table[c].notna().all()]
    return table, [p for p in proxies if table[p].nunique() > 1]


def _figures(selection: Selection) -> dict[str, Figure]:
    methods = selection.methods
    names = sorted(methods, key=lambda m: -(methods[m]["pairwise_accuracy_mean"] or 0))
    bars = Figure(figsize=(7, 3.5), layout="tight")
    ax = bars.subplots()
    means = [methods[m]["pairwise_accuracy_mean"] or 0 for m in names]
    stds = [methods[m]["pairwise_accuracy_std"] or 0 for m in names]
    ax.bar(names, means, yerr=stds, color=["C3" if m == "ltc" else "C0" for m in names])
    ax.axhline(0.5, color="grey", linestyle="--", label="chance")
    ax.set_ylabel("pairwise accuracy (held-out)")
    ax.set_title(f"{selection.task}: predictors on held-out candidates")
    ax.tick_params(axis="x", rotation=45)
    scatter = Figure(figsize=(4.5, 4), layout="tight")
    ax = scatter.subplots()
    labelled = list(selection.actual)
    ax.scatter([selection.predicted[c] for c in labelled], [selection.actual[c] for c in labelled])
    for c in labelled:
        ax.annotate(
            c.removeprefix("zoo:"), (selection.predicted[c], selection.actual[c]), fontsize=6
        )
    ax.set_xlabel(f"predicted strength ({selection.predictor})")
    ax.set_ylabel("actual post-SFT score")
    ax.set_title(f"{selection.task}: predicted vs actual")
    return {"pairwise_accuracy": bars, "predicted_vs_actual": scatter}


@step(extra={"gpu": True}, **MLFLOW_STEP)
def select_and_promote(
    task: str,
    proxy_rows: list[dict[str, Any]],
    records: list[SFTRecord],
    candidates: list[Path],
    uris: list[str],
    datasets: list[Path],
    tasks: list[str],
    selection: SelectionConfig,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    zoo: ZooConfig,
) -> Annotated[dict[str, Any], "selection"]:
    """Judge the predictors, rank every candidate, promote the best-predicted one."""
    track(task, selection, params={"task": task, **selection.model_dump(mode="json")})
    table, proxies = selection_table(proxy_rows, records, task)
    lower = [p for p in proxies if not directions().get(p, True)]
    chosen = select(task, table, proxies, lower, selection)
    mlflow.log_table(table, f"{task}_candidates.json")
    log_json(chosen.model_dump(mode="json"), f"{task}_selection.json")
    if chosen.methods:  # judged: the pictures and the comparator itself
        for name, figure in _figures(chosen).items():
            mlflow.log_figure(figure, f"figures/{task}_{name}.png")
        _register_comparator(chosen, table, proxies, lower, selection)
    mlflow.log_metrics(
        {f"pairwise_accuracy.{m}": v["pairwise_accuracy_mean"]
         for m, v in chosen.methods.items() if v["pairwise_accuracy_mean"] is not None}
    )  # fmt: skip
    record = next(
        (r for r in records if r.task == task and r.candidate == chosen.best and not r.replicate),
        None,
    )
    if record is None:  # best predicted but never fine-tuned: fine-tune it now
        i = uris.index(chosen.best)
        base = next(row["base_scores"] for row in proxy_rows if row["candidate"] == chosen.best)
        rows = _task_rows(datasets, tasks)
        record = finetune_and_register(
            candidates[i], chosen.best, task, rows, base, sft, evaluation, zoo
        )
    summary = _summary(chosen, record)
    try:
        result = promote(
            record.registered_model,
            record.model_version,
            evidence={
                "ranking": chosen.ranking,
                "predicted": chosen.predicted,
                "pairwise_accuracy": summary["pairwise_accuracy"],
            },
            pipeline_run_id=str(get_step_context().pipeline_run.id),
            predictor=chosen.predictor,
            force=selection.force,
            beats_chance=chosen.beats_chance,
        )  # fmt: skip
        summary |= {"promoted": True, "previous": result.previous, "changed": result.changed}
    except PromotionRefused as refused:
        summary |= {"promoted": False, "refused": str(refused)}
    outcome = {"sftcast.promoted": summary["promoted"], "sftcast.best": chosen.best}
    mlflow.set_tags(safe_tags(outcome))
    return summary


def _register_comparator(
    chosen: Selection,
    table: pd.DataFrame,
    proxies: list[str],
    lower: list[str],
    selection: SelectionConfig,
) -> None:
    """The comparator trained on every labelled candidate, as a registry version carrying its
    features, protocol and held-out scores, with its gain per proxy as a chart."""
    comparator = fit_comparator(table, proxies, lower, selection.seed, selection.comparator)
    gains = dict(zip(proxies, comparator.proxy_importance().tolist(), strict=True))
    chart = Figure(figsize=(6, 3.2), layout="tight")
    ax = chart.subplots()
    ax.barh(list(gains), list(gains.values()))
    ax.set_xlabel("gain, summed over the proxy's 4 pair features")
    ax.set_title(f"{chosen.task}: comparator feature importance")
    mlflow.log_figure(chart, f"figures/{chosen.task}_feature_importance.png")
    info = mlflow.xgboost.log_model(
        comparator.model_,
        name="comparator",
        pip_requirements=[f"xgboost-cpu=={version('xgboost-cpu')}"],
    )
    ltc = chosen.methods["ltc"]
    mlflow.register_model(
        info.model_uri,
        f"sftcast-comparator-{chosen.task}",
        tags=safe_tags(
            {
                "sftcast.features": json.dumps(proxies),
                "sftcast.lower_is_better": json.dumps(lower),
                "sftcast.protocol": json.dumps(chosen.protocol),
                "sftcast.feature_importance": json.dumps(gains),
                "metric.pairwise_accuracy_mean": f"{ltc['pairwise_accuracy_mean']}",
                "metric.kendall_tau_mean": f"{ltc['kendall_tau_mean']}",
                "metric.top1_recall": f"{ltc['top1_recall']}",
            }
        ),
    )


def _summary(chosen: Selection, record: SFTRecord) -> dict[str, Any]:
    accuracy = {m: v["pairwise_accuracy_mean"] for m, v in chosen.methods.items()}
    singles = {
        m: a for m, a in accuracy.items() if m not in ("ltc", "proxy_mean") and a is not None
    }
    best_single = max(singles, key=singles.__getitem__) if singles else None
    return {
        "task": chosen.task,
        "predictor": chosen.predictor,
        "beats_chance": chosen.beats_chance,
        "pairwise_accuracy": accuracy,
        "ppl_clm": accuracy.get("ppl_clm"),
        "best_single_proxy": best_single,
        "best_single_accuracy": singles.get(best_single) if best_single else None,
        "ltc": accuracy.get("ltc"),
        "candidate": chosen.best,
        "score": record.score,
        "model": record.registered_model,
        "version": record.model_version,
        "ranking": chosen.ranking,
        "labelled": len(chosen.actual),
        "top_actual": max(chosen.actual, key=chosen.actual.__getitem__),
        "spread": float(np.std(list(chosen.actual.values()))),
    }
