"""`compare_table`: the comparator against every single proxy and their mean, each judged on
candidates it never saw, as a JSON-ready report; `report_table` shows it with rich.

Methods: each proxy column (ranking by its own, direction-corrected value), `proxy_mean` (mean
of the standardised, direction-corrected proxies) and `ltc` (learning to compare).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table
from sklearn.preprocessing import StandardScaler

from sftcast.comparator.features import labelled_pairs
from sftcast.comparator.metrics import (
    kendall_tau,
    pairwise_accuracy,
    preference_from_scores,
    topk_recall,
)
from sftcast.comparator.model import (
    DEFAULT_SETTINGS,
    Comparator,
    ComparatorSettings,
    borda_scores,
)
from sftcast.comparator.protocols import Split, leave_one_group_out, random_splits
from sftcast.comparator.table import Candidates, ComparatorInputError, check_table

METRICS = ("pairwise_accuracy", "kendall_tau", "top1_recall", "topk_recall")
# per metric: its mean and its std over splits (population std; NaN-free when there is one split)
METHOD_KEYS = (
    "pairwise_accuracy_mean",
    "pairwise_accuracy_std",
    "kendall_tau_mean",
    "kendall_tau_std",
    "top1_recall",
    "top1_recall_std",
    "topk_recall",
    "topk_recall_std",
)
REPORT_KEYS = ("target", "n_candidates", "n_pairs", "protocol", "methods", "feature_importance")


def compare_table(
    df: pd.DataFrame,
    id_column: str,
    target: str,
    proxies: Sequence[str],
    lower_is_better: Sequence[str] = (),
    splits: int = 20,
    train_fraction: float = 0.6,
    seed: int = 0,
    top_k: int = 3,
    groups: str | None = None,
    comparator: ComparatorSettings = DEFAULT_SETTINGS,
) -> dict[str, Any]:
    """Validate the table, evaluate every method under the protocol (leave-one-group-out on
    `groups` when given, else `splits` random splits), and report means and stds over splits,
    with the comparator's gain per proxy when trained on every candidate."""
    if top_k < 1:
        raise ComparatorInputError(f"top k is {top_k}; it must be at least 1")
    candidates = check_table(df, id_column, target, proxies, lower_is_better, groups)
    n = len(candidates.ids)
    if candidates.groups is not None:
        plan = leave_one_group_out(candidates.groups)
        protocol = {
            "name": "leave_one_group_out",
            "group_column": groups,
            "groups": sorted(set(candidates.groups.tolist())),
            "splits": len(plan),
        }
    else:
        plan = random_splits(n, splits, train_fraction, seed)
        protocol = {
            "name": "random_splits",
            "splits": splits,
            "train_fraction": train_fraction,
            "n_train": len(plan[0].train),
            "n_test": len(plan[0].test),
        }
    # A split whose training side has a single target value teaches nothing: it is skipped
    # (small labelled pools with ties hit this), and the report says how many were.
    usable = [s for s in plan if np.unique(candidates.target[s.train]).size > 1]
    protocol.update(seed=seed, top_k=top_k, skipped_splits=len(plan) - len(usable))
    if not usable:
        raise ComparatorInputError(
            "every split's training candidates share one target value; label more candidates"
        )
    scores = [evaluate_split(candidates, split, top_k, seed, comparator) for split in usable]
    methods = {name: _summary([s[name] for s in scores]) for name in scores[0]}
    importance = Comparator.from_settings(comparator, seed).fit(
        candidates.proxies, candidates.target
    )
    return {
        "target": target,
        "n_candidates": n,
        "n_pairs": len(labelled_pairs(candidates.target)[0]) // 2,
        "protocol": protocol,
        "methods": methods,
        "feature_importance": dict(
            zip(candidates.proxy_names, map(float, importance.proxy_importance()), strict=True)
        ),
    }


def evaluate_split(
    candidates: Candidates,
    split: Split,
    top_k: int = 3,
    seed: int = 0,
    comparator: ComparatorSettings = DEFAULT_SETTINGS,
) -> dict[str, dict[str, float]]:
    """Every method's metrics on the split's test candidates, fitting only on its train side."""
    train_x, test_x = candidates.proxies[split.train], candidates.proxies[split.test]
    train_y, test_y = candidates.target[split.train], candidates.target[split.test]
    if np.all(train_y == train_y[0]):
        raise ComparatorInputError(f"{split.name}: every training candidate has the same target")
    predictions = {
        name: (preference_from_scores(test_x[:, k]), test_x[:, k])
        for k, name in enumerate(candidates.proxy_names)
    }
    mean = StandardScaler().fit(train_x).transform(test_x).mean(axis=1)
    predictions["proxy_mean"] = (preference_from_scores(mean), mean)
    f = Comparator.from_settings(comparator, seed).fit(train_x, train_y).preference(test_x)
    predictions["ltc"] = (f, borda_scores(f))
    return {
        name: {
            "pairwise_accuracy": pairwise_accuracy(preference, test_y),
            "kendall_tau": kendall_tau(ranking, test_y),
            "top1_recall": topk_recall(ranking, test_y, 1),
            "topk_recall": topk_recall(ranking, test_y, top_k),
        }
        for name, (preference, ranking) in predictions.items()
    }


def _summary(per_split: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean and std over the splits where a metric is defined; None where it never is."""
    out: dict[str, float | None] = {}
    for metric in METRICS:
        values = np.array([s[metric] for s in per_split])
        values = values[~np.isnan(values)]
        mean = float(values.mean()) if len(values) else None
        std = float(values.std()) if len(values) else None
        out[f"{metric}_mean" if metric in ("pairwise_accuracy", "kendall_tau") else metric] = mean
        out[f"{metric}_std"] = std
    return out


def report_table(report: dict[str, Any]) -> Table:
    protocol = report["protocol"]
    how = (
        f"leave one {protocol['group_column']!r} out ({protocol['splits']} groups)"
        if protocol["name"] == "leave_one_group_out"
        else f"{protocol['splits']} random splits, {protocol['n_train']} train / "
        f"{protocol['n_test']} test candidates"
    )
    # column names are user text: escaped, so that "[...]" in one is not read as rich markup
    table = Table(title=escape(f"{report['target']}: {report['n_candidates']} candidates, {how}"))
    for header in ("method", "pairwise accuracy", "Kendall tau", "top-1 recall"):
        table.add_column(header, justify="left" if header == "method" else "right")
    table.add_column(f"top-{protocol['top_k']} recall", justify="right")
    for name, m in report["methods"].items():
        table.add_row(
            escape(name),
            f"{_num(m['pairwise_accuracy_mean'])} ± {_num(m['pairwise_accuracy_std'])}",
            _num(m["kendall_tau_mean"]),
            _num(m["top1_recall"]),
            _num(m["topk_recall"]),
        )
    return table


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
