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
    via: str = "haproxy"  # "backend": the direct baseline, no proxy in the path

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
    stagger_ms: float = 5.0  # connections start 5 ms apart, so their closes do not coincide
    # One backend query parameter swept across the cell's connections, e.g.
    # ("chunk_size", range(20, 45)): `connections` probes per value, all at once.
    sweep: tuple[str, tuple[int, ...]] | None = None

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
            "PROBE_STAGGER_MS": f"{self.stagger_ms:g}",
            "PROBE_SWEEP": (
                f"{self.sweep[0]}=" + ",".join(map(str, self.sweep[1])) if self.sweep else ""
            ),
        }

    @property
    def total_connections(self) -> int:
        return self.connections * (len(self.sweep[1]) if self.sweep else 1)


@dataclass(frozen=True)
class Fault:
    """Something breaks mid-load: a service is killed (SIGKILL), or restarted."""

    action: str  # "kill" | "restart"
    service: str  # "backend" | "haproxy" | "client"
    at_s: float  # seconds after the load starts


FAULTS = {
    "backend-killed": ("kill", "backend"),
    "haproxy-restarted": ("restart", "haproxy"),
    "client-killed": ("kill", "client"),
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
    # Where haproxy's server line points: a service name (or "nowhere") and a port.
    server: tuple[str, int] = ("backend", 8080)
    fault: Fault | None = None

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
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    check: Callable[[Params], str | None] = lambda _params: None

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
            if expected is float and type(value) is int:
                value = float(value)  # at_s: 3 means 3.0
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise SpecError(
                    f"{where}: parameter {key!r} of scenario {self.name!r} must be "
                    f"{expected.__name__} (like {self.defaults[key]!r}), got {value!r}."
                )
            if key in self.choices and value not in self.choices[key]:
                raise SpecError(
                    f"{where}: parameter {key!r} of scenario {self.name!r} must be one of "
                    f"{', '.join(map(repr, self.choices[key]))}, got {value!r}."
                )
            floor = _floor(key, self.defaults[key])
            if floor is not None and value < floor:
                raise SpecError(
                    f"{where}: parameter {key!r} of scenario {self.name!r} must be >= {floor}, "
                    f"got {value!r}."
                )
            params[key] = value
        for key, allowed in self.choices.items():
            if params[key] not in allowed:  # a default outside its choices is our bug
                raise AssertionError(f"{self.name}: default {key}={params[key]!r}")
        problem = self.check(params)
        if problem:
            raise SpecError(f"{where}: scenario {self.name!r}: {problem}.")
        return params


def _smoke(p: Params) -> Knobs:
    return Knobs(
        haproxy=HaproxyKnobs(http_reuse=p["http_reuse"]),
        backend_env={"BACKEND_SIZE": str(p["size"]), "BACKEND_KEEPALIVE": "on"},
        load=HttpLoad(keepalive=p["keepalive"]),
    )


def _calibration(p: Params) -> Knobs:
    # The probe talks to a target whose close delay is known: what it measures must be d.
    return Knobs(
        haproxy=HaproxyKnobs(),
        backend_env={},
        # 50 ms apart: one hiccup of the machine (seen up to ~20 ms on a 2-core VM) can
        # touch one connection, so each connection is an independent trial of the probe.
        load=Probe(variant="fin", connections=p["connections"], deadline_s=10, stagger_ms=50),
        target="calibration",
        fin_delay_ms=p["fin_delay_ms"],
        drain_s=0.5,
    )


def _half_close(p: Params) -> Knobs:
    return Knobs(
        haproxy=HaproxyKnobs(timeout_client=p["timeout_client"], timeout_server="30s"),
        backend_env={"BACKEND_SIZE": str(p["size"])},
        load=Probe(
            variant=p["variant"],
            tls=p["tls"],
            connections=p["connections"],
            requests=p["requests"],
            deadline_s=p["deadline_s"],
        ),
        drain_s=0.5,
    )


# Counts of things: zero of them would measure nothing.
AT_LEAST_ONE = {"connections", "per_size", "requests", "chunk_min", "chunk_max", "bufsize"}


def _floor(key: str, default: Any) -> int | None:
    """The smallest value a numeric parameter takes; None where negatives mean something
    (pool_max_conn -1: unlimited)."""
    if isinstance(default, bool) or not isinstance(default, int | float):
        return None
    if key in AT_LEAST_ONE:
        return 1
    return 0 if default >= 0 else None


def _chunked_stall_check(p: Params) -> str | None:
    if p["chunk_min"] > p["chunk_max"]:
        return f"chunk_min ({p['chunk_min']}) is above chunk_max ({p['chunk_max']})"
    return None


def _fault_check(p: Params) -> str | None:
    return None if p["at_s"] > 0 else "at_s must be above 0 (seconds into the load)"


def _half_close_check(p: Params) -> str | None:
    if p["variant"].startswith("tls") and p["tls"] == "off":
        return f"variant {p['variant']!r} needs TLS: set tls to '1.2' or '1.3'"
    return None


def _chunked_stall(p: Params) -> Knobs:
    # A fixed, small buffer makes the arithmetic the same on every version.
    return Knobs(
        haproxy=HaproxyKnobs(
            timeout_server=f"{p['timeout_server_s']}s",
            global_lines=(f"tune.bufsize {p['bufsize']}",)
            + ((f"tune.sndbuf.client {p['sndbuf_client']}",) if p["sndbuf_client"] else ()),
        ),
        backend_env={
            "BACKEND_SIZE": str(p["size"]),
            "BACKEND_FRAMING": "chunked",
            "BACKEND_CHUNK_PAUSE_MS": str(p["chunk_pause_ms"]),
        },
        load=Probe(
            variant="fin" if p["tls"] == "off" else "tls-fin-no-notify",
            tls=p["tls"],
            # per_size waves one after the other: all chunk sizes at once, but not more,
            # so the backend's pacing (and so the buffer arithmetic) stays as designed.
            connections=p["per_size"],
            concurrency=1,
            rcvbuf=p["rcvbuf"],
            read_pause_ms=p["read_pause_ms"],
            stall_ms=p["stall_ms"],
            deadline_s=p["timeout_server_s"] + 5,
            sweep=("chunk_size", tuple(range(p["chunk_min"], p["chunk_max"] + 1))),
        ),
        drain_s=0.5,
    )


def _keepalive_vs_close(p: Params) -> Knobs:
    return Knobs(
        haproxy=HaproxyKnobs(),
        backend_env={"BACKEND_SIZE": str(p["size"])},
        load=HttpLoad(keepalive=p["keepalive"], via=p["via"]),
        drain_s=1.0,
    )


def _server_pool(p: Params) -> Knobs:
    server = []
    if p["pool_max_conn"] >= 0:
        server.append(f"pool-max-conn {p['pool_max_conn']}")
    if p["maxconn"] > 0:
        server.append(f"maxconn {p['maxconn']}")
    return Knobs(
        haproxy=HaproxyKnobs(
            http_reuse=p["http_reuse"],
            server_options=" ".join(server),
            backend_lines=("option http-server-close",) if p["server_close"] else (),
        ),
        backend_env={"BACKEND_SIZE": "128"},
        load=HttpLoad(keepalive=True),
        drain_s=1.0,
    )


# Where haproxy's server line points for each broken backend of connect-timeout.
CONNECT_FAILURES = {
    "refused": ("backend", 8081),  # nothing listens: RST at once
    "unreachable": ("nowhere", 8080),  # no host at that address: SYNs go unanswered
    "blackhole": ("backend", 8082),  # listens but never accepts: the queue fills up
}


def _connect_timeout(p: Params) -> Knobs:
    return Knobs(
        haproxy=HaproxyKnobs(
            timeout_connect=p["timeout_connect"],
            defaults_lines=(f"retries {p['retries']}",),
        ),
        backend_env={"BACKEND_BLACKHOLE_PORT": "8082"},
        load=HttpLoad(keepalive=True, wait_ms=100),
        server=CONNECT_FAILURES[p["backend"]],
        drain_s=0.5,
    )


def _backend_closes_first(p: Params) -> Knobs:
    frontend = (f"timeout client-fin {p['client_fin']}",) if p["client_fin"] != "off" else ()
    return Knobs(
        haproxy=HaproxyKnobs(
            timeout_http_keep_alive=p["haproxy_keepalive"], frontend_lines=frontend
        ),
        backend_env={"BACKEND_IDLE_TIMEOUT_MS": str(p["backend_idle_ms"])},
        load=Probe(variant="hold", connections=p["connections"], deadline_s=p["hold_s"]),
        drain_s=p["watch_s"],
    )


def _kernel_knobs(p: Params) -> Knobs:
    sysctls = {"net.ipv4.tcp_tw_reuse": str(p["tw_reuse"])}
    if p["port_range"]:
        sysctls["net.ipv4.ip_local_port_range"] = p["port_range"]
    return Knobs(
        haproxy=HaproxyKnobs(defaults_lines=("option nolinger",) if p["nolinger"] else ()),
        backend_env={"BACKEND_SIZE": "128"},
        load=HttpLoad(keepalive=False),
        sysctls={"client": sysctls, "haproxy": sysctls},
        drain_s=1.0,
    )


def _fault(p: Params) -> Knobs:
    action, service = FAULTS[p["fault"]]
    return Knobs(
        # A short timeout connect: once the backend is gone, 503s come within the load.
        haproxy=HaproxyKnobs(
            timeout_connect="1s",
            # Stop waiting for the server once the client has gone (logged C?--).
            defaults_lines=("option abortonclose",) if p["abortonclose"] else (),
        ),
        # Slow responses, so requests are in flight at the moment of the fault.
        backend_env={"BACKEND_SIZE": "128", "BACKEND_DELAY_MS": str(p["delay_ms"])},
        load=HttpLoad(keepalive=True),
        fault=Fault(action, service, float(p["at_s"])),
        drain_s=1.0,
    )


VARIANTS = ("fin", "tls-fin-no-notify", "tls-notify", "conn-close", "fin-with-request")
TLS = ("off", "1.2", "1.3")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            name="smoke",
            summary="Keep-alive GETs of a small body through HAProxy: does it work, how fast.",
            field_note="none: the foundation check every other scenario stands on",
            defaults={"size": 128, "keepalive": True, "http_reuse": "safe"},
            choices={"http_reuse": ("never", "safe", "aggressive", "always")},
            knobs=_smoke,
            reports=("req/s", "latency", "failures", "status codes"),
        ),
        Scenario(
            name="calibration",
            summary="The probe and the capture against a target that closes d ms after the "
            "client's FIN, in place of haproxy: both must measure d.",
            field_note="none: proves the close-delay numbers every other scenario reports",
            defaults={"fin_delay_ms": 0, "connections": 20},
            knobs=_calibration,
            reports=("close delay: probe vs injected vs wire",),
        ),
        Scenario(
            name="half-close",
            summary="The client half-closes (FIN, with or without TLS close_notify, after the "
            "response or with the request): how long until HAProxy closes too?",
            field_note="seed 001: 2.6.15 keeps the client connection ~20 s after its FIN; "
            "2.6.17 closes at once",
            defaults={
                "tls": "off",
                "variant": "fin",
                "size": 128,
                "connections": 20,
                "requests": 1,
                "timeout_client": "30s",
                "deadline_s": 12.0,
            },
            choices={"tls": TLS, "variant": VARIANTS},
            check=_half_close_check,
            knobs=_half_close,
            reports=("close delay distribution", "end types", "flags"),
        ),
        Scenario(
            name="chunked-stall",
            summary="A slow reader of a chunked response, swept over chunk sizes: does "
            "HAProxy stall when its buffer fills on a chunk boundary and then ignore "
            "the client's FIN until timeout server?",
            field_note="seed 001, as found in our lab: 2.6.10-2.6.15 stall (fixed in 2.6.16, "
            "'h1-htx: Ensure chunked parsing with full output buffer')",
            defaults={
                "tls": "off",
                "size": 50000,
                "chunk_min": 20,
                "chunk_max": 44,
                "per_size": 2,  # connections per chunk size: two chances at each
                "chunk_pause_ms": 1,
                "rcvbuf": 2048,
                "read_pause_ms": 4000,
                "stall_ms": 1000,
                "timeout_server_s": 5,
                "bufsize": 16384,
                "sndbuf_client": 4096,
            },
            choices={"tls": TLS},
            check=_chunked_stall_check,
            knobs=_chunked_stall,
            reports=("stalled per chunk size", "bytes received", "close delay", "end", "flag"),
        ),
        Scenario(
            name="keepalive-vs-close",
            summary="Client keep-alive on or off, through HAProxy or straight to the backend.",
            field_note="seeds 002, 003, 004: keep-alive saves handshakes and ports; "
            "Connection: close fills TIME_WAIT; proxy overhead 11 % warm vs 33 % cold",
            defaults={"keepalive": True, "via": "haproxy", "size": 128},
            choices={"via": ("haproxy", "backend")},
            knobs=_keepalive_vs_close,
            reports=("req/s", "latency", "proxy overhead %", "TIME-WAIT peak per side"),
        ),
        Scenario(
            name="server-pool",
            summary="HAProxy's server-side connection reuse: http-reuse, http-server-close, "
            "pool-max-conn, server maxconn.",
            field_note="seed 002: a too-small idle pool turns into a TIME_WAIT storm",
            defaults={
                "http_reuse": "safe",
                "server_close": False,
                "pool_max_conn": -1,
                "maxconn": 0,
            },
            choices={"http_reuse": ("never", "safe", "aggressive", "always")},
            knobs=_server_pool,
            reports=("TIME-WAIT on haproxy (out)", "backend connections/s", "req/s"),
        ),
        Scenario(
            name="connect-timeout",
            summary="A backend that refuses, cannot be reached, or never accepts, against "
            "timeout connect and retries.",
            field_note="seed 000: 503s flagged sC-- when timeout connect strikes",
            defaults={"backend": "blackhole", "timeout_connect": "500ms", "retries": 1},
            choices={"backend": tuple(CONNECT_FAILURES)},
            knobs=_connect_timeout,
            reports=("status codes", "termination flags", "Tc", "retries"),
        ),
        Scenario(
            name="backend-closes-first",
            summary="The backend closes idle connections before HAProxy does, and the client "
            "never sends its FIN.",
            field_note="seed 000: CLOSE_WAIT towards the backend, FIN_WAIT2 towards the client",
            defaults={
                "backend_idle_ms": 500,
                "haproxy_keepalive": "2s",
                "client_fin": "off",
                "connections": 20,
                "hold_s": 6.0,
                "watch_s": 2.0,
            },
            knobs=_backend_closes_first,
            reports=("CLOSE-WAIT / FIN-WAIT-2 timelines", "how long they last"),
        ),
        Scenario(
            name="kernel-knobs",
            summary="Connection: close load under per-container sysctls and option nolinger.",
            field_note="seed 004: tcp_tw_reuse, ip_local_port_range, SO_LINGER 0",
            defaults={"tw_reuse": 2, "port_range": "", "nolinger": False},
            choices={"tw_reuse": (0, 1, 2)},
            knobs=_kernel_knobs,
            reports=("TIME-WAIT", "RST vs FIN", "errors"),
        ),
        Scenario(
            name="fault",
            summary="A fault mid-load: the backend killed, haproxy restarted, or the client "
            "container killed. The load runs on; what did the proxy log, what did clients see?",
            field_note="none directly: the failures behind every seed, made on purpose",
            defaults={
                "fault": "backend-killed",
                "at_s": 3.0,
                "delay_ms": 50,
                "abortonclose": False,
            },
            choices={"fault": tuple(FAULTS)},
            check=_fault_check,
            knobs=_fault,
            reports=("status codes and flags in the log", "client statuses and errors"),
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
