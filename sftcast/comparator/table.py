"""The candidate table: one row per candidate with its id, the target, the proxies, maybe a group.

`read_table` loads a CSV or Parquet file; `check_table` validates a table and returns the
`Candidates` the comparator works on. Every problem is a `ComparatorInputError` naming the file
(when there is one), the row and the column, e.g.
`scores.csv: row 3 (line 4), column 'ppl': 'abc' is not a number`. A header that repeats a
column name is refused as written, before pandas renames the repeat (`ppl`, `ppl.1`).

Numbers: every cell is finite, and a proxy's distinct values must stay distinct once it is
standardised: two values closer than float64's resolution at the column's span (`eps * span`)
would merge (a column like 1e20, 1, 2, 3 ranks 1, 2 and 3 as one), so they are refused, naming
both rows; so is a column spanning less than `MIN_SPAN`, whose variance underflows to a
constant. Values a few ulps apart are the same number computed two ways and count as a tie.
The target is only compared, never computed with, so any finite target is fine.

Direction: the target is "higher is better" (a post-SFT score). Proxies named in
`lower_is_better` (perplexities, losses) are negated here, once, so that higher is better holds
for every proxy downstream: features, single-proxy rankings and `proxy_mean` alike.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from sftcast.comparator.config import BASELINES

MIN_CANDIDATES = 4
# Distinct values this many ulps of their own magnitude apart are one number computed two ways.
NOISE_ULPS = 4
# The smallest span whose square is a normal float64: standardising squares deviations.
MIN_SPAN = float(np.sqrt(np.finfo(float).tiny))  # about 1.5e-154
# method names in the report; a proxy may not take them
RESERVED = ("ltc", "proxy_mean", *BASELINES)


class ComparatorInputError(ValueError):
    """The table or the options cannot be compared on; the message says where and why."""


@dataclass(frozen=True)
class Candidates:
    ids: np.ndarray  # str, unique
    target: np.ndarray  # float, higher is better
    proxies: np.ndarray  # (candidates, proxies) float, direction-corrected: higher is better
    proxy_names: tuple[str, ...]
    groups: np.ndarray | None  # str, for leave-one-group-out
    source: str
    lower_is_better: tuple[str, ...] = ()  # the proxies negated above
    csv: bool = False  # rows are lines of a CSV file (header on line 1)

    def where(self, row: int) -> str:
        """`source: row r (line l)` for the 0-based candidate index `row`."""
        return _where(self.source, row, self.csv)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (every cell read as text, so ids and bad cells stay as written) or a Parquet file.
    The file and its sha256 are recorded in `df.attrs`, so that `check_table` names it and, for
    a CSV, the line, and a report says exactly which file it judged."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ComparatorInputError(f"{path}: expected a .csv or .parquet file")
    if not path.is_file():
        raise ComparatorInputError(f"{path}: no such file")
    try:
        # Repeated names first: pandas reads a CSV's second 'ppl' as 'ppl.1' (a proxy judged
        # on the wrong column), and pyarrow refuses them in a Parquet file with the schema.
        check_header(path)
        if suffix == ".csv":
            # skip_blank_lines=False keeps data row r on line r + 1 (the header is line 1).
            df = pd.read_csv(path, dtype=str, skip_blank_lines=False)
        else:
            df = pd.read_parquet(path)
    except ComparatorInputError:
        raise
    except (ValueError, OSError) as err:  # pandas' and pyarrow's parse errors are ValueErrors
        raise ComparatorInputError(f"{path}: cannot read it: {err}") from err
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    df.attrs.update(source=str(path), csv=suffix == ".csv", sha256=sha256)
    return df


def check_columns(source: str, names: Sequence[object]) -> None:
    """Refuse a table whose header repeats a column name, naming each repeated name and its
    (1-based) positions: which of the two is the proxy is anyone's guess."""
    positions: dict[str, list[int]] = defaultdict(list)
    for position, name in enumerate(names, start=1):
        if str(name) != "":  # pandas names empty header cells apart ("Unnamed: 3")
            positions[str(name)].append(position)
    repeated = [
        f"{name!r} (columns {', '.join(map(str, at[:-1]))} and {at[-1]})"
        for name, at in positions.items()
        if len(at) > 1
    ]
    if repeated:
        raise ComparatorInputError(
            f"{source}: the header repeats column name(s) {', '.join(repeated)}; "
            "give each column its own name"
        )


