"""The zoo pipeline, for real: validated data, a tokenizer, two tiny variants pre-trained in
their own steps, every checkpoint fetched as a verified candidate, all logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.tracking import TAG_PIPELINE_RUN_ID, TAG_STEP_NAME

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("zenml-runs")]
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
SMALL = {"train_size": 40, "validation_size": 10, "test_size": 10}


def _variant(name: str, objective: str, lr: float) -> dict:
    return {
        "name": name,
        "family": "test",
        "objective": objective,
        "learning_rate": lr,
        "steps": 6,
        "checkpoint_steps": [3, 6],
        "batch_size": 4,
        "seq_len": 64,
    }


@pytest.fixture
def zoo_config(tmp_path: Path) -> Path:
    parameters = {
        "data": {
            "output_dir": str(tmp_path / "data"),
            "tasks": {t: SMALL for t in ("cbqa", "rag", "cls")},
        },
        "zoo": {
            "root": str(tmp_path / "zoo"),
            "tokenizer_vocab_size": 512,
            "model": {**TINY, "max_length": 64},
            "variants": [_variant("clm-a", "clm", 4e-3), _variant("ul2r-b", "ul2r", 1e-3)],
        },
    }
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump({"parameters": parameters}))
    return path


def test_zoo_pipeline_pretrains_fetches_and_reuses(zenml_client, tracking, zoo_config) -> None:
    result = CliRunner().invoke(app, ["--config", str(zoo_config), "--no-cache", "zoo"])
    assert result.exit_code == 0, result.output
    run = zenml_client.get_pipeline("sftcast_zoo").last_run
    assert run.status == "completed"

    # data is validated before the tokenizer starts
    tokenizer_start = run.steps["zoo_tokenizer"].start_time
    assert all(run.steps[f"validate_{t}"].end_time <= tokenizer_start for t in ("cbqa", "cls"))

    # one pre-training step per variant, one verified candidate per checkpoint
    candidates = {
        name: Path(step.outputs["candidate"][0].load())
        for name, step in run.steps.items()
        if name.startswith("fetch_")
    }
    assert set(candidates) == {"fetch_clm-a_3", "fetch_clm-a_6", "fetch_ul2r-b_3", "fetch_ul2r-b_6"}
    early = load_file(candidates["fetch_clm-a_3"] / "model.safetensors")
    late = load_file(candidates["fetch_clm-a_6"] / "model.safetensors")
    assert not all(torch.equal(early[k], late[k]) for k in early)  # training moved the weights

    # MLflow: a loss curve per variant, tagged with the ZenML run
    tracking()
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{TAG_PIPELINE_RUN_ID}` = '{run.id}'",
        output_format="list",
    )
    pretrain_runs = {r.data.tags[TAG_STEP_NAME]: r for r in runs if "pretrain" in str(r.data.tags)}
    assert {"pretrain_clm-a", "pretrain_ul2r-b"} <= set(pretrain_runs)
    client = mlflow.MlflowClient()
    for mlflow_run in (pretrain_runs["pretrain_clm-a"], pretrain_runs["pretrain_ul2r-b"]):
        history = client.get_metric_history(mlflow_run.info.run_id, "loss")
        assert len(history) >= 1
        assert mlflow_run.data.metrics["tokens_seen"] > 0
        assert mlflow_run.data.tags["sftcast.reused"] == "False"

    # the same configuration again, ZenML cache off: the zoo reuses its trained variants
    again = CliRunner().invoke(app, ["--config", str(zoo_config), "--no-cache", "zoo"])
    assert again.exit_code == 0, again.output
    second = zenml_client.get_pipeline("sftcast_zoo").last_run
    tracking()
    reruns = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{TAG_PIPELINE_RUN_ID}` = '{second.id}' "
        f"and tags.`{TAG_STEP_NAME}` = 'pretrain_clm-a'",
        output_format="list",
    )
    assert reruns[0].data.tags["sftcast.reused"] == "True"

    # with the cache on, ZenML itself skips every step
    cached = CliRunner().invoke(app, ["--config", str(zoo_config), "zoo"])
    assert cached.exit_code == 0, cached.output
    third = zenml_client.get_pipeline("sftcast_zoo").last_run
    assert {s.status for s in third.steps.values()} == {"cached"}
