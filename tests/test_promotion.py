"""Promotion and rollback of the `production` alias, on a throwaway SQLite MLflow store per
test; the versions point at a text artifact, no real model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from typer.testing import CliRunner

from sftcast.promotion import (
    PRODUCTION,
    TAG_EVIDENCE,
    TAG_HISTORY,
    TAG_PIPELINE_RUN_ID,
    TAG_PREDICTOR,
    TAG_PROMOTED_FROM,
    TAG_ROLLED_BACK_FROM,
    TAG_TIME,
    PromotionRefused,
    PromotionResult,
    RollbackError,
    production_version,
    promote,
    rollback,
)

NAME = "sftcast-cls"
PROMOTION_TAGS = {TAG_PROMOTED_FROM, TAG_EVIDENCE, TAG_PREDICTOR, TAG_PIPELINE_RUN_ID, TAG_TIME}


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[mlflow.MlflowClient]:
    """A fresh store where the local stack file puts it when SFTCAST_ROOT is `tmp_path`,
    holding NAME with three versions, none in production."""
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("SFTCAST_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("promotion", (tmp_path / "artifacts").as_uri())
    client.create_registered_model(NAME)
    for i in range(3):
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_text("not a model", "model/README.txt")
        client.create_model_version(
            NAME,
            source=f"{run.info.artifact_uri}/model",
            run_id=run.info.run_id,
            tags={"sftcast.candidate": f"candidate-{i}", "metric.accuracy": "0.5"},
        )
    yield client
    mlflow.set_tracking_uri(previous)


def snapshot(client: mlflow.MlflowClient) -> dict[str, Any]:
    """Every version's tags and aliases, and the registered model's tags and aliases."""
    model = client.get_registered_model(NAME)
    versions = client.search_model_versions(f"name = '{NAME}'")
    return {
        "model": (dict(model.tags), {k: str(v) for k, v in model.aliases.items()}),
        **{str(v.version): (dict(v.tags), sorted(v.aliases)) for v in versions},
    }


def without(state: dict[str, Any], version: str, tags: set[str]) -> dict[str, Any]:
    """The tags of `state` less the given ones of one version and the history tag; aliases are
    checked apart, through the registered model's alias map (it lists them all)."""
    out = {}
    for key, (tag_map, _) in state.items():
        drop = tags if key == version else {TAG_HISTORY} if key == "model" else set()
        out[key] = {k: v for k, v in tag_map.items() if k not in drop}
    return out


def history(client: mlflow.MlflowClient) -> list[str]:
    return json.loads(client.get_registered_model(NAME).tags[TAG_HISTORY])


def holder(client: mlflow.MlflowClient) -> str | None:
    holder = client.get_registered_model(NAME).aliases.get(PRODUCTION)
    return None if holder is None else str(holder)


def promote_version(version: str | int, **kwargs: Any) -> PromotionResult:
    kwargs = {"evidence": {"rank": 1}, "pipeline_run_id": "run-1", "predictor": "ltc", **kwargs}
    return promote(NAME, version, **kwargs)


def test_promote_moves_the_alias_and_records_why(client: mlflow.MlflowClient) -> None:
    assert production_version(NAME) is None
    before = snapshot(client)
    assert promote_version(1) == PromotionResult(NAME, "1", None, changed=True)
    first = snapshot(client)
    assert first["model"][1] == {PRODUCTION: "1"} and history(client) == ["1"]
    assert without(first, "1", PROMOTION_TAGS) == without(before, "1", set())
    tags = client.get_model_version(NAME, "1").tags
    assert tags[TAG_PROMOTED_FROM] == "none"
    assert tags[TAG_PREDICTOR] == "ltc" and tags[TAG_PIPELINE_RUN_ID] == "run-1"
    assert tags[TAG_TIME].endswith("+00:00")
    assert json.loads(tags[TAG_EVIDENCE]) == {
        "forced": False,
        "beats_chance": True,
        "evidence": {"rank": 1},
    }

    result = promote_version("2", pipeline_run_id="run-2")
    assert result == PromotionResult(NAME, "2", "1", changed=True)
    assert result.summary == f"production: {NAME} v1 -> v2"
    after = snapshot(client)
    assert after["model"][1] == {PRODUCTION: "2"} and history(client) == ["1", "2"]
    assert str(production_version(NAME).version) == "2"
    assert client.get_model_version(NAME, "2").tags[TAG_PROMOTED_FROM] == "1"
    assert without(after, "2", PROMOTION_TAGS) == without(first, "2", set())
    assert after["1"] == (first["1"][0], [])  # v1 lost the alias, kept its tags


