"""Which candidate to fine-tune next: selection strategies that learn one post-SFT score per
fine-tune, and `simulate`, which replays them on a table whose every score is already known.

A strategy sees a score only through `Oracle.reveal`, the stand-in for one SFT run, so a replay
on a results table is honest: nothing a strategy decides can depend on a score it has not paid
for. Strategies (each returns its choices in order; the order does not depend on the budget, so
one replay to the largest budget gives every smaller budget's outcome as a prefix):

- `random`: fine-tune candidates in a random order.
- `proxy_order`: fine-tune candidates in one proxy's order (no labels, no learning): the
  task's probe loss unless another proxy is named.
- `proxy_greedy`: fine-tune `initial` candidates spread over the proxies, find the single proxy
  that orders them best, then fine-tune the others in that proxy's order.
- `active`: the top `initial` candidates of `proxy_order`'s order, then round after round fit
  a bagged comparator on the labelled pool and fine-tune the unlabelled candidate it ranks
  highest: the one with the highest predicted standing, its mean probability of beating the
  other unlabelled candidates, averaged over comparators fitted on bootstrap resamples of the
  pool (so that a comparator that learnt from few pairs is not trusted alone). It reads only
  the read-outs of the measurement `proxy_order` reads (the task's probe: its loss and its
  drop), so it is charged what `proxy_order` is: on the study's table the pre-training proxies
  and few-shot scores cost more per candidate than a cbqa fine-tune, and a strategy that
  needs them cannot reach a near-best model on less than the compute of fine-tuning them all.
  Why the top of the order and not a spread over the proxies: spreading spent the first picks
  on candidates the probe already ranked low, and a static probe order beat `active` at small
  budgets (issue #32). Each comparator picks its form by inner
  cross-validation on its resample, as `ltc` does, among the forms that learn from a handful of
  pairs (`ACTIVE_FORMS`). Why the standing and not the probability of beating the best
  labelled candidate: once the labelled best is beaten by many, that probability is 1 for all
  of them (a single proxy's preferences are 0 or 1) and says nothing about which of them is the
  best; on the study's 108 candidates it found the true best in 0.20 to 0.60 of trials, the
  standing in 0.90 to 1.00 (docs/experiments.md).
- `active_anytime`: `active` measuring as it goes, for tables where measuring every candidate
  costs as much as several fine-tunes: `FIRST_MEASURED` candidates' proxies (a random order)
  before its first fine-tune, twice as many before each next one, each round's pick the best
  of the measured ones by `active`'s rule; charged for what it has measured so far.
- `successive_halving` (`sftcast.curves`): every fine-tune starts, the best third by validation
  loss continue at each fidelity of the table, the last ones finish; a table without the
  fine-tunes' fidelities cannot replay it.
- `probe_order`, the default: `proxy_order`'s order under a compute budget. A budget too small
  to measure every candidate's probe and fine-tune one is spent as `random` spends it (measuring
  would leave no model); a larger one measures the probes and fine-tunes in their order. Why
  no learning: on the seeded study's first 45 candidates, re-ranking by comparators fitted on
  the fine-tuned ones (`active`) did no better than the probe's own order on any task and
  worse on rag and cls at 20 to 30% of the compute (docs/experiments.md). `active` is run
  under a budget the same way.

Each replay is also charged what it spends (`sftcast.curves`): its curves give regret in units
of seed noise and the within-noise found rate against compute, a fraction of fine-tuning every
candidate.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from pydantic import BaseModel, ConfigDict
from sklearn.cluster import kmeans_plusplus
from sklearn.preprocessing import StandardScaler

from sftcast.comparator import Candidates, ComparatorInputError
from sftcast.comparator.forms import ChosenComparator, ProxyComparator
from sftcast.comparator.model import mean_win_probability
from sftcast.curves import (
    CurvePoint,
    ReplayPath,
    ReplayTable,
    Shortfall,
    budgeted,
    compute_to_within_noise,
    curve,
    finetune_path,
    plain_replay,
    probe_task,
    shortfalls,
    successive_halving,
)
from sftcast.evaluation.report import SFTRecord
from sftcast.files import replacing
from sftcast.proxies.registry import lower_is_better
from sftcast.selection import TARGET, ActiveLabelling, oriented
from sftcast.selection.report import ProxyRow, selection_table

STRATEGIES = (
    "random", "proxy_order", "proxy_greedy", "successive_halving", "active", "active_anytime",
    "probe_order",
)  # fmt: skip
# choose whole fine-tunes
COUNTED = ("random", "proxy_order", "proxy_greedy", "active", "active_anytime", "probe_order")
# measure every candidate's probe before their first fine-tune; under a compute budget too
# small for that and one fine-tune they spend it as `random` does (`sftcast.curves.budgeted`)
BUDGETED = ("active", "probe_order")
# active_anytime measures this many candidates before its first fine-tune, twice as many before
# each next one, so that a model is in hand before the probes of every candidate are paid for
FIRST_MEASURED = 4
# a trial's seed draw is keyed by (trial seed, SEED_DRAW), apart from every strategy's own draws
SEED_DRAW = 1
# what `select` runs by default (`selection.labelled.strategy`): the report names it
DEFAULT_STRATEGY = "probe_order"
# An active round's pool is a few labelled candidates: boosted trees cannot split on so few
# pairs (the raw XGBoost comparator called nearly every pair a tie and `active` lost to
# `random`), while one proxy or a linear model learns from three; docs/experiments.md.
ACTIVE_FORMS = ("best_proxy", "linear")
# the single proxy stands unless the linear model clearly beats it on the inner folds
ACTIVE_DEFAULT = "best_proxy"


@dataclass(frozen=True)
class Choice:
    """One fine-tune: which candidate (an index) and why it was chosen."""

    candidate: int
    reason: str
    measured: int | None = None  # candidates whose proxies were known (None: every one)


class Oracle:
    """The post-SFT scores, handed out one fine-tune at a time."""

    def __init__(self, target: np.ndarray) -> None:
        self._target = np.asarray(target, dtype=float)
        self.revealed: dict[int, float] = {}

    def reveal(self, candidate: int) -> float:
        self.revealed[candidate] = float(self._target[candidate])
        return self.revealed[candidate]

    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        """The labelled candidates (indices, in the order they were fine-tuned) and scores."""
        return np.array(list(self.revealed), dtype=int), np.array(list(self.revealed.values()))


def spread_initial(proxies: np.ndarray, k: int, seed: int) -> list[int]:
    """`k` candidates spread over the standardised proxies: k-means++ seeding picks each next
    one with probability growing with its squared distance to those already picked."""
    z = StandardScaler().fit_transform(proxies)
    distinct = len(np.unique(z, axis=0))
    _, picked = kmeans_plusplus(z, n_clusters=min(k, distinct), random_state=seed)
    chosen = list(dict.fromkeys(picked.tolist()))
    if len(chosen) < k:  # fewer distinct proxy vectors than k: fill in at random
        rest = np.random.default_rng(seed).permutation(np.setdiff1d(np.arange(len(z)), chosen))
        chosen += rest[: k - len(chosen)].tolist()
    return chosen


def same_measurement(names: Sequence[str], order: int) -> list[int]:
    """The proxy columns measured with column `order`: the read-outs of the same task's probe,
    or every proxy that is no probe's (the pre-training proxies and few-shot scores are
    measured together)."""
    task = probe_task(names[order])
    return [j for j, name in enumerate(names) if probe_task(name) == task]


def run_strategy(
    name: str,
    proxies: np.ndarray,
    oracle: Oracle,
    budget: int,
    initial: int,
    seed: int = 0,
    bootstraps: int = 5,
    order: int = 0,
    order_name: str | None = None,
) -> list[Choice]:
    """Fine-tune `budget` candidates by strategy `name`, revealing each one's score in turn;
    `proxy_order` and `active`'s first picks follow proxy column `order` (higher first);
    `active` reads `proxies` as given (`same_measurement` chooses them in a replay)."""
    if name == "random":
        picked = np.random.default_rng(seed).permutation(len(proxies))[:budget]
        choices = [Choice(int(i), "random order") for i in picked]
    elif name in ("proxy_order", "probe_order"):
        ranked = np.argsort(-proxies[:, order], kind="stable")[:budget]
        choices = [Choice(int(i), f"next by {order_name or f'proxy {order}'}") for i in ranked]
    elif name == "proxy_greedy":
        spread = "initial: spread over the proxies (k-means++ seeding)"
        choices = [Choice(i, spread) for i in spread_initial(proxies, min(initial, budget), seed)]
    else:
        choices = []  # `active` takes its initial candidates round by round
    for choice in choices:
        oracle.reveal(choice.candidate)
    if name == "proxy_greedy":
        choices += _by_best_proxy(proxies, oracle, budget - len(choices))
    elif name in ("active", "active_anytime"):
        arrival = np.random.default_rng(seed).permutation(len(proxies))  # which is measured when
        while len(choices) < budget:
            # active knows every candidate's proxies; active_anytime, twice as many each round
            known = (
                arrival[: FIRST_MEASURED * 2 ** len(choices)] if name == "active_anytime" else None
            )
            choice = active_choice(
                proxies, *oracle.pool(), initial, bootstraps, seed, order,
                order_name or f"proxy {order}", measured=known,
            )  # fmt: skip
            oracle.reveal(choice.candidate)
            choices.append(
                choice if known is None else Choice(choice.candidate, choice.reason, len(known))
            )
    elif name not in ("random", "proxy_order", "probe_order"):
        raise ComparatorInputError(f"unknown strategy {name!r}; known: {', '.join(COUNTED)}")
    return choices


def _by_best_proxy(proxies: np.ndarray, oracle: Oracle, n: int) -> list[Choice]:
    labelled, scores = oracle.pool()
    ranker = ProxyComparator().fit(proxies[labelled], scores)
    best = ranker.proxy_
    order = [int(i) for i in np.argsort(-proxies[:, best], kind="stable") if i not in labelled]
    why = (
        f"next by proxy {best} (pairwise accuracy {ranker.accuracy_[best]:.2f} on the initial pool)"
    )
    choices = [Choice(i, why) for i in order[:n]]
    for choice in choices:
        oracle.reveal(choice.candidate)
    return choices


def highest_predicted_standing(
    proxies: np.ndarray,
    labelled: np.ndarray,
    scores: np.ndarray,
    rng: np.random.Generator,
    bootstraps: int = 5,
    measured: np.ndarray | None = None,
) -> Choice:
    """The unlabelled candidate that comparators fitted on bootstrap resamples of the labelled
    pool (the whole pool when no resample has two distinct scores) rank highest: the highest
    mean probability of beating the other unlabelled candidates. Its probability of beating
    the best labelled one goes into the reason. Only the `measured` candidates (default:
    every one) are ranked."""
    among = np.arange(len(proxies)) if measured is None else np.asarray(measured)
    unlabelled = np.setdiff1d(among, labelled)
    best = labelled[np.argmax(scores)]
    rows = np.concatenate([[best], unlabelled])
    resamples = [rng.integers(0, len(labelled), len(labelled)) for _ in range(bootstraps)]
    usable = [s for s in resamples if np.unique(scores[s]).size > 1]
    if not usable and np.unique(scores).size > 1:
        usable = [np.arange(len(labelled))]
    if not usable:  # every labelled score is equal: nothing to learn from yet
        z = StandardScaler().fit(proxies[among]).transform(proxies[unlabelled]).mean(axis=1)
        pick = int(np.argmax(z))
        return Choice(int(unlabelled[pick]), "labelled scores all tie: highest proxy mean")
    preference = np.mean(
        [
            ChosenComparator(seed=k, forms=ACTIVE_FORMS, default=ACTIVE_DEFAULT)
            .fit(proxies[labelled[s]], scores[s])
            .preference(proxies[rows])
            for k, s in enumerate(usable)
        ],
        axis=0,
    )
    standing = mean_win_probability(preference[1:, 1:])
    pick = int(np.argmax(standing))
    return Choice(
        int(unlabelled[pick]),
        f"ranked first: standing {standing[pick]:.2f} among the unlabelled, "
        f"P(beats the best labelled) = {preference[1 + pick, 0]:.2f}, "
        f"over {len(usable)} bagged comparators",
    )


def next_candidate(
    task: str,
    proxy_rows: Sequence[ProxyRow],
    records: Sequence[SFTRecord],
    labelling: ActiveLabelling,
    seed: int = 0,
) -> Choice:
    """The next candidate to fine-tune on `task` in `select`'s active strategy, given every
    candidate's proxies and the SFT `records` so far: the top `initial` candidates by the
    task's probe loss first, then the one that comparators fitted on the fine-tuned ones rank
    highest, reading the probe's read-outs as a replay does; with `probe_order`, the next in
    the probe loss's order throughout. `Choice.candidate` indexes `proxy_rows`."""
    table, proxies = selection_table(proxy_rows, records, task)
    order = default_order(proxies, task)
    columns = same_measurement(proxies, order)
    read = [proxies[j] for j in columns]
    x = oriented(table, read, lower_is_better(read))
    labelled = np.flatnonzero(table[TARGET].notna().to_numpy())
    scores = table[TARGET].to_numpy(dtype=float)[labelled]
    if labelling.strategy == "probe_order":  # active's first picks, all the way
        pick = next_by(x[:, columns.index(order)], labelled)
        return Choice(pick, f"{len(labelled) + 1} of {labelling.budget}: next by {proxies[order]}")
    return active_choice(
        x, labelled, scores, labelling.initial, labelling.bootstraps, seed,
        columns.index(order), proxies[order],
    )  # fmt: skip


