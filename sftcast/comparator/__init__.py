"""Learning to compare: which candidate will be best after SFT, from its proxies.

An XGBoost classifier over pairs of candidates (`Comparator`), ranked by Borda count, and
judged against every single proxy on candidates it never saw (`compare_table`).
"""

from sftcast.comparator.features import (
    MAX_STANDARDISED,
    check_standardising,
    labelled_pairs,
    ordered_pairs,
    pair_features,
)
from sftcast.comparator.metrics import kendall_tau, pairwise_accuracy, topk_recall
from sftcast.comparator.model import (
    Comparator,
    antisymmetric,
    borda_scores,
    mean_win_probability,
)
from sftcast.comparator.protocols import Split, leave_one_group_out, random_splits
from sftcast.comparator.report import (
    compare_table,
    evaluate_split,
    form_note,
    method_ranking,
    report_lines,
    report_rows,
    report_table,
    report_title,
    rows_lines,
    rows_table,
    skipped_note,
    unwritable,
)
from sftcast.comparator.table import (
    Candidates,
    ComparatorInputError,
    check_table,
    direction_signs,
    read_table,
)

__all__ = [
    "MAX_STANDARDISED",
    "Candidates",
    "Comparator",
    "ComparatorInputError",
    "Split",
    "antisymmetric",
    "borda_scores",
    "check_standardising",
    "check_table",
    "compare_table",
    "direction_signs",
    "evaluate_split",
    "form_note",
    "kendall_tau",
    "labelled_pairs",
    "leave_one_group_out",
    "mean_win_probability",
    "method_ranking",
    "ordered_pairs",
    "pair_features",
    "pairwise_accuracy",
    "random_splits",
    "read_table",
    "report_lines",
    "report_rows",
    "report_table",
    "report_title",
    "rows_lines",
    "rows_table",
    "skipped_note",
    "topk_recall",
    "unwritable",
]
