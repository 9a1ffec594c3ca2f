"""`compare --protocol deployment`: held-out candidates judged against the training pool, never
seen in fitting; clear-gap accuracy (`--seed-noise`), best in top-k, and the lead's
uncertainty over splits."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.comparator import ComparatorInputError, check_table, compare_table, random_splits
from sftcast.comparator.config import Columns, JudgementSettings
from sftcast.comparator.judge import lead
from sftcast.comparator.metrics import best_in_top_k, topk_recall
from sftcast.comparator.model import ComparatorSettings
from sftcast.comparator.report import METHOD_KEYS, NOISE_KEYS, CompareReport, lead_note
from sftcast.comparator.scoring import predict_split, scored_pairs

LINEAR = ComparatorSettings(form="linear")  # where the form does not matter: fast


def synthetic(n: int, seed: int = 0, ties: bool = False) -> pd.DataFrame:
    """target = p1 + p2 (p2 given as a loss), one proxy of pure noise; `ties`: the target
    rounded, so that some pairs tie."""
    rng = np.random.default_rng(seed)
    p1, p2, noise = rng.normal(size=(3, n))
    score = np.round(p1 + p2) if ties else p1 + p2
    return pd.DataFrame(
        {"id": [f"c{i}" for i in range(n)], "score": score, "p1": p1, "loss": -p2, "noise": noise}
    )


ARGS = ("id", "score", ["p1", "loss", "noise"], ["loss"])
COLUMNS = Columns(id_column="id", target="score", proxies=["p1", "loss", "noise"],
                  lower_is_better=["loss"])  # fmt: skip


def judge(df: pd.DataFrame, columns: Columns = COLUMNS, **settings) -> CompareReport:
    return compare_table(df, columns, JudgementSettings(**settings))


def cross_pairs(target: np.ndarray, held_out: np.ndarray, train: np.ndarray) -> list[tuple]:
    """Every (held-out, training) pair with unequal targets, by brute force."""
    return [(h, t) for h in held_out for t in train if target[h] != target[t]]


# --- what is fitted and what is scored ------------------------------------------------------------


def test_held_out_targets_are_never_seen_in_fitting() -> None:
    candidates = check_table(synthetic(24), *ARGS)
    rng = np.random.default_rng(7)
    for split in random_splits(24, 3, 0.6, seed=1):
        corrupt = candidates.target.copy()
        corrupt[split.test] = rng.normal(scale=100, size=len(split.test))
        poisoned = dataclasses.replace(candidates, target=corrupt)
        honest_pairs = scored_pairs(split, candidates.target, deployment=True)
        poisoned_pairs = scored_pairs(split, corrupt, deployment=True)
        honest, honest_ltc = predict_split(candidates, split, honest_pairs)
        fooled, fooled_ltc = predict_split(poisoned, split, poisoned_pairs)
        # the comparator (its form chosen by inner cross-validation, too) is the same model
        assert json.dumps(honest_ltc.state()) == json.dumps(fooled_ltc.state())
        for method, (preference, ranking) in honest.items():
            assert np.array_equal(preference, fooled[method][0]), method
            assert np.array_equal(ranking, fooled[method][1]), method


def test_a_held_out_candidate_changes_no_other_prediction() -> None:
    """Nothing is fitted on held-out proxies either: the comparator's scaler and proxy_mean's
    standardisation come from the training side, so one held-out candidate's proxies move
    only its own predictions."""
    candidates = check_table(synthetic(24), *ARGS)
    for split in random_splits(24, 3, 0.6, seed=2):
        proxies = candidates.proxies.copy()
        proxies[split.test[0]] *= 50  # far outside the pool
        moved = dataclasses.replace(candidates, proxies=proxies)
        pairs = scored_pairs(split, candidates.target, deployment=True)
        honest, _ = predict_split(candidates, split, pairs)
        shifted, _ = predict_split(moved, split, pairs)
        others = np.arange(1, len(pairs.shown))  # positions in `shown`; 0 is the moved one
        for method, (preference, ranking) in honest.items():
            assert np.array_equal(preference[np.ix_(others, others)],
                                  shifted[method][0][np.ix_(others, others)]), method  # fmt: skip
            assert np.array_equal(ranking[1:], shifted[method][1][1:]), method


def test_only_pairs_with_a_held_out_candidate_are_scored() -> None:
    df = synthetic(20, ties=True)  # some held-out x training pairs tie: left out
    target = df["score"].to_numpy()
    plan = random_splits(20, 4, 0.6, seed=3)
    counts = []
    for split in plan:
        pairs = scored_pairs(split, target, deployment=True)
        n = pairs.n_held_out
        assert np.array_equal(pairs.shown[:n], split.test)
        assert np.array_equal(pairs.shown[n:], split.train)
        assert (pairs.first < n).all() and (pairs.second >= n).all()  # never two training
        scored = sorted(zip(pairs.shown[pairs.first], pairs.shown[pairs.second], strict=True))
        assert scored == sorted(cross_pairs(target, split.test, split.train))
        counts.append(len(scored))
    report = judge(df, splits=4, seed=3, protocol="deployment", comparator=LINEAR)
    protocol = report.protocol
    assert protocol.name == "deployment" and protocol.judged_splits == 4
    assert protocol.judged_pairs == sum(counts) < 4 * 8 * 12  # the ties are not counted
    paper = judge(df, splits=4, seed=3, comparator=LINEAR).protocol
    assert paper.name == "random_splits" and paper.judged_pairs < protocol.judged_pairs


def test_single_proxies_are_judged_on_the_cross_pairs() -> None:
    df = synthetic(20, ties=True)
    report = judge(df, splits=4, seed=3, protocol="deployment", comparator=LINEAR)
    target, p1 = df["score"].to_numpy(), df["p1"].to_numpy()
    per_split = []
    for split in random_splits(20, 4, 0.6, seed=3):
        pairs = cross_pairs(target, split.test, split.train)
        correct = [
            0.5 if p1[h] == p1[t] else float((p1[h] > p1[t]) == (target[h] > target[t]))
            for h, t in pairs
        ]
        per_split.append(np.mean(correct))
    assert report.methods["p1"].pairwise_accuracy_mean == pytest.approx(np.mean(per_split))
    assert report.methods["p1"].pairwise_accuracy_std == pytest.approx(np.std(per_split))


def test_the_comparator_beats_every_single_proxy_under_deployment() -> None:
    report = judge(synthetic(40), splits=4, protocol="deployment")
    accuracy = {m: v.pairwise_accuracy_mean for m, v in report.methods.items()}
    assert accuracy["ltc"] > max(accuracy[p] for p in ("p1", "loss", "noise"))
    for metrics in report.to_dict()["methods"].values():
        assert set(metrics) == set(METHOD_KEYS)
        assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())


def test_protocol_options_that_do_not_go_together() -> None:
    df = synthetic(12).assign(family=["x", "y", "z"] * 4)
    with pytest.raises(ComparatorInputError, match=r"protocol 'group' .* name the group column"):
        judge(df, protocol="group")
    for protocol in ("paper", "deployment"):
        with pytest.raises(
            ComparatorInputError,
            match=f"goes with protocol 'group', 'variant' or 'transfer', not '{protocol}'",
        ):
            judge(df, groups="family", protocol=protocol)
    with pytest.raises(ComparatorInputError, match="protocol 'pairs' is not one of"):
        judge(df, protocol="pairs")
    for noise in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ComparatorInputError, match=r"seed noise is .*finite number >= 0"):
            judge(df, seed_noise=noise)
    named = judge(df, groups="family", protocol="group", comparator=LINEAR)
    implied = judge(df, groups="family", comparator=LINEAR)
    assert named.protocol == implied.protocol
    assert named.protocol.name == "leave_one_group_out"


# --- clear-gap accuracy ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["paper", "deployment"])
def test_clear_gap_accuracy_counts_only_pairs_beyond_twice_the_seed_noise(protocol: str) -> None:
    # a proxy off by less than 0.5 from the target orders every pair more than 1 apart
    rng = np.random.default_rng(2)
    target = rng.permutation(30) / 3
    df = pd.DataFrame({"id": [f"c{i}" for i in range(30)], "score": target,
                       "near": target + rng.uniform(-0.49, 0.49, 30),
                       "noise": rng.normal(size=30)})  # fmt: skip
    columns = Columns(id_column="id", target="score", proxies=["near", "noise"])
    kwargs = {"splits": 3, "protocol": protocol, "comparator": LINEAR}
    report = judge(df, columns, seed_noise=0.5, **kwargs)
    near = report.to_dict()["methods"]["near"]
    assert near["pairwise_accuracy_clear_mean"] == 1.0 > near["pairwise_accuracy_mean"]
    assert set(near) == {*METHOD_KEYS, *NOISE_KEYS}
    plan = random_splits(30, 3, 0.6, seed=0)
    clear = 0
    for split in plan:
        if protocol == "deployment":
            pairs = cross_pairs(target, split.test, split.train)
        else:
            pairs = list(itertools.combinations(split.test, 2))
        clear += sum(abs(target[a] - target[b]) > 1.0 for a, b in pairs)
    assert (report.protocol.clear_gap, report.protocol.clear_pairs) == (1.0, clear)
    # no noise: every scored pair is clear, and the clear-gap accuracy is the accuracy
    exact = judge(df, columns, seed_noise=0.0, **kwargs)
    assert exact.protocol.clear_pairs == exact.protocol.judged_pairs
    for m in exact.methods.values():
        assert m.pairwise_accuracy_clear_mean == m.pairwise_accuracy_mean
    # without a seed noise there is no clear-gap accuracy at all
    plain = judge(df, columns, **kwargs).to_dict()
    assert "clear_gap" not in plain["protocol"]
    assert all(set(m) == set(METHOD_KEYS) for m in plain["methods"].values())


# --- best in top-k --------------------------------------------------------------------------------


def test_best_in_top_k_hand_made() -> None:
    scores, target = np.array([3.0, 2.0, 2.0, 1.0]), np.array([0.0, 5.0, 1.0, 2.0])
    # the best (index 1) ties with index 2 for the one place left after index 0
    assert [best_in_top_k(scores, target, k) for k in (1, 2, 3, 9)] == [0.0, 0.5, 1.0, 1.0]
    # two candidates share the best target; one of them is among three tied for two places
    scores, target = np.array([1.0, 2.0, 2.0, 2.0]), np.array([5.0, 5.0, 0.0, 1.0])
    assert best_in_top_k(scores, target, 2) == pytest.approx(2 / 3)


def test_best_in_top_k_is_the_chance_under_every_tie_break() -> None:
    """Against brute force: every order of breaking the ties, equally likely."""
    rng = np.random.default_rng(0)
    for _ in range(25):
        scores, target = rng.integers(0, 3, size=(2, 6)).astype(float)
        best = target == target.max()
        orders = list(itertools.permutations(range(6)))
        for k in (1, 2, 4):
            hits = [best[np.lexsort((order, -scores))[:k]].any() for order in orders]
            assert best_in_top_k(scores, target, k) == pytest.approx(np.mean(hits))
        assert best_in_top_k(scores, target, 1) == pytest.approx(topk_recall(scores, target, 1))


# --- the lead -------------------------------------------------------------------------------------


def test_the_lead_is_judged_against_its_spread_over_splits() -> None:
    def per_split(a: list[float], b: list[float]) -> list[dict]:
        return [
            {"a": {"pairwise_accuracy": x}, "b": {"pairwise_accuracy": y}}
            for x, y in zip(a, b, strict=True)
        ]

    swings = lead(per_split([0.8, 0.6], [0.7, 0.7]), ["a", "b"])
    assert swings.difference == pytest.approx(0.0) and swings.std == pytest.approx(0.1)
    assert swings.within_uncertainty  # +0.1 on one split, -0.1 on the other
    steady = lead(per_split([0.8, 0.9, 0.7], [0.7, 0.8, 0.6]), ["a", "b"])
    assert steady.difference == pytest.approx(0.1) and not steady.within_uncertainty
    assert (steady.best, steady.runner_up, steady.splits) == ("a", "b", 3)
    one = lead(per_split([0.9], [0.5]), ["a", "b"])
    assert one.within_uncertainty and one.std == 0.0
    assert "not told apart" in lead_note(swings)
    assert "beyond one std over splits" in lead_note(steady)
    assert "on the one judged split" in lead_note(one)
    tie = lead(per_split([0.8, 0.6], [0.8, 0.6]), ["a", "b"])
    assert lead_note(tie) == "a and b score alike on every split: a tie"


def test_the_report_leads_with_its_ranking() -> None:
    report = judge(synthetic(16), splits=3, comparator=LINEAR)
    best, runner_up = report.ranking[:2]
    methods, the_lead = report.methods, report.lead
    assert (the_lead.best, the_lead.runner_up) == (best, runner_up)
    assert the_lead.splits == report.protocol.judged_splits == 3
    gap = methods[best].pairwise_accuracy_mean - methods[runner_up].pairwise_accuracy_mean
    assert the_lead.difference == pytest.approx(gap)
    assert the_lead.within_uncertainty == (abs(the_lead.difference) <= the_lead.std)


# --- the command ----------------------------------------------------------------------------------


def invoke(table: Path, *extra: str):
    args = ["compare", "--table", str(table), "--id-column", "id", "--target", "score"]
    args += ["--proxies", "p1,loss,noise", "--lower-is-better", "loss"]
    return CliRunner().invoke(app, [*args, *extra])


def test_compare_deployment_command(tmp_path: Path) -> None:
    table, output = tmp_path / "scores.csv", tmp_path / "report.json"
    synthetic(15).to_csv(table, index=False)
    extra = ("--protocol", "deployment", "--splits", "2", "--seed-noise", "0.2")
    result = invoke(table, *extra, "--top-k", "2", "--output", str(output))
    assert result.exit_code == 0, result.output
    report = json.loads(output.read_text())
    protocol = report["protocol"]
    assert protocol["name"] == "deployment" and protocol["judged_pairs"] == 2 * 6 * 9
    assert protocol["clear_gap"] == pytest.approx(0.4)
    title, header, *lines = result.output.splitlines()
    assert title.startswith("score: 15 candidates, deployment: 2 of 2 random splits judged")
    assert title.endswith(f"{protocol['judged_pairs']} held-out x training pairs")
    assert "clear-gap accuracy" in header and header.rstrip().endswith("best in top-2")
    the_lead = report["lead"]
    says = f"note: {the_lead['best']} leads {the_lead['runner_up']} by "
    assert any(line.startswith(says) for line in lines), result.output
    assert (
        f"note: {protocol['clear_pairs']} of the {protocol['judged_pairs']} scored" in result.output
    )
    for metrics in report["methods"].values():
        assert set(metrics) == {*METHOD_KEYS, *NOISE_KEYS}


def test_compare_warns_when_no_pair_is_clear(tmp_path: Path) -> None:
    table, output = tmp_path / "scores.csv", tmp_path / "report.json"
    synthetic(12).to_csv(table, index=False)
    result = invoke(table, "--splits", "2", "--seed-noise", "1e6", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "warning: 0 of the " in result.output and "clear-gap accuracy is n/a" in result.output
    report = json.loads(output.read_text())
    assert report["protocol"]["clear_pairs"] == 0
    for metrics in report["methods"].values():
        assert metrics["pairwise_accuracy_clear_mean"] is None
        assert metrics["pairwise_accuracy_clear_std"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--protocol", "group"), "error: protocol 'group' holds out whole groups"),
        (("--protocol", "variant"), "error: protocol 'variant' holds out whole groups"),
        (("--protocol", "deployment", "--groups", "family"), "goes with protocol 'group'"),
        (("--protocol", "paper", "--groups", "family"), "goes with protocol 'group'"),
        (("--protocol", "pairs"), "'--protocol'"),
        (("--seed-noise", "-1"), "'--seed-noise'"),
        (("--seed-noise", "inf"), "error: seed noise is inf"),
    ],
)
def test_compare_refuses_options_that_do_not_go_together(
    tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    table, output = tmp_path / "scores.csv", tmp_path / "report.json"
    synthetic(12).assign(family=["x", "y", "z"] * 4).to_csv(table, index=False)
    result = invoke(table, *extra, "--output", str(output))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not output.exists()


def test_variant_protocol_takes_random_split_options(tmp_path: Path) -> None:
    table, output = tmp_path / "scores.csv", tmp_path / "report.json"
    synthetic(12).assign(family=["x", "y", "z", "w"] * 3).to_csv(table, index=False)
    result = invoke(table, "--protocol", "variant", "--group-column", "family", "--splits", "3",
                    "--train-fraction", "0.5", "--output", str(output))  # fmt: skip
    assert result.exit_code == 0, result.output
    protocol = json.loads(output.read_text())["protocol"]
    assert (protocol["name"], protocol["splits"], protocol["train_fraction"]) == (
        "variant_splits",
        3,
        0.5,
    )


def test_groups_alone_still_leaves_one_group_out(tmp_path: Path) -> None:
    table, output = tmp_path / "scores.csv", tmp_path / "report.json"
    synthetic(12).assign(family=["x", "y", "z"] * 4).to_csv(table, index=False)
    result = invoke(table, "--groups", "family", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text())["protocol"]["name"] == "leave_one_group_out"
