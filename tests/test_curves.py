"""Compute-regret curves: what each strategy spends (fine-tunes at their measured cost,
proxies and probes for every candidate, partial fine-tunes at their fraction), regret against
the seed-mean truth in noise units, and successive halving over the table's fidelities."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.active import SEED_DRAW, Oracle, run_strategy, simulate
from sftcast.comparator import ComparatorInputError, check_table
from sftcast.curves import (
    CurvePoint,
    ReplayPath,
    ReplayTable,
    budgeted,
    compute_to_within_noise,
    curve,
    replay_table,
    shortfalls,
    successive_halving,
)

FIDELITIES = (1 / 9, 1 / 3, 1.0)


def study_like(n: int = 27, seed: int = 0) -> pd.DataFrame:
    """A table shaped like the study's for cls: a proxy, a probe loss, the score with two extra
    seeds on a few candidates, costs, and the fine-tunes' validation loss part way."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n)
    df = pd.DataFrame({
        "candidate": [f"c{i}" for i in range(n)],
        "ppl_clm": np.exp(3 - 0.3 * quality + rng.normal(size=n)),
        "probe_loss_cls": 4 - quality + 0.3 * rng.normal(size=n),
        "sft_cls": 0.5 + 0.1 * quality + 0.01 * rng.normal(size=n),
        "seconds_sft_cls": 40.0 + rng.uniform(-5, 5, size=n),
        "seconds_proxies": 4.0, "seconds_base": 4.0, "seconds_probe_cls": 2.0,
    })  # fmt: skip
    for s in (1, 2):
        df[f"sft_cls_seed{s}"] = (df["sft_cls"] + 0.01 * rng.normal(size=n)).where(df.index < 6)
    for f in FIDELITIES:  # noisier part way
        df[f"val_loss_cls_at{f:.3g}"] = 2 - quality * f + (1 - f) * rng.normal(size=n)
    return df


def checked(df: pd.DataFrame):
    candidates = check_table(df, "candidate", "sft_cls", ["ppl_clm", "probe_loss_cls"],
                             ["ppl_clm", "probe_loss_cls"])  # fmt: skip
    return candidates, replay_table(df, candidates, "sft_cls")


def test_the_replay_table_reads_costs_seeds_and_fidelities() -> None:
    df = study_like()
    _, table = checked(df)
    seeds = df[["sft_cls", "sft_cls_seed1", "sft_cls_seed2"]].to_numpy()
    assert np.allclose(table.truth[:6], seeds[:6].mean(axis=1))
    assert np.array_equal(table.truth[6:], df["sft_cls"].to_numpy()[6:])  # one seed: itself
    assert table.noise == pytest.approx(np.sqrt(np.var(seeds[:6], axis=1, ddof=1).mean()))
    assert np.median(table.finetune_cost) == pytest.approx(1.0)
    unit = df["seconds_sft_cls"].median()
    assert table.proxy_cost == pytest.approx(8 / unit)
    assert table.probe_costs["cls"] == pytest.approx(2 / unit)
    assert table.fidelities == pytest.approx(FIDELITIES, rel=1e-2)  # named to 3 digits
    # what measuring costs for every candidate: one probe, or every proxy and the probe
    assert table.measuring(["probe_loss_cls"]) == pytest.approx(27 * 2 / unit)
    assert table.measuring(["ppl_clm", "probe_loss_cls"]) == pytest.approx(27 * 10 / unit)
    assert table.measuring([]) == 0


def test_a_bad_cost_cell_is_named_by_row_and_column() -> None:
    df = study_like().astype({"seconds_sft_cls": object})
    df.loc[4, "seconds_sft_cls"] = "slow"
    candidates = check_table(df, "candidate", "sft_cls", ["ppl_clm"])
    with pytest.raises(ComparatorInputError, match=r"row 5, column 'seconds_sft_cls': 'slow'"):
        replay_table(df, candidates, "sft_cls")


def test_successive_halving_keeps_the_best_third_by_validation_loss_at_each_rung() -> None:
    n = 9
    loss = np.column_stack([np.arange(n), np.arange(n)[::-1] % 3, np.zeros(n)]).astype(float)
    observed = np.linspace(0, 1, n)
    table = ReplayTable(observed, observed, math.nan, np.ones(n), 0.0, {}, FIDELITIES, loss)
    path = successive_halving(table)
    # rung 1 keeps 0, 1, 2 (lowest loss); rung 2 keeps the lowest of them at 1/3: candidate 2
    # (loss 0: its reversed index is 6, 6 % 3 = 0); it finishes alone
    assert path.chosen == [2]
    # 9 started to 1/9, 3 went on to 1/3, 1 finished: 1 + 2/3 + 2/3 full fine-tunes
    assert path.compute == pytest.approx([1 + 2 / 3 + 2 / 3])
    no_fidelities = ReplayTable(observed, observed, math.nan, np.ones(n), 0.0, {})
    with pytest.raises(ComparatorInputError, match="successive_halving needs"):
        successive_halving(no_fidelities)


