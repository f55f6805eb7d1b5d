"""The scenario catalogue: each scenario is a named, documented set of knobs.

A scenario says which parameters it takes (with defaults), and turns a cell's
parameters into three sets of knobs: HAProxy's (rendered into haproxy.cfg), the
backend's (its environment) and the client's (the load's environment and path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import Field, ValidationError, model_validator

from harness.errors import SpecError
from harness.plan.params import (
    MAX_BODY_BYTES,
    Bytes,
    Count,
    Flag,
    HaproxyTime,
    HaproxyTimeOrOff,
    HttpLoadParams,
    PortRange,
    Seconds,
    allowed_form,
    describe_directives,
)
from harness.plan.params import Params as TypedParams
from harness.plan.ports import HTTP_PORT, MAX_SERVERS, SERVER_PORTS, frontend_port
from harness.quote import shown

Params = Mapping[str, Any]


@dataclass(frozen=True)
class HaproxyKnobs:
    """What a scenario may set in haproxy.cfg (haproxy/haproxy.cfg.j2)."""

    # HAProxy's proxy mode for every section: "http" (L7, requests parsed, HTTP log
    # format) or "tcp" (L4: bytes and FINs relayed, the manual's TCP log format).
    mode: str = "http"
    maxconn: int = 4096
    timeout_connect: str = "5s"
    timeout_client: str = "30s"
    timeout_server: str = "30s"
    timeout_http_keep_alive: str = "10s"
    http_reuse: str = "safe"
    # HAProxy's HTTP connection mode (params.ConnectionMode): "keep-alive" renders
    # nothing, the others their option in defaults.
    connection_mode: str = "keep-alive"
    server_options: str = ""
    global_lines: tuple[str, ...] = ()
    defaults_lines: tuple[str, ...] = ()
    frontend_lines: tuple[str, ...] = ()
    backend_lines: tuple[str, ...] = ()
    # HTTP/2 on the frontend (an Http2 value): "h2c" makes the plain bind HTTP/2 only
    # (`proto h2`: prior knowledge, RFC 9113 section 3.3); "h2" adds `alpn h2,http/1.1`
    # to the TLS bind (RFC 7301), so a client that offers h2 gets it.
    http2: str = "off"


@dataclass(frozen=True)
class HttpLoad:
    """The load of the load scenarios: Locust's users, wrk's or h2load's connections
    sending GETs (clients/locustfiles/http_load.py, clients/wrk/harness.lua)."""

    path: str = "/"
    keepalive: Flag = True
    wait_ms: int = 0
    via: str = "haproxy"  # "backend": the direct baseline, no proxy in the path
    # The HTTP/2 the frontend speaks (HaproxyKnobs.http2): "h2" is over TLS.
    http2: str = "off"
    # A POST body per request (0: GETs), chunked or with Content-Length (Locust only).
    body_bytes: int = 0
    chunked: bool = False
    # Closed loop (Locust only): the n-th user starts n * start_stagger_ms after the
    # first. Locust starts a spawn step's users together (floor(spawn_rate) a step), so
    # their first connections arrive as one burst of SYNs.
    start_stagger_ms: int = 0

    def env(self, host: str) -> dict[str, str]:
        return {
            "LOAD_PATH": self.path,
            "LOAD_KEEPALIVE": "on" if self.keepalive else "off",
            "LOAD_WAIT_MS": str(self.wait_ms),
            "LOAD_BODY_BYTES": str(self.body_bytes),
            "LOAD_CHUNKED": "on" if self.chunked else "off",
            "LOAD_START_STAGGER_MS": str(self.start_stagger_ms),
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
    # A POST body per request (0: GETs), chunked or with Content-Length.
    body_bytes: int = 0
    chunked: bool = False
    # One backend query parameter swept across the cell's connections, e.g.
    # ("chunk_size", range(20, 45)): `connections` probes per value, all at once.
    sweep: tuple[str, tuple[int, ...]] | None = None

    @property
    def port(self) -> int:
        return frontend_port(self.tls)

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
            "PROBE_BODY_BYTES": str(self.body_bytes),
            "PROBE_CHUNKED": "on" if self.chunked else "off",
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
    # True: the drain waits for HAProxy's idle server-side pool too (ESTAB haproxy->backend,
    # which the drain otherwise leaves open by design), so drain_s is a watch of the pool
    # being closed (or kept) after the load.
    watch_pool: bool = False
    # Where haproxy's server line points: a service name (or "nowhere") and a port.
    server: tuple[str, int] = ("backend", HTTP_PORT)
    # More servers in the backend, on the same service as ``server``: their ports
    # (ports.SERVER_PORTS), named app2, app3, ... (ports.server_name).
    extra_server_ports: tuple[int, ...] = ()
    fault: Fault | None = None

    @property
    def tls(self) -> bool:
        """Whether haproxy gets a TLS bind: a probe over TLS, or HTTP/2 over TLS."""
        if isinstance(self.load, HttpLoad):
            return self.load.http2 == "h2"
        return self.load.tls != "off"


# The columns most tables share: who, and what the load did.
LOAD_COLUMNS = ("version", "rps", "latency-p50", "latency-p99", "failures")
PROBE_COLUMNS = (
    "connections",
    "close-delay-p50",
    "close-delay-p90",
    "close-delay-max",
    "wire-p50",
    "ends",
)
Plot = Literal["close-delay", "census"]
Section = Literal["chunk-sizes", "proxy-overhead", "error-fates"]
Phenomenon = Literal["late-closes", "stalls", "connect-timeouts", "lingering-states"]


@dataclass(frozen=True)
class Verdict:
    """What versions are compared on: per-connection or per-request ``samples`` (Mann-
    Whitney U), or ``counts`` of hits out of a total (Fisher's exact test); ``what`` names
    the metric ("close delay", "latency", "connections stalled", "requests answered 5xx")."""

    kind: Literal["samples", "counts"]
    what: str


@dataclass(frozen=True)
class Shows:
    """What the report shows of a scenario, by name: its table's columns (keys of
    ``harness.report.tables.CATALOGUE``), its verdict metric, its plots, extra sections,
    and the check that says when the measured numbers do not show its field note's
    phenomenon. Declared with the scenario, so adding one touches this module; the report
    stage owns how each name is drawn, and a test checks every name resolves there."""

    columns: tuple[str, ...]
    verdict: Verdict | None = None
    plots: tuple[Plot, ...] = ()
    sections: tuple[Section, ...] = ()
    phenomenon: Phenomenon | None = None


# What the report shows of a scenario it does not know (a run recorded with a scenario
# since removed or renamed): the load columns every load scenario has.
UNKNOWN_SHOWS = Shows(("version", "rps", "latency-p50", "latency-p99", "failures"))


def reproduced_by(phenomenon: Phenomenon) -> str | None:
    """The scenario whose numbers show ``phenomenon`` (its ``Shows.phenomenon``), if any."""
    return next((s.name for s in SCENARIOS.values() if s.shows.phenomenon == phenomenon), None)


@dataclass(frozen=True)
class Scenario:
    """A named experiment: its typed parameters (a ``params.Params`` model, with defaults,
    bounds and cross-field rules), how a cell's parameters become its knobs, and what the
    report shows of it (``shows``)."""

    name: str
    summary: str
    field_note: str  # which seed in ../shared/seeds it reproduces, in words
    params: type[TypedParams]
    knobs: Callable[[Params], Knobs]
    shows: Shows

    @property
    def defaults(self) -> dict[str, Any]:
        return self.params().model_dump()

    @property
    def choices(self) -> dict[str, tuple[Any, ...]]:
        """The parameters with a fixed set of values (``Literal``), and those values."""
        return {
            key: get_args(info.annotation)
            for key, info in self.params.model_fields.items()
            if get_origin(info.annotation) is Literal
        }

    def resolve(
        self, overrides: Params, where: str, locate: Callable[[str], str] | None = None
    ) -> dict[str, Any]:
        """Defaults plus overrides, validated by the scenario's model.

        Returns the parameters as plain values (``{"size": 128, ...}``). Raises SpecError
        naming the place (``locate(key)``, e.g. 'm.yaml (line 7): scenarios[0].params.size';
        ``where`` for the scenario as a whole), what was given, the allowed form and an
        example.
        """
        locate = locate or (lambda key: f"{where}: {key}")
        unknown = sorted(set(overrides) - set(self.params.model_fields))
        if unknown:
            raise SpecError(
                f"{locate(unknown[0])}: scenario {self.name!r} has no parameter "
                f"{', '.join(map(repr, unknown))}. "
                f"It takes: {', '.join(sorted(self.params.model_fields))}."
            )
        try:
            return self.params.model_validate(dict(overrides)).model_dump()
        except ValidationError as exc:
            raise SpecError(self._explain(exc, overrides, where, locate)) from None

    def _explain(
        self, exc: ValidationError, overrides: Params, where: str, locate: Callable[[str], str]
    ) -> str:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across parameters (a model validator)
                msg = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"{where}: scenario {self.name!r}: {msg}.")
                continue
            key = str(err["loc"][0])
            msg = str(err["msg"]).removeprefix("Value error, ")
            if len(err["loc"]) > 1:  # inside a structured parameter (config.backend.0)
                msg = ".".join(map(str, err["loc"][1:])) + ": " + msg
            got = shown(overrides.get(key))
            allowed = allowed_form(self.params, key)
            problems.append(f"{locate(key)} (scenario {self.name!r}): {msg}, got {got}. {allowed}.")
        return "\n".join(problems)


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
        # 50 ms apart (the default): one hiccup of the machine (seen up to ~20 ms on a
        # 2-core VM) can touch one connection, so each is an independent trial of the
        # probe. 5 ms apart is the scenarios' own load (Probe's default).
        load=Probe(
            variant="fin",
            connections=p["connections"],
            concurrency=p["concurrency"],
            deadline_s=10,
            stagger_ms=p["stagger_ms"],
        ),
        target="calibration",
        fin_delay_ms=p["fin_delay_ms"],
        drain_s=0.5,
    )


def _half_close(p: Params) -> Knobs:
    return Knobs(
        haproxy=HaproxyKnobs(
            mode=p["mode"], timeout_client=p["timeout_client"], timeout_server="30s"
        ),
        backend_env={"BACKEND_SIZE": str(p["size"])},
        load=Probe(
            variant=p["variant"],
            tls=p["tls"],
            connections=p["connections"],
            requests=p["requests"],
            deadline_s=p["deadline_s"],
            body_bytes=p.get("body_bytes", 0),
            chunked=p.get("chunked_upload", False),
        ),
        drain_s=0.5,
    )


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
            # per_size connections of each chunk size, the sizes interleaved, at most
            # `concurrency` open at once over the whole cell.
            connections=p["per_size"],
            concurrency=p["concurrency"],
            requests=p["requests"],
            rcvbuf=p["rcvbuf"],
            read_pause_ms=p["read_pause_ms"],
            stall_ms=p["stall_ms"],
            deadline_s=p["timeout_server_s"] + 5,
            sweep=("chunk_size", tuple(p["chunk_sizes"])),
        ),
        drain_s=0.5,
    )


def _keepalive_vs_close(p: Params) -> Knobs:
    return Knobs(
        haproxy=HaproxyKnobs(mode=p["mode"], http2=p["http2"]),
        backend_env={"BACKEND_SIZE": str(p["size"])},
        load=HttpLoad(keepalive=p["keepalive"], via=p["via"], http2=p["http2"]),
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


def _error_fate(p: Params) -> Knobs:
    # How each error is made (manual 4.2, "timeout connect", "timeout server", "timeout
    # queue", a server's "maxconn"; 8.5 for the termination states it logs).
    error = p["error"]
    server = {
        "refused": CONNECT_FAILURES["refused"],  # 503 SC--: the connect is refused
        # 503 sC--: SYNs unanswered. Not the blackhole listener: the kernel completes
        # the first connects to it (its backlog), which then wait for timeout server.
        "connect-timeout": CONNECT_FAILURES["unreachable"],
    }.get(error, ("backend", HTTP_PORT))
    # server-timeout: the backend answers after timeout server (504 sH--); queue: one
    # request at a time on the server, the others wait in its queue until timeout queue
    # (503 sQ--) while the backend takes delay_ms over the first.
    slow = error in ("server-timeout", "queue")
    return Knobs(
        haproxy=HaproxyKnobs(
            timeout_connect=p["timeout"],
            timeout_server=p["timeout"] if error == "server-timeout" else "30s",
            # no retries: one failed connect is one error response
            defaults_lines=("retries 0", f"timeout queue {p['timeout']}"),
            server_options="maxconn 1" if error == "queue" else "",
        ),
        backend_env={
            "BACKEND_SIZE": "128",
            "BACKEND_BLACKHOLE_PORT": "8082",
            "BACKEND_DELAY_MS": str(p["delay_ms"] if slow else 0),
        },
        # hold: a keep-alive request, then no FIN of ours: the probe waits deadline_s
        # for HAProxy's, from the last response byte (clients/locustfiles/probe.py).
        load=Probe(
            variant="hold",
            connections=p["connections"],
            concurrency=p["connections"],
            deadline_s=p["deadline_s"],
        ),
        server=server,
        drain_s=0.5,
    )


def _fin_timeout(directive: str, value: str) -> tuple[str, ...]:
    """``timeout <directive> <value>``, or no line for 'off' (HAProxy's own default)."""
    return (f"timeout {directive} {value}",) if value != "off" else ()


def _backend_closes_first(p: Params) -> Knobs:
    # client-fin: the client side once it is half-closed (we sent our FIN, the client has
    # not); server-fin: the same on the server side; tunnel: both directions idle, in
    # mode tcp once no analyser is left (manual 4.2, "timeout client-fin/server-fin/tunnel").
    return Knobs(
        haproxy=HaproxyKnobs(
            mode=p["mode"],
            timeout_http_keep_alive=p["haproxy_keepalive"],
            frontend_lines=_fin_timeout("client-fin", p["client_fin"]),
            backend_lines=_fin_timeout("server-fin", p["server_fin"])
            + _fin_timeout("tunnel", p["tunnel"]),
        ),
        backend_env={"BACKEND_IDLE_TIMEOUT_MS": str(p["backend_idle_ms"])},
        load=Probe(
            variant="hold",
            connections=p["connections"],
            concurrency=p["concurrency"],
            stagger_ms=p["stagger_ms"],
            deadline_s=p["hold_s"],
        ),
        drain_s=p["watch_s"],
    )


def _keepalive_race(p: Params) -> Knobs:
    # http-reuse (manual 4.2 "http-reuse"): never, safe (a session's first request on its
    # own connection), aggressive (also idle connections already reused once), always (any
    # idle connection). retry-on (manual 4.2 "retry-on", 2.0+): which failures after the
    # request was sent make HAProxy send it again, on another connection, up to `retries`.
    # pool-purge-delay (manual 5.2): how often HAProxy closes half of a server's idle
    # connections that were not used since the last purge (5s when unset).
    server = f"pool-purge-delay {p['pool_purge_delay']}" if p["pool_purge_delay"] != "off" else ""
    return Knobs(
        haproxy=HaproxyKnobs(
            http_reuse=p["http_reuse"],
            timeout_server=p["timeout_server"],
            server_options=server,
            backend_lines=(f"retry-on {p['retry_on']}",) if p["retry_on"] != "none" else (),
        ),
        backend_env={
            "BACKEND_SIZE": str(p["size"]),
            "BACKEND_IDLE_TIMEOUT_MS": str(p["backend_idle_ms"]),
            "BACKEND_MAX_REQUESTS": str(p["backend_max_requests"]),
        },
        load=HttpLoad(keepalive=p["keepalive"], wait_ms=p["wait_ms"]),
        drain_s=p["watch_s"],
        watch_pool=True,
    )


def _servers(p: Params) -> Knobs:
    up = p["servers"] - p["servers_down"]
    # The backend has no `check`: a down server is found by connecting to it, each
    # refused connect costs a retry, and with option redispatch the retries may go to
    # another server (manual 4.2, "retries", "option redispatch"; the log's %rc is then
    # prefixed with '+').
    return Knobs(
        haproxy=HaproxyKnobs(
            timeout_connect=p["timeout_connect"],
            backend_lines=(f"retries {p['retries']}",)
            + (("option redispatch",) if p["redispatch"] else ()),
        ),
        backend_env={
            "BACKEND_SIZE": str(p["size"]),
            "BACKEND_EXTRA_PORTS": ",".join(map(str, SERVER_PORTS[1:up])),
        },
        load=HttpLoad(keepalive=True),
        extra_server_ports=SERVER_PORTS[1 : p["servers"]],
        drain_s=0.5,
    )


MAXCONN_STAGGER_MS = 50  # maxconn: between two users' first connections


def _maxconn(p: Params) -> Knobs:
    # Above the global or the frontend's maxconn HAProxy stops accepting: connections
    # wait in the listener's accept queue, which the kernel completes (the census counts
    # them ESTAB) and HAProxy has not taken (its own counters do not). Above the server's,
    # accepted requests wait in HAProxy's queue (the log's Tw and %sq) until timeout
    # queue (503, sQ--). Manual 3.2 and 4.2, "maxconn", "timeout queue".
    return Knobs(
        haproxy=HaproxyKnobs(
            maxconn=p["global_maxconn"],
            defaults_lines=(f"timeout queue {p['timeout_queue']}",),
            frontend_lines=(f"maxconn {p['frontend_maxconn']}",) if p["frontend_maxconn"] else (),
            server_options=f"maxconn {p['server_maxconn']}" if p["server_maxconn"] else "",
        ),
        # Slow responses, so that every connection is busy and the limits are reached.
        backend_env={"BACKEND_SIZE": "128", "BACKEND_DELAY_MS": str(p["delay_ms"])},
        # One connection at a time, each handshake over before the next SYN: a burst met
        # an accept queue HAProxy had not drained yet, and on a busy host the kernel left
        # 8 established, 3 half-open and 6 or 7 in SYN-SENT instead of backlog + 1 and
        # the rest (tests/integration/test_maxconn.py).
        load=HttpLoad(keepalive=True, start_stagger_ms=MAXCONN_STAGGER_MS),
        drain_s=0.5,
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
        # Slow responses, so requests are in flight at the moment of the fault. Users run
        # in lock-step; a client kill needs delay_ms well above docker's kill latency
        # (0.05-0.2 s) or it can land between two rounds (matrices/faults.yaml: 2000).
        backend_env={"BACKEND_SIZE": "128", "BACKEND_DELAY_MS": str(p["delay_ms"])},
        load=HttpLoad(keepalive=True),
        fault=Fault(action, service, float(p["at_s"])),
        drain_s=1.0,
    )


Tls = Literal["off", "1.2", "1.3"]
# HTTP/2 on HAProxy's frontend: off (HTTP/1.1), h2c (cleartext, prior knowledge: the
# plain bind with `proto h2`) or h2 (TLS with ALPN h2). Driven by generator: h2load.
Http2 = Literal["off", "h2c", "h2"]
# HAProxy's proxy mode (manual 4.2, "mode"): L7 HTTP, or L4 TCP.
Mode = Literal["http", "tcp"]
Variant = Literal["fin", "tls-fin-no-notify", "tls-notify", "conn-close", "fin-with-request"]
HttpReuse = Literal["never", "safe", "aggressive", "always"]
# The most probe connections one cell may plan: each is a real connection to HAProxy.
MAX_PROBE_CONNECTIONS = 2000
# backend-closes-first's held connections: idle once answered, so more of them; 5,000
# held at once is what `make bench` measures the census with (scripts/bench_census.py).
MAX_HELD_CONNECTIONS = 5000


class SmokeParams(HttpLoadParams):
    size: Bytes = 128
    keepalive: Flag = True
    http_reuse: HttpReuse = "safe"


class CalibrationParams(TypedParams):
    fin_delay_ms: Count(0, 60_000, "the injected FIN delay in ms", 50) = 0
    connections: Count(1, 200, "connections") = 20
    # The probe's load: 20 at once, 50 ms apart (gentle, each connection its own trial)
    # by default; the scenarios run theirs 5 ms apart, and calibration.yaml runs both.
    concurrency: Count(1, 200, "probe connections open at once") = 20
    stagger_ms: Count(0, 10_000, "ms between the first connections' starts", 5) = 50


class HalfCloseParams(TypedParams):
    # Added after records existed: left out of a cell's parameters at their defaults.
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("body_bytes", "chunked_upload")
    mode: Mode = "http"
    tls: Tls = "off"
    variant: Variant = "fin"
    size: Bytes = 128
    connections: Count(1, 1000, "connections") = 20
    requests: Count(1, 1000, "requests per connection") = 1
    timeout_client: HaproxyTime = "30s"
    deadline_s: Seconds(600, "how long the probe waits for the close", 12.0, True) = 12.0
    # A POST body per request, and with variant fin-with-request the FIN right after it
    # (issue 13: CLOSE_WAIT reported after a chunked POST).
    body_bytes: Count(0, MAX_BODY_BYTES, "the probe's request body in bytes (0: GETs)",
                      10000) = 0  # fmt: skip
    chunked_upload: Flag = False

    @model_validator(mode="after")
    def _variant_needs_tls(self) -> HalfCloseParams:
        if self.variant.startswith("tls") and self.tls == "off":
            raise ValueError(f"variant {self.variant!r} needs TLS: set tls to '1.2' or '1.3'")
        if self.chunked_upload and not self.body_bytes:
            raise ValueError("chunked_upload needs a body: set body_bytes above 0")
        return self


# error-fate's errors: none (the 200 control), refused (503 SC--), connect-timeout
# (503 sC--), server-timeout (504 sH--), queue (503 sQ--).
FateError = Literal["none", "refused", "connect-timeout", "server-timeout", "queue"]


class ErrorFateParams(TypedParams):
    error: FateError = "connect-timeout"
    # timeout connect, or timeout server (server-timeout), or timeout queue (queue)
    timeout: HaproxyTime = "200ms"
    # the backend's delay per response for server-timeout and queue: above `timeout`
    delay_ms: Count(0, 60_000, "the backend's delay per response in ms", 1000) = 1000
    connections: Count(1, 200, "probe connections, all at once") = 10
    # The bound within which a FIN from HAProxy counts as "closed": below its
    # timeout http-keep-alive (10 s), so a connection kept for a next request stays open.
    deadline_s: Seconds(9, "how long the probe waits for HAProxy's FIN", 2.0, True) = 2.0


# chunked-stall: how many chunk sizes one cell may test, and each size's bounds.
MAX_CHUNK_SIZES = 128
ChunkSize = Count(1, 65536, "a chunk size in bytes", 40)
RangeEnd = Count(1, 65536, "an end of a chunk size range", 32)
RANGE_FORM = (
    "null, or the {} chunk size of a range chunk_min..chunk_max that replaces "
    "chunk_sizes: an integer from 1 to 65536"
)
DEFAULT_CHUNK_SIZES = (31, 32, 39, 40)
ChunkSizes = Annotated[
    list[ChunkSize],
    Field(min_length=1, max_length=MAX_CHUNK_SIZES,
          description=f"chunk sizes in bytes: a list of 1 to {MAX_CHUNK_SIZES} distinct "
          "integers, each from 1 to 65536", examples=[[31, 32, 39, 40]]),
]  # fmt: skip


class ChunkedStallParams(TypedParams):
    tls: Tls = "off"
    # The stall happens when HAProxy's buffer first fills, chunk by chunk, while the
    # reader sleeps (read_pause_ms). Before that the client side (the probe's receive
    # buffer, HAProxy's socket and output buffers) takes 33-38 KB (the stalled
    # connections' bytes) and the buffer about 15 KB more: with a 50000-byte body some
    # connections ended before it filled, and escaped. 100000 leaves room for both.
    size: Count(1, 100_000_000, "response size in bytes", 100000) = 100000
    # Sizes that stall 2.6.12 (32, 40) next to neighbours that never do (31, 39): the
    # controls show that a stall is the chunk arithmetic, not the machine. Which sizes
    # stall depends on bufsize (16384: 24, 32, 40, 48, 64, not 56; 4096: 24, 32, 48, not
    # 40): change one and measure the other again.
    chunk_sizes: ChunkSizes = Field(default_factory=lambda: list(DEFAULT_CHUNK_SIZES))
    # The older form, a range chunk_min..chunk_max: turned into chunk_sizes.
    chunk_min: RangeEnd | None = Field(
        None, description=RANGE_FORM.format("smallest"), examples=[32]
    )
    chunk_max: RangeEnd | None = Field(
        None, description=RANGE_FORM.format("largest"), examples=[40]
    )
    # 10 connections of each size, 20 at once: two waves, as long as the old 98-connection
    # sweep. Far more at once and the paced chunks start to reach HAProxy in bunches.
    per_size: Count(1, 1000, "connections per chunk size", 10) = 10
    concurrency: Count(1, 200, "probe connections open at once, over all chunk sizes", 20) = 20
    chunk_pause_ms: Count(0, 10_000, "pause between chunks in ms") = 1
    rcvbuf: Count(0, 16_777_216, "the probe's SO_RCVBUF in bytes (0: the kernel's)") = 2048
    # Those ~50 KB arrive one chunk per 1 ms pause plus the backend's event-loop delay:
    # 1.6-2.5 ms per chunk with 20 responses at once, more for a cell's first connections
    # on a busy machine, where 4 s of sleep were sometimes too short for the buffer to
    # fill. A faster pace does not help: HAProxy must take the chunks one at a time.
    read_pause_ms: Count(0, 600_000, "how long the probe reads nothing, in ms") = 6000
    stall_ms: Count(0, 600_000, "silence that counts as a stall, in ms") = 1000
    # Slow-read responses per connection, one after another on the keep-alive connection:
    # the next request goes only when a response got through. Whether a filling buffer
    # stops on a chunk boundary was decided anew for each response (about 1 in 30 got
    # through at random, spread over a cell); a second response makes a connection that
    # got through once take a second chance, as a slow client asking again would.
    requests: Count(1, 10, "slow-read responses per connection", 2) = 2
    # At least read_pause_ms + stall_ms: a stalled stream must still be open when the
    # probe gives up and sends its FIN, so that HAProxy's timeout, not the probe, ends it.
    timeout_server_s: Count(1, 3600, "HAProxy's timeout server in seconds") = 7
    bufsize: Count(1024, 1_048_576, "HAProxy's tune.bufsize in bytes") = 16384
    sndbuf_client: Count(0, 16_777_216, "tune.sndbuf.client in bytes (0: unset)") = 4096

    @model_validator(mode="before")
    @classmethod
    def _range_to_sizes(cls, data: Any) -> Any:
        """chunk_min..chunk_max becomes chunk_sizes (min == max: that one size), so a
        cell's record holds the sizes it ran, whichever form the matrix used."""
        if not isinstance(data, dict):
            return data
        low, high = data.get("chunk_min"), data.get("chunk_max")
        if low is None and high is None:
            return data
        if "chunk_sizes" in data:
            raise ValueError("give chunk_sizes or chunk_min/chunk_max, not both")
        given = [v for v in (low, high) if v is not None]
        if not all(type(v) is int and 1 <= v <= 65536 for v in given):
            return data  # the fields' own checks name the bad value
        if low is None or high is None:
            raise ValueError("chunk_min and chunk_max go together (or use chunk_sizes)")
        if low > high:
            raise ValueError(f"chunk_min ({low}) is above chunk_max ({high})")
        if high - low + 1 > MAX_CHUNK_SIZES:
            raise ValueError(
                f"chunk sizes {low}..{high} are {high - low + 1} sizes, more than "
                f"{MAX_CHUNK_SIZES}: narrow the range"
            )
        return {**data, "chunk_sizes": list(range(low, high + 1)), "chunk_min": None,
                "chunk_max": None}  # fmt: skip

    @model_validator(mode="after")
    def _sweep_in_bounds(self) -> ChunkedStallParams:
        if len(set(self.chunk_sizes)) != len(self.chunk_sizes):
            raise ValueError(f"chunk_sizes repeats a size: {self.chunk_sizes}")
        planned = len(self.chunk_sizes) * self.per_size
        if planned > MAX_PROBE_CONNECTIONS:
            raise ValueError(
                f"{len(self.chunk_sizes)} chunk sizes with per_size {self.per_size} "
                f"plan {planned} probe connections, more than {MAX_PROBE_CONNECTIONS}: fewer "
                "sizes or a lower per_size"
            )
        return self


class KeepaliveVsCloseParams(HttpLoadParams):
    mode: Mode = "http"
    keepalive: Flag = True
    via: Literal["haproxy", "backend"] = "haproxy"
    size: Bytes = 128
    http2: Http2 = "off"

    @model_validator(mode="after")
    def _http2_is_haproxys(self) -> KeepaliveVsCloseParams:
        if self.http2 == "off":
            return self
        if self.mode != "http" or self.via != "haproxy":
            raise ValueError(
                f"http2: {self.http2} is HAProxy's HTTP frontend: it needs mode: http and "
                "via: haproxy (the backend and mode tcp speak HTTP/1.1 only)"
            )
        if not self.keepalive:
            raise ValueError(
                f"http2: {self.http2} needs keepalive: true (HTTP/2 has no Connection: close; "
                "its streams share one connection)"
            )
        return self

    @model_validator(mode="after")
    def _connection_mode_needs_http(self) -> KeepaliveVsCloseParams:
        if self.mode == "tcp" and self.connection_mode != "keep-alive":
            raise ValueError(
                f"connection_mode {self.connection_mode!r} is an HTTP option: it needs "
                "mode 'http' (mode tcp relays bytes and parses no request)"
            )
        return self


class ServerPoolParams(HttpLoadParams):
    http_reuse: HttpReuse = "safe"
    server_close: Flag = False
    pool_max_conn: Count(-1, 100_000, "pool-max-conn (-1: unlimited)", 10) = -1
    maxconn: Count(0, 100_000, "the server's maxconn (0: unset)", 10) = 0


class ConnectTimeoutParams(HttpLoadParams):
    backend: Literal["refused", "unreachable", "blackhole"] = "blackhole"
    timeout_connect: HaproxyTime = "500ms"
    retries: Count(0, 100, "HAProxy's retries") = 1


class BackendClosesFirstParams(TypedParams):
    mode: Mode = "http"
    backend_idle_ms: Count(0, 3_600_000, "the backend's idle timeout in ms", 500) = 500
    haproxy_keepalive: HaproxyTime = "2s"
    client_fin: HaproxyTimeOrOff = "off"
    server_fin: HaproxyTimeOrOff = "off"
    tunnel: HaproxyTimeOrOff = "off"
    # Up to 5,000 held at once: `make bench` measures the census's sampling rate with that
    # many connections through HAProxy (scripts/bench_census.py; HAProxy's maxconn then
    # needs raising with `config`).
    connections: Count(1, MAX_HELD_CONNECTIONS, "connections") = 20
    concurrency: Count(1, MAX_HELD_CONNECTIONS, "probe connections open at once") = 20
    stagger_ms: Count(0, 10_000, "ms between the first connections' starts", 5) = 5
    hold_s: Seconds(600, "how long the probe holds each connection", 6.0, True) = 6.0
    watch_s: Seconds(600, "how long observers watch after the load", 2.0) = 2.0


# retry-on's keywords (manual 4.2 "retry-on"), one per cell: none (the default: no
# layer-7 retry, only `retries` after a failed connect), conn-failure (the connect
# failed), empty-response (the server closed before any response: the keep-alive race),
# junk-response (an unparsable response), response-timeout (timeout server struck),
# all-retryable-errors (every one of those plus 0rtt-rejected and statuses 500, 502,
# 503, 504). A status code alone (404, 503, ...) is not offered: this scenario's backend
# answers 200.
RetryOn = Literal[
    "none", "conn-failure", "empty-response", "junk-response", "response-timeout",
    "all-retryable-errors",
]  # fmt: skip


class KeepaliveRaceParams(HttpLoadParams):
    # The backend closes a keep-alive connection idle this long (its own timer, no
    # Connection: close sent: a FIN on an idle connection, as nginx's keepalive_timeout
    # or Node's keepAliveTimeout do). 0: never.
    backend_idle_ms: Count(0, 600_000, "the backend's keep-alive idle timeout in ms (0: none)",
                           50) = 50  # fmt: skip
    # The backend closes a connection after this many requests, saying so in the last
    # response (Connection: close, as nginx's keepalive_requests). 0: no limit.
    backend_max_requests: Count(0, 1_000_000, "requests per backend connection before the "
                                "backend closes it (0: no limit)", 10) = 0  # fmt: skip
    # always by default: every request may go out on any idle server connection, so one
    # the backend is closing right then can be picked.
    http_reuse: HttpReuse = "always"
    retry_on: RetryOn = "none"
    # Off: each request is a new client connection (a session's first request), so which
    # idle server connection it may take is http-reuse's choice alone.
    keepalive: Flag = False
    wait_ms: Count(0, 60_000, "a user's pause between requests in ms", 20) = 0
    timeout_server: HaproxyTime = "30s"
    pool_purge_delay: HaproxyTimeOrOff = "off"
    size: Bytes = 128
    # The census goes on after the load until HAProxy's idle server connections are all
    # closed, at most this long.
    watch_s: Seconds(120, "how long the census watches the idle pool after the load", 10.0) = 10.0


class ServersParams(HttpLoadParams):
    servers: Count(1, MAX_SERVERS, "servers in the backend, each its own backend listener", 2) = 2
    # The last servers_down servers' ports have no listener: a connect is refused at once.
    servers_down: Count(0, MAX_SERVERS - 1, "servers without a listener (refused)", 1) = 1
    retries: Count(0, 10, "HAProxy's retries after a failed connect", 3) = 3
    redispatch: Flag = False
    timeout_connect: HaproxyTime = "200ms"
    size: Bytes = 128

    @model_validator(mode="after")
    def _one_server_up(self) -> ServersParams:
        if self.servers_down >= self.servers:
            raise ValueError(
                f"servers_down ({self.servers_down}) must leave at least one of the "
                f"{self.servers} servers up"
            )
        return self


class MaxconnParams(HttpLoadParams):
    global_maxconn: Count(1, 100_000, "the global section's maxconn", 10) = 4096
    frontend_maxconn: Count(0, 100_000, "the frontend's maxconn (0: unset)", 5) = 0
    server_maxconn: Count(0, 100_000, "the server's maxconn (0: unset)", 5) = 0
    timeout_queue: HaproxyTime = "5s"
    delay_ms: Count(0, 60_000, "the backend's delay per response in ms", 100) = 100


class KernelKnobsParams(HttpLoadParams):
    tw_reuse: Literal[0, 1, 2] = 2
    port_range: PortRange = ""
    nolinger: Flag = False


class FaultParams(HttpLoadParams):
    fault: Literal["backend-killed", "haproxy-restarted", "client-killed"] = "backend-killed"
    at_s: Seconds(600, "seconds into the load", 3.0, True) = 3.0
    delay_ms: Count(0, 60_000, "the backend's delay per response in ms", 50) = 50
    abortonclose: Flag = False


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            name="smoke",
            summary="Keep-alive GETs of a small body through HAProxy: does it work, how fast.",
            field_note="none: the foundation check every other scenario stands on",
            params=SmokeParams,
            knobs=_smoke,
            shows=Shows((*LOAD_COLUMNS, "status", "flags", "bound"), Verdict("samples", "latency")),
        ),
        Scenario(
            name="calibration",
            summary="The probe and the capture against a target that closes d ms after the "
            "client's FIN, in place of haproxy: both must measure d.",
            field_note="none: proves the close-delay numbers every other scenario reports",
            params=CalibrationParams,
            knobs=_calibration,
            shows=Shows(
                (
                    "injected",
                    *PROBE_COLUMNS,
                    "max-probe-wire",
                    "probe-off-wire",
                    "target-late",
                    "calibration-verdict",
                ),
                plots=("close-delay",),
            ),
        ),
        Scenario(
            name="half-close",
            summary="The client half-closes (FIN, with or without TLS close_notify, after the "
            "response or with the request): how long until HAProxy closes too?",
            field_note="seed 001: 2.6.15 keeps the client connection ~20 s after its FIN; "
            "2.6.17 closes at once",
            params=HalfCloseParams,
            knobs=_half_close,
            shows=Shows(
                (
                    "version",
                    *PROBE_COLUMNS,
                    "agree",
                    "close-wait-in",
                    "close-wait-in-lasted",
                    "close-wait-out",
                    "close-wait-backend",
                    "flags",
                ),
                Verdict("samples", "close delay"),
                plots=("close-delay",),
                phenomenon="late-closes",
            ),
        ),
        Scenario(
            name="chunked-stall",
            summary="A slow reader of a chunked response, swept over chunk sizes: does "
            "HAProxy stall when its buffer fills on a chunk boundary and then ignore "
            "the client's FIN until timeout server?",
            field_note="seed 001, as found in our lab: 2.6.10-2.6.15 stall (fixed in 2.6.16, "
            "'h1-htx: Ensure chunked parsing with full output buffer')",
            params=ChunkedStallParams,
            knobs=_chunked_stall,
            shows=Shows(
                (
                    "version",
                    "stalled",
                    "stalled-chunk-sizes",
                    "bytes-min",
                    "close-delay-p50",
                    "close-delay-max",
                    "ends",
                    "agree",
                    "flags",
                ),
                Verdict("counts", "connections stalled"),
                plots=("close-delay",),
                sections=("chunk-sizes",),
                phenomenon="stalls",
            ),
        ),
        Scenario(
            name="keepalive-vs-close",
            summary="Client keep-alive on or off, through HAProxy or straight to the backend.",
            field_note="seeds 002, 003, 004: keep-alive saves handshakes and ports; "
            "Connection: close fills TIME_WAIT; proxy overhead 11 % warm vs 33 % cold",
            params=KeepaliveVsCloseParams,
            knobs=_keepalive_vs_close,
            shows=Shows(
                (
                    *LOAD_COLUMNS,
                    "time-wait-client",
                    "time-wait-haproxy",
                    "time-wait-backend",
                    "backend-conn-rate",
                    "bound",
                ),
                Verdict("samples", "latency"),
                plots=("census",),
                sections=("proxy-overhead",),
            ),
        ),
        Scenario(
            name="server-pool",
            summary="HAProxy's server-side connection reuse: http-reuse, http-server-close, "
            "pool-max-conn, server maxconn.",
            field_note="seed 002: a too-small idle pool turns into a TIME_WAIT storm",
            params=ServerPoolParams,
            knobs=_server_pool,
            shows=Shows(
                (
                    *LOAD_COLUMNS,
                    "time-wait-haproxy-out",
                    "time-wait-backend-in",
                    "backend-conn-rate",
                    "server-requests",
                    "bound",
                ),
                Verdict("samples", "latency"),
                plots=("census",),
            ),
        ),
        Scenario(
            name="connect-timeout",
            summary="A backend that refuses, cannot be reached, or never accepts, against "
            "timeout connect and retries.",
            field_note="seed 000: 503s flagged sC-- when timeout connect strikes",
            params=ConnectTimeoutParams,
            knobs=_connect_timeout,
            shows=Shows(
                (
                    "version",
                    "requests-logged",
                    "status",
                    "flags",
                    "tw-p50",
                    "tc-p50",
                    "ta-p50",
                    "retries",
                    "econ",
                ),
                Verdict("counts", "requests answered 5xx"),
                phenomenon="connect-timeouts",
            ),
        ),
        Scenario(
            name="error-fate",
            summary="After an error response (503 refused or connect timeout, 504 server "
            "timeout, 503 queue timeout), does HAProxy close the client connection or keep "
            "it for a next request? Joined to the log's termination state by client port.",
            field_note="issue 13: the fate of each client connection after an error "
            "response, joined to the flag",
            params=ErrorFateParams,
            knobs=_error_fate,
            shows=Shows(
                ("version", "connections", "status", "flags", "ends", "close-delay-p50"),
                sections=("error-fates",),
            ),
        ),
        Scenario(
            name="backend-closes-first",
            summary="The backend closes idle connections before HAProxy does, and the client "
            "never sends its FIN.",
            field_note="seed 000: CLOSE_WAIT towards the backend, FIN_WAIT2 towards the client",
            params=BackendClosesFirstParams,
            knobs=_backend_closes_first,
            shows=Shows(
                (
                    "version",
                    "closed-after",
                    "ends",
                    "agree",
                    "fin-wait-2-in",
                    "fin-wait-2-in-lasted",
                    "close-wait-out",
                    "close-wait-out-lasted",
                    "flags",
                ),
                Verdict("samples", "close delay"),
                plots=("close-delay", "census"),
                phenomenon="lingering-states",
            ),
        ),
        Scenario(
            name="keepalive-race",
            summary="The backend closes idle keep-alive connections (idle timeout, max "
            "requests) while HAProxy reuses them under load: 502s from the race, retry-on, "
            "and a watch of the idle server connections after the load.",
            field_note="public bug reports of sporadic 502s flagged SH-- with http-reuse "
            "and a backend keep-alive timeout shorter than HAProxy's",
            params=KeepaliveRaceParams,
            knobs=_keepalive_race,
            shows=Shows(
                (
                    *LOAD_COLUMNS,
                    "502s",
                    "flags",
                    "retries",
                    "server-reused",
                    "pool-at-load-end",
                    "pool-closed-by",
                    "pool-closed-within",
                    "pool-left",
                ),
                Verdict("counts", "requests answered 5xx"),
                plots=("census",),
            ),
        ),
        Scenario(
            name="servers",
            summary="Several servers in one backend, some down (nothing listens): retries, "
            "option redispatch, and which server answered each request.",
            field_note="public bug reports of 503s with one server down: retries onto the "
            "same server or redispatched to another",
            params=ServersParams,
            knobs=_servers,
            shows=Shows(
                (
                    *LOAD_COLUMNS,
                    "per-server",
                    "status",
                    "retries",
                    "redispatches",
                    "flags",
                    "server-requests",
                ),
                Verdict("counts", "requests answered 5xx"),
            ),
        ),
        Scenario(
            name="maxconn",
            summary="More clients than the global, frontend or server maxconn: accepted or "
            "left in the listener's queue, queued in HAProxy (Tw), or refused after "
            "timeout queue.",
            field_note="public bug reports of stalls and CLOSE_WAIT on the listener at maxconn",
            params=MaxconnParams,
            knobs=_maxconn,
            shows=Shows(
                (
                    *LOAD_COLUMNS,
                    "client-conns",
                    "fe-conn-max",
                    "queue-max",
                    "tw-p50",
                    "tw-p99",
                    "status",
                    "flags",
                ),
                Verdict("samples", "latency"),
            ),
        ),
        Scenario(
            name="kernel-knobs",
            summary="Connection: close load under per-container sysctls and option nolinger.",
            field_note="seed 004: tcp_tw_reuse, ip_local_port_range, SO_LINGER 0",
            params=KernelKnobsParams,
            knobs=_kernel_knobs,
            shows=Shows(
                (
                    *LOAD_COLUMNS,
                    "time-wait-client",
                    "time-wait-haproxy",
                    "haproxy-closes-wire",
                    "client-closes-wire",
                    "bound",
                ),
                Verdict("samples", "latency"),
                plots=("census",),
            ),
        ),
        Scenario(
            name="fault",
            summary="A fault mid-load: the backend killed, haproxy restarted, or the client "
            "container killed. The load runs on; what did the proxy log, what did clients see?",
            field_note="none directly: the failures behind every seed, made on purpose",
            params=FaultParams,
            knobs=_fault,
            shows=Shows(
                (
                    "version",
                    "fault-kind",
                    "fault-at",
                    *LOAD_COLUMNS[1:],
                    "client-saw",
                    "client-errors",
                    "proxy-logged",
                    "flags",
                ),
            ),
        ),
    ]
}


