"""`compare_table`: the comparator against every single proxy and their mean, each judged on
candidates it never saw, as a `CompareReport`.

Methods: each proxy column (ranking by its own, direction-corrected value), `proxy_mean` (mean
of the standardised, direction-corrected proxies), the baselines chosen on the training side
(baselines.py) and `ltc` (learning to compare). Protocols (which splits, which pairs are
scored): protocols.py and scoring.py.

A split is judged only when it has something to learn and something to score: training
candidates with two targets or more, and a held-out pair with unequal targets. The report says
how many splits and scored pairs were judged, and why the others were not; with none judged
there is no judgement, and `compare_table` raises. The report also records what it judged (the
input file and its sha256, the proxies and their directions) so that it can be re-run, and
whether the best method's lead over the runner-up is beyond one std over splits (`lead`).

With the seed noise of the target (its std over fine-tuning seeds), pairwise accuracy is also
reported on the *clear* pairs, whose targets differ by more than twice that noise: on the
others, the target's own order is close to a coin toss. So are, per method, the regret of its
predicted best held-out candidate in units of that noise (the held-out best's target minus its
pick's; mean and std over splits) and its within-noise recall (the share of splits where that
regret is at most one noise std), both as `sftcast.curves` counts them for a selection.

Under a protocol with groups, each method's pairwise accuracy also gets a 95% interval from a
bootstrap over the groups (`GROUP_DRAWS` draws, seeded): the scored pairs of every judged split
pooled, each weighed by how often its two candidates' groups were drawn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from sftcast.comparator.config import DEFAULT_JUDGEMENT, Columns, JudgementSettings
from sftcast.comparator.features import check_standardising, labelled_pairs
from sftcast.comparator.forms import ChosenComparator
from sftcast.comparator.metrics import (
    accuracy_on_pairs,
    best_in_top_k,
    group_bootstrap_interval,
    kendall_tau,
    pair_correctness,
    top1_shortfalls,
    topk_recall,
)
from sftcast.comparator.protocols import (
    Split,
    group_random_splits,
    leave_one_group_out,
    random_splits,
    resolve_protocol,
    transfer_split,
)
from sftcast.comparator.report import (
    ComparatorRecord,
    CompareReport,
    InputRecord,
    Lead,
    MethodScores,
    PairedRecord,
    ProtocolRecord,
    ProxyRecord,
)
from sftcast.comparator.scoring import ScoredPairs, predict_split, scored_pairs
from sftcast.comparator.table import (
    Candidates,
    ComparatorInputError,
    check_table,
    joined,
    read_table,
)

METRICS = (
    "pairwise_accuracy",
    "kendall_tau",
    "top1_recall",
    "topk_recall",
    "best_in_topk",
    "pairwise_accuracy_clear",  # this and the next two only with a seed noise
    "regret_noise_units",
    "within_noise_recall",
)
MEAN_SUFFIXED = (
    "pairwise_accuracy",
    "kendall_tau",
    "pairwise_accuracy_clear",
    "regret_noise_units",
)
GROUP_DRAWS = 1000  # the bootstrap over groups
# a regret this close to the noise std is within it (rounding), as in sftcast.curves
WITHIN = 1e-12
# Why a split is not judged: its training side teaches nothing, or its held-out side has no
# pair with unequal targets, on which every metric is undefined or trivially perfect.
TIED_TRAINING, TIED_HELD_OUT = "training_targets_all_equal", "held_out_targets_all_equal"
# per split: each method's metrics there
SplitScores = dict[str, dict[str, float]]


class Judged(NamedTuple):
    """One split judged: each method's metrics, the comparator's form, and (with groups, for
    the bootstrap) each method's correctness per scored pair (`pair_correctness`)."""

    metrics: SplitScores
    form: str
    correct: dict[str, np.ndarray] | None


