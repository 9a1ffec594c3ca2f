"""The study's results table: one row per candidate, the columns `compare` reads.

Columns, in order: `candidate`; the variant's configuration (`variant`, `family`, `objective`,
`learning_rate`, `mixture`, `length_band`, `domain_tag`, `checkpoint_step`); every proxy by its
name; the targets `sft_<task>` (post-SFT score, main seed); the main seed's fine-tune's
validation loss part way, `val_loss_<task>_at<fraction>` (with `sft.fidelities`); and
`sft_<task>_seed<s>` (extra seeds, replicated candidates only, else empty); for a task with
extra seeds, `sft_<task>_mean` (the mean over the seeds a candidate has, the main one among
them: what the study judges) and `sft_<task>_std` (their std, ddof=1; empty with one seed);
the costs `seconds_<part>` (`seconds_val_loss_<task>_at<fraction>`: training seconds to that
point).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sftcast.comparator.noise import pooled_seed_std, seed_columns
from sftcast.comparator.table import check_header
from sftcast.study.candidate import StudyRow
from sftcast.zoo import ZooConfig
from sftcast.zoo.variants import variant_info

VARIANT_COLUMNS = (
    "variant", "family", "objective", "learning_rate", "mixture", "length_band", "domain_tag",
    "checkpoint_step",
)  # fmt: skip


def target_column(task: str) -> str:
    return f"sft_{task}"


def mean_column(task: str) -> str:
    """The seed mean of the task's score, where the table has extra seeds."""
    return f"{target_column(task)}_mean"


def std_column(task: str) -> str:
    return f"{target_column(task)}_std"


def judged_column(df: pd.DataFrame, task: str) -> str:
    """The target the study judges: the seed mean where the table has it, else the main seed's
    score."""
    return mean_column(task) if mean_column(task) in df.columns else target_column(task)


def read_results(path: Path) -> pd.DataFrame:
    """The table as written (numbers as numbers). A header that repeats a column name is
    refused (`ComparatorInputError`, naming the file and the column), as `compare` refuses it,
    rather than read with the repeat renamed (`ppl.1`) and merged or drawn as another column."""
    check_header(path)
    return pd.read_csv(path)


def results_table(rows: Sequence[StudyRow], zoo: ZooConfig) -> pd.DataFrame:
    """The rows as a table, sorted by candidate so that a rerun writes the same file."""
    records = []
    for row in sorted(rows, key=lambda r: r.candidate):
        record: dict[str, object] = {"candidate": row.candidate, **_variant(row.candidate, zoo)}
        record |= dict(sorted(row.proxies.items()))
        record |= {target_column(t): s for t, s in row.scores.items()}
        record |= row.fidelities
        for task, by_seed in row.replicate_scores.items():
            record |= {f"{target_column(task)}_seed{s}": v for s, v in sorted(by_seed.items())}
        record |= {f"seconds_{k}": round(v, 3) for k, v in row.seconds.items()}
        records.append(record)
    df = pd.DataFrame.from_records(records)
    replicated = sorted(c for c in df.columns if "_seed" in c and c.startswith("sft_"))
    costs = sorted(c for c in df.columns if c.startswith("seconds_"))
    first = [c for c in df.columns if c not in replicated and c not in costs]
    return with_seed_statistics(df[first + replicated + costs])


def with_seed_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """The table with the seed mean and std of every task that has extra seed columns,
    (re)computed from them: in place where the table has the columns, else right after the
    task's last seed column."""
    df = df.copy()
    for target in [c for c in df.columns if c.startswith("sft_") and seed_columns(df.columns, c)]:
        task, extra = target.removeprefix("sft_"), seed_columns(df.columns, target)
        scores = df[[target, *extra]].astype(float)
        at = max(df.columns.get_loc(c) for c in extra) + 1
        # over the seeds each candidate has; a std needs two of them (NaN with one)
        for column, values in (
            (mean_column(task), scores.mean(axis=1)),
            (std_column(task), scores.std(axis=1, ddof=1)),
        ):
            if column in df.columns:
                df[column] = values
            else:
                df.insert(at, column, values)
                at += 1
    return df


def _variant(uri: str, zoo: ZooConfig) -> dict[str, object]:
    info = variant_info(uri, zoo)
    if not info:
        return {}
    config = info["variant_config"]
    return {
        "variant": info["variant"],
        "family": info["family"],
        "objective": info["objective"],
        "learning_rate": config["learning_rate"],
        # compact and stable: domain=share pairs, sorted
        "mixture": ";".join(f"{k}={v:g}" for k, v in sorted(config["mixture"].items())),
        "length_band": "{:g}-{:g}".format(*config["length_band"]),
        "domain_tag": config["domain_tag"],
        "checkpoint_step": info["checkpoint_step"],
    }


def seed_scores(df: pd.DataFrame, task: str) -> np.ndarray:
    """The task's score per candidate (rows) and seed (the main one first; NaN where a seed
    was not run)."""
    target = target_column(task)
    return df[[target, *seed_columns(df.columns, target)]].astype(float).to_numpy()


def seed_counts(df: pd.DataFrame, task: str) -> np.ndarray:
    """How many seeds of the task's score each candidate has."""
    return np.sum(~np.isnan(seed_scores(df, task)), axis=1)


def seed_noise(df: pd.DataFrame, task: str) -> float:
    """One seed's std of the task's score, pooled over the replicated candidates (main seed
    and extra seeds, `pooled_seed_std`); NaN without replicates."""
    return pooled_seed_std(seed_scores(df, task))


def spread(df: pd.DataFrame, task: str) -> float:
    """Std of the task's main-seed score across candidates."""
    return float(df[target_column(task)].astype(float).std(ddof=1))
