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


def test_an_archive_reaching_outside_its_folder_is_refused(store_uri: str) -> None:
    with tarfile.open(Path(store_uri) / "data.tar", "w") as tar:
        payload = b"overwritten"
        member = tarfile.TarInfo("../escaped.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    with pytest.raises(tarfile.OutsideDestinationError):
        FolderMaterializer(store_uri).load(Path)
