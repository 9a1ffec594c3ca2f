"""Judge the checkpoint folders a pre-training run writes, while it writes them.

A run (a Hugging Face Trainer, sftcast's own zoo, anything that saves Hugging Face folders)
writes a checkpoint one file at a time, so a poll can see any prefix of it. Each folder is
`ready` (complete and verified), `pending` (still being written: look again at the next poll,
never an error) or `rejected` (complete and quiet, but unusable: record it once, with the
reason). Its content hash names it across restarts and across watchers; its step orders it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sftcast.zoo.model import CHECKPOINT_META, file_sha256
from sftcast.zoo.verify import PICKLE_SUFFIXES, TOKENIZER_FILES, CandidateError, verify_checkpoint

Status = Literal["ready", "pending", "rejected"]

CONFIG = "config.json"
TRAINER_STATE = "trainer_state.json"
INDEX_SUFFIX = ".safetensors.index.json"
# The Trainer pickles its own state beside the weights: resuming needs it, loading does not.
TRAINER_PICKLES = frozenset({"optimizer.pt", "scheduler.pt", "training_args.bin", "scaler.pt"})
RNG_STATE = re.compile(r"rng_state.*\.pth")
# What the model is; a README, trainer state or metadata added later must not change identity.
CONTENT_NAMES = frozenset(
    {
        CONFIG,
        "generation_config.json",
        *TOKENIZER_FILES,  # tokenizer.json, tokenizer_config.json, tokenizer.model
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
    }
)
CONTENT_SUFFIXES = (".safetensors", INDEX_SUFFIX, ".py")
# safetensors refuses larger headers itself: a length beyond it is garbage, not a slow write
MAX_HEADER_BYTES = 100_000_000
TRAILING_INT = re.compile(r"(\d+)$")

# A watcher polls every few seconds: re-hashing gigabytes of unchanged weights each time is
# the cost this avoids. The inode is in the key so a copy that keeps size and mtime (cp -p,
# rsync -t) over a file still counts as a change.
_digests: dict[tuple[str, int, int, int], str] = {}


@dataclass(frozen=True)
class Inspection:
    """One checkpoint folder as a poll saw it."""

    path: Path  # absolute folder of the checkpoint
    step: int | None  # pre-training step, None when nothing records it
    status: Status
    reason: str  # why pending or rejected, one line naming the file; "" when ready
    content_hash: str | None  # ready and rejected only: a pending folder's content is moving

    @property
    def name(self) -> str:
        return self.path.name


class _Pending(Exception):
    """Not complete yet; the next poll may find it complete."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Rejected(Exception):
    """Complete and quiet, but never usable as it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def scan(
    root: Path,
    *,
    settle_seconds: float = 10.0,
    trust_remote_code: bool = False,
    now: float | None = None,
) -> list[Inspection]:
    """Every checkpoint folder directly under `root`, in step order (None last, then by name)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder to watch at {root}: it does not exist or is a file")
    found = []
    for entry in sorted(root.iterdir()):
        # writers stage checkpoints in hidden temporary folders (sftcast's own `.tmp-...`)
        if entry.name.startswith((".", "_")) or not entry.is_dir():
            continue
        try:
            found.append(
                inspect_checkpoint(
                    entry,
                    settle_seconds=settle_seconds,
                    trust_remote_code=trust_remote_code,
                    now=now,
                )
            )
        except FileNotFoundError:
            if entry.is_dir():
                raise
            # removed since listed: a Trainer's save_total_limit rotates old checkpoints out
    return sorted(found, key=lambda i: (i.step is None, i.step or 0, i.name))


