"""Fine-tuning probes on a tiny real candidate, and the study pipeline on a tiny zoo: it runs,
resumes after a kill, and writes the table, the summary (reproducible by its own `compare`
commands), the reports and the figures."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_faults import _completed_sft_steps, _start  # the faulted-run helpers
from typer.testing import CliRunner

import cli.render
from pipelines.run import app
from sftcast.evaluation import EvaluationConfig
from sftcast.proxies import PROXIES, ProxyConfig
from sftcast.proxies.config import ProbeSettings
from sftcast.proxies.probe import probe
from sftcast.sft import SFTConfig
from sftcast.study import merged
from sftcast.study.config import StudyConfig
from sftcast.study.summary import evidence_lines, summarize
from sftcast.study.table import VARIANT_COLUMNS

SETTINGS = ProbeSettings(train_rows=16, validation_rows=8, batch_size=4, learning_rate=3e-3)
EVALUATION = EvaluationConfig(max_length=128, max_new_tokens=4)


@pytest.mark.parametrize("task", ["cls", "cbqa"])
def test_a_probe_reads_out_finite_seeded_values_and_leaves_nothing(
    tiny_candidate, tiny_task_rows, tmp_path, task
) -> None:
    sft = SFTConfig(output_dir=tmp_path / "sft", max_length=128)
    before = {p.name for p in tiny_candidate.parent.rglob("*")}
    first = probe(tiny_candidate, task, tiny_task_rows[task], sft, SETTINGS, EVALUATION)
    again = probe(tiny_candidate, task, tiny_task_rows[task], sft, SETTINGS, EVALUATION)
    other = probe(
        tiny_candidate, task, tiny_task_rows[task], sft,
        SETTINGS.model_copy(update={"seed": 1, "score": False}), EVALUATION,
    )  # fmt: skip
    names = {f"answer_loss_{task}", f"probe_loss_{task}", f"probe_drop_{task}", f"probe_{task}"}
    assert set(first.values) == names and all(PROXIES[n].source == "probe" for n in names)
    assert all(math.isfinite(v) for v in first.values.values())
    assert first.values == again.values  # same seed, same rows, same numbers
    assert set(other.values) == names - {f"probe_{task}"}  # no answers generated
    assert first.values[f"answer_loss_{task}"] == other.values[f"answer_loss_{task}"]
    assert first.values[f"probe_loss_{task}"] != other.values[f"probe_loss_{task}"]
    # a fresh model learns the answers' format within a few steps
    assert first.values[f"probe_drop_{task}"] > 0
    assert first.steps == 4 and first.seconds > 0
    # thrown away: no SFT folder, nothing new beside the candidate
    assert not (tmp_path / "sft").exists()
    assert {p.name for p in tiny_candidate.parent.rglob("*")} == before


def test_probes_are_configured_per_known_task() -> None:
    config = ProxyConfig.model_validate({"probes": {"cls": {"train_rows": 8}}})
    assert config.probes["cls"].train_rows == 8 and "cbqa" not in config.probes
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['qa'\] in proxies.probes"):
        ProxyConfig.model_validate({"probes": {"qa": {}}})
    with pytest.raises(ValueError, match="train_rows"):
        ProxyConfig.model_validate({"probes": {"cls": {"train_rows": 0}}})


def _study_config(make_select_config, tmp_path: Path) -> Path:
    """The tiny select run's zoo (2 variants x 2 checkpoints, two families), measured on cls
    with a probe, one candidate replicated with an extra seed."""
    config = yaml.safe_load(make_select_config("test-study-{task}").read_text())
    parameters = config["parameters"]
    del parameters["selection"]
    parameters["zoo"]["variants"][1]["family"] = "other"
    parameters["sft"].update(
        replicate_candidates=["zoo:clm-a@6"], replicate_seeds=[1], fidelities=[0.5, 1.0]
    )
    parameters["evaluation"].update(formats=["train"], forgetting=False, max_examples=8)
    parameters["proxies"]["probes"] = {"cls": {"train_rows": 8, "validation_rows": 8}}
    parameters["study"] = {"results": str(tmp_path / "study" / "results.csv"), "splits": 5}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
@pytest.mark.xdist_group("zenml-runs-2")
def test_the_study_resumes_after_a_kill_and_writes_a_reproducible_table(
    zenml_client, make_select_config, tmp_path
) -> None:
    config = _study_config(make_select_config, tmp_path)
    process = _start(config, "study")
    try:  # killed once a first candidate is measured
        while process.poll() is None and not _completed_sft_steps(
            zenml_client, "measure_", "sftcast_study"
        ):
            time.sleep(0.2)
        assert process.poll() is None, "finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    done = _completed_sft_steps(zenml_client, "measure_", "sftcast_study")
    assert 1 <= len(done) < 4
    results = tmp_path / "study" / "results.csv"
    assert not results.exists()

    # ZenML's in-process cache of the run's steps at 3 (100 by default): its eviction bug
    # failed steps of the 258-step study; the CLI turns that cache off
    resumed = _start(config, "study", ZENML_EXECUTION_CONTEXT_STEP_RUN_CACHE_SIZE="3")
    output, _ = resumed.communicate()
    assert resumed.returncode == 0, output
    run = zenml_client.get_pipeline("sftcast_study").last_run
    statuses = {name: step.status.value for name, step in run.steps.items()}
    assert all(statuses[step] == "cached" for step in done), (done, statuses)

    table = pd.read_csv(results)
    assert sorted(table["candidate"]) == [f"zoo:clm-{v}@{s}" for v in "ab" for s in (3, 6)]
    probes = ["answer_loss_cls", "probe_cls", "probe_drop_cls", "probe_loss_cls"]
    fidelities = ["val_loss_cls_at0.5", "val_loss_cls_at1", "seconds_val_loss_cls_at0.5"]
    for column in [*VARIANT_COLUMNS, "ppl_clm", "kshot_cls", *probes, "sft_cls", *fidelities]:
        assert column in table and table[column].notna().all(), column
    assert (table["seconds_val_loss_cls_at0.5"] < table["seconds_val_loss_cls_at1"]).all()
    assert table["sft_cls_seed1"].notna().sum() == 1  # the replicated candidate only
    # the seed mean, over the two seeds of the replicated candidate and the one of the others
    seeds = table[["sft_cls", "sft_cls_seed1"]]
    assert np.allclose(table["sft_cls_mean"], seeds.mean(axis=1))
    assert table["sft_cls_std"].notna().sum() == 1
    assert (table["seconds_sft_cls"] > 0).all() and (table["seconds_probe_cls"] > 0).all()

    # a tiny zoo's targets mostly tie: each protocol is judged or says why not
    summary = json.loads((tmp_path / "study" / "summary.json").read_text())
    cls = summary["tasks"]["cls"]
    assert summary["n_candidates"] == 4 and cls["target_column"] == "sft_cls_mean"
    assert math.isfinite(cls["seed_noise"]) and cls["probe_cost_fraction"] > 0
    for protocol in ("variant", "paper", "deployment", "group"):
        assert "ltc" in cls[protocol] or "nothing to judge" in cls[protocol]["skipped"]
    judgement = (tmp_path / "study" / "judgement.md").read_text()
    assert judgement.startswith("# The study's judgement (4 candidates)")
    assert "## The comparator against each baseline, split by split" in judgement
    for figure in ("accuracy_variant.png", "accuracy_paper.png", "predicted_vs_actual.png",
                   "scores_by_step_cls.png"):  # fmt: skip
        assert (tmp_path / "study" / "figures" / figure).stat().st_size > 0


def _synthetic_results(path: Path, n: int = 24) -> None:
    """A results table shaped like the study's: two families, pre-training proxies, a task's
    probe read-outs, a target with extra seeds on a few candidates, costs."""
    rng = np.random.default_rng(0)
    quality, noise = rng.normal(size=(2, n))
    table = pd.DataFrame({
        "candidate": [f"zoo:v{i // 3}@{50 * (i % 3 + 1)}" for i in range(n)],
        "variant": [f"v{i // 3}" for i in range(n)],
        "family": ["objective-lr" if i < n // 2 else "mixture" for i in range(n)],
        "ppl_clm": np.exp(3 - 0.3 * quality + noise), "weight_norm": 0.1 + 0.01 * noise,
        "kshot_cls": 0.2 + 0.05 * quality + 0.05 * rng.normal(size=n),
        "answer_loss_cls": 5 - quality, "probe_cls": 0.3 + 0.1 * quality,
        "probe_drop_cls": rng.normal(size=n), "probe_loss_cls": 4 - quality,
        "sft_cls": 0.5 + 0.1 * quality + 0.01 * rng.normal(size=n),
        "seconds_probe_cls": 1.0, "seconds_sft_cls": 40.0,
    })  # fmt: skip
    table["sft_cls_seed1"] = (table["sft_cls"] + 0.01).where(table.index < 10)
    table.to_csv(path, index=False)


def test_the_summary_is_what_its_recorded_compare_commands_print(tmp_path) -> None:
    results = tmp_path / "results.csv"
    _synthetic_results(results)
    summary = summarize(results, StudyConfig(results=results, splits=2), ["cls"], tmp_path / "r")
    cls = summary["tasks"]["cls"]
    assert cls["seed_noise"] == pytest.approx(0.01 / math.sqrt(2))
    assert cls["probe_cost_fraction"] == pytest.approx(1 / 40)
    for protocol in ("variant", "paper", "deployment", "group"):
        methods = cls[protocol]
        assert {"ppl_clm", "proxy_mean", "ltc_pretraining", "ltc", "probe_cls"} <= set(methods)
        # the comparator without probes never saw them; with them it did
        assert methods["ltc"] != methods["ltc_pretraining"]
        # `ltc` against each baseline on the same splits
        assert methods["linear_tuned"]["paired_splits"] == 2
        assert isinstance(methods["signed_mean"]["ltc_better"], bool)
    assert len(cls["commands"]) == 8  # 4 protocols x (pre-training proxies, all proxies)
    for args in cls["commands"]:
        assert "--seed-noise" in args and args[args.index("--table") + 1] == str(results)
        written = json.loads(Path(args[args.index("--output") + 1]).read_text())
        rerun = tmp_path / "rerun.json"
        again = [*args]
        again[args.index("--output") + 1] = str(rerun)
        result = CliRunner().invoke(app, again)
        assert result.exit_code == 0, result.output
        assert json.loads(rerun.read_text())["methods"] == written["methods"]
    pretraining = next(a for a in cls["commands"] if a[a.index("--protocol") + 1] == "paper")
    assert "probe_cls" not in pretraining[pretraining.index("--proxies") + 1]


def test_a_chunk_adds_its_rows_to_those_measured_with_the_same_settings() -> None:
    def rows(candidates: str, settings: str, score: float) -> pd.DataFrame:
        names = candidates.split()
        return pd.DataFrame(
            {"candidate": names, "sft_cls": [score] * len(names), "settings": settings}
        )

    on_disk = pd.concat([rows("a b", "s1", 0.1), rows("c", "s0", 0.2)])
    table = merged(on_disk, rows("b d", "s1", 0.9))
    # a and the re-measured b, d; c was measured with other settings and is dropped
    assert table["candidate"].tolist() == ["a", "b", "d"]
    assert table["sft_cls"].tolist() == [0.1, 0.9, 0.9]


def test_the_live_evidence_is_memoized_by_the_table_it_judges(tmp_path) -> None:
    results, cache = tmp_path / "results.csv", tmp_path / "cache"
    _synthetic_results(results)
    lines = evidence_lines(results, ["cls"], splits=2, jobs=1, cache=cache)
    assert [line.split(":")[0] for line in lines] == [
        "cls, leave-variant-out",
        "cls, paper, siblings may be split",
    ]
    (memo,) = cache.iterdir()
    memo.write_text(json.dumps(["read back, not judged again"]))
    assert evidence_lines(results, ["cls"], splits=2, jobs=1, cache=cache) == [
        "read back, not judged again"
    ]
    # another table (or task list, or split count) is judged afresh, under its own key
    table = pd.read_csv(results)
    table["sft_cls"] = table["sft_cls"].to_numpy()[::-1]
    table.to_csv(results, index=False)
    assert evidence_lines(results, ["cls"], splits=2, jobs=1, cache=cache) != lines
    assert len(list(cache.iterdir())) == 2


def test_select_prints_the_study_evidence_on_every_task_the_table_holds(
    tmp_path, monkeypatch, capsys
) -> None:
    results = tmp_path / "results.csv"
    _synthetic_results(results)  # a cls table
    monkeypatch.setenv("SFTCAST_ROOT", str(tmp_path / "stores"))
    # a run on cbqa alone: the table lacks cbqa, and its cls line is printed all the same
    cli.render.print_study_evidence(results, ["cbqa"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"the study ({results}), judged now")
    assert [line.split(",")[0].strip() for line in printed[1:]] == ["cls", "cls"]


def test_two_workers_measure_a_candidate_as_one_single_thread_process_does(
    tiny_candidate, tiny_task_rows, tmp_path
) -> None:
    from sftcast.study import workers
    from sftcast.study.candidate import study_candidate

    def measure(folder: str, n_workers: int):
        sft = SFTConfig(
            output_dir=tmp_path / folder, tasks=["cls", "cbqa"], max_length=128,
            train_examples=16, epochs=1, batch_size=4, fidelities=[0.5, 1.0], fidelity_rows=8,
        )  # fmt: skip
        evaluation = EVALUATION.model_copy(
            update={"formats": ["train"], "forgetting": False, "max_examples": 8,
                    "shots": {"cbqa": 1, "rag": 0, "cls": 1}}
        )  # fmt: skip
        proxies = ProxyConfig(heldout_docs=4, seq_len=64, probes={"cls": SETTINGS})
        rows = {t: r for t, r in tiny_task_rows.items() if t != "_corpus"}
        return study_candidate(
            tiny_candidate, "zoo:tiny@0", tiny_task_rows["_corpus"], rows, sft, evaluation,
            proxies, n_workers,
        )  # fmt: skip

    try:
        pooled = measure("pooled", 2)
    finally:
        workers.shutdown()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each worker runs with
    try:
        alone = measure("alone", 1)
    finally:
        torch.set_num_threads(threads)
    assert pooled.proxies == alone.proxies and pooled.scores == alone.scores
    assert pooled.fidelities == alone.fidelities
    assert {"probe_loss_cls", "kshot_cbqa", "ppl_clm"} <= set(pooled.proxies)
    assert set(pooled.fidelities) == {
        f"val_loss_{t}_at{f}" for t in ("cls", "cbqa") for f in (0.5, 1)
    }
    parts = {"proxies", "base", "probe_cls", "sft_cls", "eval_cls", "sft_cbqa", "eval_cbqa"}
    assert set(pooled.seconds) == parts | set(pooled.fidelities)
    assert all(s > 0 for s in pooled.seconds.values())


def test_the_committed_table_keeps_the_settings_hash_of_the_config_that_measured_it() -> None:
    """Settings that change no number (how answers are decoded, fidelities left unset) stay
    out of the hash: a new field must not orphan a measured table."""
    from sftcast.config import RunParameters
    from sftcast.study import measured_settings, study_settings

    repo = Path(__file__).resolve().parents[1]
    measured = yaml.safe_load((repo / "benchmarks/study/study.yaml").read_text())["parameters"]
    params = RunParameters.model_validate(measured)
    assert params.sft and params.evaluation and params.proxies
    settings = study_settings(params.sft, params.evaluation, params.proxies)
    assert measured_settings(repo / "benchmarks/study/results.csv") == [settings]
    loop = params.evaluation.model_copy(update={"generation": "generate"})
    assert study_settings(params.sft, loop, params.proxies) == settings
    with_fidelities = params.sft.model_copy(update={"fidelities": [0.5, 1.0]})
    assert study_settings(with_fidelities, params.evaluation, params.proxies) != settings