def active_choice(
    proxies: np.ndarray,
    labelled: np.ndarray,
    scores: np.ndarray,
    initial: int,
    bootstraps: int,
    seed: int,
    order: int = 0,
    order_name: str = "proxy 0",
    measured: np.ndarray | None = None,
) -> Choice:
    """One round of the `active` strategy: while fewer than `initial` are labelled, the next
    in proxy column `order`'s order (higher first; `order_name` names it in the reason); then
    the one the bagged comparators rank highest."""
    known = np.arange(len(proxies)) if measured is None else np.asarray(measured)
    if not len(np.setdiff1d(known, labelled)):  # every measured one is fine-tuned
        known = np.arange(len(proxies))
    if len(labelled) < initial:
        pick = next_by(proxies[:, order], labelled, known)
        return Choice(pick, f"initial {len(labelled) + 1} of {initial}: next by {order_name}")
    rng = np.random.default_rng([seed, len(labelled)])  # a round's own draws: resumable
    return highest_predicted_standing(proxies, labelled, scores, rng, bootstraps, known)


def next_by(column: np.ndarray, labelled: np.ndarray, among: np.ndarray | None = None) -> int:
    """The candidate of `among` (default: all) that `column` puts highest, not yet labelled;
    ties go to the earlier one, as in a stable sort."""
    among = np.arange(len(column)) if among is None else among
    ranked = among[np.argsort(-column[among], kind="stable")]
    return int(next(i for i in ranked if i not in labelled))