def compare_table(
    df: pd.DataFrame, columns: Columns, settings: JudgementSettings = DEFAULT_JUDGEMENT
) -> CompareReport:
    """Validate the table, evaluate every method under the settings' protocol, and report
    means and stds over the judged splits, with the comparator's gain per proxy when trained
    on every candidate (unless `settings.final_fit` is False). `settings.jobs` processes judge
    the splits (the comparator's fits dominate at a hundred candidates). Raises
    `ComparatorInputError` when a setting or the table is unusable, or no split can be
    judged."""
    _check(settings)
    protocol = resolve_protocol(settings.protocol, settings.groups)
    candidates = _checked(df, columns, settings)
    n_held_out, train_sha256 = len(candidates.ids), None
    if protocol == "transfer":
        trained_on = read_table(settings.train_table)
        candidates = joined(candidates, _checked(trained_on, columns, settings))
        train_sha256 = trained_on.attrs["sha256"]
    plan = _plan(protocol, candidates, settings, n_held_out)
    judged, skipped = _judged_splits(candidates, plan)
    pairs = [scored_pairs(split, candidates.target, protocol == "deployment") for split in judged]
    record = _record(protocol, candidates, plan, settings, pairs, skipped, train_sha256)
    if not judged:
        raise ComparatorInputError(
            f"{candidates.source}: nothing to judge: of {len(plan)} split(s), "
            f"{skipped[TIED_TRAINING]} train on candidates that all share one target and "
            f"{skipped[TIED_HELD_OUT]} hold out candidates whose targets all tie; label more "
            "candidates with distinct targets"
        )
    everyone = np.arange(len(candidates.ids))
    # the comparator `select` would rank with: fitted on every labelled candidate
    final = plan[0] if protocol == "transfer" else Split("the final fit", everyone, everyone)
    check_standardising(candidates, [*judged, final])
    # splits are independent and seeded: the same judgement on any number of processes
    judgements = Parallel(n_jobs=settings.jobs)(
        delayed(_judge)(candidates, split, split_pairs, settings, record.clear_gap)
        for split, split_pairs in zip(judged, pairs, strict=True)
    )
    return _report(df, columns, settings, candidates, record, judgements, pairs, final.train)


def _checked(df: pd.DataFrame, columns: Columns, settings: JudgementSettings) -> Candidates:
    return check_table(
        df, columns.id_column, columns.target, columns.proxies, columns.lower_is_better,
        settings.groups,
    )  # fmt: skip


def _check(settings: JudgementSettings) -> None:
    """The settings the splits do not check themselves."""
    if settings.top_k < 1:
        raise ComparatorInputError(f"top k is {settings.top_k}; it must be at least 1")
    noise = settings.seed_noise
    if noise is not None and not (np.isfinite(noise) and noise >= 0):
        raise ComparatorInputError(f"seed noise is {noise}; it must be a finite number >= 0")
    if (settings.protocol == "transfer") != (settings.train_table is not None):
        raise ComparatorInputError(
            "protocol 'transfer' fits every method on another table: it needs a training "
            "table (--train-table), and a training table needs that protocol"
        )


def _plan(
    protocol: str, candidates: Candidates, settings: JudgementSettings, n_held_out: int
) -> list[Split]:
    """The protocol's splits (`transfer`: the first `n_held_out` candidates held out)."""
    if protocol == "transfer":
        return [transfer_split(n_held_out, len(candidates.ids) - n_held_out)]
    if protocol == "group":
        return leave_one_group_out(candidates.groups)
    if protocol == "variant":
        return group_random_splits(
            candidates.groups, settings.splits, settings.train_fraction, settings.seed
        )
    n = len(candidates.ids)
    return random_splits(n, settings.splits, settings.train_fraction, settings.seed)


