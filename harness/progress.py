"""Progress lines for long work: which cell, how far, what it measured, elapsed and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from harness.analyse.record import CellRecord
from harness.plan.spec import Cell


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def headline(record: CellRecord) -> str:
    """The one-line result of a cell, as soon as it ends."""
    if not record.ok:
        return f"FAILED: {(record.error or '?').splitlines()[0]}"
    probe = record.m.probe
    if probe:
        delay = probe.delay_ms
        ends = ", ".join(f"{k} ×{v}" for k, v in probe.ends.items())
        return (
            f"close delay p50 {delay.p50} ms, max {delay.max} ms ({ends}), "
            f"{probe.stalled}/{probe.connections} stalled"
        )
    load = record.m.load
    if not load:
        return "no load statistics (see locust.log)"
    return (
        f"{load.rps:.0f} req/s, p50 {load.p50_ms} ms, p99 {load.p99_ms} ms, "
        f"{load.failures} failures"
    )


class Progress:
    """One line per step on stderr, with the time since start; per cell, a start line
    and an end line with what it measured and the ETA.

    The ETA scales each remaining cell's bound (``start``'s ``bounds``: cell id -> (kind,
    seconds), the load's own bound plus set-up and tear-down) by how long the finished
    cells of its kind took against their bounds (1 until one has finished), plus the
    time seen between cells. Kinds differ: a Locust cell's bound is close to what it
    takes, a probe cell's is a deadline it seldom needs. Replayed on a fresh clone's
    default matrix (49 cells, 466 s after the first), the first ETA was 419 s; one
    ratio for all cells said 155 s, the average cell 240 s.
    """

    def __init__(self, out: TextIO | None = None) -> None:
        # sys.stderr as it is now, not as it was at import (a redirect since is followed)
        self.out = out if out is not None else sys.stderr
        self.t0 = time.monotonic()
        self.total = 0
        self.done = 0
        self.bounds: dict[str, tuple[str, float]] = {}
        self.spent: dict[str, list[float]] = {}  # kind -> [seconds taken, seconds bound]
        self.in_cells = 0.0

    def step(self, message: str) -> None:
        print(f"[{_clock(time.monotonic() - self.t0)}] {message}", file=self.out, flush=True)

    def start(self, total: int, bounds: dict[str, tuple[str, float]] | None = None) -> None:
        """``bounds``: cell id -> (kind, seconds); without them the ETA is the average
        cell's time times the cells left."""
        self.total, self.done, self.t_cells = total, 0, time.monotonic()
        self.bounds, self.spent, self.in_cells = dict(bounds or {}), {}, 0.0

    def cell_start(self, cell: Cell) -> None:
        self.step(
            f"cell {cell.index}/{cell.total}: {cell.version.label} · {cell.scenario} · "
            f"{cell.changed_params_text} · rep {cell.repetition}"
        )

    def eta_s(self, cell: Cell, seconds: float) -> float:
        """Seconds left after ``cell``, which took ``seconds``, by the weighting above."""
        elapsed = time.monotonic() - self.t_cells
        self.in_cells += seconds
        kind, bound = self.bounds.pop(cell.id, ("", 0.0))
        taken = self.spent.setdefault(kind, [0.0, 0.0])
        taken[0] += seconds
        taken[1] += bound
        left = self.total - self.done
        if not self.bounds or len(self.bounds) != left:
            return elapsed / max(self.done, 1) * left  # no bounds: the average cell
        gap = max(elapsed - self.in_cells, 0.0) / max(self.done, 1)

        def ratio(kind: str) -> float:
            took, bound = self.spent.get(kind, (0.0, 0.0))
            return took / bound if bound > 0 else 1.0

        return sum(b * ratio(k) + gap for k, b in self.bounds.values())

    def cell_end(self, cell: Cell, record: CellRecord, seconds: float) -> None:
        self.done += 1
        eta = self.eta_s(cell, seconds)
        self.step(
            f"cell {cell.index}/{cell.total} done in {seconds:.0f} s: {headline(record)} "
            f"(ETA {_clock(eta)})"
        )
