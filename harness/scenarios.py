"""The scenario catalogue: each scenario is a named, documented set of knobs.

A scenario says which parameters it takes (with defaults), and turns a cell's
parameters into three sets of knobs: HAProxy's (rendered into haproxy.cfg), the
backend's (its environment) and the client's (the load's environment and path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import SpecError

Params = Mapping[str, Any]


@dataclass(frozen=True)
class HaproxyKnobs:
    """What a scenario may set in haproxy.cfg (haproxy/haproxy.cfg.j2)."""

    maxconn: int = 4096
    timeout_connect: str = "5s"
    timeout_client: str = "30s"
    timeout_server: str = "30s"
    timeout_http_keep_alive: str = "10s"
    http_reuse: str = "safe"
    server_options: str = ""
    global_lines: tuple[str, ...] = ()
    defaults_lines: tuple[str, ...] = ()
    frontend_lines: tuple[str, ...] = ()
    backend_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpLoad:
    """Locust closed-loop load (clients/locustfiles/http_load.py)."""

    path: str = "/"
    keepalive: bool = True
    wait_ms: int = 0

    def env(self, host: str) -> dict[str, str]:
        return {
            "LOAD_PATH": self.path,
            "LOAD_KEEPALIVE": "on" if self.keepalive else "off",
            "LOAD_WAIT_MS": str(self.wait_ms),
        }


@dataclass(frozen=True)
class Probe:
    """The close-delay probe, driven by Locust (clients/locustfiles/close_delay.py)."""

    variant: str = "fin"
    tls: str = "off"  # off, 1.2, 1.3
    connections: int = 20
    concurrency: int = 20
    requests: int = 1
    path: str = "/"
    rcvbuf: int = 0
    read_pause_ms: int = 0
    stall_ms: int = 0
    deadline_s: float = 10.0

    @property
    def port(self) -> int:
        return 8080 if self.tls == "off" else 8443

    def env(self, host: str) -> dict[str, str]:
        return {
            "PROBE_HOST": host,
            "PROBE_VARIANT": self.variant,
            "PROBE_TLS": self.tls,
            "PROBE_PORT": str(self.port),
            "PROBE_CONNECTIONS": str(self.connections),
            "PROBE_CONCURRENCY": str(self.concurrency),
            "PROBE_REQUESTS": str(self.requests),
            "PROBE_PATH": self.path,
            "PROBE_RCVBUF": str(self.rcvbuf),
            "PROBE_READ_PAUSE_MS": str(self.read_pause_ms),
            "PROBE_STALL_MS": str(self.stall_ms),
            "PROBE_DEADLINE_S": f"{self.deadline_s:g}",
        }


@dataclass(frozen=True)
class Knobs:
    """Everything a cell's stack is rendered from."""

    haproxy: HaproxyKnobs
    backend_env: dict[str, str]
    load: HttpLoad | Probe
    # "calibration" swaps haproxy for a target whose close delay is known (fin_delay_ms).
    target: str = "haproxy"
    fin_delay_ms: int = 0
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)
    # How long observers keep watching after the load, so states can drain.
    drain_s: float = 2.0

    @property
    def tls(self) -> bool:
        return isinstance(self.load, Probe) and self.load.tls != "off"


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    field_note: str  # which seed in ../shared/seeds it reproduces, in words
    defaults: dict[str, Any]
    knobs: Callable[[Params], Knobs]
    reports: tuple[str, ...] = field(default=())

    def resolve(self, overrides: Params, where: str) -> dict[str, Any]:
        """Defaults plus overrides, each checked against the default's type."""
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise SpecError(
                f"{where}: scenario {self.name!r} has no parameter "
                f"{', '.join(map(repr, unknown))}. "
                f"It takes: {', '.join(sorted(self.defaults))}."
            )
        params = dict(self.defaults)
        for key, value in overrides.items():
            expected = type(self.defaults[key])
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise SpecError(
                    f"{where}: parameter {key!r} of scenario {self.name!r} must be "
                    f"{expected.__name__} (like {self.defaults[key]!r}), got {value!r}."
                )
            params[key] = value
        return params


def _smoke(p: Params) -> Knobs:
    return Knobs(
        haproxy=HaproxyKnobs(http_reuse=p["http_reuse"]),
        backend_env={"BACKEND_SIZE": str(p["size"]), "BACKEND_KEEPALIVE": "on"},
        load=HttpLoad(keepalive=p["keepalive"]),
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            name="smoke",
            summary="Keep-alive GETs of a small body through HAProxy: does it work, how fast.",
            field_note="none: the foundation check every other scenario stands on",
            defaults={"size": 128, "keepalive": True, "http_reuse": "safe"},
            knobs=_smoke,
            reports=("req/s", "latency", "failures", "status codes"),
        ),
    ]
}


def get(name: str, where: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SpecError(
            f"{where}: unknown scenario {name!r}. Known: {', '.join(SCENARIOS)}."
        ) from None
