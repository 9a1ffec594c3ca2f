"""The same answer every time: a tiny `select` run twice, each from empty stores (its own data,
zoo and SFT folders, its own ZenML store and MLflow store), prints the same table and leaves the
same selection artifacts and the same promotion evidence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from benchmarks.make_run import empty_stores
from sftcast.promotion import PRODUCTION

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("zenml-runs-3")]
REPO_ROOT = Path(__file__).resolve().parents[1]
# Run inside each run's own ZenML store: every task's SelectionSummary of the newest select.
DUMP = """
import json
from zenml.client import Client
run = Client().get_pipeline("sftcast_select").last_run
print(json.dumps({name: step.outputs["selection"][0].load().model_dump(mode="json")
                  for name, step in sorted(run.steps.items()) if name.startswith("select_")}))
"""


def _select(env: dict[str, str], config: Path) -> tuple[str, dict, dict]:
    """The printed output from the table on, the selection artifacts, the promotion evidence."""
    run = [sys.executable, str(REPO_ROOT / "pipelines" / "run.py"), "--config", str(config)]
    done = subprocess.run(
        [*run, "select", "--force"], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout[done.stdout.index("selection (") :]
    dumped = subprocess.run(
        [sys.executable, "-c", DUMP], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert dumped.returncode == 0, dumped.stderr
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    holder = client.get_model_version_by_alias("test-det-cls", PRODUCTION)
    evidence = json.loads(holder.tags["sftcast.promotion.evidence"])
    return table, json.loads(dumped.stdout.splitlines()[-1]), evidence


def test_select_twice_from_empty_stores_gives_the_same_answer(make_select_config, tmp_path) -> None:
    active = {"strategy": "active", "budget": 4, "initial": 2}
    config = yaml.safe_load(
        make_select_config("test-det-{task}", selection={"labelled": active}).read_text()
    )
    first = _select(*empty_stores(tmp_path / "first", json.loads(json.dumps(config))))
    second = _select(*empty_stores(tmp_path / "second", json.loads(json.dumps(config))))
    table, summaries, evidence = first
    assert "cls" in table and summaries["select_cls"]["choices"]
    assert second[0] == table  # the printed table, word for word
    assert second[1] == summaries  # every field of every task's selection
    assert second[2]["evidence"] == evidence["evidence"]
