"""The comparator (learning to compare): pair features, antisymmetry, splits of candidates,
metrics on hand-made cases, that it beats single proxies where it should, and the CLI."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.comparator import (
    MAX_STANDARDISED,
    Comparator,
    ComparatorInputError,
    Split,
    antisymmetric,
    borda_scores,
    check_standardising,
    check_table,
    compare_table,
    group_random_splits,
    labelled_pairs,
    leave_one_group_out,
    mean_win_probability,
    method_ranking,
    pair_features,
    pairwise_accuracy,
    random_splits,
    read_table,
    report_lines,
    skipped_note,
    topk_recall,
)
from sftcast.comparator.config import BASELINES, Columns, JudgementSettings
from sftcast.comparator.metrics import preference_from_scores
from sftcast.comparator.report import (
    METHOD_KEYS,
    REPORT_KEYS,
    CompareReport,
    report_rows,
    report_title,
)
from sftcast.comparator.table import MIN_SPAN


def synthetic(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """target = p1 + p2 with independent p1, p2: neither proxy alone orders the candidates;
    p2 is given as a loss (lower is better), and one proxy is pure noise."""
    rng = np.random.default_rng(seed)
    p1, p2, noise = rng.normal(size=(3, n))
    return pd.DataFrame(
        {"id": [f"c{i}" for i in range(n)], "score": p1 + p2, "p1": p1, "loss": -p2, "noise": noise}
    )


def judge(
    df: pd.DataFrame,
    proxies: list[str],
    lower: list[str] | None = None,
    target: str = "score",
    **settings,
) -> CompareReport:
    """`compare_table` on the `id` column, with these settings."""
    columns = Columns(id_column="id", target=target, proxies=proxies, lower_is_better=lower or [])
    return compare_table(df, columns, JudgementSettings(**settings))


# --- features, comparator, ranking ---------------------------------------------------------------


def test_pair_features_hand_made() -> None:
    z = np.array([[1.0, 2.0], [3.0, 5.0]])
    features = pair_features(z, np.array([[0, 1], [1, 0]]))
    # per proxy: [p_i - p_j, p_i * p_j, p_i, p_j]
    assert features.tolist() == [[-2, 3, 1, 3, -3, 10, 2, 5], [2, 3, 3, 1, 3, 10, 5, 2]]


def test_prediction_is_antisymmetric() -> None:
    rng = np.random.default_rng(1)
    g = rng.uniform(size=(7, 7))
    f = antisymmetric(g)
    assert np.all(f == 1 - f.T)  # exactly, in floating point
    np.testing.assert_allclose(f, (g + 1 - g.T) / 2, atol=1e-15)

    x, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    model = Comparator(n_estimators=20).fit(x, y)
    f = model.preference(rng.normal(size=(8, 3)))  # unseen candidates
    assert np.all(f == 1 - f.T)
    assert np.all(np.diag(f) == 0.5)


def test_borda_and_mean_win_probability() -> None:
    f = np.array([[0.5, 0.9, 0.5], [0.1, 0.5, 0.3], [0.5, 0.7, 0.5]])
    assert borda_scores(f).tolist() == [1.5, 0.0, 1.5]  # 0 and 2 tie at exactly 0.5: half each
    np.testing.assert_allclose(mean_win_probability(f), [0.7, 0.2, 0.6])


def test_pairs_with_equal_targets_are_left_out() -> None:
    pairs, labels = labelled_pairs(np.array([1.0, 1.0, 2.0]))
    assert sorted(map(tuple, pairs.tolist())) == [(0, 2), (1, 2), (2, 0), (2, 1)]
    assert dict(zip(map(tuple, pairs.tolist()), labels.tolist(), strict=True)) == {
        (0, 2): 0, (1, 2): 0, (2, 0): 1, (2, 1): 1,
    }  # fmt: skip
    # scoring: the (0, 1) pair, wrongly ordered here, has equal targets and does not count
    preference = preference_from_scores(np.array([2.0, 1.0, 3.0]))
    assert pairwise_accuracy(preference, np.array([1.0, 1.0, 2.0])) == 1.0
    assert np.isnan(pairwise_accuracy(preference, np.array([1.0, 1.0, 1.0])))


def test_single_proxy_tie_counts_half() -> None:
    preference = preference_from_scores(np.array([1.0, 1.0, 2.0]))
    # (0, 1) tied in the proxy: half; (0, 2) and (1, 2) right
    assert pairwise_accuracy(preference, np.array([1.0, 2.0, 3.0])) == pytest.approx(2.5 / 3)


def test_top_k_recall_with_ties_in_the_prediction() -> None:
    target = np.array([4.0, 3.0, 2.0, 1.0])
    assert topk_recall(np.array([9.0, 1.0, 2.0, 3.0]), target, 1) == 1.0
    assert topk_recall(np.array([9.0, 9.0, 2.0, 3.0]), target, 1) == 0.5  # best among two tied
    assert topk_recall(np.array([1.0, 2.0, 3.0, 4.0]), target, 2) == 0.0
    assert topk_recall(np.array([4.0, 1.0, 3.0, 3.0]), target, 2) == 0.5  # 0 in; 1 out
    assert topk_recall(np.array([1.0, 2.0, 3.0, 4.0]), target, 10) == 1.0  # k capped at n


# --- protocols ------------------------------------------------------------------------------------


def test_random_splits_never_leak_candidates() -> None:
    plan = random_splits(40, splits=20, train_fraction=0.6, seed=3)
    assert len(plan) == 20
    for split in plan:
        assert not set(split.train) & set(split.test)
        assert sorted([*split.train, *split.test]) == list(range(40))
        assert (len(split.train), len(split.test)) == (24, 16)
    assert len({tuple(s.test) for s in plan}) > 1
    again = random_splits(40, splits=20, train_fraction=0.6, seed=3)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(plan, again, strict=True))


def test_leave_one_group_out_holds_out_exactly_one_group() -> None:
    groups = np.array(["a", "b", "a", "c", "b", "c", "a"])
    plan = leave_one_group_out(groups)
    assert sorted(set(groups[s.test]).pop() for s in plan) == ["a", "b", "c"]
    for split in plan:
        (held_out,) = set(groups[split.test])
        assert set(split.test) == set(np.flatnonzero(groups == held_out))
        assert set(split.train) == set(np.flatnonzero(groups != held_out))


def test_variant_splits_keep_each_group_on_one_side() -> None:
    groups = np.repeat([f"v{i}" for i in range(10)], 3)  # 10 variants x 3 checkpoints
    plan = group_random_splits(groups, splits=20, train_fraction=0.6, seed=3)
    assert len(plan) == 20
    for split in plan:
        assert not set(groups[split.train]) & set(groups[split.test])  # no sibling across
        assert sorted([*split.train, *split.test]) == list(range(30))
        assert (len(set(groups[split.train])), len(set(groups[split.test]))) == (6, 4)
    assert len({tuple(s.test) for s in plan}) > 1
    again = group_random_splits(groups, splits=20, train_fraction=0.6, seed=3)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(plan, again, strict=True))
    with pytest.raises(ComparatorInputError, match="each side needs at least one group"):
        group_random_splits(np.array(["a", "a", "b", "b"]), train_fraction=0.9)


def test_variant_protocol_report() -> None:
    df = synthetic(24).assign(variant=[f"v{i // 3}" for i in range(24)])
    report = judge(df, ["p1", "loss"], ["loss"], groups="variant", protocol="variant", splits=4)
    assert report.protocol.name == "variant_splits"
    assert report.protocol.group_column == "variant"
    assert report.protocol.judged_splits == 4
    assert report_title(report).startswith("score: 24 candidates, 4 of 4 random splits of the 8")


def test_split_sides_need_two_candidates() -> None:
    with pytest.raises(ComparatorInputError, match="each side needs at least 2"):
        random_splits(5, train_fraction=0.9)
    with pytest.raises(ComparatorInputError, match="'b' \\(1\\)"):
        leave_one_group_out(np.array(["a", "a", "b", "c", "c"]))


# --- the comparison -------------------------------------------------------------------------------


def test_comparator_beats_every_single_proxy_on_a_sum_of_two() -> None:
    report = judge(synthetic(), ["p1", "loss", "noise"], ["loss"], splits=5)
    accuracy = {name: m.pairwise_accuracy_mean for name, m in report.methods.items()}
    assert accuracy["ltc"] > max(accuracy[p] for p in ("p1", "loss", "noise"))
    assert accuracy["loss"] > 0.6  # negated: its direction was corrected
    importance = report.feature_importance
    assert importance["noise"] < min(importance["p1"], importance["loss"])


def test_leave_one_group_out_report() -> None:
    df = synthetic(24).assign(family=["x", "y", "z"] * 8)
    report = judge(df, ["p1", "loss"], ["loss"], groups="family")
    assert report.protocol.name == "leave_one_group_out"
    assert report.protocol.groups == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda d: d.assign(id="same"), {}, "duplicate id 'same'"),
        (lambda d: d.assign(score=1.0), {}, "every candidate has the same target"),
        (lambda d: d.head(3), {}, "3 candidate\\(s\\); the comparator needs at least 4"),
        (lambda d: d, {"lower_is_better": ["ppl"]}, "'ppl' are not among the proxies"),
        (lambda d: d, {"proxies": ["p1", "score"]}, "the target 'score' cannot also be a proxy"),
    ],
)
def test_check_table_errors(change, kwargs, message: str) -> None:
    args = {"id_column": "id", "target": "score", "proxies": ["p1", "loss"], **kwargs}
    with pytest.raises(ComparatorInputError, match=message):
        check_table(change(synthetic(6)), **args)


# --- the command ----------------------------------------------------------------------------------


def invoke(table: Path, *extra: str):
    args = ["compare", "--table", str(table), "--id-column", "id", "--target", "score"]
    return CliRunner().invoke(app, [*args, "--proxies", "p1,loss,noise", *extra])


def test_compare_command_writes_the_report(tmp_path: Path) -> None:
    table, output = tmp_path / "scores.csv", tmp_path / "out" / "report.json"
    synthetic(12).to_csv(table, index=False)
    result = invoke(table, "--lower-is-better", "loss", "--splits", "2", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "ltc" in result.output and "pairwise accuracy" in result.output
    report = json.loads(output.read_text())
    assert set(report) == set(REPORT_KEYS)
    assert report["target"] == "score"
    assert (report["n_candidates"], report["n_pairs"]) == (12, 66)
    assert isinstance(report["protocol"], dict) and report["protocol"]["splits"] == 2
    assert set(report["methods"]) == {"p1", "loss", "noise", "proxy_mean", "ltc", *BASELINES}
    for metrics in report["methods"].values():
        assert set(metrics) == set(METHOD_KEYS)
        assert all(isinstance(v, float) for v in metrics.values())
    assert set(report["feature_importance"]) == {"p1", "loss", "noise"}
    assert all(isinstance(v, float) for v in report["feature_importance"].values())


def test_compare_command_errors(tmp_path: Path) -> None:
    table = tmp_path / "scores.csv"

    def fails(df: pd.DataFrame, *extra: str) -> str:
        df.to_csv(table, index=False)
        result = invoke(table, *extra)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ")
        return result.output

    assert "missing column(s) 'noise'" in fails(synthetic(8).drop(columns="noise"))
    bad = synthetic(8).astype({"p1": object})
    bad.loc[2, "p1"] = "abc"
    assert f"{table}: row 3 (line 4), column 'p1': 'abc' is not a number" in fails(bad)
    empty = synthetic(8)
    empty.loc[4, "loss"] = np.nan
    assert f"{table}: row 5 (line 6), column 'loss': empty or NaN" in fails(empty)
    assert "3 candidate(s); the comparator needs at least 4" in fails(synthetic(3))
    assert "'ppl' are not among the proxies" in fails(synthetic(8), "--lower-is-better", "ppl")


# --- numbers at the edges of float64 and of XGBoost's float32 ------------------------------------


def four_candidates(p1: list[float], **columns: list[float]) -> pd.DataFrame:
    n = len(p1)
    return pd.DataFrame(
        {"id": [f"c{i}" for i in range(n)], "score": np.arange(n, dtype=float), "p1": p1, **columns}
    )


def test_values_closer_than_the_resolution_at_the_span_are_refused() -> None:
    # span 2**53: eps * span = 2, the smallest step standardising is sure to keep
    check_table(four_candidates([0, 2, 4, 6, 2.0**53]), "id", "score", ["p1"])
    with pytest.raises(ComparatorInputError) as err:
        check_table(four_candidates([0, 1, 2, 3, 2.0**53]), "id", "score", ["p1"])
    message = str(err.value)
    # the outlier leads; the two values it makes indistinguishable are named with their rows
    assert message.startswith("table: row 5, column 'p1': 9007199254740992.0 stretches")
    assert "row 1's 0.0 from row 2's 1.0" in message and "eps * span = 2" in message
    # a few ulps apart: one number computed two ways, a tie, not a refusal
    check_table(four_candidates([0.3, 0.1 + 0.2, 0, 1]), "id", "score", ["p1"])


@pytest.mark.parametrize("outlier", [1e308, -1e308, 1e160, 1e20])
def test_an_outlier_that_drowns_a_column_is_refused(outlier: float) -> None:
    with pytest.raises(ComparatorInputError, match=r"row 3, column 'p1'.*merge them"):
        check_table(four_candidates([1, 2, outlier, 3, 4]), "id", "score", ["p1"])


def test_standardised_proxies_stay_within_xgboost_float32() -> None:
    # the first two candidates train: both 0, so the scale is 1 and z is the value itself
    at_bound = MAX_STANDARDISED
    over = np.nextafter(MAX_STANDARDISED, np.inf)
    split = Split("split 1", np.array([0, 1]), np.array([2, 3]))
    for value, ok in ((at_bound, True), (-at_bound, True), (over, False), (-over, False)):
        df = four_candidates([0.0, 0.0, value, value], loss=[1.0, 2.0, 3.0, 4.0])
        candidates = check_table(df, "id", "score", ["p1", "loss"], ["loss"])
        if ok:
            check_standardising(candidates, [split])
            f = Comparator(n_estimators=5).fit(candidates.proxies[:2], np.array([0.0, 1.0]))
            assert np.isfinite(f.preference(candidates.proxies)).all()
        else:
            with pytest.raises(ComparatorInputError, match=r"row 3, column 'p1'.*in split 1"):
                check_standardising(candidates, [split])
            model = Comparator(n_estimators=5).fit(candidates.proxies[:2], np.array([0.0, 1.0]))
            with pytest.raises(ComparatorInputError, match="candidate 3, proxy 1"):
                model.preference(candidates.proxies)
    # at the bound, every feature of a pair, the product included, is finite in float32
    z = np.array([[MAX_STANDARDISED], [-MAX_STANDARDISED]])
    assert np.isfinite(pair_features(z, np.array([[0, 1], [1, 0]])).astype(np.float32)).all()


def test_a_lower_is_better_proxy_is_named_with_its_own_values() -> None:
    df = four_candidates([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], flops=[0.0] * 7 + [1e19])
    with pytest.raises(ComparatorInputError) as err:
        judge(df, ["p1", "flops"], ["flops"], splits=20)
    assert "row 8, column 'flops': 1e+19 standardises to 1e+19 in split" in str(err.value)


def test_the_target_is_only_compared() -> None:
    """Any order-preserving change of the target, out to float64's limits, judges the same."""
    df = synthetic(12)
    ranks = df["score"].rank(method="first").astype(int) - 1
    huge = df.assign(score=1.7e308 * np.linspace(-1, 1, 12)[ranks])
    args = (["p1", "loss", "noise"], ["loss"])
    plain = judge(df, *args, splits=3)
    stretched = judge(huge, *args, splits=3)
    assert stretched.methods == plain.methods


