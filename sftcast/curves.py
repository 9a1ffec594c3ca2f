"""Compute, not counts: what a selection strategy spends on the way to a near-best model.

`simulate` replays strategies on a results table. Here each replay becomes a path of (compute
spent, model chosen) and the paths become curves:

- **Compute** is in units of one full fine-tune of the task: a candidate's fine-tune costs its
  `seconds_sft_<task>` over the median of that column (1 each when the table has no costs);
  measuring every proxy of a candidate, or the task's probe, costs its median seconds in the
  same unit; a fine-tune stopped at a fraction of its steps costs that fraction. Budgets are
  fractions of "fine-tune every candidate".
- **The chosen model** after each fine-tune is the best *observed* one (one seed's score: what
  the user would see); it is judged by the **truth**, the seed mean where the table has extra
  seeds (`<target>_seed<s>` columns). Which seed a fine-tune shows is a random part of a trial
  and is redrawn in every trial (`ReplayTable.seed_draw`), the same draw for every strategy,
  successive halving's finished fine-tunes included. Its rungs read the validation losses of
  the table's first seed, the only one whose fidelities the study records, so its survivors
  are the same in every trial; only its last pick has a seed's spread. Regret is the best truth
  minus the chosen one's, in units of **seed noise** (one seed's std, pooled over the
  replicated candidates); "within noise" means a regret of at most one noise std.
- **Successive halving** (Optuna's and Ray Tune's pruners; Hyperband's inner loop) needs the
  table's fidelities, `val_loss_<task>_at<fraction>`: every candidate's fine-tune starts, the
  best `1/eta` by validation loss continue at each rung, the last rung finishes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from sftcast.comparator import Candidates, ComparatorInputError
from sftcast.comparator.noise import pooled_seed_std
from sftcast.evaluation.evaluate import PRIMARY_METRIC
from sftcast.proxies.registry import PROBE_READOUTS

GRID_STEP = 0.01  # curves are read every 1% of "fine-tune every candidate"
FOUND = 0.9  # compute_to_within_noise_90: the least compute with this within-noise rate


@dataclass(frozen=True)
class ReplayTable:
    """What a replay needs besides the proxies: scores seen and true, and what things cost."""

    observed: np.ndarray  # the score a fine-tune shows (the target column, one seed)
    truth: np.ndarray  # the seed mean where the table has extra seeds, else the score
    noise: float  # one seed's std of the score, pooled over replicated candidates; NaN if none
    finetune_cost: np.ndarray  # per candidate, in full fine-tunes (median 1)
    proxy_cost: float  # every proxy but the probes, of one candidate, in full fine-tunes
    probe_costs: dict[str, float]  # task -> its probe of one candidate, in full fine-tunes
    fidelities: tuple[float, ...] = ()  # fractions of the steps with a validation loss
    fidelity_loss: np.ndarray | None = None  # [candidates, fidelities], lower is better
    seeds: np.ndarray | None = None  # [candidates, seeds]: every seed's score, NaN if not run

    @property
    def total(self) -> float:
        """Fine-tuning every candidate: the unit of a budget."""
        return float(self.finetune_cost.sum())

    def measuring(self, proxies: Sequence[str]) -> float:
        """What measuring `proxies` on every candidate costs: the pre-training proxies and
        few-shot scores once if any is used, each task's probe once if any of its read-outs
        is."""
        tasks = {probe_task(p) for p in proxies}
        per_candidate = (self.proxy_cost if None in tasks else 0.0) + sum(
            self.probe_costs.get(t, 0.0) for t in tasks if t is not None
        )
        return per_candidate * len(self.truth)

    def seed_draw(self, rng: np.random.Generator) -> ReplayTable:
        """The table as one trial sees it: each candidate's fine-tune shows one of its seeds'
        scores, drawn uniformly (the first seed's where the table has no others)."""
        if self.seeds is None:
            return self
        have = ~np.isnan(self.seeds)
        # the k-th run seed of a candidate with n of them, k uniform in [0, n)
        k = np.floor(rng.random(len(have)) * have.sum(axis=1)).astype(int)
        column = np.argmax(np.cumsum(have, axis=1) > k[:, None], axis=1)
        return replace(self, observed=self.seeds[np.arange(len(have)), column])


def probe_task(proxy: str) -> str | None:
    """The task whose probe `proxy` reads out, None for any other proxy."""
    return next(
        (
            task
            for task in PRIMARY_METRIC
            for template in PROBE_READOUTS
            if template.format(task=task) == proxy
        ),
        None,
    )


def plain_replay(candidates: Candidates) -> ReplayTable:
    """A table with nothing but scores: every fine-tune costs 1, proxies nothing, no noise."""
    n = len(candidates.ids)
    return ReplayTable(candidates.target, candidates.target, math.nan, np.ones(n), 0.0, {})


def replay_table(df: pd.DataFrame, candidates: Candidates, target: str) -> ReplayTable:
    """The replay's inputs from a results table checked into `candidates` (same rows, same
    order). The task is the target's name without `sft_`; costs, seeds and fidelities are read
    where the table has them."""
    df = df.reset_index(drop=True)
    task = target.removeprefix("sft_")
    seeds = [c for c in df.columns if c.startswith(f"{target}_seed")]
    scores = np.column_stack(
        [candidates.target, *(_numbers(df, c, candidates, missing=True) for c in seeds)]
    )
    truth = np.nanmean(scores, axis=1)
    noise = pooled_seed_std(scores)
    sft = f"seconds_sft_{task}"
    if sft in df.columns:
        seconds = _numbers(df, sft, candidates)
        if np.any(seconds <= 0):
            raise ComparatorInputError(f"{candidates.source}: column {sft!r}: costs must be > 0")
        unit = float(np.median(seconds))
        cost = seconds / unit
        proxy_cost = _median_cost(df, ["seconds_proxies", "seconds_base"], candidates) / unit
        probe_costs = {
            t: _median_cost(df, [f"seconds_probe_{t}"], candidates) / unit for t in PRIMARY_METRIC
        }
    else:
        cost, proxy_cost, probe_costs = np.ones(len(truth)), 0.0, {}
    fidelity_columns = sorted(
        (float(c.rsplit("_at", 1)[1]), c) for c in df.columns if c.startswith(f"val_loss_{task}_at")
    )
    losses = (
        np.column_stack([_numbers(df, c, candidates) for _, c in fidelity_columns])
        if fidelity_columns
        else None
    )
    return ReplayTable(
        observed=candidates.target, truth=truth, noise=noise, finetune_cost=cost,
        proxy_cost=proxy_cost, probe_costs=probe_costs,
        fidelities=tuple(f for f, _ in fidelity_columns), fidelity_loss=losses,
        seeds=scores if seeds else None,
    )  # fmt: skip


def _numbers(
    df: pd.DataFrame, column: str, candidates: Candidates, missing: bool = False
) -> np.ndarray:
    """A column as floats; an empty cell is NaN where `missing` allows it, else an error
    naming the row, as every other bad cell is."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(np.isnan(values) & (df[column].notna().to_numpy() | (not missing)))
    if len(bad):
        raise ComparatorInputError(
            f"{candidates.where(int(bad[0]))}, column {column!r}: {df[column].iloc[bad[0]]!r} "
            "is not a number"
        )
    return values


def _median_cost(df: pd.DataFrame, columns: Sequence[str], candidates: Candidates) -> float:
    present = [c for c in columns if c in df.columns]
    if not present:
        return 0.0
    return float(np.median(sum(_numbers(df, c, candidates) for c in present)))


@dataclass(frozen=True)
class ReplayPath:
    """One replay: after spending `compute[i]` (in full fine-tunes) the chosen candidate is
    `chosen[i]`, the best observed among those fine-tuned to the end so far."""

    compute: list[float]
    chosen: list[int]


def finetune_path(
    order: Sequence[int], table: ReplayTable, upfront: float | Sequence[float]
) -> ReplayPath:
    """Fine-tuning `order` one after the other, after `upfront` compute (proxies, probes): once,
    or, per fine-tune, what was spent measuring before it."""
    spent = np.asarray(upfront, dtype=float) + np.cumsum(table.finetune_cost[list(order)])
    observed = table.observed[list(order)]
    best = [order[int(np.argmax(observed[: i + 1]))] for i in range(len(order))]
    return ReplayPath(spent.tolist(), best)


def budgeted(fallback: ReplayPath, path: ReplayPath) -> ReplayPath:
    """A strategy that measures before its first fine-tune, run under a compute budget: a
    budget too small for that measuring and one fine-tune is spent as `fallback` spends it
    (nothing is measured), a larger one as `path` does. A curve read off the result gives, at
    each budget, what a run given that budget would hold."""
    first = path.compute[0]
    early = [i for i, spent in enumerate(fallback.compute) if spent < first]
    return ReplayPath(
        [fallback.compute[i] for i in early] + path.compute,
        [fallback.chosen[i] for i in early] + path.chosen,
    )


def successive_halving(table: ReplayTable, eta: float = 3.0) -> ReplayPath:
    """Every candidate starts; at each fidelity but the last the best `1/eta` by validation
    loss go on; the last rung's fine-tunes finish one after another, best-looking first."""
    if table.fidelity_loss is None or not table.fidelities or table.fidelities[-1] != 1.0:
        raise ComparatorInputError(
            "successive_halving needs the fine-tunes' validation loss part way and at the end "
            "(val_loss_<task>_at<fraction> columns, the last at 1): the study records them with "
            "sft.fidelities"
        )
    alive = np.arange(len(table.truth))
    spent, before = 0.0, 0.0
    for rung, fraction in enumerate(table.fidelities[:-1]):
        spent += float(table.finetune_cost[alive].sum()) * (fraction - before)
        before = fraction
        keep = max(1, math.ceil(len(alive) / eta))
        # stable: equal losses keep their table order
        alive = alive[np.argsort(table.fidelity_loss[alive, rung], kind="stable")[:keep]]
    remaining = table.finetune_cost[alive] * (1.0 - before)
    compute = (spent + np.cumsum(remaining)).tolist()
    observed = table.observed[alive]
    chosen = [int(alive[np.argmax(observed[: i + 1])]) for i in range(len(alive))]
    return ReplayPath(compute, chosen)


class CurvePoint(BaseModel):
    """A strategy at one budget, over its trials."""

    model_config = ConfigDict(frozen=True)

    compute_fraction: float
    mean_regret_noise_units: float | None  # None: no trial has a fine-tuned model yet
    regret_std: float | None
    within_noise_found_rate: float


def curve(paths: Sequence[ReplayPath], table: ReplayTable) -> list[CurvePoint]:
    """Regret (in noise units) and within-noise found rate every GRID_STEP of compute, up to
    the last compute any trial spent."""
    total = table.total
    end = max(p.compute[-1] for p in paths) / total
    noise = table.noise if table.noise > 0 else math.nan
    best = table.truth.max()
    points = []
    for step in range(1, math.ceil(round(end / GRID_STEP, 9)) + 1):
        fraction = round(step * GRID_STEP, 6)
        regrets = []
        for path in paths:
            done = np.searchsorted(path.compute, fraction * total + 1e-9, side="right")
            regrets.append(best - table.truth[path.chosen[done - 1]] if done else math.nan)
        regret = np.array(regrets) / noise
        have = regret[~np.isnan(regret)]
        # without replicated seeds "within noise" can only mean the true best itself
        tolerance = table.noise if table.noise > 0 else 0.0
        within = np.array([r <= tolerance + 1e-12 for r in regrets])  # NaN: no model, False
        points.append(
            CurvePoint(
                compute_fraction=fraction,
                mean_regret_noise_units=float(have.mean()) if len(have) else None,
                regret_std=float(have.std()) if len(have) else None,
                within_noise_found_rate=float(within.mean()),
            )
        )
    return points


def compute_to_within_noise(points: Sequence[CurvePoint], rate: float = FOUND) -> float | None:
    """The least compute fraction whose within-noise found rate reaches `rate` (None: never)."""
    return next((p.compute_fraction for p in points if p.within_noise_found_rate >= rate), None)


# the obvious rivals a default strategy must not lose to (issue #32)
RIVALS = ("random", "proxy_order", "successive_halving")


class Shortfall(BaseModel):
    """A budget where the default strategy does worse than the best rival there."""

    model_config = ConfigDict(frozen=True)

    compute_fraction: float
    default_regret: float | None  # mean regret in noise units; None: no model yet
    rival: str
    rival_regret: float


def shortfalls(
    zoos: Sequence[Mapping[str, Sequence[CurvePoint]]], default: str, trials: int
) -> list[Shortfall]:
    """The budgets, every GRID_STEP up to the default's last on every zoo (what it was
    replayed to; past it, the default would have gone on fine-tuning), where the default's
    mean regret, averaged over the zoos (each alike), exceeds the best of the `RIVALS`' by
    more than one standard error: on one zoo, the default's (its std over trials /
    sqrt(trials)); on several, the paired difference's over the zoos (a loss on one zoo of a
    few dozen candidates can be that zoo's luck). A rival's curve past its end keeps its last
    point (the rival has finished); a default with no model yet loses to a rival with one."""
    rivals = [r for r in RIVALS if r != default and all(r in curves for curves in zoos)]
    end = min(curves[default][-1].compute_fraction for curves in zoos)
    found = []
    for step in range(1, math.ceil(round(end / GRID_STEP, 9)) + 1):
        fraction = round(step * GRID_STEP, 6)
        held = {
            r: regrets for r in rivals if (regrets := regrets_at(zoos, r, fraction)) is not None
        }
        if not held:
            continue
        rival = min(held, key=lambda r: held[r].mean())
        mine = regrets_at(zoos, default, fraction)
        if mine is None:
            se = 0.0
        elif len(zoos) == 1:
            se = (point_at(zoos[0][default], fraction).regret_std or 0.0) / math.sqrt(trials)
        else:
            se = float((mine - held[rival]).std(ddof=1) / math.sqrt(len(zoos)))
        if mine is None or mine.mean() > held[rival].mean() + se + 1e-12:
            found.append(Shortfall(
                compute_fraction=fraction, rival=rival, rival_regret=float(held[rival].mean()),
                default_regret=None if mine is None else float(mine.mean()),
            ))  # fmt: skip
    return found


def regrets_at(
    zoos: Sequence[Mapping[str, Sequence[CurvePoint]]], name: str, fraction: float
) -> np.ndarray | None:
    """`name`'s mean regret at `fraction` on each zoo; None where some zoo has no model yet."""
    points = [point_at(curves[name], fraction) for curves in zoos]
    regrets = [None if p is None else p.mean_regret_noise_units for p in points]
    return None if any(r is None for r in regrets) else np.array(regrets, dtype=float)


def point_at(points: Sequence[CurvePoint], fraction: float) -> CurvePoint | None:
    """The curve's point at `fraction`: the last one at or before it."""
    before = [p for p in points if p.compute_fraction <= fraction + 1e-9]
    return before[-1] if before else None
