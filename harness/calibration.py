"""Calibration: is a close delay the harness reports the close delay that happened?

Calibration cells put a target with a known, injected FIN delay d in haproxy's place
(``scenario: calibration``). Two instruments time every connection: the probe, and the
packet capture in the target's namespace. Per connection, the probe must be within
``PROBE_TOLERANCE_MS`` of d and within ``WIRE_TOLERANCE_MS`` of the wire.

The target is a process too: on a busy machine it can be scheduled late and send its
FIN after d. The wire sees that. A connection whose FIN the wire saw more than
``PROBE_TOLERANCE_MS`` away from d is "target late": it is not held against the probe's
distance to d (the delay that happened was not d), but still against its distance to the
wire. More than ``MAX_TARGET_LATE`` of them and the cell proves nothing: the machine was
too busy to calibrate on, and the calibration fails saying so.
"""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

PROBE_TOLERANCE_MS = 5.0
WIRE_TOLERANCE_MS = 2.0
MAX_TARGET_LATE = 0.1  # fraction of a cell's connections


def _on_time(record: dict[str, Any]) -> list[float]:
    """Probe delays of the connections whose FIN the wire saw within tolerance of d."""
    d = record["params"]["fin_delay_ms"]
    pairs = record["metrics"].get("calibration_pairs", [])
    return [p for p, w in pairs if w is not None and abs(w - d) <= PROBE_TOLERANCE_MS]


def target_late(record: dict[str, Any]) -> int:
    """Connections whose FIN the wire saw more than the tolerance away from d."""
    return len(record["metrics"].get("calibration_pairs", [])) - len(_on_time(record))


def problems(record: dict[str, Any]) -> list[str]:
    """What is out of tolerance in one calibration cell (empty: it passed)."""
    if record.get("status") != "ok":
        return [f"cell failed: {record.get('error', '?').splitlines()[0]}"]
    d = record["params"]["fin_delay_ms"]
    metrics = record["metrics"]
    probe, joined = metrics["probe"], metrics.get("probe_vs_wire")
    pairs = metrics.get("calibration_pairs", [])
    found = []
    expected = record["params"]["connections"]
    if probe["ends"].get("fin", 0) != expected:
        found.append(f"d={d} ms: ends {probe['ends']}, expected {expected} FIN")
    if not joined or joined["compared"] != expected or len(pairs) != expected:
        found.append(
            f"d={d} ms: only {joined and joined['compared']} of {expected} joined on the wire"
        )
        return found
    if joined["abs_diff_ms"]["max"] > WIRE_TOLERANCE_MS:
        found.append(
            f"d={d} ms: probe and wire differ by up to {joined['abs_diff_ms']['max']:.2f} ms "
            f"(> {WIRE_TOLERANCE_MS})"
        )
    worst = max((abs(p - d) for p in _on_time(record)), default=0.0)
    if worst > PROBE_TOLERANCE_MS:
        found.append(f"d={d} ms: probe off by up to {worst:.2f} ms (> {PROBE_TOLERANCE_MS})")
    late = target_late(record)
    if late > MAX_TARGET_LATE * expected:
        latest = max(abs(w - d) for _, w in pairs)
        found.append(
            f"d={d} ms: the target itself sent its FIN late on {late} of {expected} "
            f"connections (up to {latest:.1f} ms, seen on the wire): the machine was too "
            "busy to calibrate on. Run again with nothing else running."
        )
    return found


def table(records: list[dict[str, Any]], fmt: str = "github") -> str:
    rows = []
    for record in records:
        if record.get("scenario") != "calibration" or record.get("status") != "ok":
            continue
        m = record["metrics"]
        probe, wire, joined = m["probe"]["delay_ms"], m["wire"]["delay_ms"], m["probe_vs_wire"]
        rows.append(
            [
                record["params"]["fin_delay_ms"],
                probe["count"],
                probe["p50"],
                probe["max"],
                wire["p50"],
                wire["max"],
                joined["abs_diff_ms"]["max"],
                target_late(record),
                "ok" if not problems(record) else "OUT OF TOLERANCE",
            ]
        )
    headers = [
        "injected ms", "connections", "probe p50 ms", "probe max ms",
        "wire p50 ms", "wire max ms", "max |probe-wire| ms", "target late", "verdict",
    ]  # fmt: skip
    return tabulate(rows, headers, tablefmt=fmt)
