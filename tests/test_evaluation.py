"""Evaluation metrics, prompt formats and TokenProb on hand-computed cases."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from pydantic import ValidationError
from transformers import LlamaConfig, LlamaForCausalLM

from sftcast.evaluation import exact_match, mean_ratio_of_change, rouge_l, token_f1
from sftcast.evaluation.report import (
    SFTRecord,
    SFTReport,
    plot_scores_by_step,
    signal_to_noise,
)
from sftcast.evaluation.scoring import label_token_ids, tokenprob_scores
from sftcast.prompts import FORMATS, encode_example, render

QA_ROW = {"question": "What is the capital of France?", "answers": ["Paris", "Paname"]}
RAG_ROW = {**QA_ROW, "passage": "Paris is the capital and largest city of France. " * 40}


@pytest.mark.parametrize(
    ("prediction", "answers", "em", "f1"),
    [
        ("Paris", ["Paris"], 1.0, 1.0),
        ("the  paris.", ["Paris"], 1.0, 1.0),  # case, article, punctuation, spaces
        ("Paname", ["Paris", "Paname"], 1.0, 1.0),  # any alias counts
        ("Paris France", ["Paris"], 0.0, 2 / 3),  # p = 1/2, r = 1 -> 2/3
        ("New York City", ["York"], 0.0, 0.5),  # p = 1/3, r = 1 -> 1/2
        ("Lyon", ["Paris"], 0.0, 0.0),
        ("", ["Paris"], 0.0, 0.0),
    ],
)
def test_exact_match_and_token_f1(prediction: str, answers: list[str], em: float, f1: float):
    assert exact_match(prediction, answers) == em
    assert token_f1(prediction, answers) == pytest.approx(f1)


def test_rouge_l_is_the_longest_common_subsequence_f_measure() -> None:
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 tokens: p = 5/6, r = 5/5
    assert rouge_l("the cat sat on the mat", ["the cat on the mat"]) == pytest.approx(
        2 * (5 / 6) * 1 / (5 / 6 + 1)
    )
    assert rouge_l("paris", ["lyon", "Paris"]) == 1.0  # best reference wins
    assert rouge_l("paris", []) == 0.0


def test_mean_ratio_of_change() -> None:
    # (0.3 - 0.4) / 0.4 = -0.25 and (0.6 - 0.5) / 0.5 = +0.2 -> mean -0.025
    assert mean_ratio_of_change({"a": 0.3, "b": 0.6}, {"a": 0.4, "b": 0.5}) == pytest.approx(-0.025)
    # a task whose base is 0 has no ratio
    assert mean_ratio_of_change({"a": 0.3, "b": 0.5}, {"a": 0.0, "b": 0.25}) == pytest.approx(1.0)
    assert math.isnan(mean_ratio_of_change({"a": 0.3}, {"a": 0.0}))


class CharTokenizer:
    """A token per character, a leading space joined to its character (like BPE's "Ġx");
    bos 1, eos 2, pad 0: token counts are easy to reason about."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = False, verbose: bool = True):
        pieces = re.findall(r" ?.", text, flags=re.DOTALL)
        return {"input_ids": [self.vocab.setdefault(p, 3 + len(self.vocab)) for p in pieces]}

    def convert_ids_to_tokens(self, i: int) -> str:
        return next(p for p, j in self.vocab.items() if j == i)


def test_formats_render_the_same_question_three_ways() -> None:
    prompts = {fmt: render("cbqa", QA_ROW, fmt) for fmt in FORMATS}
    assert prompts["train"].prompt == "Question: What is the capital of France?\nAnswer:"
    assert prompts["train"].target == " Paris"
    assert prompts["plain"].prompt == "What is the capital of France?\n"
    assert prompts["instruction"].prompt.startswith("### Instruction:\n")
    assert prompts["instruction"].prompt.endswith("### Response:\n")
    assert len({p.prompt for p in prompts.values()}) == 3
    with pytest.raises(ValueError, match="unknown prompt format"):
        render("cbqa", QA_ROW, "chat")


def test_long_context_is_cut_but_the_question_and_answer_are_kept() -> None:
    tok = CharTokenizer()
    enc = encode_example(tok, "rag", RAG_ROW, "train", max_length=120)
    assert len(enc.input_ids) == 120
    tail = tok("\nQuestion: What is the capital of France?\nAnswer:")["input_ids"]
    assert enc.prompt_ids[-len(tail) :] == tail
    assert enc.target_ids == [*tok(" Paris")["input_ids"], tok.eos_token_id]
    # for evaluation the target takes no room and gets no eos
    ev = encode_example(tok, "rag", RAG_ROW, "train", max_length=120, training=False)
    assert len(ev.prompt_ids) == 120
    with pytest.raises(ValueError, match="leaves no room"):
        encode_example(tok, "cbqa", QA_ROW, "train", max_length=10)


def test_demonstrations_come_first_with_their_answers() -> None:
    tok = CharTokenizer()
    demo = {"question": "Capital of Peru?", "answers": ["Lima"]}
    enc = encode_example(tok, "cbqa", QA_ROW, "train", max_length=400, demos=[demo])
    text = "".join(tok.convert_ids_to_tokens(i) for i in enc.prompt_ids[1:])
    assert text.startswith("Question: Capital of Peru?\nAnswer: Lima\n\nQuestion: What is")


def _model(vocab: int = 50) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def test_tokenprob_takes_each_labels_best_first_token_after_the_prompt() -> None:
    model = _model()
    prompts = [[1, 5, 6, 7], [1, 8, 9], [1, 10, 11, 12, 13, 14]]
    label_ids = [[20, 21], [22], [23, 24]]  # label 0 and 2 have two variants
    scores = tokenprob_scores(model, prompts, label_ids, pad_id=0, batch_size=2)
    with torch.inference_mode():
        for i, prompt in enumerate(prompts):  # one unpadded forward per prompt, by hand
            logits = model(torch.tensor([prompt])).logits[0, -1]
            expected = [max(logits[t].item() for t in ids) for ids in label_ids]
            assert scores[i].tolist() == pytest.approx(expected, abs=1e-5)


def test_labels_sharing_a_first_token_are_refused() -> None:
    tok = CharTokenizer()
    ids = label_token_ids(tok, ["sports", "tech"])
    assert [[tok.convert_ids_to_tokens(i) for i in variants] for variants in ids] == [
        [" s", "s"],
        [" t", "t"],
    ]
    with pytest.raises(ValueError, match="'sports' and 'science' share their first token"):
        label_token_ids(tok, ["sports", "science"])


def _record(task: str, candidate: str, seed: int, score: float, replicate: bool = False, **kw):
    return SFTRecord(
        task=task, candidate=candidate, seed=seed, replicate=replicate, score=score,
        base_score=kw.pop("base", 0.1), mrc=0.0, metrics={}, sft_key=f"{candidate}{seed}", **kw,
    )  # fmt: skip


def test_signal_to_noise_compares_candidate_spread_with_seed_spread() -> None:
    records = [
        _record("cls", "a", 0, 0.50), _record("cls", "a", 1, 0.52, True),
        _record("cls", "a", 2, 0.48, True), _record("cls", "b", 0, 0.70),
        _record("cls", "c", 0, 0.30),
    ]  # fmt: skip
    row = signal_to_noise(records)["cls"]
    assert row["candidate_std"] == pytest.approx(0.2)  # std(0.5, 0.7, 0.3), ddof 1
    assert row["seed_std"] == pytest.approx(0.02)  # std(0.50, 0.52, 0.48)
    assert row["ratio"] == pytest.approx(10.0)
    assert row["clear_signal"] == 1.0

    # a second replicated candidate: variances pooled (not stds averaged)
    records += [_record("cls", "d", s, x, s > 0) for s, x in enumerate((0.40, 0.46, 0.34))]
    row = signal_to_noise(records)["cls"]
    assert row["replicated"] == 2
    assert row["seed_std"] == pytest.approx((0.0004 / 2 + 0.0036 / 2) ** 0.5)  # not 0.04
    assert row["candidate_std"] == pytest.approx(0.170783, abs=1e-6)  # std(.5, .7, .3, .4)
    assert row["clear_signal"] == 1.0  # 3.8x


def test_amuro_char_figure_has_a_panel_per_family_and_lines_per_variant() -> None:
    records = [
        _record("cls", f"zoo:{v}@{s}", 0, 0.1 * s, variant=v, family=f, checkpoint_step=s)
        for v, f in (("a", "lr"), ("b", "lr"), ("c", "mixture"))
        for s in (1, 2, 3)
    ]
    fig = plot_scores_by_step(records, "cls")
    panels = fig.get_axes()
    assert [ax.get_title() for ax in panels] == ["lr", "mixture"]
    assert len(panels[0].get_lines()) == 4  # 2 variants x (base, fine-tuned)
    assert list(panels[1].get_lines()[0].get_ydata()) == pytest.approx([0.1, 0.2, 0.3])


def test_the_sft_report_round_trips_through_json_typed_with_its_nans() -> None:
    """What ZenML's pydantic materializer does to the `sft_report` artifact: a single
    candidate has no spread and no seed noise (NaN), and both must load back as NaN."""
    report = SFTReport.of([_record("cls", "a", 0, 0.5), _record("cbqa", "a", 0, 0.3)])
    again = SFTReport.model_validate(json.loads(json.dumps(report.model_dump(mode="json"))))
    assert isinstance(again.results[0], SFTRecord) and again.results == report.results
    assert math.isnan(again.signal_to_noise["cls"]["ratio"])
    assert list(again.table()["candidate"]) == ["a", "a"]
    with pytest.raises(ValidationError, match="frozen"):
        report.results[0].score = 1.0
