"""The polling: every ready checkpoint is claimed (one process at a time), checked against
what MLflow holds (a finished scoring per task, or a recorded rejection) and, only if something
is missing, scored or recorded as rejected. A checkpoint still being written waits, said once.

The claim is an exclusive `flock` per content hash: two watchers on one folder never score the
same checkpoint at once, and a watcher killed mid-scoring releases it with its process, so the
restart scores what the killed one did not finish (its steps come back from ZenML's cache).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sftcast.watch.folder import Inspection, scan
from sftcast.watch.locks import claim
from sftcast.watch.records import tasks_left


class ScoringFailed(RuntimeError):
    """A checkpoint's scoring run failed; the message says why. Not retried by this process."""


@dataclass
class PollSummary:
    scored: int = 0
    rejected: int = 0
    failed: int = 0
    pending: int = 0

    def add(self, other: PollSummary) -> None:
        for name in ("scored", "rejected", "failed", "pending"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Watcher:
    folder: Path
    tasks: list[str]
    lock_dir: Path
    score: Callable[[Inspection, list[str]], None]  # one scoring run for these tasks
    reject: Callable[[Inspection], None]  # record a rejection
    recorded: Callable[[str], set[str]]  # content hash -> the tasks MLflow holds scored
    say: Callable[[str], None]
    settle_seconds: float = 10.0
    trust_remote_code: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # content hash -> why
    _waiting: dict[Path, set[str]] = field(default_factory=dict)  # the kinds said of each

    def watch(self, interval: float, once: bool, stop: threading.Event) -> PollSummary:
        """Poll until `stop` is set (or once); the checkpoint in hand is always finished."""
        total = PollSummary()
        while True:
            total.add(self.poll(stop))
            if once or stop.is_set() or stop.wait(interval):
                return total

    def poll(self, stop: threading.Event) -> PollSummary:
        summary = PollSummary()
        for found in scan(
            self.folder, settle_seconds=self.settle_seconds,
            trust_remote_code=self.trust_remote_code,
        ):  # fmt: skip
            if stop.is_set():
                break
            if found.status == "pending":
                summary.pending += 1
                self._note_waiting(found)
                continue
            self._waiting.pop(found.path, None)
            if found.content_hash is None or found.content_hash in self.failed:
                continue
            self._settle(found, summary)
        return summary

    def _settle(self, found: Inspection, summary: PollSummary) -> None:
        """Score or reject `found` unless another process holds it or MLflow has it all."""
        assert found.content_hash is not None
        with claim(self.lock_dir / f"{found.content_hash}.lock") as held:
            if not held:  # another watcher is on it; the next poll finds it recorded
                return
            left = tasks_left(self.tasks, self.recorded(found.content_hash))
            if not left:
                return
            if found.status == "rejected":
                self.reject(found)
                summary.rejected += 1
                self.say(f"rejected {found.name}: {found.reason}")
                return
            try:
                self.score(found, left)
            except ScoringFailed as err:
                self.failed[found.content_hash] = str(err)
                summary.failed += 1
                self.say(f"failed {found.name}: {err} (not retried until the watch restarts)")
                return
            summary.scored += 1

    def _note_waiting(self, found: Inspection) -> None:
        """Said once per kind of wait, not at every poll (the seconds in it change)."""
        kind = re.sub(r"\d+(\.\d+)?", "#", found.reason)
        said = self._waiting.setdefault(found.path, set())
        if kind not in said:
            said.add(kind)
            self.say(f"waiting for {found.name}: {found.reason}")
