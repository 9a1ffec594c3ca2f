"""The watch rules that need no pipeline: when a lead over production counts, and the locks that
keep two watchers of one machine from scoring the same checkpoint twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sftcast.watch.locks import claim
from sftcast.watch.scoring import beyond_spread


@pytest.mark.parametrize(
    ("p", "accuracy", "std", "expected"),
    [
        (0.9, 0.8, 0.05, True),  # a confident call by a comparator that beats a coin
        (0.55, 0.8, 0.1, False),  # the margin over a coin is inside the comparator's wobble
        (0.9, 0.55, 0.1, False),  # the comparator itself is not surely better than a coin
        (0.2, 0.8, 0.05, False),  # confidently behind production
        (None, 0.8, 0.05, False),  # no production to beat
        (0.9, None, None, False),  # a comparator never judged
    ],
)
def test_a_lead_counts_only_beyond_the_comparators_spread(p, accuracy, std, expected):
    assert beyond_spread(p, accuracy, std) is expected


def test_a_claimed_checkpoint_is_refused_to_a_second_process_until_its_holder_dies(
    tmp_path: Path,
):
    lock = tmp_path / "locks" / "abc.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl,sys,time;h=open(sys.argv[1],'a');fcntl.flock(h,fcntl.LOCK_EX);"
         "print('held',flush=True);time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with claim(lock) as held:
            assert held is False
    finally:
        holder.kill()
        holder.wait()
    with claim(lock) as held:  # the kernel dropped the dead holder's lock: nothing stale
        assert held is True
