"""Progress lines for long work: which cell, how far, what it measured, elapsed and ETA."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from harness.plan.spec import Cell


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def headline(record: dict[str, Any]) -> str:
    """The one-line result of a cell, as soon as it ends."""
    if record.get("status") != "ok":
        return f"FAILED: {record.get('error', '?').splitlines()[0]}"
    probe = record["metrics"].get("probe")
    if probe:
        delay = probe["delay_ms"]
        ends = ", ".join(f"{k} ×{v}" for k, v in probe["ends"].items())
        return (
            f"close delay p50 {delay['p50']} ms, max {delay['max']} ms ({ends}), "
            f"{probe['stalled']}/{probe['connections']} stalled"
        )
    load = record["metrics"].get("load")
    if not load:
        return "no load statistics (see locust.log)"
    return (
        f"{load['rps']:.0f} req/s, p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, "
        f"{load['failures']} failures"
    )


class Progress:
    """One line per step on stderr, with the time since start; per cell, a start line
    and an end line with what it measured and the ETA.

    The ETA weighs each cell by its bound (``start``'s ``bounds``: the load's own bound
    plus set-up and tear-down, in seconds): the remaining cells' bounds, scaled by how
    long the finished cells took against theirs. A matrix that opens with quick cells
    and ends with long ones is then not promised the quick cells' pace.
    """

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.total = 0
        self.done = 0
        self.bounds: dict[str, float] = {}
        self.done_bound = 0.0

    def step(self, message: str) -> None:
        print(f"[{_clock(time.monotonic() - self.t0)}] {message}", file=self.out, flush=True)

    def start(self, total: int, bounds: dict[str, float] | None = None) -> None:
        """``bounds``: cell id -> seconds (cells not in it weigh the average)."""
        self.total, self.done, self.t_cells = total, 0, time.monotonic()
        self.bounds, self.done_bound = dict(bounds or {}), 0.0

    def cell_start(self, cell: Cell) -> None:
        self.step(
            f"cell {cell.index}/{cell.total}: {cell.version.label} · {cell.scenario} · "
            f"{cell.changed_params_text} · rep {cell.repetition}"
        )

    def eta_s(self, cell: Cell) -> float:
        """Seconds left after ``cell``, by the weighting above."""
        remaining = self.bounds.copy()
        self.done_bound += remaining.pop(cell.id, 0.0)
        self.bounds = remaining
        elapsed = time.monotonic() - self.t_cells
        left = self.total - self.done
        if self.done_bound > 0 and len(remaining) == left:
            return elapsed / self.done_bound * sum(remaining.values())
        return elapsed / self.done * left  # no bounds: the average cell

    def cell_end(self, cell: Cell, record: dict[str, Any], seconds: float) -> None:
        self.done += 1
        eta = self.eta_s(cell)
        self.step(
            f"cell {cell.index}/{cell.total} done in {seconds:.0f} s: {headline(record)} "
            f"(ETA {_clock(eta)})"
        )
