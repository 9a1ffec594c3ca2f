"""What a judgement reads and how it judges: the table's columns (`Columns`), the comparator's
settings (`ComparatorSettings`) and the judgement's (`JudgementSettings`), whose defaults are
written here once for `compare`, the study and `select`; and `compare_command`, the command
line that runs one judgement.

Only pydantic is imported here: the command line reads these defaults for its options, and
must not load XGBoost and scikit-learn to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ComparatorSettings(BaseModel):
    """The comparator's form and the boosted classifier's size and step
    (`parameters.selection.comparator`): small trees, as the labelled pools are small."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # "auto": chosen on the training candidates by inner cross-validation (forms.py)
    form: Literal[
        "auto", "xgboost", "xgboost_monotone", "linear", "best_proxy", "blend", "ensemble"
    ] = "auto"
    n_estimators: int = Field(200, ge=1)
    max_depth: int = Field(3, ge=1)
    learning_rate: float = Field(0.1, gt=0, le=1)


DEFAULT_SETTINGS = ComparatorSettings()


class Columns(BaseModel):
    """The columns a judgement reads: each candidate's id, its post-SFT score (the target,
    higher is better) and its proxies, of which `lower_is_better` are negated."""

    model_config = ConfigDict(frozen=True)

    id_column: str
    target: str
    proxies: list[str]
    lower_is_better: list[str] = []


# the baselines every judgement reports beside the comparator (sftcast.comparator.baselines)
BASELINES = ("best_proxy_fit", "signed_mean", "linear_tuned", "ridge")


class JudgementSettings(BaseModel):
    """How `compare_table` judges a table: the protocol (`paper`: `splits` random splits with
    `train_fraction` of the candidates to train; `group`: leave one `groups` group out, the
    default when `groups` is given; `deployment`: the random splits, scored on held-out x
    training pairs; `variant`: `splits` random splits of the `groups` groups, `train_fraction`
    of them to train; `transfer`: one split, every method fitted on `train_table` and judged on
    the whole table, whose `groups`, if named, give the interval's bootstrap), the seed of
    splits and models, k of the top-k metrics, the target's seed noise (for the clear-gap
    accuracy), the processes judging the splits, the comparator, and whether to fit it on
    every labelled candidate as well (`final_fit`: the report's final form and feature
    importance; a third of the cost at a hundred candidates).

    Unvalidated here: the judgement checks its settings and names a bad one in its own words
    (`ComparatorInputError`), as `compare` reports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: str | None = None
    seed: int = 0
    top_k: int = 3
    jobs: int = 1
    groups: str | None = None
    splits: int = 20
    train_fraction: float = 0.6
    seed_noise: float | None = None
    train_table: Path | None = None  # `transfer`: the table every method is fitted on
    comparator: ComparatorSettings = DEFAULT_SETTINGS
    final_fit: bool = True


DEFAULT_JUDGEMENT = JudgementSettings()

# The bounds a run configuration's judgement settings (`study`, `selection`) are validated with.
Splits = Annotated[int, Field(ge=1)]
TrainFraction = Annotated[float, Field(gt=0, lt=1)]
TopK = Annotated[int, Field(ge=1)]

# The compare command's options among the settings, in the order its recorded commands give
# them. Its options are named as the columns and settings are (`top_k`: `--top-k`, as typer
# names a parameter's option), but for `groups` (`--group-column`): `flag` is the one mapping.
COMPARE_OPTIONS = (
    "protocol", "seed", "top_k", "jobs", "groups", "splits", "train_fraction", "seed_noise",
    "train_table",
)  # fmt: skip
# what `compare` refuses beside leave-one-group-out: it holds out groups, not random splits
RANDOM_SPLIT_OPTIONS = ("splits", "train_fraction")


def judges_one_split(settings: JudgementSettings) -> bool:
    """Leave-one-group-out (the protocol a group column alone implies, or `group` by name) or
    `transfer`: no random splits, whose options would be ignored."""
    one_group_out = settings.groups is not None and settings.protocol in (None, "group")
    return one_group_out or settings.protocol == "transfer"


def flag(setting: str) -> str:
    """The compare command's option for a setting."""
    return "--group-column" if setting == "groups" else "--" + setting.replace("_", "-")


def compare_command(
    table: Path, columns: Columns, settings: JudgementSettings, output: Path
) -> list[str]:
    """The `compare` argument list that judges `table` as `compare_table(read_table(table),
    columns, settings)` does (with the default comparator, which the command takes no option
    for) and writes the report to `output`."""
    if settings.comparator != DEFAULT_SETTINGS or not settings.final_fit:
        raise ValueError("compare has no option for the comparator's settings or final_fit")
    args = ["compare", "--table", str(table)]
    for name, value in columns:
        args += [flag(name), value if isinstance(value, str) else ",".join(value)]
    for name in COMPARE_OPTIONS:
        value = getattr(settings, name)
        if value is not None and not (judges_one_split(settings) and name in RANDOM_SPLIT_OPTIONS):
            args += [flag(name), str(value)]
    return [*args, "--output", str(output)]
