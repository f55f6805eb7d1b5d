"""The harness's CLI as a background process, for tests that act on it while it runs
(signals, faults, a second run at the same time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import ROOT


def start(results: str | Path, *args: str, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """``python -m harness ARGS`` with results in ``results``, in a session of its own
    (like a terminal: a signal sent to it reaches the whole group)."""
    env = {**os.environ, "HARNESS_RESULTS": str(results), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    """Wait for ``proc``; its exit status and stderr. Killed if it outlives ``timeout``."""
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err
