"""Evaluation protocols of the source papers: base models few-shot, fine-tuned models zero-shot.

- `cls` is scored by TokenProb accuracy; `cbqa` and `rag` by exact match, token F1 and ROUGE-L
  of a greedy answer of at most `max_new_tokens` tokens.
- `evaluate_base`: a pre-trained candidate on every task, `shots[task]` demonstrations drawn
  from the task's train split with a fixed seed (the same demonstrations for every candidate).
- `evaluate_finetuned`: a model fine-tuned on one task, zero-shot on that task in each prompt
  format, and on the other tasks with the base protocol, so that the mean ratio of change
  (forgetting) compares like with like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sftcast.data.schema import NEWS_TOPICS
from sftcast.evaluation.choice import answer_pools, options
from sftcast.evaluation.config import EvaluationConfig
from sftcast.evaluation.metrics import exact_match, mean_ratio_of_change, rouge_l, token_f1
from sftcast.evaluation.scoring import (
    greedy_generate,
    label_token_ids,
    shared_prefix,
    target_logprobs,
    tokenprob_scores,
)
from sftcast.prompts import encode_example

PRIMARY_METRIC = {"cbqa": "f1", "rag": "f1", "cls": "accuracy"}
CHOICE_METRIC = "choice_accuracy"
QA_METRICS = {"exact_match": exact_match, "f1": token_f1, "rouge_l": rouge_l}
Scores = dict[str, float]


def primary(task: str, scores: Mapping[str, float]) -> float:
    """The task's headline score: its multiple-choice accuracy where it was scored so
    (`EvaluationConfig.choices`), else its primary metric."""
    metric = CHOICE_METRIC if CHOICE_METRIC in scores else PRIMARY_METRIC[task]
    if metric not in scores:
        raise ValueError(f"the scores of {task!r} lack its primary metric {metric!r}")
    return float(scores[metric])


def _demos(train: Sequence[Mapping[str, Any]], k: int, seed: int) -> list[Mapping[str, Any]]:
    if k == 0:
        return []
    if len(train) < k:
        raise ValueError(f"{k} demonstrations asked for but the train split has {len(train)} rows")
    picked = np.random.default_rng(seed).choice(len(train), size=k, replace=False)
    return [train[int(i)] for i in picked]


def evaluate_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    dataset: Mapping[str, Sequence[Mapping[str, Any]]],
    config: EvaluationConfig,
    *,
    shots: int = 0,
    fmt: str = "train",
) -> Scores:
    """The task's scores on `config.split`, `shots` demonstrations in front of each prompt."""
    rows = list(dataset[config.split])[: config.max_examples]
    demos = _demos(dataset["train"], shots, config.seed)
    prompts = [
        encode_example(
            tokenizer,
            task,
            row,
            fmt,
            max_length=config.max_length - config.max_new_tokens,
            demos=demos,
            demo_context_tokens=config.demo_context_tokens,
            training=False,
        ).prompt_ids
        for row in rows
    ]
    model.eval()
    share = bool(demos) and config.share_prefix
    # only TokenProb and generation run these prompts: multiple choice runs one prompt per
    # option and finds their shared prefix itself
    scored_here = task == "cls" or task not in config.choices
    prefix = shared_prefix(model, prompts) if share and scored_here else None
    if task == "cls":
        scores = tokenprob_scores(
            model,
            prompts,
            label_token_ids(tokenizer, NEWS_TOPICS),
            pad_id=tokenizer.pad_token_id,
            batch_size=config.batch_size,
            prefix=prefix,
        )
        predicted = [NEWS_TOPICS[j] for j in scores.argmax(dim=1).tolist()]
        gold = [r["label"] for r in rows]
        return {"accuracy": float(np.mean(np.array(predicted) == np.array(gold)))}
    if task in config.choices:
        accuracy = _choice_accuracy(
            model, tokenizer, task, rows, dataset, config, demos, fmt, share
        )
        return {CHOICE_METRIC: accuracy}
    answers = greedy_generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        method=config.generation,
        prefix=prefix,
    )
    pairs = list(zip(answers, (r["answers"] for r in rows), strict=True))
    return {
        name: float(np.mean([fn(a, gold) for a, gold in pairs])) for name, fn in QA_METRICS.items()
    }


