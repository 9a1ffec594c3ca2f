"""`sftcast services up|down|status`: the tracking services of deploy.services, and the
project's ZenML client logged in to (or out of) the ZenML server among them.

`up` also keeps the MLflow credentials where the stacks read them: the ZenML secret
`sftcast_mlflow` on that server (`{{sftcast_mlflow.password}}` in zenml_stack/server.yaml).
"""

from __future__ import annotations

from typing import Any

import typer

from deploy.services import (
    ENGINE,
    MLFLOW_SECRET,
    USERNAME,
    ServiceError,
    Services,
    ServiceState,
    load_services_config,
    login_zenml,
    logout_zenml,
)  # fmt: skip

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="PostgreSQL, an MLflow server on it and a ZenML server, on 127.0.0.1 only "
    "(configs/services.yaml). Exit codes: 0 done; 2 a port taken, a service that does not "
    "start, a bad configuration, each named in one line.",
)


def _services() -> Services:
    try:
        return Services(load_services_config())
    except ServiceError as err:
        _fail(str(err))


def _fail(message: str) -> Any:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _show(states: list[ServiceState]) -> None:
    for s in states:
        pid = f"pid {s.pid}" if s.running else "-"
        typer.echo(
            f"{s.name:<9}{'running' if s.running else 'down':<9}{s.url:<46}{pid:<11}{s.note}"
        )


@app.command()
def up(
    containers: bool = typer.Option(
        False, "--containers", help="Also podman's Docker API, for `--stack containers`."
    ),
) -> None:
    """Start what is not running (idempotent), then log this project's ZenML client in to the
    ZenML server; `--stack server` then tracks to the MLflow server."""
    services = _services()
    try:
        states = services.up(engine=containers)
    except ServiceError as err:
        _show(services.status())
        _fail(str(err))
    _show(states)
    login_zenml(services)
    typer.echo(
        f"ZenML client logged in to {services.url('zenml')} as {USERNAME}; MLflow credentials "
        f"in its secret {MLFLOW_SECRET}; generated credentials in "
        f"{services.root / 'credentials.json'} (owner only)"
    )
    if containers:
        typer.echo(f"for --stack containers: export DOCKER_HOST={services.url(ENGINE)}")


@app.command()
def down() -> None:
    """Stop every service (their data stays under the services' folder), and log the ZenML
    client back out to the embedded store."""
    services = _services()
    if logout_zenml(services):
        typer.echo("ZenML client back on its embedded store")
    try:
        _show(services.down())
    except ServiceError as err:
        _fail(str(err))


@app.command()
def status() -> None:
    """Each service: running or down, its URL, its process id. Exit code 0 either way."""
    _show(_services().status())