def _record(
    protocol: str,
    candidates: Candidates,
    plan: list[Split],
    settings: JudgementSettings,
    pairs: list[ScoredPairs],
    skipped: dict[str, int],
    train_sha256: str | None = None,
) -> ProtocolRecord:
    """The protocol's record in the report: how the candidates were split and what was
    judged; with a seed noise, how many scored pairs are clear."""
    if protocol == "group":
        how = {
            "name": "leave_one_group_out",
            "group_column": settings.groups,
            "groups": sorted(set(candidates.groups.tolist())),
            "splits": len(plan),
        }
    elif protocol == "transfer":
        how = {
            "name": "transfer",
            "group_column": settings.groups,
            "splits": 1,
            "n_train": len(plan[0].train),
            "n_test": len(plan[0].test),
            "train_table": str(settings.train_table),
            "train_sha256": train_sha256,
        }
    elif protocol == "variant":
        how = {
            "name": "variant_splits",
            "group_column": settings.groups,
            "groups": sorted(set(candidates.groups.tolist())),
            "splits": settings.splits,
            "train_fraction": settings.train_fraction,  # of the groups
        }
    else:
        how = {
            "name": "random_splits" if protocol == "paper" else "deployment",
            "splits": settings.splits,
            "train_fraction": settings.train_fraction,
            "n_train": len(plan[0].train),
            "n_test": len(plan[0].test),
        }
    judged = {
        "seed": settings.seed,
        "top_k": settings.top_k,
        "judged_splits": len(pairs),
        "judged_pairs": sum(map(len, pairs)),
        "skipped_splits": len(plan) - len(pairs),
        "skipped": skipped,
    }
    if settings.seed_noise is not None:
        gap = 2 * settings.seed_noise
        clear = sum(int(p.clear(candidates.target, gap).sum()) for p in pairs)
        judged |= {"seed_noise": settings.seed_noise, "clear_gap": gap, "clear_pairs": clear}
    return ProtocolRecord(**how, **judged)


def _report(
    df: pd.DataFrame,
    columns: Columns,
    settings: JudgementSettings,
    candidates: Candidates,
    record: ProtocolRecord,
    judgements: list[Judged],
    pairs: list[ScoredPairs],
    labelled: np.ndarray,
) -> CompareReport:
    """The judged splits summed up, with the comparator fitted on the `labelled` candidates
    (every one, or under `transfer` the training table's)."""
    scores = [judged.metrics for judged in judgements]
    intervals = group_intervals(candidates, pairs, judgements, settings.seed)
    methods = {
        method: _summary([s[method] for s in scores], intervals.get(method)) for method in scores[0]
    }
    ranking = method_ranking(methods)
    comparator = settings.comparator
    fitted = (
        ChosenComparator(comparator, settings.seed).fit(
            candidates.proxies[labelled], candidates.target[labelled]
        )
        if settings.final_fit
        else None
    )
    return CompareReport(
        input=InputRecord(
            path=candidates.source, sha256=df.attrs.get("sha256"), id_column=columns.id_column
        ),
        target=columns.target,
        proxies={
            p: ProxyRecord(lower_is_better=p in columns.lower_is_better) for p in columns.proxies
        },
        n_candidates=len(candidates.ids),
        n_pairs=len(labelled_pairs(candidates.target)[0]) // 2,
        protocol=record,
        comparator=ComparatorRecord(
            **comparator.model_dump(),
            forms_per_split=dict(Counter(judged.form for judged in judgements).most_common()),
            final_form=None if fitted is None else fitted.form_,
            final_inner_accuracy=None if fitted is None else fitted.inner_accuracy_,
        ),
        methods=methods,
        ranking=ranking,
        lead=lead(scores, ranking),
        paired=paired_against_ltc(scores),
        split_accuracy={method: split_accuracy(scores, method) for method in scores[0]},
        feature_importance=None
        if fitted is None
        else dict(zip(candidates.proxy_names, map(float, fitted.proxy_importance()), strict=True)),
    )


def _held_out_pairs(candidates: Candidates, split: Split) -> int:
    """Unordered held-out pairs with unequal targets: the pairs a split is judged on."""
    return len(labelled_pairs(candidates.target[split.test])[0]) // 2


def _judged_splits(candidates: Candidates, plan: list[Split]) -> tuple[list[Split], dict[str, int]]:
    """The splits that can be judged, and how many were skipped for each reason (small
    labelled pools with ties hit both). The same under deployment, whose held-out x training
    pairs differ more often: its ranking metrics need held-out candidates that differ too."""
    skipped = {TIED_TRAINING: 0, TIED_HELD_OUT: 0}
    judged = []
    for split in plan:
        if np.unique(candidates.target[split.train]).size < 2:
            skipped[TIED_TRAINING] += 1
        elif not _held_out_pairs(candidates, split):
            skipped[TIED_HELD_OUT] += 1
        else:
            judged.append(split)
    return judged, skipped


