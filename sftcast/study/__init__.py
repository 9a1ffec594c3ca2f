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


def publish(table: pd.DataFrame, study: StudyConfig, tasks: Sequence[str]) -> list[Path]:
    """Write the table to `study.results` and the summary, reports and figures beside it;
    returns the paths written."""
    results = study.results
    root = results.parent
    (root / "figures").mkdir(parents=True, exist_ok=True)
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
