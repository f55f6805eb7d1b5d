"""CPU and memory per container over the load's window, from the samples that
``harness.stack.observe.CpuSampler`` wrote to a cell's ``cpu-samples.json``."""

from __future__ import annotations

from typing import Any


def cpu_usage(
    samples: list[dict[str, Any]], start: float, end: float
) -> dict[str, dict[str, float]]:
    """Average cores and peak memory per container within [start, end] (epoch seconds).

    Uses the samples just outside the window too, so a short window still has two points.
    """
    before = [s for s in samples if s["t"] <= start]
    after = [s for s in samples if s["t"] >= end]
    inside = [s for s in samples if start < s["t"] < end]
    window = before[-1:] + inside + after[:1]
    if len(window) < 2:
        return {}
    first, last = window[0], window[-1]
    seconds = max(last["t"] - first["t"], 1e-9)
    usage = {}
    for service, end_stats in last["containers"].items():
        start_ns = first["containers"].get(service, end_stats)["cpu_ns"]
        used = (end_stats["cpu_ns"] - start_ns) / 1e9
        peak = max(s["containers"].get(service, {}).get("mem", 0) for s in window)
        usage[service] = {
            "cpu_seconds": round(used, 3),
            "cores": round(used / seconds, 3),
            "memory_peak_mb": round(peak / 2**20, 1),
        }
    return usage
