"""The study's judgement: `compare` on the results table, per task and protocol, for the
pre-training proxies alone and with every task's fine-tuning probes, gathered in `summary.json`.

Every number in the summary comes from a `compare` report whose exact argument list the
summary records under `commands`, so `python pipelines/run.py <args>` reproduces it. The target
judged is a task's seed mean where the table has one (`sft_<task>_mean`), else its main seed's
score; beside each task's judgement, what the seed noise leaves to be judged: the fewest seeds
a candidate has, the share of candidates tied at the most common target, and the noise ceiling
(`sftcast.comparator.noise`).
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sftcast import comparator
from sftcast.comparator import ComparatorInputError, check_table, compare_table, read_table
from sftcast.comparator.config import BASELINES, Columns, JudgementSettings, compare_command
from sftcast.comparator.judge import paired_record
from sftcast.comparator.noise import noise_ceiling
from sftcast.comparator.report import CompareReport, MethodScores, PairedRecord
from sftcast.files import write_text_atomic
from sftcast.proxies.registry import PROXIES, lower_is_better
from sftcast.study.config import StudyConfig
from sftcast.study.table import (
    judged_column,
    mean_column,
    seed_counts,
    seed_noise,
    spread,
    target_column,
)
from sftcast.study.targets import target_rows, truth_rows

# `variant` first: the headline, no held-out candidate with a sibling checkpoint in training
PROTOCOLS = ("variant", "paper", "deployment", "group")
# the column each grouped protocol holds out by: random splits of the variants (a variant's
# checkpoints are near-duplicates), leave one family out; transfer's interval over variants
GROUP_COLUMNS = {"variant": "variant", "group": "family", "transfer": "variant"}
# the baselines under the names issue #31 reads them by, beside their own
ALIASES = {
    "best_single_train": "best_proxy_fit",
    "proxy_mean_signed": "signed_mean",
    "linear": "linear_tuned",
}
# the methods `ltc` is paired with in a protocol's `paired` entry
HEADLINE = ("ppl_clm", *ALIASES, "ltc_pretraining")
# the design a freeze holds still: the predictors, the probes and proxies, the recipes and the
# study's settings, the strategies; the judging code (compare's protocols, these summaries) is
# not in it, as it chooses nothing
DESIGN = (
    "sftcast/comparator/forms.py", "sftcast/comparator/model.py",
    "sftcast/comparator/features.py", "sftcast/comparator/baselines.py",
    "sftcast/comparator/scoring.py", "sftcast/proxies", "sftcast/sft", "sftcast/evaluation",
    "sftcast/active.py", "sftcast/curves.py", "sftcast/selection", "configs/study.yaml",
)  # fmt: skip
REPO = Path(__file__).resolve().parents[2]
# entries of a protocol's methods that are not a single proxy
COMBINED = (
    "ltc", "ltc_pretraining", "proxy_mean", *BASELINES, *ALIASES, "paired", "paired_pretraining",
)  # fmt: skip


def pretraining_proxies(df: pd.DataFrame) -> list[str]:
    """The paper's kind of proxy: from the pre-trained candidate alone, no fine-tuning."""
    return [p for p, spec in PROXIES.items() if spec.source != "probe" and _ranks(df, p)]


def probe_proxies(df: pd.DataFrame) -> list[str]:
    """Every task's fine-tuning probe read-outs in the table, whichever task is judged: a
    probe of one task may tell about another (the cls probe's loss about rag)."""
    return [p for p, spec in PROXIES.items() if spec.source == "probe" and _ranks(df, p)]


def _ranks(df: pd.DataFrame, column: str) -> bool:
    """The column is in the table, known for every candidate (a proxy a candidate lacks, like
    the loss slope of a run too short to have one, cannot rank them all) and not constant."""
    return column in df.columns and df[column].notna().all() and df[column].nunique() > 1


def study_columns(df: pd.DataFrame, task: str, proxies: Sequence[str]) -> Columns:
    """The study table's columns that a judgement of `task` on `proxies` reads: its seed mean
    as the target where the table has one."""
    return Columns(
        id_column="candidate",
        target=judged_column(df, task),
        proxies=list(proxies),
        lower_is_better=lower_is_better(proxies),
    )


