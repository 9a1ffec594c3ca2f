"""`compare` and `simulate`: a results table judged or replayed, with no ZenML and no MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cli.render import console, fail, show
from sftcast.comparator.config import (
    DEFAULT_JUDGEMENT,
    RANDOM_SPLIT_OPTIONS,
    Columns,
    JudgementSettings,
    flag,
    judges_one_split,
)

# compare and simulate read the same results table, with the same options
ResultsTable = Annotated[Path, typer.Option(help="CSV or Parquet file, one row per candidate.")]
IdColumn = Annotated[str, typer.Option(help="The column naming each candidate.")]
TargetColumn = Annotated[str, typer.Option(help="The post-SFT score (higher is better).")]
ProxyColumns = Annotated[str, typer.Option(help="Comma-separated proxy columns.")]
LowerIsBetter = Annotated[str, typer.Option(help="Comma-separated proxies where lower is better.")]
Seed = Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the splits and models.")]
ReportPath = Annotated[
    Path | None, typer.Option(help="Write the JSON report here (missing folders are created).")
]
# sftcast.comparator.protocols.PROTOCOLS, spelt out: the library loads scikit-learn
ProtocolName = Annotated[
    Literal["paper", "group", "deployment", "variant", "transfer"] | None,
    typer.Option(
        help="paper: random splits, held-out pairs (siblings may be split); group: leave one "
        "--group-column group out; deployment: the random splits, held-out x training pairs; "
        "variant: random splits of the --group-column groups, held-out pairs; transfer: fitted "
        "on --train-table, every candidate of --table held out. [default: paper, or group with "
        "--group-column]",
        show_default=False,
    ),
]
SeedNoise = Annotated[
    float | None,
    typer.Option(
        min=0,
        help="The target's std over fine-tuning seeds: also report accuracy on the pairs whose "
        "targets differ by more than twice it.",
    ),
]


def compare(
    ctx: typer.Context,
    table: ResultsTable,
    id_column: IdColumn,
    target: TargetColumn,
    proxies: ProxyColumns,
    lower_is_better: LowerIsBetter = "",
    protocol: ProtocolName = None,
    groups: str | None = typer.Option(
        None,
        "--group-column",
        "--groups",
        help="The column grouping near-duplicate candidates (a variant's checkpoints): "
        "protocol group leaves one group out at a time, variant splits the groups at random, "
        "transfer bootstraps its interval over them.",
    ),
    train_table: Path | None = typer.Option(
        None,
        help="Protocol transfer: the table (CSV or Parquet, the same columns) every method is "
        "fitted on, past candidates with known scores; --table's are all held out.",
    ),
    splits: int = typer.Option(DEFAULT_JUDGEMENT.splits, help="Random splits of the candidates."),
    train_fraction: float = typer.Option(
        DEFAULT_JUDGEMENT.train_fraction, help="Share of candidates to train on per split."
    ),
    seed: Seed = DEFAULT_JUDGEMENT.seed,
    top_k: int = typer.Option(
        DEFAULT_JUDGEMENT.top_k, help="k of top-k recall and of best in top-k."
    ),
    seed_noise: SeedNoise = None,
    jobs: int = typer.Option(
        DEFAULT_JUDGEMENT.jobs, min=1, help="Processes judging the splits (same result)."
    ),
    output: ReportPath = None,
) -> None:
    """Learning to compare: rank held-out candidates by a comparator over proxies, against
    each proxy alone; no ZenML, no MLflow.

    Exit codes:

    0: judged; a warning says how many splits could not be (their targets tie).

    2: bad input (named by file, row and column), an --output that cannot be
    written (checked first), options that do not go together (--groups with
    a protocol other than group or variant), or nothing to judge (every split's targets tie).
    """
    from sftcast.comparator import ComparatorInputError, compare_table, read_table
    from sftcast.comparator.report import report_notes, report_rows, report_title

    check_output(output, table)
    judged = Columns(
        id_column=id_column, target=target, proxies=columns(proxies),
        lower_is_better=columns(lower_is_better),
    )  # fmt: skip
    settings = JudgementSettings(
        protocol=protocol, seed=seed, top_k=top_k, jobs=jobs, groups=groups, splits=splits,
        train_fraction=train_fraction, seed_noise=seed_noise, train_table=train_table,
    )  # fmt: skip
    if judges_one_split(settings) and (ignored := given(ctx, *RANDOM_SPLIT_OPTIONS)):
        how = (
            "--protocol transfer judges one split"
            if protocol == "transfer"
            else "--group-column without --protocol variant holds out one group at a time"
        )
        fail(f"{how}: {' and '.join(ignored)} would be ignored")
    try:
        report = compare_table(read_table(table), judged, settings)
    except ComparatorInputError as err:
        fail(str(err))
    show(report_title(report), report_rows(report))
    for kind, text in report_notes(report):
        style = "yellow" if kind == "warning" else None
        console.print(f"{kind}: {text}", style=style, markup=False, highlight=False, soft_wrap=True)
    write_json(output, report.to_dict())


def simulate(
    table: ResultsTable,
    id_column: IdColumn,
    target: TargetColumn,
    proxies: ProxyColumns,
    lower_is_better: LowerIsBetter = "",
    budget: int = typer.Option(..., help="How many candidates each strategy may fine-tune."),
    initial: int = typer.Option(3, help="Candidates fine-tuned first, spread over the proxies."),
    trials: int = typer.Option(20, help="Replays per strategy, seeds seed, seed + 1, ..."),
    seed: Seed = 0,
    order_proxy: str | None = typer.Option(
        None, help="The proxy whose order proxy_order follows [default: probe_loss_<task>]."
    ),
    output: ReportPath = None,
    plot: Path | None = typer.Option(
        None,
        help="Write a plot of regret and within-noise found rate against compute to exactly "
        "this path; its extension picks the format (.png, .svg, .pdf, ...; none: PNG).",
    ),
) -> None:
    """Replay selection strategies (random, proxy_order, proxy_greedy, successive_halving,
    active, active_anytime, and probe_order, the default) on a table whose every post-SFT score
    is known, revealing a score only when a strategy fine-tunes that candidate, drawing which
    seed each fine-tune shows per trial, and charging each what it spends:
    `seconds_*` columns give the costs, `<target>_seed<s>` columns the seed-mean truth and the
    noise, `val_loss_<task>_at<fraction>` columns the partial fine-tunes successive halving
    needs; no ZenML, no MLflow.

    Exit codes: 0 replayed; 2 bad input (named by file, row and column, as compare names
    it), an impossible budget, or an --output or --plot that cannot be written (checked first).
    """
    from sftcast.active import plot_format, save_found_rate, simulate_rows, simulate_title
    from sftcast.active import simulate as replay
    from sftcast.comparator import ComparatorInputError, check_table, read_table
    from sftcast.curves import replay_table

    check_output(output, table)
    check_output(plot, table)
    try:
        fmt = plot_format(plot) if plot is not None else "png"
        df = read_table(table)
        candidates = check_table(df, id_column, target, columns(proxies), columns(lower_is_better))
        report = replay(
            candidates, target, budget, initial, trials, seed,
            table=replay_table(df, candidates, target), order_proxy=order_proxy,
        )  # fmt: skip
    except ComparatorInputError as err:
        fail(str(err))
    show(simulate_title(report), simulate_rows(report))
    write_json(output, report.to_dict())
    if plot is not None:
        try:
            plot.parent.mkdir(parents=True, exist_ok=True)
            save_found_rate(report, plot, fmt)
        except OSError as err:  # checked first; a race or a full disk can still get here
            fail(f"{plot}: cannot write the plot: {err.strerror or err}")
        console.print(f"plot: {plot}", markup=False, soft_wrap=True)


def given(ctx: typer.Context, *names: str) -> list[str]:
    """The options among `names` given on the command line (not left at their default)."""
    # by name: typer carries a click of its own, whose enum is not click.core's
    given = [n for n in names if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"]
    return [flag(n) for n in given]


def columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def check_output(output: Path | None, table: Path) -> None:
    """Fail before any work when `output` cannot take a file."""
    from sftcast.comparator import unwritable

    if output is not None and (problem := unwritable(output, table)):
        fail(f"{output}: {problem}")


def write_json(output: Path | None, report: dict[str, Any]) -> None:
    import json

    from sftcast.files import write_text_atomic

    if output is None:
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(output, json.dumps(report, indent=2) + "\n")  # or keep the old one
    except OSError as err:  # checked before the work; a race or a full disk can still get here
        fail(f"{output}: cannot write the report: {err.strerror or err}")
    console.print(f"report: {output}", markup=False, soft_wrap=True)
