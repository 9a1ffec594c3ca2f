"""What `select` works from and reports, typed: each candidate's proxies (`ProxyRow`), the
selection table, the figures, and the per-task outcome (`SelectionSummary`) that the CLI
prints and the promotion's evidence quotes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global figure state, no GUI backend
from pydantic import BaseModel, ConfigDict

from sftcast.comparator.report import Lead
from sftcast.comparator.table import RESERVED
from sftcast.evaluation.report import SFTRecord
from sftcast.selection.ranking import ID, TARGET, Selection


class ProxyRow(BaseModel):
    """One candidate's proxies (NaN where one could not be measured), each one's wall time,
    and the base scores its k-shot proxies came from."""

    model_config = ConfigDict(frozen=True)

    candidate: str
    values: dict[str, float]
    seconds: dict[str, float]
    base_scores: dict[str, dict[str, float]]


class SelectionSummary(BaseModel):
    """One task's selection: how the predictors did on held-out candidates, the candidate
    ranked first and its fine-tuned version, and whether `production` moved to it."""

    model_config = ConfigDict(frozen=True)

    task: str
    predictor: str
    beats_chance: bool
    pairwise_accuracy: dict[str, float | None]  # per method, mean over held-out splits
    pairwise_accuracy_std: dict[str, float | None] = {}  # per method, std over those splits
    judged_pairs: int = 0  # scored pairs summed over the judged splits
    protocol: str = ""  # how the predictors were judged
    lead: Lead | None = None  # the best method's lead over the runner-up, with its std
    ppl_clm: float | None
    best_single_proxy: str | None
    best_single_accuracy: float | None
    ltc: float | None
    candidate: str  # the best-predicted candidate (active selection: the best fine-tuned)
    score: float  # its post-SFT score
    model: str | None
    version: str | None
    ranking: list[str]
    labelled: int
    top_actual: str  # the labelled candidate that truly scored best
    spread: float  # std of the labelled candidates' scores
    promoted: bool = False
    previous: str | None = None  # the version `production` left, when promoted
    changed: bool = False  # whether the promotion moved `production`
    refused: str | None = None  # why the gate refused, when it did
    choices: list[dict[str, str]] = []  # active selection: each fine-tuned candidate and why


def selection_table(
    proxy_rows: Sequence[ProxyRow], records: Sequence[SFTRecord], task: str
) -> tuple[pd.DataFrame, list[str]]:
    """One row per candidate: its proxies, and its post-SFT score when it was labelled; and
    the proxies that can rank them all."""
    scores = {r.candidate: r.score for r in records if r.task == task and not r.replicate}
    table = pd.DataFrame([{ID: row.candidate, **row.values} for row in proxy_rows])
    table[TARGET] = table[ID].map(scores)
    # a proxy some candidate lacks (e.g. loss_slope of a Hub model) cannot rank them all
    proxies = [c for c in table.columns if c not in (ID, TARGET) and table[c].notna().all()]
    return table, [p for p in proxies if table[p].nunique() > 1]


def summarize(chosen: Selection, record: SFTRecord) -> SelectionSummary:
    """The selection's outcome, before promotion, with `record` the best-predicted's SFT."""
    accuracy = {m: v.pairwise_accuracy_mean for m, v in chosen.methods.items()}
    accuracy_std = {m: v.pairwise_accuracy_std for m, v in chosen.methods.items()}
    singles = {m: a for m, a in accuracy.items() if m not in RESERVED and a is not None}
    best_single = max(singles, key=singles.__getitem__) if singles else None
    return SelectionSummary(
        task=chosen.task,
        predictor=chosen.predictor,
        beats_chance=chosen.beats_chance,
        pairwise_accuracy=accuracy,
        pairwise_accuracy_std=accuracy_std,
        judged_pairs=chosen.protocol.get("judged_pairs", 0),
        protocol=chosen.protocol.get("name", ""),
        lead=chosen.lead,
        ppl_clm=accuracy.get("ppl_clm"),
        best_single_proxy=best_single,
        best_single_accuracy=singles.get(best_single) if best_single else None,
        ltc=accuracy.get("ltc"),
        candidate=chosen.best,
        score=record.score,
        model=record.registered_model,
        version=record.model_version,
        ranking=chosen.ranking,
        labelled=len(chosen.actual),
        top_actual=max(chosen.actual, key=chosen.actual.__getitem__),
        spread=float(np.std(list(chosen.actual.values()))),
    )


def selection_figures(selection: Selection) -> dict[str, Figure]:
    """Pairwise accuracy per predictor (the comparator in red, chance dashed), and each
    labelled candidate's predicted strength against its actual score."""
    methods = selection.methods
    names = sorted(methods, key=lambda m: -(methods[m].pairwise_accuracy_mean or 0))
    bars = Figure(figsize=(7, 3.5), layout="tight")
    ax = bars.subplots()
    means = [methods[m].pairwise_accuracy_mean or 0 for m in names]
    stds = [methods[m].pairwise_accuracy_std or 0 for m in names]
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


# what a comparator form's importance per proxy measures
IMPORTANCE = {
    "xgboost": "gain, summed over the proxy's 4 pair features",
    "xgboost_monotone": "gain, summed over the proxy's 4 pair features",
    "linear": "|weight| on the standardised proxy difference",
    "best_proxy": "1 for the proxy that ranks, 0 for the others",
    "blend": "share of the boosted and of the linear importance, averaged",
    "ensemble": "share of each part's importance, averaged over its 4 parts",
}


def importance_figure(task: str, gains: Mapping[str, float], form: str) -> Figure:
    """The comparator's importance per proxy, as horizontal bars."""
    chart = Figure(figsize=(6, 3.2), layout="tight")
    ax = chart.subplots()
    ax.barh(list(gains), list(gains.values()))
    ax.set_xlabel(IMPORTANCE[form])
    ax.set_title(f"{task}: comparator ({form}) importance per proxy")
    return chart
