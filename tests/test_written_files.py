"""Files written for a user are written whole or not at all (issue #34): a report, a plot or
the study's table that fills the disk part-way leaves the previous file as it was, and the
command says so in one line. `simulate --plot` writes exactly the path it was given. A study
table whose header repeats a column name is refused, as `compare` refuses such a table.

The full disk is real: the command runs in a subprocess whose files may not grow beyond
`FULL_DISK` bytes (RLIMIT_FSIZE), so its write fails with EFBIG part-way, as one fails with
ENOSPC on a full disk (Python ignores SIGXFSZ: the write fails, not the process)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.comparator import ComparatorInputError
from sftcast.study import StudyConfig, write_table
from sftcast.study.summary import evidence_lines

REPO_ROOT = Path(__file__).resolve().parents[1]
FULL_DISK = 1024  # bytes: less than any report, plot or table below
OLD = b"the previous file, which must survive\n"
TABLE_ARGS = ["--id-column", "model", "--target", "sft_score", "--proxies", "ppl,kshot"]


def scores(path: Path) -> Path:
    n = 8
    pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(n)],
            "sft_score": [0.1 * i + 0.05 * (i % 3) for i in range(n)],
            "ppl": [30.0 - i for i in range(n)],
            "kshot": [0.02 * i for i in range(n)],
        }
    ).to_csv(path, index=False)
    return path


def on_a_full_disk(tmp: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python *argv`, its files limited to FULL_DISK bytes. -B: it writes no bytecode (a
    truncated .pyc would break the next import), and its own matplotlib cache folder."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK, FULL_DISK))

    env = {**os.environ, "MPLCONFIGDIR": str(tmp / "mplconfig")}
    return subprocess.run(
        [sys.executable, "-B", *argv],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if line.startswith("error:")]


def left_in(folder: Path) -> list[str]:
    """The files in `folder` (hidden ones included: a temporary file left behind shows)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_a_compare_report_cut_short_by_a_full_disk_leaves_the_old_report(tmp_path) -> None:
    table, report = scores(tmp_path / "scores.csv"), tmp_path / "report.json"
    report.write_bytes(OLD)
    result = on_a_full_disk(
        tmp_path, "pipelines/run.py", "compare", "--table", str(table), *TABLE_ARGS,
        "--output", str(report),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert errors(result) == [f"error: {report}: cannot write the report: File too large"]
    assert report.read_bytes() == OLD
    assert left_in(tmp_path) == ["report.json", "scores.csv"]


def test_a_simulate_plot_cut_short_by_a_full_disk_leaves_the_old_plot(tmp_path) -> None:
    table, plot = scores(tmp_path / "scores.csv"), tmp_path / "found.png"
    plot.write_bytes(OLD)
    result = on_a_full_disk(
        tmp_path, "pipelines/run.py", "simulate", "--table", str(table), *TABLE_ARGS,
        "--budget", "4", "--trials", "2", "--plot", str(plot),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert errors(result) == [f"error: {plot}: cannot write the plot: File too large"]
    assert plot.read_bytes() == OLD
    assert left_in(tmp_path) == ["found.png", "scores.csv"]


def test_the_study_table_cut_short_by_a_full_disk_is_the_old_table(tmp_path) -> None:
    results = tmp_path / "results.csv"
    results.write_bytes(OLD)
    code = (
        "import sys, pandas as pd; from pathlib import Path;"
        "from sftcast.study import StudyConfig, write_table;"
        "rows = pd.DataFrame({'candidate': [f'c{i}' for i in range(100)], 'sft_cls': 0.5});"
        "write_table(rows, StudyConfig(results=Path(sys.argv[1])), 'settings', merge=False)"
    )
    result = on_a_full_disk(tmp_path, "-c", code, str(results))
    assert result.returncode != 0 and "File too large" in result.stderr, result.stderr
    assert results.read_bytes() == OLD
    assert left_in(tmp_path) == ["results.csv"]


@pytest.mark.parametrize(("name", "magic"), [("found", b"\x89PNG"), ("found.svg", b"<?xml")])
def test_simulate_writes_its_plot_at_exactly_the_path_given(
    tmp_path: Path, name: str, magic: bytes
) -> None:
    """Without an extension, a PNG under that very name (matplotlib would add `.png`)."""
    table, plot = scores(tmp_path / "scores.csv"), tmp_path / name
    args = ["simulate", "--table", str(table), *TABLE_ARGS, "--budget", "4", "--trials", "2"]
    result = CliRunner().invoke(app, [*args, "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert f"plot: {plot}\n" in result.output
    assert plot.read_bytes().startswith(magic)
    assert left_in(tmp_path) == sorted([name, "scores.csv"])


def test_a_study_table_repeating_a_column_name_is_refused(tmp_path) -> None:
    """pandas would read the second 'ppl_clm' as 'ppl_clm.1': merged into the next chunk's
    table under that name, or judged as another column."""
    results = tmp_path / "results.csv"
    header = "candidate,sft_cls,ppl_clm,ppl_clm,settings\n"
    results.write_text(header + "".join(f"c{i},0.{i},{i},{9 - i},s\n" for i in range(8)))
    before = results.read_bytes()
    problem = rf"{results}: the header repeats column name\(s\) 'ppl_clm' \(columns 3 and 4\)"
    chunk = pd.DataFrame({"candidate": ["c9"], "sft_cls": [0.9]})
    with pytest.raises(ComparatorInputError, match=problem):
        write_table(chunk, StudyConfig(results=results), "s", merge=True)
    assert results.read_bytes() == before
    with pytest.raises(ComparatorInputError, match=problem):  # select's selection.evidence
        evidence_lines(results, ["cls"], splits=2, jobs=1)
