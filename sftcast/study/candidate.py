"""One candidate of the study: every proxy (probes included), then a fine-tune and an
evaluation per task, each timed; fine-tuned models are kept on disk under their SFT key (so a
killed study resumes without retraining) and never registered."""

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
from sftcast.sft.train import finetune
from sftcast.zoo.model import load_model


class StudyRow(BaseModel):
    """What the study measured on one candidate."""

    model_config = ConfigDict(frozen=True)

    candidate: str
    proxies: dict[str, float]  # every proxy, probes included, by name
    scores: dict[str, float]  # task -> post-SFT score (main seed)
    replicate_scores: dict[str, dict[int, float]] = {}  # task -> extra seed -> score
    # what each part cost: proxies, base (few-shot scores), probe_<task>, and sft_<task> (the
    # fine-tune's training time as first measured, also when its folder is reused on a resume)
    seconds: dict[str, float]


def study_candidate(
    candidate: Path,
    uri: str,
    corpus: Mapping[str, Any],
    rows: TaskRows,
    sft: SFTConfig,
    evaluation: EvaluationConfig,
    proxies: ProxyConfig,
) -> StudyRow:
    """Measure `candidate` (fetched as `uri`): proxies, probes, and SFT on each of `sft.tasks`
    with the main seed and, if it is a replicated candidate, `sft.replicate_seeds`."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    computed = compute_proxies(candidate, corpus, proxies)
    seconds["proxies"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model, tokenizer = load_model(candidate)
    base = evaluate_base(model, tokenizer, rows, evaluation)
    seconds["base"] = time.perf_counter() - t0
    values = {**computed.values, **kshot_proxies(base)}

    for task, settings in proxies.probes.items():
        result = probe(candidate, task, rows[task], sft, settings, evaluation)
        values |= result.values
        seconds[f"probe_{task}"] = result.seconds

    scores: dict[str, float] = {}
    replicates: dict[str, dict[int, float]] = {}
    extra_seeds = sft.replicate_seeds if uri in sft.replicate_candidates else []
    for task in sft.tasks:
        settings, seed = task_settings(sft, task)
        scores[task], seconds[f"sft_{task}"] = _finetuned_score(
            candidate, uri, task, rows, settings, seed, evaluation
        )
        replicates[task] = {
            s: _finetuned_score(candidate, uri, task, rows, settings, s, evaluation)[0]
            for s in extra_seeds
        }
    return StudyRow(
        candidate=uri,
        proxies=values,
        scores=scores,
        replicate_scores={t: r for t, r in replicates.items() if r},
        seconds=seconds,
    )


def _finetuned_score(
    candidate: Path,
    uri: str,
    task: str,
    rows: TaskRows,
    settings: SFTConfig,
    seed: int,
    evaluation: EvaluationConfig,
) -> tuple[float, float]:
    """Fine-tune (or reuse the folder of an identical fine-tune), then score zero-shot in the
    training format, the study's target; with the fine-tune's training seconds."""
    result = finetune(
        candidate, task, rows[task]["train"], settings, candidate_uri=uri, seed=seed,
        progress=False,
    )  # fmt: skip
    model, tokenizer = load_model(result.model_dir)
    score = primary(task, evaluate_task(model, tokenizer, task, rows[task], evaluation))
    return score, result.wall_time_s
