"""Ctrl-C and SIGTERM stop a run (issue #34): the real command line in a process of its own,
signalled as a step starts. ZenML turns a signal during a step into that step's failure and
would go on with the steps that do not depend on it; sftcast stops, exits 130, moves no alias,
and the same command resumes from the cache."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Fine-tunes of the tiny select run: proxies and data done by then, the promotion
# (`select_cls`) still to come.
FIRST, SECOND = "sft_cls_clm-a_3", "sft_cls_clm-b_3"
STARTED = re.compile(r"Step `([^`]+)` has started")


def run_select(
    config: Path, signum: int | None = None, at: str = FIRST
) -> tuple[int, str, list[str]]:
    """`select` on `config`; with `signum`, that signal is sent as step `at` starts. Returns
    the exit code, the output and the steps started after the signal was sent."""
    env = {**os.environ, "ZENML_LOGGING_VERBOSITY": "INFO"}  # ZenML's "has started" lines
    command = [sys.executable, "pipelines/run.py", "--config", str(config), "select"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines, after = [], []
    sent = False
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        started = STARTED.search(line)
        if sent and started:
            after.append(started.group(1))
        if signum is not None and not sent and started and started.group(1) == at:
            process.send_signal(signum)
            sent = True
    output = "".join(lines)
    assert signum is None or sent, output
    return process.wait(), output, after


def test_ctrl_c_and_sigterm_stop_the_run_and_the_rerun_resumes(make_select_config, tracking):
    config = make_select_config("test-stop-{task}")

    for signum, at in ((signal.SIGINT, FIRST), (signal.SIGTERM, SECOND)):
        code, output, after = run_select(config, signum, at)

        assert code == 130, output
        assert f"interrupted: {signal.Signals(signum).name}: the run stopped" in output, output
        # The signal lands within the step or, at the latest, the next: nothing after that.
        assert len(after) <= 1, after
        assert not any(step.startswith("select_") for step in after), output
        client = tracking()
        if client.search_registered_models(filter_string="name = 'test-stop-cls'"):
            assert not client.get_registered_model("test-stop-cls").aliases, "an alias moved"
        if signum == signal.SIGTERM:  # the rerun after Ctrl-C resumed from the cache
            assert "Using cached version of step `proxies_clm-a_3`" in output, output

    code, output, _ = run_select(config)

    assert code == 0, output
    assert "Using cached version of step `proxies_clm-a_3`" in output, output
