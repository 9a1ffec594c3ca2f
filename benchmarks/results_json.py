"""`benchmarks/results.json`: every benchmark's headline ratios, for scripts to check.

Each key (`candidate.speedup`, `sft.cls.speedup_vs_trainer`, ...) holds its value beside the
`date`, `machine` and `command` of the run that measured it; a benchmark rewrites only its own
keys, so the file gathers the latest run of each.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path

RESULTS_JSON = Path(__file__).with_name("results.json")


def machine() -> str:
    """The CPU, its logical cores and torch's build: what a ratio was measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):  # not Linux: the platform's name
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} logical CPUs, {gpu}, torch {torch.__version__}"


def record(values: Mapping[str, float | None], command: str) -> None:
    """Write `values` (key -> median ratio) into results.json, each with where it came from."""
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {}
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    for key, value in values.items():
        results[key] = {"value": value, "date": when, "machine": machine(), "command": command}
    RESULTS_JSON.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