def check_header(path: Path) -> None:
    """Refuse a CSV or Parquet file whose header repeats a column name (see `check_columns`)."""
    check_columns(str(path), _header(path))


def _header(path: Path) -> list[str]:
    """The column names as the file writes them: a CSV's first row, read with the csv module
    (pandas would already have renamed repeats), or a Parquet file's schema."""
    if path.suffix.lower() != ".csv":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with path.open(encoding="utf-8-sig", newline="") as f:  # pandas drops a BOM too
        return next(csv.reader(f), [])


def check_table(
    df: pd.DataFrame,
    id_column: str,
    target: str,
    proxies: Sequence[str],
    lower_is_better: Sequence[str] = (),
    groups: str | None = None,
) -> Candidates:
    source = str(df.attrs.get("source", "table"))
    proxies = list(proxies)
    check_columns(source, list(df.columns))  # a table built in code may repeat names too
    _check_options(source, id_column, target, proxies, lower_is_better, groups)
    needed = [id_column, target, *proxies, *([groups] if groups else [])]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ComparatorInputError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; "
            f"the table has: {', '.join(map(str, df.columns))}"
        )
    csv = bool(df.attrs.get("csv", False))
    df = df.reset_index(drop=True)  # positions are rows: row r is df.iloc[r - 1]
    ids = _labels(df[id_column], id_column, source, csv)
    _check_unique(ids, id_column, source, csv)
    if len(ids) < MIN_CANDIDATES:
        raise ComparatorInputError(
            f"{source}: {len(ids)} candidate(s); the comparator needs at least {MIN_CANDIDATES}"
        )
    values = {c: _numbers(df[c], c, source, csv) for c in [target, *proxies]}
    for proxy in proxies:
        _check_spread(values[proxy], proxy, df[proxy], source, csv)
    if np.all(values[target] == values[target][0]):
        raise ComparatorInputError(
            f"{source}: column {target!r}: every candidate has the same target "
            f"({values[target][0]:g}); there is nothing to rank"
        )
    return Candidates(
        ids=ids,
        target=values[target],
        proxies=np.column_stack([values[p] for p in proxies])
        * direction_signs(proxies, lower_is_better),
        proxy_names=tuple(proxies),
        groups=_labels(df[groups], groups, source, csv) if groups else None,
        source=source,
        lower_is_better=tuple(p for p in proxies if p in lower_is_better),
        csv=csv,
    )


def direction_signs(proxies: Sequence[str], lower_is_better: Sequence[str]) -> np.ndarray:
    """-1 for the lower-is-better proxies, +1 for the others: multiplied in, higher is better
    for every proxy."""
    return np.array([-1.0 if p in lower_is_better else 1.0 for p in proxies])


def _check_options(
    source: str,
    id_column: str,
    target: str,
    proxies: list[str],
    lower_is_better: Sequence[str],
    groups: str | None,
) -> None:
    problems = []
    if not proxies:
        problems.append("no proxies given")
    twice = sorted({p for p in proxies if proxies.count(p) > 1})
    if twice:
        problems.append(f"proxy column(s) given twice: {', '.join(map(repr, twice))}")
    for name, column in (("target", target), ("id column", id_column), ("group column", groups)):
        if column in proxies:
            problems.append(f"the {name} {column!r} cannot also be a proxy")
    if id_column == target:
        problems.append(f"the id column and the target are both {target!r}")
    reserved = [p for p in proxies if p in RESERVED]
    if reserved:
        problems.append(f"proxy column(s) {', '.join(map(repr, reserved))}: reserved method names")
    stray = [c for c in lower_is_better if c not in proxies]
    if stray:
        problems.append(
            f"lower-is-better column(s) {', '.join(map(repr, stray))} are not among the "
            f"proxies ({', '.join(proxies)})"
        )
    if problems:
        raise ComparatorInputError(f"{source}: " + "; ".join(problems))


def _where(source: str, row: int, csv: bool) -> str:
    """`source: row r (line l)`: 1-based data row; in a CSV the header is line 1."""
    return f"{source}: row {row + 1}" + (f" (line {row + 2})" if csv else "")


def _first_problem(
    mask: np.ndarray, problem: str, column: str, raw: pd.Series, source: str, csv: bool
) -> None:
    rows = np.flatnonzero(mask)
    if len(rows):
        more = f" ({len(rows)} such cells in the column)" if len(rows) > 1 else ""
        text = problem.format(value=_Cell(raw.iloc[rows[0]]))
        raise ComparatorInputError(
            f"{_where(source, rows[0], csv)}, column {column!r}: {text}{more}"
        )


