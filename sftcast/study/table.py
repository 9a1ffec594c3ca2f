"""The study's results table: one row per candidate, the columns `compare` reads.

Columns, in order: `candidate`; the variant's configuration (`variant`, `family`, `objective`,
`learning_rate`, `mixture`, `length_band`, `domain_tag`, `checkpoint_step`); every proxy by its
name; the targets `sft_<task>` (post-SFT score, main seed); the main seed's fine-tune's
validation loss part way, `val_loss_<task>_at<fraction>` (with `sft.fidelities`); and
`sft_<task>_seed<s>` (extra seeds, replicated candidates only, else empty); the costs
`seconds_<part>` (`seconds_val_loss_<task>_at<fraction>`: training seconds to that point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

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
    return df[first + replicated + costs]


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


def seed_noise(df: pd.DataFrame, task: str) -> float:
    """Pooled seed std of the task's score over the replicated candidates: the root of their
    mean within-candidate variance (main seed and extra seeds); NaN without replicates."""
    target = target_column(task)
    extra = [c for c in df.columns if c.startswith(f"{target}_seed")]
    if not extra:
        return math.nan
    scores = df[[target, *extra]].astype(float).dropna()
    if scores.empty:
        return math.nan
    return float(np.sqrt(scores.var(axis=1, ddof=1).mean()))


def spread(df: pd.DataFrame, task: str) -> float:
    """Std of the task's main-seed score across candidates."""
    return float(df[target_column(task)].astype(float).std(ddof=1))
