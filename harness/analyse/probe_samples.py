"""The close-delay probe's raw samples (probe.jsonl), summarised on the host side."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from harness.analyse.distribution import summary


def read(path: Path) -> list[dict[str, Any]]:
    """Every sample; none when the cell ran no probe."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Close delay distribution, end types, completeness: the probe's headline numbers."""
    delays = [s["delay_ms"] for s in samples if s.get("delay_ms") is not None]
    return {
        "connections": len(samples),
        "delay_ms": summary(delays),
        "ends": dict(Counter(s["end"] for s in samples).most_common()),
        "complete": sum(1 for s in samples if s.get("complete")),
        "truncated": sum(1 for s in samples if not s.get("complete")),
        "bytes": summary([s.get("bytes", 0) for s in samples], digits=0),
    }
