"""The SFT pipeline, for real: candidates from a tiny zoo fine-tuned per task, evaluated,
registered in MLflow with their lineage, loaded back by `models:/`, and never registered twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.data.io import load_task_dataset
from sftcast.evaluation import EvaluationConfig, evaluate_task
from sftcast.evaluation.evaluate import PRIMARY_METRIC
from sftcast.prompts import FORMATS
from sftcast.registry import TAG_SFT_KEY, load_version, version_metrics
from sftcast.tracking import TAG_PIPELINE_RUN_ID

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("zenml-runs")]
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
SMALL = {"train_size": 40, "validation_size": 10, "test_size": 12, "max_chars": 200}
EVALUATION = {
    "max_length": 128,
    "shots": {"cbqa": 1, "rag": 1, "cls": 1},
    "demo_context_tokens": 16,
}


@pytest.fixture
def sft_config(tmp_path: Path) -> Path:
    variant = {
        "name": "clm-a", "family": "test", "objective": "clm", "learning_rate": 4e-3,
        "steps": 6, "checkpoint_steps": [3, 6], "batch_size": 4, "seq_len": 64,
    }  # fmt: skip
    parameters = {
        "data": {
            "output_dir": str(tmp_path / "data"),
            "tasks": dict.fromkeys(("cbqa", "rag", "cls"), SMALL),
        },
        "zoo": {
            "root": str(tmp_path / "zoo"),
            "tokenizer_vocab_size": 512,
            "model": {**TINY, "max_length": 128},
            "variants": [variant],
        },
        "sft": {
            "output_dir": str(tmp_path / "sft"), "tasks": ["cbqa", "cls"], "epochs": 1,
            "batch_size": 8, "max_length": 128, "replicate_candidates": ["zoo:clm-a@6"],
            "replicate_seeds": [1], "registered_model": "test-sft-{task}",
        },
        "evaluation": EVALUATION,
    }  # fmt: skip
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump({"parameters": parameters}))
    return path


def test_sft_pipeline_registers_each_finetuned_candidate_once(
    zenml_client, tracking, sft_config
) -> None:
    result = CliRunner().invoke(app, ["--config", str(sft_config), "--no-cache", "sft"])
    assert result.exit_code == 0, result.output
    run = zenml_client.get_pipeline("sftcast_sft").last_run
    records = run.steps["sft_report"].outputs["sft_report"][0].load().results
    assert len(records) == 2 * 2 + 2  # 2 candidates x 2 tasks, + 1 replicate seed per task

    client = tracking()
    for task in ("cbqa", "cls"):
        versions = client.search_model_versions(f"name = 'test-sft-{task}'")
        # the replicate (seed 1) is measured but not registered
        assert sorted(v.tags["sftcast.candidate"] for v in versions) == [
            "zoo:clm-a@3",
            "zoo:clm-a@6",
        ]
        for v in versions:
            assert v.tags[TAG_PIPELINE_RUN_ID] == str(run.id)
            assert v.tags["sftcast.seed"] == "0" and v.tags["sftcast.sft_config_hash"]
            assert '"objective": "clm"' in v.tags["sftcast.variant"]
            metrics = version_metrics(v)
            assert {"score", "base_score", "sft_gain", "mrc"} <= set(metrics)
            assert {f"{task}.{fmt}.{PRIMARY_METRIC[task]}" for fmt in FORMATS} <= set(metrics)

    # a registered version loads back by models:/ and reproduces its logged test metric
    version = max(
        client.search_model_versions("name = 'test-sft-cls'"), key=lambda v: int(v.version)
    )
    model, tokenizer = load_version("test-sft-cls", version.version)
    data_dir = next((sft_config.parent / "data").glob("*/tasks/cls"))
    rows = {s: ds.to_list() for s, ds in load_task_dataset(data_dir, "cls").items()}
    again = evaluate_task(model, tokenizer, "cls", rows, EvaluationConfig(**EVALUATION))
    assert again["accuracy"] == pytest.approx(version_metrics(version)["cls.train.accuracy"])

    # the MLflow run behind the version holds the loss curve and the Amuro & Char figures exist
    run_id = version.tags["sftcast.mlflow_run_id"]
    assert len(client.get_metric_history(run_id, "loss")) >= 1
    report_run = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.`{TAG_PIPELINE_RUN_ID}` = '{run.id}' and tags.`zenml.step_name` = 'sft_report'",
    )[0]
    figures = {a.path for a in client.list_artifacts(report_run.info.run_id, "figures")}
    assert figures == {"figures/cbqa_scores_by_step.png", "figures/cls_scores_by_step.png"}

    # rerun without the ZenML cache: the fine-tunes are reused and nothing is registered twice
    keys = {v.tags[TAG_SFT_KEY] for v in client.search_model_versions("name = 'test-sft-cls'")}
    rerun = CliRunner().invoke(app, ["--config", str(sft_config), "--no-cache", "sft"])
    assert rerun.exit_code == 0, rerun.output
    client = tracking()
    after = client.search_model_versions("name = 'test-sft-cls'")
    assert len(after) == 2 and {v.tags[TAG_SFT_KEY] for v in after} == keys


def test_unknown_replicate_candidate_is_a_clear_error(zenml_client, sft_config) -> None:
    config = yaml.safe_load(sft_config.read_text())
    config["parameters"]["sft"]["replicate_candidates"] = ["zoo:clm-a@99"]
    sft_config.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["--config", str(sft_config), "sft"])
    assert result.exit_code == 2, result.output
    needle = (
        f"{sft_config}: parameters.sft.replicate_candidates: ['zoo:clm-a@99'] name or match no "
        "candidate"
    )
    assert needle in result.output  # the pre-flight's: before ZenML runs any step