class FirstChoice(BaseModel):
    """One fine-tune of the first trial: the candidate's id and why it was chosen."""

    model_config = ConfigDict(frozen=True)

    candidate: str
    reason: str


class BudgetCurve(BaseModel):
    """A strategy's outcome at every budget from 1 up, over the trials."""

    model_config = ConfigDict(frozen=True)

    budget: list[int]
    top1_found_rate: list[float]
    mean_regret: list[float]


class StrategyResult(BaseModel):
    """A strategy's replays: the share of trials whose fine-tuned set holds a true best
    candidate, the regret (true best score minus the best fine-tuned one) at the full budget
    and at every budget, the first trial's choices with their reasons, and what it spent:
    regret in noise units and within-noise found rate against compute (`sftcast.curves`)."""

    model_config = ConfigDict(frozen=True)

    top1_found_rate: float
    mean_regret: float
    regret_std: float
    by_budget: BudgetCurve
    first_trial_choices: list[FirstChoice]
    curve: list[CurvePoint]
    compute_to_within_noise_90: float | None


class CeilingPoint(BaseModel):
    """Every candidate fine-tuned, over the trials' seed draws."""

    model_config = ConfigDict(frozen=True)

    mean_regret_noise_units: float | None  # None: the table has no seed noise
    within_noise_found_rate: float


