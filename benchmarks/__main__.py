"""`python -m benchmarks [name ...]`: run the benchmarks, write `benchmarks/results.md`.

A run of only some benchmarks writes `benchmarks/results-<names>.md` instead, so it never
drops the other sections of the file the README links.

Each benchmark is a module with `run() -> str` returning a Markdown section; add yours to
BENCHMARKS. Timings on a shared machine are noisy: compare ratios taken within one run.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from pathlib import Path

BENCHMARKS: dict[str, str] = {
    "pretrain": "benchmarks.pretrain",
    "sft": "benchmarks.sft",
    "evaluation": "benchmarks.evaluation",
    "make_run": "benchmarks.make_run",
    "study_run": "benchmarks.study_run",
    "candidate": "benchmarks.candidate",
    "replay": "benchmarks.replay",
}
# Long (candidate and make_run: about ten minutes each; study_run: hours) or no timing at all
# (replay: the study's compute-regret curves): only when named, never in the default set; each
# writes its own results file.
NAMED_ONLY = {"study_run", "make_run", "candidate", "replay"}
RESULTS = Path(__file__).with_name("results.md")


def machine() -> str:
    import tokenizers
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    gpu = (
        f"GPU: {torch.cuda.get_device_name(0)}"
        if torch.cuda.is_available()
        else "No GPU: the CUDA / bf16 paths were not measured in this run"
    )
    return (
        f"Machine: {cpu}, {os.cpu_count()} logical CPUs, torch threads "
        f"{torch.get_num_threads()}, {platform.system()} {platform.release()}. Load average at "
        f"start: {load} (other processes share these cores). Versions: Python "
        f"{platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, tokenizers {tokenizers.__version__}. {gpu}. Date: "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}."
    )


def main(names: list[str]) -> None:
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}")
    sections = ["# Benchmarks", "", machine(), ""]
    out = RESULTS if not names else RESULTS.with_name(f"results-{'-'.join(names)}.md")
    for name in names or [n for n in BENCHMARKS if n not in NAMED_ONLY]:
        start = time.perf_counter()
        print(f"running {name} ...", flush=True)
        sections.append(importlib.import_module(BENCHMARKS[name]).run())
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        # after each: a later benchmark that fails keeps the sections measured before it
        out.write_text("\n".join(sections), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(sys.argv[1:])
