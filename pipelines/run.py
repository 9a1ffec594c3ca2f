"""sftcast's one command-line entry.

python pipelines/run.py                       # the default pipeline on the local stack
python pipelines/run.py --stack k8s --dry-run # where each step would run, and with what
python pipelines/run.py sft                   # one pipeline by name
python pipelines/run.py validate --task cls --dataset my_data/
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Before ZenML is imported: a project-local ZenML config (export ZENML_CONFIG_PATH to use
# your own, e.g. one logged in to a ZenML server), and no analytics.
os.environ.setdefault("ZENML_CONFIG_PATH", str(REPO_ROOT / ".zenml" / "config"))
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
# Steps resolve relative to the project even when the ZenML repository lives elsewhere.
os.environ.setdefault("ZENML_CUSTOM_SOURCE_ROOT", str(REPO_ROOT))
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if str(REPO_ROOT) not in sys.path:  # `python pipelines/run.py` puts pipelines/ first instead
    sys.path.insert(0, str(REPO_ROOT))

# ZenML 0.98's MLflow tracker warns at every step that it could not disable autologging for
# fastai, which is not installed and which sftcast never uses: one line of noise per step.
logging.getLogger(
    "zenml.integrations.mlflow.experiment_trackers.mlflow_experiment_tracker"
).addFilter(lambda record: "Failed to disable MLflow autologging" not in record.getMessage())

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipelines.runconfig import RunConfigError  # noqa: E402
from pipelines.stacks import StackFileError, available_stacks, stores_root  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DEFAULT_PIPELINE = "select"
LOOPBACK = "127.0.0.1"  # the only address `ui` binds
# `ui` serves the UI only: MLflow's job runner (LLM judges, trace roll-ups, nothing sftcast
# logs) would add eight more processes (MLflow 3.17).
UI_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
console = Console()
app = typer.Typer(
    add_completion=False,
    help="sftcast: predict which checkpoint will be best after SFT, and promote it.",
)


@dataclass
class Options:
    stack: str
    config: Path
    no_cache: bool
    dry_run: bool
    force: bool = False


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    stack: str = typer.Option("local", help=f"Stack file in zenml_stack/: {available_stacks()}"),
    config: Path = typer.Option(DEFAULT_CONFIG, help="A ZenML run configuration in configs/."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rerun every step."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Compile for the stack and show where each step runs."
    ),
    force: bool = typer.Option(
        False, "--force", help="select: promote even if no predictor beats chance."
    ),
) -> None:
    """Run a pipeline (the default one when no command is given: select)."""
    ctx.obj = Options(stack, config.resolve(), no_cache, dry_run, force)
    if ctx.invoked_subcommand is None:
        _run(ctx.obj, DEFAULT_PIPELINE)


@app.command()
def data(ctx: typer.Context) -> None:
    """Build the pre-training corpus and the task datasets, and validate them."""
    _run(ctx.obj, "data")


@app.command()
def zoo(ctx: typer.Context) -> None:
    """Validated data, then pre-train the zoo's variants and fetch every candidate checkpoint."""
    _run(ctx.obj, "zoo")


@app.command()
def sft(ctx: typer.Context) -> None:
    """The zoo's candidates fine-tuned on each task, evaluated, and registered in MLflow."""
    _run(ctx.obj, "sft")


@app.command("select")
def select_(
    ctx: typer.Context,
    force: bool = typer.Option(
        False, "--force", help="Promote even if no predictor beats chance on held-out candidates."
    ),
) -> None:
    """The main pipeline: proxies for all candidates, SFT for the labelled ones, the judged
    comparator, and the best-predicted candidate promoted to `production`."""
    ctx.obj.force = ctx.obj.force or force
    _run(ctx.obj, "select")


@app.command()
def validate(
    ctx: typer.Context,
    task: str = typer.Option(..., help="cbqa, rag or cls"),
    dataset: str = typer.Option(..., help="A folder of split files, or hf:<name>[@revision]"),
) -> None:
    """Validate one task dataset with Great Expectations; exit 1 if it fails."""
    from sftcast.data.schema import TASKS
    from sftcast.validation import validate_source

    if task not in TASKS:
        raise typer.BadParameter(f"{task!r} is not a task; expected one of {', '.join(TASKS)}")
    report = validate_source(dataset, task)
    console.print(report.to_table())
    _log_validation(report, task, dataset, ctx.obj.stack)
    if not report.success:
        console.print(f"[red]{dataset}: {task} dataset failed validation[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{dataset}: {task} dataset is valid[/green]")


def _log_validation(report: object, task: str, dataset: str, stack: str) -> None:
    """Record the report in the stack's MLflow store, where its pipelines log."""
    import mlflow

    from sftcast.tracking import ensure_experiment, log_json, safe_tags

    mlflow.set_tracking_uri(stack_tracking_uri(stack))
    experiment_id = ensure_experiment("sftcast_validate", stores_root() / "mlruns" / "artifacts")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"validate-{task}"):
        mlflow.set_tags(safe_tags({"sftcast.task": task, "sftcast.dataset": dataset}))
        mlflow.log_metric("validation_failures", len(report.failures))
        mlflow.log_metric("validation_success", int(report.success))
        log_json(report.to_dict(), "validation_report.json")


