"""The close-delay probe's raw samples (probe.jsonl), summarised on the host side.

A sample whose response stopped arriving (the probe gave up after ``stall_ms`` without
a byte) and whose FIN the proxy then ignored for ``LATE_CLOSE_MS`` or more counts as
*stalled*; one whose body is short for any reason as *incomplete*.
Where the proxy's log is at hand, each sample is joined to its log line by the unique
id HAProxy sent back, so a stalled connection shows its own termination flags.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.analyse.distribution import summary


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
