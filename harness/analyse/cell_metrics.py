"""A cell's metrics, computed from the raw files in its folder alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.analyse import haproxy_log, locust_stats


def compute(folder: Path) -> dict[str, Any]:
    entries, unparsed = haproxy_log.parse_log((folder / "haproxy.log").read_text().splitlines())
    summary = haproxy_log.summarise(entries)
    client_status = folder / "client_status.json"
    return {
        "load": locust_stats.aggregated(folder / "locust.json"),
        "client_status_codes": json.loads(client_status.read_text())
        if client_status.exists()
        else {},
        "haproxy": summary,
        "flags_explained": {
            state: haproxy_log.explain(state) for state in summary["termination_states"]
        },
        "haproxy_unparsed_lines": len(unparsed),
    }
