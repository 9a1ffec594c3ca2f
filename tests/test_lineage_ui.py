"""Lineage audit in the MLflow UI, in a real browser: a tiny `select` run fills a store,
`pipelines/run.py ui` serves it on 127.0.0.1 only, and headless Chromium (Debian's, driven by
Playwright) must show the `production` alias on the promoted version, that version's ZenML run
id, and the metrics of the MLflow run it links to. Screenshots of the three pages, and the
server's log, go to `$SFTCAST_TEST_ARTIFACTS/lineage_ui/` (`test-artifacts/lineage_ui/` at the
repository root by default)."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from cli.registry import LOOPBACK, mlflow_server_command
from pipelines.run import app
from sftcast.tracking import TAG_PIPELINE_RUN_ID

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("SFTCAST_CHROMIUM", "/usr/bin/chromium"))
# A closed network: without these Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
MODEL = "test-ui-cls"  # its own registered model: versions made by this test's run only
UI_TIMEOUT_MS = 60_000  # each wait for text in the page, on a busy 2-core machine
SERVER_START_S = 120


def artifacts_dir() -> Path:
    root = os.environ.get("SFTCAST_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts"
    path = Path(root).resolve() / "lineage_ui"
    shutil.rmtree(path, ignore_errors=True)  # never leave an older run's pictures behind
    path.mkdir(parents=True)
    return path


def js_number(value: float) -> str:
    """A number as the UI writes it (JavaScript's Number.prototype.toString): `1`, not `1.0`;
    shortest round-trip digits; exponent form only below 1e-6 and from 1e21."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    digits = Decimal(repr(value))
    return format(digits, "f") if 1e-6 <= abs(value) < 1e21 else format(digits, "e")


@dataclass(frozen=True)
class Lineage:
    """What the registry says, through the MLflow client, that the UI must show."""

    model: str
    version: str
    pipeline_run_id: str
    run_id: str
    run_name: str
    metrics: dict[str, float]


def test_server_command_binds_loopback_only(tmp_path: Path) -> None:
    command = mlflow_server_command("sqlite:///x/mlflow.db", tmp_path / "artifacts", 5123)
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    options = dict(zip(command[4::2], command[5::2], strict=True))
    assert options == {
        "--backend-store-uri": "sqlite:///x/mlflow.db",
        "--default-artifact-root": str(tmp_path / "artifacts"),
        "--host": "127.0.0.1",
        "--port": "5123",
        "--workers": "1",
    }
    assert LOOPBACK == "127.0.0.1"


def test_ui_refuses_a_stack_without_a_local_store(tmp_path: Path) -> None:
    bare = {"orchestrator": [{"name": "o", "flavor": "local"}],
            "artifact_store": [{"name": "a", "flavor": "local"}]}  # fmt: skip
    tracker = {"name": "t", "flavor": "mlflow",
               "configuration": {"tracking_uri": "https://mlflow.example.com"}}  # fmt: skip
    remote = {"stack_name": "remote", "components": {**bare, "experiment_tracker": [tracker]}}
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(remote))
    result = CliRunner().invoke(app, ["ui", "--stack", str(tmp_path / "remote.yaml")])
    assert result.exit_code == 2
    assert "https://mlflow.example.com" in result.output

    untracked = {"stack_name": "bare", "components": bare}
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump(untracked))
    result = CliRunner().invoke(app, ["ui", "--stack", str(tmp_path / "bare.yaml")])
    assert result.exit_code == 2
    assert "no experiment tracker" in result.output


@pytest.mark.slow
@pytest.mark.xdist_group("zenml-runs")
def test_mlflow_ui_shows_the_promotion_and_its_lineage(
    zenml_client, tracking, make_select_config
) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(
            f"{CHROMIUM} is missing and could not be installed: `make browser` installs "
            "Debian's chromium (needs root and apt-get)"
        )
    out = artifacts_dir()
    print(f"screenshots and server log: {out}")

    config = make_select_config(registered_model="test-ui-{task}")
    result = CliRunner().invoke(app, ["--config", str(config), "--no-cache", "select", "--force"])
    assert result.exit_code == 0, result.output
    run = zenml_client.get_pipeline("sftcast_select").last_run
    lineage = _lineage(tracking(), MODEL)
    assert lineage.pipeline_run_id == str(run.id)  # the version was made by this very run
    assert "score" in lineage.metrics

    with ui_server(out / "mlflow-server.log") as (port, server):
        listeners = listening_sockets(server)
        assert any(port == p for _, p in listeners), listeners
        assert all(ip == LOOPBACK for ip, _ in listeners), listeners
        check_lineage_in_browser(f"http://{LOOPBACK}:{port}", lineage, out)