class SimulationReport(BaseModel):
    """`simulate`'s report; `to_dict()` is the JSON `simulate --output` writes."""

    model_config = ConfigDict(frozen=True)

    target: str
    n_candidates: int
    budget: int
    initial: int
    trials: int
    seed: int
    source: str
    seed_noise: float | None  # one seed's std of the target: the unit of regret in curves
    truth: str  # what regret is measured against
    order_proxy: str  # proxy_order's proxy
    default_strategy: str
    strategies: dict[str, StrategyResult]
    skipped: dict[str, str] = {}  # strategy -> why this table cannot replay it
    # budgets where the default did worse than the best of random, proxy_order and successive
    # halving by more than one standard error (`sftcast.curves.shortfalls`)
    default_shortfalls: list[Shortfall] = []
    # fine-tuning every candidate and keeping the best one seen, over the same seed draws: no
    # strategy that keeps the best one seen does better, whatever it spends
    fine_tune_all: CeilingPoint | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def simulate(
    candidates: Candidates,
    target_name: str,
    budget: int,
    initial: int = 3,
    trials: int = 20,
    seed: int = 0,
    strategies: Sequence[str] | None = None,
    bootstraps: int = 5,
    table: ReplayTable | None = None,
    order_proxy: str | None = None,
) -> SimulationReport:
    """Replay each strategy `trials` times (seeds `seed`, `seed + 1`, ...): the counted ones
    up to `budget` fine-tunes, successive halving over the table's fidelities; per strategy,
    the outcome at the full budget, at every smaller one, and against compute. `table` holds
    the truth, noise and costs (`sftcast.curves.replay_table`); without it every fine-tune
    costs 1 and the score is the truth. By default every strategy the table can replay."""
    n = len(candidates.ids)
    if not 1 <= initial <= budget <= n:
        raise ComparatorInputError(
            f"{candidates.source}: need 1 <= initial ({initial}) <= budget ({budget}) <= "
            f"candidates ({n})"
        )
    if trials < 1:
        raise ComparatorInputError(f"{candidates.source}: trials is {trials}; it must be >= 1")
    table = table or plain_replay(candidates)
    order = _order_proxy(candidates, target_name, order_proxy)
    skipped = {}
    if strategies is None:
        strategies = list(STRATEGIES)
        if table.fidelity_loss is None:
            strategies.remove("successive_halving")
            skipped["successive_halving"] = "the table has no val_loss_<task>_at<fraction> columns"
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ComparatorInputError(f"unknown strategy {unknown}; known: {', '.join(STRATEGIES)}")
    settings = _Settings(budget, initial, trials, seed, bootstraps, order)
    replayed = {name: _replay(name, candidates, table, settings) for name in strategies}
    curves = {name: result.curve for name, result in replayed.items()}
    return SimulationReport(
        target=target_name, n_candidates=n, budget=budget, initial=initial, trials=trials,
        seed=seed, source=candidates.source,
        seed_noise=None if math.isnan(table.noise) else table.noise,
        truth="seed mean" if not np.array_equal(table.truth, table.observed) else "the score",
        order_proxy=candidates.proxy_names[order], default_strategy=DEFAULT_STRATEGY,
        strategies=replayed, skipped=skipped,
        default_shortfalls=shortfalls([curves], DEFAULT_STRATEGY, trials)
        if DEFAULT_STRATEGY in curves else [],
        fine_tune_all=_fine_tune_all(table, settings),
    )  # fmt: skip