def evaluate_base(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    datasets: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    config: EvaluationConfig,
) -> dict[str, Scores]:
    """A pre-trained candidate, few-shot on every task."""
    return {
        task: evaluate_task(model, tokenizer, task, ds, config, shots=config.shots.get(task, 0))
        for task, ds in datasets.items()
    }


class FinetunedScores(BaseModel):
    task: str
    formats: dict[str, Scores]  # the trained task, zero-shot, per prompt format
    other_tasks: dict[str, Scores]  # with the base protocol (few-shot)
    base: dict[str, Scores]
    mrc: float  # mean ratio of change on the other tasks (primary metrics)

    @property
    def score(self) -> float:
        """The post-SFT score: the trained task, zero-shot, training format."""
        return primary(self.task, self.formats["train"])

    @property
    def base_score(self) -> float:
        return primary(self.task, self.base[self.task])

    def flat_metrics(self) -> dict[str, float]:
        """`<task>.<format>.<metric>`, `<other>.fewshot.<metric>`, `score`, `base_score`, `mrc`."""
        flat = {
            f"{self.task}.{fmt}.{m}": v for fmt, s in self.formats.items() for m, v in s.items()
        }
        flat |= {f"{t}.fewshot.{m}": v for t, s in self.other_tasks.items() for m, v in s.items()}
        flat |= {f"base.{t}.{m}": v for t, s in self.base.items() for m, v in s.items()}
        flat |= {
            "score": self.score,
            "base_score": self.base_score,
            "sft_gain": self.score - self.base_score,
        }
        if self.other_tasks:
            flat["mrc"] = self.mrc
        return flat


def evaluate_finetuned(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    datasets: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    base: Mapping[str, Scores],
    config: EvaluationConfig,
) -> FinetunedScores:
    formats = {
        fmt: evaluate_task(model, tokenizer, task, datasets[task], config, fmt=fmt)
        for fmt in config.formats
    }
    others = (
        evaluate_base(model, tokenizer, {t: ds for t, ds in datasets.items() if t != task}, config)
        if config.forgetting
        else {}
    )
    mrc = mean_ratio_of_change(
        {t: primary(t, s) for t, s in others.items()}, {t: primary(t, base[t]) for t in others}
    )
    return FinetunedScores(task=task, formats=formats, other_tasks=others, base=dict(base), mrc=mrc)


def _choice_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    rows: Sequence[Mapping[str, Any]],
    dataset: Mapping[str, Sequence[Mapping[str, Any]]],
    config: EvaluationConfig,
    demos: Sequence[Mapping[str, Any]],
    fmt: str,
    share: bool = False,
) -> float:
    """The share of rows whose gold answer the model finds likelier than each distractor;
    with `share`, the tokens every option's prompt begins with (the demonstrations) run once."""
    pools = answer_pools(dataset)
    per_row = [options(row, pools, config.choices[task], config.seed) for row in rows]
    examples = [
        encode_example(
            tokenizer,
            task,
            {**row, "answers": [option]},
            fmt,
            max_length=config.max_length,
            demos=demos,
            demo_context_tokens=config.demo_context_tokens,
        )
        for row, opts in zip(rows, per_row, strict=True)
        for option in opts
    ]
    prefix = shared_prefix(model, [e.prompt_ids for e in examples]) if share else None
    logprobs = target_logprobs(
        model, examples, tokenizer.pad_token_id, config.batch_size, prefix=prefix
    )
    correct, start = [], 0
    for opts in per_row:
        scores = logprobs[start : start + len(opts)]
        # the gold answer must beat every distractor; a tie is not a win
        correct.append(bool(len(opts) == 1 or scores[0] > scores[1:].max()))
        start += len(opts)
    return float(np.mean(correct))
