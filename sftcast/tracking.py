"""MLflow conventions shared by every sftcast run: lineage tags, config hashes, experiments.

Plain MLflow, no ZenML: the steps pass in the ZenML identifiers they know.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

# `mlflow` is imported where it is used: the command line imports this module for every
# command, `--help` included, and mlflow takes seconds to import.

TAG_PIPELINE_RUN_ID = "zenml.pipeline_run_id"
TAG_PIPELINE_RUN_NAME = "zenml.pipeline_run_name"
TAG_PIPELINE_NAME = "zenml.pipeline_name"
TAG_STEP_NAME = "zenml.step_name"
TAG_CONFIG_HASH = "sftcast.config_hash"
# Other registry backends cap tag values at 5000-8000 characters; MLflow's own allows more.
MAX_TAG_CHARS = 5000
TRUNCATED = "...[truncated]"
REDACTED = "[redacted]"
# Environment variables whose values must never reach MLflow (params, tags, version tags).
SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE
)
# Token shapes worth catching even when they do not come from the environment:
# Hugging Face, GitHub, AWS access key ids, OpenAI-style keys, bearer headers.
SECRET_SHAPES = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bAKIA[0-9A-Z]{16}\b"
    r"|\bsk-[A-Za-z0-9_-]{20,}|(?i:bearer\s+)[A-Za-z0-9._~+/-]{16,}"
)
MIN_SECRET_CHARS = 6  # shorter values ("1", "true") would redact half of every text
# How long a tracking store may take to answer before sftcast says so, instead of waiting on
# MLflow's own retries (7 of them, minutes in all, with its defaults).
TRACKING_TIMEOUT_S = 5.0
# Where a database URI names no port: the servers' well-known ones.
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables, longest first."""
    env = os.environ if env is None else env
    found = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_CHARS}
    return sorted(found, key=len, reverse=True)


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """`text` with every secret-looking environment value and token shape replaced."""
    for value in secret_values(env):
        text = text.replace(value, REDACTED)
    return SECRET_SHAPES.sub(REDACTED, text)


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def tag_value(value: Any) -> str:
    """A tag or param value: text and scalars as MLflow writes them, anything else as sorted
    JSON; secrets redacted; cut to MAX_TAG_CHARS with a visible marker when longer."""
    if isinstance(value, str | bool | int | float) or value is None:
        text = str(value)  # as MLflow itself writes a scalar: `True`, `3`, `0.5`
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    text = redact(text)
    if len(text) <= MAX_TAG_CHARS:
        return text
    return text[: MAX_TAG_CHARS - len(TRUNCATED)] + TRUNCATED


def config_hash(*configs: Any, length: int = 12) -> str:
    """A stable short hash of configurations (pydantic models, dicts, scalars)."""
    canonical = json.dumps([to_jsonable(c) for c in configs], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def safe_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags (or params) as MLflow takes them, through `tag_value`: the one way sftcast writes
    them, so no secret reaches the store."""
    return {k: tag_value(v) for k, v in tags.items()}


def lineage_tags(
    pipeline_run_id: str, pipeline_run_name: str, pipeline_name: str, step_name: str, chash: str
) -> dict[str, str]:
    return {
        TAG_PIPELINE_RUN_ID: pipeline_run_id,
        TAG_PIPELINE_RUN_NAME: pipeline_run_name,
        TAG_PIPELINE_NAME: pipeline_name,
        TAG_STEP_NAME: step_name,
        TAG_CONFIG_HASH: chash,
    }


def is_local_store(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri


class TrackingUnavailable(RuntimeError):
    """A tracking URI whose store does not answer; the message names the URI."""


def check_tracking_uri(uri: str, timeout_s: float = TRACKING_TIMEOUT_S) -> None:
    """Raise `TrackingUnavailable` naming `uri` unless its store answers within `timeout_s`:
    one try, no retries. Any HTTP answer counts (a 401 or 404 too: the server is there); a
    database server must accept a connection. A local store (SQLite, files) must be one that
    opens, or one that can be created."""
    if is_local_store(uri):
        if problem := local_store_problem(uri):
            raise TrackingUnavailable(f"the MLflow store {uri} cannot be used: {problem}")
        return
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]  # `postgresql+psycopg2` is a PostgreSQL server
    try:
        if scheme in ("http", "https"):
            from mlflow.utils.credentials import get_default_host_creds
            from mlflow.utils.rest_utils import http_request

            # MLflow's own request, so its TLS and auth settings (MLFLOW_TRACKING_*) apply
            http_request(
                get_default_host_creds(uri), "/health", "GET",
                max_retries=0, timeout=timeout_s, raise_on_status=False,
            )  # fmt: skip
        elif parts.hostname and (port := parts.port or DATABASE_PORTS.get(scheme)):
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except Exception as err:  # requests, MLflow and the socket layer each raise their own
        raise TrackingUnavailable(
            f"the MLflow tracking URI {without_password(uri)} does not answer within "
            f"{timeout_s:g} s: {redact(_first_line(err))}"
        ) from err


def local_store_problem(uri: str) -> str | None:
    """Why the SQLite database or store folder of a local tracking URI can be neither opened
    nor created; None if it can. MLflow would say so only from deep in SQLAlchemy, after a
    retry loop, and (with no store yet) after the pipeline's work."""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        if not database or database == ":memory:":
            return None
        path = Path(database)
    else:
        path = Path(urlsplit(uri).path if uri.startswith("file:") else uri)
    if path.exists():
        if not uri.startswith("sqlite:"):
            return None if path.is_dir() else f"{path} is a file, not a folder"
        return _sqlite_file_problem(path)
    folder = next(p for p in path.parents if p.exists())  # where the store would be created
    if not folder.is_dir():
        return f"{folder} is a file, not a folder, so {path} cannot be created"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable, so {path} cannot be created"
    return None


def _sqlite_file_problem(path: Path) -> str | None:
    """By the file's header, not a connection: a read-only connection refuses a database
    whose last writer was killed mid-transaction (its journal awaits recovery, which only a
    writer does, as MLflow will), and a writable one would change the store being checked."""
    if path.is_dir():
        return f"{path} is a folder, not an SQLite database"
    try:
        with path.open("rb") as database:
            header = database.read(len(SQLITE_HEADER))
    except OSError as err:
        return f"{path}: cannot be read: {err.strerror or err}"
    if header and header != SQLITE_HEADER:  # an empty file is an empty database to SQLite
        return f"{path}: file is not a database (no SQLite header)"
    return None


def without_password(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def ensure_experiment(name: str, artifact_root: Path) -> str:
    """Create the experiment with artifacts under `artifact_root` if it does not exist.

    MLflow's SQLite store otherwise puts artifacts in `./mlruns` of whatever directory the
    process started in; a fixed location keeps one store per project.
    """
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = (artifact_root / name).resolve()
    return client.create_experiment(name, artifact_location=location.as_uri())


def log_json(obj: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(to_jsonable(obj), artifact_file)
