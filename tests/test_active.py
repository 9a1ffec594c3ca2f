"""Active selection and its replay: strategies see a score only once they pay for it, and
`active` finds the best candidate with fewer fine-tunes than `random`."""

from __future__ import annotations

import numpy as np
import pytest

from sftcast.active import (
    COUNTED,
    DEFAULT_STRATEGY,
    Oracle,
    SimulationReport,
    active_choice,
    next_candidate,
    plot_curves,
    run_strategy,
    simulate,
    spread_initial,
)
from sftcast.comparator import Candidates, ComparatorInputError
from sftcast.evaluation.report import SFTRecord
from sftcast.selection import ActiveLabelling
from sftcast.selection.report import ProxyRow


def synthetic(n: int = 40, seed: int = 0) -> Candidates:
    """A target that is a known function of two of four proxies (the others are noise)."""
    rng = np.random.default_rng(seed)
    proxies = rng.normal(size=(n, 4))
    target = proxies[:, 0] + 0.5 * proxies[:, 1] + 0.05 * rng.normal(size=n)
    return Candidates(
        ids=np.array([f"m{i}" for i in range(n)]), target=target, proxies=proxies,
        proxy_names=("a", "b", "noise1", "noise2"), groups=None, source="synthetic",
    )  # fmt: skip


def fine_tunes_to_find_best(report: SimulationReport, strategy: str) -> float:
    """Mean over trials of the budget at which the true best was first fine-tuned (budget + 1
    when never): read off the per-budget found rates."""
    rates = np.array(report.strategies[strategy].by_budget.top1_found_rate)
    return float(1 + np.sum(1 - rates))  # E[first budget] = 1 + sum_b P(not found by b)


def test_active_finds_the_best_with_fewer_fine_tunes_than_random() -> None:
    candidates = synthetic()
    report = simulate(candidates, "score", budget=16, initial=4, trials=6, seed=0)
    active = fine_tunes_to_find_best(report, "active")
    random = fine_tunes_to_find_best(report, "random")
    assert active < random, (active, random)
    assert report.strategies["active"].top1_found_rate == 1.0
    assert report.strategies["active"].mean_regret <= report.strategies["random"].mean_regret


def test_the_default_finds_the_best_of_50_within_15_fine_tunes_where_random_mostly_fails() -> None:
    candidates = synthetic(n=50, seed=1)
    report = simulate(candidates, "score", budget=15, initial=3, trials=10, seed=0,
                      strategies=[DEFAULT_STRATEGY, "random"])  # fmt: skip
    assert report.strategies[DEFAULT_STRATEGY].top1_found_rate >= 0.9
    assert report.strategies["random"].top1_found_rate <= 0.5


def test_a_round_takes_the_highest_ranked_of_the_many_that_beat_the_labelled_best() -> None:
    # One proxy orders the target exactly and the labelled pool is the 3 worst, so every
    # unlabelled candidate surely beats its best (the single proxy's preferences are 0 or 1).
    # The round must take the top-ranked one, not the first in table order of the many tied at
    # "surely beats" (which the probability of beating the best alone took).
    order = np.random.default_rng(0).permutation(30)
    proxies, target = order[:, None].astype(float), order.astype(float)
    labelled = np.flatnonzero(order < 3)
    for seed in range(3):
        choice = active_choice(proxies, labelled, target[labelled], 3, 5, seed)
        assert choice.candidate == int(np.argmax(target)), choice
        assert "P(beats the best labelled) = 1.00" in choice.reason


@pytest.mark.parametrize("strategy", COUNTED)
def test_a_strategy_never_sees_an_unrevealed_score(strategy: str) -> None:
    candidates = synthetic(30, seed=1)
    oracle = Oracle(candidates.target)
    honest = run_strategy(strategy, candidates.proxies, oracle, budget=10, initial=3, seed=2)
    picked = [c.candidate for c in honest]
    poisoned = np.full_like(candidates.target, 1e6)  # would be the best everywhere if seen
    poisoned[picked] = candidates.target[picked]
    replay = run_strategy(
        strategy, candidates.proxies, Oracle(poisoned), budget=10, initial=3, seed=2
    )
    assert [c.candidate for c in replay] == picked
    assert len(set(picked)) == len(picked) == 10
    assert set(oracle.revealed) == set(picked)