def _numbers(raw: pd.Series, column: str, source: str, csv: bool) -> np.ndarray:
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    empty = raw.isna().to_numpy()
    _first_problem(np.isnan(values) & ~empty, "{value!r} is not a number", column, raw, source, csv)
    _first_problem(empty | np.isnan(values), "empty or NaN", column, raw, source, csv)
    _first_problem(np.isinf(values), "{value!r} is not finite", column, raw, source, csv)
    return values


def _check_spread(values: np.ndarray, column: str, raw: pd.Series, source: str, csv: bool) -> None:
    """Refuse a column that standardising would flatten (see the module's doc): a span whose
    square underflows, or two distinct values closer than `eps * span`. The row named first is
    the extreme farthest from the median, the usual culprit."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    with np.errstate(over="ignore"):
        span = ordered[-1] - ordered[0]
    if 0 < span < MIN_SPAN:
        raise ComparatorInputError(
            f"{_where(source, order[-1], csv)}, column {column!r}: the values span only "
            f"{span:.3g} (row {order[0] + 1}'s {_Cell(raw.iloc[order[0]])!r} to row "
            f"{order[-1] + 1}'s {_Cell(raw.iloc[order[-1]])!r}), below {MIN_SPAN:.3g}, whose "
            "square float64 still holds: standardising would see a constant; rescale the column"
        )
    gaps = np.diff(ordered)
    noise = gaps <= NOISE_ULPS * np.spacing(np.maximum(np.abs(ordered[:-1]), np.abs(ordered[1:])))
    resolution = np.finfo(float).eps * span
    merged = np.flatnonzero((gaps > 0) & ~noise & ~(gaps >= resolution))
    if not len(merged):
        return
    median = np.median(values)
    outlier = max(order[0], order[-1], key=lambda r: abs(values[r] - median))
    lo, hi = order[merged[0]], order[merged[0] + 1]
    raise ComparatorInputError(
        f"{_where(source, outlier, csv)}, column {column!r}: {_Cell(raw.iloc[outlier])!r} "
        f"stretches the column's span to {span:.3g}, where float64 cannot tell row {lo + 1}'s "
        f"{_Cell(raw.iloc[lo])!r} from row {hi + 1}'s {_Cell(raw.iloc[hi])!r} (they differ by "
        f"{gaps[merged[0]]:.3g}, below eps * span = {resolution:.3g}): standardising would "
        "merge them; rescale the column or drop the outlier"
    )


class _Cell:
    """A cell as written: CSV text quoted, a number (from Parquet) as Python writes it, not as
    `np.float64(...)`."""

    def __init__(self, value: object) -> None:
        self.value = value.item() if isinstance(value, np.generic) else value

    def __repr__(self) -> str:
        return repr(self.value)


def _labels(raw: pd.Series, column: str, source: str, csv: bool) -> np.ndarray:
    empty = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
    _first_problem(empty, "empty", column, raw, source, csv)
    return raw.astype(str).to_numpy()


def _check_unique(ids: np.ndarray, column: str, source: str, csv: bool) -> None:
    seen: dict[str, int] = {}
    for row, candidate in enumerate(ids):
        if candidate in seen:
            raise ComparatorInputError(
                f"{_where(source, row, csv)}, column {column!r}: duplicate id {candidate!r} "
                f"(first at row {seen[candidate] + 1})"
            )
        seen[candidate] = row


def joined(held_out: Candidates, train: Candidates) -> Candidates:
    """The held-out table's candidates, then the training table's, as one pool named as the
    held-out table (`transfer`): its rows keep their numbers in errors."""
    repeated = sorted(set(held_out.ids.tolist()) & set(train.ids.tolist()))
    if repeated:
        raise ComparatorInputError(
            f"{held_out.source} and {train.source} both hold candidate(s) "
            f"{', '.join(map(repr, repeated[:5]))}: a held-out candidate cannot be trained on"
        )
    groups = None
    if held_out.groups is not None and train.groups is not None:
        groups = np.concatenate([held_out.groups, train.groups])
    return replace(
        held_out,
        ids=np.concatenate([held_out.ids, train.ids]),
        target=np.concatenate([held_out.target, train.target]),
        proxies=np.vstack([held_out.proxies, train.proxies]),
        groups=groups,
    )
