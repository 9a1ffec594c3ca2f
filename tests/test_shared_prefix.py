"""Few-shot prompts share their demonstrations: run once and reused by every batch, they give
the scores and answers of running each prompt whole, for fewer tokens through the model."""

from __future__ import annotations

import pytest
import torch

from sftcast.evaluation import EvaluationConfig, evaluate_task
from sftcast.evaluation.evaluate import _demos
from sftcast.evaluation.scoring import (
    MIN_SHARED_TOKENS,
    greedy_generate,
    label_token_ids,
    shared_prefix,
    target_logprobs,
    tokenprob_scores,
)
from sftcast.prompts import encode_example
from sftcast.zoo.model import load_model


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_candidate):
    model, tokenizer = load_model(tiny_candidate)
    return model.eval(), tokenizer


def _encoded(tokenizer, rows, task: str, shots: int, n: int = 9, training: bool = False):
    demos = _demos(rows[task]["train"], shots, seed=0)
    return [
        encode_example(tokenizer, task, row, max_length=256, demos=demos, training=training)
        for row in rows[task]["test"][:n]
    ]


class _TokenCount:
    """Counts the token positions the decoder's forward passes take inside the block."""

    def __init__(self, model) -> None:
        self.decoder, self.tokens = model.get_decoder(), 0

    def __enter__(self) -> _TokenCount:
        self.hook = self.decoder.register_forward_hook(self._count, with_kwargs=True)
        return self

    def __exit__(self, *_) -> None:
        self.hook.remove()

    def _count(self, _module, _args, kwargs, _out) -> None:
        self.tokens += kwargs["input_ids"].numel()


def test_the_shared_prefix_is_the_demonstrations_and_zero_shot_prompts_share_none(
    model_and_tokenizer, tiny_task_rows
) -> None:
    model, tokenizer = model_and_tokenizer
    prompts = [e.prompt_ids for e in _encoded(tokenizer, tiny_task_rows, "cbqa", 2)]
    prefix = shared_prefix(model, prompts)
    assert prefix is not None and prefix.length >= MIN_SHARED_TOKENS
    assert all(p[: prefix.length] == prompts[0][: prefix.length] for p in prompts)
    assert prefix.length < min(map(len, prompts))  # every row keeps a token to score
    assert prefix.keys_values[0][0].shape[-2] == prefix.length
    zero_shot = [e.prompt_ids for e in _encoded(tokenizer, tiny_task_rows, "cbqa", 0)]
    assert shared_prefix(model, zero_shot) is None


def test_scores_and_answers_after_a_shared_prefix_equal_those_of_whole_prompts(
    model_and_tokenizer, tiny_task_rows
) -> None:
    model, tokenizer = model_and_tokenizer
    pad = tokenizer.pad_token_id
    cls = [e.prompt_ids for e in _encoded(tokenizer, tiny_task_rows, "cls", 2)]
    labels = label_token_ids(tokenizer, ["business", "sport", "tech"])
    whole = tokenprob_scores(model, cls, labels, pad_id=pad, batch_size=4)
    shared = tokenprob_scores(
        model, cls, labels, pad_id=pad, batch_size=4, prefix=shared_prefix(model, cls)
    )
    torch.testing.assert_close(shared, whole, atol=1e-4, rtol=1e-4)

    examples = _encoded(tokenizer, tiny_task_rows, "cbqa", 3, training=True)
    assert len({len(e.input_ids) for e in examples}) > 1  # padding is exercised
    prefix = shared_prefix(model, [e.prompt_ids for e in examples])
    torch.testing.assert_close(
        target_logprobs(model, examples, pad, batch_size=4, prefix=prefix),
        target_logprobs(model, examples, pad, batch_size=4),
        atol=1e-4,
        rtol=1e-4,
    )

    rag = [e.prompt_ids for e in _encoded(tokenizer, tiny_task_rows, "rag", 1)]
    assert len({len(p) for p in rag}) > 1  # left padding between prefix and row
    kwargs = {"max_new_tokens": 6, "batch_size": 4, "stop": ""}
    assert greedy_generate(
        model, tokenizer, rag, prefix=shared_prefix(model, rag), **kwargs
    ) == greedy_generate(model, tokenizer, rag, **kwargs)


def test_evaluation_runs_the_demonstrations_once_for_the_same_scores(
    model_and_tokenizer, tiny_task_rows
) -> None:
    model, tokenizer = model_and_tokenizer
    settings = {"max_examples": 10, "max_length": 256, "max_new_tokens": 4, "batch_size": 4}
    for task, extra in (("cls", {}), ("cbqa", {"choices": {"cbqa": 3}}), ("rag", {})):
        scores, tokens = {}, {}
        for share in (True, False):
            config = EvaluationConfig(**settings, **extra, share_prefix=share)
            with _TokenCount(model) as counted:
                scores[share] = evaluate_task(
                    model, tokenizer, task, tiny_task_rows[task], config, shots=2
                )
            tokens[share] = counted.tokens
        assert scores[True] == pytest.approx(scores[False]), task
        assert tokens[True] < tokens[False], task
