"""Folders (model checkpoints, zoo runs, datasets) as uncompressed tar archives.

ZenML's own `PathMaterializer` gzips every folder. Safetensors weights barely compress, and
the default run moves each candidate folder through a dozen steps: gzip and gunzip were about
5% of a cold `make run` on 2 cores. A plain tar keeps what matters of it (one object per
artifact in any artifact store, members checked on extraction) without the compression.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any, ClassVar

from zenml.io import fileio
from zenml.materializers.path_materializer import PathMaterializer


class FolderMaterializer(PathMaterializer):
    """A `Path`: a folder as `data.tar` (uncompressed), a single file as ZenML stores it."""

    ARCHIVE_NAME: ClassVar[str] = "data.tar"

    def save(self, data: Any) -> None:
        if not (isinstance(data, Path) and data.is_dir()):
            super().save(data)  # a single file, or the same TypeError for a non-Path
            return
        with self.get_temporary_directory(delete_at_exit=True) as directory:
            archive = os.path.join(directory, self.ARCHIVE_NAME)
            with tarfile.open(archive, "w") as tar:
                tar.add(data, arcname=".")
            fileio.copy(archive, os.path.join(self.uri, self.ARCHIVE_NAME))

    def load(self, data_type: type[Any]) -> Any:
        remote = os.path.join(self.uri, self.ARCHIVE_NAME)
        if not fileio.exists(remote):
            return super().load(data_type)  # a single file
        with self.get_temporary_directory(delete_at_exit=False) as directory:
            archive = os.path.join(directory, self.ARCHIVE_NAME)
            fileio.copy(remote, archive)
            with tarfile.open(archive) as tar:
                extract_checked(tar, directory, source=remote)
            os.remove(archive)
            return Path(directory)


def extract_checked(tar: tarfile.TarFile, directory: str, source: str) -> None:
    """Extract `tar` into `directory`, refusing members that would land outside it.

    An artifact store is not trusted input. The stdlib's "data" filter refuses absolute paths,
    links out of the folder and device files; it came in Python 3.11.4, and Debian bookworm's
    3.11 (a base the pods' image may be built on) is 3.11.2. There the same refusal is done
    here by hand, stricter: our folders hold only files and folders.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(directory, filter="data")
        return
    root = os.path.realpath(directory)
    for member in tar.getmembers():
        target = os.path.realpath(os.path.join(root, member.name))
        inside = os.path.commonpath([root, target]) == root
        if not (inside and (member.isfile() or member.isdir())):
            raise tarfile.TarError(
                f"{source}: member {member.name!r} is not a file or folder inside the archive's"
                " folder; refusing to extract it"
            )
    tar.extractall(directory)