@dataclass(frozen=True)
class _Settings:
    budget: int
    initial: int
    trials: int
    seed: int
    bootstraps: int
    order: int  # proxy_order's column


def _fine_tune_all(table: ReplayTable, settings: _Settings) -> CeilingPoint:
    """What fine-tuning every candidate holds in each trial: the best one its seeds show."""
    paths = []
    for trial in range(settings.trials):
        seen = _seen(table, settings, trial)
        paths.append(finetune_path(range(len(seen.truth)), seen, 0.0))
    end = curve(paths, table)[-1]
    return CeilingPoint(
        mean_regret_noise_units=end.mean_regret_noise_units if table.noise > 0 else None,
        within_noise_found_rate=end.within_noise_found_rate,
    )


def _order_proxy(candidates: Candidates, target: str, name: str | None) -> int:
    """proxy_order's proxy column: the one named, else the task's probe loss, else the first."""
    names = candidates.proxy_names
    if name is not None:
        if name not in names:
            raise ComparatorInputError(
                f"{candidates.source}: --order-proxy {name!r} is not among the proxies "
                f"({', '.join(names)})"
            )
        return names.index(name)
    return default_order(names, target.removeprefix("sft_"))


def default_order(names: Sequence[str], task: str) -> int:
    """The column a task's candidates are first ordered by: its probe loss, else perplexity
    (the usual indicator), else the first."""
    names = list(names)
    found = [n for n in (f"probe_loss_{task}", "ppl_clm") if n in names]
    return names.index(found[0]) if found else 0