def inspect_checkpoint(
    path: Path,
    *,
    settle_seconds: float = 10.0,
    trust_remote_code: bool = False,
    now: float | None = None,
) -> Inspection:
    """Whether the checkpoint folder `path` is ready, pending or rejected, and why."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint folder at {path}")
    step = checkpoint_step(path)
    now = time.time() if now is None else now
    try:
        status, reason, digest = _inspect(path, settle_seconds, now, trust_remote_code)
    except FileNotFoundError as err:
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint folder {path} was removed while read") from err
        # a writer replaced or removed a file between listing and reading it
        name = Path(err.filename).name if err.filename else "a file"
        status, reason, digest = "pending", f"{name} vanished while being read", None
    return Inspection(path, step, status, reason, digest)


def checkpoint_step(path: Path) -> int | None:
    """The pre-training step: the Trainer's state, else sftcast's metadata, else the trailing
    integer of the folder's name (`checkpoint-1000`, `step_500`, `ckpt12`), else None."""
    for file, key in ((TRAINER_STATE, "global_step"), (CHECKPOINT_META, "step")):
        step = _json_int(path / file, key)
        if step is not None:
            return step
    match = TRAILING_INT.search(Path(path).name)
    return int(match.group(1)) if match else None


def content_hash(path: Path) -> str:
    """sha256 over the model's own files (weights, config, tokenizer, code), by name; files a
    writer adds beside them later (README, trainer state, metadata) leave it unchanged."""
    outer = hashlib.sha256()
    for file in _content_files(Path(path)):
        outer.update(f"{file.name}\0{_file_sha256(file)}\n".encode())
    return outer.hexdigest()


def _inspect(
    path: Path, settle_seconds: float, now: float, trust_remote_code: bool
) -> tuple[Status, str, str | None]:
    before = _snapshot(path)
    status: Status
    try:
        _check_quiet(path, before, settle_seconds, now)
        _check_complete(path)
        _check_loads(path, trust_remote_code)
        status, reason = "ready", ""
    except _Pending as pending:
        return "pending", pending.reason, None
    except _Rejected as rejected:
        status, reason = "rejected", rejected.reason
    digest = content_hash(path)
    if _snapshot(path) != before:  # a writer came back while we read: judge the next poll's copy
        return "pending", "changed while being inspected", None
    return status, reason, digest


def _snapshot(path: Path) -> dict[str, tuple[bool, int, int]]:
    """(is a file, size, mtime_ns) of the folder and everything under it, by relative path."""
    entries = {".": (False, 0, path.stat().st_mtime_ns)}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            try:
                st = full.lstat()
            except FileNotFoundError:
                continue  # removed since listed; the comparison after reading notices
            entries[str(full.relative_to(path))] = (name in filenames, st.st_size, st.st_mtime_ns)
    return entries


def _check_quiet(
    path: Path, entries: dict[str, tuple[bool, int, int]], settle_seconds: float, now: float
) -> None:
    """No file may have changed within `settle_seconds`: a writer between two files leaves
    every file it has written complete, and the folder is not."""
    if not any(is_file for is_file, _, _ in entries.values()):
        raise _Pending("empty (no files yet)")
    latest, (_, _, mtime_ns) = max(entries.items(), key=lambda kv: kv[1][2])
    age = now - mtime_ns / 1e9
    if settle_seconds > 0 and age < settle_seconds:
        name = path.name if latest == "." else latest
        raise _Pending(f"being written (last change {max(age, 0):.0f} s ago: {name})")


