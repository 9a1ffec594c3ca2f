"""`rollback` and `ui`: the --stack's MLflow registry and UI, no pipeline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from cli.render import console, fail
from cli.running import stack_tracking_uri
from deploy.stacks import StackFileError, stores_root
from sftcast.tracking import TrackingUnavailable, check_tracking_uri

LOOPBACK = "127.0.0.1"  # the only address `ui` binds
# `ui` serves the UI only: MLflow's job runner (LLM judges, trace roll-ups, nothing sftcast
# logs) would add eight more processes (MLflow 3.17). The allowed hosts, the loopback names
# only, are the server's whole audience; set, they also spare a hint to widen them.
UI_SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SERVER_ALLOWED_HOSTS": f"{LOOPBACK},{LOOPBACK}:*,localhost,localhost:*",
}


def rollback(
    ctx: typer.Context,
    task: str | None = typer.Option(None, help="cbqa, rag or cls: the model sftcast-<task>."),
    model_name: str | None = typer.Option(None, help="The registered model, instead of --task."),
) -> None:
    """Move a model's `production` alias back to the version that held it before, in the
    --stack's MLflow store; no pipeline runs."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from sftcast.data.schema import TASKS
    from sftcast.promotion import PromotionError
    from sftcast.promotion import rollback as rollback_production

    if task is None and model_name is None:
        fail("rollback needs --task (for the model sftcast-<task>) or --model-name")
    if task is not None and model_name is not None:
        fail(
            f"rollback takes --task or --model-name, not both (--task {task}, --model-name "
            f"{model_name}): which model to roll back?"
        )
    if task is not None and task not in TASKS:
        fail(f"--task {task!r} is not a task; expected one of {', '.join(TASKS)}")
    try:
        uri = stack_tracking_uri(ctx.obj.stack)
        check_tracking_uri(uri)
        mlflow.set_tracking_uri(uri)
        result = rollback_production(model_name or f"sftcast-{task}")
    except (StackFileError, TrackingUnavailable, PromotionError, MlflowException) as err:
        fail(str(err))
    console.print(result.summary, markup=False, soft_wrap=True)


def ui(
    ctx: typer.Context,
    port: int = typer.Option(5000, min=1, max=65535, help="Port on 127.0.0.1."),
) -> None:
    """Serve the --stack's MLflow store (runs and registry) in the MLflow UI, on 127.0.0.1
    only; Ctrl-C stops it."""
    from sftcast.tracking import is_local_store

    name = ctx.obj.stack
    try:
        uri = stack_tracking_uri(name)
    except StackFileError as err:
        fail(str(err))
    if not is_local_store(uri):
        fail(f"stack {name!r} tracks to the MLflow server at {uri}: open that one")
    try:
        check_tracking_uri(uri)  # the server would start, then fail at the first page
    except TrackingUnavailable as err:
        fail(str(err))
    check_port_free(port)
    command = mlflow_server_command(uri, stores_root() / "mlruns" / "artifacts", port)
    console.print(f"MLflow UI on http://{LOOPBACK}:{port} over {uri}", markup=False, soft_wrap=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The server in this process's place: Ctrl-C and SIGTERM reach it (it forwards them to
    # its workers), and whoever started `ui` holds the server's own process id.
    os.execve(command[0], command, {**os.environ, **UI_SERVER_ENV})


def check_port_free(port: int) -> None:
    """Fail naming the port if something listens there: once exec'd, the server would only
    log "address already in use" and exit 0."""
    import socket

    with socket.socket() as probe:
        # as the server binds: a port left in TIME_WAIT by a stopped server is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as err:
            fail(f"port {port} on {LOOPBACK} is not free ({err.strerror}); choose another: --port")


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