def _replay(
    name: str, candidates: Candidates, table: ReplayTable, settings: _Settings
) -> StrategyResult:
    """One strategy replayed `settings.trials` times."""
    paths, kept, choices_of_first = [], [], None  # kept: the model held after each fine-tune
    names = candidates.proxy_names
    for trial in range(settings.trials):
        seen = _seen(table, settings, trial)
        if name == "successive_halving":  # its finished fine-tunes show the trial's seeds
            paths.append(successive_halving(seen))
            kept.append(paths[-1].chosen)
            continue
        proxies, order, uses = candidates.proxies, settings.order, names
        if name.startswith("active"):
            columns = same_measurement(names, settings.order)
            proxies, order = proxies[:, columns], columns.index(settings.order)
            uses = [names[j] for j in columns]
        choices = run_strategy(
            name, proxies, Oracle(seen.observed), settings.budget, settings.initial,
            settings.seed + trial, settings.bootstraps, order, names[settings.order],
        )  # fmt: skip
        if name in ("random", "proxy_order", "probe_order"):
            uses = [] if name == "random" else [names[settings.order]]
        measuring = table.measuring(uses)
        if name == "active_anytime":  # paid as the candidates are measured
            measuring = [measuring * c.measured / len(table.truth) for c in choices]
        path = finetune_path([c.candidate for c in choices], seen, measuring)
        kept.append(path.chosen)
        if name in BUDGETED:  # a budget that cannot pay for the probes is spent as random's
            path = budgeted(_random_path(candidates, seen, settings, trial), path)
        paths.append(path)
        choices_of_first = choices_of_first or [
            FirstChoice(candidate=str(candidates.ids[c.candidate]), reason=c.reason)
            for c in choices
        ]
    if choices_of_first is None:  # successive halving: what its first trial finished
        choices_of_first = [
            FirstChoice(candidate=str(candidates.ids[c]), reason="finished the last rung")
            for c in dict.fromkeys(paths[0].chosen)
        ]
    truth = table.truth
    regret = np.array([truth.max() - truth[chosen] for chosen in kept])
    found = regret == 0
    points = curve(paths, table)
    return StrategyResult(
        top1_found_rate=float(found[:, -1].mean()),
        mean_regret=float(regret[:, -1].mean()),
        regret_std=float(regret[:, -1].std()),
        by_budget=BudgetCurve(
            budget=list(range(1, regret.shape[1] + 1)),
            top1_found_rate=found.mean(axis=0).round(6).tolist(),
            mean_regret=regret.mean(axis=0).round(6).tolist(),
        ),
        first_trial_choices=choices_of_first,
        curve=points,
        compute_to_within_noise_90=compute_to_within_noise(points),
    )


def _seen(table: ReplayTable, settings: _Settings, trial: int) -> ReplayTable:
    """The seeds the fine-tunes show in `trial`: the same draw for every strategy."""
    return table.seed_draw(np.random.default_rng([settings.seed + trial, SEED_DRAW]))


def _random_path(
    candidates: Candidates, seen: ReplayTable, settings: _Settings, trial: int
) -> ReplayPath:
    """`random`'s replay in this trial: the same draws as the `random` strategy's."""
    choices = run_strategy(
        "random", candidates.proxies, Oracle(seen.observed), settings.budget, settings.initial,
        settings.seed + trial,
    )  # fmt: skip
    return finetune_path([c.candidate for c in choices], seen, 0.0)