def _method(found: MethodScores) -> dict[str, Any]:
    keys = {
        "pairwise_accuracy_mean": "pairwise_accuracy_mean",
        "pairwise_accuracy_std": "pairwise_accuracy_std",
        "pairwise_accuracy_ci_low": "pairwise_accuracy_ci_low",  # grouped protocols only
        "pairwise_accuracy_ci_high": "pairwise_accuracy_ci_high",
        "pairwise_accuracy_clear_mean": "pairwise_accuracy_clear_mean",
        "kendall_tau_mean": "kendall_tau_mean",
        "top1_recall": "top1_recall",
        "top3_recall": "best_in_topk",  # the true best among the predicted top 3 (k = 3)
        "topk_share": "topk_recall",  # the share of the predicted top k truly in the top k
        "regret_noise_units": "regret_noise_units_mean",  # with a known seed noise
        "regret_noise_units_std": "regret_noise_units_std",
        "within_noise_recall": "within_noise_recall",
    }
    return {ours: getattr(found, theirs) for ours, theirs in keys.items()}


def _paired(found: PairedRecord) -> dict[str, Any]:
    return {
        "ltc_minus_mean": found.difference_mean,
        "ltc_minus_std": found.difference_std,
        "ltc_wins": found.ltc_wins,
        "paired_splits": found.splits,
        "ltc_better": found.ltc_better,
    }


def summarize(results: Path, study: StudyConfig, tasks: Sequence[str], reports: Path) -> dict:
    """Judge every task under every protocol; write each report under `reports`."""
    df = read_table(results)
    trained_on = None if study.transfer_from is None else read_table(study.transfer_from)
    summary: dict[str, Any] = {
        "n_candidates": len(df),
        "freeze_commit": study.freeze_commit,
        # a file named here makes the figures "tuned"
        "design_changed_since_freeze": study.freeze_commit and changed_since(study.freeze_commit),
        "tasks": {},
    }
    protocols = PROTOCOLS if trained_on is None else (*PROTOCOLS, "transfer")
    numeric = df.apply(pd.to_numeric, errors="coerce")  # the CSV is read as text
    for task in tasks:
        noise = seed_noise(numeric, task)
        ceiling = task_noise_ceiling(numeric, task, noise)
        entry: dict[str, Any] = {
            "target_column": judged_column(df, task),
            "seed_noise": noise,
            "seeds_min": int(seed_counts(numeric, task).min()),
            "modal_share": modal_share(numeric[judged_column(df, task)]),
            "noise_ceiling": ceiling,
            "spread": spread(numeric, task),
            "probe_cost_fraction": probe_cost_fraction(numeric, task),
            "commands": [],
        }
        for protocol in protocols:
            settings = study.judgement(
                protocol, GROUP_COLUMNS.get(protocol), noise if math.isfinite(noise) else None
            )
            also = trained_on if protocol == "transfer" else None
            judged = _judge_protocol(df, results, task, settings, reports, entry["commands"], also)
            entry[protocol] = (
                _headline(*judged, ceiling) if isinstance(judged, tuple) else {"skipped": judged}
            )
        summary["tasks"][task] = entry
    return summary


def _judge_protocol(
    df: pd.DataFrame,
    results: Path,
    task: str,
    settings: JudgementSettings,
    reports: Path,
    commands: list[list[str]],
    trained_on: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], dict[str, CompareReport]] | str:
    """The protocol's methods and its reports per label (`pretraining`: the pre-training
    proxies; `all`: with every probe, where the table has one), each report written under
    `reports` and its `compare` command added to `commands`; why not where it cannot be
    judged. With `trained_on` (transfer's training table), the proxies that rank both."""
    pretraining, probes = pretraining_proxies(df), probe_proxies(df)
    if trained_on is not None:
        pretraining = [p for p in pretraining if _ranks(trained_on, p)]
        probes = [p for p in probes if _ranks(trained_on, p)]
    methods: dict[str, Any] = {}
    judged: dict[str, CompareReport] = {}
    for label, proxies in (("pretraining", pretraining), ("all", pretraining + probes)):
        if label == "all" and not probes:
            continue
        out = reports / f"{task}_{settings.protocol}_{label}.json"
        columns = study_columns(df, task, proxies)
        try:
            report = compare_table(df, columns, settings)
        except ComparatorInputError as err:  # e.g. one family only: no group to hold out
            return str(err)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, json.dumps(report.to_dict(), indent=1, default=str) + "\n")
        commands.append(compare_command(results, columns, settings, out))
        judged[label] = report
        found = report.methods
        if label == "pretraining":
            methods["ltc_pretraining"] = _method(found["ltc"])
            methods["proxy_mean"] = _method(found["proxy_mean"])
        else:
            methods["ltc"] = _method(found["ltc"])
        methods |= {p: _method(found[p]) for p in proxies}
        # chosen on the training side from the same proxies as `ltc` (the last label)
        methods |= {b: _method(found[b]) for b in BASELINES}
        for name in (*BASELINES, *proxies):  # `ltc` against each, split by split
            methods[name] |= _paired(report.paired[name])
    if "ltc" not in methods:  # no probes
        methods["ltc"] = dict(methods["ltc_pretraining"])
    return methods, judged


