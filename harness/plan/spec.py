"""The matrix spec: a YAML file validated with pydantic, expanded into cells.

    name: default
    versions: [debian:bullseye, debian:bookworm, debian:trixie]
    repetitions: 1
    load: {users: 20, spawn_rate: 20, duration_s: 10}
    scenarios:
      - name: smoke
        params: {size: 128}          # overrides of the scenario's defaults
        grid: {keepalive: [true, false]}   # cartesian product, one cell per combination

Cells = versions × scenarios × grid × repetitions. An error names the file, the key,
its line, what was expected, and how to fix it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from harness import ROOT
from harness.errors import SpecError
from harness.plan import scenarios, versions
from harness.plan.versions import VersionSpec
from harness.quote import shown


class _Strict(BaseModel):
    # NaN passes every bound (nan > 0 and nan <= 600 are both False, so neither fails)
    # and infinity passes an upper-unbounded one: refuse both outright.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Locust runs each user as a greenlet of one Python process (in distributed mode, of
# each worker: the master runs none); wrk holds one socket per connection in an event
# loop per thread, so it goes much further.
MAX_LOCUST_USERS = 1000
MAX_WRK_CONNECTIONS = 20000


Generator = Literal["locust", "wrk", "h2load", "requests", "node", "go"]
# The field notes' own clients (clients-native/): one program each, one output format.
NATIVE_GENERATORS: tuple[str, ...] = ("requests", "node", "go")
# The generators that stop at a request count (max_requests).
REQUEST_CAPPED: tuple[str, ...] = ("h2load", *NATIVE_GENERATORS)
# Each client's own settings, and the generator they belong to.
CLIENT_SETTINGS = {
    "session": "requests",
    "concurrency": "requests",
    "agent": "node",
    "max_sockets": "node",
    "max_idle_conns": "go",
    "max_idle_conns_per_host": "go",
    "disable_keepalives": "go",
    "pause_ms": "go",
}
# A thread (requests) or pending request (node, go) each; their ports come from one
# ephemeral range (28,232 on Linux's default 32768-60999).
MAX_NATIVE_USERS = 2000
MAX_NATIVE_REQUESTS = 10_000_000


class Load(_Strict):
    """Load shape of the load scenarios (the close-delay probe scenarios drive their own
    probe client). ``closed``: ``users`` send back to back. ``open``: a fixed arrival
    rate, latency measured from the intended send time (Locust only).

    ``generator``: ``locust`` (scripted users, one Python process: about 100 µs of CPU
    per request, so it runs out before HAProxy does on a small host; ``workers: N`` runs
    them in N processes under a master, Locust's distributed mode) or ``wrk`` (Debian's
    wrk 4.1: ``users`` connections over ``threads`` event-loop threads, about 17 µs per
    request) or ``h2load`` (Debian's nghttp2-client 1.52: HTTP/2, ``users`` connections
    over ``threads`` threads, each connection keeping ``streams`` requests in flight, for
    ``duration_s`` or, given ``requests``, that many requests in all; the cell's
    ``http2`` parameter says h2c prior knowledge or ALPN h2 on TLS). wrk and h2load are
    closed loop only: their latency is measured from each request's actual send, so a
    stall delays the requests behind it instead of showing as their latency (coordinated
    omission, Tene 2013); the open loop's intended-time latency needs Locust.

    The field notes' own clients (``clients-native/``), closed loop, ``users`` at once
    (threads of ``requests``, concurrent requests of Node's ``http`` and of Go's
    ``net/http``), each request timed in µs and its local port recorded:

    - ``requests`` (seed 004, seed 000's test script: Debian's python3-requests, a
      thread per user): ``session: false`` calls ``requests.get`` (a new Session, so a
      new connection, per request); ``true``: one ``requests.Session`` per thread;
      ``concurrency: eventlet`` runs the users as eventlet green threads in one OS
      thread (a ``GreenPool``, as seed 000's ``test_api_green_thread``; Debian's
      python3-eventlet, sockets monkey-patched) instead of ``threads`` (the default);
    - ``node`` (seed 003: Debian's nodejs): ``agent: none`` is ``agent: false`` (a new
      connection per request), ``keepalive`` an ``http.Agent({keepAlive: true,
      maxSockets})``;
    - ``go`` (seed 002: a stdlib-only program built with Debian's golang-go): an
      ``http.Transport`` with ``max_idle_conns``, ``max_idle_conns_per_host``,
      ``disable_keepalives`` (Go's MaxIdleConns, MaxIdleConnsPerHost,
      DisableKeepAlives; Go's defaults 100, 2, false), and ``pause_ms`` between a
      response and the next request (the time seed 002's gateway held a connection
      idle while it answered its own client).

    ``max_requests`` caps their requests in all (the load ends at that count or at
    ``duration_s``, whichever comes first).

    Raises pydantic's ValidationError (a SpecError where the matrix is read) for an open
    loop with wrk, h2load or a native client, more Locust users than its processes hold
    (``MAX_LOCUST_USERS`` each: the one process, or each of the ``workers``), threads
    with Locust, streams with anything but h2load, or a client's setting given to
    another generator.
    """

    # Strict, as scenario parameters are (harness.plan.params.Params): "2" or a YAML 1.1
    # boolean (yes, on) is refused where a number goes, not read as 2 or 1.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    generator: Generator = "locust"
    mode: Literal["closed", "open"] = "closed"
    users: int = Field(
        20, ge=1, le=MAX_WRK_CONNECTIONS,
        description=f"concurrent Locust users, or wrk / h2load connections (closed loop; "
        f"Locust at most {MAX_LOCUST_USERS} per process: its workers, or the one)",
    )  # fmt: skip
    spawn_rate: float = Field(20, gt=0, le=1000, description="users started per second")
    rate: float = Field(200, gt=0, le=100000, description="requests per second (open loop)")
    duration_s: float = Field(10, gt=0, le=600, description="load duration per cell (seconds)")
    threads: int | None = Field(
        None, ge=1, le=64, description="wrk's or h2load's threads, each an event loop on one core"
    )
    # h2load -m: HTTP/2 streams each connection keeps open at once (its default 1; HAProxy
    # advertises SETTINGS_MAX_CONCURRENT_STREAMS 100, tune.h2.max-concurrent-streams).
    streams: int | None = Field(
        None, ge=1, le=1000, description="h2load's concurrent streams per connection"
    )
    workers: int | None = Field(
        None, ge=1, le=16,
        description="Locust worker processes under one master (distributed mode), each "
        "able to use one core",
    )  # fmt: skip

    # h2load -n, the native clients' cap: the load ends at this count or at duration_s,
    # whichever comes first (h2load: duration_s + 60 s bounds the cell).
    max_requests: int | None = Field(
        None, ge=1, le=MAX_NATIVE_REQUESTS,
        description="requests in all, then the load ends (h2load, the native clients)",
    )  # fmt: skip
    session: bool | None = Field(None, description="requests: one Session per thread")
    concurrency: Literal["threads", "eventlet"] | None = Field(
        None, description="requests: a thread per user (threads) or an eventlet green thread"
    )
    agent: Literal["none", "keepalive"] | None = Field(
        None, description="node: agent: false (none) or a keep-alive http.Agent"
    )
    max_sockets: int | None = Field(
        None, ge=1, le=MAX_NATIVE_USERS, description="node: the keep-alive agent's maxSockets"
    )
    max_idle_conns: int | None = Field(
        None, ge=0, le=100_000, description="go: Transport.MaxIdleConns (0: no limit)"
    )
    max_idle_conns_per_host: int | None = Field(
        None, ge=0, le=100_000,
        description="go: Transport.MaxIdleConnsPerHost (0: Go's default, 2)",
    )  # fmt: skip
    disable_keepalives: bool | None = Field(None, description="go: Transport.DisableKeepAlives")
    # Seed 002's gateway holds each backend connection idle while it answers its own
    # client and waits for the next request; a client sending back to back never has
    # more connections idle than its pool keeps, so its pool never overflows.
    pause_ms: int | None = Field(
        None, ge=0, le=60_000,
        description="go: pause after each response before the goroutine's next request (ms)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _fits_generator(self) -> Load:
        for name, owner in CLIENT_SETTINGS.items():
            if getattr(self, name) is not None and self.generator != owner:
                raise ValueError(f"{name}: applies to generator: {owner} only")
        if self.max_requests is not None and self.generator not in REQUEST_CAPPED:
            raise ValueError(
                f"max_requests: applies to generator: {' / '.join(REQUEST_CAPPED)} only"
            )
        if self.generator in NATIVE_GENERATORS:
            if self.mode == "open":
                raise ValueError(
                    f"mode: open needs generator: locust ({self.generator} sends closed loop)"
                )
            if self.users > MAX_NATIVE_USERS:
                raise ValueError(
                    f"users: {self.users} is more than the native clients run at once (at "
                    f"most {MAX_NATIVE_USERS}); use generator: wrk for more connections"
                )
            if self.threads is not None or self.workers is not None:
                raise ValueError(
                    f"threads: / workers: apply to wrk or h2load / locust; {self.generator} runs "
                    "users: at once"
                )
        if self.agent != "keepalive" and self.max_sockets is not None:
            raise ValueError("max_sockets: applies to agent: keepalive only")
        if self.generator != "locust" and self.mode == "open":
            raise ValueError(
                f"mode: open needs generator: locust ({self.generator} sends closed loop; "
                "its latency would hide a stall behind coordinated omission)"
            )
        if self.generator == "locust" and self.users > MAX_LOCUST_USERS * self.processes:
            # the master spreads the users evenly over the workers (Locust's
            # UsersDispatcher), so each holds at most ceil(users / workers)
            held = f"{self.processes} processes hold" if self.workers else "one process holds"
            raise ValueError(
                f"users: {self.users} is more than {held} (at most {MAX_LOCUST_USERS} "
                "Locust users per process); add workers: or use generator: wrk for more "
                "connections"
            )
        if self.generator == "locust" and self.threads is not None:
            raise ValueError("threads: applies to generator: wrk or h2load only")
        if self.generator != "locust" and self.workers is not None:
            raise ValueError(
                f"workers: applies to generator: locust only ({self.generator} has threads:)"
            )
        if self.generator != "h2load" and self.streams is not None:
            raise ValueError("streams: applies to generator: h2load only")
        if self.mode == "closed" and self.users < self.processes:
            raise ValueError(
                f"users: {self.users} is fewer than workers: {self.processes}; a worker "
                "without a user sends nothing"
            )
        return self

    @property
    def client_settings(self) -> dict[str, Any]:
        """The native client's own settings that were given ({} for locust and wrk)."""
        names = ("max_requests", *CLIENT_SETTINGS)
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    @property
    def processes(self) -> int:
        """Locust processes that run users: the workers, or the one local process."""
        return self.workers or 1

    @property
    def native_threads(self) -> int:
        """wrk's or h2load's -t: the threads asked for, never more than the connections
        (h2load refuses fewer clients than threads)."""
        return min(self.threads or 1, self.users)


class Verdicts(_Strict):
    """Thresholds for version-against-version verdicts (harness/analyse/compare.py)."""

    alpha: float = Field(0.01, gt=0, lt=1, description="significance level")
    min_effect: float = Field(0.3, ge=0, le=1, description="minimum |Cliff's delta|")
    min_ratio: float = Field(1.2, ge=1, description="minimum ratio of medians")
    min_rate_diff: float = Field(0.05, ge=0, le=1, description="minimum difference in rates")


class ScenarioEntry(_Strict):
    name: str
    params: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    # Run this entry on these versions only (default: all); e.g. a calibration cell once.
    # An empty list would run it nowhere: refused, not silently dropped.
    versions: list[str] | None = Field(None, min_length=1)
    # This entry's load settings over the matrix's load: (e.g. {generator: requests,
    # session: true}), so one matrix holds a client's settings side by side.
    load: dict[str, Any] = {}


Scalar = bool | int | float | str
ClaimMetric = Literal[
    "requests",
    "failures",
    "rps",
    "ports-used",
    "ports-per-request",
    "connections-per-request",
    "time-wait-client",
    "time-wait-client-per-request",
    "close-wait-haproxy-backend",
    "close-wait-haproxy-backend-lasted-s",
    "fin-wait-2-haproxy-client",
    "close-wait-per-fin-wait-2",
    "sC-share",
    "stalled",
    "stalled-share",
    "close-delay-p50-ms",
    "close-delay-max-ms",
]


class Claim(_Strict):
    """A field note's claim, as a check on measured numbers ("field note vs measured").

    The cells ``where`` names (scenario parameters, load settings and ``scenario``, the
    scenario's name, e.g. ``{generator: requests, session: false}``) are measured on
    ``metric`` (harness.report.claims says how each is read from a cell record); with
    ``relative_to``, as a ratio to the same metric of the cells it names. The claim holds
    for a version when every cell's value (or the ratio of the two groups' medians) is at
    least ``at_least`` and at most ``at_most`` (one of the two, or both for a range).
    ``versions`` (specs of the matrix's versions, e.g. ``[debian:bookworm]``) limits it to
    those: a note about one release ("2.6.15 keeps the connection ~20 s") is judged where
    it applies, its fix elsewhere by a second claim. ``note`` is the note's claim in
    words: shown in the report, used for nothing else.
    """

    # shown in the report like the description: no C0 or C1 control character (CSI 0x9b)
    note: str = Field(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")
    metric: ClaimMetric
    where: dict[str, Scalar] = Field(min_length=1, max_length=20)
    relative_to: dict[str, Scalar] | None = Field(None, min_length=1, max_length=20)
    at_least: float | None = Field(None, ge=-1e12, le=1e12)
    at_most: float | None = Field(None, ge=-1e12, le=1e12)
    versions: list[Annotated[str, Field(max_length=300)]] | None = Field(
        None, min_length=1, max_length=20
    )

    @model_validator(mode="after")
    def _bounds(self) -> Claim:
        if self.at_least is None and self.at_most is None:
            raise ValueError("a claim takes at_least:, at_most: or both (a range)")
        low, high = self.at_least, self.at_most
        if low is not None and high is not None and low > high:
            raise ValueError(f"at_least ({low:g}) is above at_most ({high:g}): nothing could hold")
        return self


def claim_versions(claim: Claim) -> set[str] | None:
    """The version specs a claim is judged on, as cells and records spell them
    (``VersionSpec.text``), or None for every version. Raises SpecError for a spec that
    does not parse."""
    if claim.versions is None:
        return None
    return {versions.parse(v, "claims.versions").text for v in claim.versions}


def claim_cells(claim: Claim, cells: list[Cell]) -> list[Cell]:
    """The cells of the versions a claim is judged on."""
    wanted = claim_versions(claim)
    return [c for c in cells if wanted is None or c.version.text in wanted]


def selects(
    selector: dict[str, Any], scenario: str, params: dict[str, Any], load: dict[str, Any]
) -> bool:
    """Does a cell (its scenario's name, its parameters, its load settings as a dict) have
    every value of ``selector``? A key is looked up in the parameters first, then
    ``scenario`` (the scenario's name), then the load."""
    for key, want in selector.items():
        if key in params:
            have = params[key]
        elif key == "scenario":
            have = scenario
        else:
            have = load.get(key, _ABSENT)
        if have is _ABSENT or type(have) is not type(want) or have != want:
            return False
    return True


def claim_shared_cell(
    claim: Claim, cells: Iterable[tuple[str, str, dict[str, Any], dict[str, Any]]]
) -> str | None:
    """The first of ``cells`` (id, scenario name, parameters, load settings as a dict)
    that a ratio claim's ``where`` and ``relative_to`` both select, or None (None too for
    a claim without ``relative_to``). A ratio over shared cells is pulled towards 1 (the
    same cells over themselves: exactly 1, so "at_most: 1" held whatever was measured):
    the plan refuses such a claim, and the report refuses it in a run.json."""
    if claim.relative_to is None:
        return None
    for cell, scenario, params, load in cells:
        if selects(claim.where, scenario, params, load) and selects(
            claim.relative_to, scenario, params, load
        ):
            return cell
    return None


# Docker's own rule for a context name (cli/context/store: ``^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$``),
# narrowed to what needs no quoting anywhere: it goes on a command line (``--context``).
CONTEXT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def _dotted_quad(value: Any) -> Any:
    # pydantic takes an integer for an IPv4Address (3221225995 is 192.0.2.11): a matrix
    # file's address is the text a user wrote, in the form `docker context` shows.
    if not isinstance(value, str):
        raise ValueError(f"an IPv4 address is written as text, e.g. 192.0.2.12, got {value!r}")
    return value


class Host(_Strict):
    """Where one service of a cell runs: a Docker context (``docker context ls``; the
    engine at ``DOCKER_HOST``, the local one, is ``default``) and the IPv4 address at which
    the other hosts reach that engine's host (its ports are published there)."""

    context: str = Field(pattern=CONTEXT_NAME)
    address: Annotated[IPv4Address, BeforeValidator(_dotted_quad)]

    @field_serializer("address")
    def _text(self, address: IPv4Address) -> str:
        return str(address)  # run.json holds JSON values only


class Hosts(_Strict):
    """A stack that spans machines: the client, the proxy under test and the backend each
    on a Docker engine of its own (all three given; two may share one). Without ``hosts:``
    every service runs on the local engine, in one compose project, as before.

    Raises pydantic's ValidationError when two services share a context but not an
    address, or when a loopback, unspecified, multicast or reserved address is given (no
    other host's engine is there).
    """

    client: Host
    proxy: Host
    backend: Host

    @model_validator(mode="after")
    def _consistent(self) -> Hosts:
        seen: dict[str, IPv4Address] = {}
        for role in ROLES:
            host: Host = getattr(self, role)
            # loopback, 0.0.0.0, multicast (224/4) and reserved (240/4, with the limited
            # broadcast 255.255.255.255: RFC 1112, RFC 919) name no other host's engine
            address = host.address
            if (address.is_loopback or address.is_unspecified or address.is_multicast
                    or address.is_reserved):  # fmt: skip
                raise ValueError(
                    f"{role}.address {host.address} is not reachable from another host"
                )
            if seen.setdefault(host.context, host.address) != host.address:
                raise ValueError(
                    f"context {host.context} is given two addresses ({seen[host.context]} "
                    f"and {host.address}): one engine runs on one host"
                )
        return self

    @property
    def spans(self) -> bool:
        """More than one engine: the cell's services are split between them."""
        return len({getattr(self, role).context for role in ROLES}) > 1


ROLES = ("client", "proxy", "backend")


# The matrix's name is part of every run id and compose project: Docker's safe words.
MatrixName = Annotated[str, Field(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
# The matrix's description opens its report (report.md, report.html, the published
# site): one line of printable text, so a shared matrix file cannot write a heading or
# a "Verdicts" section of its own into report.md, nor drive a terminal (no C0 or C1
# control character: ECMA-48's ESC and CSI, a newline).
Description = Annotated[str, Field(max_length=500, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]


class Matrix(_Strict):
    name: MatrixName
    description: Description = ""
    versions: list[str] = Field(min_length=1)
    baseline: str | None = None
    repetitions: int = Field(1, ge=1, le=100, description="cells per version and parameter set")
    load: Load = Load()
    verdicts: Verdicts = Verdicts()
    scenarios: list[ScenarioEntry] = Field(min_length=1)
    # A cell still running after this is killed, recorded as failed, and the run goes on.
    # Default: twice the cell's own load bound plus 5 minutes (runner.timeout_s).
    cell_timeout_s: float | None = Field(None, gt=0, le=86400)
    # Only the cells whose parameters have these values (``matrix --only KEY=VALUE``
    # writes it; run.json records it, so --resume finishes the same part). Each key must
    # be a parameter of one of the matrix's scenarios; a scenario without it is left out.
    select: dict[str, Any] = {}
    # Which Docker engine runs each service (README: "Stacks that span machines").
    hosts: Hosts | None = None
    # The field note's claims, checked against the measured cells (report: "Field note
    # vs measured"). Each one's where: / relative_to: must name cells of the matrix.
    claims: list[Claim] = Field([], max_length=100)


def params_text(params: dict[str, Any], keys: list[str] | None = None) -> str:
    """Parameters as "key=value" words, sorted by key (or in the order of ``keys``, a
    missing one shown as None): the one text form of a cell's parameters."""
    keys = sorted(params) if keys is None else keys
    return " ".join(f"{k}={params.get(k)}" for k in keys)


@dataclass(frozen=True)
class Cell:
    """One experiment: a version, a scenario with its parameters, one repetition."""

    run_id: str
    index: int  # 1-based position in the run
    total: int
    version: VersionSpec
    scenario: str
    params: dict[str, Any] = field(hash=False)
    repetition: int
    load: Load = field(hash=False)

    @property
    def params_text(self) -> str:
        return params_text(self.params) or "-"

    @functools.cached_property
    def knobs(self) -> scenarios.Knobs:
        """What the scenario makes of the parameters (built once per cell: the render,
        the runner and the load's time bound all read it)."""
        knobs = scenarios.get(self.scenario, self.id).knobs(self.params)
        return scenarios.with_common(knobs, self.params)

    @property
    def changed_params_text(self) -> str:
        """The parameters that differ from the scenario's defaults ("defaults" if none):
        what sets this cell apart, without the dozen defaults beside it; then a native
        client and its settings (a matrix entry's own load may be all that differs)."""
        defaults = scenarios.get(self.scenario, self.scenario).defaults
        changed = {k: v for k, v in self.params.items() if defaults.get(k) != v}
        text = params_text(changed) or "defaults"
        if self.load.generator in NATIVE_GENERATORS and isinstance(self.knobs.load,
                                                                   scenarios.HttpLoad):  # fmt: skip
            settings = self.load.client_settings
            text += f" · {self.load.generator} {params_text(settings)}".rstrip()
        return text

    @property
    def id(self) -> str:
        version = re.sub(r"[^A-Za-z0-9.]+", "-", self.version.label).strip("-")
        digest = hashlib.sha256(self.params_text.encode()).hexdigest()[:6]
        return f"{self.index:03d}-{self.scenario}-{version}-{digest}-r{self.repetition}"


@dataclass(frozen=True)
class Plan:
    matrix: Matrix
    source: Path | None
    versions: list[VersionSpec]
    cells: list[Cell]


# Limits on a matrix file: far above any real one (the shipped ones are a few KB, a
# few levels deep, a few hundred values), far below what hurts.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000
MAX_CELLS = 10_000
# Every number a matrix takes fits in 64 bits; the digits are capped before conversion
# (Python refuses int <-> str beyond 4,300 digits, and a long one is slow to convert).
MAX_INT = 2**63 - 1
_MAX_NUMBER_CHARS = 40


def load(path: Path, run_id: str, only: Only | None = None) -> Plan:
    """Read, parse and expand a matrix file (or the part ``only`` names). Raises SpecError
    naming the file (and the line, key and fix) for anything it refuses; never starts
    anything."""
    text = _read(path)
    try:
        raw = yaml.load(text, Loader=_MatrixLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        raise SpecError(_yaml_problem(path, exc)) from None
    return expand(raw, run_id, source=path, text=text, only=only)


_PARAM_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")


def param_options(
    given: list[str] | None, option: str = "--param", for_scenarios: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``--param KEY=VALUE`` options (or ``--only``'s, named by ``option``) as parameter values.

    VALUE is read as one YAML scalar or flow value, as in a matrix file (``20``,
    ``true``, ``5s``, ``"1024 65000"``), with the matrix file's limits; the scenario's
    typed model then validates it (spec.expand). On a command line nobody quotes for
    YAML: where a value read as a number or boolean is refused by every scenario of
    ``for_scenarios`` that takes KEY, but its text is accepted (``tls=1.3`` is the
    text '1.3'), the text is used. Raises SpecError naming the option.
    """
    out: dict[str, Any] = {}
    for item in given or []:
        key, sep, text = item.partition("=")
        if not sep or not _PARAM_KEY.fullmatch(key):
            raise SpecError(
                f"{option} {shown(item)}: expected KEY=VALUE with a parameter name "
                f"(lower case, digits, _), e.g. {option} timeout_client=5s. "
                "python -m harness scenarios NAME lists a scenario's parameters."
            )
        if key in out:
            raise SpecError(f"{option} {key} is given twice; give each parameter once.")
        if len(text) > 1000:
            raise SpecError(f"{option} {key}: a value of {len(text):,} characters; at most 1000.")
        try:
            out[key] = yaml.load(text, Loader=_MatrixLoader) if text else ""
            if not isinstance(out[key], str) and _only_text_fits(key, out[key], text,
                                                               for_scenarios):  # fmt: skip
                out[key] = text
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise SpecError(
                f"{option} {key}={shown(text)}: not a value a matrix file could hold "
                f"({problem}). Quote it for the shell and YAML, e.g. {option} '{key}=\"...\"'."
            ) from None
    return out


def _only_text_fits(key: str, value: Any, text: str, names: tuple[str, ...]) -> bool:
    def fits(name: str, candidate: Any) -> bool:
        try:
            scenarios.SCENARIOS[name].resolve({key: candidate}, "")
        except SpecError:
            return False
        return True

    known = [n for n in dict.fromkeys(names) if n in scenarios.SCENARIOS]  # else: said later
    takers = [n for n in known if key in scenarios.SCENARIOS[n].params.model_fields]
    return (
        bool(takers)
        and not any(fits(n, value) for n in takers)
        and any(fits(n, text) for n in takers)
    )


def _read(path: Path) -> str:
    """The text of a matrix file: a regular file of at most MAX_BYTES of UTF-8.

    Checked with stat before it is opened: opening a FIFO blocks until a writer comes,
    and /dev/zero never ends."""
    shipped = ", ".join(sorted(p.name for p in (ROOT / "matrices").glob("*.yaml")))
    fix = f"Give the path of a YAML matrix file, e.g. one of {ROOT / 'matrices'}/: {shipped}."
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(
                f"{path}: {_file_kind(info.st_mode)}, not a regular file: it is not read. {fix}"
            )
        if info.st_size > MAX_BYTES:
            raise SpecError(_too_large(path, info.st_size))
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still
        # returns; the read is capped whatever the stat said.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8 text"
        raise SpecError(f"{path}: cannot read the matrix file ({why}). {fix}") from exc
    if len(data) > MAX_BYTES:  # it grew since the stat
        raise SpecError(_too_large(path, len(data)))
    return text


def _too_large(path: Path, size: int) -> str:
    return (
        f"{path}: {size:,} bytes, more than a matrix file may hold ({MAX_BYTES // 1024} KiB), "
        "so it is not read. A matrix file is a few KB: check this is the file you meant."
    )


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML the harness still refuses; ``fix`` says what to write instead."""

    fix = ""

    def __init__(self, problem: str, mark: yaml.Mark, fix: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.fix = fix


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


_MERGE = "tag:yaml.org,2002:merge"


class _MatrixLoader(yaml.SafeLoader):
    """A SafeLoader with limits, for files from anyone:

    - a key given twice in one mapping is refused: PyYAML would keep the last silently,
      so a matrix with two ``load:`` would run with half of what it says. Merge keys
      (``<<: *base``) are YAML's own, not duplicates: SafeLoader flattens them, the
      mapping's explicit keys winning;
    - nesting deeper than MAX_DEPTH is refused (the composer recurses per level:
      20,000 ``[`` were a RecursionError);
    - a document whose aliases expand to more than MAX_VALUES values is refused before
      it is built ("billion laughs": 9 levels of 9 aliases in 400 bytes are 387 million);
    - integers with more than _MAX_NUMBER_CHARS characters, or beyond 64 bits, are
      refused before anything prints them.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    f"lists and mappings are nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                    "A matrix needs a few levels; close the brackets that were opened "
                    "(a '[' or '{' needs its ']' or '}').",
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                continue
            if key in seen:
                raise _DuplicateKey(
                    None,
                    None,
                    f"{shown(key)} is given twice in one mapping (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = len(str(node.value).lstrip("+-").replace("_", ""))
        value = None if digits > _MAX_NUMBER_CHARS else super().construct_yaml_int(node)
        if value is None or abs(value) > MAX_INT:
            raise _Refused(
                f"the number {shown(str(node.value), 24)} ({digits:,} digits) is too large",
                node.start_mark,
                f"No key of a matrix takes a number beyond 64 bits ({MAX_INT:,}); write "
                "the number it means.",
            )
        return value  # type: ignore[no-any-return]


_MatrixLoader.add_constructor("tag:yaml.org,2002:int", _MatrixLoader.construct_yaml_int)

# Floats as YAML 1.2 reads them: PyYAML follows YAML 1.1, where "1e3" and "1.0e9" (no
# sign after the e) are strings, so `duration_s: 1.0e9` reached the model as text and was
# refused as "not a valid number" instead of "must be <= 600". The resolver lists are
# copied first: add_implicit_resolver would append to SafeLoader's own.
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MatrixLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_MatrixLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the document's values as if every alias were written out (memoised per
    node, so this costs one pass over the composed graph); refuse above MAX_VALUES or
    when an alias sits inside the node it names (a loop: ``&a [*a]``)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_:
            raise _Refused(
                "an alias (*name) sits inside the node its anchor (&name) names: a loop",
                node.start_mark,
                "Anchors and aliases may repeat a value, not contain themselves; write the "
                "value out.",
            )
        open_.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                raise _Refused(
                    f"with its anchors and aliases (&name, *name) expanded, this holds more "
                    f"than {MAX_VALUES:,} values",
                    node.start_mark,
                    "A matrix needs a few hundred; use fewer aliases, or aliases of "
                    "aliases, and write the values out.",
                )
        open_.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root)


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """'file (line L, column C): what, with the line and a caret' instead of PyYAML's
    '<unicode string>' report. Everything quoted from the file is clipped: a hostile
    file's line can be a megabyte long."""
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        return f"{path}: not valid YAML: {_clip(str(exc))}. Fix the file's syntax."
    context = (
        f" ({_clip(exc.context)}, line {exc.context_mark.line + 1})" if exc.context_mark else ""
    )
    lines = (mark.buffer or "").splitlines()
    shown_line = ""
    if mark.line < len(lines):
        line, column = lines[mark.line], mark.column
        start = max(0, column - 50)
        lead = "..." if start else ""
        tail = "..." if len(line) > start + 100 else ""
        caret = " " * (len(lead) + column - start)
        shown_line = f"\n    {lead}{line[start : start + 100]}{tail}\n    {caret}^"
    if isinstance(exc, _Refused):
        return (
            f"{path} (line {mark.line + 1}, column {mark.column + 1}): {exc.problem}."
            f"{shown_line}\n{exc.fix}"
        )
    fix = (
        "Keep one of them (merge their contents if both matter)."
        if isinstance(exc, _DuplicateKey)
        else "Fix the syntax there (lists are [a, b] or one '- item' per line; indent with "
        "spaces, not tabs)."
    )
    return (
        f"{path} (line {mark.line + 1}, column {mark.column + 1}): not valid YAML: "
        f"{_clip(exc.problem or '')}{context}.{shown_line}\n{fix}"
    )


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Only:
    """Part of a matrix (``matrix --scenario NAME --version SPEC --only KEY=VALUE``): its
    entries for these scenarios, on these versions plus the baseline (the verdicts need
    it), the cells whose parameters have these values. Empty: all."""

    scenarios: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


def _narrowed(matrix: Matrix, only: Only, where: str) -> Matrix:
    """The matrix cut down to ``only``; what run.json records, so --resume finishes the
    same part. Raises SpecError naming the option when a name is not in the matrix."""
    for option, asked, known in (
        ("--scenario", only.scenarios, [e.name for e in matrix.scenarios]),
        ("--version", only.versions, matrix.versions),
    ):
        for name in asked:
            if name not in known:
                raise SpecError(
                    f"{option} {shown(name)}: {where} has no such {option[2:]}; it has "
                    f"{', '.join(dict.fromkeys(known))}. Name one of those (spelled the same)."
                )
    kept = [v for v in matrix.versions if not only.versions or v in only.versions
            or v == matrix.baseline]  # fmt: skip
    entries = []
    for entry in matrix.scenarios:
        if only.scenarios and entry.name not in only.scenarios:
            continue
        if entry.versions is not None:
            narrowed = [v for v in entry.versions if v in kept]
            if not narrowed:
                continue
            entry = entry.model_copy(update={"versions": narrowed})
        entries.append(entry)
    if not entries:
        raise SpecError(
            f"{where}: no entry of the matrix runs scenario {', '.join(only.scenarios)} on "
            f"version {', '.join(only.versions)}. Pick a version that entry lists."
        )
    asked = " ".join([*(f"--scenario {n}" for n in only.scenarios),
                      *(f"--version {v}" for v in only.versions),
                      *(f"--only {k}={v}" for k, v in only.params.items())])  # fmt: skip
    note = f"part of the matrix: {asked}"
    description = f"{matrix.description} ({note})" if matrix.description else note
    return matrix.model_copy(
        update={
            "versions": kept,
            "scenarios": entries,
            "description": description,
            "select": {**matrix.select, **only.params},
        }
    )


_ABSENT = object()  # a parameter the cell does not have
_NEVER = object()  # selected by a parameter the scenario does not have: no cell matches


def _selection(matrix: Matrix, where: str) -> dict[str, dict[str, Any]]:
    """``select:`` per scenario of the matrix, each value typed by that scenario's model
    (``tls=1.3`` is the float 1.3, ``timeout_client=5s`` the time value). A scenario
    without a selected parameter gets a selection no cell meets. Raises SpecError for a
    key no scenario of the matrix takes, or a value none would accept."""
    out: dict[str, dict[str, Any]] = {}
    names = list(dict.fromkeys(e.name for e in matrix.scenarios))
    for key, value in matrix.select.items():
        takers = [n for n in names if key in scenarios.get(n, where).params.model_fields]
        if not takers:
            raise SpecError(
                f"{where}: select / --only {key}={shown(value)}: no scenario of the matrix "
                f"({', '.join(names)}) has a parameter {key!r}. "
                "python -m harness scenarios NAME lists a scenario's parameters."
            )
        for name in names:
            if name not in takers:
                out.setdefault(name, {})[key] = _NEVER
                continue
            at = f"{where}: select / --only {key}"
            typed = scenarios.get(name, at).resolve({key: value}, at, lambda k, at=at: at)
            out.setdefault(name, {})[key] = typed[key]
    return out


def expand(
    raw: Any,
    run_id: str,
    source: Path | None = None,
    text: str = "",
    where: str = "",
    only: Only | None = None,
) -> Plan:
    """The cells of a matrix (as parsed from ``text``, or built by the CLI), or of the
    part of it ``only`` names. ``where`` names it in errors (default: the source file).
    Raises SpecError for anything invalid, including a matrix that expands to no cell."""
    where = where or (str(source) if source else "matrix")
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise SpecError(
            f"{where}: a matrix file is a mapping with versions: and scenarios:, but this is "
            f"{got}. Start from {ROOT / 'matrices' / 'default.yaml'}, e.g.\n"
            "    name: mine\n    versions: [debian:bookworm]\n    scenarios: [{name: smoke}]"
        )
    try:
        matrix = Matrix.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_explain(exc, where, text)) from None
    if only and (only.scenarios or only.versions or only.params):
        matrix = _narrowed(matrix, only, where)
    selected = _selection(matrix, where)

    specs = [
        versions.parse(v, f"{where}{_line(text, ['versions', i])}: versions[{i}]")
        for i, v in enumerate(matrix.versions)
    ]
    twice = sorted({v for v in matrix.versions if matrix.versions.count(v) > 1})
    if twice:
        # Cells, images and verdicts are keyed by the spec: a copy would be one version.
        raise SpecError(
            f"{where}{_line(text, ['versions'])}: versions lists {twice[0]!r} more than once. "
            "List each version once; for more cells per version, raise repetitions:."
        )
    if matrix.baseline is not None and matrix.baseline not in matrix.versions:
        raise SpecError(
            f"{where}{_line(text, ['baseline'])}: baseline {matrix.baseline!r} is not one of "
            f"versions ({', '.join(matrix.versions)}). Name one of them, or drop baseline:."
        )
    # Counted before anything is expanded: a few grid keys of a hundred values each
    # would otherwise be millions of cells, each resolved in memory, before any error.
    count = matrix.repetitions * sum(
        math.prod(len(values) for values in entry.grid.values())
        * len(entry.versions or matrix.versions)
        for entry in matrix.scenarios
    )
    if count > MAX_CELLS:
        raise SpecError(
            f"{where}: the matrix expands to {count:,} cells, more than {MAX_CELLS:,} (each "
            "cell is a stack started, measured and torn down: days of running). Shorten "
            "its grids, versions or repetitions, or split it into several matrices."
        )
    combos: list[tuple[str, dict[str, Any], list[str] | None, Load]] = []
    for i, entry in enumerate(matrix.scenarios):
        at = f"{where}{_line(text, ['scenarios', i])}: scenarios[{i}]"
        scenario = scenarios.get(entry.name, at)
        entry_load = _entry_load(matrix.load, entry.load, f"{at}.load")
        clash = sorted(set(entry.params) & set(entry.grid))
        if clash:
            raise SpecError(f"{at}: {', '.join(clash)} is in both params and grid; keep one.")
        for key, values in entry.grid.items():
            if not values:
                raise SpecError(f"{at}: grid {key!r} is empty; list at least one value.")
        for version in entry.versions or []:
            if version not in matrix.versions:
                raise SpecError(
                    f"{at}: versions lists {version!r}, which is not in the matrix's versions "
                    f"({', '.join(matrix.versions)}). Add it to the matrix's versions:, or "
                    "list only those here (spelled the same)."
                )

        def locate(key: str, i: int = i, entry: ScenarioEntry = entry) -> str:
            part = "grid" if key in entry.grid else "params"
            line = _line(text, ["scenarios", i, part, key])
            return f"{where}{line}: scenarios[{i}].{part}.{key}"

        keys = list(entry.grid)
        for values in itertools.product(*(entry.grid[k] for k in keys)):
            overrides = {**entry.params, **dict(zip(keys, values, strict=True))}
            params = scenario.resolve(overrides, at, locate)
            if entry.load and isinstance(scenario.knobs(params).load, scenarios.Probe):
                # the matrix's load: is the load scenarios' (a probe cell ignores it); an
                # entry's own would be ignored without a word, as `run --generator` was
                raise SpecError(
                    f"{at}.load: scenario {entry.name!r} drives its own close-delay probe "
                    "(one connection per sample), not a load generator, so this entry's "
                    "load: would be ignored. Remove it, or give it to a load scenario "
                    "(python -m harness scenarios lists them)."
                )
            if all(params.get(k, _ABSENT) == v for k, v in selected.get(entry.name, {}).items()):
                combos.append((entry.name, params, entry.versions, entry_load))

    planned = [
        (spec, name, params, rep, cell_load)
        for (name, params, only, cell_load), rep in itertools.product(
            combos, range(1, matrix.repetitions + 1)
        )
        # Versions innermost, so a half-finished run still compares versions like for like.
        for spec, text in zip(specs, matrix.versions, strict=True)
        if only is None or text in only
    ]
    if not planned and matrix.select:
        asked = " ".join(f"{k}={v}" for k, v in matrix.select.items())
        raise SpecError(
            f"{where}: no cell of the matrix has {asked} (select / --only). "
            "python -m harness matrix FILE --dry-run lists the cells and their parameters."
        )
    if not planned:  # every entry limited to no version: nothing would run, nothing report
        raise SpecError(
            f"{where}: the matrix expands to no cell. Give each scenario entry at least one "
            "of the matrix's versions (or drop its versions: to run it on all)."
        )
    cells = [
        Cell(run_id, i, len(planned), spec, name, params, rep, cell_load)
        for i, (spec, name, params, rep, cell_load) in enumerate(planned, start=1)
    ]
    for cell in cells:
        _speaks_the_frontends_http(cell, where)
    _check_native(cells, where)
    bodies = [c for c in cells if c.params.get("body_bytes") and c.load.generator != "locust"]
    if bodies:
        # wrk's script, h2load and the native clients send GETs: the body would be
        # dropped without a word.
        raise SpecError(
            f"{where}: {bodies[0].id} asks for a request body (body_bytes), which only "
            f"generator: locust sends ({bodies[0].load.generator} sends GETs); use Locust "
            "for those cells, or drop body_bytes."
        )
    if not (only and (only.scenarios or only.versions or only.params)):
        _check_claims(matrix, specs, cells, where, text)  # a part may leave a claim's cells out
    return Plan(_resolved_claims(matrix, specs), source, specs, cells)


def _resolved_claims(matrix: Matrix, specs: list[VersionSpec]) -> Matrix:
    """The matrix with each claim's ``versions`` as its cells' records spell them
    (``VersionSpec.text``: a tarball's absolute path, a git spec's commit): run.json
    holds these, so the report matches them to the records as text, never resolving a
    run folder's spec on the reader's host (a path relative to where it runs, ``git``
    run in a checkout the folder names)."""
    text_of = {written: spec.text for written, spec in zip(matrix.versions, specs, strict=True)}
    claims = [
        c.model_copy(
            update={"versions": list(dict.fromkeys(text_of.get(v, v) for v in c.versions))}
        )
        if c.versions
        else c
        for c in matrix.claims
    ]
    return matrix.model_copy(update={"claims": claims})


def _speaks_the_frontends_http(cell: Cell, where: str) -> None:
    """SpecError unless the load generator speaks the HTTP the cell's frontend does:
    h2load HTTP/2 only (the cell's ``http2`` parameter on), Locust and wrk HTTP/1.1 only."""
    load = cell.knobs.load
    if not isinstance(load, scenarios.HttpLoad):
        return  # a probe scenario drives its own client
    if load.http2 != "off" and cell.load.generator != "h2load":
        raise SpecError(
            f"{where}: scenario {cell.scenario!r} with http2={load.http2} needs load "
            f"generator: h2load; {cell.load.generator} speaks HTTP/1.1 only."
        )
    if load.http2 == "off" and cell.load.generator == "h2load":
        takers = [n for n, s in scenarios.SCENARIOS.items() if "http2" in s.params.model_fields]
        raise SpecError(
            f"{where}: load generator h2load speaks HTTP/2, but scenario {cell.scenario!r} "
            f"({cell.changed_params_text}) leaves HAProxy's frontend on HTTP/1.1. Set its "
            f"http2 parameter to h2c or h2 (scenarios that take it: {', '.join(takers)})."
        )


def _entry_load(base: Load, overrides: dict[str, Any], at: str) -> Load:
    """The matrix's load with a scenario entry's ``load:`` over it. Raises SpecError."""
    if not overrides:
        return base
    try:
        return Load.model_validate({**base.model_dump(exclude_unset=True), **overrides})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(map(str, error["loc"]))
        msg = str(error["msg"]).removeprefix("Value error, ")
        raise SpecError(f"{at}{'.' + key if key else ''}: {msg}.") from None


def _check_native(cells: list[Cell], where: str) -> None:
    """A native client sends back to back with its own connection settings: a load
    scenario whose Locust load closes each connection or paces requests would have it
    ignored without a word, so it is refused."""
    for cell in cells:
        load = cell.knobs.load
        if cell.load.generator not in NATIVE_GENERATORS or not isinstance(load, scenarios.HttpLoad):
            continue
        if not load.keepalive or load.wait_ms:
            raise SpecError(
                f"{where}: scenario {cell.scenario!r} with {cell.params_text}: its load "
                f"{'paces requests' if load.wait_ms else 'sends Connection: close'}, which "
                f"generator: {cell.load.generator} does not do (it reuses connections or not "
                "by its own settings: session, agent, disable_keepalives). Use generator: "
                "locust or wrk for it."
            )


def _check_claims(
    matrix: Matrix, specs: list[VersionSpec], cells: list[Cell], where: str, text: str
) -> None:
    """Every claim names cells of the matrix (a typo would leave it never checked), and a
    ratio's two groups share none. A claim's version is one of the matrix's versions as
    written, or as its cells spell it (a resumed run.json: :func:`_resolved_claims`).
    Raises SpecError naming the claim's line."""
    known = {*matrix.versions, *(spec.text for spec in specs)}
    for i, claim in enumerate(matrix.claims):
        for version in claim.versions or []:
            if version not in known:
                raise SpecError(
                    f"{where}{_line(text, ['claims', i, 'versions'])}: claims[{i}].versions "
                    f"lists {version!r}, which is not in the matrix's versions "
                    f"({', '.join(matrix.versions)}). List them spelled the same."
                )
        judged = claim_cells(claim, cells)
        for part in ("where", "relative_to"):
            selector = getattr(claim, part)
            if selector is None:
                continue
            if not any(
                selects(selector, c.scenario, c.params, c.load.model_dump()) for c in judged
            ):
                of = f" of {', '.join(claim.versions)}" if claim.versions else ""
                raise SpecError(
                    f"{where}{_line(text, ['claims', i, part])}: claims[{i}].{part} "
                    f"{shown(selector)} matches no cell{of} in the matrix. Name scenario "
                    "parameters or load settings with a value some cell has."
                )
        shared = claim_shared_cell(
            claim, ((c.id, c.scenario, c.params, c.load.model_dump()) for c in cells)
        )
        if shared is not None:
            raise SpecError(
                f"{where}{_line(text, ['claims', i, 'relative_to'])}: claims[{i}] "
                f"where {shown(claim.where)} and relative_to {shown(claim.relative_to)} "
                f"both name {shared}: a ratio of a group to cells of its own says "
                "nothing. Name cells the two do not share (e.g. a setting with "
                "different values)."
            )


class _RunFile(BaseModel):
    """What ``matrix --resume`` needs from run.json: the matrix the run was asked for,
    and the file it came from (run.json holds more: provenance, images, how it ended)."""

    model_config = ConfigDict(extra="allow")
    matrix: dict[str, Any]
    matrix_file: str | None = None


def recorded(data: Any, path: Path) -> tuple[dict[str, Any], Path | None]:
    """The matrix (as a dict, for ``expand``) and its source file recorded in a run's
    run.json at ``path``, as read by ``results.read_json``. Raises SpecError naming the
    file when it is not the shape the harness writes (edited, damaged, or not a run's)."""
    try:
        run = _RunFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["loc"]:
            what = f"its {'.'.join(map(str, first['loc']))}: {first['msg']}"
        else:
            what = f"it holds a {type(data).__name__}, not a mapping"
        raise SpecError(
            f"{path}: not the run.json the harness writes ({what}; got "
            f"{shown(first.get('input'))}). Resuming needs the mapping the run wrote, with "
            "its matrix: mapping. Restore the file, or start the matrix again "
            "(python -m harness matrix FILE)."
        ) from None
    return run.matrix, Path(run.matrix_file) if run.matrix_file else None


# What to write for a required key that is missing.
_EXAMPLES = {
    "name": "name: my-matrix",
    "versions": "versions: [debian:bookworm]",
    "scenarios": "scenarios: [{name: smoke}]",
}


def _explain(exc: ValidationError, where: str, text: str) -> str:
    lines = [f"{where}: the matrix is not valid:"]
    for err in exc.errors():
        path = list(err["loc"])
        key = ".".join(str(p) for p in path) or "(top level)"
        info, known = _field(path)
        kind = err["type"]
        if kind == "missing":
            example = _EXAMPLES.get(str(path[-1]))
            lines.append(
                f"  {key}{_line(text, path)}: required but missing; add it"
                + (f", e.g. {example}." if example else ".")
            )
            continue
        if kind == "extra_forbidden":
            close = difflib.get_close_matches(str(path[-1]), known, n=1)
            hint = "remove it or check its spelling" + (
                f" (did you mean {close[0]!r}?)" if close else ""
            )
            hint += f"; known keys here: {', '.join(known)}"
        elif kind == "list_type":
            hint = "write a list, e.g. [a, b] (or [a] for one value)"
        elif kind == "too_short" and path[-1] == "versions" and len(path) > 1:
            hint = "list at least one of the matrix's versions, or drop versions: to run it on all"
        elif kind == "too_short":
            hint = "list at least one"
        elif kind == "value_error":  # a rule across fields: its message says which
            hint = "change one of them"
        elif kind == "finite_number":
            hint = "write a finite number (.nan and .inf are refused)"
        elif kind == "string_type":
            hint = "write it as text, in quotes"
        elif info is not None and _bounds(info):
            hint = f"{info.description or path[-1]} must be {_bounds(info)}"
        elif info is not None and info.description:
            hint = f"expected: {info.description}"
        else:
            hint = "fix the value"
        got = shown(err.get("input"))  # never a raw repr: a hostile input can be huge
        lines.append(f"  {key}{_line(text, path)}: {err['msg']} (got {got}); {hint}.")
    return "\n".join(lines)


def _field(path: list[Any]) -> tuple[FieldInfo | None, list[str]]:
    """The model field a validation error's path points at, and the keys allowed beside it."""
    model: Any = Matrix
    info: FieldInfo | None = None
    known: list[str] = []
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None, []
        known = list(model.model_fields)
        info = model.model_fields.get(str(part))
        if info is None:
            return None, known
        # list[Entry], Entry | None -> Entry: the model one level down, if any
        inner = [a for a in get_args(info.annotation) if isinstance(a, type)]
        model = next((a for a in inner if issubclass(a, BaseModel)), info.annotation)
    return info, known


def _bounds(info: FieldInfo) -> str:
    """'> 0 and <= 600' from a field's constraints."""
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = [
        f"{sign} {getattr(m, name):g}"
        for m in info.metadata
        for name, sign in signs.items()
        if getattr(m, name, None) is not None
    ]
    return " and ".join(parts)


def _line(text: str, path: list[Any]) -> str:
    """' (line N)' for a key path in the YAML text, or '' when it cannot be located."""
    node = _composed(text) if text else None
    if node is None:
        return ""
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == str(part)]
            if not match:
                return f" (line {node.start_mark.line + 1})"
            node = match[0]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
    return f" (line {node.start_mark.line + 1})" if node is not None else ""


@functools.lru_cache(maxsize=2)
def _composed(text: str) -> yaml.Node | None:
    """The node graph of a matrix text, composed once: _line is asked once per entry and
    per version, and composing a large file each time made a long matrix quadratic."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def single(
    version: str,
    scenario: str,
    run_id: str,
    load: Load | None = None,
    params: dict[str, Any] | None = None,
) -> Plan:
    """The plan for one cell, as ``python -m harness run`` asks for it (``params``: the
    ``--param`` overrides, validated by the scenario's model)."""
    # Checked here first, so an error names the option the user typed.
    versions.parse(version, "--haproxy")
    scenarios.get(scenario, "--scenario")
    plan = expand(
        {
            "name": "single",
            "versions": [version],
            "scenarios": [{"name": scenario, "params": params or {}}],
            "load": (load or Load()).model_dump(),
        },
        run_id,
        where="the command line (--param)",
    )
    load = plan.cells[0].load
    asked = (
        f"--generator {load.generator}"
        if load.generator != "locust"
        else "--workers"
        if load.workers
        else ""
    )
    if asked and isinstance(plan.cells[0].knobs.load, scenarios.Probe):
        # In a matrix the load setting is the load scenarios'; asked for one probe
        # scenario, it would be ignored without a word.
        raise SpecError(
            f"{asked}: scenario {scenario!r} drives its own close-delay probe (one "
            "connection per sample), not a load generator. Leave the option out, or pick a "
            "load scenario (python -m harness scenarios lists them)."
        )
    return plan


# The option of ``python -m harness run`` behind each Load field.
_OPTIONS = {
    "users": "--users",
    "spawn_rate": "--users",
    "rate": "--rate",
    "duration_s": "--duration",
    "threads": "--threads",
    "workers": "--workers",
    "streams": "--streams",
    "max_requests": "--requests",
}
_RULE_WORDS = {
    "mode: open": "--rate (the open loop)",
    "generator: ": "--generator ",
    "users: ": "--users ",
    "threads: ": "--threads ",
    "workers: ": "--workers ",
    "streams: ": "--streams ",
    "max_requests: ": "--requests ",
}


def load_options(
    users: int,
    rate: float | None,
    duration: float,
    generator: str = "locust",
    threads: int | None = None,
    workers: int | None = None,
    streams: int | None = None,
    requests: int | None = None,
) -> Load:
    """The load of ``run --users N --duration S [--rate R] [--generator G --threads T]
    [--workers W] [--streams M --requests N]``;
    a value out of range is a SpecError naming the option, its bounds and its default."""
    values: dict[str, Any] = {
        "users": users, "spawn_rate": min(users, 1000), "duration_s": duration,
        "generator": generator, "threads": threads, "workers": workers,
        "streams": streams, "max_requests": requests,
    }  # fmt: skip
    try:
        if rate is None:
            return Load(mode="closed", **values)
        return Load(mode="open", rate=rate, **values)
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:  # a rule across options, said in the options' words
            text = error["msg"].removeprefix("Value error, ")
            for key, option in _RULE_WORDS.items():
                text = text.replace(key, option)
            raise SpecError(f"{text}.") from None
        field = str(error["loc"][0])
        info = Load.model_fields[field]
        option = _OPTIONS[field]
        given = {
            "--users": users, "--rate": rate, "--duration": duration, "--threads": threads,
            "--workers": workers, "--streams": streams, "--requests": requests,
        }[option]  # fmt: skip
        raise SpecError(
            f"{option} {given:g}: {info.description} must be {_bounds(info)} "
            f"(default {option} {1 if info.default is None else info.default:g})."
        ) from None