def test_each_trial_draws_which_seed_a_fine_tune_shows() -> None:
    df = study_like()
    _, table = checked(df)
    seeds = df[["sft_cls", "sft_cls_seed1", "sft_cls_seed2"]].to_numpy()
    draws = np.array([table.seed_draw(np.random.default_rng(t)).observed for t in range(60)])
    for i in range(len(df)):
        shown = set(draws[:, i])
        ran = set(seeds[i][~np.isnan(seeds[i])])
        assert shown == ran  # every run seed is drawn, and only those (one seed: itself)
    assert not np.array_equal(draws[0], draws[1])  # redrawn per trial
    unseeded = ReplayTable(table.observed, table.truth, 0.1, np.ones(len(df)), 0.0, {})
    assert unseeded.seed_draw(np.random.default_rng(0)) is unseeded


def test_a_budget_that_cannot_pay_for_the_measuring_falls_back() -> None:
    fallback = ReplayPath([1.0, 2.0, 3.0, 4.0], [5, 5, 7, 7])
    measured = ReplayPath([2.5, 3.5], [1, 2])  # measuring for 1.5, then two fine-tunes
    spliced = budgeted(fallback, measured)
    assert spliced.compute == [1.0, 2.0, 2.5, 3.5] and spliced.chosen == [5, 5, 1, 2]


def test_regret_is_counted_in_seed_noise_against_compute() -> None:
    truth = np.array([0.0, 0.5, 0.9, 1.0])
    table = ReplayTable(truth, truth, 0.2, np.ones(4), 0.0, {})
    # one trial finds 2 (within 0.2 of the best) after 2 fine-tunes, the other 3 after 3
    paths = [ReplayPath([1.0, 2.0], [1, 2]), ReplayPath([1.0, 2.0, 3.0], [0, 0, 3])]
    points = curve(paths, table)
    assert [p.compute_fraction for p in points][-1] == 0.75  # 3 of 4 fine-tunes
    at = {p.compute_fraction: p for p in points}
    assert at[0.2].mean_regret_noise_units is None and at[0.2].within_noise_found_rate == 0
    assert at[0.25].mean_regret_noise_units == pytest.approx((0.5 / 0.2 + 1 / 0.2) / 2)
    assert at[0.5].within_noise_found_rate == 0.5
    assert at[0.75].mean_regret_noise_units == pytest.approx((0.1 / 0.2 + 0) / 2)
    assert at[0.75].within_noise_found_rate == 1.0
    assert compute_to_within_noise(points) == 0.75
    assert compute_to_within_noise(points[:60]) is None


def test_simulate_charges_each_strategy_what_it_spends() -> None:
    candidates, table = checked(study_like())
    report = simulate(candidates, "sft_cls", budget=9, initial=3, trials=3, table=table)
    assert set(report.strategies) == {
        "random", "proxy_order", "proxy_greedy", "successive_halving", "active", "active_anytime",
        "probe_order",
    }  # fmt: skip
    assert report.order_proxy == "probe_loss_cls" and report.truth == "seed mean"
    assert report.default_strategy == "probe_order" and report.seed_noise == table.noise
    costs = table.finetune_cost
    start = {
        name: result.curve[0].compute_fraction for name, result in report.strategies.items()
    }  # fmt: skip
    # proxy_order pays the probe for every candidate before its first fine-tune
    first = report.strategies["proxy_order"].first_trial_choices[0].candidate
    spent = table.measuring(["probe_loss_cls"]) + costs[int(first[1:])]
    found = next(
        p for p in report.strategies["proxy_order"].curve if p.mean_regret_noise_units is not None
    )
    assert found.compute_fraction == pytest.approx(math.ceil(spent / table.total * 100) / 100)
    assert start == {name: 0.01 for name in report.strategies}
    # 27 started at 1/9, 9 went on, 3 finished: a ninth of the compute plus a bit
    halving = report.strategies["successive_halving"]
    assert halving.curve[-1].compute_fraction < 0.35
    for result in report.strategies.values():
        values = [p.within_noise_found_rate for p in result.curve]
        assert all(0 <= v <= 1 for v in values)
    # the ceiling: every candidate fine-tuned, the best one seen kept, over the same seed draws
    found = []
    for trial in range(3):
        seen = table.seed_draw(np.random.default_rng([trial, SEED_DRAW])).observed
        found.append(table.truth.max() - table.truth[np.argmax(seen)] <= table.noise)
    assert report.fine_tune_all.within_noise_found_rate == pytest.approx(np.mean(found))


