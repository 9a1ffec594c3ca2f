"""Choosing the labelled pool, judging the predictors, ranking every candidate."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from sftcast.evaluation.report import SFTRecord
from sftcast.registry import (
    TAG_COMPARATOR_KEY,
    TAG_SFT_KEY,
    Lineage,
    comparator_model_name,
    register_comparator,
)
from sftcast.selection import SelectionConfig, fit_comparator, predict_strength, select
from sftcast.selection.report import ProxyRow, SelectionSummary, selection_table, summarize
from sftcast.tracking import TAG_PIPELINE_RUN_ID, TAG_STEP_NAME, ensure_experiment

CANDIDATES = [f"zoo:v{i}@{s}" for i in range(4) for s in (50, 100, 150)]


def test_labelled_pool_all_fraction_or_list() -> None:
    assert SelectionConfig(labelled="all").labelled_candidates(CANDIDATES) == CANDIDATES
    half = SelectionConfig(labelled=0.5, seed=1).labelled_candidates(CANDIDATES)
    assert len(half) == 6 and set(half) <= set(CANDIDATES)
    assert half == SelectionConfig(labelled=0.5, seed=1).labelled_candidates(CANDIDATES)
    assert len(SelectionConfig(labelled=0.1).labelled_candidates(CANDIDATES)) == 4  # the floor
    listed = SelectionConfig(labelled=CANDIDATES[:5]).labelled_candidates(CANDIDATES)
    assert listed == CANDIDATES[:5]
    with pytest.raises(ValueError, match="unknown candidates"):
        SelectionConfig(labelled=["zoo:nope@1", *CANDIDATES[:4]]).labelled_candidates(CANDIDATES)
    with pytest.raises(ValueError, match="at least 4"):
        SelectionConfig(labelled=CANDIDATES[:3]).labelled_candidates(CANDIDATES)
    with pytest.raises(ValidationError, match="fraction"):
        SelectionConfig(labelled=1.5)


def _table(n: int = 30, labelled: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p1, p2, noise = rng.normal(size=(3, n))
    table = pd.DataFrame({"candidate": [f"c{i}" for i in range(n)], "p1": p1, "loss": -p2,
                          "noise": noise, "score": p1 + p2})  # fmt: skip
    table.loc[labelled:, "score"] = np.nan  # the rest are unlabelled
    return table


def _record(candidate: str, score: float, replicate: bool = False) -> SFTRecord:
    return SFTRecord(
        task="cls", candidate=candidate, seed=0, replicate=replicate, score=score, base_score=0.0,
        mrc=0.0, metrics={}, sft_key=candidate, registered_model="m", model_version="1",
    )  # fmt: skip


def test_best_predictor_ranks_every_candidate_and_beats_chance() -> None:
    table = _table()
    truth = table["p1"] - table["loss"]  # the unlabelled candidates' real strength
    chosen = select("cls", table, ["p1", "loss", "noise"], ["loss"], SelectionConfig(splits=5))
    # the target is a sum of two proxies: a method that combines them wins
    combined = {"ltc", "proxy_mean", "signed_mean", "linear_tuned", "ridge"}
    assert chosen.beats_chance and chosen.predictor in combined
    assert sorted(chosen.ranking) == sorted(table["candidate"])  # labelled or not
    assert set(chosen.actual) == set(table["candidate"][:20])
    best_true = set(table["candidate"][truth.rank(ascending=False) <= 5])
    assert chosen.best in best_true
    assert (
        chosen.methods["noise"].pairwise_accuracy_mean
        < chosen.methods[chosen.predictor].pairwise_accuracy_mean
    )


def test_predictors_are_judged_as_deployed_with_their_spread_and_lead() -> None:
    """By default each held-out labelled candidate is scored against the training ones (many
    more judged pairs than pairs inside the held-out side), and the summary says whether the
    best predictor's lead over the runner-up exceeds its spread over splits."""
    table, proxies = _table(n=12, labelled=6), ["p1", "loss", "noise"]
    deployed = select("cls", table, proxies, ["loss"], SelectionConfig(splits=20))
    paper = select("cls", table, proxies, ["loss"], SelectionConfig(splits=20, protocol="paper"))
    assert deployed.protocol["name"] == "deployment"
    # 6 labelled, 60/40: 4 x 2 cross pairs against 1 pair inside the held-out side, per split
    assert deployed.protocol["judged_pairs"] >= 30 > paper.protocol["judged_pairs"]
    lead = deployed.lead
    assert lead.best == max(
        deployed.methods, key=lambda m: deployed.methods[m].pairwise_accuracy_mean
    )
    assert lead.within_uncertainty == (abs(lead.difference) <= lead.std)
    summary = summarize(deployed, _record(deployed.best, 1.0))
    assert summary.lead == lead and summary.protocol == "deployment"
    assert summary.pairwise_accuracy_std["ltc"] == deployed.methods["ltc"].pairwise_accuracy_std


