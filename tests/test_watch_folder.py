"""Checkpoint folders a pre-training run is writing: ready, pending or rejected, on real files
staged the way a writer leaves them part-way (truncated weights, a missing shard, no
tokenizer yet), plus identity (content hash) and order (step)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sftcast.watch.folder import checkpoint_step, content_hash, inspect_checkpoint, scan
from sftcast.zoo.model import CHECKPOINT_META

WEIGHTS = "model.safetensors"


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    root.mkdir()
    return root


def stage(candidate: Path, root: Path, name: str, *, meta: bool = True) -> Path:
    """A copy of the tiny candidate under `root`; without sftcast's metadata (as any other
    writer leaves it) when `meta` is false."""
    folder = Path(shutil.copytree(candidate, root / name))
    if not meta:
        (folder / CHECKPOINT_META).unlink()
    return folder


def later() -> float:
    """A poll long after every write: the settle rule out of the way."""
    return time.time() + 100


def look(folder: Path, **kwargs):
    return inspect_checkpoint(folder, now=later(), **kwargs)


def edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def truncate(file: Path, size: int) -> int:
    """Keep the first `size` bytes of `file`, as a writer part-way leaves it; the full size."""
    data = file.read_bytes()
    file.write_bytes(data[:size])
    return len(data)


def header_length(file: Path) -> int:
    return struct.unpack("<Q", file.read_bytes()[:8])[0]


def test_zoo_checkpoint_is_ready_with_its_recorded_step(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-7")
    found = look(folder)
    assert (found.status, found.reason) == ("ready", "")
    assert found.step == 0  # sftcast_checkpoint.json's step beats the name's 7
    assert found.path == folder.absolute() and found.name == "checkpoint-7"
    assert re.fullmatch(r"[0-9a-f]{64}", found.content_hash or "")


def test_trainer_state_step_beats_the_name(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-7", meta=False)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 42}))
    found = look(folder)
    assert (found.status, found.step) == ("ready", 42)


def test_step_from_the_name_when_nothing_records_it(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1000", meta=False)
    found = look(folder)
    assert (found.status, found.step) == ("ready", 1000)


@pytest.mark.parametrize(
    ("name", "files", "step"),
    [
        ("checkpoint-1000", {}, 1000),
        ("step_500", {}, 500),
        ("ckpt12", {}, 12),
        ("final", {}, None),
        ("checkpoint-9", {"trainer_state.json": '{"global_step": 3}'}, 3),
        ("checkpoint-9", {CHECKPOINT_META: '{"step": 4}'}, 4),
        ("checkpoint-9", {"trainer_state.json": '{"global_st', CHECKPOINT_META: '{"step": 4}'}, 4),
        ("checkpoint-9", {"trainer_state.json": '{"global_step": "x"}'}, 9),
        ("checkpoint-9", {CHECKPOINT_META: "[1, 2]"}, 9),
    ],
)
def test_checkpoint_step_sources_in_order(tmp_path: Path, name, files, step):
    folder = tmp_path / name
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text)
    assert checkpoint_step(folder) == step


def test_scan_skips_hidden_staging_folders_and_files(tiny_candidate: Path, watched: Path):
    stage(tiny_candidate, watched, ".tmp-checkpoint-5-abcd")
    stage(tiny_candidate, watched, "_staging")
    stage(tiny_candidate, watched, "checkpoint-5")
    (watched / "notes.txt").write_text("not a checkpoint")
    assert [i.name for i in scan(watched, now=later())] == ["checkpoint-5"]


def test_empty_folder_is_pending(watched: Path):
    (watched / "checkpoint-1" / "sub").mkdir(parents=True)
    [found] = scan(watched, now=later())
    assert (found.status, found.content_hash, found.step) == ("pending", None, 1)
    assert "empty" in found.reason


def test_recently_modified_folder_is_pending_until_it_settles(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    now = time.time()
    for path in [folder, *folder.iterdir()]:
        os.utime(path, (now - 60, now - 60))
    os.utime(folder / "tokenizer.json", (now - 3, now - 3))
    found = inspect_checkpoint(folder, now=now)  # default settle: 10 s
    assert (found.status, found.content_hash) == ("pending", None)
    assert found.reason == "being written (last change 3 s ago: tokenizer.json)"
    assert inspect_checkpoint(folder, now=now, settle_seconds=2).status == "ready"
    assert inspect_checkpoint(folder, now=now + 8).status == "ready"


def test_a_fresh_copy_is_pending_at_the_default_settle_time(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")  # the folder itself is new
    assert inspect_checkpoint(folder).status == "pending"
    assert inspect_checkpoint(folder, settle_seconds=0).status == "ready"


def test_missing_or_half_written_config_is_pending(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    text = (folder / "config.json").read_text()
    (folder / "config.json").unlink()
    found = look(folder)
    assert found.status == "pending" and "config.json" in found.reason
    (folder / "config.json").write_text(text[: len(text) // 2])
    found = look(folder)
    assert found.status == "pending" and "config.json is not valid JSON" in found.reason


def test_weights_truncated_in_the_data_are_pending(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    full = truncate(folder / WEIGHTS, (folder / WEIGHTS).stat().st_size // 2)
    found = look(folder)
    assert (found.status, found.content_hash) == ("pending", None)
    assert found.reason == f"{WEIGHTS} is still being written ({full // 2} of {full} bytes)"


@pytest.mark.parametrize("keep", [4, 8 + 10])
def test_weights_truncated_in_the_header_are_pending(
    tiny_candidate: Path, watched: Path, keep: int
):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    truncate(folder / WEIGHTS, keep)
    found = look(folder)
    assert found.status == "pending"
    assert f"{WEIGHTS} is still being written (header incomplete" in found.reason


def test_corrupt_safetensors_header_is_rejected(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    data = (folder / WEIGHTS).read_bytes()
    n = header_length(folder / WEIGHTS)
    # every byte there, the file quiet: a header that is not JSON will never become JSON
    (folder / WEIGHTS).write_bytes(data[:8] + b"{" * n + data[8 + n :])
    found = look(folder)
    assert found.status == "rejected" and "header is not valid JSON" in found.reason
    assert found.content_hash is not None
    (folder / WEIGHTS).write_bytes(struct.pack("<Q", 1 << 40) + data[8:])
    found = look(folder)
    assert found.status == "rejected" and "header length" in found.reason


def test_sharded_index_naming_a_missing_shard_is_pending(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    (folder / WEIGHTS).rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
    }
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    found = look(folder)
    assert found.status == "pending"
    assert "model-00002-of-00002.safetensors" in found.reason
    assert "model.safetensors.index.json" in found.reason


def test_pickle_only_weights_are_rejected(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    torch.save(load_file(folder / WEIGHTS), folder / "pytorch_model.bin")
    (folder / WEIGHTS).unlink()
    found = look(folder)
    assert found.status == "rejected"
    assert "pickle" in found.reason and "pytorch_model.bin" in found.reason
    assert found.content_hash is not None


def test_trainer_state_pickles_are_not_weights(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    (folder / WEIGHTS).unlink()
    for name in ("optimizer.pt", "scheduler.pt", "rng_state_0.pth", "training_args.bin"):
        torch.save({"x": torch.zeros(1)}, folder / name)
    found = look(folder)
    assert found.status == "pending" and "no weights yet" in found.reason


def test_no_tokenizer_yet_is_pending(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    found = look(folder)
    assert found.status == "pending" and "no tokenizer files yet" in found.reason


def test_remote_code_is_rejected_unless_trusted(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    edit_config(folder, auto_map={"AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM"})
    refused = look(folder)
    assert refused.status == "rejected" and "auto_map" in refused.reason
    trusted = look(folder, trust_remote_code=True)
    assert trusted.reason != refused.reason and "auto_map" not in trusted.reason


def test_shapes_that_do_not_match_config_are_rejected(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    edit_config(folder, hidden_size=64)
    found = look(folder)
    assert found.status == "rejected" and "shapes do not match config.json" in found.reason
    assert "\n" not in found.reason


def test_content_hash_is_the_model_not_the_folder(tiny_candidate: Path, watched: Path):
    a = stage(tiny_candidate, watched, "checkpoint-1")
    b = stage(tiny_candidate, watched, "elsewhere")
    assert content_hash(a) == content_hash(b) == look(b).content_hash
    # files a writer adds beside the model later do not change what the model is
    (b / "README.md").write_text("# written after the weights")
    (b / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    torch.save({"x": torch.zeros(1)}, b / "optimizer.pt")
    assert content_hash(b) == content_hash(a)
    (b / "tokenizer_config.json").write_text("{}")
    assert content_hash(b) != content_hash(a)


def test_content_hash_sees_a_changed_weight_byte(tiny_candidate: Path, watched: Path):
    folder = stage(tiny_candidate, watched, "checkpoint-1")
    before = content_hash(folder)  # the digest of the weights is now cached
    file = folder / WEIGHTS
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF  # same size: only the mtime tells the cache
    stat = file.stat()
    file.write_bytes(bytes(data))
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert content_hash(folder) != before
    found = look(folder)  # the zoo's recorded sha256 catches the flipped byte
    assert found.status == "rejected" and "sha256" in found.reason


def test_scan_of_a_missing_folder_names_it(tmp_path: Path):
    missing = tmp_path / "no-such-run"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        scan(missing)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FileNotFoundError, match="a-file"):
        scan(tmp_path / "a-file")


def test_scan_orders_by_step_then_name(tiny_candidate: Path, watched: Path):
    stage(tiny_candidate, watched, "checkpoint-20", meta=False)
    stage(tiny_candidate, watched, "checkpoint-3", meta=False)
    stage(tiny_candidate, watched, "final", meta=False)
    stage(tiny_candidate, watched, "zoo-last-by-name")  # its metadata says step 0
    (watched / "checkpoint-50").mkdir()  # pending ones are listed too, in their place
    found = scan(watched, now=later())
    assert [(i.name, i.step) for i in found] == [
        ("zoo-last-by-name", 0),
        ("checkpoint-3", 3),
        ("checkpoint-20", 20),
        ("checkpoint-50", 50),
        ("final", None),
    ]
    assert [i.status for i in found] == ["ready", "ready", "ready", "pending", "ready"]