def test_successive_halvings_finished_fine_tunes_show_each_trials_seed_draw() -> None:
    df = study_like()
    rng = np.random.default_rng(1)
    for s in (1, 2):  # every candidate with seeds noisier than the spread between them
        df[f"sft_cls_seed{s}"] = df["sft_cls"] + 0.3 * rng.normal(size=len(df))
    candidates, table = checked(df)
    report = simulate(candidates, "sft_cls", budget=9, initial=3, trials=8, table=table,
                      strategies=["successive_halving"])  # fmt: skip
    regrets = []
    for trial in range(8):
        seen = table.seed_draw(np.random.default_rng([trial, SEED_DRAW]))
        regrets.append(table.truth.max() - table.truth[successive_halving(seen).chosen[-1]])
    halving = report.strategies["successive_halving"]
    assert halving.mean_regret == pytest.approx(np.mean(regrets))
    assert halving.regret_std > 0  # its rungs read the first seed; its last pick, the draw


def test_active_starts_where_proxy_order_does_and_pays_only_for_the_probe() -> None:
    df = study_like()
    candidates = check_table(df, "candidate", "sft_cls", ["ppl_clm", "probe_loss_cls"],
                             ["ppl_clm", "probe_loss_cls"])  # fmt: skip
    table = replay_table(df, candidates, "sft_cls")
    report = simulate(candidates, "sft_cls", budget=8, initial=3, trials=2, table=table,
                      strategies=["proxy_order", "active"])  # fmt: skip
    order = [c.candidate for c in report.strategies["proxy_order"].first_trial_choices]
    active = report.strategies["active"].first_trial_choices
    assert [c.candidate for c in active[:3]] == order[:3]  # the probe's top three first
    assert all("next by probe_loss_cls" in c.reason for c in active[:3])
    assert all("bagged comparators" in c.reason for c in active[3:])
    # charged the probe alone, as proxy_order is: ppl_clm's cost is never paid; a budget too
    # small for the probes and a fine-tune is spent as random spends it
    both = simulate(candidates, "sft_cls", budget=8, initial=3, trials=2, table=table,
                    strategies=["proxy_order", "active", "random", "probe_order"])  # fmt: skip
    curves = {name: {p.compute_fraction: p for p in r.curve} for name, r in both.strategies.items()}
    order = curves["proxy_order"]
    start = min(f for f, p in order.items() if p.mean_regret_noise_units is not None)
    for name in ("active", "probe_order"):
        for fraction, point in curves[name].items():
            if fraction < start:
                assert point == curves["random"][fraction]
        assert curves[name][start] == order[start]  # the probe's top one
    # probe_order is proxy_order under a budget: the same picks once the probes are paid for
    assert all(curves["probe_order"][f] == p for f, p in order.items() if f >= start)


def test_active_anytime_fine_tunes_before_every_probe_is_paid_for() -> None:
    df = study_like()
    candidates, table = checked(df)
    oracle = Oracle(table.observed)
    names = candidates.proxy_names
    choices = run_strategy("active_anytime", candidates.proxies[:, [1]], oracle, budget=6,
                           initial=3, seed=4, order=0, order_name=names[1])  # fmt: skip
    assert [c.measured for c in choices] == [4, 8, 16, 27, 27, 27]  # doubling, then all
    arrival = np.random.default_rng(4).permutation(len(df))
    for i, choice in enumerate(choices[:3]):  # the best measured by the probe, each time
        known = [k for k in arrival[: choice.measured] if k not in oracle.pool()[0][:i]]
        assert choice.candidate == min(known, key=lambda k: df["probe_loss_cls"][k])
    report = simulate(candidates, "sft_cls", budget=6, initial=3, trials=1, table=table,
                      strategies=["active_anytime", "proxy_order"])  # fmt: skip
    first = {
        name: next(p.compute_fraction for p in r.curve if p.mean_regret_noise_units is not None)
        for name, r in report.strategies.items()
    }
    assert first["active_anytime"] < first["proxy_order"]  # a model before every probe is paid