def test_rollback_goes_back_one_holder_at_a_time(client: mlflow.MlflowClient) -> None:
    for version in (1, 2, 3):
        promote_version(version)
    before = snapshot(client)
    result = rollback(NAME)
    assert result == PromotionResult(NAME, "2", "3", changed=True)
    assert result.summary == f"production: {NAME} v3 -> v2"
    after = snapshot(client)
    assert after["model"][1] == {PRODUCTION: "2"} and history(client) == ["1", "2"]
    assert client.get_model_version(NAME, "2").tags[TAG_ROLLED_BACK_FROM] == "3"
    assert without(after, "2", {TAG_ROLLED_BACK_FROM}) == without(before, "2", set())

    assert rollback(NAME).version == "1"
    assert holder(client) == "1" and history(client) == ["1"]
    unchanged = snapshot(client)
    with pytest.raises(RollbackError, match="no earlier one"):
        rollback(NAME)
    assert snapshot(client) == unchanged


def test_rollback_without_production_is_an_error(client: mlflow.MlflowClient) -> None:
    before = snapshot(client)
    with pytest.raises(RollbackError, match="no version holds"):
        rollback(NAME)
    with pytest.raises(RollbackError, match="sftcast-nothing"):
        rollback("sftcast-nothing")
    assert snapshot(client) == before


def test_no_better_than_chance_is_refused_unless_forced(client: mlflow.MlflowClient) -> None:
    promote_version(1)
    before = snapshot(client)
    with pytest.raises(PromotionRefused, match="no predictor beat chance"):
        promote_version(2, beats_chance=False)
    assert snapshot(client) == before

    assert promote_version(2, beats_chance=False, force=True).changed
    assert holder(client) == "2"
    evidence = json.loads(client.get_model_version(NAME, "2").tags[TAG_EVIDENCE])
    assert evidence["forced"] is True and evidence["beats_chance"] is False


def test_promoting_the_holder_changes_nothing(client: mlflow.MlflowClient) -> None:
    promote_version(1)
    before = snapshot(client)
    result = promote_version("1", pipeline_run_id="run-2")
    assert result == PromotionResult(NAME, "1", "1", changed=False)
    assert "nothing changed" in result.summary
    assert snapshot(client) == before


def test_unknown_version_changes_nothing(client: mlflow.MlflowClient) -> None:
    promote_version(1)
    before = snapshot(client)
    with pytest.raises(mlflow.exceptions.MlflowException):
        promote_version(9)
    assert snapshot(client) == before


def test_a_failed_alias_move_leaves_production_and_history_working(
    client: mlflow.MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    promote_version(1)
    promote_version(2)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the process died here")

    with monkeypatch.context() as patch:
        patch.setattr(mlflow.MlflowClient, "set_registered_model_alias", crash)
        with pytest.raises(RuntimeError, match="died"):
            promote_version(3)
    assert holder(client) == "2"
    assert str(production_version(NAME).version) == "2"
    # The crashed attempt's history entry is ignored: rollback still goes to v1, not v2.
    assert rollback(NAME) == PromotionResult(NAME, "1", "2", changed=True)
    assert history(client) == ["1"]


def test_long_evidence_is_truncated(client: mlflow.MlflowClient) -> None:
    promote_version(1, evidence={"table": "x" * 20_000})
    text = client.get_model_version(NAME, "1").tags[TAG_EVIDENCE]
    assert len(text) <= 5000 and text.endswith("[truncated]")
    assert text.startswith('{"forced": false')


def cli(*args: str):
    from pipelines.run import app

    return CliRunner().invoke(app, list(args))


def test_rollback_command(client: mlflow.MlflowClient) -> None:
    promote_version(1)
    promote_version(2)
    result = cli("rollback", "--task", "cls", "--stack", "local")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"production: {NAME} v2 -> v1"
    assert holder(client) == "1"

    before = snapshot(client)
    result = cli("--stack", "local", "rollback", "--task", "cls")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: cannot roll back sftcast-cls")
    assert snapshot(client) == before

    result = cli("rollback", "--task", "cls", "--model-name", "sftcast-other")
    assert result.exit_code == 2, result.output
    assert "sftcast-other" in result.output