def method_ranking(methods: dict[str, MethodScores]) -> list[str]:
    """Method names, best first: by mean pairwise accuracy, then Kendall tau, then name."""

    def key(name: str) -> tuple[float, float, str]:
        m = methods[name]
        accuracy, tau = m.pairwise_accuracy_mean, m.kendall_tau_mean
        return (-(accuracy if accuracy is not None else -np.inf),
                -(tau if tau is not None else -np.inf), name)  # fmt: skip

    return sorted(methods, key=key)


def evaluate_split(
    candidates: Candidates, split: Split, settings: JudgementSettings = DEFAULT_JUDGEMENT
) -> tuple[SplitScores, str]:
    """Every method's metrics on the split's scored pairs (held-out x training ones under the
    deployment protocol) and held-out candidates, fitting only on its train side, and the form
    the comparator chose there."""
    pairs = scored_pairs(split, candidates.target, settings.protocol == "deployment")
    gap = None if settings.seed_noise is None else 2 * settings.seed_noise
    metrics, form, _ = _judge(candidates, split, pairs, settings, gap)
    return metrics, form


def _judge(
    candidates: Candidates,
    split: Split,
    pairs: ScoredPairs,
    settings: JudgementSettings,
    clear_gap: float | None,
) -> Judged:
    train_y = candidates.target[split.train]
    if np.all(train_y == train_y[0]):
        raise ComparatorInputError(f"{split.name}: every training candidate has the same target")
    predictions, ltc = predict_split(candidates, split, pairs, settings.seed, settings.comparator)
    shown_y = candidates.target[pairs.shown]
    held_out_y = shown_y[: pairs.n_held_out]
    first_better = shown_y[pairs.first] > shown_y[pairs.second]
    clear = None if clear_gap is None else pairs.clear(candidates.target, clear_gap)
    k = settings.top_k
    metrics = {}
    correct = {}
    for name, (preference, ranking) in predictions.items():
        p = preference[pairs.first, pairs.second]
        if candidates.groups is not None:
            correct[name] = pair_correctness(p, first_better)
        metrics[name] = {
            "pairwise_accuracy": accuracy_on_pairs(p, first_better),
            "kendall_tau": kendall_tau(ranking, held_out_y),
            "top1_recall": topk_recall(ranking, held_out_y, 1),
            "topk_recall": topk_recall(ranking, held_out_y, k),
            "best_in_topk": best_in_top_k(ranking, held_out_y, k),
        }
        if clear is not None:
            metrics[name]["pairwise_accuracy_clear"] = accuracy_on_pairs(
                p[clear], first_better[clear]
            )
        if settings.seed_noise is not None:
            metrics[name] |= regret_in_noise(ranking, held_out_y, settings.seed_noise)
    return Judged(metrics, ltc.form_, correct if candidates.groups is not None else None)


def regret_in_noise(ranking: np.ndarray, target: np.ndarray, noise: float) -> dict[str, float]:
    """The held-out best target minus that of the predicted top 1 (ties broken at random), in
    units of the seed noise (NaN for a noise of 0), and whether it is within one noise std
    (the chance of it, with ties): `sftcast.curves`' regret and within-noise, for one pick."""
    shortfalls = top1_shortfalls(ranking, target)
    return {
        "regret_noise_units": float(shortfalls.mean() / noise) if noise > 0 else np.nan,
        "within_noise_recall": float(np.mean(shortfalls <= noise + WITHIN)),
    }