def test_the_cli_writes_the_curves_for_scripts(tmp_path) -> None:
    df = study_like()
    df.to_csv(tmp_path / "results.csv", index=False)
    args = [
        "simulate", "--table", str(tmp_path / "results.csv"), "--id-column", "candidate",
        "--target", "sft_cls", "--proxies", "ppl_clm,probe_loss_cls",
        "--lower-is-better", "ppl_clm,probe_loss_cls", "--budget", "6", "--trials", "2",
        "--output", str(tmp_path / "cls.json"), "--plot", str(tmp_path / "cls.png"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cls.json").read_text())
    assert report["default_strategy"] == "probe_order"
    for result_of in report["strategies"].values():
        assert {"curve", "compute_to_within_noise_90", "top1_found_rate"} <= set(result_of)
        assert set(result_of["curve"][0]) == {
            "compute_fraction", "mean_regret_noise_units", "regret_std", "within_noise_found_rate"
        }  # fmt: skip
    assert (tmp_path / "cls.png").read_bytes()[:4] == b"\x89PNG"
    wrong = CliRunner().invoke(app, [*args, "--order-proxy", "ppl_sc"])
    assert wrong.exit_code == 2 and "--order-proxy 'ppl_sc' is not among the proxies" in (
        wrong.output
    )


def _points(*regrets: float | None, std: float = 0.0) -> list[CurvePoint]:
    return [
        CurvePoint(compute_fraction=round(0.01 * (i + 1), 6), mean_regret_noise_units=r,
                   regret_std=None if r is None else std, within_noise_found_rate=0.0)
        for i, r in enumerate(regrets)
    ]  # fmt: skip


def test_a_default_falls_short_where_a_rival_beats_it_by_more_than_a_standard_error() -> None:
    curves = {
        "active": _points(None, 2.2, 1.0, 0.5, std=1.0),  # SE over 4 trials: 0.5
        "random": _points(1.5, 1.5, 1.2),  # ends at 3%: its last point holds after
        "proxy_order": _points(None, None, 0.9, 0.9),
        "proxy_greedy": _points(0.0, 0.0, 0.0, 0.0),  # not a rival
    }
    found = shortfalls([curves], "active", trials=4)
    assert [(s.compute_fraction, s.default_regret, s.rival) for s in found] == [
        (0.01, None, "random"),  # no model yet against one
        (0.02, 2.2, "random"),  # 2.2 > 1.5 + 0.5
    ]  # 1.0 at 3% is within 0.9 + 0.5; 0.5 at 4% beats both
    assert shortfalls([{"active": _points(0.1)}], "active", trials=4) == []  # no rival replayed
    # past the default's own end nothing is judged: it was replayed no further
    longer = {"active": _points(1.0), "random": _points(1.0, 0.0, 0.0)}
    assert shortfalls([longer], "active", trials=4) == []


def test_over_several_zoos_a_loss_counts_beyond_the_paired_difference_spread() -> None:
    # at 1%: behind by 0.2 on every zoo (a loss); at 2%: behind by 1.0 on average, but ahead
    # on one zoo (SE of the paired difference 1.0: no loss); the trials' spread plays no part
    zoos = [
        {"probe_order": _points(1.2, 2.0, std=9.0), "random": _points(1.0, 0.0)},
        {"probe_order": _points(0.7, 2.0, std=9.0), "random": _points(0.5, 0.0)},
        {"probe_order": _points(0.4, 0.0, std=9.0), "random": _points(0.2, 1.0)},
    ]
    found = shortfalls(zoos, "probe_order", trials=4)
    assert [(s.compute_fraction, s.rival) for s in found] == [(0.01, "random")]
    assert found[0].default_regret == pytest.approx(0.7667, abs=1e-4)
    assert found[0].rival_regret == pytest.approx(0.5667, abs=1e-4)
    # a rival with no model yet on one zoo is not yet a rival there
    zoos[0]["random"] = _points(None, 0.0)
    assert [s.compute_fraction for s in shortfalls(zoos, "probe_order", trials=4)] == []


def test_over_several_zoos_the_default_loses_only_where_it_loses_on_the_whole() -> None:
    from benchmarks.replay import pooled

    def zoo(seed: int, probe_sign: float) -> dict:
        df = study_like(seed=seed)
        df["probe_loss_cls"] = 4 + probe_sign * (df["probe_loss_cls"] - 4)
        candidates, table = checked(df)
        # the default and its rivals only: `active`'s comparators add time and no rival
        rivals = ("probe_order", "random", "proxy_order", "successive_halving")
        return {"cls": simulate(candidates, "sft_cls", 8, 3, 10, 0, rivals, table=table)}

    def losses(text: str) -> str:
        return next(line for line in text.splitlines() if line.startswith("- cls:"))

    # the probe order right on every zoo: nothing beats it anywhere
    right = pooled({"zoo a": zoo(0, 1.0), "zoo b": zoo(1, 1.0), "zoo c": zoo(2, 1.0)})
    assert losses(right).endswith("at no budget(s)")
    assert "| **probe_order** (default) |" in right
    # the probe order backwards on every zoo: random beats it, so the pooled check says so
    wrong = pooled({"zoo a": zoo(0, -1.0), "zoo b": zoo(1, -1.0), "zoo c": zoo(2, -1.0)})
    assert "at no budget(s)" not in losses(wrong)
