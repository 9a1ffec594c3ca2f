"""What the tracking services are and how they are configured: `configs/services.yaml`, the
generated credentials, a service's state."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from deploy.services.processes import write_private
from deploy.stacks import REPO_ROOT, StackFileError, expand_placeholders, yaml_error_line

SERVICES_CONFIG = REPO_ROOT / "configs" / "services.yaml"
LOOPBACK = "127.0.0.1"
SERVICES = ("postgres", "mlflow", "zenml")  # the order they start in; they stop in reverse
# podman's Docker API, for the `containers` stack only: started on request (`up --containers`)
ENGINE = "podman"
# The variables the ports are read from (configs/services.yaml); the stack files read the same.
PORT_VARIABLES = {
    "postgres": "SFTCAST_POSTGRES_PORT",
    "mlflow": "SFTCAST_MLFLOW_PORT",
    "zenml": "SFTCAST_ZENML_PORT",
}
USERNAME = "sftcast"  # PostgreSQL's superuser, MLflow's admin and ZenML's default user
MLFLOW_DATABASE = "mlflow"  # database and role of the MLflow backend store
# PostgreSQL refuses to run as root: as root, its commands run as Debian's `postgres` user.
POSTGRES_USER = "postgres"


class ServiceError(RuntimeError):
    """A service that cannot be started or stopped; one line naming the service, the port or
    the folder, and what to do."""


class ServicesConfig(BaseModel):
    """configs/services.yaml, its placeholders expanded."""

    model_config = ConfigDict(extra="forbid")

    root: Path
    postgres_port: int = Field(ge=1, le=65535)
    mlflow_port: int = Field(ge=1, le=65535)
    zenml_port: int = Field(ge=1, le=65535)
    # podman's own settings file (CONTAINERS_CONF) for the engine
    containers_conf: Path | None = None
    # where PostgreSQL's binaries are; empty: the newest /usr/lib/postgresql/*/bin, else PATH
    postgres_bin: Path | None = None
    # a first start creates the databases: minutes on a busy machine
    ready_timeout_s: float = Field(300.0, gt=0)

    def port(self, service: str) -> int:
        return getattr(self, f"{service}_port")


@dataclass(frozen=True)
class Credentials:
    """Generated once, at the first `up`; the database and the servers keep them after."""

    postgres_password: str
    mlflow_db_password: str
    mlflow_password: str  # MLflow's admin, `USERNAME`
    mlflow_flask_key: str  # MLflow signs its CSRF tokens with it
    zenml_password: str  # ZenML's default user, `USERNAME`
    zenml_jwt_key: str
    zenml_secrets_key: str  # encrypts the ZenML server's secrets at rest

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        if path.is_file():
            return cls(**json.loads(path.read_text()))
        created = cls(**{name: secrets.token_urlsafe(24) for name in cls.__dataclass_fields__})
        write_private(path, json.dumps(asdict(created), indent=2))
        return created


@dataclass(frozen=True)
class ServiceState:
    name: str
    running: bool
    url: str
    pid: int | None
    log: Path
    note: str = ""  # what `up` or `down` did: started, already running, stopped, ...


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
