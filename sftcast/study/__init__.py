"""The study: every candidate of a zoo measured (proxies, fine-tuning probes, post-SFT score
per task), written as one results table, judged by `compare` under every protocol, drawn.

`publish` writes, beside the table: `summary.json` (the judgement, with the `compare` argument
lists that reproduce it), the `compare` reports under `reports/` and the figures under
`figures/`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sftcast.study.config import StudyConfig
from sftcast.study.figures import plot_accuracy, plot_predicted_vs_actual, plot_study_scores_by_step
from sftcast.study.summary import pretraining_proxies, probe_proxies, summarize

__all__ = ["StudyConfig", "publish"]


def publish(
    table: pd.DataFrame,
    study: StudyConfig,
    tasks: Sequence[str],
    settings: str,
    merge: bool = False,
) -> list[Path]:
    """Write the table to `study.results` and the summary, reports and figures beside it;
    returns the paths written. `settings` names what the rows were measured with (a hash of
    the SFT, evaluation and proxy sections): with `merge` (a chunk), the rows already in the
    file that were measured with the same settings and are not re-measured here are kept, so
    the table grows chunk by chunk; rows measured otherwise are dropped."""
    results = study.results
    root = results.parent
    (root / "figures").mkdir(parents=True, exist_ok=True)
    table = table.assign(settings=settings)
    if merge and results.is_file():
        kept = pd.read_csv(results)
        kept = kept[
            (kept.get("settings") == settings) & ~kept["candidate"].isin(table["candidate"])
        ]
        table = pd.concat([kept, table], ignore_index=True).sort_values("candidate")
    table.to_csv(results, index=False)
    summary = summarize(results, study, tasks, root / "reports")
    written = [results, root / "summary.json"]
    written[1].write_text(json.dumps(summary, indent=1, default=str) + "\n")
    figures = {
        "accuracy_paper.png": plot_accuracy(summary, "paper"),
        "accuracy_deployment.png": plot_accuracy(summary, "deployment"),
        "predicted_vs_actual.png": plot_predicted_vs_actual(
            table, {t: pretraining_proxies(table) + probe_proxies(table, t) for t in tasks}
        ),
        **{f"scores_by_step_{t}.png": plot_study_scores_by_step(table, t) for t in tasks},
    }
    for name, fig in figures.items():
        fig.savefig(root / "figures" / name, dpi=110)
        written.append(root / "figures" / name)
    return written


def merged(kept: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """`table`'s rows, and those of `kept` measured with the same settings for candidates
    `table` does not have; sorted by candidate."""
    settings = table["settings"].iloc[0]
    same = kept["settings"] == settings if "settings" in kept else False
    kept = kept[same & ~kept["candidate"].isin(table["candidate"])]
    both = pd.concat([kept, table], ignore_index=True)
    return both.sort_values("candidate", ignore_index=True)
