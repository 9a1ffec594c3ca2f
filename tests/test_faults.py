"""Faults on purpose: a pipeline killed (SIGKILL) in the middle of its SFT fan-out, two runs
writing to one MLflow store at once, two registrations of one candidate racing; and no secret
from the environment reaching MLflow on the way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.run import app
from pipelines.sft import step_slug
from sftcast.promotion import PRODUCTION
from sftcast.registry import TAG_SFT_KEY

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("zenml-runs")]
REPO_ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(REPO_ROOT / "pipelines" / "run.py")]
# Values a leak would carry into MLflow; set in the environment of every faulted run.
SECRETS = {
    "HF_TOKEN": "hf_" + "Q" * 34,
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY",
    "MLFLOW_TRACKING_PASSWORD": "correct-horse-battery-staple",
    "SFTCAST_TEST_API_KEY": "sk-" + "z" * 32,
}


def _start(config: Path, *command: str, **environ: str) -> subprocess.Popen:
    """The real CLI in its own process group (so a kill takes its children too), one torch
    thread each: two of them share the 2 cores of CI; `environ` added to its environment."""
    env = {**os.environ, **SECRETS, "OMP_NUM_THREADS": "1", **environ}
    return subprocess.Popen(
        [*RUN, "--config", str(config), *command],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _versions(client, model: str) -> dict[str, object]:
    """Version number -> version, of the registered model (none yet: empty)."""
    return {v.version: v for v in client.search_model_versions(f"name = '{model}'")}


def _completed_sft_steps(
    zenml_client, prefix: str = "sft_", pipeline: str = "sftcast_select"
) -> set[str]:
    """Steps (named `prefix...`) ZenML recorded as completed in the newest run of `pipeline`
    (none yet: empty)."""
    runs = zenml_client.list_pipeline_runs(
        pipeline_name=pipeline, sort_by="desc:created", size=1
    ).items
    if not runs:
        return set()
    steps = zenml_client.list_run_steps(pipeline_run_id=runs[0].id, size=100).items
    return {s.name for s in steps if s.name.startswith(prefix) and s.status.value == "completed"}


def _mlflow_run(client, pipeline_run_id: str, step: str):
    """The MLflow run of one step of one ZenML pipeline run."""
    found = client.search_runs(
        experiment_ids=[e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`zenml.pipeline_run_id` = '{pipeline_run_id}' "
        f"and tags.`zenml.step_name` = '{step}'",
    )
    assert len(found) == 1, (pipeline_run_id, step, len(found))
    return found[0]


def test_sigkill_in_the_sft_fan_out_resumes_without_redoing_work(
    zenml_client, tracking, make_select_config
) -> None:
    model = "test-crash-{task}"
    name = model.format(task="cls")
    config = make_select_config(model)
    tracking()
    process = _start(config, "select", "--force")
    try:
        # Kill once ZenML has recorded a first SFT step as completed: mid fan-out.
        while process.poll() is None and not _completed_sft_steps(zenml_client):
            time.sleep(0.2)
        assert process.poll() is None, "finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    completed = _completed_sft_steps(zenml_client)

    # what the killed run left: whole versions only (each with its key), none promoted
    before = _versions(tracking(), name)
    assert 1 <= len(completed) <= len(before) < 4
    for version in before.values():
        assert version.status == "READY" and version.tags[TAG_SFT_KEY]
    assert PRODUCTION not in tracking().get_registered_model(name).aliases

    resumed = _start(config, "select", "--force")
    output, _ = resumed.communicate()
    assert resumed.returncode == 0, output

    # nothing done is done again: completed steps come from ZenML's cache; a step killed
    # after its fine-tune reuses the folder and the version instead of training again
    run = zenml_client.get_pipeline("sftcast_select").last_run
    assert all(run.steps[step].status.value == "cached" for step in completed)
    for version in before.values():
        step = f"sft_cls_{step_slug(version.tags['sftcast.candidate'])}"
        if step not in completed:
            mlflow_run = _mlflow_run(tracking(), str(run.id), step)
            assert mlflow_run.data.tags["sftcast.reused"] == "True"
    assert any(s.status.value == "completed" for n, s in run.steps.items() if n.startswith("sft_"))

    # one version per candidate, the early ones untouched, and production now set
    after = _versions(tracking(), name)
    keys = [v.tags[TAG_SFT_KEY] for v in after.values()]
    candidates = {v.tags["sftcast.candidate"] for v in after.values()}
    assert len(after) == 4 and len(set(keys)) == 4 and len(candidates) == 4
    assert {v: after[v].tags[TAG_SFT_KEY] for v in before} == {
        v: before[v].tags[TAG_SFT_KEY] for v in before
    }
    assert tracking().get_registered_model(name).aliases[PRODUCTION] in {int(v) for v in after}


# its own group (with the gate test): beside the other pipeline tests, on the other worker
@pytest.mark.xdist_group("zenml-runs-2")
def test_active_select_records_its_choices_and_resumes_after_a_kill(
    zenml_client, tracking, make_select_config
) -> None:
    """Rounds of active selection are steps: a run killed after its first round, rerun,
    takes the finished rounds from the cache, fine-tunes the rest, and promotes the best
    fine-tuned candidate with the order in which candidates were chosen, and why."""
    import json

    name = "test-active-cls"
    active = {"strategy": "active", "budget": 4, "initial": 2}
    config = make_select_config("test-active-{task}", selection={"labelled": active})
    tracking()
    process = _start(config, "select", "--force")
    try:
        while process.poll() is None and not _completed_sft_steps(zenml_client, "active_"):
            time.sleep(0.2)
        assert process.poll() is None, "finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    done = _completed_sft_steps(zenml_client, "active_")
    assert done and done < {f"active_cls_{r}" for r in range(1, 5)}

    resumed = _start(config, "select", "--force")
    output, _ = resumed.communicate()
    assert resumed.returncode == 0, output
    assert "fine-tuned one at a time, in order:" in output
    run = zenml_client.get_pipeline("sftcast_select").last_run
    assert all(run.steps[step].status.value == "cached" for step in done)
    assert not any(n.startswith("sft_cls_") for n in run.steps)  # nothing fine-tuned up front

    # the 4 candidates fine-tuned, each once: 2 spread over the proxies, then 2 chosen
    summary = run.steps["select_cls"].outputs["selection"][0].load()
    whys = [c["why"] for c in summary.choices]
    assert len(whys) == 4 and len({c["candidate"] for c in summary.choices}) == 4
    assert whys[0].startswith("round 1: initial 1 of 2") and whys[1].startswith("round 2:")
    assert all("P(beats the best labelled)" in w or "tie" in w for w in whys[2:])
    versions = _versions(tracking(), name)
    assert len(versions) == 4
    # promoted: the best fine-tuned candidate, with the choices in the evidence
    scores = {v.tags["sftcast.candidate"]: float(v.tags["metric.score"]) for v in versions.values()}
    assert scores[summary.candidate] == max(scores.values())  # the first of any tie
    holder = tracking().get_model_version_by_alias(name, PRODUCTION)
    evidence = json.loads(holder.tags["sftcast.promotion.evidence"])["evidence"]
    assert [c["candidate"] for c in evidence["choices"]] == [
        c["candidate"] for c in summary.choices
    ]


def test_two_runs_at_once_on_one_store_lose_nothing_and_leak_no_secret(
    zenml_client, tracking, make_select_config
) -> None:
    model = "test-concurrent-{task}"
    name = model.format(task="cls")
    first, second = make_select_config(model, seed=0), make_select_config(model, seed=1)
    # the zoo first: two runs pre-training the same variant into one folder would race
    zoo = CliRunner().invoke(app, ["--config", str(first), "zoo"])
    assert zoo.exit_code == 0, zoo.output

    runs = [_start(path, "sft") for path in (first, second)]
    outputs = [run.communicate()[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    client = tracking()
    sft_runs = zenml_client.list_pipeline_runs(
        pipeline_name="sftcast_sft", sort_by="desc:created", size=2
    ).items
    assert {run.status.value for run in sft_runs} == {"completed"}
    # every SFT step of both runs has its MLflow run, finished, with its metrics
    for run in sft_runs:
        steps = [n for n in run.steps if n.startswith("sft_cls_")]
        assert len(steps) == 4
        for step in steps:
            mlflow_run = _mlflow_run(client, str(run.id), step)
            assert mlflow_run.info.status == "FINISHED"
            assert {"final_loss", "score", "cls.train.accuracy"} <= set(mlflow_run.data.metrics)
    # two seeds x 4 candidates: 8 versions, each key once
    versions = _versions(client, name)
    keys = [v.tags[TAG_SFT_KEY] for v in versions.values()]
    assert len(versions) == 8 and len(set(keys)) == 8
    assert {v.tags["sftcast.seed"] for v in versions.values()} == {"0", "1"}

    # no secret of the runs' environment reached any param or tag of the store
    _assert_no_secret(client)


def _assert_no_secret(client) -> None:
    texts = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            texts += [*run.data.params.values(), *run.data.tags.values()]
    for registered in client.search_registered_models():
        texts += list(registered.tags.values())
        texts += [t for v in client.search_model_versions(f"name = '{registered.name}'")
                  for t in v.tags.values()]  # fmt: skip
    assert texts
    leaked = [s for s in SECRETS.values() for text in texts if s in text]
    assert not leaked


def _tiny_model() -> tuple[object, object]:
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    )
    model = LlamaForCausalLM(
        LlamaConfig(vocab_size=2, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                    intermediate_size=16)
    )  # fmt: skip
    return model, tokenizer


def test_registering_a_key_again_adds_missing_metrics_and_rewrites_none(tracking) -> None:
    """`select` registers with the training-format score only; an `sft` run of the same SFT key
    later adds its formats and MRC to that version, and leaves every existing tag alone."""
    import mlflow

    from sftcast.registry import register_finetuned, version_metrics

    client = tracking()
    model, tokenizer = _tiny_model()
    with mlflow.start_run():
        first = register_finetuned(
            model, tokenizer, "test-refill", "key-1", tags={"who": "select"},
            metrics={"score": 0.5},
        )  # fmt: skip
    with mlflow.start_run():
        again = register_finetuned(
            model, tokenizer, "test-refill", "key-1", tags={"who": "sft"},
            metrics={"score": 0.9, "mrc": -0.1},
        )  # fmt: skip
    assert again.version == first.version and len(_versions(client, "test-refill")) == 1
    version = client.get_model_version("test-refill", first.version)
    assert version_metrics(version) == {"score": 0.5, "mrc": -0.1}
    assert version.tags["who"] == "select"


def test_a_race_to_register_one_candidate_keeps_exactly_one_version(
    tracking, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both registrations pass the "already registered?" check before either registers (a
    barrier forces that interleaving); the store must end with one version of the key."""
    import mlflow

    import sftcast.registry as registry

    tracking()
    model, tokenizer = _tiny_model()
    barrier = threading.Barrier(2)
    first_lookup = registry.find_version

    def lookup_then_wait(name: str, key: str, tag: str | None = None):
        found = first_lookup(name, key, tag)
        if threading.current_thread().name.startswith("racer"):
            threading.current_thread().name = "raced"
            barrier.wait(timeout=60)
        return found

    results: dict[int, str] = {}

    def register(i: int) -> None:
        with mlflow.start_run():
            version = registry.register_finetuned(
                model, tokenizer, "test-race", "key-1", tags={}, metrics={"accuracy": 0.5}
            )
        results[i] = str(version.version)

    monkeypatch.setattr(registry, "find_version", lookup_then_wait)
    threads = [threading.Thread(target=register, args=(i,), name=f"racer{i}") for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = _versions(tracking(), "test-race")
    assert len(versions) == 1
    assert results[0] == results[1] == str(next(iter(versions)))
