"""The study's pictures: pairwise accuracy per method and task, predicted against actual
post-SFT score (out of fold), and Amuro & Char's base vs fine-tuned score by checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from sklearn.model_selection import KFold

from sftcast.comparator import check_table
from sftcast.comparator.forms import ChosenComparator
from sftcast.evaluation.report import plot_base_vs_finetuned
from sftcast.proxies.registry import lower_is_better
from sftcast.study.summary import best_single_proxy
from sftcast.study.table import target_column

SHOWN = ("ppl_clm", "best single proxy", "proxy_mean", "ltc_pretraining", "ltc")


def plot_accuracy(summary: dict[str, Any], protocol: str) -> Figure:
    """Grouped bars: per task, ppl_clm, the best single proxy, proxy_mean and the comparator
    without and with probes; error bars are the std over splits."""
    tasks = [t for t, entry in summary["tasks"].items() if "skipped" not in entry[protocol]]
    fig = Figure(figsize=(2.6 * len(tasks) + 2, 3.8), layout="tight")
    ax = fig.subplots()
    width = 0.8 / len(SHOWN)
    for k, label in enumerate(SHOWN):
        means, stds = [], []
        for task in tasks:
            methods = summary["tasks"][task][protocol]
            name = best_single_proxy(methods) if label == "best single proxy" else label
            found = methods.get(name, {})  # a constant proxy is not judged
            means.append(found.get("pairwise_accuracy_mean") or np.nan)
            stds.append(found.get("pairwise_accuracy_std") or 0.0)
        x = np.arange(len(tasks)) + (k - (len(SHOWN) - 1) / 2) * width
        ax.bar(x, means, width, yerr=stds, capsize=2, label=label, color=f"C{k}")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set_ylim(0, 1)
    ax.set_ylabel("pairwise accuracy (held-out)")
    ax.set_title(f"{summary['n_candidates']} candidates, {protocol} protocol (mean ± std)")
    ax.legend(fontsize=7, ncols=3, loc="lower center")
    return fig


def out_of_fold_strength(
    df: pd.DataFrame, task: str, proxies: Sequence[str], folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's predicted win probability against the candidates of the other folds
    (the comparator fitted on those only), and its actual score."""
    candidates = check_table(
        df, "candidate", target_column(task), list(proxies), lower_is_better(proxies)
    )
    x, y = candidates.proxies, candidates.target
    predicted = np.empty(len(y))
    for train, test in KFold(min(folds, len(y)), shuffle=True, random_state=seed).split(x):
        if np.all(y[train] == y[train][0]):  # nothing to learn from: no preference
            predicted[test] = 0.5
            continue
        comparator = ChosenComparator(seed=seed).fit(x[train], y[train])
        f = comparator.preference(np.concatenate([x[test], x[train]]))
        predicted[test] = f[: len(test), len(test) :].mean(axis=1)
    return predicted, y


def plot_predicted_vs_actual(df: pd.DataFrame, proxies_by_task: dict[str, list[str]]) -> Figure:
    tasks = list(proxies_by_task)
    fig = Figure(figsize=(3.6 * len(tasks), 3.4), layout="tight")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        predicted, actual = out_of_fold_strength(df, task, proxies_by_task[task])
        rho = spearmanr(predicted, actual).statistic
        ax.scatter(predicted, actual, s=10, alpha=0.7)
        ax.set_xlabel("predicted win probability vs the pool (out of fold)")
        ax.set_ylabel(f"{task} score after SFT")
        ax.set_title(f"{task}: Spearman {rho:.2f}")
        ax.grid(alpha=0.3)
    return fig


def plot_study_scores_by_step(df: pd.DataFrame, task: str) -> Figure:
    frame = df.rename(columns={f"kshot_{task}": "base", target_column(task): "score"})
    return plot_base_vs_finetuned(
        frame[["variant", "family", "checkpoint_step", "base", "score"]].astype(
            {"checkpoint_step": int, "base": float, "score": float}
        ),
        task,
    )
