"""What the command line prints: one-line errors, report tables (a table on a terminal, plain
aligned lines on a pipe), the selection's outcome, the study's live evidence, a dry run's
placement."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from deploy.stacks import stores_root

console = Console()


def fail(message: str, code: int = 2, prefix: str = "error") -> NoReturn:
    """One line naming what is wrong (never markup: the message may hold brackets), then
    exit with `code`."""
    console.print(f"{prefix}: {message}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def show(title: str, rows: list[list[str]]) -> None:
    """A table on a terminal; plain aligned lines on a pipe or in a file."""
    from sftcast.comparator import rows_lines, rows_table

    if console.is_terminal:
        console.print(rows_table(title, rows))
        return
    for line in rows_lines(title, rows):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if std is None else f"{value:.2f} ± {std:.2f}"


def print_selection(run_id: object, evidence: str | None = None) -> None:
    """Per task: pairwise accuracy (mean ± std over splits) of PPL-CLM, the best single proxy
    and the comparator on held-out candidates, whether the best predictor's lead is beyond that
    spread, and what was promoted (or why not)."""
    from zenml.client import Client

    from sftcast.comparator.report import lead_note
    from sftcast.selection.report import SelectionSummary

    run = Client().get_pipeline_run(run_id)
    rows = [["task", "ppl_clm", "best single proxy", "comparator", "ranked by", "promoted"]]
    notes, refusals, choices, judged = [], [], [], []
    for step_name, step_run in sorted(run.steps.items()):
        if not step_name.startswith("select_"):
            continue
        s: SelectionSummary = step_run.outputs["selection"][0].load()
        choices += [f"{s.task}: {c['candidate']} ({c['why']})" for c in s.choices]
        promoted = f"{s.candidate} ({s.model} v{s.version})"
        if not s.promoted:
            promoted = f"refused: {s.candidate}"
            refusals.append(f"{s.task}: {s.refused}")
        if s.lead:
            notes.append(f"{s.task}: {lead_note(s.lead)}")
        judged.append(f"{s.task} {s.judged_pairs} ({s.protocol or 'none'})")
        std = s.pairwise_accuracy_std
        best_single = s.best_single_proxy
        rows.append([
            s.task,
            fmt(s.ppl_clm, std.get("ppl_clm")),
            f"{best_single or '-'} {fmt(s.best_single_accuracy, std.get(best_single or ''))}",
            fmt(s.ltc, std.get("ltc")),
            s.predictor,
            promoted,
        ])  # fmt: skip
    show(
        "selection (pairwise accuracy ± std over splits, on held-out candidates; judged pairs: "
        f"{', '.join(judged)})",
        rows,
    )
    for line in notes:
        console.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)
    if choices:
        console.print("fine-tuned one at a time, in order:", markup=False)
    for line in choices:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    for line in refusals:
        console.print(line, style="yellow", markup=False, soft_wrap=True)
    if not evidence:
        return
    try:  # checked in the pre-flight; whatever still fails here leaves the run's exit code
        print_study_evidence(Path(evidence), [row[0] for row in rows[1:]])
    except Exception as err:
        reason = " ".join(str(err).split())
        console.print(
            f"warning: study evidence not judged: {reason}",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )


def print_study_evidence(results: Path, tasks: list[str]) -> None:
    """After the smoke run's table, the evidence at scale: a study table (selection.evidence)
    judged live (ppl_clm, the best single proxy, the comparator on held-out candidates), on
    the run's tasks first, then on every other task the table holds."""
    from sftcast.data.schema import TASKS
    from sftcast.study.summary import evidence_lines

    if not results.is_file():
        console.print(f"note: no study table at {results} (selection.evidence)", markup=False)
        return
    console.print(
        f"the study ({results}), judged now: pairwise accuracy on held-out candidates, "
        "mean ± std over splits",
        markup=False,
        soft_wrap=True,
    )
    every = [*tasks, *(t for t in TASKS if t not in tasks)]
    for line in evidence_lines(results, every, cache=stores_root() / ".cache" / "evidence"):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


def print_placement(rows: list[dict[str, str]], pipeline: str, stack: str) -> None:
    """A table on a terminal; tab-separated lines when piped, for scripts to read."""
    columns = ("step", "where", "device", "resources", "tolerations")
    title = f"{pipeline} on {stack} (dry run: nothing was started)"
    values = [[row[c] for c in columns] for row in rows]
    if not console.is_terminal:
        print(title)
        for line in (columns, *values):
            print("\t".join(line))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for line in values:
        table.add_row(*line)
    console.print(table)
