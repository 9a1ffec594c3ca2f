"""`FolderMaterializer`: folders travel between steps as plain tar, files as ZenML keeps
them, and an archive that reaches outside its folder is refused."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from materializers import FolderMaterializer


@pytest.fixture
def store_uri(zenml_client, tmp_path: Path) -> str:
    root = Path(zenml_client.active_stack.artifact_store.path)
    uri = root / "test-folder-materializer" / tmp_path.name
    uri.mkdir(parents=True)
    return str(uri)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_folder_round_trips_as_an_uncompressed_tar(store_uri: str, tmp_path: Path) -> None:
    folder = tmp_path / "candidate"
    (folder / "nested").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "nested" / "config.json").write_text('{"hidden_size": 128}')
    materializer = FolderMaterializer(store_uri)
    materializer.save(folder)
    archive = Path(store_uri) / "data.tar"
    with tarfile.open(archive, "r:") as tar:  # "r:" refuses a compressed archive
        assert "./model.safetensors" in tar.getnames()
    loaded = materializer.load(Path)
    assert loaded != folder and _tree(loaded) == _tree(folder)


def test_a_single_file_round_trips(store_uri: str, tmp_path: Path) -> None:
    file = tmp_path / "results.csv"
    file.write_text("candidate,score\nzoo:a@1,0.5\n")
    materializer = FolderMaterializer(store_uri)
    materializer.save(file)
    assert not (Path(store_uri) / "data.tar").exists()
    assert materializer.load(Path).read_text() == file.read_text()


@pytest.mark.parametrize("filters", ["stdlib", "without extraction filters"])
@pytest.mark.parametrize("escape", ["a parent path", "a link out"])
def test_an_archive_reaching_outside_its_folder_is_refused(
    store_uri: str, escape: str, filters: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if filters != "stdlib":  # as on Python before 3.11.4 (Debian bookworm's 3.11.2)
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with tarfile.open(Path(store_uri) / "data.tar", "w") as tar:
        if escape == "a parent path":
            payload = b"overwritten"
            member = tarfile.TarInfo("../escaped.txt")
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
        else:
            member = tarfile.TarInfo("escaped.txt")
            member.type, member.linkname = tarfile.SYMTYPE, str(Path(store_uri).parent)
            tar.addfile(member)
    with pytest.raises(tarfile.TarError):
        FolderMaterializer(store_uri).load(Path)
    assert not (Path(store_uri).parent / "escaped.txt").exists()


def test_without_extraction_filters_a_folder_still_round_trips(
    store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    folder = tmp_path / "candidate"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "config.json").write_text('{"hidden_size": 128}')
    materializer = FolderMaterializer(store_uri)
    materializer.save(folder)
    assert _tree(materializer.load(Path)) == _tree(folder)
