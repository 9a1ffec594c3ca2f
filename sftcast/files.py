"""Files written for a user (reports, plots, tables, summaries, run configurations, manifests)
are written whole or not at all: into a temporary file beside the target, then renamed over it
(`os.replace`, atomic within one filesystem). A failure part-way (a full disk, a killed
process) leaves the previous file as it was, never half of a new one."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside `path`, for a writer that wants a path (savefig, to_csv,
    to_parquet). Leaving the block normally renames it over `path`; an error removes it and
    `path` is untouched. The temporary keeps `path`'s suffix, for writers that go by it."""
    path = Path(path)
    tmp = _create_beside(path)
    try:
        yield tmp
        if path.exists():
            shutil.copymode(path, tmp)  # a rewrite keeps the permissions the file had
        _fsync(tmp)  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """`Path(path).write_text(text)`, whole or not at all."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def _create_beside(path: Path) -> Path:
    """Create an empty, hidden temporary file in `path`'s folder (the same filesystem, so the
    rename is atomic). Created with mode 0o666 as `open` does, so the umask applies, rather
    than `tempfile`'s 0o600; O_EXCL never takes over someone else's file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