def with_common(knobs: Knobs, params: Params) -> Knobs:
    """The scenario's knobs with the parameters every scenario (``config``) or every HTTP
    load scenario (``connection_mode``, ``body_bytes``, ``chunked_upload``:
    ``params.HttpLoadParams``) takes."""
    mode = params.get("connection_mode", "keep-alive")
    if mode != "keep-alive":
        knobs = replace(knobs, haproxy=replace(knobs.haproxy, connection_mode=mode))
    if params.get("body_bytes") and isinstance(knobs.load, HttpLoad):
        load = replace(knobs.load, body_bytes=params["body_bytes"],
                       chunked=bool(params.get("chunked_upload")))  # fmt: skip
        knobs = replace(knobs, load=load)
    return with_config(knobs, params.get("config"))


def with_config(knobs: Knobs, config: Mapping[str, list[str]] | None) -> Knobs:
    """The scenario's knobs with a cell's explicit config lines (the ``config`` parameter,
    checked by ``params.HaproxyConfig``) after its own lines in each section."""
    if not config:
        return knobs
    hx = knobs.haproxy
    extra = {s: tuple(config.get(s, ())) for s in ("global", "defaults", "frontend", "backend")}
    return replace(
        knobs,
        haproxy=replace(
            hx,
            global_lines=hx.global_lines + extra["global"],
            defaults_lines=hx.defaults_lines + extra["defaults"],
            frontend_lines=hx.frontend_lines + extra["frontend"],
            backend_lines=hx.backend_lines + extra["backend"],
        ),
    )


