"""Where a command runs and what it may write over (issues #34 and #35): a copied checkout
does not use the first checkout's ZenML store, a run started in another folder resolves its
configuration's relative paths against the project, and judging a study refuses to write
over a table measured with other settings. Each through the real command line."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from test_study import _synthetic_results  # a study-shaped table
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.config import RunParameters
from sftcast.study import study_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
# What `run.py` needs to start: the copy a user makes holds more, never less.
NOT_COPIED = (".git", ".venv", "mlruns", "artifacts", ".zen", ".zenml", "benchmarks", "tests",
              "docs", "__pycache__", ".cache", ".services")  # fmt: skip


def _run_cli(*args: str, cwd: Path, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, text=True, capture_output=True, check=False
    )


def test_a_copied_checkout_refuses_the_first_checkouts_zenml_store(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(REPO_ROOT, copy, ignore=shutil.ignore_patterns(*NOT_COPIED))
    config = copy / ".zenml" / "config" / "config.yaml"
    config.parent.mkdir(parents=True)
    original = tmp_path / "original" / ".zenml" / "config" / "local_stores" / "zenml.db"
    run = [str(copy / "pipelines" / "run.py"), "--config", str(tmp_path / "none.yaml"), "select"]
    # the project-local ZenML config, as the CLI uses it when nothing is exported
    project_local = ("ZENML_CONFIG_PATH", "ZENML_STORE_URL", "ZENML_REPOSITORY_PATH")

    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{original}"}}))
    copied = _run_cli(*run, cwd=tmp_path, drop=project_local)

    assert copied.returncode == 2, copied.stdout + copied.stderr
    assert f"{config}: ZenML's store is {original}, outside this checkout" in copied.stdout
    assert "make clean-stores" in copied.stdout
    assert not original.parent.exists()

    own = config.parent / "local_stores" / "zenml.db"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{own}"}}))
    for drop in (project_local, ()):  # its own store; or a config exported on purpose
        passed = _run_cli(*run, cwd=tmp_path, drop=drop)
        assert passed.returncode == 2 and "no run configuration at" in passed.stdout, passed


def test_a_run_from_another_folder_resolves_relative_paths_against_the_project(
    make_select_config, tmp_path: Path
) -> None:
    config = make_select_config()
    relative = os.path.relpath(tmp_path / "data", REPO_ROOT)  # as a user writes `artifacts/data`
    raw = yaml.safe_load(config.read_text())
    raw["parameters"]["data"]["output_dir"] = relative
    config.write_text(yaml.safe_dump(raw))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = _run_cli(str(REPO_ROOT / "pipelines" / "run.py"), "--config", str(config), "data",
                      cwd=elsewhere)  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert any(p.is_file() for p in (tmp_path / "data").rglob("*")), result.stdout
    assert list(elsewhere.iterdir()) == []


def _digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


def test_judging_refuses_a_study_measured_with_other_settings(
    make_select_config, tmp_path: Path
) -> None:
    committed = REPO_ROOT / "benchmarks" / "study"
    before = _digests(committed)
    runner = CliRunner()

    # the default configuration (the demo's) against the committed study
    demo = runner.invoke(app, ["study", "--judge-only"])

    assert demo.exit_code == 2, demo.output
    assert f"{committed / 'results.csv'}: measured with settings" in demo.output
    assert "--overwrite" in demo.output
    assert _digests(committed) == before

    # a study of this configuration's own, then measured otherwise
    raw = yaml.safe_load(make_select_config().read_text())
    results = tmp_path / "study" / "results.csv"
    results.parent.mkdir()
    raw["parameters"]["study"] = {"results": str(results), "splits": 2, "jobs": 1}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(raw))
    params = RunParameters.model_validate(raw["parameters"])
    assert params.sft and params.evaluation and params.proxies
    settings = study_settings(params.sft, params.evaluation, params.proxies)
    _synthetic_results(results)
    table = pd.read_csv(results)
    parts = table["candidate"].str.extract(r"zoo:(?P<variant>[^@]+)@(?P<checkpoint_step>\d+)")
    table = table.assign(variant=parts["variant"], checkpoint_step=parts["checkpoint_step"])
    table.assign(settings="0123456789ab").to_csv(results, index=False)
    other = results.read_bytes()

    refused = runner.invoke(app, ["--config", str(config), "study", "--judge-only"])

    assert refused.exit_code == 2, refused.output
    assert f"settings 0123456789ab, not {settings}" in refused.output
    assert results.read_bytes() == other and not (results.parent / "summary.json").exists()

    overwritten = runner.invoke(app, ["--config", str(config), "study", "--judge-only",
                                      "--overwrite"])  # fmt: skip
    table.assign(settings=settings).to_csv(results, index=False)
    same = runner.invoke(app, ["--config", str(config), "study", "--judge-only"])

    for result in (overwritten, same):
        assert result.exit_code == 0, result.output
        assert f"wrote {results.parent / 'summary.json'}" in result.output


def test_a_store_another_run_is_writing_passes_the_store_check(tmp_path: Path) -> None:
    """The check that names an unusable MLflow store (`not a database`) must pass a store
    that another run holds locked in the middle of its writes: concurrent runs share one."""
    import sqlite3

    from sftcast.tracking import check_tracking_uri

    database = tmp_path / "mlflow.db"
    with sqlite3.connect(database) as db:
        db.execute("create table runs (id)")
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], "
         "isolation_level=None); db.execute('begin exclusive'); db.execute('insert into runs "
         "values (1)'); print('locked', flush=True); time.sleep(60)", str(database)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
        check_tracking_uri(f"sqlite:///{database}")  # raises TrackingUnavailable if refused
    finally:
        writer.kill()
        writer.wait()


# Two processes creating ZenML clients on one configuration file, as two commands starting at
# once do: each creation rewrites the file.
CLIENTS = """
import sys
from deploy.guards import atomic_zenml_config_writes
atomic_zenml_config_writes()
from zenml.client import ClientConfiguration
for _ in range(300):
    ClientConfiguration(config_file=sys.argv[1])
"""


def test_two_commands_starting_at_once_never_read_a_half_written_zenml_config(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    racers = [
        subprocess.Popen([sys.executable, "-c", CLIENTS, str(config)], cwd=REPO_ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [racer.communicate(timeout=600)[0] for racer in racers]

    assert [racer.returncode for racer in racers] == [0, 0], outputs
