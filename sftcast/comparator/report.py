"""`compare_table`: the comparator against every single proxy and their mean, each judged on
candidates it never saw, as a JSON-ready report; `report_table` shows it with rich on a
terminal, `report_lines` as plain lines elsewhere.

Methods: each proxy column (ranking by its own, direction-corrected value), `proxy_mean` (mean
of the standardised, direction-corrected proxies) and `ltc` (learning to compare). Protocols
(which splits, which pairs are scored): protocols.py and scoring.py.

A split is judged only when it has something to learn and something to score: training
candidates with two targets or more, and a held-out pair with unequal targets. The report says
how many splits and scored pairs were judged, and why the others were not; with none judged
there is no judgement, and `compare_table` raises. The report also records what it judged (the
input file and its sha256, the proxies and their directions) so that it can be re-run, and
whether the best method's lead over the runner-up is beyond one std over splits (`lead`).

With the seed noise of the target (its std over fine-tuning seeds), pairwise accuracy is also
reported on the *clear* pairs, whose targets differ by more than twice that noise: on the
others, the target's own order is close to a coin toss.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from rich.markup import escape
from rich.table import Table

from sftcast.comparator.features import check_standardising, labelled_pairs
from sftcast.comparator.forms import ChosenComparator
from sftcast.comparator.metrics import (
    accuracy_on_pairs,
    best_in_top_k,
    kendall_tau,
    topk_recall,
)
from sftcast.comparator.model import DEFAULT_SETTINGS, ComparatorSettings
from sftcast.comparator.protocols import (
    Split,
    leave_one_group_out,
    random_splits,
    resolve_protocol,
)
from sftcast.comparator.scoring import ScoredPairs, predict_split, scored_pairs
from sftcast.comparator.table import Candidates, ComparatorInputError, check_table

METRICS = (
    "pairwise_accuracy",
    "kendall_tau",
    "top1_recall",
    "topk_recall",
    "best_in_topk",
    "pairwise_accuracy_clear",  # only with a seed noise
)
MEAN_SUFFIXED = ("pairwise_accuracy", "kendall_tau", "pairwise_accuracy_clear")
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
    "best_in_topk",
    "best_in_topk_std",
)
CLEAR_KEYS = ("pairwise_accuracy_clear_mean", "pairwise_accuracy_clear_std")  # with a seed noise
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
    "lead",
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
    *,
    protocol: str | None = None,
    seed_noise: float | None = None,
    jobs: int = 1,
    final_fit: bool = True,
) -> dict[str, Any]:
    """Validate the table, evaluate every method under the protocol (`paper`: `splits` random
    splits; `group`: leave-one-group-out on `groups`, the default when it is given;
    `deployment`: the random splits, scored on held-out x training pairs), and report means
    and stds over the judged splits, with the comparator's gain per proxy when trained on every
    candidate. With `seed_noise`, also the accuracy on pairs whose targets differ by more than
    twice it. `jobs` processes judge the splits (the comparator's fits dominate at a hundred
    candidates). `final_fit=False` leaves out the fit on every candidate (the report's final
    form and feature importance are then None): a third of the cost at a hundred candidates,
    for a caller that wants the judgement alone. Raises `ComparatorInputError` when no split
    can be judged."""
    if top_k < 1:
        raise ComparatorInputError(f"top k is {top_k}; it must be at least 1")
    if seed_noise is not None and not (np.isfinite(seed_noise) and seed_noise >= 0):
        raise ComparatorInputError(f"seed noise is {seed_noise}; it must be a finite number >= 0")
    name = resolve_protocol(protocol, groups)
    candidates = check_table(df, id_column, target, proxies, lower_is_better, groups)
    n = len(candidates.ids)
    plan, record = _plan(name, candidates, groups, splits, train_fraction, seed)
    judged, skipped = _judged_splits(candidates, plan)
    pairs = [scored_pairs(split, candidates.target, name == "deployment") for split in judged]
    record.update(
        seed=seed,
        top_k=top_k,
        judged_splits=len(judged),
        judged_pairs=sum(map(len, pairs)),  # under deployment: held-out x training pairs
        skipped_splits=len(plan) - len(judged),
        skipped=skipped,
    )
    clear_gap = None if seed_noise is None else 2 * seed_noise
    if clear_gap is not None:
        clear_pairs = sum(int(p.clear(candidates.target, clear_gap).sum()) for p in pairs)
        record.update(seed_noise=seed_noise, clear_gap=clear_gap, clear_pairs=clear_pairs)
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
    # splits are independent and seeded: the same judgement on any number of processes
    judgements = Parallel(n_jobs=jobs)(
        delayed(_judge)(candidates, split, split_pairs, top_k, seed, comparator, clear_gap)
        for split, split_pairs in zip(judged, pairs, strict=True)
    )
    scores = [metrics for metrics, _ in judgements]
    methods = {method: _summary([s[method] for s in scores]) for method in scores[0]}
    ranking = method_ranking(methods)
    fitted = (
        ChosenComparator(comparator, seed).fit(candidates.proxies, candidates.target)
        if final_fit
        else None
    )
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
        "protocol": record,
        "comparator": {
            **comparator.model_dump(),
            # `auto`: the form each split's training side chose, and the one every candidate
            # chooses (the comparator `select` would rank with)
            "forms_per_split": dict(Counter(form for _, form in judgements).most_common()),
            "final_form": None if fitted is None else fitted.form_,
            "final_inner_accuracy": None if fitted is None else fitted.inner_accuracy_,
        },
        "methods": methods,
        "ranking": ranking,
        "lead": lead(scores, ranking),
        "feature_importance": None
        if fitted is None
        else dict(zip(candidates.proxy_names, map(float, fitted.proxy_importance()), strict=True)),
    }


def _plan(
    protocol: str,
    candidates: Candidates,
    groups: str | None,
    splits: int,
    train_fraction: float,
    seed: int,
) -> tuple[list[Split], dict[str, Any]]:
    """The protocol's splits, and its record in the report."""
    if protocol == "group":
        plan = leave_one_group_out(candidates.groups)
        return plan, {
            "name": "leave_one_group_out",
            "group_column": groups,
            "groups": sorted(set(candidates.groups.tolist())),
            "splits": len(plan),
        }
    plan = random_splits(len(candidates.ids), splits, train_fraction, seed)
    return plan, {
        # the paper's protocol keeps its name of old: `select` hashes this record
        "name": "random_splits" if protocol == "paper" else "deployment",
        "splits": splits,
        "train_fraction": train_fraction,
        "n_train": len(plan[0].train),
        "n_test": len(plan[0].test),
    }


