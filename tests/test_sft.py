"""SFT on a tiny real candidate: it learns, it is deterministic, LoRA and full both run,
divergence stops cleanly, a finished fine-tune is reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sftcast.evaluation import EvaluationConfig, evaluate_task
from sftcast.sft import SFTConfig, SFTDivergedError, finetune

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def rows(tiny_task_rows):
    return tiny_task_rows


@pytest.fixture(scope="module")
def candidate(tiny_candidate) -> Path:
    return tiny_candidate


def _config(tmp_path: Path, **overrides) -> SFTConfig:
    fields = dict(
        output_dir=tmp_path / "sft", learning_rate=3e-3, epochs=4, batch_size=8, max_length=128
    )
    return SFTConfig(**{**fields, **overrides})


def _accuracy_on_train(folder: Path, rows) -> float:
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = EvaluationConfig(split="train", max_length=128)
    return evaluate_task(model, tokenizer, "cls", rows["cls"], config)["accuracy"]


def test_finetuned_candidate_improves_on_its_training_task(candidate, rows, tmp_path) -> None:
    result = finetune(candidate, "cls", rows["cls"]["train"], _config(tmp_path), progress=False)
    assert result.steps == 4 * 8 and result.n_examples == 64
    assert result.final_loss < sum(result.loss_history[:5]) / 5
    before = _accuracy_on_train(candidate, rows)
    after = _accuracy_on_train(result.model_dir, rows)
    assert after > before + 0.1, (before, after)


def test_same_seed_same_model_other_seed_another(candidate, rows, tmp_path) -> None:
    train = rows["cbqa"]["train"]
    a = finetune(candidate, "cbqa", train, _config(tmp_path / "a", epochs=1), progress=False)
    b = finetune(candidate, "cbqa", train, _config(tmp_path / "b", epochs=1), progress=False)
    c = finetune(
        candidate, "cbqa", train, _config(tmp_path / "c", epochs=1), seed=1, progress=False
    )
    assert a.sft_key == b.sft_key != c.sft_key
    assert a.loss_history == b.loss_history != c.loss_history
    wa, wb = (load_file(r.model_dir / "model.safetensors") for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    config = EvaluationConfig(max_length=128)
    scores = [
        evaluate_task(
            AutoModelForCausalLM.from_pretrained(r.model_dir),
            AutoTokenizer.from_pretrained(r.model_dir),
            "cbqa",
            rows["cbqa"],
            config,
        )
        for r in (a, b)
    ]
    assert scores[0] == scores[1]


def test_lora_and_full_both_train_and_save_a_plain_folder(candidate, rows, tmp_path) -> None:
    train = rows["cls"]["train"][:16]
    full = finetune(candidate, "cls", train, _config(tmp_path, epochs=1), progress=False)
    lora = finetune(
        candidate, "cls", train, _config(tmp_path, epochs=1, method="lora"), progress=False
    )
    assert lora.trainable_params < full.trainable_params / 2
    base = load_file(candidate / "model.safetensors")
    for result in (full, lora):
        weights = load_file(result.model_dir / "model.safetensors")
        assert set(weights) == set(base)  # LoRA merged: loads without peft, like any candidate
        assert any(not torch.equal(weights[k], base[k]) for k in base)


def test_diverging_run_stops_with_a_clear_error_and_saves_nothing(candidate, rows, tmp_path):
    config = _config(tmp_path, learning_rate=1e30, warmup_ratio=0.0)
    with pytest.raises(SFTDivergedError, match=r"diverged: loss (nan|inf).*nothing was saved"):
        finetune(candidate, "cls", rows["cls"]["train"], config, progress=False)
    assert not any((tmp_path / "sft").rglob("model.safetensors"))


def test_finished_finetune_is_reused(candidate, rows, tmp_path) -> None:
    config = _config(tmp_path, epochs=1)
    train = rows["cbqa"]["train"][:16]
    first = finetune(candidate, "cbqa", train, config, progress=False)
    again = finetune(candidate, "cbqa", train, config, progress=False)
    assert not first.reused and again.reused
    assert again.loss_history == first.loss_history and again.model_dir == first.model_dir


def test_per_task_overrides_apply_to_their_task_only() -> None:
    config = SFTConfig(epochs=2, per_task={"rag": {"epochs": 4, "max_length": 200}})
    rag, cls = config.for_task("rag"), config.for_task("cls")
    assert (rag.epochs, rag.max_length, cls.epochs) == (4, 200, 2)
    assert cls.training_hash() == SFTConfig(epochs=2).training_hash()  # untouched task: same key
    assert rag.training_hash() != cls.training_hash()
    with pytest.raises(ValidationError, match="unknown task"):
        SFTConfig(per_task={"qa": {"epochs": 1}})
    with pytest.raises(ValidationError, match="epoch"):
        SFTConfig(per_task={"rag": {"epoch": 3}})  # a typo is named, not ignored


def test_a_compiled_fine_tune_follows_the_eager_one(
    candidate, rows, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sftcast.device import compilations
    from sftcast.sft.train import fit

    config = _config(tmp_path, epochs=1, batch_size=8)
    train = rows["cls"]["train"][:32]  # 4 steps of differing lengths
    monkeypatch.setenv("SFTCAST_COMPILE", "off")
    eager = fit(candidate, "cls", train, config, seed=0, progress=False)
    graphs = compilations()
    monkeypatch.setenv("SFTCAST_COMPILE", "on")
    compiled = fit(candidate, "cls", train, config, seed=0, progress=False)
    # dynamic shapes: the batches' lengths share a graph or two, not one each
    assert 1 <= compilations() - graphs <= 2
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-4)
    assert "_orig_mod" not in "".join(compiled.model.state_dict())  # saves as any model


def test_fidelities_are_the_validation_loss_part_way_through_the_same_run(
    candidate, rows, tmp_path
) -> None:
    from sftcast.sft.train import answer_loss, sft_key

    config = _config(tmp_path, epochs=2, fidelities=[0.25, 0.5, 1.0], fidelity_rows=8)
    train, validation = rows["cls"]["train"], rows["cls"]["validation"]
    result = finetune(candidate, "cls", train, config, progress=False, validation_rows=validation)
    steps = [f.step for f in result.fidelities]
    assert steps == [4, 8, 16] and result.steps == 16  # 64 rows, batch 8, 2 epochs
    seconds = [f.seconds for f in result.fidelities]
    assert seconds == sorted(seconds) and seconds[-1] <= result.wall_time_s
    losses = [f.loss for f in result.fidelities]
    assert losses[0] > losses[-1]  # it learns the answers' format
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    read = validation[:8]  # all 8 validation rows: the sample is every row, in order
    assert answer_loss(model, tokenizer, "cls", read, config) == pytest.approx(losses[-1])
    # read from the folder when the fine-tune is reused
    again = finetune(candidate, "cls", train, config, progress=False, validation_rows=validation)
    assert again.reused and again.fidelities == result.fidelities
    # a fine-tune without fidelities keeps the key it had; with them it is another record
    plain = _config(tmp_path, epochs=2)
    assert plain.training_hash(0) == _config(tmp_path, epochs=2, fidelity_rows=8).training_hash(0)
    assert sft_key(candidate, "cls", train, plain, 0) != result.sft_key
    with pytest.raises(ValueError, match=r"cls: fidelities \[0.25, 0.5, 1.0\] need validation"):
        finetune(candidate, "cls", train, config.model_copy(update={"seed": 3}), progress=False)
    with pytest.raises(ValidationError, match="increasing fractions"):
        _config(tmp_path, fidelities=[0.5, 0.25])
