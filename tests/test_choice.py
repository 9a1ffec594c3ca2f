"""Multiple-choice scoring: distractors of the gold answer's relation, the same for every model,
and the model's probability of each answer computed in batches as one row at a time."""

from __future__ import annotations

import math

import pytest
import torch

from sftcast.evaluation import EvaluationConfig, evaluate_task
from sftcast.evaluation.choice import answer_pools, options
from sftcast.evaluation.evaluate import CHOICE_METRIC, primary
from sftcast.evaluation.scoring import target_logprobs
from sftcast.prompts import encode_example
from sftcast.proxies.registry import kshot_proxies
from sftcast.zoo.model import load_model


def _row(i: int, relation: str, answers: list[str]) -> dict:
    return {"id": f"r{i}", "question": f"q{i}?", "relation": relation, "answers": answers}


DATASET = {
    "train": [_row(0, "capital", ["Lima"]), _row(1, "capital", ["Quito"])],
    "test": [
        _row(2, "capital", ["Bern", "Berne"]),
        _row(3, "capital", ["Berne"]),  # row 2's alias: never row 2's distractor
        _row(4, "continent", ["Asia"]),
        _row(5, "continent", ["Africa"]),
    ],
}


def test_distractors_come_from_the_gold_answers_relation_and_never_match_its_aliases() -> None:
    pools = answer_pools(DATASET)
    assert pools == {"capital": ["Bern", "Berne", "Lima", "Quito"], "continent": ["Africa", "Asia"]}
    bern = DATASET["test"][0]
    picked = options(bern, pools, 8, seed=0)
    assert picked[0] == "Bern" and sorted(picked[1:]) == ["Lima", "Quito"]  # capped by the pool
    assert options(bern, pools, 2, seed=0) == options(bern, pools, 2, seed=0)  # every model alike
    drawn = {options(bern, pools, 2, seed=s)[1] for s in range(20)}
    assert drawn == {"Lima", "Quito"}  # the seed draws among them
    berne = options(DATASET["test"][1], pools, 8, seed=0)
    assert berne[0] == "Berne" and sorted(berne[1:]) == ["Bern", "Lima", "Quito"]


def test_target_logprobs_in_batches_equal_one_row_at_a_time(tiny_candidate, tiny_task_rows):
    model, tokenizer = load_model(tiny_candidate)
    model.eval()
    rows = tiny_task_rows["cbqa"]["test"][:7]
    examples = [encode_example(tokenizer, "cbqa", r, max_length=96) for r in rows]
    assert len({len(e.input_ids) for e in examples}) > 1  # padding is exercised
    batched = target_logprobs(model, examples, tokenizer.pad_token_id, batch_size=3)
    for e, got in zip(examples, batched, strict=True):
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([e.input_ids])).logits[0].float()
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        ids = e.input_ids[1:]
        start = len(e.prompt_ids) - 1
        expected = sum(float(logprobs[p, ids[p]]) for p in range(start, start + len(e.target_ids)))
        assert math.isclose(float(got), expected, rel_tol=1e-4, abs_tol=1e-4)
        assert float(got) < 0


def test_a_task_scored_by_choice_reports_its_accuracy_as_the_headline(
    tiny_candidate, tiny_task_rows
) -> None:
    model, tokenizer = load_model(tiny_candidate)
    dataset = tiny_task_rows["cbqa"]
    config = EvaluationConfig(max_examples=12, choices={"cbqa": 4}, max_new_tokens=4)
    scores = evaluate_task(model, tokenizer, "cbqa", dataset, config)
    assert set(scores) == {CHOICE_METRIC} and primary("cbqa", scores) == scores[CHOICE_METRIC]
    assert 0.0 <= scores[CHOICE_METRIC] <= 1.0
    assert scores[CHOICE_METRIC] * 12 == round(scores[CHOICE_METRIC] * 12)
    # one option is the gold answer alone: always right
    alone = config.model_copy(update={"choices": {"cbqa": 2}})
    single = {k: [{**r, "relation": r["id"]} for r in v] for k, v in dataset.items()}
    assert evaluate_task(model, tokenizer, "cbqa", single, alone)[CHOICE_METRIC] == 1.0
    generated = evaluate_task(
        model, tokenizer, "cbqa", dataset, config.model_copy(update={"choices": {}})
    )
    assert CHOICE_METRIC not in generated and primary("cbqa", generated) == generated["f1"]


def test_few_shot_proxies_read_the_choice_accuracy_where_a_task_was_scored_so() -> None:
    scores = {"cbqa": {CHOICE_METRIC: 0.4}, "rag": {"f1": 0.2, "exact_match": 0.1}}
    assert kshot_proxies(scores) == {"kshot_cbqa": 0.4, "kshot_rag": 0.2}
    with pytest.raises(ValueError, match="lack its primary metric 'f1'"):
        kshot_proxies({"cbqa": {"exact_match": 0.1}})