def _headline(
    methods: dict[str, Any], judged: dict[str, CompareReport], ceiling: float | None
) -> dict[str, Any]:
    """The protocol's methods with the baselines also under their `ALIASES`, `ltc`'s share of
    the noise ceiling; `paired`: `ltc` (with the probes where there are any) minus each of the
    `HEADLINE` methods in pairwise accuracy, split by split (every report of a protocol judges
    the same splits on the same pairs); and `paired_pretraining`: `ltc_pretraining` minus
    `ppl_clm` and each baseline fitted on the pre-training proxies alone, the same way."""
    methods |= {alias: dict(methods[name]) for alias, name in ALIASES.items()}
    ltc = methods["ltc"]
    accuracy = ltc["pairwise_accuracy_mean"]
    ltc["of_noise_ceiling"] = accuracy / ceiling if accuracy is not None and ceiling else None
    last, first = judged.get("all", judged["pretraining"]), judged["pretraining"]
    others = {
        "ppl_clm": last.split_accuracy.get("ppl_clm"),  # absent: constant over the table
        **{alias: last.split_accuracy[name] for alias, name in ALIASES.items()},
        "ltc_pretraining": first.split_accuracy["ltc"],
    }
    pretraining_only = {
        "ppl_clm": first.split_accuracy.get("ppl_clm"),
        **{alias: first.split_accuracy[name] for alias, name in ALIASES.items()},
        "ridge": first.split_accuracy["ridge"],
    }
    return methods | {
        "paired": _paired_with(last.split_accuracy["ltc"], others),
        "paired_pretraining": _paired_with(first.split_accuracy["ltc"], pretraining_only),
    }


def _paired_with(
    ltc: list[float | None], others: dict[str, list[float | None] | None]
) -> dict[str, dict[str, Any]]:
    """`ltc`'s split accuracies minus each other method's, as `paired_record` counts them."""
    paired = {}
    for name, splits in others.items():
        if splits is not None:
            found = paired_record(ltc, splits)
            paired[name] = {
                "mean_difference": found.difference_mean,  # ltc minus the method
                "std": found.difference_std,
                "ltc_wins": found.ltc_wins,
                "splits": found.splits,
            }
    return paired


