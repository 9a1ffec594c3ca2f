"""Validate a task dataset's content with Great Expectations 1.x before anything downstream runs.

The shape is not checked here: every dataset first goes through `sftcast.data.io` (files, the
Hub, or a DatasetDict built in code), which guarantees the schema's columns, string cells and
lists of strings, and reports anything else as a `read` failure. Each split then becomes two
pandas frames (one row per dataset row; one row per text cell or answer) and GX expectation
suites on them check the content (`suites`): blank strings, cell lengths, encoding garbage, the
label set (cls), non-empty answers, unique ids (within and across splits), train/test leakage of
the schema's `leakage_column`, and row counts. Each GX failure is mapped back to 1-based rows via
`unexpected_index_list` and to file and line via the loader's provenance
(`sftcast.data.io.LoadedDataset`; `results`), so a report (`report`) reads
`data/test.jsonl: split 'test', row 3 (line 3), column 'label': ...`.

ZenML's Great Expectations integration does not support GX 1.x, so GX is called directly (`run`);
it is imported lazily because its import alone takes seconds.
"""

from sftcast.data.config import ValidationBounds
from sftcast.validation.report import (
    EXAMPLES_SHOWN,
    MAX_ROWS_KEPT,
    ROWS_SHOWN,
    DataValidationError,
    ValidationFailure,
    ValidationReport,
)
from sftcast.validation.run import read_failures, validate_source, validate_task_dataset
from sftcast.validation.suites import CHECKS, GARBAGE, NON_BLANK

__all__ = [
    "CHECKS",
    "EXAMPLES_SHOWN",
    "GARBAGE",
    "MAX_ROWS_KEPT",
    "NON_BLANK",
    "ROWS_SHOWN",
    "DataValidationError",
    "ValidationBounds",
    "ValidationFailure",
    "ValidationReport",
    "read_failures",
    "validate_source",
    "validate_task_dataset",
]
