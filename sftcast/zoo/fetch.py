"""Candidate checkpoints: a URI → a verified local Hugging Face folder, and a loader.

URIs:
- `zoo:<variant>@<step>`: a checkpoint of the local zoo (`<zoo_root>/<variant>-<hash8>/
  checkpoint-<step>`); `zoo:<variant>-<hash8>@<step>` names one configuration exactly.
- `hf:<repo>@<revision>`: a Hugging Face Hub snapshot (safetensors, JSON and tokenizer files
  only), pinned to a revision so the lineage says exactly which weights were used.
- anything else without a scheme: a local folder in Hugging Face format.

Verification before anything is loaded: weights must be safetensors (pickle files can run code
when unpickled), custom modelling code runs only when the caller allows it, and every weight
file must parse and match the shapes `config.json` implies, and the tokenizer must load (from
the folder alone, never the network). Every problem is a
`CandidateError` naming the URI and what is wrong.

A pickle-only folder is refused unless the caller passes `allow_pickle=True`: then its weights
are read with `torch.load(weights_only=True)` (plain tensors only, no arbitrary objects),
written as safetensors into a converted copy of the folder, and that copy is verified and used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
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

log = logging.getLogger(__name__)

DEFAULT_ZOO_ROOT = Path("artifacts/zoo")
CONVERTED_MARKER = "sftcast_converted.json"  # written last: a converted folder is complete
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
TOKENIZER_VOCABULARIES = ("tokenizer.json", "tokenizer.model")  # a fast or a slow one
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
    allow_pickle: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """The verified local folder of a candidate URI.

    `allow_pickle`: a folder with pickle weights only is converted to safetensors (see
    `convert_pickle_folder`) into `<cache_dir>/safetensors/`, or next to the folder when no
    `cache_dir` is given, and the converted folder is returned."""
    uri = uri.strip()
    if not uri:
        raise CandidateError(
            uri, "empty URI; expected zoo:<variant>@<step>, hf:<repo>@<rev> or a path"
        )
    if uri.startswith("zoo:"):
        path = _zoo_folder(uri, Path(zoo_root))
    elif uri.startswith("hf:"):
        path = _hf_snapshot(uri, trust_remote_code, allow_pickle, cache_dir)
    elif _SCHEME.match(uri):
        raise CandidateError(
            uri, "unknown URI scheme; expected zoo:<variant>@<step>, hf:<repo>@<rev> or a path"
        )
    else:
        path = Path(uri).expanduser()
    if allow_pickle and _pickle_only(path):
        _check_config(path, uri, trust_remote_code)  # before anything is read from it
        target = Path(cache_dir) / "safetensors" if cache_dir is not None else path.parent
        path = convert_pickle_folder(path, uri, target)
    verify_checkpoint(path, uri, trust_remote_code=trust_remote_code)
    return path


def load_candidate(
    uri: str,
    *,
    zoo_root: str | Path = DEFAULT_ZOO_ROOT,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer of a verified candidate."""
    path = resolve_candidate(
        uri,
        zoo_root=zoo_root,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        cache_dir=cache_dir,
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


def _hf_snapshot(
    uri: str, trust_remote_code: bool, allow_pickle: bool, cache_dir: str | Path | None
) -> Path:
    match = _HF_URI.fullmatch(uri)
    if match is None:
        raise CandidateError(
            uri, "malformed hf URI; expected hf:<owner>/<repo>@<revision> (pin a revision)"
        )
    patterns = HF_ALLOW_PATTERNS + (["*.py"] if trust_remote_code else [])
    try:
        folder = Path(
            snapshot_download(
                match["repo"],
                revision=match["revision"],
                allow_patterns=patterns,
                cache_dir=cache_dir,
            )
        )
        if allow_pickle and not any(folder.glob("*.safetensors")):  # pickles only if need be
            folder = Path(
                snapshot_download(
                    match["repo"],
                    revision=match["revision"],
                    allow_patterns=[*patterns, "pytorch_model*.bin"],
                    cache_dir=cache_dir,
                )
            )
    except (HfHubHTTPError, EntryNotFoundError, OSError, ValueError) as err:
        raise CandidateError(
            uri,
            f"could not fetch {match['repo']}@{match['revision']} from the Hugging Face Hub: "
            f"{err} (offline, with HF_HUB_OFFLINE=1 or no network, only snapshots already in "
            "the local cache can be used)",
        ) from err
    return folder


def verify_checkpoint(path: Path, uri: str, *, trust_remote_code: bool = False) -> None:
    """Raise `CandidateError` unless `path` is a loadable, safe Hugging Face model folder."""
    if not path.is_dir():
        raise CandidateError(uri, f"no such folder: {path}")
    _check_config(path, uri, trust_remote_code)
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


def _pickle_only(path: Path) -> bool:
    return (
        path.is_dir()
        and not any(path.glob("*.safetensors"))
        and any(p.suffix in PICKLE_SUFFIXES for p in path.iterdir())
    )


def _pickle_weight_files(path: Path, uri: str) -> list[Path]:
    """The pickle files holding the weights: those of a shard index, `pytorch_model*.bin`,
    or else every pickle file of the folder."""
    index = path / "pytorch_model.bin.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise CandidateError(uri, f"unreadable {index.name}: {err}") from err
        missing = [n for n in names if not (path / n).is_file()]
        if missing or any("/" in n or "\\" in n for n in names):
            raise CandidateError(uri, f"{index.name} names missing or nested shards: {names}")
        return [path / n for n in names]
    files = sorted(path.glob("pytorch_model*.bin"))
    return files or sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)