def changed_since(commit: str, root: Path = REPO) -> list[str] | None:
    """The design's files (`DESIGN`) that differ between `commit` and the checkout at `root`;
    None where git cannot tell (no repository, or a clone without that commit)."""
    try:
        found = subprocess.run(
            ["git", "diff", "--name-only", commit, "--", *DESIGN],
            cwd=root, capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return found.stdout.split()


def task_noise_ceiling(numeric: pd.DataFrame, task: str, noise: float) -> float | None:
    """The task's noise ceiling on the target the study judges: a seed mean over each
    candidate's seeds, or the main seed's score alone (one seed each)."""
    target = judged_column(numeric, task)
    seeds = seed_counts(numeric, task) if target == mean_column(task) else np.ones(len(numeric))
    means = numeric[target].to_numpy(dtype=float)
    known = ~np.isnan(means)
    return noise_ceiling(means[known], seeds[known], noise)


def modal_share(target: pd.Series) -> float:
    """The share of candidates whose target is the most common value: about 1/n for a fine
    score, large where a coarse one (few evaluation examples) ties many candidates, whose
    pairs no method is judged on."""
    known = target.dropna()
    return float(known.value_counts().iloc[0] / len(known))


def probe_cost_fraction(df: pd.DataFrame, task: str) -> float | None:
    """Median over candidates of the probe's wall time over the full fine-tune's."""
    probe, sft = f"seconds_probe_{task}", f"seconds_sft_{task}"
    if probe not in df or sft not in df:
        return None
    return float((df[probe] / df[sft]).median())


def evidence_lines(
    results: Path,
    tasks: Sequence[str],
    splits: int = 5,
    jobs: int = 2,
    cache: Path | None = None,
) -> list[str]:
    """Per task of the study table, pairwise accuracy on its judged target (the seed mean where
    the table has one; mean ± std over `splits` random 60/40 splits, pairs inside the held-out
    side) of ppl_clm, the best single proxy and the comparator on every proxy, every task's
    probes included: one line with whole variants held out (where the table has a `variant`
    column), one with candidates split at random (the literature's protocol, where a held-out
    checkpoint may have a sibling in training). Tasks the table lacks are left out.

    With `cache` (a folder), the lines are kept under a key of the table's bytes, the tasks,
    the splits and the judging code, and read back for the same key: the judgement is a pure
    function of those, and on 100 candidates it costs more than a cached rerun of `select`."""
    memo = cache / f"{_evidence_key(results, tasks, splits)}.json" if cache else None
    if memo is not None and memo.is_file():
        return json.loads(memo.read_text())
    df = read_table(results)
    paper = JudgementSettings(splits=splits, jobs=jobs, final_fit=False)
    protocols = {"paper, siblings may be split": paper}
    if GROUP_COLUMNS["variant"] in df.columns:
        variant = paper.model_copy(update={"protocol": "variant", "groups": "variant"})
        protocols = {"leave-variant-out": variant, **protocols}
    lines = []
    for task in tasks:
        if target_column(task) not in df.columns:
            continue
        proxies = pretraining_proxies(df) + probe_proxies(df)
        for label, settings in protocols.items():
            report = compare_table(df, study_columns(df, task, proxies), settings)
            methods = {m: _method(found) for m, found in report.methods.items()}
            best = best_single_proxy(methods)
            lines.append(
                f"{task}, {label}: ppl_clm {_accuracy(methods, 'ppl_clm')}, best single proxy "
                f"{best} {_accuracy(methods, best)}, comparator {_accuracy(methods, 'ltc')} "
                f"({len(df)} candidates, {splits} splits)"
            )
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(memo, json.dumps(lines))  # never half a file to read back
    return lines


def check_evidence(results: Path, tasks: Sequence[str]) -> None:
    """Check the study table as `evidence_lines` will judge it, before the run that prints it:
    raises `ComparatorInputError` naming the file, row and column, as `compare` does."""
    df = read_table(results)
    for task in tasks:
        if target_column(task) in df.columns:
            columns = study_columns(df, task, pretraining_proxies(df) + probe_proxies(df))
            check_table(
                df, columns.id_column, columns.target, columns.proxies, columns.lower_is_better
            )


def _evidence_key(results: Path, tasks: Sequence[str], splits: int) -> str:
    code = [*sorted(Path(comparator.__file__).parent.glob("*.py")), Path(__file__)]
    digest = hashlib.sha256(results.read_bytes())
    for part in [*tasks, str(splits), *(p.read_text() for p in code)]:
        digest.update(part.encode())
    return digest.hexdigest()[:16]


# how each protocol's rows are labelled in the judgement's table
PROTOCOL_LABELS = {
    "variant": "variant (whole variants held out)",
    "paper": "paper (siblings may be split)",
    "deployment": "deployment (held-out x training pairs)",
    "group": "group (leave one family out)",
    "transfer": "transfer (fitted on the study, judged here)",
}
JUDGED = (*PROTOCOLS, "transfer")  # every protocol a summary may hold


def judgement_markdown(summary: dict[str, Any]) -> str:
    """The summary's judgement in Markdown: the methods' table, `ltc` against issue #31's
    targets, then against each baseline split by split."""
    return (
        f"# The study's judgement ({summary['n_candidates']} candidates)\n\n"
        "Written by `sftcast study --judge-only` from `summary.json` (the `compare` commands "
        "that reproduce each row are listed there); pairwise accuracy on held-out candidates, "
        "mean ± std over splits (`transfer`, one split: the 95% interval over the held-out "
        f"variants).{_freeze(summary)}\n\n" + "\n".join(_methods_rows(summary)) + "\n\n"
        "## The comparator against issue #31's targets\n\n"
        + "\n".join(target_rows(summary))
        + "\n\nThe truth it is judged on:\n\n"
        + "\n".join(truth_rows(summary))
        + "\n\n## The comparator against each baseline, split by split\n\n"
        "`ltc` (with the probes) minus the baseline's pairwise accuracy on the same splits; "
        "better beyond the spread: the mean difference above its std.\n\n"
        + "\n".join(_paired_rows(summary))
        + "\n"
    )


def _freeze(summary: dict[str, Any]) -> str:
    """Whether the design judged is the frozen one, as `design_changed_since_freeze` says."""
    commit, changed = summary.get("freeze_commit"), summary.get("design_changed_since_freeze")
    if commit is None:  # a design table, or a user's study: no test of a frozen design
        return (
            " No design freeze is recorded for this table: figures of any choice made on it "
            "are tuned."
        )
    if changed is None:
        return f" Design frozen at `{commit}`; git could not tell what changed since."
    if changed:
        return f" Tuned: design files changed since the freeze at `{commit}`: {', '.join(changed)}."
    return f" Design frozen at `{commit}`; no design file has changed since."


def _judged(summary: dict[str, Any], protocols: Sequence[str]) -> Iterator[tuple[str, str, dict]]:
    """(task, protocol, methods) for every judged task and protocol."""
    for task, entry in summary["tasks"].items():
        for protocol in protocols:
            methods = entry.get(protocol)
            if methods and "skipped" not in methods:
                yield task, protocol, methods


def _methods_rows(summary: dict[str, Any]) -> list[str]:
    """Per task and protocol, pairwise accuracy of ppl_clm, the best single proxy (chosen after
    the fact: an optimistic yardstick), proxy_mean, the baselines chosen on the training side
    and the comparator, and the comparator's top-3 recall."""
    rows = [
        "| task | protocol | ppl_clm | best single proxy (after the fact) | proxy_mean | "
        + "".join(f"{b} | " for b in BASELINES)
        + "ltc_pretraining | ltc | ltc top-3 recall |\n"
        + "|---" * (8 + len(BASELINES))
        + "|"
    ]
    for task, protocol, methods in _judged(summary, JUDGED):
        best = best_single_proxy(methods)
        recall = methods["ltc"]["top3_recall"]
        # transfer is one split: no spread over splits to show, its interval instead
        shown = partial(_accuracy, methods, interval=protocol == "transfer")
        cells = [
            task, PROTOCOL_LABELS[protocol], shown("ppl_clm"), f"{best} {shown(best)}",
            shown("proxy_mean"), *(shown(b) for b in BASELINES), shown("ltc_pretraining"),
            shown("ltc"), "-" if recall is None else f"{recall:.2f}",
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _paired_rows(summary: dict[str, Any]) -> list[str]:
    rows = [
        "| task | protocol | method | ltc minus it (mean ± std over splits) | ltc wins | "
        "ltc better beyond the spread |\n|---|---|---|---|---|---|"
    ]
    for task, protocol, methods in _judged(summary, ("variant", "transfer", "paper")):
        for name in BASELINES:
            found = methods.get(name, {})
            if found.get("ltc_minus_mean") is not None:
                rows.append(
                    f"| {task} | {protocol} | {name} | {found['ltc_minus_mean']:+.3f} ± "
                    f"{found['ltc_minus_std']:.3f} | {found['ltc_wins']} of "
                    f"{found['paired_splits']} | {'yes' if found['ltc_better'] else 'no'} |"
                )
    return rows


def best_single_proxy(methods: dict[str, Any]) -> str:
    """The single proxy with the highest mean pairwise accuracy (a summary's methods)."""
    singles = {m: v for m, v in methods.items() if m not in COMBINED}
    return max(singles, key=lambda m: singles[m]["pairwise_accuracy_mean"] or 0.0)


def _accuracy(methods: dict[str, Any], name: str, interval: bool = False) -> str:
    found = methods.get(name)  # absent: a proxy constant over the table
    if found is None:
        return "-"
    if interval:
        low, high = found["pairwise_accuracy_ci_low"], found["pairwise_accuracy_ci_high"]
        return f"{found['pairwise_accuracy_mean']:.2f} [{low:.2f}, {high:.2f}]"
    return f"{found['pairwise_accuracy_mean']:.2f} ± {found['pairwise_accuracy_std']:.2f}"