def _held_out_pairs(candidates: Candidates, split: Split) -> int:
    """Unordered held-out pairs with unequal targets: the pairs a split is judged on."""
    return len(labelled_pairs(candidates.target[split.test])[0]) // 2


def _judged_splits(candidates: Candidates, plan: list[Split]) -> tuple[list[Split], dict[str, int]]:
    """The splits that can be judged, and how many were skipped for each reason (small
    labelled pools with ties hit both). The same under deployment, whose held-out x training
    pairs differ more often: its ranking metrics need held-out candidates that differ too."""
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
    *,
    deployment: bool = False,
    clear_gap: float | None = None,
) -> tuple[dict[str, dict[str, float]], str]:
    """Every method's metrics on the split's scored pairs and held-out candidates, fitting only
    on its train side, and the form the comparator chose there."""
    pairs = scored_pairs(split, candidates.target, deployment)
    return _judge(candidates, split, pairs, top_k, seed, comparator, clear_gap)


def _judge(
    candidates: Candidates,
    split: Split,
    pairs: ScoredPairs,
    top_k: int,
    seed: int,
    comparator: ComparatorSettings,
    clear_gap: float | None,
) -> tuple[dict[str, dict[str, float]], str]:
    train_y = candidates.target[split.train]
    if np.all(train_y == train_y[0]):
        raise ComparatorInputError(f"{split.name}: every training candidate has the same target")
    predictions, ltc = predict_split(candidates, split, pairs, seed, comparator)
    shown_y = candidates.target[pairs.shown]
    held_out_y = shown_y[: pairs.n_held_out]
    first_better = shown_y[pairs.first] > shown_y[pairs.second]
    clear = None if clear_gap is None else pairs.clear(candidates.target, clear_gap)
    metrics = {}
    for name, (preference, ranking) in predictions.items():
        p = preference[pairs.first, pairs.second]
        metrics[name] = {
            "pairwise_accuracy": accuracy_on_pairs(p, first_better),
            "kendall_tau": kendall_tau(ranking, held_out_y),
            "top1_recall": topk_recall(ranking, held_out_y, 1),
            "topk_recall": topk_recall(ranking, held_out_y, top_k),
            "best_in_topk": best_in_top_k(ranking, held_out_y, top_k),
        }
        if clear is not None:
            metrics[name]["pairwise_accuracy_clear"] = accuracy_on_pairs(
                p[clear], first_better[clear]
            )
    return metrics, ltc.form_


