"""The harness's CLI as a background process, for tests that act on it while it runs
(signals, faults, a second run at the same time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import ROOT

# `python -m harness ARGS` whose run id waits at a barrier: the first results.stamp()
# (the run id's time) of each of COUNT processes writes its arrival time into BARRIER,
# waits for the others', then sleeps to 0.05 s into the second after the last arrival,
# the same moment for all of them. How long each takes to get there (imports, parsing:
# 0.6-1.5 s, 0.1-0.5 s apart on this 2-core host) no longer decides the second.
_STAMP_AT_BARRIER = """
import math, os, runpy, sys, time
from pathlib import Path
from harness import results

barrier, count = Path(sys.argv[1]), int(sys.argv[2])
real_stamp = results.stamp

def stamp_at_barrier():
    results.stamp = real_stamp  # only the run id's stamp waits
    mine = barrier / f"{os.getpid()}.tmp"
    mine.write_text(repr(time.time()))
    mine.rename(barrier / f"{os.getpid()}.at")  # whole when seen
    while len(arrived := list(barrier.glob("*.at"))) < count:
        time.sleep(0.005)
    moment = math.floor(max(float(p.read_text()) for p in arrived)) + 1.05
    time.sleep(max(0.0, moment - time.time()))
    return real_stamp()

results.stamp = stamp_at_barrier
sys.argv = ["harness", *sys.argv[3:]]
runpy.run_module("harness", run_name="__main__", alter_sys=True)
"""


def start(
    results: str | Path, *args: str, cwd: Path = ROOT, entry: tuple[str, ...] = ("-m", "harness")
) -> subprocess.Popen[str]:
    """``python -m harness ARGS`` with results in ``results``, in a session of its own
    (like a terminal: a signal sent to it reaches the whole group). ``entry``: what
    follows ``python`` in place of ``-m harness``."""
    env = {**os.environ, "HARNESS_RESULTS": str(results), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, *entry, *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def start_in_one_second(
    results: str | Path, count: int, barrier: Path, *args: str
) -> list[subprocess.Popen[str]]:
    """``count`` runs of ``python -m harness ARGS`` (as :func:`start`) whose run ids are
    stamped in the same second: each waits for the others in ``barrier`` (an empty
    folder) before taking its run id's time."""
    entry = ("-c", _STAMP_AT_BARRIER, str(barrier), str(count))
    return [start(results, *args, entry=entry) for _ in range(count)]


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    """Wait for ``proc``; its exit status and stderr. Killed if it outlives ``timeout``."""
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err
