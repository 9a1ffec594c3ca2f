"""The pipeline commands: data, zoo, sft, study and select, each one ZenML pipeline run (or
dry-run) on the --stack with the --config (cli.running)."""

from __future__ import annotations

import typer

from cli.judge import columns
from cli.render import fail
from cli.running import run


def data(ctx: typer.Context) -> None:
    """Build the pre-training corpus and the task datasets, and validate them."""
    run(ctx.obj, "data")


def zoo(ctx: typer.Context) -> None:
    """Validated data, then pre-train the zoo's variants and fetch every candidate checkpoint."""
    run(ctx.obj, "zoo")


def sft(ctx: typer.Context) -> None:
    """The zoo's candidates fine-tuned on each task, evaluated, and registered in MLflow."""
    run(ctx.obj, "sft")


def study(
    ctx: typer.Context,
    variants: str = typer.Option(
        "",
        help="A chunk: comma-separated shell patterns of variant names (`clm-*,plm-*`); its "
        "rows are added to the table.",
    ),
    judge_only: bool = typer.Option(
        False, "--judge-only", help="Run nothing: judge the table on disk (summary, figures)."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Write over a study table measured with other settings (sft, evaluation, "
        "proxies) than this configuration's, and over its judgement.",
    ),
) -> None:
    """The study: every candidate's proxies (fine-tuning probes included) and post-SFT score
    per task, written to study.results with its summary (judged by compare) and figures."""
    ctx.obj.variants = columns(variants) or None
    ctx.obj.overwrite = overwrite
    if not judge_only:
        run(ctx.obj, "study")
        return
    given = [o for o, on in (("--variants", variants), ("--dry-run", ctx.obj.dry_run),
                             ("--no-cache", ctx.obj.no_cache)) if on]  # fmt: skip
    if given:
        fail(f"study --judge-only runs nothing, so it does not take {', '.join(given)}")
    from cli.study import judge_only as judge_table

    judge_table(ctx.obj)


def select_(ctx: typer.Context) -> None:
    """The main pipeline: proxies for all candidates, SFT for the labelled ones, the judged
    comparator, and the best-predicted candidate promoted to `production` (--force: even if
    no predictor beats chance on held-out candidates)."""
    run(ctx.obj, "select")
