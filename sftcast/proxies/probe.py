"""Fine-tuning probes: how a candidate *starts* to fine-tune, as proxies of how it ends.

After LensLLM (ICML 2025) and the rectified scaling law of Lin et al. (ICML 2024): the first
steps of fine-tuning predict its outcome better than pre-training metrics. Per task, a probe
fine-tunes the candidate on a small seeded slice of the task's train split with the real SFT's
recipe (prompt format, answer-only loss, optimizer, schedule; `ProbeSettings` overrides only
the size and the learning rate), reads it out on a small seeded validation slice, and throws
the model away: nothing is saved or registered.

Read-outs per task (which one predicts best is learnt per task on the training candidates, by
the comparator, never assumed):
- `answer_loss_<task>`: the *base* model's loss on the validation answers in the task's
  prompt format, zero-shot (lower is better; costs one forward pass, no training);
- `probe_loss_<task>`: the same loss after the probe (lower is better);
- `probe_drop_<task>`: how far the probe moved it, `answer_loss - probe_loss` (higher);
- `probe_<task>`: the probe model's task score on the validation slice (higher); it generates
  answers, the costliest read-out, so `ProbeSettings.score` can leave it out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sftcast.evaluation.config import EvaluationConfig
from sftcast.evaluation.evaluate import evaluate_task, primary
from sftcast.proxies.config import ProbeSettings
from sftcast.sft.config import SFTConfig
from sftcast.sft.data import sample_rows
from sftcast.sft.train import answer_loss, fit
from sftcast.zoo.model import load_model


class ProbeResult(BaseModel):
    task: str
    values: dict[str, float]  # the READOUTS, named for the task
    seconds: float  # wall time of the whole probe: both read-outs and the training
    steps: int


def probe(
    candidate_dir: Path,
    task: str,
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    sft: SFTConfig,
    settings: ProbeSettings,
    evaluation: EvaluationConfig,
) -> ProbeResult:
    """Probe the candidate on `task` (`rows`: split -> rows) with the task's SFT recipe."""
    start = time.perf_counter()
    recipe = sft.for_task(task).model_copy(
        update={
            "train_examples": None,
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "fidelities": [],  # a probe's read-outs are its own
        }
    )
    train = sample_rows(rows["train"], settings.train_rows, settings.seed)
    validation = sample_rows(rows["validation"], settings.validation_rows, settings.seed)
    base, tokenizer = load_model(candidate_dir)
    before = answer_loss(base, tokenizer, task, validation, recipe)
    fitted = fit(
        candidate_dir, task, train, recipe, settings.seed, progress=False,
        loaded=(base, tokenizer),
    )  # fmt: skip
    after = answer_loss(fitted.model, tokenizer, task, validation, recipe)
    values = {
        f"answer_loss_{task}": before,
        f"probe_loss_{task}": after,
        f"probe_drop_{task}": before - after,
    }
    if settings.score:
        scoring = EvaluationConfig(
            split="validation",
            max_new_tokens=evaluation.max_new_tokens,
            max_length=evaluation.max_length,
            batch_size=evaluation.batch_size,
            formats=["train"],
            forgetting=False,
        )
        scores = evaluate_task(
            fitted.model, tokenizer, task, {"train": train, "validation": validation}, scoring
        )
        values[f"probe_{task}"] = primary(task, scores)
    return ProbeResult(
        task=task, values=values, seconds=time.perf_counter() - start, steps=len(fitted.losses)
    )