def _lineage(client, model: str) -> Lineage:
    holder = client.get_model_version_by_alias(model, "production")
    linked = client.get_run(holder.run_id)
    return Lineage(
        model=model,
        version=str(holder.version),
        pipeline_run_id=holder.tags[TAG_PIPELINE_RUN_ID],
        run_id=holder.run_id,
        run_name=linked.info.run_name,
        # The UI leaves NaN metrics out of the run page (MLflow 3.17); the others it must show.
        metrics={k: v for k, v in linked.data.metrics.items() if math.isfinite(v)},
    )


@contextmanager
def ui_server(log: Path) -> Iterator[tuple[int, psutil.Process]]:
    """`python pipelines/run.py ui` on a free port, as a user starts it; yields once the server
    answers, and always stops it (and only it: its own process group) afterwards."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(REPO_ROOT / "pipelines" / "run.py"), "ui", "--port", str(port)]
    with log.open("w") as sink:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`ui` exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no answer on port {port} in {SERVER_START_S}s:\n{log.read_text()}")
            time.sleep(0.25)
        yield port, psutil.Process(proc.pid)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def listening_sockets(server: psutil.Process) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket and bound UDP socket in the process
    tree: `ui` execs `mlflow server`, which starts uvicorn."""
    tree = [server, *server.children(recursive=True)]
    assert any("mlflow" in part for part in server.cmdline()), server.cmdline()
    found = []
    for proc in tree:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN or conn.type == socket.SOCK_DGRAM:
                found.append((conn.laddr.ip, conn.laddr.port))
    return found


def check_lineage_in_browser(base_url: str, lineage: Lineage, out: Path) -> None:
    """The registered model page, the version page, then the version's source run reached by
    its link; a screenshot of each (and of the page at a failure)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.set_default_timeout(UI_TIMEOUT_MS)
        wait = {"timeout": UI_TIMEOUT_MS}
        try:
            # The registered model: the alias chip sits on the promoted version's row only.
            page.goto(f"{base_url}/#/models/{lineage.model}")
            alias = page.get_by_title("production", exact=True)
            expect(alias).to_have_count(1, **wait)
            row = page.get_by_role("row").filter(has=alias)
            expect(row).to_contain_text(f"Version {lineage.version}", **wait)
            _close_assistant(page)
            row.scroll_into_view_if_needed()
            page.screenshot(path=out / "1-registered-model.png")

            # The version: the alias again, and the ZenML run that made it.
            page.goto(f"{base_url}/#/models/{lineage.model}/versions/{lineage.version}")
            expect(page.get_by_title("production", exact=True)).to_be_visible(**wait)
            tag = page.get_by_role("row").filter(
                has=page.get_by_role("cell", name=TAG_PIPELINE_RUN_ID, exact=True)
            )
            expect(tag).to_contain_text(lineage.pipeline_run_id, **wait)
            _close_assistant(page)
            tag.scroll_into_view_if_needed()
            page.screenshot(path=out / "2-model-version.png")

            # Its source run, by the link on the version page: every metric and its value.
            page.get_by_role("link", name=lineage.run_name, exact=True).click()
            expect(page).to_have_url(re.compile(f"/runs/{lineage.run_id}"), **wait)
            table = page.get_by_role("table").filter(  # "Metric", then a "Resize Column" button
                has=page.get_by_role("columnheader", name=re.compile(r"^Metric\b"))
            )
            for name, value in sorted(lineage.metrics.items()):
                metric = table.get_by_role("row").filter(
                    has=page.get_by_role("cell", name=name, exact=True)
                )
                expect(metric.get_by_role("cell").nth(1)).to_have_text(js_number(value), **wait)
            _close_assistant(page)
            table.scroll_into_view_if_needed()
            page.screenshot(path=out / "3-linked-run.png")
        except Exception:
            page.screenshot(path=out / "failure.png", full_page=True)
            raise
        finally:
            browser.close()


def _close_assistant(page) -> None:
    """MLflow 3 opens an assistant panel beside every page; closed, the screenshots have room."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count() == 1 and close.is_visible():
        close.click()
