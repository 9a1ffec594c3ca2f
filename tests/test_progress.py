"""Progress in a log file: a few plain lines, never carriage returns."""

from __future__ import annotations

import io

from sftcast.progress import PlainProgress, progress_bar


def test_plain_progress_prints_a_line_per_quarter() -> None:
    out = io.StringIO()
    with PlainProgress(103, "sft cls", "step", file=out) as bar:
        for step in range(103):
            bar.update(1)
            if step == 60:
                bar.set_postfix(loss="1.234")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "sft cls: 26/103 step (25%)",
        "sft cls: 52/103 step (50%)",
        "sft cls: 78/103 step (75%), loss=1.234",
        "sft cls: 103/103 step (100%), loss=1.234",
    ]


def test_a_resumed_loop_reports_only_what_is_left() -> None:
    out = io.StringIO()
    bar = PlainProgress(8, "clm", "step", initial=5, file=out)  # resumed past the half
    for _ in range(3):
        bar.update(1)
    assert out.getvalue().splitlines() == ["clm: 6/8 step (75%)", "clm: 8/8 step (100%)"]


def test_no_terminal_no_bar(capsys) -> None:
    # pytest captures stderr: not a terminal, so the plain form
    assert isinstance(progress_bar(10, "x", "step"), PlainProgress)
    assert not isinstance(progress_bar(10, "x", "step", enabled=False), PlainProgress)
