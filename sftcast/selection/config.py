"""Selection settings: `parameters.selection` of a run configuration (which candidates are
fine-tuned, how predictors are judged), and `SelectionSettings`, what a `select` step is given.

Unknown keys are errors, so a typo in YAML names itself instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sftcast.comparator.config import (
    BASELINES,
    DEFAULT_JUDGEMENT,
    ComparatorSettings,
    JudgementSettings,
    Splits,
    TopK,
    TrainFraction,
)
from sftcast.evaluation.config import EvaluationConfig
from sftcast.proxies.config import ProxyConfig
from sftcast.proxies.registry import directions
from sftcast.sft.config import SFTConfig
from sftcast.tracking import config_hash
from sftcast.zoo.config import ZooConfig

# On a registered comparator: how its proxies were measured (`measurement_key`), so that
# `watch` measures a new checkpoint the same way or refuses
TAG_MEASUREMENT_KEY = "sftcast.measurement_key"


class ActiveLabelling(BaseModel):
    """`selection.labelled: {strategy: probe_order, budget: N}`: per task, fine-tune the N
    candidates with the lowest probe loss, one at a time; `{strategy: active, budget: N,
    initial: K}`: the first K so, then one at a time the candidate that comparators fitted on
    the fine-tuned ones rank highest, until N are (`sftcast.active`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    strategy: Literal["probe_order", "active"]
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
    # {strategy: probe_order | active, budget: N, ...}: chosen round by round
    labelled: Literal["all"] | float | list[str] | ActiveLabelling = 0.5
    seed: int = DEFAULT_JUDGEMENT.seed
    # deployment: each held-out labelled candidate against the ones the comparator was trained
    # on, as `select` uses it (many more judged pairs than paper's pairs inside the held-out side)
    protocol: Literal["paper", "deployment"] = "deployment"
    splits: Splits = DEFAULT_JUDGEMENT.splits
    train_fraction: TrainFraction = DEFAULT_JUDGEMENT.train_fraction
    top_k: TopK = DEFAULT_JUDGEMENT.top_k
    force: bool = False  # promote even when no predictor beats chance
    # "auto": the predictor with the best held-out pairwise accuracy ranks the candidates; or
    # one named method ("ltc", "proxy_mean", a baseline, a proxy) ranks them whatever its
    # score, for a team that trusts it. Either way it is judged, and promotion needs it to
    # beat chance.
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
        known = ["auto", "ltc", "proxy_mean", *BASELINES, *directions()]
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
                "{strategy: probe_order, budget: N}"
            )
        return value

    @field_validator("labelled")
    @classmethod
    def _fraction(cls, value: Any) -> Any:
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"labelled fraction must be in (0, 1], got {value}")
        return value

    @property
    def judgement(self) -> JudgementSettings:
        """How the predictors are judged on the labelled candidates."""
        return JudgementSettings(
            protocol=self.protocol,
            seed=self.seed,
            top_k=self.top_k,
            splits=self.splits,
            train_fraction=self.train_fraction,
            comparator=self.comparator,
        )

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


class SelectionSettings(BaseModel):
    """What a `select` step works with beside its artifacts: the run's sections it draws on,
    and the candidate URIs and task names its artifact lists come in the order of."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selection: SelectionConfig
    sft: SFTConfig
    evaluation: EvaluationConfig  # how `select` scores fine-tuned models (`finetuned_evaluation`)
    zoo: ZooConfig
    uris: list[str]  # the order of the step's `candidates`
    tasks: list[str]  # the order of the step's `datasets`
    proxies: ProxyConfig = ProxyConfig()  # how the candidates' proxies were measured

    def measurement_key(self) -> str:
        """What a candidate's proxies depend on besides its weights: the proxy settings and
        the base evaluation its k-shot proxies come from."""
        return measurement_key(self.proxies, self.evaluation)

    def by_uri(self, candidates: Sequence[Path]) -> dict[str, Path]:
        """The step's candidate folders, by URI."""
        return dict(zip(self.uris, candidates, strict=True))

    def by_task(self, datasets: Sequence[Path]) -> dict[str, Path]:
        """The step's validated datasets, by task."""
        return dict(zip(self.tasks, datasets, strict=True))


def measurement_key(proxies: ProxyConfig, evaluation: EvaluationConfig) -> str:
    """`proxies` and the evaluation that scored the base models (`finetuned_evaluation`),
    hashed: two runs measure a candidate alike when their keys match."""
    return config_hash(proxies, evaluation.identity())
