"""Locks between processes of one machine (`flock`): the kernel releases them when their holder
dies, so a watcher killed mid-scoring leaves nothing stale behind. Processes on other machines
(Kubernetes pods) are not held off by them; MLflow's records still keep their work single."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def claim(path: Path) -> Iterator[bool]:
    """Try to hold `path`'s exclusive lock without waiting: True when held."""
    with _opened(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `path`'s exclusive lock, waiting for it."""
    with _opened(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def _opened(path: Path) -> Iterator[object]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        yield handle
