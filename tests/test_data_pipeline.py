"""The data pipeline, for real: a ZenML run on the local stack, logged to a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.tracking import TAG_CONFIG_HASH, TAG_PIPELINE_RUN_ID, TAG_STEP_NAME

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("zenml-runs")]
SMALL = {"train_size": 60, "validation_size": 20, "test_size": 20}


def _config(tmp_path: Path, **task_overrides: dict) -> Path:
    tasks = {task: {**SMALL, **task_overrides.get(task, {})} for task in ("cbqa", "rag", "cls")}
    path = tmp_path / "run.yaml"
    data = {"output_dir": str(tmp_path / "artifacts"), "tasks": tasks}
    path.write_text(yaml.safe_dump({"parameters": {"data": data}}))
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _cls_rows(n: int, start: int) -> list[dict]:
    return [
        {"id": f"a{i}", "text": f"Shares rose on day {i} as markets rallied.", "label": "business"}
        for i in range(start, start + n)
    ]


def _step_runs(pipeline_run_id: str) -> dict[str, mlflow.entities.Run]:
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{TAG_PIPELINE_RUN_ID}` = '{pipeline_run_id}'",
        output_format="list",
    )
    return {r.data.tags[TAG_STEP_NAME]: r for r in runs if TAG_STEP_NAME in r.data.tags}


def test_data_pipeline_builds_validates_and_leaves_lineage(
    zenml_client, tracking, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["--config", str(_config(tmp_path)), "--no-cache", "data"])
    assert result.exit_code == 0, result.output
    tracking()

    run = zenml_client.get_pipeline("sftcast_data").last_run
    assert run.status == "completed"
    assert {"build_data", "validate_cbqa", "validate_rag", "validate_cls"} <= set(run.steps)

    # every step logged to its own MLflow run, tagged with the ZenML run id and its config hash
    step_runs = _step_runs(str(run.id))
    assert set(step_runs) == {"build_data", "validate_cbqa", "validate_rag", "validate_cls"}
    assert len({r.info.run_id for r in step_runs.values()}) == 4
    assert all(r.data.tags[TAG_CONFIG_HASH] for r in step_runs.values())
    assert step_runs["build_data"].data.metrics["cls.train.rows"] == SMALL["train_size"]
    for task in ("cbqa", "rag", "cls"):
        assert step_runs[f"validate_{task}"].data.metrics[f"{task}.validation_failures"] == 0
        report = mlflow.artifacts.load_dict(
            f"runs:/{step_runs[f'validate_{task}'].info.run_id}/validation/{task}.json"
        )
        assert report["success"] is True

    # ZenML's side of the lineage: the step metadata points back at the MLflow run
    metadata = run.steps["build_data"].run_metadata
    assert metadata["mlflow_run_id"] == step_runs["build_data"].info.run_id

    # the validated dataset travels as an artifact downstream steps can read
    dataset_dir = run.steps["validate_cls"].outputs["task_dataset"][0].load()
    assert {p.name for p in Path(dataset_dir).iterdir()} == {
        "train.jsonl",
        "validation.jsonl",
        "test.jsonl",
    }


def test_bad_user_dataset_stops_the_pipeline_and_names_the_cell(zenml_client, tmp_path) -> None:
    data = tmp_path / "my_cls"
    data.mkdir()
    train = _cls_rows(5, 0)
    train[2]["label"] = "sport"  # the label set says "sports"
    _write_jsonl(data / "train.jsonl", train)
    _write_jsonl(data / "test.jsonl", _cls_rows(3, 100))
    config = _config(tmp_path, cls={"source": str(data)})

    result = CliRunner().invoke(app, ["--config", str(config), "--no-cache", "data"])
    assert result.exit_code == 1
    message = " ".join(result.output.split())  # rich wraps long lines
    assert f"{data / 'train.jsonl'}: split 'train', row 3 (line 3), column 'label'" in message
    assert "'sport'" in message
    run = zenml_client.get_pipeline("sftcast_data").last_run
    assert run.status == "failed"
    assert run.steps["validate_cls"].status == "failed"


def test_validate_command_reports_and_logs(zenml_client, tracking, tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    for folder in (good, bad):
        folder.mkdir()
        _write_jsonl(folder / "test.jsonl", _cls_rows(3, 100))
    _write_jsonl(good / "train.jsonl", _cls_rows(4, 0))
    _write_jsonl(
        bad / "train.jsonl", [*_cls_rows(2, 0), {"id": "a9", "text": " ", "label": "tech"}]
    )

    ok = CliRunner().invoke(app, ["validate", "--task", "cls", "--dataset", str(good)])
    assert ok.exit_code == 0, ok.output
    failed = CliRunner().invoke(app, ["validate", "--task", "cls", "--dataset", str(bad)])
    assert failed.exit_code == 1
    assert "failed validation" in failed.output

    tracking()
    runs = mlflow.search_runs(experiment_names=["sftcast_validate"], output_format="list")
    logged = {r.data.tags["sftcast.dataset"]: r.data.metrics for r in runs}
    assert logged[str(good)]["validation_success"] == 1
    assert logged[str(bad)]["validation_success"] == 0
    assert logged[str(bad)]["validation_failures"] >= 1


def test_unknown_config_section_is_refused(zenml_client, tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"parameters": {"dta": {}}}))
    result = CliRunner().invoke(app, ["--config", str(path), "data"])
    assert result.exit_code != 0
    assert result.exit_code == 2
    assert f"{path}: unknown parameter section(s) dta" in result.output
