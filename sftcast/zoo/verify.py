"""Verify a candidate's folder before anything is loaded from it.

Weights must be safetensors (pickle files can run code when unpickled), custom modelling code
runs only when the caller allows it, every weight file must parse and match the shapes
`config.json` implies, recorded digests must match, and the tokenizer must load (from the
folder alone, never the network). Every problem is a `CandidateError` naming the URI and what
is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from sftcast.zoo.model import CHECKPOINT_META, file_sha256

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
TOKENIZER_VOCABULARIES = ("tokenizer.json", "tokenizer.model")  # a fast or a slow one


class CandidateError(ValueError):
    """A candidate that cannot be used; the message names the URI and the problem."""

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"candidate {uri!r}: {problem}")
        self.uri = uri
        self.problem = problem


def verify_checkpoint(path: Path, uri: str, *, trust_remote_code: bool = False) -> None:
    """Raise `CandidateError` unless `path` is a loadable, safe Hugging Face model folder."""
    if not path.is_dir():
        raise CandidateError(uri, f"no such folder: {path}")
    check_config(path, uri, trust_remote_code)
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CandidateError(
                uri,
                f"only pickle weights ({', '.join(pickles)}): unpickling can run arbitrary "
                "code, so sftcast loads safetensors only; convert the weights to safetensors, "
                "or allow the conversion (zoo.allow_pickle: true) for a source you trust",
            )
        raise CandidateError(uri, f"no *.safetensors weights in {path}")
    _check_digests(path, uri)
    shapes = _weight_shapes(weights, uri)
    _check_shapes(path, uri, shapes, trust_remote_code)
    _check_tokenizer(path, uri, trust_remote_code)


def check_config(path: Path, uri: str, trust_remote_code: bool) -> None:
    """`config.json` is a readable JSON object that maps to custom code only where allowed;
    checked before a pickle folder is converted, too."""
    config = _read_config(path, uri)
    if "auto_map" in config and not trust_remote_code:
        raise CandidateError(
            uri,
            "config.json maps to custom modelling code (auto_map), which would run on load; "
            "allow it (zoo.trust_remote_code: true) only for a source you trust",
        )


def _read_config(path: Path, uri: str) -> dict[str, Any]:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CandidateError(
            uri, f"no config.json in {path}: not a Hugging Face model folder"
        ) from None
    except (OSError, ValueError) as err:
        raise CandidateError(uri, f"unreadable config.json: {err}") from err
    if not isinstance(config, dict):
        raise CandidateError(uri, "config.json is not a JSON object")
    return config


def _check_digests(path: Path, uri: str) -> None:
    """Zoo checkpoints record their weights' sha256: a flipped byte anywhere is caught."""
    meta_path = path / CHECKPOINT_META
    if not meta_path.is_file():
        return
    try:
        digests = json.loads(meta_path.read_text()).get("weights_sha256", {})
    except ValueError as err:
        raise CandidateError(uri, f"unreadable {CHECKPOINT_META}: {err}") from err
    for name, expected in digests.items():
        file = path / name
        if not file.is_file():
            raise CandidateError(uri, f"{name} is listed in {CHECKPOINT_META} but missing")
        if file_sha256(file) != expected:
            raise CandidateError(uri, f"{name} does not match its recorded sha256: corrupted")


def _weight_shapes(files: list[Path], uri: str) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with safe_open(file, framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except (SafetensorError, OSError) as err:
            raise CandidateError(uri, f"corrupted or truncated {file.name}: {err}") from err
    return shapes


def _check_shapes(
    path: Path, uri: str, found: dict[str, tuple[int, ...]], trust_remote_code: bool
) -> None:
    """Compare the file's tensors with those of the model config.json describes, built on the
    meta device (no memory, no init)."""
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CandidateError(uri, f"config.json does not describe a causal LM: {err}") from err
    expected = model.state_dict(keep_vars=True)
    aliases: dict[int, set[str]] = {}  # tied parameters are saved once, under one of their names
    for key, tensor in expected.items():
        aliases.setdefault(id(tensor), set()).add(key)
    missing = sorted(k for k, t in expected.items() if not (aliases[id(t)] & found.keys()))
    wrong = [
        f"{k}: file {found[k]} vs config {tuple(t.shape)}"
        for k, t in expected.items()
        if k in found and found[k] != tuple(t.shape)
    ]
    if wrong:
        raise CandidateError(
            uri, f"weight shapes do not match config.json ({len(wrong)}): {'; '.join(wrong[:3])}"
        )
    if missing:
        raise CandidateError(uri, f"weights missing from the safetensors files: {missing[:5]}")


def _check_tokenizer(path: Path, uri: str, trust_remote_code: bool) -> None:
    """The tokenizer loads as `load_candidate` loads it, from the folder alone: a
    `tokenizer_config.json` without the vocabulary it describes passes no file check."""
    present = [f for f in TOKENIZER_FILES if (path / f).is_file()]
    if not present:
        raise CandidateError(uri, f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {path}")
    try:
        AutoTokenizer.from_pretrained(
            path, trust_remote_code=trust_remote_code, local_files_only=True
        )
    except Exception as err:  # the Rust `tokenizers` raises plain Exception; JSON, Key, Value...
        missing = ""
        if not any((path / f).is_file() for f in TOKENIZER_VOCABULARIES):
            missing = (
                f" ({path} has {', '.join(present)} but neither "
                f"{' nor '.join(TOKENIZER_VOCABULARIES)})"
            )
        reason = " ".join(str(err).split()) or type(err).__name__
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise CandidateError(
            uri, f"its tokenizer does not load{missing}: {type(err).__name__}: {reason}"
        ) from err
