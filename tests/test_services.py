"""The tracking services (`sftcast services up|down|status`): PostgreSQL, the MLflow server on
it and a ZenML server, started for real on free ports under a temporary folder. Every command
runs as a user runs it, in its own process with its own ZenML client config (`up` logs that
client in to the ZenML server)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import test_faults
from test_faults import _versions
from typer.testing import CliRunner

from deploy.services import SERVICES, Credentials, Services, load_services_config
from pipelines.run import app

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(REPO_ROOT / "pipelines" / "run.py")]
HAS_POSTGRES = any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb")
needs_postgres = pytest.mark.skipif(
    not HAS_POSTGRES, reason="PostgreSQL is not installed (`make services` installs it)"
)


# minutes each: `make test-services` (after `make test` in .ci/run) sets it
in_test_services = pytest.mark.skipif(
    not os.environ.get("SFTCAST_SERVICE_TESTS"),
    reason="runs pipelines through the servers (minutes): `make test-services` runs it",
)


def on_the_services(test):
    """A test of the module's services: slow, one xdist group (one worker, one set of
    servers), skipped without PostgreSQL."""
    for mark in (needs_postgres, pytest.mark.slow, pytest.mark.xdist_group("services")):
        test = mark(test)
    return test


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The real command line, in the services' environment."""
    return subprocess.run(
        [*RUN, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )


def services_environment(root: Path) -> dict[str, str]:
    """What a user's shell holds for one set of services under `root`: free ports, and a
    ZenML client config and repository of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {
        **env,
        "SFTCAST_SERVICES_ROOT": str(root / "services"),
        "SFTCAST_POSTGRES_PORT": str(free_port()),
        "SFTCAST_MLFLOW_PORT": str(free_port()),
        "SFTCAST_ZENML_PORT": str(free_port()),
        "ZENML_CONFIG_PATH": str(root / "zenml-client"),
        "ZENML_REPOSITORY_PATH": str(root / "zenml-repo"),
        "SFTCAST_ROOT": str(root / "stores"),
    }


@contextlib.contextmanager
def started_services(*options: str) -> Iterator[dict[str, str]]:
    """Services started with `services up [options]` under a new folder, for as long as the
    block lasts; then `down`, and the folder removed. Yields their environment."""
    # not pytest's tmp_path: as root, PostgreSQL runs as `postgres`, who must reach the folder
    root = Path(tempfile.mkdtemp(prefix="sftcast-services-"))
    root.chmod(0o755)
    env = services_environment(root)
    for folder in ("zenml-repo", "stores"):
        (root / folder).mkdir()
    try:
        started = cli(env, "services", "up", *options)
        assert started.returncode == 0, started.stdout + started.stderr
        yield env
    finally:
        cli(env, "services", "down")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def services_env() -> Iterator[dict[str, str]]:
    """Services started once for this module; `down` at the end."""
    with started_services() as env:
        yield env


def services_of(env: dict[str, str]) -> Services:
    return Services(load_services_config(env=env))


def mlflow_get(services: Services, path: str, authenticated: bool = True) -> int:
    request = urllib.request.Request(f"{services.url('mlflow')}{path}")
    if authenticated:
        token = b64encode(f"sftcast:{services.credentials.mlflow_password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def listening_addresses(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def service_processes(root: str) -> list[psutil.Process]:
    """Every process started for the services under `root` (servers, workers, PostgreSQL's
    backends), found by the folder on its command line or as a child of one."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if root in " ".join(process.info["cmdline"] or []):
            found += [process, *process.children(recursive=True)]
    return found


@on_the_services
def test_up_is_idempotent_and_listens_on_loopback_only(services_env: dict[str, str]) -> None:
    services = services_of(services_env)
    before = {s.name: s.pid for s in services.status()}
    assert all(before.values()), before

    again = cli(services_env, "services", "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == len(SERVICES)
    assert {s.name: s.pid for s in services.status()} == before

    for name in SERVICES:
        port = services.config.port(name)
        assert listening_addresses(port) == {"127.0.0.1"}, name

    # the same services asked for on another port: refused, not reported as running there
    moved = cli({**services_env, "SFTCAST_MLFLOW_PORT": str(free_port())}, "services", "up")
    assert moved.returncode == 2
    assert "mlflow: already running on port" in moved.stderr

    status = cli(services_env, "services", "status")
    assert status.returncode == 0
    assert [line.split()[:2] for line in status.stdout.splitlines()] == [
        [name, "running"] for name in SERVICES
    ]


@on_the_services
def test_credentials_are_generated_private_and_required(services_env: dict[str, str]) -> None:
    services = services_of(services_env)
    path = services.root / "credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    credentials = Credentials.load_or_create(path)
    values = list(vars(credentials).values())
    assert len(set(values)) == len(values) and all(len(v) >= 24 for v in values)
    # on no command line, where any user of the machine could read them
    command_lines = [" ".join(p.cmdline()) for p in service_processes(str(services.root))]
    assert command_lines
    assert not [v for v in values for line in command_lines if v in line]

    # the MLflow server answers its health check to anyone, its API to its admin only
    assert mlflow_get(services, "/health", authenticated=False) == 200
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert mlflow_get(services, search, authenticated=False) == 401
    assert mlflow_get(services, search) == 200


def test_a_taken_port_is_named_and_nothing_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv("SFTCAST_SERVICES_ROOT", str(tmp_path / "services"))
        monkeypatch.setenv("SFTCAST_POSTGRES_PORT", str(port))
        result = CliRunner().invoke(app, ["services", "up"])
    assert result.exit_code == 2, result.output
    error = result.output.splitlines()[-1]
    assert error.startswith(f"error: postgres: port {port} on 127.0.0.1 is taken")
    assert "SFTCAST_POSTGRES_PORT" in error
    assert not (tmp_path / "services" / "credentials.json").exists()  # nothing was started
    assert "Traceback" not in result.output


def test_a_bad_port_in_the_configuration_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTCAST_MLFLOW_PORT", "70000")
    result = CliRunner().invoke(app, ["services", "status"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert "configs/services.yaml: mlflow_port:" in result.output
    assert "70000" in result.output


# -- pipelines through the servers ----------------------------------------------------------

ZENML_LAST_RUN = """
import json
from zenml.client import Client
run = Client().get_pipeline("sftcast_select").last_run
print(json.dumps({"id": str(run.id), "steps": {n: s.status.value for n, s in run.steps.items()}}))
"""


def start(env: dict[str, str], config: Path, *command: str) -> subprocess.Popen:
    """The real CLI on the `server` stack, one torch thread (two runs share 2 cores)."""
    return subprocess.Popen(
        [*RUN, "--stack", "server", "--config", str(config), *command],
        cwd=REPO_ROOT, env={**env, "OMP_NUM_THREADS": "1"}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def last_select_run(env: dict[str, str]) -> dict:
    """The newest select run as the ZenML server has it: its id and its steps' statuses."""
    done = subprocess.run(
        [sys.executable, "-c", ZENML_LAST_RUN], env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


def mlflow_client(services: Services, monkeypatch: pytest.MonkeyPatch):
    """A client of the services' MLflow server, as its admin."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "sftcast")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", services.credentials.mlflow_password)
    url = services.url("mlflow")
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


def assert_no_credential_logged(client, credentials: Credentials, monkeypatch) -> None:
    """test_faults' scan of every param and tag in the store, for the generated values."""
    monkeypatch.setattr(test_faults, "SECRETS", vars(credentials))
    test_faults._assert_no_secret(client)


@in_test_services
@on_the_services
def test_a_stopped_mlflow_server_fails_the_run_and_the_rerun_resumes(
    services_env: dict[str, str], make_select_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sftcast.promotion import PRODUCTION, TAG_PIPELINE_RUN_ID
    from sftcast.registry import TAG_SFT_KEY

    services = services_of(services_env)
    client = mlflow_client(services, monkeypatch)
    name, config = "test-svc-cls", make_select_config("test-svc-{task}")
    # one try per request, as an operator would set it to fail fast (MLflow's default
    # retries for minutes)
    env = {**services_env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    run = start(env, config, "select", "--force")
    try:
        while run.poll() is None and not _versions(client, name):
            run.stdout.readline()  # keeps the pipe drained; returns at each line
        assert run.poll() is None, "finished before the server could be stopped"
        services.stop("mlflow")
        output, _ = run.communicate()
    finally:
        run.kill()
        run.wait()
        services.start("mlflow")
    assert run.returncode == 1, output
    failure = output[output.index("pipeline failed: ") :]
    assert f"127.0.0.1:{services.config.mlflow_port}" in failure, failure
    assert "Traceback" not in failure

    # what the failed run left: whole versions only, none promoted
    before = _versions(client, name)
    assert 1 <= len(before) < 4
    assert all(v.status == "READY" and v.tags[TAG_SFT_KEY] for v in before.values())
    assert PRODUCTION not in client.get_registered_model(name).aliases
    failed = last_select_run(services_env)
    done = {n for n, status in failed["steps"].items() if status == "completed"}

    rerun = start(services_env, config, "select", "--force")
    output, _ = rerun.communicate()
    assert rerun.returncode == 0, output
    resumed = last_select_run(services_env)
    assert resumed["id"] != failed["id"]
    assert {n for n in done if resumed["steps"][n] == "cached"} == done  # from the cache

    after = _versions(client, name)
    keys = {v.tags[TAG_SFT_KEY] for v in after.values()}
    assert len(after) == len(keys) == 4
    assert {v: after[v].tags[TAG_SFT_KEY] for v in before} == {
        v: before[v].tags[TAG_SFT_KEY] for v in before
    }
    holder = client.get_model_version_by_alias(name, PRODUCTION)
    # lineage in both servers: the version names the ZenML server's run that promoted it
    assert holder.tags[TAG_PIPELINE_RUN_ID] == resumed["id"]
    assert {v.tags["zenml.pipeline_run_id"] for v in after.values()} <= {
        failed["id"],
        resumed["id"],
    }
    assert_no_credential_logged(client, services.credentials, monkeypatch)


@in_test_services
@on_the_services
def test_two_runs_through_the_server_lose_no_run_metric_or_version(
    services_env: dict[str, str], make_select_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sftcast.registry import TAG_SFT_KEY

    client = mlflow_client(services_of(services_env), monkeypatch)
    model = "test-svc-concurrent-{task}"
    first, second = make_select_config(model, seed=0), make_select_config(model, seed=1)
    # the zoo first: two runs pre-training the same variant into one folder would race
    zoo = start(services_env, first, "zoo")
    assert zoo.wait() == 0, zoo.stdout.read()
    runs = [start(services_env, path, "sft") for path in (first, second)]
    outputs = [run.communicate()[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    experiment = client.get_experiment_by_name("sftcast_sft")
    steps = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`zenml.step_name` LIKE 'sft_cls_%'"
    )
    by_run: dict[str, list] = {}
    for step in steps:
        by_run.setdefault(step.data.tags["zenml.pipeline_run_id"], []).append(step)
    assert sorted(len(s) for s in by_run.values())[-2:] == [4, 4]
    for step in (s for group in by_run.values() for s in group):
        assert step.info.status == "FINISHED"
        assert {"final_loss", "score", "cls.train.accuracy"} <= set(step.data.metrics)
    found = _versions(client, model.format(task="cls"))
    keys = [v.tags[TAG_SFT_KEY] for v in found.values()]
    assert len(found) == 8 and len(set(keys)) == 8
    assert {v.tags["sftcast.seed"] for v in found.values()} == {"0", "1"}


@on_the_services
def test_down_leaves_nothing_running_and_up_finds_the_same_data(
    services_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(services_env)
    client = mlflow_client(services, monkeypatch)
    experiments = {e.name for e in client.search_experiments()}

    stopped = cli(services_env, "services", "down")
    assert stopped.returncode == 0, stopped.stderr
    assert [s.running for s in services.status()] == [False] * len(SERVICES)
    assert not service_processes(str(services.root))
    for name in SERVICES:
        assert not listening_addresses(services.config.port(name)), name

    started = cli(services_env, "services", "up")
    assert started.returncode == 0, started.stderr
    assert started.stdout.count("started") == len(SERVICES)
    assert {e.name for e in client.search_experiments()} == experiments