def test_a_lower_is_better_proxy_ranks_ascending() -> None:
    table = _table()
    strength = predict_strength(table, ["p1", "loss"], ["loss"], "loss", seed=0)
    assert np.argmax(strength) == int(np.argmin(table["loss"]))


def test_equal_scores_leave_nothing_to_judge_and_nothing_beats_chance() -> None:
    table = _table(n=8, labelled=6)
    table.loc[:5, "score"] = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    chosen = select("cbqa", table, ["p1", "loss"], ["loss"], SelectionConfig(splits=3))
    assert chosen.predictor == "none" and not chosen.beats_chance
    assert "same target" in chosen.protocol["unjudged"]
    assert chosen.ranking[:6] == list(table["candidate"][:6])


def test_a_named_predictor_ranks_even_when_another_scores_better() -> None:
    # real proxy names: the config only accepts predictors the pipeline computes
    table = _table().rename(columns={"p1": "kshot_cls", "loss": "ppl_clm", "noise": "weight_norm"})
    proxies, lower = ["kshot_cls", "ppl_clm", "weight_norm"], ["ppl_clm"]
    auto = select("cls", table, proxies, lower, SelectionConfig(splits=5))
    pinned = select(
        "cls", table, proxies, lower, SelectionConfig(splits=5, predictor="weight_norm")
    )
    assert auto.predictor != "weight_norm" and pinned.predictor == "weight_norm"
    assert pinned.ranking == list(table.sort_values("weight_norm", ascending=False)["candidate"])
    accuracy = pinned.methods["weight_norm"].pairwise_accuracy_mean
    assert pinned.beats_chance == (accuracy > 0.5)  # judged like any other

    # nothing to judge: the named proxy still ranks every candidate, and nothing beats chance
    table.loc[:19, "score"] = 0.5
    tied = select("cls", table, proxies, lower, SelectionConfig(splits=5, predictor="ppl_clm"))
    assert tied.predictor == "ppl_clm" and not tied.beats_chance and "unjudged" in tied.protocol
    assert tied.ranking == list(table.sort_values("ppl_clm")["candidate"])

    with pytest.raises(ValidationError, match="unknown predictor 'ppl'"):
        SelectionConfig(predictor="ppl")


def test_the_selection_table_and_summary_are_typed_and_round_trip() -> None:
    """What `select` passes on: proxy rows in, a table of every candidate (labelled ones with
    their score) and a `SelectionSummary` that loads back from JSON as it was."""
    rows = [
        ProxyRow(candidate=f"c{i}", values={"ppl_clm": 10.0 - i, "flat": 1.0, "lost": math.nan},
                 seconds={"ppl_clm": 0.1}, base_scores={"cls": {"accuracy": 0.1 * i}})
        for i in range(6)
    ]  # fmt: skip
    records = [_record(f"c{i}", 0.1 * i) for i in range(5)] + [_record("c5", 0.9, replicate=True)]
    table, proxies = selection_table(rows, records, "cls")
    assert proxies == ["ppl_clm"]  # constant and partly missing proxies rank nobody
    assert table["score"].isna().tolist() == [False] * 5 + [True]  # a replicate labels nothing
    chosen = select(
        "cls", table, proxies, ["ppl_clm"], SelectionConfig(splits=3, predictor="ppl_clm")
    )
    summary = summarize(chosen, records[4])
    assert summary.candidate == "c5" and summary.top_actual == "c4" and not summary.promoted
    assert summary.pairwise_accuracy["ppl_clm"] == 1.0 and summary.labelled == 5
    again = SelectionSummary.model_validate(json.loads(json.dumps(summary.model_dump(mode="json"))))
    assert again == summary


def test_a_comparator_is_registered_once_per_key_with_its_lineage(tracking, tmp_path) -> None:
    import mlflow

    client = tracking()
    mlflow.set_experiment(experiment_id=ensure_experiment("test-comparator", tmp_path))
    table = _table()
    comparator = fit_comparator(table, ["p1", "loss", "noise"], ["loss"], seed=0)
    name = comparator_model_name("lineage")
    versions = []
    for key, run_id in (("key-1", "run-1"), ("key-1", "run-2"), ("key-2", "run-3")):
        with mlflow.start_run():
            lineage = Lineage(pipeline_run_id=run_id, step_name="select_lineage")
            version = register_comparator(
                comparator, table[["p1", "loss", "noise"]], ["loss"], "lineage", key,
                lineage.tags(), {"top1": 0.5},
            )  # fmt: skip
            versions.append(version)
    assert [str(v.version) for v in versions] == ["1", "1", "2"]  # the same key: the same version
    first = client.get_model_version(name, "1")
    assert first.tags[TAG_COMPARATOR_KEY] == "key-1" and first.tags["metric.top1"] == "0.5"
    assert first.tags[TAG_PIPELINE_RUN_ID] == "run-1"  # the run that made it, not a rerun
    assert first.tags[TAG_STEP_NAME] == "select_lineage"
    assert TAG_SFT_KEY not in first.tags
