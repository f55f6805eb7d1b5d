"""What the harness reads from a running stack, besides the observers' own files.

- CPU and memory per container (Docker SDK one-shot stats, sampled during the load),
  and the host's own CPU (/proc/stat) at the same instants;
- HAProxy's counters (``show info`` / ``show stat``) through its stats socket, asked
  from the observer that shares haproxy's network namespace (the HAProxy images have
  no socat, the observer has bash and its /dev/tcp).
"""

from __future__ import annotations

import csv
import io
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors

from harness.compose import client
from harness.stack import PROJECT_LABEL, Stack

STATS_PORT = 9999


class CpuSampler:
    """Samples each container's CPU time and memory (Docker SDK one-shot stats) every
    ``interval`` seconds in a background thread, while the load runs, and with each the
    host's CPU time (``host``: :func:`host_cpu`) when the harness runs on the Docker host.

    Usage over the load's own window (Locust's first to last request) then comes from
    the samples, so start-up and tear-down of the load generator do not dilute it.
    """

    def __init__(self, project: str, interval: float = 0.5) -> None:
        self.project = project
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._containers = client().containers.list(
            filters={"label": f"{PROJECT_LABEL}={self.project}"}
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        readers = {
            c.labels.get("com.docker.compose.service", c.name): _reader(c) for c in self._containers
        }
        # /proc/stat is this kernel's: the Docker host's only when the containers' cgroup
        # files are visible here (not with a remote engine, read through the API).
        on_host = bool(readers) and not any(r.__name__ == "from_api" for r in readers.values())
        while True:
            sample: dict[str, Any] = {"t": time.time(), "containers": {}}
            if on_host:
                sample["host"] = host_cpu()
            for service, read in readers.items():
                try:
                    sample["containers"][service] = read()
                except (OSError, docker.errors.APIError):
                    continue  # the container is gone: its last samples stand
            self.samples.append(sample)
            if self._stop.wait(self.interval):
                return


CGROUP = Path("/sys/fs/cgroup")


def _reader(container: Any) -> Callable[[], dict[str, int]]:
    """Read a container's CPU time and memory from its cgroup files when the harness runs
    on the Docker host (cheap: a file read), else from the Docker SDK's one-shot stats
    (an API round trip, slow when the CPUs are busy with the load itself)."""
    cid = container.id
    v1 = (CGROUP / "cpuacct/docker" / cid / "cpuacct.usage", CGROUP / "memory/docker" / cid)
    if v1[0].exists():
        return lambda: {
            "cpu_ns": int(v1[0].read_text()),
            "mem": int((v1[1] / "memory.usage_in_bytes").read_text()),
        }
    for v2 in (CGROUP / f"system.slice/docker-{cid}.scope", CGROUP / "docker" / cid):
        if (v2 / "cpu.stat").exists():
            return lambda v2=v2: {
                "cpu_ns": int((v2 / "cpu.stat").read_text().split()[1]) * 1000,  # usage_usec
                "mem": int((v2 / "memory.current").read_text()),
            }

    def from_api() -> dict[str, int]:
        stats = container.stats(stream=False, one_shot=True)
        return {
            "cpu_ns": int(stats["cpu_stats"]["cpu_usage"]["total_usage"]),
            "mem": int(stats.get("memory_stats", {}).get("usage", 0)),
        }

    return from_api


PROC_STAT = Path("/proc/stat")
# The aggregate "cpu" line of /proc/stat, in the kernel's order (proc(5)); in USER_HZ ticks.
HOST_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
HOST_IDLE = ("idle", "iowait")  # iowait: idle with I/O outstanding, a CPU free to run
HOST_BUSY = ("user", "nice", "system", "irq", "softirq")  # guest time is inside user/nice


def host_cpu(text: str | None = None) -> dict[str, int]:
    """The host's cumulative CPU time: ``{"user": ticks, ..., "steal": ticks,
    "online_cpus": n}`` from /proc/stat (or ``text``, its content).

    Ticks are USER_HZ since boot, summed over the online CPUs (proc(5), "cpu" line); the
    kernel lists one ``cpuN`` line per online CPU. Raises OSError if /proc/stat cannot be
    read, ValueError if its "cpu" line is missing or short.
    """
    lines = (PROC_STAT.read_text() if text is None else text).splitlines()
    total = next((line.split() for line in lines if line.startswith("cpu ")), None)
    if total is None or len(total) < len(HOST_FIELDS) + 1:
        raise ValueError("/proc/stat has no aggregate 'cpu' line with steal time")
    stat = {name: int(v) for name, v in zip(HOST_FIELDS, total[1:], strict=False)}
    stat["online_cpus"] = sum(1 for line in lines if line[:3] == "cpu" and line[3:4].isdigit())
    return stat


def host_usage(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """The host's CPU over [start, end] (epoch seconds), from the samples' ``host`` field:
    ``{"online_cpus", "busy_cores", "idle_cores", "steal_cores", "busy_fraction"}``.

    Cores are each kind's share of the ticks that passed (user+nice+system+irq+softirq
    busy, idle+iowait idle, steal taken by the hypervisor) times the online CPUs, so the
    three add up to the online CPUs (as top(1) computes its %Cpu line). ``busy_fraction``
    is busy / all ticks. Same window as :func:`cpu_usage`. Empty when a window sample
    has no host data (a cpu-samples.json from before it was recorded, or a remote engine).
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


def haproxy_command(stack: Stack, command: str) -> str:
    """One stats-socket command, answered in full (HAProxy closes after the reply)."""
    script = f'exec 3<>/dev/tcp/127.0.0.1/{STATS_PORT}; echo "{command}" >&3; cat <&3'
    proc = stack.exec("census-haproxy", "bash", "-c", script, timeout=30)
    return proc.stdout.decode(errors="replace")


def backend_totals(stack: Stack) -> str | None:
    """The backend's own count of connections and requests (GET /_stats), as JSON text;
    None when it cannot answer (a fault scenario killed it)."""
    script = (
        "import urllib.request;"
        "print(urllib.request.urlopen('http://127.0.0.1:8080/_stats', timeout=5).read().decode())"
    )
    proc = stack.exec("backend", "python3", "-c", script, timeout=30)
    return proc.stdout.decode() if proc.returncode == 0 else None


def parse_info(text: str) -> dict[str, str]:
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def parse_stat(text: str) -> list[dict[str, Any]]:
    """``show stat`` CSV (header starts with '# '), one dict per proxy/server row."""
    body = text.lstrip("# ")
    rows = []
    for row in csv.DictReader(io.StringIO(body)):
        rows.append({k: v for k, v in row.items() if k and v not in ("", None)})
    return rows


def container_state(project: str, service: str) -> dict[str, Any] | None:
    """Docker's ``State`` of a service's container (Status, ExitCode, OOMKilled, StartedAt,
    FinishedAt as RFC 3339 strings, ...) plus its ``RestartCount``; None when it is gone."""
    labels = [f"{PROJECT_LABEL}={project}", f"com.docker.compose.service={service}"]
    found = client().containers.list(all=True, filters={"label": labels})
    if not found:
        return None
    attrs = found[0].attrs
    return {**attrs.get("State", {}), "RestartCount": attrs.get("RestartCount", 0)}
