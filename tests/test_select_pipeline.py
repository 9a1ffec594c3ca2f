"""The main pipeline, for real, on a tiny zoo: proxies for every candidate, SFT for the
labelled ones, the predictors judged, the best-predicted candidate promoted; a failed run
leaves `production` where it was."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.run import app
from pipelines.sft import step_slug
from sftcast.registry import version_metrics

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("zenml-runs")]
MODEL = "test-sel-cls"  # conftest.py: `select_config` registers as test-sel-{task}


def test_select_promotes_the_best_predicted_and_a_failed_run_changes_nothing(
    zenml_client, tracking, select_config, tmp_path
) -> None:
    result = CliRunner().invoke(
        app, ["--config", str(select_config), "--no-cache", "select", "--force"]
    )
    assert result.exit_code == 0, result.output
    assert "selection" in result.output and "cls" in result.output
    run = zenml_client.get_pipeline("sftcast_select").last_run
    summary = run.steps["select_cls"].outputs["selection"][0].load()
    assert summary["promoted"] and len(summary["ranking"]) == 4

    # every candidate got its proxies, each with its wall time
    rows = [
        s.outputs["proxies"][0].load() for n, s in run.steps.items() if n.startswith("proxies_")
    ]
    assert len(rows) == 4
    for row in rows:
        assert {"ppl_clm", "ppl_sc", "kshot_cls", "kshot_rag"} <= set(row["values"])
        assert set(row["seconds"]) >= {"ppl_clm", "ppl_sc"}

    # production holds the best-predicted candidate's version, with the evidence on it
    client = tracking()
    holder = client.get_model_version_by_alias(MODEL, "production")
    assert holder.tags["sftcast.candidate"] == summary["candidate"]
    assert holder.tags["sftcast.promotion.pipeline_run_id"] == str(run.id)
    assert holder.tags["sftcast.promotion.predictor"] == summary["predictor"]
    evidence = json.loads(holder.tags["sftcast.promotion.evidence"])
    assert evidence["evidence"]["ranking"] == summary["ranking"]
    # scored in the training format only: prompt formats and MRC are the `sft` pipeline's
    metrics = version_metrics(holder)
    assert metrics["cls.train.accuracy"] == pytest.approx(metrics["score"])
    assert "mrc" not in metrics and not any(".plain." in m for m in metrics)

    # a run that fails (a bad user dataset) stops before registering and leaves production
    versions = {v.version for v in client.search_model_versions(f"name = '{MODEL}'")}
    bad = tmp_path / "bad_cls"
    bad.mkdir()
    for split in ("train", "test"):
        lines = [
            {"id": f"{split}{i}", "text": f"An article {i}.", "label": "weather"} for i in range(5)
        ]
        (bad / f"{split}.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    config = yaml.safe_load(select_config.read_text())
    config["parameters"]["data"]["tasks"]["cls"] = {"source": str(bad)}
    select_config.write_text(yaml.safe_dump(config))
    failed = CliRunner().invoke(app, ["--config", str(select_config), "select", "--force"])
    assert failed.exit_code == 1, failed.output
    assert "weather" in failed.output
    client = tracking()
    assert client.get_model_version_by_alias(MODEL, "production").version == holder.version
    assert {v.version for v in client.search_model_versions(f"name = '{MODEL}'")} == versions

    # one promotion so far: nothing to roll back to, said clearly
    rolled = CliRunner().invoke(app, ["rollback", "--task", "cls", "--model-name", MODEL])
    assert rolled.exit_code == 2 and "error:" in rolled.output


def test_an_unlabelled_best_predicted_candidate_is_fine_tuned_then_promoted(
    zenml_client, tracking, make_select_config
) -> None:
    # 6 candidates, the 4 labelled all but two step-6 checkpoints; `tokens_seen` pinned as the
    # predictor puts a step-6 checkpoint first (ties keep the zoo's order: clm-a before clm-c)
    labelled = ["zoo:clm-a@3", "zoo:clm-b@3", "zoo:clm-c@3", "zoo:clm-c@6"]
    config = make_select_config(
        "test-unl-{task}", variants=3,
        selection={"labelled": labelled, "predictor": "tokens_seen"},
    )  # fmt: skip
    result = CliRunner().invoke(app, ["--config", str(config), "select", "--force"])
    assert result.exit_code == 0, result.output
    run = zenml_client.get_pipeline("sftcast_select").last_run
    assert f"sft_cls_{step_slug('zoo:clm-a@6')}" not in run.steps  # not labelled
    summary = run.steps["select_cls"].outputs["selection"][0].load()
    assert summary["predictor"] == "tokens_seen" and summary["labelled"] == 4
    assert summary["candidate"] == "zoo:clm-a@6" and summary["promoted"]

    # fine-tuned inside select_cls, registered as a fifth version, and that version promoted
    client = tracking()
    versions = client.search_model_versions("name = 'test-unl-cls'")
    assert sorted(v.tags["sftcast.candidate"] for v in versions) == sorted(
        [*labelled, "zoo:clm-a@6"]
    )
    holder = client.get_model_version_by_alias("test-unl-cls", "production")
    assert holder.tags["sftcast.candidate"] == "zoo:clm-a@6"
    assert float(holder.tags["metric.score"]) == pytest.approx(summary["score"])
