"""A cell's metrics, computed from the raw files in its folder alone (no Docker needed).

Each measurement is read only when its raw file is there, so a cell's metrics say
exactly what was measured: no file, no number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.analyse import haproxy_log, locust_stats, probe_samples
from harness.observe import cpu_usage

# A Locust process is one Python thread: near one full core, it, not HAProxy, is the limit.
CLIENT_BOUND_CORES = 0.9


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def compute(folder: Path, target: str = "haproxy") -> dict[str, Any]:
    metrics: dict[str, Any] = {"load": locust_stats.aggregated(folder / "locust.json")}
    metrics["client_status_codes"] = _json(folder / "client_status.json") or {}

    if (folder / "probe.jsonl").exists():
        samples = probe_samples.read(folder / "probe.jsonl")
        metrics["probe"] = probe_samples.summarise(samples)

    if target == "haproxy" and (folder / "haproxy.log").exists():
        lines = (folder / "haproxy.log").read_text().splitlines()
        entries, unparsed = haproxy_log.parse_log(lines)
        summary = haproxy_log.summarise(entries)
        metrics["haproxy"] = summary
        metrics["flags_explained"] = {
            state: haproxy_log.explain(state) for state in summary["termination_states"]
        }
        metrics["haproxy_unparsed_lines"] = len(unparsed)

    cpu_samples = _json(folder / "cpu-samples.json")
    if cpu_samples:
        # The load's own window: Locust's first to last request.
        window = locust_stats.window(folder / "locust.json")
        resources = cpu_usage(cpu_samples, *window)
        metrics["resources"] = resources
        metrics["client_bound"] = resources.get("client", {}).get("cores", 0) >= CLIENT_BOUND_CORES
    return metrics
