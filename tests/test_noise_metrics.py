"""Metrics that mean something under seed noise (issue #31): the seed-mean target, the noise
ceiling, regret in noise units and within-noise recall, the interval bootstrapped over groups,
every task's probes offered to every task, and monotone constraints learned on the training
side."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from sftcast.comparator import compare_table, pairwise_accuracy, random_splits
from sftcast.comparator.config import Columns, ComparatorSettings, JudgementSettings
from sftcast.comparator.forms import make_form
from sftcast.comparator.judge import regret_in_noise
from sftcast.comparator.metrics import group_bootstrap_interval
from sftcast.comparator.model import Comparator, monotone_constraints
from sftcast.comparator.noise import noise_ceiling, pooled_seed_std, seed_columns
from sftcast.comparator.report import GROUP_KEYS, METHOD_KEYS, NOISE_KEYS
from sftcast.curves import ReplayPath, ReplayTable, curve
from sftcast.study import StudyConfig, write_table
from sftcast.study.summary import (
    DESIGN,
    REPO,
    changed_since,
    modal_share,
    pretraining_proxies,
    probe_proxies,
    summarize,
)
from sftcast.study.table import judged_column, seed_counts, seed_noise, with_seed_statistics

LINEAR = ComparatorSettings(form="linear")  # where the form does not matter: fast


# --- the seed-mean target -------------------------------------------------------------------------


def _seeded() -> pd.DataFrame:
    """Three candidates: one with three seeds, one with two, one with the main seed only; a
    second task without extra seeds; a cost column."""
    return pd.DataFrame({
        "candidate": ["a", "b", "c"],
        "sft_cls": [0.5, 0.2, 0.9], "sft_rag": [0.1, 0.2, 0.3],
        "sft_cls_seed1": [0.7, 0.4, np.nan], "sft_cls_seed2": [0.6, np.nan, np.nan],
        "seconds_sft_cls": [1.0, 2.0, 3.0],
    })  # fmt: skip


def test_the_seed_mean_and_std_are_over_the_seeds_each_candidate_has() -> None:
    table = with_seed_statistics(_seeded())
    assert table["sft_cls_mean"].tolist() == pytest.approx([0.6, 0.3, 0.9])
    assert table["sft_cls_std"].iloc[:2].tolist() == pytest.approx([0.1, math.sqrt(0.02)])
    assert np.isnan(table["sft_cls_std"].iloc[2])  # one seed: no std
    assert "sft_rag_mean" not in table and "sft_rag_std" not in table  # no extra seeds
    # beside the seeds, before the costs
    assert list(table.columns[-5:]) == [
        "sft_cls_seed1", "sft_cls_seed2", "sft_cls_mean", "sft_cls_std", "seconds_sft_cls",
    ]  # fmt: skip
    assert judged_column(table, "cls") == "sft_cls_mean"
    assert judged_column(table, "rag") == "sft_rag"
    # the summary columns are no seeds: the noise and the seed counts are the same with them
    assert seed_columns(table.columns, "sft_cls") == ["sft_cls_seed1", "sft_cls_seed2"]
    assert seed_noise(table, "cls") == seed_noise(_seeded(), "cls")
    assert seed_counts(table, "cls").tolist() == [3, 2, 1]
    assert seed_counts(table, "rag").tolist() == [1, 1, 1]
    # nor proxies
    offered = pretraining_proxies(table) + probe_proxies(table)
    assert not [p for p in offered if p.startswith("sft_")]


def test_a_chunk_without_seeds_gets_its_seed_mean_all_the_same(tmp_path: Path) -> None:
    study = StudyConfig(results=tmp_path / "results.csv")
    write_table(with_seed_statistics(_seeded()), study, "s1", merge=False)
    chunk = pd.DataFrame({"candidate": ["d"], "sft_cls": [0.4], "sft_rag": [0.5],
                          "seconds_sft_cls": [1.0]})  # fmt: skip
    table = pd.read_csv(write_table(chunk, study, "s1", merge=True))
    assert table["candidate"].tolist() == ["a", "b", "c", "d"]
    assert table["sft_cls_mean"].tolist() == pytest.approx([0.6, 0.3, 0.9, 0.4])


def test_the_pooled_seed_std_takes_every_candidate_with_two_seeds_or_more() -> None:
    scores = np.array([[0.5, 0.7, 0.6], [0.2, 0.4, np.nan], [0.9, np.nan, np.nan]])
    assert pooled_seed_std(scores) == pytest.approx(math.sqrt((0.01 + 0.02) / 2))
    assert math.isnan(pooled_seed_std(scores[2:]))


def test_modal_share_is_the_share_tied_at_the_most_common_target() -> None:
    assert modal_share(pd.Series([0.5, 0.5, 0.5, 0.25, np.nan])) == 0.75
    assert modal_share(pd.Series([0.1, 0.2, 0.3, 0.4])) == 0.25


# --- the noise ceiling ----------------------------------------------------------------------------


def test_the_noise_ceiling_goes_from_certainty_to_a_coin_toss() -> None:
    means = np.array([0.1, 0.2, 0.4, 0.4, 0.8])
    seeds = np.array([1, 3, 1, 2, 1])
    assert noise_ceiling(means, seeds, 0.0) == 1.0  # no noise: every order is true
    assert noise_ceiling(means, seeds, 1e-9) == pytest.approx(1.0)
    assert noise_ceiling(means, seeds, 1e6) == pytest.approx(0.5, abs=1e-6)
    assert noise_ceiling(means, seeds, math.nan) is None  # unknown noise
    assert noise_ceiling(np.array([0.4, 0.4]), np.ones(2), 0.1) is None  # no pair differs


def test_the_noise_ceiling_by_hand() -> None:
    # pairs (0, 1) and (1, 2); (0, 2) ties and is not scored
    means, seeds, sigma = np.array([0.0, 1.0, 0.0]), np.array([1, 4, 2]), 1.0
    expected = (norm.cdf(1 / math.sqrt(1 + 1 / 4)) + norm.cdf(1 / math.sqrt(1 / 4 + 1 / 2))) / 2
    assert noise_ceiling(means, seeds, sigma) == pytest.approx(expected)
    # more seeds, a sharper mean, a higher ceiling
    assert noise_ceiling(means, seeds * 4, sigma) > expected


# --- regret in noise units, within-noise recall ---------------------------------------------------


def test_regret_is_the_pick_s_shortfall_in_noise_units() -> None:
    target = np.array([0.0, 0.5, 0.9, 1.0])
    picks_2 = np.array([0.0, 1.0, 3.0, 2.0])
    assert regret_in_noise(picks_2, target, 0.2) == pytest.approx(
        {"regret_noise_units": 0.1 / 0.2, "within_noise_recall": 1.0}
    )
    picks_best = np.array([0.0, 1.0, 2.0, 3.0])
    assert regret_in_noise(picks_best, target, 0.2) == {
        "regret_noise_units": 0.0, "within_noise_recall": 1.0
    }  # fmt: skip
    # a tie for the top between 0 and 3: either, with equal chance
    tied = np.array([5.0, 1.0, 2.0, 5.0])
    assert regret_in_noise(tied, target, 0.2) == pytest.approx(
        {"regret_noise_units": 0.5 / 0.2, "within_noise_recall": 0.5}
    )
    # no noise: no unit, and within noise means the best itself
    found = regret_in_noise(picks_2, target, 0.0)
    assert math.isnan(found["regret_noise_units"]) and found["within_noise_recall"] == 0.0


def test_regret_agrees_with_the_compute_curves() -> None:
    truth = np.array([0.0, 0.5, 0.9, 1.0])
    table = ReplayTable(truth, truth, 0.2, np.ones(4), 0.0, {})
    for pick in range(4):
        (point, *_) = curve([ReplayPath([4.0], [pick])], table)[-1:]
        scores = np.eye(4)[pick]
        found = regret_in_noise(scores, truth, table.noise)
        assert found["regret_noise_units"] == pytest.approx(point.mean_regret_noise_units)
        assert found["within_noise_recall"] == point.within_noise_found_rate


def _ranked(n: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.permutation(n).astype(float)
    return pd.DataFrame({"id": [f"c{i}" for i in range(n)], "score": score,
                         "right": score, "backwards": -score,
                         "noise": rng.normal(size=n)})  # fmt: skip


@pytest.mark.parametrize("protocol", ["paper", "deployment"])
def test_regret_counts_the_held_out_candidates_only(protocol: str) -> None:
    df = _ranked()
    columns = Columns(id_column="id", target="score", proxies=["right", "backwards", "noise"])
    settings = JudgementSettings(
        protocol=protocol, splits=3, seed_noise=2.0, comparator=LINEAR, final_fit=False
    )
    report = compare_table(df, columns, settings)
    target = df["score"].to_numpy()
    spans = [np.ptp(target[split.test]) for split in random_splits(20, 3, 0.6, seed=0)]
    right, backwards = report.methods["right"], report.methods["backwards"]
    assert (right.regret_noise_units_mean, right.within_noise_recall) == (0.0, 1.0)
    # the worst held-out candidate picked: its shortfall from the best held-out one, not from
    # the best training candidate (deployment scores its pairs against those)
    assert backwards.regret_noise_units_mean == pytest.approx(np.mean(spans) / 2.0)
    assert backwards.regret_noise_units_std == pytest.approx(np.std(spans) / 2.0)
    assert backwards.within_noise_recall == 0.0
    for metrics in report.to_dict()["methods"].values():
        assert set(metrics) == {*METHOD_KEYS, *NOISE_KEYS}  # no groups: no interval


# --- the interval bootstrapped over groups --------------------------------------------------------


def _group_pairs(n_groups: int, pairs: int, seed: int = 0) -> tuple[np.ndarray, tuple]:
    """Pairs of random groups, right with a chance that depends on the groups (groups differ,
    which is what the bootstrap over them is for)."""
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, n_groups, size=(2, pairs))
    skill = rng.uniform(0.4, 1.0, size=n_groups)
    right = rng.random(pairs) < (skill[first] + skill[second]) / 2
    return right[None, :].astype(float), (first, second)


def test_the_group_interval_holds_the_pooled_accuracy_and_narrows_with_more_groups() -> None:
    widths = []
    for n_groups in (5, 50):
        correct, groups = _group_pairs(n_groups, 5000)
        (low,), (high,) = group_bootstrap_interval(correct, groups, n_groups, 1000, seed=0)
        assert low <= correct.mean() <= high
        widths.append(high - low)
    assert widths[1] < 0.75 * widths[0]
    # seeded: the same draws, the same interval
    correct, groups = _group_pairs(5, 500)
    assert group_bootstrap_interval(correct, groups, 5, seed=3) == group_bootstrap_interval(
        correct, groups, 5, seed=3
    )


def test_every_method_gets_an_interval_under_a_grouped_protocol() -> None:
    df = _ranked(40).assign(variant=[f"v{i // 2}" for i in range(40)])
    df["near"] = df["score"] + np.random.default_rng(1).normal(scale=8, size=40)
    columns = Columns(id_column="id", target="score", proxies=["near", "noise"])
    settings = JudgementSettings(
        protocol="variant", groups="variant", splits=5, comparator=LINEAR, final_fit=False
    )
    report = compare_table(df, columns, settings)
    for name, metrics in report.methods.items():
        low, high = metrics.pairwise_accuracy_ci_low, metrics.pairwise_accuracy_ci_high
        assert low <= metrics.pairwise_accuracy_mean <= high, name
        assert set(report.to_dict()["methods"][name]) == {*METHOD_KEYS, *GROUP_KEYS}
    assert report.methods["near"].pairwise_accuracy_ci_high > 0.5
    # per split, as paired comparisons read them
    assert len(report.split_accuracy["ltc"]) == report.protocol.judged_splits


# --- every task's probes, for every task ----------------------------------------------------------


def test_every_task_s_probe_read_outs_are_offered() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"ppl_clm": rng.normal(size=6), "probe_loss_cls": rng.normal(size=6),
                       "answer_loss_rag": rng.normal(size=6), "probe_cbqa": rng.normal(size=6),
                       "probe_drop_rag": 1.0})  # fmt: skip
    assert set(probe_proxies(df)) == {"probe_loss_cls", "answer_loss_rag", "probe_cbqa"}


# --- monotone constraints follow the training side ------------------------------------------------


def test_monotone_constraints_take_each_proxy_s_learned_direction() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    x[:, 2] = 1.0  # constant: no direction, unconstrained
    y = -x[:, 0] + 0.5 * x[:, 1]
    assert monotone_constraints(x, y) == (-1, 0, -1, 1, 1, 0, 1, -1, 0, 0, 0, 0)


def test_a_proxy_pointed_backwards_still_gets_the_right_constraint() -> None:
    # the registry called the proxy higher-is-better; on the training side it is lower
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2))
    y = -x[:, 0] + 0.1 * rng.normal(size=30)
    model = make_form("xgboost_monotone").fit(x, y)
    assert isinstance(model, Comparator)
    less, more = np.array([[-1.0, 0.0]]), np.array([[1.0, 0.0]])
    f = model.preference(np.vstack([less, more]))
    assert f[0, 1] > 0.5  # less of the backwards proxy is preferred
    # held out: the constrained trees order new candidates by the proxy, backwards
    test = rng.normal(size=(20, 2))
    assert pairwise_accuracy(model.preference(test), -test[:, 0]) > 0.9


# --- the study's summary --------------------------------------------------------------------------


def _results(path: Path, n: int = 24) -> None:
    """A study-like table for cls, with two extra seeds on some candidates (and the seed mean
    the study writes), and a probe of another task."""
    rng = np.random.default_rng(0)
    quality = rng.normal(size=n)
    table = pd.DataFrame({
        "candidate": [f"zoo:v{i // 3}@{50 * (i % 3 + 1)}" for i in range(n)],
        "variant": [f"v{i // 3}" for i in range(n)],
        "family": ["objective-lr" if i < n // 2 else "mixture" for i in range(n)],
        "ppl_clm": np.exp(3 - 0.3 * quality + rng.normal(size=n)),
        "weight_norm": 0.1 + 0.01 * rng.normal(size=n),
        "probe_loss_cls": 4 - quality + 0.5 * rng.normal(size=n),
        "probe_loss_rag": 4 - quality + rng.normal(size=n),
        "sft_cls": 0.5 + 0.1 * quality + 0.02 * rng.normal(size=n),
    })  # fmt: skip
    for s in (1, 2):
        extra = table["sft_cls"] + 0.02 * rng.normal(size=n)
        table[f"sft_cls_seed{s}"] = extra.where(table.index < 8 * s)
    with_seed_statistics(table).to_csv(path, index=False)


def test_the_summary_judges_the_seed_mean_against_its_noise_ceiling(tmp_path: Path) -> None:
    results = tmp_path / "results.csv"
    _results(results)
    study = StudyConfig(results=results, splits=2, jobs=1, freeze_commit="abc123")
    summary = summarize(results, study, ["cls"], tmp_path / "reports")
    assert summary["freeze_commit"] == "abc123"
    assert summary["design_changed_since_freeze"] is None  # no such commit: git cannot tell
    cls = summary["tasks"]["cls"]
    table = pd.read_csv(results)
    assert cls["target_column"] == "sft_cls_mean"
    assert (cls["seeds_min"], cls["modal_share"]) == (1, 1 / 24)
    counts = seed_counts(table, "cls")
    expected = noise_ceiling(table["sft_cls_mean"].to_numpy(), counts, seed_noise(table, "cls"))
    assert cls["noise_ceiling"] == pytest.approx(expected) and 0.5 < expected < 1
    for args in cls["commands"]:
        assert args[args.index("--target") + 1] == "sft_cls_mean"
    variant = cls["variant"]
    ltc = variant["ltc"]
    assert ltc["of_noise_ceiling"] == pytest.approx(
        ltc["pairwise_accuracy_mean"] / cls["noise_ceiling"]
    )
    assert ltc["regret_noise_units"] is not None and ltc["within_noise_recall"] is not None
    # the headline methods under their issue's names, with the interval over variants
    headline = ("ppl_clm", "best_single_train", "proxy_mean_signed", "linear", "ltc_pretraining")
    for name in (*headline, "ltc"):
        found = variant[name]
        assert found["pairwise_accuracy_ci_low"] <= found["pairwise_accuracy_ci_high"]
    assert (
        variant["best_single_train"]["pairwise_accuracy_mean"]
        == (variant["best_proxy_fit"]["pairwise_accuracy_mean"])
    )
    assert set(variant["paired"]) == set(headline)
    assert variant["paired"]["linear"]["mean_difference"] == pytest.approx(
        variant["linear_tuned"]["ltc_minus_mean"]
    )
    assert variant["paired"]["ltc_pretraining"]["splits"] == 2
    # ltc_pretraining against ppl_clm and each baseline fitted on the pre-training proxies alone
    pretraining = variant["paired_pretraining"]
    assert set(pretraining) == {*headline[:-1], "ridge"}
    assert pretraining["ppl_clm"]["mean_difference"] == pytest.approx(
        variant["ltc_pretraining"]["pairwise_accuracy_mean"]
        - variant["ppl_clm"]["pairwise_accuracy_mean"]
    )
    # another task's probe is offered too; seeds and their summaries never are
    assert "probe_loss_rag" in variant
    assert not [m for m in variant if m.startswith("sft_")]
    json.dumps(summary)  # written as JSON
    # no interval where the protocol has no groups
    assert cls["paper"]["ltc"]["pairwise_accuracy_ci_low"] is None


def test_a_freeze_names_the_design_files_changed_since(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run([git, "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    found = changed_since(head.stdout.strip())
    assert found is not None and all(f.startswith(DESIGN) for f in found)
    # a design file changed in a copy of the checkout is named; a judging file is not
    copy = tmp_path / "copy"
    subprocess.run([git, "worktree", "add", "--detach", str(copy), "HEAD"], cwd=REPO, check=True)
    try:
        for name in ("sftcast/comparator/forms.py", "sftcast/comparator/judge.py"):
            with (copy / name).open("a") as f:
                f.write("# changed\n")
        assert changed_since(head.stdout.strip(), copy) == ["sftcast/comparator/forms.py"]
    finally:
        subprocess.run([git, "worktree", "remove", "--force", str(copy)], cwd=REPO, check=True)
