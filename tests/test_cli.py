"""The command line as a whole: the `sftcast` console script and `python pipelines/run.py`,
global options before or after the command, help texts, and environment problems (stack
variables, kubeconfig, an MLflow store that does not answer, a port in use) reported as one
line and exit code 2, never a traceback or a hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import pipelines.run as run_module
from cli.options import GLOBAL_OPTION_COMMANDS
from cli.registry import LOOPBACK, UI_SERVER_ENV
from cli.running import tracking_diagnosis
from pipelines.run import app
from sftcast.tracking import TrackingUnavailable, check_tracking_uri

REPO_ROOT = Path(__file__).resolve().parents[1]
K8S_VARIABLES = ("SFTCAST_K8S_CONTEXT", "SFTCAST_ARTIFACT_STORE", "SFTCAST_REGISTRY_URI",
                 "SFTCAST_MLFLOW_URI")  # fmt: skip


def cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, SystemExit | None), result.exception  # no traceback
    return result


def python(*args: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter in the project root, its output piped (not a terminal), with no
    colour settings of the caller's."""
    colour = {"NO_COLOR", "FORCE_COLOR", "ZENML_LOGGING_COLORS_DISABLED"}
    env = {k: v for k, v in os.environ.items() if k not in colour}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a tracking server that hangs."""
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen()
        yield server.getsockname()[1]


def stack_tracking_to(tmp_path: Path, uri: str) -> Path:
    local = yaml.safe_load((REPO_ROOT / "zenml_stack" / "local.yaml").read_text())
    local["components"]["experiment_tracker"][0]["configuration"]["tracking_uri"] = uri
    path = tmp_path / "remote-tracking.yaml"
    path.write_text(yaml.safe_dump(local))
    return path


# --- the console script ---------------------------------------------------------------------


def test_console_script_runs_the_same_cli() -> None:
    target = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = target["sftcast"].split(":")
    assert getattr(import_module(module), function) is run_module.main
    # as the installed script calls it: the target imported, no path set up by anyone
    script = f"import sys; from {module} import {function}; sys.argv[0] = 'sftcast'; {function}()"
    result = python("-c", script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: sftcast [OPTIONS] COMMAND [ARGS]...")
    assert "rollback" in result.stdout and "select" in result.stdout


def test_importing_the_cli_leaves_sys_path_alone() -> None:
    check = "import sys; before = list(sys.path); import pipelines.run; print(sys.path == before)"
    result = python("-c", check)
    assert result.stdout.strip() == "True", result.stderr


def test_python_pipelines_run_py_still_works() -> None:
    result = python("pipelines/run.py", "validate", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: run.py validate [OPTIONS]")


# --- one consistent command line --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--stack", "nowhere", "--dry-run", "select"],
        ["select", "--stack", "nowhere", "--dry-run"],
        ["select", "--dry-run", "--stack=nowhere"],
        ["--dry-run", "select", "--stack", "nowhere"],
        ["--stack", "local", "select", "--stack", "nowhere"],  # the last one given wins
    ],
)
def test_global_options_go_before_or_after_the_command(args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "no stack file" in result.output and "nowhere.yaml" in result.output


def test_a_global_option_is_refused_where_it_means_nothing() -> None:
    result = cli("rollback", "--task", "cls", "--dry-run")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: rollback does not take --dry-run")
    result = cli("--force", "compare", "--table", "x.csv", "--id-column", "m", "--target", "t",
                 "--proxies", "p")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "compare does not take --force; it is for select" in result.output
    assert set(GLOBAL_OPTION_COMMANDS["force"]) == {"select"}


def test_a_commands_own_option_values_stay_with_it(tmp_path: Path) -> None:
    """`--model-name --stack` names a model called `--stack`: the value is not hoisted."""
    stack = stack_tracking_to(tmp_path, f"http://{LOOPBACK}:{closed_port()}")
    result = cli("rollback", "--model-name", "--stack", "--stack", str(stack))
    assert result.exit_code == 2, result.output
    assert f"http://{LOOPBACK}" in result.output  # the stack given after the model name


def test_help_shows_flags_as_flags_and_keeps_brackets() -> None:
    def help_of(*command: str) -> str:
        return " ".join(cli(*command, "--help").output.split())  # as one line, unwrapped

    top = help_of()
    assert "--dry-run Compile" in top and "--no-cache Rerun" in top
    assert "<bool>" not in top
    assert "go before or after the command" in top
    assert "hf:<name>[@revision]" in help_of("validate")
    select = help_of("select")
    assert "--force" in select and "go before or after the command" in select


def test_rollback_takes_a_model_name_without_a_task(tracking) -> None:
    tracking()
    result = cli("rollback", "--model-name", "sftcast-no-such-model")
    assert result.exit_code == 2, result.output
    assert "sftcast-no-such-model" in result.output
    assert "Missing option" not in result.output
    result = cli("rollback")
    assert result.exit_code == 2, result.output
    assert "--task" in result.output and "--model-name" in result.output


# --- environment problems ---------------------------------------------------------------------


def test_every_missing_stack_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in K8S_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    result = cli("select", "--stack", "k8s", "--dry-run")
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for name in K8S_VARIABLES:
        assert name in result.output
    assert "SFTCAST_K8S_NAMESPACE" not in result.output  # it has a default


def test_no_kubeconfig_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in K8S_VARIABLES:
        monkeypatch.setenv(name, "https://x.example.com" if "URI" in name else "sftcast-test")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    result = cli("--stack", "k8s", "--dry-run", "zoo")
    assert result.exit_code == 2, result.output
    assert "k8s.yaml: could not load the Kubernetes configuration" in result.output
    assert str(tmp_path / "no-kubeconfig") in result.output
    assert "sftcast-test" in result.output  # the context it needs


def test_a_tracking_uri_that_refuses_is_named(tmp_path: Path) -> None:
    uri = f"http://{LOOPBACK}:{closed_port()}"
    stack = stack_tracking_to(tmp_path, uri)
    for args in (
        ["--stack", str(stack), "data"],
        ["rollback", "--task", "cls", "--stack", str(stack)],
    ):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert f"the MLflow tracking URI {uri} does not answer" in result.output


def test_steps_that_failed_silently_get_the_tracking_store_named(tmp_path: Path) -> None:
    # ZenML records no error for a step whose MLflow run could not open (the server went
    # away mid-run); the failure summary then says whether the store answers
    from deploy.stacks import load_stack_file

    uri = f"http://{LOOPBACK}:{closed_port()}"
    diagnosis = tracking_diagnosis(load_stack_file(str(stack_tracking_to(tmp_path, uri))))
    assert diagnosis is not None
    assert f"the MLflow tracking URI {uri} does not answer" in diagnosis
    assert "carry no error of their own" in diagnosis
    assert tracking_diagnosis(load_stack_file("local")) is None  # it answers


def test_a_tracking_server_that_hangs_is_bounded() -> None:
    with silent_server() as port:
        uri = f"http://{LOOPBACK}:{port}"
        with pytest.raises(TrackingUnavailable, match=f"{uri} does not answer within 0.5 s"):
            check_tracking_uri(uri, timeout_s=0.5)


def test_tracking_uri_checks_name_no_password() -> None:
    uri = f"postgresql://sftcast:hunter2secret@{LOOPBACK}:{closed_port()}/mlflow"
    with pytest.raises(TrackingUnavailable) as err:
        check_tracking_uri(uri, timeout_s=0.5)
    assert "hunter2secret" not in str(err.value)
    assert f"postgresql://sftcast:***@{LOOPBACK}" in str(err.value)
    check_tracking_uri("sqlite:///nowhere/mlflow.db")  # a local store: nothing to wait for


def test_ui_on_a_taken_port_exits_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    # should the check let it through, the server must not replace the test process
    monkeypatch.setattr(os, "execve", lambda path, args, env: started.append(args))
    with silent_server() as port:
        result = cli("ui", "--port", str(port))
    assert not started
    assert result.exit_code == 2, result.output
    assert f"port {port} on {LOOPBACK} is not free" in result.output


def test_ui_allows_loopback_hosts_only() -> None:
    """Named, the allowed hosts keep MLflow from printing its hint to serve on 0.0.0.0 (which
    `ui` never does), and admit no Host header but the loopback's."""
    hosts = UI_SERVER_ENV["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert {h.split(":")[0] for h in hosts} == {LOOPBACK, "localhost"}


def test_piped_output_has_no_colour_codes(tmp_path: Path) -> None:
    """sftcast's own messages and ZenML's log lines, written to a pipe."""
    missing = tmp_path / "missing.yaml"
    result = python("pipelines/run.py", "--config", str(missing))
    assert result.returncode == 2
    assert result.stdout.strip() == f"error: no run configuration at {missing}"
    log = "import cli.environment, logging; cli.environment.prepare(); import zenml; "
    log += "logging.getLogger('zenml').warning('careful')"
    result = python("-c", log)
    assert "careful" in result.stdout + result.stderr
    assert "\x1b[" not in result.stdout + result.stderr


def test_a_bad_config_is_reported_before_the_orchestration_layer_loads(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters:\n  zoo: {variants: [\n")
    script = (
        "import sys; from pipelines.run import main; sys.argv[1:] = ['--config', sys.argv[1]]\n"
        "try: main()\n"
        "except SystemExit as e: print(e.code, sorted({'zenml', 'torch'} & set(sys.modules)))"
    )
    result = python("-c", script, str(bad))
    error, verdict = result.stdout.strip().splitlines()
    assert error == f"error: {bad}: not valid YAML at line 3, column 1: " + (
        "expected the node content, but found '<stream end>'"
    )
    assert verdict == "2 []"