def _summary(per_split: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean and std over the splits where a metric is defined; None where it never is."""
    out: dict[str, float | None] = {}
    for metric in (m for m in METRICS if m in per_split[0]):
        values = np.array([s[metric] for s in per_split])
        values = values[~np.isnan(values)]
        mean = float(values.mean()) if len(values) else None
        std = float(values.std()) if len(values) else None
        out[f"{metric}_mean" if metric in MEAN_SUFFIXED else metric] = mean
        out[f"{metric}_std"] = std
    return out


def lead(per_split: list[dict[str, dict[str, float]]], ranking: list[str]) -> dict[str, Any]:
    """How far the best method leads the runner-up in pairwise accuracy: the mean and std over
    the judged splits of their per-split difference (paired: both judged on the same pairs),
    and whether the lead is within one std (or rests on a single split)."""
    best, runner_up = ranking[:2]
    differences = np.array(
        [s[best]["pairwise_accuracy"] - s[runner_up]["pairwise_accuracy"] for s in per_split]
    )
    differences = differences[~np.isnan(differences)]
    difference, std = float(differences.mean()), float(differences.std())
    return {
        "best": best,
        "runner_up": runner_up,
        "difference": difference,
        "std": std,
        "splits": len(differences),
        "within_uncertainty": bool(len(differences) == 1 or abs(difference) <= std),
    }


def report_title(report: dict[str, Any]) -> str:
    """What was judged, and on how much: the splits and scored pairs actually judged."""
    protocol = report["protocol"]
    judged = f"{protocol['judged_splits']} of {protocol['splits']}"
    if protocol["name"] == "leave_one_group_out":
        how = f"leave one {protocol['group_column']!r} out, {judged} groups judged"
    else:
        how = (
            f"{judged} random splits judged, {protocol['n_train']} train / "
            f"{protocol['n_test']} test candidates"
        )
        if protocol["name"] == "deployment":
            how = f"deployment: {how}"
    return f"{report['target']}: {report['n_candidates']} candidates, {how}, {_pairs(protocol)}"


def _pairs(protocol: dict[str, Any]) -> str:
    """How many pairs were scored, and of what kind."""
    kind = "held-out x training" if protocol["name"] == "deployment" else "held-out"
    return f"{protocol['judged_pairs']} {kind} pairs"


def lead_note(report: dict[str, Any]) -> str:
    """The best method's lead over the runner-up, in words, against its spread over splits."""
    lead = report["lead"]
    says = f"{lead['best']} leads {lead['runner_up']} by {lead['difference']:.3f} pairwise accuracy"
    if lead["splits"] == 1:
        return f"{says} on the one judged split: no spread over splits to tell the two apart"
    if lead["difference"] == 0 and lead["std"] == 0:
        return f"{lead['best']} and {lead['runner_up']} score alike on every split: a tie"
    if lead["within_uncertainty"]:
        return f"{says}, within one std over splits ({lead['std']:.3f}): the two are not told apart"
    return f"{says}, beyond one std over splits ({lead['std']:.3f})"


def clear_gap_note(report: dict[str, Any]) -> str | None:
    """On how many pairs the clear-gap accuracy rests; None without a seed noise."""
    protocol = report["protocol"]
    if "clear_gap" not in protocol:
        return None
    clear = (
        f"{protocol['clear_pairs']} of the {protocol['judged_pairs']} scored pairs have targets "
        f"more than {protocol['clear_gap']:g} (twice the seed noise) apart"
    )
    return f"{clear}; clear-gap accuracy is n/a" if not protocol["clear_pairs"] else clear


def report_notes(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The lines under the table, each as ("note" or "warning", text)."""
    notes = [("note", form_note(report)), ("note", lead_note(report))]
    clear = clear_gap_note(report)
    if clear:
        notes.append(("note" if report["protocol"]["clear_pairs"] else "warning", clear))
    skipped = skipped_note(report)
    return notes + ([("warning", skipped)] if skipped else [])


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
        f"the scores rest on {protocol['judged_splits']} split(s) and {_pairs(protocol)}"
    )


def report_rows(report: dict[str, Any]) -> list[list[str]]:
    """The header and one row per method, best first, as text."""
    k = report["protocol"]["top_k"]
    clear = "clear_gap" in report["protocol"]
    header = ["method", "pairwise accuracy", *(["clear-gap accuracy"] if clear else [])]
    rows = [[*header, "Kendall tau", "top-1 recall", f"top-{k} recall", f"best in top-{k}"]]
    for name in report["ranking"]:
        m = report["methods"][name]
        accuracy = [_spread(m, "pairwise_accuracy")]
        if clear:
            accuracy.append(_spread(m, "pairwise_accuracy_clear"))
        rows.append(
            [name, *accuracy, _num(m["kendall_tau_mean"]), _num(m["top1_recall"]),
             _num(m["topk_recall"]), _num(m["best_in_topk"])]
        )  # fmt: skip
    return rows


def _spread(method: dict[str, float | None], metric: str) -> str:
    """`mean ± std` over splits, or n/a."""
    mean = method[f"{metric}_mean"]
    return "n/a" if mean is None else f"{_num(mean)} ± {_num(method[f'{metric}_std'])}"


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
        if output.exists():  # a report made read-only is not overwritten
            with output.open("a"):  # opened for appending, nothing written
                pass
        # the report is written beside itself, then renamed over (sftcast.files)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"cannot be written: {err.strerror or err} in {folder}"
    return None
