"""SFTCAST_DEVICE: what the stack files pin GPU steps to, resolved or refused with a reason."""

from __future__ import annotations

import pytest
import torch

from sftcast.device import DeviceError, compile_enabled, resolve_device


def test_auto_picks_what_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFTCAST_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU machine")
def test_cuda_without_a_gpu_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTCAST_DEVICE", "cuda")
    with pytest.raises(DeviceError, match="SFTCAST_DEVICE='cuda' but no CUDA device"):
        resolve_device()


@pytest.mark.parametrize("value", ["tpu", "gpu0", "mps"])
def test_unknown_devices_are_named(value: str) -> None:
    with pytest.raises(DeviceError, match=f"SFTCAST_DEVICE='{value}'"):
        resolve_device(value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU machine")
def test_pretraining_pinned_to_cuda_stops_before_training(monkeypatch, tmp_path) -> None:
    from sftcast.zoo import ModelSize, Variant, pretrain_variant

    monkeypatch.setenv("SFTCAST_DEVICE", "cuda")
    tiny = ModelSize(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=64)
    variant = Variant(name="pinned", steps=2, batch_size=2, seq_len=64, model=tiny)
    corpus = {"news-tech": ["Chips got faster again this year."] * 4}
    with pytest.raises(DeviceError):
        pretrain_variant(variant, corpus, tmp_path / "no-tokenizer-needed", tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()


def test_compilation_is_on_a_gpu_by_default_and_named_when_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SFTCAST_COMPILE", raising=False)
    assert not compile_enabled(torch.device("cpu"))
    assert compile_enabled(torch.device("cuda"))
    assert compile_enabled(torch.device("cpu"), "on")
    assert not compile_enabled(torch.device("cuda"), "off")
    monkeypatch.setenv("SFTCAST_COMPILE", "ON ")
    assert compile_enabled(torch.device("cpu"))
    monkeypatch.setenv("SFTCAST_COMPILE", "yes")
    with pytest.raises(ValueError, match=r"SFTCAST_COMPILE='yes'; expected one of"):
        compile_enabled(torch.device("cpu"))
