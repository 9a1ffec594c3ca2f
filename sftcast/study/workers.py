"""The parts of a candidate's measurement run side by side in single-thread worker processes.

Why processes and not threads: the study's models are so small that one process cannot keep
two cores busy with its matmuls; two single-thread processes fine-tuning different tasks
finished rag and cls in 24 s where one two-thread process took 34 s (docs/experiments.md).
The pool lives as long as the process that made it, so a study's steps share its workers
(and their warm imports); a worker that dies takes the pool with it, and the next call makes a
new one. Each worker runs one thread, whichever part it takes: the same settings give the same
numbers in any order.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _start_worker() -> None:
    """One thread, and the measuring code imported once, at the worker's start."""
    import torch

    import sftcast.study.candidate  # noqa: F401

    torch.set_num_threads(1)


def _started() -> float:
    time.sleep(0.5)  # long enough that each worker takes one
    return time.perf_counter()


def _pool(workers: int) -> ProcessPoolExecutor:
    if workers not in _POOLS:
        # spawn: a fork of a process that has run torch (and ZenML's threads) can deadlock
        context = multiprocessing.get_context("spawn")
        _POOLS[workers] = ProcessPoolExecutor(workers, context, initializer=_start_worker)
    return _POOLS[workers]


def run_parts(
    parts: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], workers: int
) -> list[Any]:
    """Each `(fn, args)`'s result, in order: in this process when `workers` is 1, else in
    that many single-thread workers taking the parts in the order given (longest first keeps
    them busy to the end)."""
    if workers == 1:
        return [fn(*args) for fn, args in parts]
    pool = _pool(workers)
    try:
        futures: list[Future[Any]] = [pool.submit(fn, *args) for fn, args in parts]
        return [f.result() for f in futures]
    except BrokenProcessPool:
        _POOLS.pop(workers, None)  # a worker was killed: a later call starts afresh
        raise


def warm(workers: int) -> float:
    """Start the workers (imports included) before any timed work; the seconds it took."""
    start = time.perf_counter()
    pool = _pool(workers)
    for future in [pool.submit(_started) for _ in range(workers)]:
        future.result()
    return time.perf_counter() - start


def shutdown() -> None:
    """Stop every worker (tests; a process that exits stops them anyway)."""
    for pool in _POOLS.values():
        pool.shutdown(cancel_futures=True)
    _POOLS.clear()
