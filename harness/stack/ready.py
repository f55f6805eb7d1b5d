"""When a cell's stack is ready for its load, read from files the observers write anyway.

``docker compose up --wait`` waits on Docker health checks, and Docker 20.10 runs the
first check one ``interval`` after the start and every ``interval`` after that, each a
new process exec'd in the container (``start_interval`` needs Engine API 1.44, Docker
25). A 1 s interval cost ~3.7 s per cell; a 100 ms one would exec ten processes a second
into the stack during the load it measures. So the harness starts the stack with
``up -d`` and waits here instead, on the census files in the cell's folder (a file read
every ``POLL_S``, no process spawned):

- the target's and the backend's census show a ``LISTEN`` socket: the servers accept
  (haproxy binds all its listeners before it serves, so one is all of them);
- the capture's pcap has its 24-byte file header: tcpdump writes it once its capture is
  active (``pcap_dump_open`` after ``pcap_activate``; ``-U`` flushes it);
- then every census has ``BASELINE_SAMPLES`` more samples: the pre-load baseline of each
  TCP state (``harness.analyse.census``: the maximum before ``load_start``), which a
  fixed 1 s sleep used to give. Five samples (0.5 s): three gave the same zero
  baselines and 0.2 s less a cell, but then the calibration's probe and wire disagreed
  by 2-5 ms on 1-6 of 20 connections in 3 runs out of 3 (tests/integration/
  test_measurements.py), the previous harness in none of 2 run between them. Why is not
  established; the load starting 0.2 s sooner after the stack (and the previous cell's
  teardown) is the one change that reaches into the load's timing.

A container that exits meanwhile ends the wait at once (Docker SDK, every
``STATE_EVERY_S``); so does the bound.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.errors import CellError
from harness.stack.compose import LOCAL, engine
from harness.stack.project import PROJECT_LABEL

POLL_S = 0.02
STATE_EVERY_S = 0.5
BOUND_S = 90.0  # as `up --wait --wait-timeout 90` was
# 0.5 s of idle stack at census.sh's 0.1 s interval: the baseline of every state.
BASELINE_SAMPLES = 5
PCAP_HEADER_BYTES = 24  # pcap-savefile(5): the global header


def samples(path: Path) -> tuple[int, bool]:
    """(number of samples, whether any shows a LISTEN socket) of a census file so far;
    (0, False) when census.sh has not created it yet. Blocks are written whole."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0, False
    count = text.count("\nS ") + text.startswith("S ")
    return count, "\nLISTEN in " in text


def wait(
    project: str,
    folder: Path,
    target: str,
    *,
    bound_s: float = BOUND_S,
    baseline_samples: int = BASELINE_SAMPLES,
    contexts: tuple[str, ...] = (LOCAL,),
) -> dict[str, float]:
    """Wait until the stack of ``project`` (files in ``folder``, the proxy under test
    ``target``: haproxy or calibration) is ready and has its baseline.

    ``contexts``: the engines the stack runs on (each is asked for exited containers).
    Returns seconds spent: ``{"listen": ..., "baseline": ...}``, both from the call.
    Raises CellError when a container of the project exits or restarts, or when
    ``bound_s`` passes, naming what was still missing.
    """
    started = time.monotonic()
    sides = ("client", target, "backend")
    censuses = {side: folder / f"census-{side}.txt" for side in sides}
    pcap = folder / f"{target}.pcap"
    listening = {target: False, "backend": False}
    ready_at: float | None = None
    need: dict[str, int] = {}
    next_state = started
    while True:
        now = time.monotonic()
        if now >= next_state:
            for context in contexts:
                _check_running(project, context)
            next_state = now + STATE_EVERY_S
        counts = {side: samples(path) for side, path in censuses.items()}
        if ready_at is None:
            for side in listening:
                listening[side] = counts[side][1]
            capturing = pcap.is_file() and pcap.stat().st_size >= PCAP_HEADER_BYTES
            if all(listening.values()) and capturing:
                ready_at = now
                need = {side: n + baseline_samples for side, (n, _) in counts.items()}
        if ready_at is not None and all(counts[s][0] >= n for s, n in need.items()):
            return {"listen": ready_at - started, "baseline": now - ready_at}
        if now - started > bound_s:
            raise CellError(_missing(bound_s, listening, pcap, ready_at, counts, need))
        time.sleep(POLL_S)


def _check_running(project: str, context: str = LOCAL) -> None:
    """CellError when a container of the project has exited or is restarting."""
    down = engine(context).containers.list(
        all=True,
        filters={"label": f"{PROJECT_LABEL}={project}", "status": ["exited", "restarting", "dead"]},
        sparse=True,
    )
    if down:
        names = ", ".join(
            c.attrs.get("Labels", {}).get("com.docker.compose.service", c.id[:12]) for c in down
        )
        raise CellError(
            f"{names} stopped while the stack was starting; its output is in containers.log"
        )


def _missing(
    bound_s: float,
    listening: dict[str, bool],
    pcap: Path,
    ready_at: float | None,
    counts: dict[str, tuple[int, bool]],
    need: dict[str, int],
) -> str:
    if ready_at is None:
        what = [f"{side} is not listening" for side, ok in listening.items() if not ok]
        if not (pcap.is_file() and pcap.stat().st_size >= PCAP_HEADER_BYTES):
            what.append("the capture has not started")
        if not what:
            what.append("the census files are missing")
    else:
        what = [
            f"census-{side} has {counts[side][0]} of {n} samples"
            for side, n in need.items()
            if counts[side][0] < n
        ]
    return (
        f"the stack was not ready after {bound_s:.0f} s: {'; '.join(what)} "
        "(the containers' output is in containers.log)"
    )
