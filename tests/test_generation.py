"""Greedy answers: the decoding loop with its KV cache gives `generate`'s answers, and stops a
batch as soon as every row has ended."""

from __future__ import annotations

import torch

from sftcast.evaluation.evaluate import _demos
from sftcast.evaluation.scoring import greedy_generate, stop_token_ids
from sftcast.prompts import encode_example
from sftcast.zoo.model import load_model


def _prompts(tokenizer, rows, n: int) -> list[list[int]]:
    demos = _demos(rows["train"], 1, seed=0)
    encoded = [
        encode_example(tokenizer, "cbqa", row, max_length=96, demos=demos, training=False)
        for row in rows["test"][:n]
    ]
    return [e.prompt_ids for e in encoded]


def test_the_decoding_loop_answers_as_generate_does(tiny_candidate, tiny_task_rows) -> None:
    model, tokenizer = load_model(tiny_candidate)
    model.eval()
    prompts = _prompts(tokenizer, tiny_task_rows["cbqa"], 11)  # lengths differ: left padding
    assert len({len(p) for p in prompts}) > 1
    for stop in ("\n", ""):
        answers = {
            method: greedy_generate(
                model, tokenizer, prompts, max_new_tokens=6, batch_size=4, stop=stop, method=method
            )
            for method in ("loop", "generate")
        }
        assert answers["loop"] == answers["generate"], stop
    assert any(answers["loop"])  # an untrained model still says something


def test_a_batch_stops_once_every_row_has_ended(tiny_candidate, tiny_task_rows) -> None:
    model, tokenizer = load_model(tiny_candidate)
    model.eval()
    prompts = _prompts(tokenizer, tiny_task_rows["cbqa"], 1)
    with torch.inference_mode():
        first = int(model(input_ids=torch.tensor(prompts)).logits[0, -1].argmax())
    stop = tokenizer.decode([first])  # the model's first token ends its answer
    assert first in stop_token_ids(tokenizer, stop)
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    loop = greedy_generate(model, tokenizer, prompts, max_new_tokens=8, stop=stop)
    assert len(calls) == 1  # one forward pass: the prompt's, whose token ended the row
    calls.clear()
    generated = greedy_generate(
        model, tokenizer, prompts, max_new_tokens=8, stop=stop, method="generate"
    )
    assert len(calls) == 8 and generated == loop  # generate runs on to max_new_tokens
