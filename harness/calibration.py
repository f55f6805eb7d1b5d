"""Calibration: is a close delay the harness reports the close delay that happened?

Calibration cells put a target with a known, injected FIN delay d in haproxy's place
(``scenario: calibration``). Every connection's probe delay must be within
``PROBE_TOLERANCE_MS`` of d, and the probe and the packet capture must agree within
``WIRE_TOLERANCE_MS`` per connection.
"""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

PROBE_TOLERANCE_MS = 5.0
WIRE_TOLERANCE_MS = 2.0


def problems(record: dict[str, Any]) -> list[str]:
    """What is out of tolerance in one calibration cell (empty: it passed)."""
    if record.get("status") != "ok":
        return [f"cell failed: {record.get('error', '?').splitlines()[0]}"]
    d = record["params"]["fin_delay_ms"]
    metrics = record["metrics"]
    probe, joined = metrics["probe"], metrics.get("probe_vs_wire")
    found = []
    expected = record["params"]["connections"]
    if probe["ends"].get("fin", 0) != expected:
        found.append(f"d={d} ms: ends {probe['ends']}, expected {expected} FIN")
    delays = probe["delay_ms"]
    if delays["count"]:
        worst = max(abs(delays["min"] - d), abs(delays["max"] - d))
        if worst > PROBE_TOLERANCE_MS:
            found.append(f"d={d} ms: probe off by up to {worst:.2f} ms (> {PROBE_TOLERANCE_MS})")
    if not joined or joined["compared"] != expected:
        found.append(
            f"d={d} ms: only {joined and joined['compared']} of {expected} joined on the wire"
        )
    elif joined["abs_diff_ms"]["max"] > WIRE_TOLERANCE_MS:
        found.append(
            f"d={d} ms: probe and wire differ by up to {joined['abs_diff_ms']['max']:.2f} ms "
            f"(> {WIRE_TOLERANCE_MS})"
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
                "ok" if not problems(record) else "OUT OF TOLERANCE",
            ]
        )
    headers = [
        "injected ms", "connections", "probe p50 ms", "probe max ms",
        "wire p50 ms", "wire max ms", "max |probe-wire| ms", "verdict",
    ]  # fmt: skip
    return tabulate(rows, headers, tablefmt=fmt)
