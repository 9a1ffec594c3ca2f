"""What a pipeline command checks about its process before any work, and how it stops.

`check_environment`: the folders the environment names are folders, and ZenML's project-local
config points at this checkout's own store. `stop_on_signals`: Ctrl-C and SIGTERM stop a run.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from deploy.stacks import REPO_ROOT

DEFAULT_ZENML_CONFIG = REPO_ROOT / ".zenml" / "config"
# The variables that name folders sftcast or ZenML write into.
FOLDER_VARIABLES = (
    "SFTCAST_ROOT",
    "SFTCAST_STATE_DIR",
    "ZENML_CONFIG_PATH",
    "ZENML_REPOSITORY_PATH",
)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ProcessEnvironmentError(RuntimeError):
    """The process's environment cannot run a pipeline; the message names the variable or
    file."""


def check_environment(env: dict[str, str] | None = None) -> None:
    """Raise `ProcessEnvironmentError` when a folder variable names something that is not a
    folder, or when ZenML's project-local config uses another checkout's store."""
    env = dict(os.environ) if env is None else env
    for name in FOLDER_VARIABLES:
        value = env.get(name)
        if value and (path := Path(value)).exists() and not path.is_dir():
            raise ProcessEnvironmentError(f"{name}={value} is a file, not a folder")
    if Path(env.get("ZENML_CONFIG_PATH") or DEFAULT_ZENML_CONFIG) == DEFAULT_ZENML_CONFIG:
        _check_own_zenml_store(DEFAULT_ZENML_CONFIG / "config.yaml", env)


def _check_own_zenml_store(config: Path, env: dict[str, str]) -> None:
    """ZenML writes its store's absolute path into the project-local config, so a checkout
    copied (or moved) with its `.zenml/` would run against, and re-register its stack
    components in, the first checkout's database."""
    if env.get("ZENML_STORE_URL") or not config.is_file():
        return
    try:
        store = (yaml.safe_load(config.read_text()) or {}).get("store") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return  # ZenML itself reports a config it cannot read
    url = str(store.get("url") or "")
    if not url.startswith("sqlite:///"):
        return  # a ZenML server (`make services` logs in to one): shared on purpose
    database = Path(url.removeprefix("sqlite:///"))
    if not database.resolve().is_relative_to(config.parent.resolve()):
        raise ProcessEnvironmentError(
            f"{config}: ZenML's store is {database}, outside this checkout (was the folder "
            "copied or moved with its stores?); `make clean-stores` gives this checkout its "
            "own, or export ZENML_CONFIG_PATH to use that store on purpose"
        )


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt in the run. ZenML turns a signal
    during a step into that step's failure (an Exception), after which its local orchestrator
    starts the steps that do not depend on it; KeyboardInterrupt is what it lets through. Its
    step handler calls the handler it replaced, this one, after its own."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield  # Python delivers signals to the main thread only
        return
    previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def atomic_zenml_config_writes() -> None:
    """Make ZenML write its local YAML configuration whole or not at all.

    ZenML 0.98 rewrites its client configuration in place (truncate, then write) every time a
    process creates its Client; a second command starting at that moment (two `watch`es on one
    folder, two runs on one machine) reads an empty file and fails with "'NoneType' object has
    no attribute 'update'". ZenML has no setting for it, so its one YAML writer is replaced for
    local paths by sftcast's write-beside-and-rename: a reader sees the old file or the new.
    """
    from zenml.utils import io_utils, yaml_utils

    from sftcast.files import write_text_atomic

    original = yaml_utils.write_yaml
    if getattr(original, "sftcast_atomic", False):
        return

    def write_yaml(file_path: str, contents: Any, sort_keys: bool = True) -> None:
        if io_utils.is_remote(file_path):
            original(file_path, contents, sort_keys)
            return
        if not Path(file_path).parent.is_dir():  # as ZenML's own writer
            raise FileNotFoundError(f"Directory {Path(file_path).parent} does not exist.")
        write_text_atomic(file_path, yaml.dump(contents, sort_keys=sort_keys))

    write_yaml.sftcast_atomic = True  # type: ignore[attr-defined]
    yaml_utils.write_yaml = write_yaml