def describe(name: str | None = None) -> str:
    """``python -m harness scenarios [NAME]``: every scenario in a line, or one with each
    parameter's default and allowed values; ``config``: the directives a ``config``
    parameter may add, per section. Raises SpecError for an unknown name."""
    if name is None:
        width = max(map(len, SCENARIOS))
        lines = [f"{s.name:{width}}  {s.summary}" for s in SCENARIOS.values()]
        return "\n".join(
            [*lines, "", "python -m harness scenarios NAME: its parameters",
             "python -m harness scenarios config: the config lines any scenario takes"]
        )  # fmt: skip
    if name == "config":
        return "\n".join(
            [
                "config (every scenario): HAProxy config lines per section, e.g.",
                "  config: {backend: [option abortonclose], defaults: [timeout queue 5s]}",
                "Each line is an allow-listed directive with typed arguments (time values as",
                "for timeouts, bounded integers, choices), in a section HAProxy accepts it:",
                describe_directives(),
            ]
        )
    scenario = get(name, "scenarios")
    shows = scenario.shows
    kinds = {"samples": "Mann-Whitney U on every sample", "counts": "Fisher's exact test"}
    judged = (
        f"{shows.verdict.what} ({kinds[shows.verdict.kind]})"
        if shows.verdict
        else "no version-against-version verdict"
    )
    lines = [
        scenario.name,
        f"  {scenario.summary}",
        f"  field note: {scenario.field_note}",
        f"  reports: {', '.join(shows.columns)}",
        f"  versions compared on: {judged}",
        "",
    ]
    for key, default in scenario.defaults.items():
        allowed = allowed_form(scenario.params, key).removeprefix("Allowed: ")
        shown = str(default).lower() if isinstance(default, bool) else repr(default)
        lines.append(f"  {key} (default {shown}): {allowed}")
    for key in scenario.params.OMITTED_AT_DEFAULT:
        default = scenario.params.model_fields[key].default
        allowed = allowed_form(scenario.params, key).removeprefix("Allowed: ")
        lines.append(f"  {key} (default {default!r}): {allowed}")
    config = allowed_form(scenario.params, "config").removeprefix("Allowed: ")
    lines.append(f"  config (default none): {config}")
    return "\n".join(lines)


def get(name: str, where: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SpecError(
            f"{where}: unknown scenario {name!r}. Known: {', '.join(SCENARIOS)}."
        ) from None
