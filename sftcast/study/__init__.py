"""The study: every candidate of a zoo measured (proxies, fine-tuning probes, post-SFT score
per task), written as one results table, judged by `compare` under every protocol, drawn.

`write_table` writes the table (a chunk adds to it); `judge` writes beside it `summary.json`
(the judgement, with the `compare` argument lists that reproduce it), the `compare` reports
under `reports/` and the figures under `figures/`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from sftcast.files import replacing, write_text_atomic
from sftcast.study.config import StudyConfig
from sftcast.study.figures import plot_accuracy, plot_predicted_vs_actual, plot_study_scores_by_step
from sftcast.study.summary import (
    JUDGED,
    judgement_markdown,
    pretraining_proxies,
    probe_proxies,
    summarize,
)
from sftcast.study.table import read_results, with_seed_statistics
from sftcast.tracking import config_hash

if TYPE_CHECKING:
    from sftcast.evaluation import EvaluationConfig
    from sftcast.proxies import ProxyConfig
    from sftcast.sft import SFTConfig

__all__ = ["StudyConfig", "judge", "measured_settings", "merged", "study_settings", "write_table"]


def study_settings(sft: SFTConfig, evaluation: EvaluationConfig, proxies: ProxyConfig) -> str:
    """What a table's rows were measured with: a hash of the sft, evaluation and proxies
    sections (the table's `settings` column)."""
    return config_hash(sft.identity(), evaluation.identity(), proxies)


def measured_settings(results: Path) -> list[str]:
    """The settings the table at `results` was measured with (`unknown` for a table without
    the column)."""
    table = read_results(results)
    return sorted(set(table["settings"].astype(str))) if "settings" in table else ["unknown"]


def write_table(table: pd.DataFrame, study: StudyConfig, settings: str, merge: bool) -> Path:
    """Write the table to `study.results`. `settings` names what the rows were measured with
    (a hash of the SFT, evaluation and proxy sections): with `merge` (a chunk), the rows
    already in the file that were measured with the same settings and are not re-measured
    here are kept, so the table grows chunk by chunk; rows measured otherwise are dropped."""
    study.results.parent.mkdir(parents=True, exist_ok=True)
    table = table.assign(settings=settings)
    if merge and study.results.is_file():
        table = merged(read_results(study.results), table)
    # the seed means of the rows as written, whichever chunk measured them (and where the table
    # was made before it had them: a cached step's)
    table = with_seed_statistics(table)
    with replacing(study.results) as tmp:  # whole or not at all: the table holds every chunk
        table.to_csv(tmp, index=False)
    return study.results


def judge(study: StudyConfig, tasks: Sequence[str]) -> list[Path]:
    """Judge the table at `study.results` with `compare` under every protocol: write
    `summary.json`, the reports and the figures beside it; returns the paths written."""
    root = study.results.parent
    (root / "figures").mkdir(parents=True, exist_ok=True)
    summary = summarize(study.results, study, tasks, root / "reports")
    write_text_atomic(root / "summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    write_text_atomic(root / "judgement.md", judgement_markdown(summary))
    table = read_results(study.results)
    judged = [p for p in JUDGED if p != "group" and any(p in e for e in summary["tasks"].values())]
    figures = {
        **{f"accuracy_{p}.png": plot_accuracy(summary, p) for p in judged},
        "predicted_vs_actual.png": plot_predicted_vs_actual(
            table, {t: pretraining_proxies(table) + probe_proxies(table) for t in tasks}
        ),
        **{f"scores_by_step_{t}.png": plot_study_scores_by_step(table, t) for t in tasks},
    }
    for name, fig in figures.items():
        with replacing(root / "figures" / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    return [
        root / "summary.json",
        root / "judgement.md",
        *(root / "figures" / name for name in figures),
    ]


def merged(kept: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """`table`'s rows, and those of `kept` measured with the same settings for candidates
    `table` does not have; sorted by candidate."""
    settings = table["settings"].iloc[0]
    same = kept["settings"] == settings if "settings" in kept else False
    kept = kept[same & ~kept["candidate"].isin(table["candidate"])]
    both = pd.concat([kept, table], ignore_index=True)
    return both.sort_values("candidate", ignore_index=True)
