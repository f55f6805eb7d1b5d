"""What the harness reads from a running stack, besides the observers' own files.

- CPU and memory per container (Docker SDK one-shot stats, sampled during the load),
  and the host's own CPU (/proc/stat) at the same instants;
- HAProxy's counters (``show info`` / ``show stat``) through its stats socket, asked
  from the observer that shares haproxy's network namespace (the HAProxy images have
  no socat, the observer has bash and its /dev/tcp).

What these raw files mean is the analysis' business: ``harness.analyse.resources``
(CPU and memory over the load's window) and ``harness.analyse.haproxy_stats``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors

from harness.plan.ports import HTTP_PORT, STATS_PORT
from harness.stack.compose import LOCAL, engine
from harness.stack.project import PROJECT_LABEL, Stack


class CpuSampler:
    """Samples each container's CPU time and memory (Docker SDK one-shot stats) every
    ``interval`` seconds in a background thread, while the load runs, and with each the
    host's CPU time (``host``: :func:`host_cpu`) when the harness runs on the Docker host.

    Usage over the load's own window (Locust's first to last request) then comes from
    the samples, so start-up and tear-down of the load generator do not dilute it.
    """

    def __init__(
        self, project: str, interval: float = 0.5, contexts: tuple[str, ...] = (LOCAL,)
    ) -> None:
        self.project = project
        self.contexts = contexts  # the engines the stack runs on
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._containers = [
            c
            for context in self.contexts
            for c in engine(context).containers.list(
                filters={"label": f"{PROJECT_LABEL}={self.project}"}
            )
        ]
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
# (harness.analyse.resources reads them by these names: which are busy, idle, steal)
HOST_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


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


def haproxy_command(stack: Stack, command: str) -> str:
    """One stats-socket command, answered in full (HAProxy closes after the reply)."""
    return haproxy_commands(stack, command)[0]


# Between two answers of haproxy_commands: a line no stats-socket answer holds.
_ANSWER_END = "#-- harness: end of answer --"


def haproxy_commands(stack: Stack, *commands: str) -> list[str]:
    """Each stats-socket command's answer, in order, from one exec (one connection per
    command: HAProxy closes after each reply). ``commands`` are the harness's own
    constants, never user input."""
    asks = [
        f'exec 3<>/dev/tcp/127.0.0.1/{STATS_PORT}; echo "{command}" >&3; cat <&3; '
        f"exec 3<&-; echo '{_ANSWER_END}'"
        for command in commands
    ]
    proc = stack.exec_quick("census-haproxy", "bash", "-c", "; ".join(asks))
    parts = proc.stdout.decode(errors="replace").split(_ANSWER_END + "\n")
    return [parts[i] if i < len(parts) else "" for i in range(len(commands))]


def backend_totals(stack: Stack) -> str | None:
    """The backend's own count of connections and requests (GET /_stats), as JSON text;
    None when it cannot answer (a fault scenario killed it). Asked with bash's /dev/tcp
    over loopback (not counted by the backend nor by the census), not a python3."""
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{HTTP_PORT} && printf 'GET /_stats HTTP/1.0\\r\\n\\r\\n' >&3 "
        "&& cat <&3"
    )
    proc = stack.exec_quick("backend", "bash", "-c", script)
    head, sep, body = proc.stdout.decode(errors="replace").partition("\r\n\r\n")
    if proc.returncode != 0 or not sep or " 200 " not in head.split("\r\n", 1)[0]:
        return None
    return body


def container_state(project: str, service: str, context: str = LOCAL) -> dict[str, Any] | None:
    """Docker's ``State`` of a service's container (Status, ExitCode, OOMKilled, StartedAt,
    FinishedAt as RFC 3339 strings, ...) plus its ``RestartCount``; None when it is gone."""
    labels = [f"{PROJECT_LABEL}={project}", f"com.docker.compose.service={service}"]
    found = engine(context).containers.list(all=True, filters={"label": labels})
    if not found:
        return None
    attrs = found[0].attrs
    return {**attrs.get("State", {}), "RestartCount": attrs.get("RestartCount", 0)}
