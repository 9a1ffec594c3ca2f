"""Pickle-only candidate folders, converted to safetensors when the caller allows it.

The weights are read with `torch.load(weights_only=True)` (plain tensors only, no arbitrary
objects), written as safetensors into a converted copy of the folder, and that copy is then
verified and used like any other candidate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sftcast.zoo.model import CHECKPOINT_META, file_sha256
from sftcast.zoo.verify import PICKLE_SUFFIXES, CandidateError

log = logging.getLogger(__name__)

CONVERTED_MARKER = "sftcast_converted.json"  # written last: a converted folder is complete


def pickle_only(path: Path) -> bool:
    """Whether `path` is a folder with pickle weights and no safetensors."""
    return (
        path.is_dir()
        and not any(path.glob("*.safetensors"))
        and any(p.suffix in PICKLE_SUFFIXES for p in path.iterdir())
    )


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
