"""Calibration: is a close delay the harness reports the close delay that happened?

Calibration cells put a target with a known, injected FIN delay d in haproxy's place
(``scenario: calibration``). Two instruments time every connection: the probe, and the
packet capture in the target's namespace. Each connection is judged on its own:

- probe against wire: within ``WIRE_TOLERANCE_MS``;
- probe against d: within ``PROBE_TOLERANCE_MS``, wherever the wire shows that the
  target sent its FIN on time (within ``ON_TIME_MS`` of d: a probe that agrees with
  such a wire is within ``PROBE_TOLERANCE_MS`` of d).

Two things outside the probe's code can spoil one connection, and the wire tells both:

- "target late": the target is a process too, and on a busy machine it is scheduled
  late and sends its FIN after d. The delay that happened was not d, so the probe is
  not held to d on that connection.
- "probe off the wire": now and then the probe's whole process is kept off the CPU
  for a few ms just as a FIN arrives (by the machine's scheduler or hypervisor, not
  by the probe's own work: on a 2-core VM, about 1 connection in 100 to 200; for 7 of
  8 of them the probe's event loop was stopped for the same few ms at that instant,
  while its process used no CPU). That connection is timed late by as much, and the
  wire shows it.

Either may touch a few connections; the cell lists them and still passes. More than
``MAX_DISTURBED`` of a cell's connections of either kind and the cell proves nothing
about the probe: the calibration fails, saying which and how far.

Each d runs under two probe loads (``concurrency``, ``stagger_ms``): one connection
start every 50 ms, each connection its own trial, and the scenarios' own load, 20
connections 5 ms apart (harness/scenarios.py ``Probe``), so the figures state the
probe's precision where the scenarios use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabulate import tabulate

if TYPE_CHECKING:  # records are read and written by harness.analyse.record
    from harness.analyse.record import CellRecord

PROBE_TOLERANCE_MS = 5.0
WIRE_TOLERANCE_MS = 2.0
# The target is "on time" when the wire saw its FIN this close to d: a probe that agrees
# with that wire is then within PROBE_TOLERANCE_MS of d.
ON_TIME_MS = PROBE_TOLERANCE_MS - WIRE_TOLERANCE_MS
MAX_DISTURBED = 0.1  # fraction of a cell's connections, for each kind


def _pairs(record: CellRecord) -> list[tuple[float, float | None]]:
    return [(p, w) for p, w in record.m.calibration_pairs or [] if p is not None]


def _late(d: float, wire: float | None) -> bool:
    return wire is None or abs(wire - d) > ON_TIME_MS


def _off_wire(probe: float, wire: float | None) -> bool:
    return wire is not None and abs(probe - wire) > WIRE_TOLERANCE_MS


def target_late(record: CellRecord) -> int:
    """Connections whose FIN the wire saw more than ON_TIME_MS away from d."""
    d = record.params["fin_delay_ms"]
    return sum(_late(d, w) for _, w in _pairs(record))


def off_wire(record: CellRecord) -> list[tuple[float, float]]:
    """(probe, wire) of the connections where the probe was off the wire by more than
    the tolerance."""
    return [(p, w) for p, w in _pairs(record) if w is not None and _off_wire(p, w)]


def load(record: CellRecord) -> str:
    """The probe's load in a calibration cell, e.g. "20 at once, 5 ms apart"."""
    params = record.params
    # cells recorded before the load was a parameter ran 20 at once, 50 ms apart
    at_once = params.get("concurrency", params.get("connections", 20))
    return f"{at_once} at once, {params.get('stagger_ms', 50)} ms apart"


def problems(record: CellRecord) -> list[str]:
    """What is out of tolerance in one calibration cell (empty: it passed)."""
    if not record.ok:
        return [f"cell failed: {(record.error or '?').splitlines()[0]}"]
    d = f"{record.params['fin_delay_ms']} ms, {load(record)}"
    joined = record.m.probe_vs_wire
    ends = record.m.probe.ends if record.m.probe else {}
    pairs = _pairs(record)
    found = []
    expected = record.params["connections"]
    if ends.get("fin", 0) != expected:
        found.append(f"d={d}: ends {ends}, expected {expected} FIN")
    if not joined or joined.compared != expected or len(pairs) != expected:
        found.append(f"d={d}: only {joined and joined.compared} of {expected} joined on the wire")
        return found
    # Every other connection is within WIRE_TOLERANCE_MS of a wire within ON_TIME_MS
    # of d: within PROBE_TOLERANCE_MS of d by construction.
    off = off_wire(record)
    if len(off) > MAX_DISTURBED * expected:
        listed = ", ".join(f"{p:.2f} vs {w:.2f}" for p, w in off)
        found.append(
            f"d={d}: probe and wire differ by more than {WIRE_TOLERANCE_MS} ms on "
            f"{len(off)} of {expected} connections (probe vs wire ms: {listed})"
        )
    late = target_late(record)
    if late > MAX_DISTURBED * expected:
        injected = record.params["fin_delay_ms"]
        latest = max(abs(w - injected) for _, w in pairs if w is not None)
        found.append(
            f"d={d}: the target itself sent its FIN late on {late} of {expected} "
            f"connections (up to {latest:.1f} ms, seen on the wire): the machine was too "
            "busy to calibrate on. Run again with nothing else running."
        )
    return found


def verdict(record: CellRecord) -> str:
    return "ok" if not problems(record) else "OUT OF TOLERANCE"


def off_wire_count(record: CellRecord) -> str:
    """How many connections the probe timed off the wire, and the worst of them."""
    off = off_wire(record)
    if not off:
        return "0"
    worst = max(abs(p - w) for p, w in off)
    return f"{len(off)} (up to {worst:.2f} ms)"


def table(records: list[CellRecord], fmt: str = "github") -> str:
    """The calibration table: per injected delay and load, probe and wire statistics (ms),
    how many connections were off the wire or late, and the cell's verdict."""
    rows = []
    for record in records:
        m = record.m
        if record.scenario != "calibration" or not m.probe or not m.wire or not m.probe_vs_wire:
            continue
        probe, wire, joined = m.probe.delay_ms, m.wire.delay_ms, m.probe_vs_wire
        rows.append(
            [
                record.params["fin_delay_ms"],
                load(record),
                probe.count,
                probe.p50,
                probe.max,
                wire.p50,
                wire.max,
                joined.abs_diff_ms.p50,
                joined.abs_diff_ms.max,
                off_wire_count(record),
                target_late(record),
                verdict(record),
            ]
        )
    headers = [
        "injected ms", "probe load", "connections", "probe p50 ms", "probe max ms",
        "wire p50 ms", "wire max ms", "|probe-wire| p50 ms", "|probe-wire| max ms",
        f"probe off wire > {WIRE_TOLERANCE_MS:g} ms", "target late", "verdict",
    ]  # fmt: skip
    return tabulate(rows, headers, tablefmt=fmt)
