"""The close-delay probe's raw samples (probe.jsonl), summarised on the host side.

A sample whose response stopped arriving (the probe gave up after ``stall_ms`` without
a byte) and whose FIN the proxy then ignored for ``LATE_CLOSE_MS`` or more counts as
*stalled*; one whose body is short for any reason as *incomplete*.
Where the proxy's log is at hand, each sample is joined to its log line by the unique
id HAProxy sent back, so a stalled connection shows its own termination flags; and by
the client's source port (the log's %cp), so a connection whose response HAProxy made
itself (an error, without a unique id header) has its line too: its *fate*.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from harness.analyse.distribution import nearest_rank, summary
from harness.analyse.haproxy_log import LogEntry


def read(path: Path) -> list[dict[str, Any]]:
    """Every sample; none when the cell ran no probe."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# A FIN the proxy answers later than this was not noticed: it waited for a timeout.
LATE_CLOSE_MS = 500.0


def stalled(sample: dict[str, Any]) -> bool:
    """The response stopped (the probe gave up after a silence of stall_ms) *and* the
    proxy did not answer the client's FIN promptly: the signature of a stalled stream.
    A response that merely paused, then was closed at once on the FIN, is not a stall."""
    if sample.get("stalled_at") is None:
        return False
    delay = sample.get("delay_ms")
    return delay is None or delay >= LATE_CLOSE_MS


def summarise(
    samples: list[dict[str, Any]], flags_by_id: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Close delay distribution, end types, stalls, and, for a swept parameter, one
    point per swept value: the shape of harness.analyse.record.ProbeMetrics."""
    flags_by_id = flags_by_id or {}
    delays = [s["delay_ms"] for s in samples if s.get("delay_ms") is not None]
    result: dict[str, Any] = {
        "connections": len(samples),
        "delay_ms": summary(delays),
        "ends": dict(Counter(s["end"] for s in samples).most_common()),
        "complete": sum(1 for s in samples if s.get("complete")),
        "incomplete": sum(1 for s in samples if not s.get("complete")),
        "stalled": sum(1 for s in samples if stalled(s)),
        "bytes": summary([s.get("bytes", 0) for s in samples], digits=0),
        "flags": dict(Counter(_flag(s, flags_by_id) for s in samples).most_common()),
    }
    swept = [s for s in samples if s.get("sweep")]
    if swept:
        # One point per swept value (harness.analyse.record.SweepPoint): the last
        # connection with it, in the order of the samples sorted by their sweep.
        points: dict[tuple[str, str], dict[str, Any]] = {}
        for s in sorted(swept, key=lambda s: sorted(s["sweep"].items())):
            for name, value in s["sweep"].items():
                key = (name, json.dumps(value))
                points[key] = {
                    "name": name,
                    "value": value,
                    "stalled": stalled(s),
                    "bytes": s.get("bytes"),
                    "delay_ms": s.get("delay_ms"),
                    "end": s["end"],
                    "flag": _flag(s, flags_by_id),
                }
        result["sweep"] = list(points.values())
    return result


def _flag(sample: dict[str, Any], flags_by_id: Mapping[str, str]) -> str:
    """The proxy's termination state for this connection's (last) request, if logged."""
    for uid in reversed(sample.get("unique_ids") or []):
        if uid in flags_by_id:
            return flags_by_id[uid]
    return "not logged"


class Fate(NamedTuple):
    """One client connection after its last response: its status (None: no response),
    the log's termination state ("not logged" without a line), how it ended at the probe
    (fin, rst, or open at the deadline: kept) and the delay of that end in ms."""

    status: int | None
    state: str
    end: str
    delay_ms: float | None


def fate_of(samples: list[dict[str, Any]], entries: list[LogEntry]) -> list[Fate]:
    """Each connection's Fate, joined to its log line by the client's source port (%cp).

    ``samples``: probe.jsonl samples (``src_port``, ``statuses``, ``end``, ``delay_ms``);
    ``entries``: the proxy's log. A port's last log line is its connection's last
    request (a cell's connections are open at once, so their ports are distinct).
    Samples that ended in error (no connection) are left out.
    """
    by_port = {e.client_port: e for e in entries}
    out = []
    for s in samples:
        if s.get("end") == "error" or s.get("src_port") is None:
            continue
        entry = by_port.get(s["src_port"])
        statuses = s.get("statuses") or []
        out.append(Fate(statuses[-1] if statuses else None,
                        entry.termination_state if entry else "not logged",
                        s["end"], s.get("delay_ms")))  # fmt: skip
    return out


def fates(connections: list[Fate]) -> list[dict[str, Any]]:
    """What became of the client connections after their last response, per (status,
    termination state): closed by the proxy (its FIN or RST reached the probe before the
    probe's deadline) or kept open. The probe's hold variant never closes first, so a
    close is the proxy's.

    Returns one row per (status, state), most connections first: ``{"status": int |
    None, "state": str, "connections", "closed", "reset" (of closed: by RST), "kept",
    "delay_p50_ms"}``: the nearest-rank p50 of the closed ones' delay in ms, counted from
    the last response byte (the hold variant's delay), None when none closed.
    """
    rows: dict[tuple[int | None, str], dict[str, Any]] = {}
    delays: dict[tuple[int | None, str], list[float]] = {}
    for f in connections:
        key = (f.status, f.state)
        row = rows.setdefault(
            key, {"status": f.status, "state": f.state, "connections": 0, "closed": 0,
                  "reset": 0, "kept": 0, "delay_p50_ms": None},
        )  # fmt: skip
        row["connections"] += 1
        if f.end == "open":
            row["kept"] += 1
            continue
        row["closed"] += 1
        row["reset"] += f.end == "rst"
        if f.delay_ms is not None:
            delays.setdefault(key, []).append(float(f.delay_ms))
    for key, values in delays.items():
        rows[key]["delay_p50_ms"] = round(nearest_rank(values, 0.5), 3)
    return sorted(rows.values(), key=lambda r: (-r["connections"], str(r["status"]), r["state"]))
