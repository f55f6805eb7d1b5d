"""CPU and memory per container, and the host's CPU, over the load's window, from the
samples that ``harness.stack.observe.CpuSampler`` wrote to a cell's ``cpu-samples.json``
(the host's as /proc/stat ticks by field name, proc(5))."""

from __future__ import annotations

import itertools
from typing import Any

HOST_IDLE = ("idle", "iowait")  # iowait: idle with I/O outstanding, a CPU free to run
HOST_BUSY = ("user", "nice", "system", "irq", "softirq")  # guest time is inside user/nice
HOST_FIELDS = (*HOST_BUSY, *HOST_IDLE, "steal")


def cpu_usage(
    samples: list[dict[str, Any]], start: float, end: float
) -> dict[str, dict[str, float]]:
    """Average cores and peak memory per container within [start, end] (epoch seconds).

    Uses the samples just outside the window too, so a short window still has two points.
    """
    window = _window(samples, start, end)
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


def host_usage(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """The host's CPU over [start, end] (epoch seconds), from the samples' ``host`` field:
    ``{"online_cpus", "busy_cores", "idle_cores", "steal_cores", "softirq_cores",
    "busy_fraction"}``.

    Cores are each kind's share of the ticks that passed (user+nice+system+irq+softirq
    busy, idle+iowait idle, steal taken by the hypervisor) times the online CPUs, so the
    three add up to the online CPUs (as top(1) computes its %Cpu line). ``busy_fraction``
    is busy / all ticks. ``softirq_cores`` (part of busy) is mostly the network's
    receive path, which the kernel charges to no container's cgroup. Same window as
    :func:`cpu_usage`. Empty when a window sample has no host data (a cpu-samples.json
    from before it was recorded, or a remote engine).
    """
    window = _window(samples, start, end)
    if len(window) < 2 or not all("host" in s for s in window):
        return {}
    first, last = window[0]["host"], window[-1]["host"]
    delta = {k: last[k] - first[k] for k in HOST_FIELDS}
    ticks = sum(delta.values())
    if ticks <= 0:
        return {}
    cpus = last["online_cpus"]

    def cores(keys: tuple[str, ...]) -> float:
        return round(cpus * sum(delta[k] for k in keys) / ticks, 3)

    return {
        "online_cpus": cpus,
        "busy_cores": cores(HOST_BUSY),
        "idle_cores": cores(HOST_IDLE),
        "steal_cores": cores(("steal",)),
        "softirq_cores": cores(("softirq",)),
        "busy_fraction": round(sum(delta[k] for k in HOST_BUSY) / ticks, 3),
    }


def could_use(
    samples: list[dict[str, Any]], start: float, end: float, service: str, ceiling: float
) -> float | None:
    """Average cores ``service`` could have used over [start, end] (epoch seconds): per
    interval between samples, min(ceiling, its cores + the host's idle cores), weighted
    by the interval's length. None without host data (as :func:`host_usage`).

    Taken interval by interval because the min of averages overstates it: idle CPU in
    one half-second cannot serve a client starved in the next.
    """
    window = _window(samples, start, end)
    if len(window) < 2 or not all("host" in s for s in window):
        return None
    total_s = could_s = 0.0
    for a, b in itertools.pairwise(window):
        seconds = b["t"] - a["t"]
        ticks = sum(b["host"][k] - a["host"][k] for k in HOST_FIELDS)
        if seconds <= 0 or ticks <= 0 or service not in a["containers"] | b["containers"]:
            continue
        idle = b["host"]["online_cpus"] * sum(b["host"][k] - a["host"][k] for k in HOST_IDLE)
        # a sample that missed the container (it was gone): its last reading stands
        last = a["containers"].get(service, b["containers"].get(service))["cpu_ns"]
        used_s = (b["containers"].get(service, {}).get("cpu_ns", last) - last) / 1e9
        could_s += min(ceiling * seconds, used_s + idle / ticks * seconds)
        total_s += seconds
    return round(could_s / total_s, 3) if total_s else None


def _window(samples: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    """The samples inside [start, end] plus the last before and the first after it."""
    before = [s for s in samples if s["t"] <= start]
    after = [s for s in samples if s["t"] >= end]
    inside = [s for s in samples if start < s["t"] < end]
    return before[-1:] + inside + after[:1]
