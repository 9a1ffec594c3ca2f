"""Learning to compare: which candidate will be best after SFT, from its proxies.

An XGBoost classifier over pairs of candidates (`Comparator`), ranked by Borda count, and
judged against every single proxy on candidates it never saw (`compare_table`, settings in
`config`, a typed `CompareReport`).

Each name below loads its module on first use: the command line reads `config` (pydantic
alone) for its options' defaults, and importing this package must not load XGBoost and
scikit-learn for that (seconds at every start).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# each name, and the module of this package that defines it
_MODULES = {
    "MAX_STANDARDISED": "features",
    "check_standardising": "features",
    "labelled_pairs": "features",
    "ordered_pairs": "features",
    "pair_features": "features",
    "kendall_tau": "metrics",
    "pairwise_accuracy": "metrics",
    "topk_recall": "metrics",
    "Comparator": "model",
    "antisymmetric": "model",
    "borda_scores": "model",
    "mean_win_probability": "model",
    "Split": "protocols",
    "group_random_splits": "protocols",
    "leave_one_group_out": "protocols",
    "random_splits": "protocols",
    "Candidates": "table",
    "ComparatorInputError": "table",
    "check_table": "table",
    "direction_signs": "table",
    "read_table": "table",
    "Columns": "config",
    "ComparatorSettings": "config",
    "JudgementSettings": "config",
    "compare_command": "config",
    "compare_table": "judge",
    "evaluate_split": "judge",
    "method_ranking": "judge",
    "CompareReport": "report",
    "Lead": "report",
    "MethodScores": "report",
    "form_note": "report",
    "lead_note": "report",
    "report_lines": "report",
    "report_notes": "report",
    "report_rows": "report",
    "report_table": "report",
    "report_title": "report",
    "rows_lines": "report",
    "rows_table": "report",
    "skipped_note": "report",
    "unwritable": "report",
}
__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
