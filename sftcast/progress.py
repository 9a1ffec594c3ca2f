"""Progress of long loops (pre-training, SFT): a live tqdm bar on a terminal; elsewhere (a log
file, CI, a pipe) a few plain lines, since every carriage-return update of a bar would become
a line of its own there."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm.auto import tqdm

PLAIN_LINES = 4  # lines a loop prints when the output is not a terminal: at 25, 50, 75, 100%


class PlainProgress:
    """The part of tqdm's interface the loops use, printing `desc: k/total unit (p%) ...`
    each time another quarter of the work is done."""

    def __init__(
        self, total: int, desc: str, unit: str, initial: int = 0, file: TextIO | None = None
    ):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.file = file or sys.stderr
        self.postfix: dict[str, Any] = {}
        self.printed = initial * PLAIN_LINES // max(total, 1)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        due = self.n * PLAIN_LINES // max(self.total, 1)
        if due > self.printed:
            self.printed = due
            extra = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
            percent = 100 * self.n // max(self.total, 1)
            line = f"{self.desc}: {self.n}/{self.total} {self.unit} ({percent}%)"
            print(f"{line}{', ' + extra if extra else ''}", file=self.file, flush=True)


def progress_bar(
    total: int, desc: str, unit: str, initial: int = 0, enabled: bool = True
) -> tqdm | PlainProgress:
    if enabled and not sys.stderr.isatty():
        return PlainProgress(total, desc, unit, initial)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled)