def group_intervals(
    candidates: Candidates, pairs: list[ScoredPairs], judgements: list[Judged], seed: int
) -> dict[str, tuple[float, float]]:
    """Per method, the 95% interval on its pairwise accuracy over every judged split's scored
    pairs, bootstrapped over the groups (`group_bootstrap_interval`); empty without groups."""
    if candidates.groups is None:
        return {}
    names, codes = np.unique(candidates.groups, return_inverse=True)
    first = np.concatenate([codes[p.shown[p.first]] for p in pairs])
    second = np.concatenate([codes[p.shown[p.second]] for p in pairs])
    methods = list(judgements[0].metrics)
    correct = np.array(
        [np.concatenate([judged.correct[m] for judged in judgements]) for m in methods]
    )
    low, high = group_bootstrap_interval(correct, (first, second), len(names), GROUP_DRAWS, seed)
    return {m: (float(lo), float(hi)) for m, lo, hi in zip(methods, low, high, strict=True)}


def split_accuracy(per_split: list[SplitScores], method: str) -> list[float | None]:
    """`method`'s pairwise accuracy on each judged split, None where it is undefined."""
    values = (s[method]["pairwise_accuracy"] for s in per_split)
    return [None if np.isnan(v) else float(v) for v in values]


def _summary(
    per_split: list[dict[str, float]], interval: tuple[float, float] | None = None
) -> MethodScores:
    """Mean and std over the splits where a metric is defined, None where it never is; with
    an interval from the bootstrap over groups, its bounds (None where no draw had a pair)."""
    out: dict[str, float | None] = {}
    for metric in (m for m in METRICS if m in per_split[0]):
        values = np.array([s[metric] for s in per_split])
        values = values[~np.isnan(values)]
        mean = float(values.mean()) if len(values) else None
        std = float(values.std()) if len(values) else None
        out[f"{metric}_mean" if metric in MEAN_SUFFIXED else metric] = mean
        out[f"{metric}_std"] = std
    if interval is not None:
        low, high = (None if np.isnan(bound) else bound for bound in interval)
        out |= {"pairwise_accuracy_ci_low": low, "pairwise_accuracy_ci_high": high}
    return MethodScores(**out)


def paired_against_ltc(per_split: list[SplitScores]) -> dict[str, PairedRecord]:
    """`ltc` against every other method on the same splits (paired: both judged on the same
    pairs), so that "better" means better split by split, not only on average."""
    ltc = split_accuracy(per_split, "ltc")
    return {
        method: paired_record(ltc, split_accuracy(per_split, method))
        for method in per_split[0]
        if method != "ltc"
    }


def paired_record(ltc: Sequence[float | None], other: Sequence[float | None]) -> PairedRecord:
    """`ltc`'s pairwise accuracy against another method's on the same judged splits (each a
    list in the splits' order, None where undefined): two reports on one table with the same
    settings judge the same splits on the same pairs, so their methods pair up too."""
    if len(ltc) != len(other):
        raise ValueError(f"{len(ltc)} splits against {len(other)}: not the same splits")
    differences = np.array(ltc, dtype=float) - np.array(other, dtype=float)
    differences = differences[~np.isnan(differences)]
    mean = float(differences.mean()) if len(differences) else None
    std = float(differences.std()) if len(differences) else None
    return PairedRecord(
        difference_mean=mean,
        difference_std=std,
        ltc_wins=int((differences > 0).sum()),
        ltc_losses=int((differences < 0).sum()),
        splits=len(differences),
        ltc_better=bool(len(differences) > 1 and mean is not None and mean > (std or 0.0)),
    )


def lead(per_split: list[SplitScores], ranking: list[str]) -> Lead:
    """How far the best method leads the runner-up in pairwise accuracy: the mean and std over
    the judged splits of their per-split difference (paired: both judged on the same pairs),
    and whether the lead is within one std (or rests on a single split)."""
    best, runner_up = ranking[:2]
    differences = np.array(
        [s[best]["pairwise_accuracy"] - s[runner_up]["pairwise_accuracy"] for s in per_split]
    )
    differences = differences[~np.isnan(differences)]
    difference, std = float(differences.mean()), float(differences.std())
    return Lead(
        best=best,
        runner_up=runner_up,
        difference=difference,
        std=std,
        splits=len(differences),
        within_uncertainty=bool(len(differences) == 1 or abs(difference) <= std),
    )
