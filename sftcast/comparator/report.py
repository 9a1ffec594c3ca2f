"""`compare_table`: the comparator against every single proxy and their mean, each judged on
candidates it never saw, as a JSON-ready report; `report_table` shows it with rich on a
terminal, `report_lines` as plain lines elsewhere.

Methods: each proxy column (ranking by its own, direction-corrected value), `proxy_mean` (mean
of the standardised, direction-corrected proxies) and `ltc` (learning to compare).

A split is judged only when it has something to learn and something to score: training
candidates with two targets or more, and a held-out pair with unequal targets. The report says
how many splits and held-out pairs were judged, and why the others were not; with none judged
there is no judgement, and `compare_table` raises. The report also records what it judged (the
input file and its sha256, the proxies and their directions) so that it can be re-run.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table
from sklearn.preprocessing import StandardScaler

from sftcast.comparator.features import check_standardising, labelled_pairs
from sftcast.comparator.forms import ChosenComparator
from sftcast.comparator.metrics import (
    kendall_tau,
    pairwise_accuracy,
    preference_from_scores,
    topk_recall,
)
from sftcast.comparator.model import DEFAULT_SETTINGS, ComparatorSettings, borda_scores
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
REPORT_KEYS = (
    "input",
    "target",
    "proxies",
    "n_candidates",
    "n_pairs",
    "protocol",
    "comparator",
    "methods",
    "ranking",
    "feature_importance",
)
# Why a split is not judged: its training side teaches nothing, or its held-out side has no
# pair with unequal targets, on which every metric is undefined or trivially perfect.
TIED_TRAINING, TIED_HELD_OUT = "training_targets_all_equal", "held_out_targets_all_equal"


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
    `groups` when given, else `splits` random splits), and report means and stds over the
    judged splits, with the comparator's gain per proxy when trained on every candidate.
    Raises `ComparatorInputError` when no split can be judged."""
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
    judged, skipped = _judged_splits(candidates, plan)
    judged_pairs = sum(_held_out_pairs(candidates, s) for s in judged)
    protocol.update(
        seed=seed,
        top_k=top_k,
        judged_splits=len(judged),
        judged_pairs=judged_pairs,
        skipped_splits=len(plan) - len(judged),
        skipped=skipped,
    )
    if not judged:
        raise ComparatorInputError(
            f"{candidates.source}: nothing to judge: of {len(plan)} split(s), "
            f"{skipped[TIED_TRAINING]} train on candidates that all share one target and "
            f"{skipped[TIED_HELD_OUT]} hold out candidates whose targets all tie; label more "
            "candidates with distinct targets"
        )
    everyone = np.arange(n)
    final = Split("the final fit on every candidate", everyone, everyone)
    check_standardising(candidates, [*judged, final])
    judgements = [evaluate_split(candidates, split, top_k, seed, comparator) for split in judged]
    scores = [metrics for metrics, _ in judgements]
    methods = {name: _summary([s[name] for s in scores]) for name in scores[0]}
    final_fit = ChosenComparator(comparator, seed).fit(candidates.proxies, candidates.target)
    return {
        "input": {
            "path": candidates.source,
            "sha256": df.attrs.get("sha256"),
            "id_column": id_column,
        },
        "target": target,
        "proxies": {p: {"lower_is_better": p in lower_is_better} for p in proxies},
        "n_candidates": n,
        "n_pairs": len(labelled_pairs(candidates.target)[0]) // 2,
        "protocol": protocol,
        "comparator": {
            **comparator.model_dump(),
            # `auto`: the form each split's training side chose, and the one every candidate
            # chooses (the comparator `select` would rank with)
            "forms_per_split": dict(Counter(form for _, form in judgements).most_common()),
            "final_form": final_fit.form_,
            "final_inner_accuracy": final_fit.inner_accuracy_,
        },
        "methods": methods,
        "ranking": method_ranking(methods),
        "feature_importance": dict(
            zip(candidates.proxy_names, map(float, final_fit.proxy_importance()), strict=True)
        ),
    }


def _held_out_pairs(candidates: Candidates, split: Split) -> int:
    """Unordered held-out pairs with unequal targets: the pairs a split is judged on."""
    return len(labelled_pairs(candidates.target[split.test])[0]) // 2


def _judged_splits(candidates: Candidates, plan: list[Split]) -> tuple[list[Split], dict[str, int]]:
    """The splits that can be judged, and how many were skipped for each reason (small
    labelled pools with ties hit both)."""
    skipped = {TIED_TRAINING: 0, TIED_HELD_OUT: 0}
    judged = []
    for split in plan:
        if np.unique(candidates.target[split.train]).size < 2:
            skipped[TIED_TRAINING] += 1
        elif not _held_out_pairs(candidates, split):
            skipped[TIED_HELD_OUT] += 1
        else:
            judged.append(split)
    return judged, skipped


def method_ranking(methods: dict[str, dict[str, float | None]]) -> list[str]:
    """Method names, best first: by mean pairwise accuracy, then Kendall tau, then name."""

    def key(name: str) -> tuple[float, float, str]:
        m = methods[name]
        accuracy, tau = m["pairwise_accuracy_mean"], m["kendall_tau_mean"]
        return (-(accuracy if accuracy is not None else -np.inf),
                -(tau if tau is not None else -np.inf), name)  # fmt: skip

    return sorted(methods, key=key)