@app.command()
def compare(
    table: Path = typer.Option(..., help="CSV or Parquet file, one row per candidate."),
    id_column: str = typer.Option(..., help="The column naming each candidate."),
    target: str = typer.Option(..., help="The post-SFT score to predict (higher is better)."),
    proxies: str = typer.Option(..., help="Comma-separated proxy columns."),
    lower_is_better: str = typer.Option("", help="Comma-separated proxies where lower is better."),
    groups: str | None = typer.Option(
        None, help="Leave one group of this column out at a time, instead of random splits."
    ),
    splits: int = typer.Option(20, help="Random splits of the candidates."),
    train_fraction: float = typer.Option(0.6, help="Share of candidates to train on per split."),
    seed: int = typer.Option(0, help="Seed of the splits and of the comparator."),
    top_k: int = typer.Option(3, help="k of top-k recall."),
    output: Path | None = typer.Option(None, help="Write the JSON report here."),
) -> None:
    """Learning to compare: rank held-out candidates by a comparator over proxies, against
    each proxy alone; no ZenML, no MLflow."""
    import json

    from sftcast.comparator import ComparatorInputError, compare_table, read_table, report_table

    def columns(text: str) -> list[str]:
        return [c.strip() for c in text.split(",") if c.strip()]

    try:
        report = compare_table(
            read_table(table),
            id_column,
            target,
            columns(proxies),
            lower_is_better=columns(lower_is_better),
            splits=splits,
            train_fraction=train_fraction,
            seed=seed,
            top_k=top_k,
            groups=groups,
        )
    except ComparatorInputError as err:
        console.print(f"error: {err}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from err
    console.print(report_table(report))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"report: {output}", markup=False, soft_wrap=True)


@app.command()
def rollback(
    ctx: typer.Context,
    task: str = typer.Option(..., help="cbqa, rag or cls"),
    model_name: str | None = typer.Option(None, help="Registered model; sftcast-<task> if unset."),
    stack: str | None = typer.Option(None, help="Whose MLflow store; the global --stack if unset."),
) -> None:
    """Move the task's `production` alias back to the version that held it before; no
    pipeline runs."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from sftcast.data.schema import TASKS
    from sftcast.promotion import PromotionError
    from sftcast.promotion import rollback as rollback_production

    if task not in TASKS:
        raise typer.BadParameter(f"{task!r} is not a task; expected one of {', '.join(TASKS)}")
    try:
        mlflow.set_tracking_uri(stack_tracking_uri(stack or ctx.obj.stack))
        result = rollback_production(model_name or f"sftcast-{task}")
    except (StackFileError, PromotionError, MlflowException) as err:
        console.print(f"error: {err}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from err
    console.print(result.summary, markup=False, soft_wrap=True)


@app.command()
def ui(
    ctx: typer.Context,
    port: int = typer.Option(5000, min=1, max=65535, help="Port on 127.0.0.1."),
    stack: str | None = typer.Option(None, help="Whose MLflow store; the global --stack if unset."),
) -> None:
    """Serve the stack's MLflow store (runs and registry) in the MLflow UI, on 127.0.0.1
    only; Ctrl-C stops it."""
    from sftcast.tracking import is_local_store

    name = stack or ctx.obj.stack
    try:
        uri = stack_tracking_uri(name)
    except StackFileError as err:
        console.print(f"error: {err}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from err
    if not is_local_store(uri):
        console.print(
            f"error: stack {name!r} tracks to the MLflow server at {uri}: open that one",
            style="red", markup=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(2)
    command = mlflow_server_command(uri, stores_root() / "mlruns" / "artifacts", port)
    console.print(f"MLflow UI on http://{LOOPBACK}:{port} over {uri}", markup=False, soft_wrap=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The server in this process's place: Ctrl-C and SIGTERM reach it (it forwards them to
    # its workers), and whoever started `ui` holds the server's own process id.
    os.execve(command[0], command, {**os.environ, **UI_SERVER_ENV})


def mlflow_server_command(tracking_uri: str, artifact_root: Path, port: int) -> list[str]:
    """`mlflow server` over one store, bound to the loopback interface and nothing else; one
    worker is plenty for one person's browser."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", tracking_uri,
        "--default-artifact-root", str(artifact_root),
        "--host", LOOPBACK,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def stack_tracking_uri(stack: str) -> str:
    """The MLflow store a stack's pipelines track and register in: its experiment
    tracker's `tracking_uri`."""
    from pipelines.stacks import load_stack_file

    trackers = load_stack_file(stack).components.get("experiment_tracker")
    if not trackers:
        raise StackFileError(f"stack {stack!r} has no experiment tracker")
    uri = (trackers[0].get("configuration") or {}).get("tracking_uri")
    if not uri:
        raise StackFileError(f"stack {stack!r}: its experiment tracker has no tracking_uri")
    return uri


