"""CPU-bound report work spread over the host's cores: forked worker processes.

`harness report` recomputes every cell from its raw files and draws every figure; both
are pure Python (parsing haproxy.log and the pcaps, matplotlib) and one core did all of
it: 12-14 s on a default-matrix run (49 cells, 68 MB) on the 2-core lab machine. The
work is split per cell (analysis) and per figure (census plots), each a pure function of
its arguments, and results come back in order, so the outputs are the same as in series.
Forked (not spawned): the workers start with the modules already imported, in ms.

A forked worker inherits the parent's signal handlers, and the CLI's
(harness.stack.project.interrupt_on_signals) raise on SIGINT/SIGTERM: a worker so
interrupted inside multiprocessing's queue lock dies holding it, and its siblings wait
on it for ever (a unit test's Pool hung 17 minutes on exactly that). The workers take
the defaults back: SIGTERM ends them, SIGINT (Ctrl-C reaches the whole process group)
is the parent's to handle, which shuts the pool down.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
Map = Callable[[Callable[..., T], Sequence[Any]], list[T]]


def serial(fn: Callable[..., T], items: Sequence[Any]) -> list[T]:
    """``[fn(item) for item in items]``: the in-process map."""
    return [fn(item) for item in items]


def worker_signals() -> None:
    """In a forked worker: SIGTERM back to its default (the process ends), SIGINT
    ignored (the parent handles it and shuts the pool down)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def pool(tasks: int) -> Iterator[Map[Any]]:
    """A map (``(fn, items) -> [fn(item), ...]``, in order) over forked worker processes,
    one per usable core (``os.sched_getaffinity``), or the in-process map when there is
    one core or at most one task. ``fn`` and the items must pickle (module-level
    functions, ``functools.partial`` of them); the first exception in a task is raised."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2 or tasks < 2:
        yield serial
        return
    context = multiprocessing.get_context("fork")
    workers = min(cores, tasks)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=worker_signals) as ex:
        yield lambda fn, items: list(ex.map(fn, items))
