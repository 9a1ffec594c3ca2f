"""From proxies and a labelled pool to one candidate: judge every predictor on held-out
candidates, rank all candidates with the best one (or the one the config names), and say
whether it beats chance.

The predictors are those of `sftcast.comparator.compare_table`: the comparator (`ltc`), each
single proxy and `proxy_mean`. The one with the best mean pairwise accuracy on held-out
candidates ranks every candidate, labelled or not; promotion is only honest when it beats a
coin (pairwise accuracy > 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sklearn.preprocessing import StandardScaler

from sftcast.comparator import ComparatorInputError, compare_table, direction_signs
from sftcast.comparator.forms import ChosenComparator
from sftcast.comparator.model import DEFAULT_SETTINGS, ComparatorSettings, strength
from sftcast.evaluation.evaluate import EvaluationConfig
from sftcast.proxies.registry import directions

CHANCE = 0.5
ID, TARGET = "candidate", "score"


class ActiveLabelling(BaseModel):
    """`selection.labelled: {strategy: active, budget: N, initial: K}`: per task, fine-tune K
    candidates spread over the proxies, then one at a time the candidate that comparators
    fitted on the fine-tuned ones rank highest, until N are (`sftcast.active`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    strategy: Literal["active"]
    budget: int = Field(ge=4)  # the comparator's floor: it is judged on the labelled pool
    initial: int = Field(3, ge=2)
    bootstraps: int = Field(5, ge=1)  # comparators averaged for the probability to beat the best

    @model_validator(mode="after")
    def _initial_within_budget(self) -> ActiveLabelling:
        if self.initial > self.budget:
            raise ValueError(f"initial ({self.initial}) exceeds the budget ({self.budget})")
        return self


class SelectionConfig(BaseModel):
    """`parameters.selection`: which candidates are fine-tuned, how predictors are judged."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # "all", a fraction of the candidates (seeded sample), a list of candidate URIs, or
    # {strategy: active, budget: N, initial: K}: chosen round by round as scores come in
    labelled: Literal["all"] | float | list[str] | ActiveLabelling = 0.5
    seed: int = 0
    # deployment: each held-out labelled candidate against the ones the comparator was trained
    # on, as `select` uses it (many more judged pairs than paper's pairs inside the held-out side)
    protocol: Literal["paper", "deployment"] = "deployment"
    splits: int = Field(20, ge=1)
    train_fraction: float = Field(0.6, gt=0, lt=1)
    top_k: int = Field(3, ge=1)
    force: bool = False  # promote even when no predictor beats chance
    # "auto": the predictor with the best held-out pairwise accuracy ranks the candidates; or
    # one named method ("ltc", "proxy_mean", a proxy) ranks them whatever its score, for a
    # team that trusts it. Either way it is judged, and promotion needs it to beat chance.
    predictor: str = "auto"
    # The labelled candidates' fine-tuned models are scored on their task in the training
    # format only: prompt formats and forgetting (MRC) are the `sft` pipeline's study, and
    # skipping them saves about a sixth of `select`. True scores them as `sft` does.
    study_metrics: bool = False
    # A study results table (sftcast.study): after its own table, `select` prints that table
    # judged live, the evidence at scale beside the smoke run. None: not printed.
    evidence: Path | None = None
    comparator: ComparatorSettings = Field(default_factory=ComparatorSettings)

    @field_validator("predictor")
    @classmethod
    def _known_predictor(cls, value: str) -> str:
        known = ["auto", "ltc", "proxy_mean", *directions()]
        if value not in known:
            raise ValueError(f"unknown predictor {value!r}; expected one of {known}")
        return value

    @field_validator("labelled", mode="before")
    @classmethod
    def _one_of(cls, value: Any) -> Any:
        """One clear error instead of one per member of the union."""
        if isinstance(value, dict):  # the strategy's own errors, not the union's
            try:
                return ActiveLabelling.model_validate(value)
            except ValidationError as err:
                raise ValueError(
                    "; ".join(
                        ".".join(map(str, e["loc"]))
                        + (": " if e["loc"] else "")
                        + e["msg"].removeprefix("Value error, ")
                        for e in err.errors()
                    )
                ) from None
        if isinstance(value, ActiveLabelling):
            return value
        if isinstance(value, bool) or not (
            value == "all" or isinstance(value, int | float | list | tuple)
        ):
            raise ValueError(
                "expected 'all', a fraction in (0, 1], a list of candidate URIs or "
                "{strategy: active, budget: N, initial: K}"
            )
        return value

    @field_validator("labelled")
    @classmethod
    def _fraction(cls, value: Any) -> Any:
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"labelled fraction must be in (0, 1], got {value}")
        return value

    @property
    def active(self) -> ActiveLabelling | None:
        return self.labelled if isinstance(self.labelled, ActiveLabelling) else None

    def labelled_candidates(self, candidates: Sequence[str]) -> list[str]:
        """The candidates to fine-tune before any score is known, in the order given; at least
        4 (the comparator's floor). None (an empty list) for the active strategy, which picks
        them round by round: its budget must fit the candidates."""
        if self.active is not None:
            if self.active.budget > len(candidates):
                raise ValueError(
                    f"budget {self.active.budget} exceeds the {len(candidates)} candidates"
                )
            return []
        if self.labelled == "all":
            chosen = list(candidates)
        elif isinstance(self.labelled, list):
            unknown = [c for c in self.labelled if c not in candidates]
            if unknown:
                raise ValueError(f"selection.labelled names unknown candidates {unknown}")
            chosen = [c for c in candidates if c in self.labelled]
        else:
            n = max(4, round(self.labelled * len(candidates)))
            picked = np.random.default_rng(self.seed).permutation(len(candidates))[:n]
            chosen = [candidates[i] for i in sorted(picked)]
        if len(chosen) < 4:
            raise ValueError(
                f"{len(chosen)} labelled candidates; the comparator needs at least 4 "
                f"(of {len(candidates)} candidates)"
            )
        return chosen

    def finetuned_evaluation(self, evaluation: EvaluationConfig) -> EvaluationConfig:
        """How `select` scores the fine-tuned models it makes (see `study_metrics`)."""
        if self.study_metrics:
            return evaluation
        return evaluation.model_copy(update={"formats": ["train"], "forgetting": False})


class Selection(BaseModel):
    task: str
    predictor: str  # the method that ranked the candidates
    beats_chance: bool
    methods: dict[str, dict[str, Any]]  # compare_table's per-method scores
    ranking: list[str]  # every candidate, best predicted first
    predicted: dict[str, float]  # each candidate's predicted strength (higher is better)
    actual: dict[str, float]  # post-SFT score of the labelled candidates
    feature_importance: dict[str, float]
    protocol: dict[str, Any]
    lead: dict[str, Any] | None = None  # the best method's lead over the runner-up, with its std

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
    # standardised on the labelled rows, as compare_table's proxy_mean is on its training side
    z = StandardScaler().fit(x[table[TARGET].notna().to_numpy()]).transform(x)
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
    methods = ["ltc", "proxy_mean", *proxies]  # what compare_table judges and can rank with
    if config.predictor not in ("auto", *methods):
        raise ValueError(
            f"{task}: selection.predictor {config.predictor!r} was not computed for these "
            f"candidates; the predictors are {sorted(methods)}"
        )
    labelled = table[table[TARGET].notna()]
    try:
        report = compare_table(
            labelled, ID, TARGET, proxies, lower_is_better, splits=config.splits,
            train_fraction=config.train_fraction, seed=config.seed, top_k=config.top_k,
            comparator=config.comparator, protocol=config.protocol,
        )  # fmt: skip
    except ComparatorInputError as err:
        return _unjudged(task, table, proxies, lower_is_better, config, str(err))
    methods = report["methods"]
    scored = {m: v["pairwise_accuracy_mean"] for m, v in methods.items()}
    if config.predictor == "auto":
        predictor = max(scored, key=lambda m: -1.0 if scored[m] is None else scored[m])
    else:
        predictor = config.predictor
    strength = predict_strength(
        table, proxies, lower_is_better, predictor, config.seed, config.comparator
    )
    return _ranked(
        task, table, predictor, strength, beats_chance=(scored[predictor] or 0.0) > CHANCE,
        methods=methods, feature_importance=report["feature_importance"],
        protocol=report["protocol"], lead=report["lead"],
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