# --- what was judged ------------------------------------------------------------------------------


def test_only_splits_with_a_held_out_pair_are_judged() -> None:
    df = synthetic(10).assign(score=[0.5] * 7 + [0.6, 0.7, 0.8])
    report = judge(df, ["p1", "loss"], ["loss"], splits=20, seed=1)
    protocol = report.to_dict()["protocol"]
    plan = random_splits(10, splits=20, train_fraction=0.6, seed=1)
    target = df["score"].to_numpy()
    held_out = [len(labelled_pairs(target[s.test])[0]) // 2 for s in plan]
    trains = [np.unique(target[s.train]).size > 1 for s in plan]
    judged = [p for p, t in zip(held_out, trains, strict=True) if p and t]
    assert (protocol["judged_splits"], protocol["judged_pairs"]) == (len(judged), sum(judged))
    assert 0 < len(judged) < 20  # the case is partly degenerate
    assert protocol["skipped_splits"] == 20 - len(judged) == sum(protocol["skipped"].values())
    for metrics in report.to_dict()["methods"].values():  # every metric defined on every split
        assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    assert f"{len(judged)} of 20 random splits judged" in report_lines(report)[0]
    assert f"{sum(judged)} held-out pairs" in report_lines(report)[0]
    assert f"{20 - len(judged)} of 20 splits not judged" in skipped_note(report)


def test_nothing_to_judge_is_an_error() -> None:
    df = synthetic(8).assign(score=[0.5] * 7 + [0.6])  # held out: all 0.5, or trained: all 0.5
    with pytest.raises(ComparatorInputError, match="nothing to judge: of 20 split\\(s\\)"):
        judge(df, ["p1", "loss"], ["loss"], splits=20)


def test_an_undefined_metric_reads_n_a_without_a_spread() -> None:
    report = judge(synthetic(12), ["p1", "loss"], ["loss"], splits=2)
    undefined = {"pairwise_accuracy_mean": None, "pairwise_accuracy_std": None}
    methods = {**report.methods, "p1": report.methods["p1"].model_copy(update=undefined)}
    report = report.model_copy(update={"methods": methods, "ranking": method_ranking(methods)})
    rows = {row[0]: row for row in report_rows(report)}
    assert rows["p1"][1] == "n/a" and report.ranking[-1] == "p1"  # undefined ranks last
    assert " ± " in rows["ltc"][1]


def test_the_report_records_its_provenance(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    synthetic(12).to_csv(path, index=False)
    report = judge(read_table(path), ["p1", "loss"], ["loss"], splits=2).to_dict()
    assert report["input"] == {
        "path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "id_column": "id",
    }
    assert report["proxies"] == {
        "p1": {"lower_is_better": False},
        "loss": {"lower_is_better": True},
    }
    assert report["protocol"]["seed"] == 0 and report["protocol"]["judged_splits"] == 2
    accuracy = [report["methods"][m]["pairwise_accuracy_mean"] for m in report["ranking"]]
    assert sorted(report["ranking"]) == sorted(report["methods"])
    assert accuracy == sorted(accuracy, reverse=True)


def test_compare_prints_plain_lines_to_a_pipe(tmp_path: Path, monkeypatch) -> None:
    import cli.render

    table = tmp_path / "scores.csv"
    synthetic(12).assign(score=[0.5] * 6 + list(range(6))).to_csv(table, index=False)
    monkeypatch.setattr(cli.render.console, "width", 30)  # narrower than a row: nothing wraps
    result = invoke(table, "--lower-is-better", "loss", "--splits", "20")
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output  # no colour codes
    title, header, *rows = result.output.splitlines()
    assert title.startswith("score: 12 candidates, ") and "held-out pairs" in title
    header_text = "method pairwise accuracy Kendall tau top-1 recall top-3 recall best in top-3"
    assert " ".join(header.split()) == header_text
    notes = ("warning:", "note:")
    methods = {line.split()[0]: line.split()[1:] for line in rows if not line.startswith(notes)}
    assert set(methods) == {"p1", "loss", "noise", "proxy_mean", "ltc", *BASELINES}
    assert all(len(cells) == 7 and cells[1] == "±" for cells in methods.values())


def test_compare_checks_the_output_path_first(tmp_path: Path) -> None:
    table = tmp_path / "scores.csv"
    synthetic(12).to_csv(table, index=False)
    output = tmp_path / "new" / "deeper" / "report.json"  # missing folders are created
    assert invoke(table, "--splits", "1", "--output", str(output)).exit_code == 0
    assert json.loads(output.read_text())["input"]["path"] == str(table)
    (tmp_path / "a-file").write_text("")
    for bad, why in (
        (tmp_path, "is a directory"),
        (tmp_path / "a-file" / "report.json", f"{tmp_path / 'a-file'} is a file, not a folder"),
        (table, "is the input table"),
    ):
        result = invoke(table, "--output", str(bad))
        assert result.exit_code == 2 and result.output.startswith(f"error: {bad}: "), result.output
        assert why in result.output
    assert table.read_text() == synthetic(12).to_csv(index=False)


def test_a_column_too_narrow_to_square_is_refused() -> None:
    narrow = [0.0, MIN_SPAN / 4, MIN_SPAN / 2, MIN_SPAN]  # the narrowest span accepted
    candidates = check_table(four_candidates(narrow), "id", "score", ["p1"])
    z = StandardScaler().fit_transform(candidates.proxies).ravel()
    assert len(set(z)) == 4 and np.abs(z).max() < 2  # standardised, not seen as a constant
    with pytest.raises(ComparatorInputError, match=r"row 4, column 'p1': the values span only"):
        check_table(
            four_candidates([*narrow[:3], np.nextafter(MIN_SPAN, 0)]), "id", "score", ["p1"]
        )


def test_a_column_whose_mean_overflows_is_refused() -> None:
    # spread wide enough to pass the resolution check, but the training sum overflows float64
    df = four_candidates([1.0e308, 1.2e308, 1.4e308, 1.6e308, 1.7e308, 1.1e308])
    message = r"row 5, column 'p1': 1.7e\+308 standardises to nan in split"
    with pytest.raises(ComparatorInputError, match=message):
        judge(df, ["p1"], splits=2)


def test_an_output_in_a_folder_that_takes_no_file_is_refused_first(tmp_path: Path) -> None:
    readonly = Path("/sys")  # read-only even for root, where a chmod would not hold
    try:
        with tempfile.TemporaryFile(dir=readonly):
            pytest.skip(f"{readonly} takes files here")
    except OSError:
        pass
    table = tmp_path / "scores.csv"
    synthetic(12).to_csv(table, index=False)
    result = invoke(table, "--output", str(readonly / "sftcast" / "report.json"))
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {readonly}/sftcast/report.json: cannot be written")
    assert "pairwise accuracy" not in result.output  # refused before the work


def test_splits_judged_on_two_processes_give_the_same_report() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 3))
    df = pd.DataFrame({"id": [f"c{i}" for i in range(16)], "a": x[:, 0], "b": x[:, 1],
                       "c": x[:, 2], "y": x[:, 0] - x[:, 1] + rng.normal(size=16) / 3})  # fmt: skip
    args = (df, ["a", "b", "c"])
    one = judge(*args, target="y", splits=4, protocol="deployment")
    two = judge(*args, target="y", splits=4, protocol="deployment", jobs=2)
    assert one.methods == two.methods and one.comparator == two.comparator


def test_a_judgement_without_the_final_fit_judges_alike() -> None:
    df = synthetic(24)
    full = judge(df, ["p1", "loss", "noise"], ["loss"], splits=3)
    alone = judge(df, ["p1", "loss", "noise"], ["loss"], splits=3, final_fit=False)
    assert alone.methods == full.methods and alone.lead == full.lead
    assert full.comparator.final_form is not None and full.feature_importance
    assert alone.comparator.final_form is None and alone.feature_importance is None
