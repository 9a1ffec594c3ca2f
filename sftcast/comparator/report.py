"""A judgement's report, typed (`CompareReport`), and how it is shown: `report_table` with rich
on a terminal, `report_lines` as plain lines elsewhere, `report_notes` under either.

`CompareReport.to_dict()` is the JSON report `compare --output` writes. Keys that belong to one
protocol (the group column, the random splits' sizes, the interval bootstrapped over groups)
or to a seed noise (the clear-gap accuracy and its pairs, the regret in noise units) are
written only when they apply (when the judgement set them); every
other key always, None where a metric is never defined.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer
from rich.markup import escape
from rich.table import Table

from sftcast.comparator.config import ComparatorSettings


class Record(BaseModel):
    """A part of the report: frozen, and written with the fields it was given (a field left
    at its default does not apply to this judgement and is left out)."""

    model_config = ConfigDict(frozen=True)

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, as the report file holds it."""
        return self.model_dump()


class InputRecord(Record):
    """What was judged: the table's path and sha256 (None for a table built in code)."""

    path: str
    sha256: str | None
    id_column: str


class ProxyRecord(Record):
    lower_is_better: bool


class ProtocolRecord(Record):
    """How the candidates were split, and how many splits and scored pairs were judged."""

    # the paper's protocol keeps its name of old, `random_splits`: `select` hashes this record
    name: str
    group_column: str | None = None  # leave-one-group-out
    groups: list[str] | None = None
    splits: int
    train_fraction: float | None = None  # random splits
    n_train: int | None = None
    n_test: int | None = None
    train_table: str | None = None  # transfer: the table every method was fitted on
    train_sha256: str | None = None
    seed: int
    top_k: int
    judged_splits: int
    judged_pairs: int  # under deployment: held-out x training pairs
    skipped_splits: int
    skipped: dict[str, int]  # per reason a split was not judged
    seed_noise: float | None = None  # with a seed noise
    clear_gap: float | None = None
    clear_pairs: int | None = None


class ComparatorRecord(ComparatorSettings):
    """The comparator's settings and, with `auto`, the form each judged split's training side
    chose and the one every candidate chooses (the comparator `select` would rank with); None
    without the final fit."""

    # a record, not a setting: a form no inner fold could score has a NaN accuracy, reported
    model_config = ConfigDict(allow_inf_nan=True)

    forms_per_split: dict[str, int]
    final_form: str | None
    final_inner_accuracy: dict[str, float] | None


class MethodScores(Record):
    """One method's metrics: mean and (population) std over the judged splits where each is
    defined, None where it never is; the clear-gap accuracy, the regret of the predicted best
    in seed-noise units and the within-noise recall with a seed noise only; the 95% interval on
    pairwise accuracy bootstrapped over groups with a group column only."""

    pairwise_accuracy_mean: float | None
    pairwise_accuracy_std: float | None
    kendall_tau_mean: float | None
    kendall_tau_std: float | None
    top1_recall: float | None
    top1_recall_std: float | None
    topk_recall: float | None
    topk_recall_std: float | None
    best_in_topk: float | None
    best_in_topk_std: float | None
    pairwise_accuracy_clear_mean: float | None = None
    pairwise_accuracy_clear_std: float | None = None
    regret_noise_units_mean: float | None = None
    regret_noise_units_std: float | None = None
    within_noise_recall: float | None = None
    within_noise_recall_std: float | None = None
    pairwise_accuracy_ci_low: float | None = None  # with groups
    pairwise_accuracy_ci_high: float | None = None


CLEAR_KEYS = ("pairwise_accuracy_clear_mean", "pairwise_accuracy_clear_std")
# every key a seed noise brings
NOISE_KEYS = (
    *CLEAR_KEYS, "regret_noise_units_mean", "regret_noise_units_std", "within_noise_recall",
    "within_noise_recall_std",
)  # fmt: skip
GROUP_KEYS = ("pairwise_accuracy_ci_low", "pairwise_accuracy_ci_high")
# the keys every judgement writes
METHOD_KEYS = tuple(k for k in MethodScores.model_fields if k not in (*NOISE_KEYS, *GROUP_KEYS))


class Lead(Record):
    """How far the best method leads the runner-up in pairwise accuracy: the mean and std over
    the judged splits of their per-split difference, and whether it is within one std (or
    rests on a single split)."""

    best: str
    runner_up: str
    difference: float
    std: float
    splits: int
    within_uncertainty: bool


class PairedRecord(Record):
    """`ltc` against one other method on the same judged splits: the mean and std of their
    per-split difference in pairwise accuracy (`ltc` minus the method), the splits each won,
    and whether `ltc` is better beyond the spread (mean above one std, over 2 splits or more)."""

    difference_mean: float | None
    difference_std: float | None
    ltc_wins: int
    ltc_losses: int
    splits: int
    ltc_better: bool


class CompareReport(Record):
    """Every method judged on candidates it never saw: what was judged (so that it can be run
    again), how, each method's scores, the methods best first, the lead, and the comparator's
    importance per proxy when fitted on every candidate (None without the final fit)."""

    input: InputRecord
    target: str
    proxies: dict[str, ProxyRecord]
    n_candidates: int
    n_pairs: int
    protocol: ProtocolRecord
    comparator: ComparatorRecord
    methods: dict[str, MethodScores]
    ranking: list[str]
    lead: Lead
    feature_importance: dict[str, float] | None
    paired: dict[str, PairedRecord] = {}  # per method: `ltc` against it, split by split
    # per method: its pairwise accuracy on each judged split (None: undefined there), so that
    # two reports judged on the same splits can be paired (`judge.paired_record`)
    split_accuracy: dict[str, list[float | None]] = {}


