"""One study candidate measured end to end, before issue #30's changes and after them.

`python -m benchmarks candidate`. The unit of work is `sftcast.study.candidate.study_candidate`
on one candidate of `configs/study.yaml` (its data, model size, SFT recipes, evaluation and
proxies, one seed): every proxy, the three fine-tuning probes, and SFT + evaluation on every
task. The candidate is pre-trained here (`clm-lr4e-3`, 150 steps), so the benchmark needs
nothing but a clean clone; its pre-training tokens/s and the matmul peak say how fast the
cores ran, so runs at different hours compare.

- **before**: the path before the issue, reachable by settings: one process with torch's
  threads (`study.workers: 1`), answers from `model.generate` (`evaluation.generation:
  generate`), every few-shot prompt run whole (`evaluation.share_prefix: false`), probes of
  64 train / 48 validation rows, no compilation.
- **after**: `configs/study.yaml` as it is (`study.workers` single-thread processes, the
  cached decoding loop, the few-shot demonstrations run once per evaluation, probes of
  32 / 32), compilation as `SFTCAST_COMPILE` leaves it
  (`auto`: none on the CPU). The workers are started (and their imports done) before the
  timer starts, as the study's are for every candidate but its first; their start-up is
  reported beside the times.
- **compiled, in one process** (twice, last): the before path with `SFTCAST_COMPILE=on`,
  first with inductor's compilation in a fresh cache directory, then again in the same
  process, compiled already; with the graphs compiled.

Rounds alternate which of before and after runs first; every run fine-tunes into a new
folder, so nothing is reused. Written: `candidate.speedup` (median over rounds of before /
after wall time) and `probe.<task>.cost_fraction` (the after path's probe seconds over its SFT
seconds, median over rounds) to `benchmarks/results.json`.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from benchmarks.pretrain import matmul_peak
from benchmarks.results_json import record
from sftcast.config import RunParameters
from sftcast.device import compilations
from sftcast.study import workers as study_workers
from sftcast.study.candidate import StudyRow, study_candidate

ROUNDS = 3
VARIANT = "clm-lr4e-3"
STUDY = Path(__file__).resolve().parents[1] / "configs" / "study.yaml"
BEFORE_PROBE_ROWS = {"train_rows": 64, "validation_rows": 48}
COMMAND = "python -m benchmarks candidate"


def _study() -> RunParameters:
    return RunParameters.model_validate(yaml.safe_load(STUDY.read_text())["parameters"])


def _candidate(params: RunParameters, root: Path) -> tuple[Path, Any, Any, float]:
    """The study's data, a tokenizer and one pre-trained study candidate under `root`; with
    the pre-training's tokens/s."""
    from sftcast.data import build_all
    from sftcast.zoo.data import train_texts
    from sftcast.zoo.tokenizer import train_tokenizer
    from sftcast.zoo.train import pretrain_variant

    assert params.data is not None and params.zoo is not None
    corpus, task_data, _ = build_all(params.data)
    rows = {t: {s: ds.to_list() for s, ds in dd.items()} for t, dd in task_data.items()}
    texts = train_texts(corpus)
    train_tokenizer(
        [t for docs in texts.values() for t in docs],
        params.zoo.tokenizer_vocab_size,
        root / "tokenizer",
        model_max_length=params.zoo.model.max_length,
    )
    run = pretrain_variant(
        params.zoo.variant(VARIANT), corpus, root / "tokenizer", root / "zoo", progress=False
    )
    return run.checkpoints[max(run.checkpoints)], corpus, rows, run.tokens_per_s


def _env(**values: str) -> Any:
    """These environment variables set for a block, the old ones back after it."""
    return mock.patch.dict(os.environ, values)


def _measure(
    arm: str, params: RunParameters, candidate: Path, corpus: Any, rows: Any, root: Path
) -> tuple[float, StudyRow]:
    assert params.sft and params.evaluation and params.proxies and params.study
    # one seed, as the unit of work: the study's extra seeds multiply it alike
    sft = params.sft.model_copy(
        update={"output_dir": tempfile.mkdtemp(dir=root), "replicate_candidates": []}
    )
    evaluation, proxies, workers = params.evaluation, params.proxies, params.study.workers
    if arm != "after":
        evaluation = evaluation.model_copy(update={"generation": "generate", "share_prefix": False})
        proxies = proxies.model_copy(
            update={
                "probes": {
                    t: s.model_copy(update=BEFORE_PROBE_ROWS) for t, s in proxies.probes.items()
                }
            }
        )
        workers = 1
    compile_setting = {"before": "off", "after": os.environ.get("SFTCAST_COMPILE", "auto")}
    with _env(SFTCAST_COMPILE=compile_setting.get(arm, "on")):
        start = time.perf_counter()
        row = study_candidate(
            candidate, f"zoo:{VARIANT}@150", corpus, rows, sft, evaluation, proxies, workers
        )
        return time.perf_counter() - start, row