def _run(opts: Options, name: str) -> None:
    """Run (or dry-run) one pipeline; known failures become a message and an exit code."""
    from zenml.exceptions import StackValidationError

    try:
        _run_pipeline(opts, name)
    except (StackFileError, RunConfigError, StackValidationError) as err:
        console.print(f"[red]error:[/red] {err}", soft_wrap=True)
        raise typer.Exit(2) from err
    except PipelineFailed as err:
        console.print(f"[red]pipeline failed:[/red] {err}", soft_wrap=True)
        raise typer.Exit(1) from err


def _run_pipeline(opts: Options, name: str) -> None:
    from pipelines.registry import PIPELINES, known_sections
    from pipelines.runconfig import (
        compile_for_stack,
        load_run_config,
        placement_rows,
        with_stack_options,
    )
    from pipelines.stacks import ensure_repository, load_stack_file, register_stack

    pipeline = PIPELINES[name]
    stack_file = load_stack_file(opts.stack)
    config = load_run_config(opts.config, pipeline, known_sections(), opts.no_cache)
    if opts.force and "selection" in config["parameters"]:
        config["parameters"]["selection"] = {**config["parameters"]["selection"], "force": True}
    ensure_repository()
    config_path = with_stack_options(config, pipeline, stack_file)
    if opts.dry_run:
        register_stack(stack_file, activate=False)
        snapshot, stack = compile_for_stack(pipeline, config_path, stack_file)
        _print_placement(placement_rows(snapshot, stack), pipeline.name, stack_file.stack_name)
        return
    stack = register_stack(stack_file, activate=True)
    _prepare_tracking(pipeline.name)
    console.print(f"Running [bold]{pipeline.name}[/bold] on stack [bold]{stack.name}[/bold]")
    try:
        run = pipeline.with_options(config_path=str(config_path))()
    except RuntimeError as err:
        raise PipelineFailed(_failure_summary(pipeline.name) or str(err)) from err
    console.print(f"[green]Finished[/green] run {run.name} ({run.id}); `make ui` shows it.")
    if name == "select":
        _print_selection(run.id)


def _print_selection(run_id: object) -> None:
    """Per task: pairwise accuracy of PPL-CLM, the best single proxy and the comparator on
    held-out candidates, and what was promoted (or why not)."""
    from zenml.client import Client

    from sftcast.selection_report import SelectionSummary

    run = Client().get_pipeline_run(run_id)
    table = Table(title="selection (pairwise accuracy on held-out candidates)")
    for column in ("task", "ppl_clm", "best single proxy", "comparator", "ranked by", "promoted"):
        table.add_column(column, overflow="fold")  # candidate URIs whole, never cut short
    refusals = []
    for step_name, step_run in sorted(run.steps.items()):
        if not step_name.startswith("select_"):
            continue
        s: SelectionSummary = step_run.outputs["selection"][0].load()
        promoted = f"{s.candidate} ({s.model} v{s.version})"
        if not s.promoted:
            promoted = f"refused: {s.candidate}"
            refusals.append(f"{s.task}: {s.refused}")
        best_single = f"{s.best_single_proxy or '-'} {_fmt(s.best_single_accuracy)}".strip()
        table.add_row(s.task, _fmt(s.ppl_clm), best_single, _fmt(s.ltc), s.predictor, promoted)
    console.print(table)
    for line in refusals:
        console.print(f"[yellow]{line}[/yellow]", soft_wrap=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


class PipelineFailed(RuntimeError):
    """A pipeline run failed; the message holds each failed step's own error."""


def _failure_summary(pipeline_name: str) -> str:
    """Each failed step of the latest run with its own error, rather than ZenML's
    'failure in step(s)' alone."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    runs = Client().list_pipeline_runs(pipeline_name=pipeline_name, sort_by="desc:created", size=1)
    if not runs.items:
        return ""
    run = runs.items[0]
    lines = [f"run {run.name} ({run.id}) failed:"]
    for name, step_run in run.steps.items():
        if step_run.status == ExecutionStatus.FAILED:
            info = step_run.exception_info
            lines.append(f"step {name}: {info.message if info else 'failed (see the log above)'}")
    return "\n".join(lines)


def _prepare_tracking(experiment: str) -> None:
    """On the embedded store, create the experiment with its artifacts under mlruns/."""
    import mlflow
    from zenml.client import Client

    from sftcast.tracking import ensure_experiment, is_local_store

    tracker = Client().active_stack.experiment_tracker
    uri = getattr(tracker.config, "tracking_uri", None) if tracker else None
    if uri and is_local_store(uri):
        mlflow.set_tracking_uri(uri)
        ensure_experiment(experiment, stores_root() / "mlruns" / "artifacts")


def _print_placement(rows: list[dict[str, str]], pipeline: str, stack: str) -> None:
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


if __name__ == "__main__":
    app()
