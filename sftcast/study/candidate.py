"""One candidate of the study: every proxy (probes included), then a fine-tune and an
evaluation per task, each timed; fine-tuned models are kept on disk under their SFT key (so a
killed study resumes without retraining) and never registered.

The parts are independent (each loads the candidate from its folder), so `workers` processes
may measure them side by side (`sftcast.study.workers`); the fine-tunes go first, the longest
first, so that the short parts fill the gaps at the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sftcast.data.rows import TaskRows
from sftcast.evaluation import EvaluationConfig, evaluate_base, evaluate_task
from sftcast.evaluation.evaluate import primary
from sftcast.proxies import ProxyConfig, compute_proxies, kshot_proxies
from sftcast.proxies.probe import probe
from sftcast.sft.config import SFTConfig
from sftcast.sft.service import task_settings
from sftcast.sft.train import Fidelity, finetune
from sftcast.study.workers import run_parts
from sftcast.zoo.model import load_model


class StudyRow(BaseModel):
    """What the study measured on one candidate."""

    model_config = ConfigDict(frozen=True)

    candidate: str
    proxies: dict[str, float]  # every proxy, probes included, by name
    scores: dict[str, float]  # task -> post-SFT score (main seed)
    replicate_scores: dict[str, dict[int, float]] = {}  # task -> extra seed -> score
    # what each part cost: proxies, base (few-shot scores), probe_<task>, sft_<task> (the
    # fine-tune's training time as first measured, also when its folder is reused on a resume)
    # and eval_<task> (scoring the fine-tuned model); val_loss_<task>_at<fraction>: the training
    # seconds to reach that fidelity
    seconds: dict[str, float]
    # the main seed's fine-tune's validation loss part way (`sft.fidelities`), by column name
    # `val_loss_<task>_at<fraction>`
    fidelities: dict[str, float] = {}


def study_candidate(
    candidate: Path,
    uri: str,
    corpus: Mapping[str, Any],
    rows: TaskRows,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    proxies: ProxyConfig,
    workers: int = 1,
) -> StudyRow:
    """Measure `candidate` (fetched as `uri`): proxies, probes, and SFT on each of `sft.tasks`
    with the main seed and, if it is a replicated candidate, `sft.replicate_seeds`."""
    extra_seeds = sft.extra_seeds(uri)
    tasks = sorted(sft.tasks, key=lambda t: -_sft_steps(sft, t))
    parts: list[tuple[Any, tuple[Any, ...]]] = [
        (_task_part, (candidate, uri, task, rows[task], sft, evaluation, extra_seeds))
        for task in tasks
    ]
    parts.append((_proxies_part, (candidate, corpus, proxies)))
    parts.append((_base_part, (candidate, rows, evaluation)))
    parts += [
        (probe, (candidate, task, rows[task], sft, settings, evaluation))
        for task, settings in proxies.probes.items()
    ]
    done = run_parts(parts, workers)
    (computed, seconds), (kshot, base_seconds) = done[len(tasks) : len(tasks) + 2]
    values, seconds = {**computed, **kshot}, {**seconds, **base_seconds}
    scores: dict[str, float] = {}
    replicates: dict[str, dict[int, float]] = {}
    fidelities: dict[str, float] = {}
    for task, (score, timing, extra, reached) in zip(tasks, done, strict=False):
        scores[task], replicates[task] = score, extra
        seconds |= {f"sft_{task}": timing[0], f"eval_{task}": timing[1]}
        for fidelity in reached:
            name = fidelity_column(task, fidelity.fraction)
            fidelities[name], seconds[name] = fidelity.loss, fidelity.seconds
    for result in done[len(tasks) + 2 :]:
        values |= result.values
        seconds[f"probe_{result.task}"] = result.seconds
    return StudyRow(
        candidate=uri,
        proxies=values,
        scores={t: scores[t] for t in sft.tasks},
        replicate_scores={t: r for t, r in replicates.items() if r},
        seconds=seconds,
        fidelities=fidelities,
    )


def fidelity_column(task: str, fraction: float) -> str:
    """`val_loss_<task>_at<fraction>`: the table's column of a fine-tune's loss part way."""
    return f"val_loss_{task}_at{fraction:.3g}"


def _sft_steps(sft: SFTConfig, task: str) -> float:
    settings = sft.for_task(task)
    return (settings.train_examples or 1000) * settings.epochs / settings.batch_size


def _proxies_part(
    candidate: Path, corpus: Mapping[str, Any], proxies: ProxyConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """The pre-training proxies, with their seconds."""
    t0 = time.perf_counter()
    computed = compute_proxies(candidate, corpus, proxies)
    return computed.values, {"proxies": time.perf_counter() - t0}


def _base_part(
    candidate: Path, rows: TaskRows, evaluation: EvaluationConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """The base model's few-shot scores (the kshot proxies), with their seconds."""
    t0 = time.perf_counter()
    model, tokenizer = load_model(candidate)
    base = evaluate_base(model, tokenizer, rows, evaluation)
    return kshot_proxies(base), {"base": time.perf_counter() - t0}


def _task_part(
    candidate: Path,
    uri: str,
    task: str,
    rows: Mapping[str, Any],
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    extra_seeds: list[int],
) -> tuple[float, tuple[float, float], dict[int, float], list[Fidelity]]:
    """The main seed's score, its fine-tune's and evaluation's seconds, the extra seeds'
    scores, and the main seed's fidelities."""
    settings, seed = task_settings(sft, task)
    score, timing, fidelities = _finetuned_score(
        candidate, uri, task, rows, settings, seed, evaluation
    )
    extra = {
        s: _finetuned_score(candidate, uri, task, rows, settings, s, evaluation)[0]
        for s in extra_seeds
    }
    return score, timing, extra, fidelities


def _finetuned_score(
    candidate: Path,
    uri: str,
    task: str,
    rows: Mapping[str, Any],
    settings: SFTConfig,
    seed: int,
    evaluation: EvaluationConfig,
) -> tuple[float, tuple[float, float], list[Fidelity]]:
    """Fine-tune (or reuse the folder of an identical fine-tune), then score zero-shot in the
    training format, the study's target; with the fine-tune's training seconds and the
    evaluation's, and the fine-tune's fidelities."""
    result = finetune(
        candidate, task, rows["train"], settings, candidate_uri=uri, seed=seed, progress=False,
        validation_rows=rows["validation"],
    )  # fmt: skip
    t0 = time.perf_counter()
    model, tokenizer = load_model(result.model_dir)
    score = primary(task, evaluate_task(model, tokenizer, task, rows, evaluation))
    return score, (result.wall_time_s, time.perf_counter() - t0), result.fidelities