def test_initial_candidates_are_spread_over_the_proxies() -> None:
    # two tight clusters far apart: a spread of two takes one from each
    proxies = np.vstack([np.zeros((10, 2)), np.full((10, 2), 100.0)])
    proxies += np.random.default_rng(0).normal(scale=0.01, size=proxies.shape)
    for seed in range(5):
        first, second = spread_initial(proxies, 2, seed)
        assert (first < 10) != (second < 10)
    # fewer distinct proxy vectors than asked for: still k distinct candidates
    assert len(set(spread_initial(np.zeros((6, 2)), 4, 0))) == 4


@pytest.mark.parametrize(
    ("budget", "initial", "trials", "needle"),
    [(0, 1, 1, "budget (0)"), (50, 3, 1, "<= candidates (40)"), (5, 6, 1, "initial (6)"),
     (5, 2, 0, "trials is 0")],
)  # fmt: skip
def test_impossible_budgets_are_refused(budget: int, initial: int, trials: int, needle: str):
    with pytest.raises(ComparatorInputError, match=None) as err:
        simulate(synthetic(), "score", budget=budget, initial=initial, trials=trials)
    assert needle in str(err.value)


def test_report_shape_and_determinism() -> None:
    candidates = synthetic(20, seed=3)
    a = simulate(candidates, "score", budget=6, initial=3, trials=2, seed=5)
    b = simulate(candidates, "score", budget=6, initial=3, trials=2, seed=5)
    assert a == b
    a = a.to_dict()
    assert set(a) >= {"target", "n_candidates", "budget", "initial", "trials", "strategies"}
    for result in a["strategies"].values():
        assert set(result) >= {"top1_found_rate", "mean_regret", "regret_std"}
        assert len(result["by_budget"]["top1_found_rate"]) == 6
        assert len(result["first_trial_choices"]) == 6


def test_the_plot_draws_regret_and_found_rate_against_compute_per_strategy(tmp_path) -> None:
    report = simulate(synthetic(20, seed=4), "score", budget=7, initial=3, trials=2, seed=0)
    # no fidelities in a table of scores: successive halving cannot be replayed, and says so
    assert list(report.strategies) == list(COUNTED)
    assert "val_loss_<task>_at<fraction>" in report.skipped["successive_halving"]
    figure = plot_curves(report)
    regret_ax, found_ax = figure.axes[:2]
    assert len(regret_ax.get_lines()) == len(COUNTED)
    assert [line.get_label() for line in found_ax.get_lines()[: len(COUNTED)]] == list(COUNTED)
    for line, name in zip(found_ax.get_lines(), COUNTED, strict=False):
        curve = report.strategies[name].curve
        assert list(line.get_ydata()) == [p.within_noise_found_rate for p in curve]
        # every fine-tune costs 1 of 20: 7 fine-tunes end at 35% of fine-tuning them all
        assert curve[-1].compute_fraction == pytest.approx(0.35)
    figure.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_select_fine_tunes_in_the_probe_loss_order_by_default() -> None:
    loss = [3.0, 1.0, 2.0, 0.5, 4.0]
    rows = [
        ProxyRow(candidate=f"c{i}", values={"probe_loss_cls": v, "ppl_clm": 10 - v},
                 seconds={}, base_scores={})
        for i, v in enumerate(loss)
    ]  # fmt: skip
    labelling = ActiveLabelling(strategy="probe_order", budget=4)
    records: list[SFTRecord] = []
    for round_ in range(4):
        choice = next_candidate("cls", rows, records, labelling)
        assert choice.reason == f"{round_ + 1} of 4: next by probe_loss_cls"
        # the scores say nothing here: the order is the probe's whatever they are
        records.append(SFTRecord(task="cls", candidate=f"c{choice.candidate}", seed=0,
                                 score=float(choice.candidate), base_score=0.0, mrc=0.0,
                                 metrics={}, sft_key=str(round_)))  # fmt: skip
    assert [r.candidate for r in records] == ["c3", "c1", "c2", "c0"]