def simulate_title(report: SimulationReport) -> str:
    noise = f"{report.seed_noise:.4f}" if report.seed_noise is not None else "unknown"
    skipped = "".join(f"; {name} skipped: {why}" for name, why in report.skipped.items())
    lost = report.default_shortfalls
    verdict = (
        f"; the default ({report.default_strategy}) does worse than the best rival at "
        f"{len(lost)} budget(s), first at {lost[0].compute_fraction:.0%} "
        f"({lost[0].rival})"
        if lost
        else ""
    )
    ceiling = (
        f"; fine-tuning every candidate finds one within noise in "
        f"{report.fine_tune_all.within_noise_found_rate:.0%} of trials"
        if report.fine_tune_all and report.seed_noise is not None
        else ""
    )
    return (
        f"{report.target}: {report.n_candidates} candidates, budget {report.budget} "
        f"({report.initial} initial), {report.trials} trials; truth: {report.truth}, seed "
        f"noise {noise}; proxy_order follows {report.order_proxy}{skipped}{ceiling}{verdict}"
    )


def simulate_rows(report: SimulationReport) -> list[list[str]]:
    """The header and one row per strategy, as text."""
    rows = [
        ["strategy", "top-1 found rate", "mean regret", "regret std", "compute spent",
         "within-noise rate", "compute to within-noise 0.9"]
    ]  # fmt: skip
    for name, result in report.strategies.items():
        end = result.curve[-1]
        reach = result.compute_to_within_noise_90
        rows.append(
            [name, f"{result.top1_found_rate:.2f}", f"{result.mean_regret:.4f}",
             f"{result.regret_std:.4f}", f"{end.compute_fraction:.0%}",
             f"{end.within_noise_found_rate:.2f}", "never" if reach is None else f"{reach:.0%}"]
        )  # fmt: skip
    return rows


def plot_format(path: Path) -> str:
    """The image format `path` asks for by its extension, PNG without one; checked before any
    work by drawing a small figure with text in that format, since matplotlib lists formats it
    cannot write on every machine (pgf needs a TeX system). `ComparatorInputError` names the
    path and the formats otherwise."""
    formats = sorted(Figure().canvas.get_supported_filetypes())
    fmt = path.suffix.lower().removeprefix(".") or "png"
    if fmt not in formats:
        raise ComparatorInputError(
            f"{path}: {path.suffix!r} is not an image format matplotlib writes; end the name "
            f"in one of {', '.join('.' + f for f in formats)} (none: PNG)"
        )
    probe = Figure(figsize=(1, 1))
    probe.text(0.5, 0.5, "x")
    try:
        probe.savefig(io.BytesIO(), format=fmt)
    except (RuntimeError, OSError, ValueError, KeyError) as err:  # what the backend lacks
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ComparatorInputError(f"{path}: cannot write a {fmt} plot here: {reason}") from err
    return fmt


def save_found_rate(report: SimulationReport, path: Path, fmt: str) -> None:
    """`plot_curves` written to exactly `path` in `fmt` (matplotlib would append the
    format's extension to a name without one), whole or not at all."""
    with replacing(path) as tmp:
        plot_curves(report).savefig(tmp, dpi=120, format=fmt)


def plot_curves(report: SimulationReport) -> Figure:
    """Mean regret (in seed noise, with its spread over trials) and within-noise found rate
    against compute, one line per strategy."""
    figure = Figure(figsize=(10, 4), layout="tight")
    regret_ax, found_ax = figure.subplots(1, 2)
    unit = "seed noise" if report.seed_noise is not None else "score"
    for name, result in report.strategies.items():
        points = [p for p in result.curve if p.mean_regret_noise_units is not None]
        x = np.array([p.compute_fraction for p in points])
        mean = np.array([p.mean_regret_noise_units for p in points], dtype=float)
        std = np.array([p.regret_std for p in points], dtype=float)
        (line,) = regret_ax.plot(x, mean, label=name)
        regret_ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        found_ax.plot(
            [p.compute_fraction for p in result.curve],
            [p.within_noise_found_rate for p in result.curve],
            color=line.get_color(),
            label=name,
        )
    for ax in (regret_ax, found_ax):
        ax.set_xlabel("compute, a fraction of fine-tuning every candidate")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    regret_ax.set_ylabel(f"regret of the chosen model ({unit}), mean ± std")
    found_ax.set_ylabel(f"within-noise found rate over {report.trials} trials")
    found_ax.axhline(0.9, color="grey", linewidth=0.8, linestyle=":")
    found_ax.set_ylim(-0.02, 1.02)
    found_ax.legend(loc="lower right")
    figure.suptitle(f"{report.target}: {report.n_candidates} candidates, truth {report.truth}")
    return figure