def run() -> str:
    params = _study()
    assert params.sft is not None and params.study is not None
    peak = matmul_peak()
    with (
        tempfile.TemporaryDirectory(prefix="sftcast-candidate-") as tmp,
        _env(TORCHINDUCTOR_CACHE_DIR=str(Path(tmp) / "inductor")),  # compilation counted
    ):
        root = Path(tmp)
        candidate, corpus, rows, zoo_tps = _candidate(params, root)
        pool_start = study_workers.warm(params.study.workers)
        times: dict[str, list[float]] = {"before": [], "after": []}
        parts: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for i in range(ROUNDS):
            for arm in ("before", "after") if i % 2 == 0 else ("after", "before"):
                wall, row = _measure(arm, params, candidate, corpus, rows, root)
                times[arm].append(wall)
                parts[arm].append(row.seconds)
                print(f"round {i + 1} {arm}: {wall:.1f} s", file=sys.stderr, flush=True)
        graphs_before = compilations()
        with _env(TORCHINDUCTOR_CACHE_DIR=str(root / "inductor-in-process")):
            compiled = [_measure("compiled", params, candidate, corpus, rows, root)]
            compiled.append(_measure("compiled", params, candidate, corpus, rows, root))
        graphs = compilations() - graphs_before
        study_workers.shutdown()
        generation = _generation(params, candidate, rows, root)
    ratios = [b / a for b, a in zip(times["before"], times["after"], strict=True)]
    speedup = statistics.median(ratios)
    tasks = params.sft.tasks
    fractions = {
        t: statistics.median(p[f"probe_{t}"] / p[f"sft_{t}"] for p in parts["after"]) for t in tasks
    }
    record(
        {"candidate.speedup": round(speedup, 3)}
        | {f"probe.{t}.cost_fraction": round(f, 4) for t, f in fractions.items()},
        COMMAND,
    )
    section = _section(times, parts, ratios, peak, zoo_tps, fractions, compiled, graphs, tasks,
                       pool_start)  # fmt: skip
    return section + "\n\n" + generation


def _generation(params: RunParameters, candidate: Path, rows: Any, root: Path) -> str:
    """Greedy answers' examples/s, the decoding loop against `generate`, on the candidate
    few-shot (as the base scores are made) and on its fine-tuned models zero-shot."""
    from sftcast.evaluation.evaluate import _demos
    from sftcast.evaluation.scoring import greedy_generate
    from sftcast.prompts import encode_example
    from sftcast.zoo.model import load_model

    ev = params.evaluation
    assert ev is not None
    lines = [
        "Greedy answers (`evaluation.generation`), examples/s over the study's "
        f"{ev.max_examples} test rows, median of {ROUNDS} rounds alternating which runs first; "
        "`loop` stops a batch once every row has ended, `generate` runs to eos:",
        "",
        "| model | task | generate ex/s | loop ex/s | loop / generate | same answers |",
        "|---|---|---|---|---|---|",
    ]
    for task in ("cbqa", "rag"):
        tuned = sorted(root.glob(f"*/{task}/*/model.safetensors"))
        for kind, folder, shots in (
            ("pre-trained, few-shot", candidate, ev.shots.get(task, 0)),
            ("fine-tuned, zero-shot", tuned[-1].parent, 0),
        ):
            model, tokenizer = load_model(folder)
            model.eval()
            demos = _demos(rows[task]["train"], shots, ev.seed)
            prompts = [
                encode_example(
                    tokenizer, task, row, max_length=ev.max_length - ev.max_new_tokens,
                    demos=demos, demo_context_tokens=ev.demo_context_tokens, training=False,
                ).prompt_ids
                for row in rows[task][ev.split][: ev.max_examples]
            ]  # fmt: skip
            rates: dict[str, list[float]] = {"generate": [], "loop": []}
            answers: dict[str, list[str]] = {}
            for i in range(ROUNDS):
                for method in ("generate", "loop") if i % 2 == 0 else ("loop", "generate"):
                    start = time.perf_counter()
                    answers[method] = greedy_generate(
                        model, tokenizer, prompts, max_new_tokens=ev.max_new_tokens,
                        batch_size=ev.batch_size, method=method,  # type: ignore[arg-type]
                    )  # fmt: skip
                    rates[method].append(len(prompts) / (time.perf_counter() - start))
            old, new = (statistics.median(rates[m]) for m in ("generate", "loop"))
            same = sum(a == b for a, b in zip(answers["generate"], answers["loop"], strict=True))
            lines.append(
                f"| {kind} | {task} | {old:.0f} | {new:.0f} | {new / old:.2f}x "
                f"| {same} of {len(prompts)} |"
            )
    return "\n".join(lines)