def _check_complete(path: Path) -> None:
    _check_config(path)
    if not _check_safetensors(path):
        _check_pickles(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        # a Trainer saves the tokenizer after the weights
        raise _Pending(f"no tokenizer files yet ({', '.join(TOKENIZER_FILES)})")


def _check_config(path: Path) -> None:
    try:
        json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _Pending(f"no {CONFIG} yet") from None
    except ValueError:
        raise _Pending(f"{CONFIG} is not valid JSON yet (it may be mid-write)") from None


def _check_safetensors(path: Path) -> list[Path]:
    """The safetensors files, each complete; pending while an index names a shard not there."""
    for index in sorted(path.glob(f"*{INDEX_SUFFIX}")):
        for shard in _index_shards(index):
            if not (path / shard).is_file():
                raise _Pending(f"{shard}, named in {index.name}, is not there yet")
    weights = sorted(path.glob("*.safetensors"))
    for file in weights:
        _check_safetensors_file(file)
    return weights


def _index_shards(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except ValueError:
        raise _Pending(f"{index.name} is not valid JSON yet (it may be mid-write)") from None
    except AttributeError:
        raise _Rejected(f"{index.name} is not a JSON object") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise _Rejected(f"{index.name} has no weight_map of shard file names")
    return sorted(set(weight_map.values()))


def _check_safetensors_file(file: Path) -> None:
    """Complete by its own header, read without loading a tensor: 8 bytes of header length N,
    N bytes of JSON whose data_offsets say how long the data after it is."""
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _Pending(_being_written(file, f"header incomplete: {size} of 8+ bytes"))
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER_BYTES:
            raise _Rejected(f"{file.name} is corrupt: header length {header_len} bytes")
        raw = f.read(header_len)
    if len(raw) < header_len:
        have = 8 + len(raw)
        raise _Pending(_being_written(file, f"header incomplete: {have} of {8 + header_len} bytes"))
    # All N header bytes are there and the file is quiet: a bad header will not heal.
    data_end = _data_end(file, raw)
    need = 8 + header_len + data_end
    size = file.stat().st_size  # again: it may have grown while the header was read
    if size < need:
        raise _Pending(_being_written(file, f"{size} of {need} bytes"))


def _being_written(file: Path, detail: str) -> str:
    return f"{file.name} is still being written ({detail})"


def _data_end(file: Path, raw: bytes) -> int:
    try:
        header: Any = json.loads(raw)
    except ValueError:
        raise _Rejected(f"{file.name} is corrupt: its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _Rejected(f"{file.name} is corrupt: its header is not a JSON object")
    end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise _Rejected(f"{file.name} is corrupt: tensor {name!r} has no data_offsets")
        end = max(end, offsets[1])
    return end


def _check_pickles(path: Path) -> None:
    """No safetensors: pickle weights will never become usable, nothing yet may."""
    pickles = sorted(p.name for p in path.iterdir() if p.is_file() and _is_weight_pickle(p.name))
    if pickles:
        raise _Rejected(
            f"pickle weights only ({', '.join(pickles)}): sftcast reads safetensors only"
        )
    raise _Pending("no weights yet (no *.safetensors)")


def _is_weight_pickle(name: str) -> bool:
    return (
        Path(name).suffix in PICKLE_SUFFIXES
        and name not in TRAINER_PICKLES
        and not RNG_STATE.fullmatch(name)
    )


def _check_loads(path: Path, trust_remote_code: bool) -> None:
    try:
        verify_checkpoint(path, str(path), trust_remote_code=trust_remote_code)
    except CandidateError as err:
        raise _Rejected(" ".join(err.problem.split())) from err  # one line for the log


def _content_files(path: Path) -> list[Path]:
    return sorted(
        p
        for p in path.iterdir()
        if p.is_file()
        and (
            p.name in CONTENT_NAMES
            or p.name.endswith(CONTENT_SUFFIXES)
            or _is_weight_pickle(p.name)
        )
    )


def _file_sha256(file: Path) -> str:
    st = file.stat()
    key = (str(file.absolute()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _digests:
        return _digests[key]
    digest = file_sha256(file)
    after = file.stat()
    # cached only if the file did not change while read: a stale digest would outlive it
    if (after.st_size, after.st_mtime_ns, after.st_ino) == key[1:]:
        _digests[key] = digest
    return digest


def _json_int(file: Path, key: str) -> int | None:
    """`key` of the JSON object in `file` when it is an integer; None when anything is off, so
    the caller falls through to its next source."""
    try:
        value = json.loads(file.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
