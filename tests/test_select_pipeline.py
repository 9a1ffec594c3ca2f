"""The main pipeline, for real, on a tiny zoo: proxies for every candidate, SFT for the
labelled ones, the predictors judged, the best-predicted candidate promoted when its
predictor beats chance (or on `--force`); a failed run or a refused promotion leaves
`production` where it was."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.run import app
from pipelines.sft import step_slug
from sftcast.promotion import TAG_HISTORY
from sftcast.registry import TAG_COMPARATOR_KEY, comparator_model_name, version_metrics
from sftcast.tracking import TAG_PIPELINE_RUN_ID, TAG_STEP_NAME

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
    assert summary.promoted and len(summary.ranking) == 4

    # every candidate got its proxies, each with its wall time
    rows = [
        s.outputs["proxies"][0].load() for n, s in run.steps.items() if n.startswith("proxies_")
    ]
    assert len(rows) == 4
    for row in rows:
        assert {"ppl_clm", "ppl_sc", "kshot_cls", "kshot_rag"} <= set(row.values)
        assert set(row.seconds) >= {"ppl_clm", "ppl_sc"}

    # production holds the best-predicted candidate's version, with the evidence on it
    client = tracking()
    holder = client.get_model_version_by_alias(MODEL, "production")
    assert holder.tags["sftcast.candidate"] == summary.candidate
    assert holder.tags["sftcast.promotion.pipeline_run_id"] == str(run.id)
    assert holder.tags["sftcast.promotion.predictor"] == summary.predictor
    evidence = json.loads(holder.tags["sftcast.promotion.evidence"])
    assert evidence["evidence"]["ranking"] == summary.ranking
    assert holder.tags[TAG_PIPELINE_RUN_ID] == str(run.id)
    assert holder.tags[TAG_STEP_NAME] == f"sft_cls_{step_slug(summary.candidate)}"
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
    assert summary.predictor == "tokens_seen" and summary.labelled == 4
    assert summary.candidate == "zoo:clm-a@6" and summary.promoted

    # fine-tuned inside select_cls, registered as a fifth version, and that version promoted
    client = tracking()
    versions = client.search_model_versions("name = 'test-unl-cls'")
    assert sorted(v.tags["sftcast.candidate"] for v in versions) == sorted(
        [*labelled, "zoo:clm-a@6"]
    )
    holder = client.get_model_version_by_alias("test-unl-cls", "production")
    assert holder.tags["sftcast.candidate"] == "zoo:clm-a@6"
    assert float(holder.tags["metric.score"]) == pytest.approx(summary.score)
    assert holder.tags[TAG_PIPELINE_RUN_ID] == str(run.id)
    assert holder.tags[TAG_STEP_NAME] == "select_cls"


# its own group (with the active-selection test): on the other worker, beside the others
@pytest.mark.xdist_group("zenml-runs-2")
def test_the_gate_promotes_a_predictor_that_beats_chance_and_refuses_one_that_cannot(
    zenml_client, tracking, make_gate_config
) -> None:
    """No `--force`: the promotion gate decides. The base model's few-shot accuracy orders
    these candidates as SFT does; the weight norm ranks the most trained checkpoint first,
    which fine-tunes worst here, and so does worse than chance."""
    good = make_gate_config("test-gate-{task}", "kshot_cls")
    result = CliRunner().invoke(app, ["--config", str(good), "select"])
    assert result.exit_code == 0, result.output
    run = zenml_client.get_pipeline("sftcast_select").last_run
    summary = run.steps["select_cls"].outputs["selection"][0].load()
    assert summary.predictor == "kshot_cls" and summary.pairwise_accuracy["kshot_cls"] > 0.5
    assert summary.beats_chance and summary.promoted and summary.refused is None
    client = tracking()
    holder = client.get_model_version_by_alias("test-gate-cls", "production")
    assert holder.tags["sftcast.candidate"] == summary.candidate
    evidence = json.loads(holder.tags["sftcast.promotion.evidence"])
    assert evidence["beats_chance"] and not evidence["forced"]

    # the comparator's version carries its lineage, as every fine-tuned version does
    comparator = client.search_model_versions(
        f"name = '{comparator_model_name('cls')}' and tag.`{TAG_PIPELINE_RUN_ID}` = '{run.id}'"
    )
    assert len(comparator) == 1 and comparator[0].tags[TAG_STEP_NAME] == "select_cls"
    assert comparator[0].tags[TAG_COMPARATOR_KEY]
    assert set(json.loads(comparator[0].tags["sftcast.features"])) <= set(summary.pairwise_accuracy)

    # the same candidates (every step but select_cls cached), ranked by a worse-than-chance
    # predictor: refused and said why, and production stays where it was
    bad = make_gate_config("test-gate-{task}", "weight_norm")
    refused = CliRunner().invoke(app, ["--config", str(bad), "select"])
    assert refused.exit_code == 0, refused.output
    assert "no predictor beat chance" in refused.output
    again = zenml_client.get_pipeline("sftcast_select").last_run
    assert again.id != run.id
    summary = again.steps["select_cls"].outputs["selection"][0].load()
    assert summary.predictor == "weight_norm" and summary.pairwise_accuracy["weight_norm"] <= 0.5
    assert not summary.beats_chance and not summary.promoted and not summary.changed
    assert summary.candidate != holder.tags["sftcast.candidate"]  # it would have moved
    client = tracking()
    assert client.get_model_version_by_alias("test-gate-cls", "production").version == (
        holder.version
    )
    history = client.get_registered_model("test-gate-cls").tags[TAG_HISTORY]
    assert json.loads(history) == [str(holder.version)]
