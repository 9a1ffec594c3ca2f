"""Candidate checkpoints: a URI → a verified local Hugging Face folder, and a loader.

URIs:
- `zoo:<variant>@<step>`: a checkpoint of the local zoo (`<zoo_root>/<variant>-<hash8>/
  checkpoint-<step>`); `zoo:<variant>-<hash8>@<step>` names one configuration exactly.
- `hf:<repo>@<revision>`: a Hugging Face Hub snapshot (safetensors, JSON and tokenizer files
  only), pinned to a revision so the lineage says exactly which weights were used.
- anything else without a scheme: a local folder in Hugging Face format.

Verification before anything is loaded: weights must be safetensors (pickle files can run code
when unpickled), custom modelling code runs only when the caller allows it, and every weight
file must parse and match the shapes `config.json` implies. Every problem is a
`CandidateError` naming the URI and what is wrong.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sftcast.zoo.config import is_valid_name
from sftcast.zoo.model import CHECKPOINT_META, file_sha256
from sftcast.zoo.train import RUN_MANIFEST

DEFAULT_ZOO_ROOT = Path("artifacts/zoo")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
HF_ALLOW_PATTERNS = ["*.safetensors", "*.json", "tokenizer.model", "*.tiktoken", "merges.txt"]

_ZOO_URI = re.compile(r"zoo:(?P<name>[^@]+)@(?P<step>\d+)")
_HF_URI = re.compile(r"hf:(?P<repo>[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?)@(?P<revision>[\w./-]+)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


class CandidateError(ValueError):
    """A candidate that cannot be used; the message names the URI and the problem."""

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"candidate {uri!r}: {problem}")
        self.uri = uri
        self.problem = problem


def resolve_candidate(
    uri: str,
    *,
    zoo_root: str | Path = DEFAULT_ZOO_ROOT,
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """The verified local folder of a candidate URI."""
    uri = uri.strip()
    if not uri:
        raise CandidateError(
            uri, "empty URI; expected zoo:<variant>@<step>, hf:<repo>@<rev> or a path"
        )
    if uri.startswith("zoo:"):
        path = _zoo_folder(uri, Path(zoo_root))
    elif uri.startswith("hf:"):
        path = _hf_snapshot(uri, trust_remote_code, cache_dir)
    elif _SCHEME.match(uri):
        raise CandidateError(
            uri, "unknown URI scheme; expected zoo:<variant>@<step>, hf:<repo>@<rev> or a path"
        )
    else:
        path = Path(uri).expanduser()
    verify_checkpoint(path, uri, trust_remote_code=trust_remote_code)
    return path


def load_candidate(
    uri: str,
    *,
    zoo_root: str | Path = DEFAULT_ZOO_ROOT,
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer of a verified candidate."""
    path = resolve_candidate(
        uri, zoo_root=zoo_root, trust_remote_code=trust_remote_code, cache_dir=cache_dir
    )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, trust_remote_code=trust_remote_code
        )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as err:
        raise CandidateError(uri, f"transformers could not load {path}: {err}") from err
    return model, tokenizer


def parse_zoo_uri(uri: str) -> tuple[str, int]:
    """`zoo:<variant>@<step>` → (variant, step); the name can never be a path."""
    match = _ZOO_URI.fullmatch(uri)
    if match is None:
        raise CandidateError(uri, "malformed zoo URI; expected zoo:<variant>@<step>")
    if not is_valid_name(match["name"]):
        raise CandidateError(
            uri, "invalid variant name: letters, digits, '.', '_' and '-' only (no paths)"
        )
    return match["name"], int(match["step"])


def install_run(run: Path, zoo_root: Path, run_name: str) -> Path:
    """Put a pre-training run that arrived from elsewhere (an artifact store) into the zoo
    root under its name, atomically; a run already there is left as it is."""
    if not is_valid_name(run_name):
        raise CandidateError(f"zoo:{run_name}", "invalid run name")
    target = zoo_root / run_name
    if not target.is_dir():
        zoo_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{run_name}-", dir=zoo_root))
        shutil.copytree(run, staging, dirs_exist_ok=True)
        try:
            staging.rename(target)
        except OSError:  # another process installed it first
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _zoo_folder(uri: str, zoo_root: Path) -> Path:
    name, step = parse_zoo_uri(uri)
    root = zoo_root.resolve()
    runs = [root / name] if re.search(r"-[0-9a-f]{8}$", name) and (root / name).is_dir() else []
    runs = runs or [
        p
        for p in root.glob(f"{name}-*")
        if re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{8}}", p.name)
    ]
    if not runs:
        raise CandidateError(uri, f"no variant {name!r} in the zoo at {root}")
    run = max(runs, key=_run_rank)  # several configurations of one name: the newest complete
    path = (run / f"checkpoint-{step}").resolve()
    if not path.is_relative_to(root):
        raise CandidateError(uri, f"resolves outside the zoo root {root}")
    if not path.is_dir():
        found = (re.fullmatch(r"checkpoint-(\d+)", p.name) for p in run.iterdir() if p.is_dir())
        steps = sorted(int(m[1]) for m in found if m)
        raise CandidateError(uri, f"no checkpoint at step {step} in {run}; saved steps: {steps}")
    return path


def _run_rank(run: Path) -> tuple[bool, float]:
    manifest = run / RUN_MANIFEST
    try:
        complete = bool(json.loads(manifest.read_text()).get("complete"))
        return complete, manifest.stat().st_mtime
    except (OSError, ValueError):
        return False, 0.0


def _hf_snapshot(uri: str, trust_remote_code: bool, cache_dir: str | Path | None) -> Path:
    match = _HF_URI.fullmatch(uri)
    if match is None:
        raise CandidateError(
            uri, "malformed hf URI; expected hf:<owner>/<repo>@<revision> (pin a revision)"
        )
    patterns = HF_ALLOW_PATTERNS + (["*.py"] if trust_remote_code else [])
    try:
        folder = snapshot_download(
            match["repo"], revision=match["revision"], allow_patterns=patterns, cache_dir=cache_dir
        )
    except (HfHubHTTPError, EntryNotFoundError, OSError, ValueError) as err:
        raise CandidateError(
            uri,
            f"could not fetch {match['repo']}@{match['revision']} from the Hugging Face Hub: "
            f"{err} (offline, with HF_HUB_OFFLINE=1 or no network, only snapshots already in "
            "the local cache can be used)",
        ) from err
    return Path(folder)


def verify_checkpoint(path: Path, uri: str, *, trust_remote_code: bool = False) -> None:
    """Raise `CandidateError` unless `path` is a loadable, safe Hugging Face model folder."""
    if not path.is_dir():
        raise CandidateError(uri, f"no such folder: {path}")
    config = _read_config(path, uri)
    if "auto_map" in config and not trust_remote_code:
        raise CandidateError(
            uri,
            "config.json maps to custom modelling code (auto_map), which would run on load; "
            "set trust_remote_code only for a source you trust",
        )
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CandidateError(
                uri,
                f"only pickle weights ({', '.join(pickles)}): unpickling can run arbitrary "
                "code, so sftcast loads safetensors only; convert the weights to safetensors",
            )
        raise CandidateError(uri, f"no *.safetensors weights in {path}")
    _check_digests(path, uri)
    shapes = _weight_shapes(weights, uri)
    _check_shapes(path, uri, shapes, trust_remote_code)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise CandidateError(uri, f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {path}")


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
