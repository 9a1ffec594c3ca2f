"""`validate`: one task dataset checked with Great Expectations; the report logged to the
--stack's MLflow store, whose failure never changes the data's verdict."""

from __future__ import annotations

import sys

import typer

from cli.render import console, fail
from cli.running import stack_tracking_uri
from deploy.stacks import StackFileError, stores_root
from sftcast.tracking import TrackingUnavailable, check_tracking_uri

HELP = (
    "Validate one task dataset with Great Expectations and log the report to the stack's "
    "MLflow store (the sftcast_validate experiment).\n\n"
    "Exit codes:\n"
    "0 the dataset is valid;\n"
    "1 it failed validation or could not be read (each problem names its file, split, row "
    "and column);\n"
    "2 a usage error (an unknown task, a missing or empty option).\n\n"
    "Logging does not change the verdict: a report that cannot be logged (the stack file "
    "does not load, the MLflow store cannot be used or does not answer) gets one warning "
    "line on stderr, and "
    "the exit code is still the data's."
)


def validate(
    ctx: typer.Context,
    task: str = typer.Option(..., help="cbqa, rag or cls"),
    dataset: str = typer.Option(..., help="A folder of split files, or hf:<name>[@revision]"),
) -> None:
    """Validate one task dataset; the exit code is the data's verdict (see the help above)."""
    from sftcast.data.schema import TASKS
    from sftcast.validation import validate_source

    if task not in TASKS:
        fail(f"--task {task!r} is not a task; expected one of {', '.join(TASKS)}")
    if not dataset.strip():  # a usage error, not a dataset (it would read the current folder)
        fail("--dataset is empty; expected a folder of split files or hf:<name>[@revision]")
    report = validate_source(dataset, task)
    if console.is_terminal:
        console.print(report.to_table())
    else:  # piped: whole lines, no colour, no cell wrapping a path mid-name
        print("\n".join(report.to_lines()))
    not_logged = log_validation(report, task, dataset, ctx.obj.stack)
    if not_logged:
        sys.stdout.flush()  # the report first, also where stdout and stderr share a pipe
        print(f"warning: validation report not logged: {not_logged}", file=sys.stderr)
    verdict = f"{dataset}: {task} dataset {'is valid' if report.success else 'failed validation'}"
    if console.is_terminal:
        console.print(verdict, style="green" if report.success else "red", markup=False)
    else:
        print(verdict)
    if not report.success:
        raise typer.Exit(1)


def log_validation(report: object, task: str, dataset: str, stack: str) -> str | None:
    """Record the report in the stack's MLflow store, where its pipelines log. Never raises:
    returns why it could not log (one line), since the data verdict stands either way."""
    import mlflow

    from sftcast.tracking import ensure_experiment, log_json, safe_tags

    try:
        uri = stack_tracking_uri(stack)
    except StackFileError as err:
        return f"stack {stack!r} does not load: {err}"
    try:
        check_tracking_uri(uri)  # one bounded try: MLflow itself retries for minutes
        mlflow.set_tracking_uri(uri)
        artifacts = stores_root() / "mlruns" / "artifacts"
        experiment_id = ensure_experiment("sftcast_validate", artifacts)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"validate-{task}"):
            mlflow.set_tags(safe_tags({"sftcast.task": task, "sftcast.dataset": dataset}))
            mlflow.log_metric("validation_failures", len(report.failures))
            mlflow.log_metric("validation_success", int(report.success))
            log_json(report.to_dict(), "validation_report.json")
    except TrackingUnavailable as err:
        return str(err)
    except Exception as err:  # any other failure of the store: a warning, never the verdict
        reason = " ".join(str(err).split())
        return f"cannot log to the MLflow tracking URI {uri}: {type(err).__name__}: {reason}"
    return None