def convert_pickle_folder(path: Path, uri: str, target_root: Path) -> Path:
    """A copy of the pickle-only Hugging Face folder `path` with its weights as safetensors,
    in `target_root/<name>.safetensors-<digest12>` (the digest of the pickle files, so changed
    weights convert again and unchanged ones are reused).

    Weights are read with `torch.load(weights_only=True)`, which refuses anything but tensors
    and plain containers: a pickle that would run code fails here, with the file named. Tied
    tensors (one storage, several names) are written once each as copies; the config and
    tokenizer files are copied as they are."""
    files = _pickle_weight_files(path, uri)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}:{file_sha256(file)};".encode())
    out = target_root / f"{path.resolve().name}.safetensors-{digest.hexdigest()[:12]}"
    if (out / CONVERTED_MARKER).is_file():
        return out
    log.warning(
        "candidate %r: converting pickle weights (%s) to safetensors in %s (allow_pickle)",
        uri,
        ", ".join(f.name for f in files),
        out,
    )
    try:
        target_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=target_root))
    except OSError as err:
        raise CandidateError(
            uri, f"cannot write the converted safetensors folder under {target_root}: {err}"
        ) from err
    try:
        written = _convert_weights(path, uri, files, staging)
        _copy_support_files(path, staging, files, written)
        (staging / CONVERTED_MARKER).write_text(
            json.dumps({"source": str(path.resolve()), "uri": uri, "converted": written}, indent=2)
        )
        try:
            os.replace(staging, out)
        except OSError:  # converted meanwhile by another process: keep theirs
            if not (out / CONVERTED_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _convert_weights(path: Path, uri: str, files: list[Path], out: Path) -> dict[str, str]:
    """Each pickle weight file as a safetensors file; returns pickle name -> safetensors name."""
    written: dict[str, str] = {}
    for i, file in enumerate(files):
        try:
            state = torch.load(file, weights_only=True, map_location="cpu")
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ...
            raise CandidateError(
                uri,
                f"{file.name}: refused by torch.load(weights_only=True), which reads tensors "
                f"only: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
            ) from err
        plain = isinstance(state, dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        )
        if not plain or not state:
            raise CandidateError(
                uri, f"{file.name}: not a state dict (names -> tensors); cannot convert it"
            )
        seen: set[tuple[int, int]] = set()
        tensors = {}
        for key, tensor in state.items():
            where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
            shared = where in seen or tensor.untyped_storage().nbytes() != tensor.nbytes
            tensors[key] = tensor.detach().clone() if shared else tensor.detach().contiguous()
            seen.add(where)
        name = (
            "model.safetensors"
            if len(files) == 1
            else f"model-{i + 1:05d}-of-{len(files):05d}.safetensors"
        )
        save_file(tensors, out / name, metadata={"format": "pt"})
        written[file.name] = name
    if len(files) > 1:
        weight_map = {}
        for name in written.values():
            with safe_open(out / name, framework="pt") as f:
                weight_map.update(dict.fromkeys(f.keys(), name))
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2)
        )
    return written


def _copy_support_files(
    path: Path, out: Path, weight_files: list[Path], written: dict[str, str]
) -> None:
    """Config, tokenizer and the other plain files; not the pickles. A recorded weights digest
    (`CHECKPOINT_META`) is rewritten for the converted files."""
    skip = {f.name for f in weight_files} | {"pytorch_model.bin.index.json"}
    for file in path.iterdir():
        if not file.is_file() or file.name in skip or file.suffix in PICKLE_SUFFIXES:
            continue
        if file.name == CHECKPOINT_META:
            try:
                meta = json.loads(file.read_text())
            except ValueError:
                continue
            if isinstance(meta, dict):
                digests = {n: file_sha256(out / n) for n in written.values()}
                (out / file.name).write_text(
                    json.dumps({**meta, "weights_sha256": digests}, indent=2)
                )
            continue
        shutil.copy2(file, out / file.name)


def _check_config(path: Path, uri: str, trust_remote_code: bool) -> None:
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
