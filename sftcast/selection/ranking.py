"""Judge every predictor on held-out candidates, rank all candidates with the best one (or the
one the config names), and say whether it beats chance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.preprocessing import StandardScaler

from sftcast.comparator import ComparatorInputError, compare_table, direction_signs
from sftcast.comparator.baselines import (
    BASELINES,
    KNOWN_SCORES,
    baseline_scores,
    training_ranks,
)
from sftcast.comparator.config import DEFAULT_SETTINGS, Columns, ComparatorSettings
from sftcast.comparator.forms import ChosenComparator
from sftcast.comparator.model import strength
from sftcast.comparator.report import Lead, MethodScores
from sftcast.selection.config import SelectionConfig

CHANCE = 0.5
ID, TARGET = "candidate", "score"


class Selection(BaseModel):
    task: str
    predictor: str  # the method that ranked the candidates
    beats_chance: bool
    methods: dict[str, MethodScores]  # compare_table's per-method scores
    ranking: list[str]  # every candidate, best predicted first
    predicted: dict[str, float]  # each candidate's predicted strength (higher is better)
    actual: dict[str, float]  # post-SFT score of the labelled candidates
    feature_importance: dict[str, float]
    protocol: dict[str, Any]  # compare_table's record of it, or why nothing was judged
    lead: Lead | None = None  # the best method's lead over the runner-up, with its std

    @property
    def best(self) -> str:
        return self.ranking[0]


def oriented(table: pd.DataFrame, proxies: Sequence[str], lower: Sequence[str]) -> np.ndarray:
    """The proxies as a matrix, lower-is-better ones negated: higher is better everywhere."""
    return table[list(proxies)].to_numpy(dtype=float) * direction_signs(proxies, lower)


def fit_comparator(
    table: pd.DataFrame,
    proxies: Sequence[str],
    lower: Sequence[str],
    seed: int,
    settings: ComparatorSettings = DEFAULT_SETTINGS,
) -> ChosenComparator:
    """The comparator trained on every labelled row of `table` (its form chosen on them when
    `settings.form` is `auto`)."""
    labelled = table[table[TARGET].notna()]
    return ChosenComparator(settings, seed).fit(
        oriented(labelled, proxies, lower), labelled[TARGET].to_numpy(dtype=float)
    )


def predict_strength(
    table: pd.DataFrame,
    proxies: Sequence[str],
    lower: Sequence[str],
    predictor: str,
    seed: int,
    settings: ComparatorSettings = DEFAULT_SETTINGS,
) -> np.ndarray:
    """Each candidate's predicted strength under `predictor`, fitted on the labelled rows."""
    x = oriented(table, proxies, lower)
    if predictor == "ltc":
        return strength(fit_comparator(table, proxies, lower, seed, settings).preference(x))
    labelled = table[TARGET].notna().to_numpy()
    if predictor in BASELINES:
        y = table.loc[labelled, TARGET].to_numpy(dtype=float)
        scores = baseline_scores(predictor, x[labelled], y, x, seed=seed)
        if predictor == KNOWN_SCORES:  # as judged under deployment: the labelled as known
            scores[labelled] = training_ranks(y)
        return scores
    # standardised on the labelled rows, as compare_table's proxy_mean is on its training side
    z = StandardScaler().fit(x[labelled]).transform(x)
    if predictor == "proxy_mean":
        return z.mean(axis=1)
    return z[:, list(proxies).index(predictor)]


def select(
    task: str,
    table: pd.DataFrame,
    proxies: Sequence[str],
    lower_is_better: Sequence[str],
    config: SelectionConfig,
) -> Selection:
    """`table`: one row per candidate (`candidate`, the proxies, `score` NaN when unlabelled)."""
    # what compare_table judges and can rank with
    methods = ["ltc", "proxy_mean", *BASELINES, *proxies]
    if config.predictor not in ("auto", *methods):
        raise ValueError(
            f"{task}: selection.predictor {config.predictor!r} was not computed for these "
            f"candidates; the predictors are {sorted(methods)}"
        )
    labelled = table[table[TARGET].notna()]
    columns = Columns(
        id_column=ID, target=TARGET, proxies=list(proxies), lower_is_better=list(lower_is_better)
    )
    try:
        report = compare_table(labelled, columns, config.judgement)
    except ComparatorInputError as err:
        return _unjudged(task, table, proxies, lower_is_better, config, str(err))
    scored = {m: v.pairwise_accuracy_mean for m, v in report.methods.items()}
    if config.predictor == "auto":
        predictor = max(scored, key=lambda m: -1.0 if scored[m] is None else scored[m])
    else:
        predictor = config.predictor
    strength = predict_strength(
        table, proxies, lower_is_better, predictor, config.seed, config.comparator
    )
    return _ranked(
        task, table, predictor, strength, beats_chance=(scored[predictor] or 0.0) > CHANCE,
        methods=report.methods, feature_importance=report.feature_importance,
        protocol=report.protocol.to_dict(), lead=report.lead,
    )  # fmt: skip


def _ranked(
    task: str, table: pd.DataFrame, predictor: str, strength: np.ndarray, **judged: Any
) -> Selection:
    """Every candidate of `table` ordered by `strength` (ties keep the table's order)."""
    ids = table[ID].tolist()
    labelled = table[table[TARGET].notna()]
    return Selection(
        task=task,
        predictor=predictor,
        ranking=[ids[i] for i in np.argsort(-strength, kind="stable")],
        predicted={ids[i]: float(strength[i]) for i in range(len(ids))},
        actual=dict(zip(labelled[ID], labelled[TARGET].astype(float), strict=True)),
        **judged,
    )


def _unjudged(
    task: str,
    table: pd.DataFrame,
    proxies: Sequence[str],
    lower_is_better: Sequence[str],
    config: SelectionConfig,
    why: str,
) -> Selection:
    """No predictor could be judged (e.g. every labelled candidate scored the same): nothing
    beats chance. A proxy the config names still ranks every candidate; otherwise the labelled
    candidates come first by their actual score. Only `force` promotes either."""
    unjudged: dict[str, Any] = {
        "beats_chance": False, "methods": {}, "feature_importance": {},
        "protocol": {"unjudged": why},
    }  # fmt: skip
    if config.predictor not in ("auto", "ltc"):  # the comparator cannot be fitted on ties
        strength = predict_strength(table, proxies, lower_is_better, config.predictor, config.seed)
        return _ranked(task, table, config.predictor, strength, **unjudged)
    # the labelled by their actual score, then the unlabelled (one below the lowest score)
    actual = table[TARGET].to_numpy(dtype=float)
    floor = np.nanmin(actual) - 1 if np.isfinite(actual).any() else 0.0
    return _ranked(task, table, "none", np.nan_to_num(actual, nan=floor), **unjudged)