def _section(
    times: dict[str, list[float]],
    parts: dict[str, list[dict[str, float]]],
    ratios: list[float],
    peak: float,
    zoo_tps: float,
    fractions: dict[str, float],
    compiled: list[tuple[float, StudyRow]],
    graphs: int,
    tasks: list[str],
    pool_start: float,
) -> str:
    # the fidelities' seconds are training time up to a point of a fine-tune: not parts
    parts = {
        arm: [{k: v for k, v in p.items() if not k.startswith("val_loss_")} for p in rows]
        for arm, rows in parts.items()
    }
    names = sorted({k for p in parts["before"] + parts["after"] for k in p})
    lines = [
        "## One candidate end to end (`benchmarks/candidate.py`)",
        "",
        f"`{COMMAND}`: one `configs/study.yaml` candidate ({VARIANT}@150) measured as the "
        f"study does (proxies, probes, SFT + evaluation on {', '.join(tasks)}), before issue "
        "#30's changes (one process, torch's threads, `generate`, every few-shot prompt run "
        "whole, probes 64/48) and after them (the study's worker processes, the decoding "
        "loop, the demonstrations run once, probes 32/32; compile as "
        "`SFTCAST_COMPILE` leaves it); rounds alternate which runs first. Matmul peak "
        f"{peak:.0f} GFLOP/s; the candidate's pre-training ran at {zoo_tps:,.0f} tokens/s.",
        "",
        "| round | before s | after s | before / after |",
        "|---|---|---|---|",
    ]
    for i, (b, a, r) in enumerate(zip(times["before"], times["after"], ratios, strict=True)):
        lines.append(f"| {i + 1} | {b:.1f} | {a:.1f} | {r:.2f}x |")
    spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    overall = sum(times["before"]) / sum(times["after"])
    lines += [
        "",
        f"Speed-up, median of rounds: **{statistics.median(ratios):.2f}x** (std {spread:.2f} "
        f"over rounds; target >= 2x); all rounds' time, before over after: {overall:.2f}x. "
        f"Starting the workers, imports included, once before the timer: {pool_start:.1f} s.",
        "",
        "Seconds per part (median over rounds; after: each part inside its worker, so the "
        "parts overlap and sum to more than the wall time):",
        "",
        "| part | before | after |",
        "|---|---|---|",
    ]
    for name in names:
        cells = [
            f"{statistics.median(p.get(name, 0.0) for p in parts[arm]):.2f}"
            for arm in ("before", "after")
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    summed = [statistics.median(sum(p.values()) for p in parts[arm]) for arm in parts]
    walls = [statistics.median(times[arm]) for arm in parts]
    lines.append(f"| parts summed | {summed[0]:.2f} | {summed[1]:.2f} |")
    lines.append(f"| wall | {walls[0]:.2f} | {walls[1]:.2f} |")
    lines += [
        "",
        "Probe cost, the after path's probe seconds over its SFT's (median over rounds; target "
        "<= 5%): " + ", ".join(f"{t} {100 * f:.1f}%" for t, f in fractions.items()) + ".",
        "",
        f"Compiled (`SFTCAST_COMPILE=on`, the before path otherwise, in one process, "
        f"{graphs} graph(s) compiled): first, inductor's cache empty, {compiled[0][0]:.1f} s; "
        f"again, compiled already, {compiled[1][0]:.1f} s; the before path's median "
        f"{statistics.median(times['before']):.1f} s. SFT seconds, eager (median) / compiled "
        "again: "
        + ", ".join(
            f"{t} {statistics.median(p[f'sft_{t}'] for p in parts['before']):.1f} / "
            f"{compiled[1][1].seconds[f'sft_{t}']:.1f}"
            for t in tasks
        )
        + ". No GPU on this machine: the CUDA / bf16 path was not measured here.",
    ]
    return "\n".join(lines)