REPORT_KEYS = tuple(CompareReport.model_fields)


def report_title(report: CompareReport) -> str:
    """What was judged, and on how much: the splits and scored pairs actually judged."""
    protocol = report.protocol
    judged = f"{protocol.judged_splits} of {protocol.splits}"
    if protocol.name == "leave_one_group_out":
        how = f"leave one {protocol.group_column!r} out, {judged} groups judged"
    elif protocol.name == "variant_splits":
        groups = len(protocol.groups or [])
        how = (
            f"{judged} random splits of the {groups} {protocol.group_column!r} groups judged, "
            f"{protocol.train_fraction:g} of them to train"
        )
    else:
        how = (
            f"{judged} random splits judged, {protocol.n_train} train / "
            f"{protocol.n_test} test candidates"
        )
        if protocol.name == "deployment":
            how = f"deployment: {how}"
    return f"{report.target}: {report.n_candidates} candidates, {how}, {_pairs(protocol)}"


def _pairs(protocol: ProtocolRecord) -> str:
    """How many pairs were scored, and of what kind."""
    kind = "held-out x training" if protocol.name == "deployment" else "held-out"
    return f"{protocol.judged_pairs} {kind} pairs"


def lead_note(lead: Lead) -> str:
    """The best method's lead over the runner-up, in words, against its spread over splits."""
    says = f"{lead.best} leads {lead.runner_up} by {lead.difference:.3f} pairwise accuracy"
    if lead.splits == 1:
        return f"{says} on the one judged split: no spread over splits to tell the two apart"
    if lead.difference == 0 and lead.std == 0:
        return f"{lead.best} and {lead.runner_up} score alike on every split: a tie"
    if lead.within_uncertainty:
        return f"{says}, within one std over splits ({lead.std:.3f}): the two are not told apart"
    return f"{says}, beyond one std over splits ({lead.std:.3f})"


def clear_gap_note(report: CompareReport) -> str | None:
    """On how many pairs the clear-gap accuracy rests; None without a seed noise."""
    protocol = report.protocol
    if protocol.clear_gap is None:
        return None
    clear = (
        f"{protocol.clear_pairs} of the {protocol.judged_pairs} scored pairs have targets "
        f"more than {protocol.clear_gap:g} (twice the seed noise) apart"
    )
    return f"{clear}; clear-gap accuracy is n/a" if not protocol.clear_pairs else clear


def report_notes(report: CompareReport) -> list[tuple[str, str]]:
    """The lines under the table, each as ("note" or "warning", text)."""
    notes = [("note", form_note(report)), ("note", lead_note(report.lead))]
    clear = clear_gap_note(report)
    if clear:
        notes.append(("note" if report.protocol.clear_pairs else "warning", clear))
    skipped = skipped_note(report)
    return notes + ([("warning", skipped)] if skipped else [])


def form_note(report: CompareReport) -> str:
    """Which form the comparator (`ltc`) took in the judged splits and on every candidate."""
    comparator = report.comparator
    per_split = ", ".join(f"{form} {n}" for form, n in comparator.forms_per_split.items())
    return (
        f"comparator form ({comparator.form}): {per_split} of the judged splits; "
        f"{comparator.final_form} on every candidate"
    )


def skipped_note(report: CompareReport) -> str | None:
    """A warning when some splits could not be judged, with why; None when all were."""
    protocol = report.protocol
    if not protocol.skipped_splits:
        return None
    skipped = protocol.skipped.items()
    reasons = ", ".join(f"{count} with {why.replace('_', ' ')}" for why, count in skipped if count)
    return (
        f"{protocol.skipped_splits} of {protocol.splits} splits not judged ({reasons}); "
        f"the scores rest on {protocol.judged_splits} split(s) and {_pairs(protocol)}"
    )


def report_rows(report: CompareReport) -> list[list[str]]:
    """The header and one row per method, best first, as text."""
    k = report.protocol.top_k
    clear = report.protocol.clear_gap is not None
    header = ["method", "pairwise accuracy", *(["clear-gap accuracy"] if clear else [])]
    rows = [[*header, "Kendall tau", "top-1 recall", f"top-{k} recall", f"best in top-{k}"]]
    for name in report.ranking:
        m = report.methods[name]
        accuracy = [_spread(m.pairwise_accuracy_mean, m.pairwise_accuracy_std)]
        if clear:
            accuracy.append(_spread(m.pairwise_accuracy_clear_mean, m.pairwise_accuracy_clear_std))
        rows.append(
            [name, *accuracy, _num(m.kendall_tau_mean), _num(m.top1_recall),
             _num(m.topk_recall), _num(m.best_in_topk)]
        )  # fmt: skip
    return rows


def _spread(mean: float | None, std: float | None) -> str:
    """`mean ± std` over splits, or n/a."""
    return "n/a" if mean is None else f"{_num(mean)} ± {_num(std)}"


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


def report_table(report: CompareReport) -> Table:
    """The report for a terminal."""
    return rows_table(report_title(report), report_rows(report))


def report_lines(report: CompareReport) -> list[str]:
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
