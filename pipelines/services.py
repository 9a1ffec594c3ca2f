"""`sftcast services up|down|status`: the tracking services of sftcast.services, and the
project's ZenML client logged in to (or out of) the ZenML server among them.

`up` also keeps the MLflow credentials where the stacks read them: the ZenML secret
`sftcast_mlflow` on that server (`{{sftcast_mlflow.password}}` in zenml_stack/server.yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from pipelines.stacks import REPO_ROOT, StackFileError, expand_placeholders, yaml_error_line
from sftcast.services import ENGINE, USERNAME, ServiceError, Services, ServicesConfig, ServiceState

SERVICES_CONFIG = REPO_ROOT / "configs" / "services.yaml"
MLFLOW_SECRET = "sftcast_mlflow"

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="PostgreSQL, an MLflow server on it and a ZenML server, on 127.0.0.1 only "
    "(configs/services.yaml). Exit codes: 0 done; 2 a port taken, a service that does not "
    "start, a bad configuration, each named in one line.",
)


def load_services_config(
    path: Path = SERVICES_CONFIG, env: dict[str, str] | None = None
) -> ServicesConfig:
    from pydantic import ValidationError

    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ServiceError(f"{path}: cannot read it: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ServiceError(f"{path}: {yaml_error_line(err)}") from err
    try:
        config = ServicesConfig.model_validate(expand_placeholders(raw, path, env))
    except StackFileError as err:
        raise ServiceError(str(err)) from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "configuration"
        raise ServiceError(f"{path}: {where}: {first['msg']} (got {first.get('input')!r})") from err
    if config.containers_conf and not config.containers_conf.is_absolute():
        config.containers_conf = REPO_ROOT / config.containers_conf  # the project's own file
    return config


def login_zenml(services: Services) -> None:
    """Point this project's ZenML client at the services' ZenML server (as `zenml login`
    would), and keep the MLflow credentials there as the secret the stacks read."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.zen_stores.rest_zen_store import RestZenStoreConfiguration

    credentials = services.credentials
    store = RestZenStoreConfiguration(
        url=services.url("zenml"), username=USERNAME, password=credentials.zenml_password
    )
    GlobalConfiguration().set_store(store)
    client = Client()
    values = {"username": USERNAME, "password": credentials.mlflow_password}
    if client.list_secrets(name=MLFLOW_SECRET).items:
        client.update_secret(MLFLOW_SECRET, add_or_update_values=values)
    else:
        client.create_secret(MLFLOW_SECRET, values=values)


def logout_zenml(services: Services) -> bool:
    """Back to the embedded ZenML store, if the client was logged in to these services."""
    from zenml.config.global_config import GlobalConfiguration

    config = GlobalConfiguration()
    if config.store_configuration.url != services.url("zenml"):
        return False
    config.set_default_store()
    return True


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