def evaluate_split(
    candidates: Candidates,
    split: Split,
    top_k: int = 3,
    seed: int = 0,
    comparator: ComparatorSettings = DEFAULT_SETTINGS,
) -> tuple[dict[str, dict[str, float]], str]:
    """Every method's metrics on the split's test candidates, fitting only on its train side,
    and the form the comparator chose there."""
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
    ltc = ChosenComparator(comparator, seed).fit(train_x, train_y)
    f = ltc.preference(test_x)
    predictions["ltc"] = (f, borda_scores(f))
    metrics = {
        name: {
            "pairwise_accuracy": pairwise_accuracy(preference, test_y),
            "kendall_tau": kendall_tau(ranking, test_y),
            "top1_recall": topk_recall(ranking, test_y, 1),
            "topk_recall": topk_recall(ranking, test_y, top_k),
        }
        for name, (preference, ranking) in predictions.items()
    }
    return metrics, ltc.form_


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


def report_title(report: dict[str, Any]) -> str:
    """What was judged, and on how much: the splits and held-out pairs actually judged."""
    protocol = report["protocol"]
    judged = f"{protocol['judged_splits']} of {protocol['splits']}"
    if protocol["name"] == "leave_one_group_out":
        how = f"leave one {protocol['group_column']!r} out, {judged} groups judged"
    else:
        how = (
            f"{judged} random splits judged, {protocol['n_train']} train / "
            f"{protocol['n_test']} test candidates"
        )
    return (
        f"{report['target']}: {report['n_candidates']} candidates, {how}, "
        f"{protocol['judged_pairs']} held-out pairs"
    )


def form_note(report: dict[str, Any]) -> str:
    """Which form the comparator (`ltc`) took in the judged splits and on every candidate."""
    comparator = report["comparator"]
    per_split = ", ".join(f"{form} {n}" for form, n in comparator["forms_per_split"].items())
    return (
        f"comparator form ({comparator['form']}): {per_split} of the judged splits; "
        f"{comparator['final_form']} on every candidate"
    )


def skipped_note(report: dict[str, Any]) -> str | None:
    """A warning when some splits could not be judged, with why; None when all were."""
    protocol = report["protocol"]
    if not protocol["skipped_splits"]:
        return None
    skipped = protocol["skipped"].items()
    reasons = ", ".join(f"{count} with {why.replace('_', ' ')}" for why, count in skipped if count)
    return (
        f"{protocol['skipped_splits']} of {protocol['splits']} splits not judged ({reasons}); "
        f"the scores rest on {protocol['judged_splits']} split(s) and "
        f"{protocol['judged_pairs']} held-out pairs"
    )


def report_rows(report: dict[str, Any]) -> list[list[str]]:
    """The header and one row per method, best first, as text."""
    header = ["method", "pairwise accuracy", "Kendall tau", "top-1 recall"]
    rows = [[*header, f"top-{report['protocol']['top_k']} recall"]]
    for name in report["ranking"]:
        m = report["methods"][name]
        accuracy = _num(m["pairwise_accuracy_mean"])
        if m["pairwise_accuracy_mean"] is not None:
            accuracy += f" ± {_num(m['pairwise_accuracy_std'])}"
        rows.append(
            [name, accuracy, _num(m["kendall_tau_mean"]), _num(m["top1_recall"]),
             _num(m["topk_recall"])]
        )  # fmt: skip
    return rows


def rows_table(title: str, rows: list[list[str]]) -> Table:
    """A header row and text rows as a table for a terminal, first column left-aligned."""
    header, *body = rows
    # cells are user text (column names, ids): escaped, so "[...]" is not read as rich markup
    table = Table(title=escape(title))
    for k, column in enumerate(header):
        # fold, never cut: a candidate id or URI is read whole
        table.add_column(escape(column), justify="left" if k == 0 else "right", overflow="fold")
    for row in body:
        table.add_row(*map(escape, row))
    return table


def rows_lines(title: str, rows: list[list[str]]) -> list[str]:
    """A header row and text rows as plain lines, for a pipe or a file: the title, then
    aligned columns that no terminal width wraps."""
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return [title] + [
        "  ".join(
            cell.ljust(width) if k == 0 else cell.rjust(width)
            for k, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def report_table(report: dict[str, Any]) -> Table:
    """The report for a terminal."""
    return rows_table(report_title(report), report_rows(report))


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as plain lines, for a pipe or a file."""
    return rows_lines(report_title(report), report_rows(report))


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def unwritable(output: Path, table: Path) -> str | None:
    """Why a report cannot be written to `output`, or None: checked before any work. Missing
    folders are fine (the command creates them) when the nearest existing one takes a file.
    Writing is tried, not inferred from permissions, which root and read-only mounts defeat."""
    if output.is_dir():
        return "is a directory; give a file path for the report"
    if output.exists() and output.resolve() == table.resolve():
        return "is the input table; the report would overwrite it"
    folder = output.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot be created: {folder} is a file, not a folder"
    try:
        if output.exists():
            with output.open("a"):  # opened for appending, nothing written
                pass
        else:
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as err:
        return f"cannot be written: {err.strerror or err} in {folder}"
    return None
