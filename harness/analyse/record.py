"""The cell record (``cell.json``) and the run manifest (``run.json``), typed and versioned.

The analysis and the runner write these models; the report, compare, rerun, tidy,
publish and bisect read them back through :func:`load_cell` / :func:`load_run`, never
through string paths into a dict. ``cell.json`` is ``CellRecord.model_dump_json`` (keys
sorted, two-space indent: :func:`dump`), ``run.json`` likewise.

A run folder may come from someone else, so reading is validation: unknown keys, a
string where a number goes, a bool where a count goes, NaN or infinity, an integer
beyond 64 bits or a float beyond 1e15 are refused with a :class:`RecordError` (exit 2)
naming the file, the key and what was expected. Reading is strict (no "5" for 5).

Versions: ``schema_version`` is :data:`SCHEMA_VERSION`. A record from before it (no
``schema_version``: harness commits up to b9e2d8f) is *migrated*, in one function,
:func:`migrate`, which says exactly what it changes; a record with a schema_version
this harness does not know (a newer harness wrote it) is refused.

Fields that a cell did not measure are absent from the file, not null (``exclude_unset``
on writing): a cell's record says exactly what was measured. A null that is written is
a measured "none" (a census state that never drained, an empty distribution).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from harness import results
from harness.errors import HarnessError
from harness.plan.params import HaproxyConfig
from harness.plan.spec import CLIENT_SETTINGS, Claim, Description, Generator, MatrixName, Verdicts
from harness.quote import shown

SCHEMA_VERSION = 1

# Bounds of a number in a record. An int beyond 64 bits is no measurement (and a hostile
# one costs time in every str()); a float beyond 1e15 has lost integer precision (2**53 is
# about 9e15) and no quantity the harness measures (ms, s, bytes, counts) comes near it.
INT_MAX = 2**63 - 1
FLOAT_MAX = 1e15
# Longest text in a record: an error message with a command line, its output and a log
# path is a few kB; the runner cuts a longer one to this (harness.runner._write_record).
TEXT_MAX = 1_000_000

Count = Annotated[int, Field(ge=0, le=INT_MAX)]
Int = Annotated[int, Field(ge=-INT_MAX, le=INT_MAX)]
_Float = Annotated[float, Field(ge=-FLOAT_MAX, le=FLOAT_MAX)]
# A measured quantity: ints stay ints on a round trip (a timer's 4128 ms is not written
# back as 4128.0), floats stay floats.
Number = Int | _Float
# C0 and C1 control characters (Unicode category Cc): none of the short strings a
# record names is written with one, and ESC or CSI (0x9b) in a name would drive the
# terminal that `report` prints it to (ECMA-48), a newline would break a table row.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """``text`` unchanged; ValueError when it holds a control character."""
    if found := _CONTROL.search(text):
        raise ValueError(f"a control character ({hex(ord(found.group()))}) in the text")
    return text


# Free text the harness copies from elsewhere (an error with a command's output, a
# client's exception text): any character, bounded.
Text = Annotated[str, Field(max_length=TEXT_MAX)]
# What a record names (a cell, run, scenario, spec, label, parameter, baseline): the
# plan's validated input, or the harness's own; printable.
Name = Annotated[str, Field(max_length=200), AfterValidator(_printable)]
# A key of a measured mapping (an end type, a flag, a state): from the raw files, which
# a report escapes where it shows them (harness.report.tables, Jinja2 autoescape).
Key = Annotated[str, Field(max_length=200)]
Line = Annotated[str, Field(max_length=TEXT_MAX), AfterValidator(_printable)]
# A scenario parameter as the plan dumps it (harness.plan.scenarios): None where a
# parameter is unset (chunk_min when chunk_sizes is given), a list for chunk_sizes, and
# for ``config`` (harness.plan.params) HAProxy config lines by section name, which
# CellRecord holds to the plan's allow-list.
ConfigLines = dict[Name, Annotated[list[Line], Field(max_length=1000)]]
ParamValue = None | bool | Number | Line | list[bool | Number | Line] | ConfigLines


class RecordError(HarnessError):
    """A cell.json or run.json that is not what this harness writes (exit 2)."""


class _Model(BaseModel):
    # Strict: a record is read back exactly as written, so "5" for 5 or 1 for true is an
    # edit, not a harness's output. No NaN or infinity (they pass every bound).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# --- distributions ---------------------------------------------------------------------


class Distribution(_Model):
    """Nearest-rank percentiles of a sample (harness.analyse.distribution.summary and the
    log's timer percentiles): ``count`` values, statistics None when there are none.
    Units are the field's (``delay_ms``: ms; ``bytes``: bytes; HAProxy timers: ms)."""

    count: Count | None = None
    min: Number | None = None
    p50: Number | None = None
    p90: Number | None = None
    p99: Number | None = None
    max: Number | None = None


# --- what the load generator measured ---------------------------------------------------


class LoadMetrics(_Model):
    """Locust's counts (requests, failures, req/s) and the request latency in ms: the
    client's HDR histogram (``latency_source`` says which), else Locust's rounded one."""

    requests: Count
    failures: Count
    rps: Number
    mean_ms: Number | None = None
    max_ms: Number | None = None
    p50_ms: Number | None = None
    p90_ms: Number | None = None
    p99_ms: Number | None = None
    latency_count: Count | None = None
    latency_source: Text | None = None
    # where the counts came from when not the one locust.json: Locust's last periodic
    # summary (it did not finish), or the distributed workers' own stats
    source: Text | None = None
    # wrk (harness.analyse.wrk.aggregated): its threads and socket errors by kind;
    # h2load (harness.analyse.h2load.aggregated): its threads and failures by kind
    generator: Literal["wrk", "h2load", "requests", "node", "go"] | None = None
    threads: Count | None = None
    errors: dict[Key, Count] | None = None
    # the native clients (harness.analyse.native): new connections they opened, and the
    # distinct local (source) ports those used
    connections: Count | None = None
    ports: Count | None = None


class ClientFailures(_Model):
    """Failures the client saw, joined to HAProxy's log by unique id."""

    count: Count
    with_id: Count
    matched_in_log: Count
    flags: dict[Key, Count] = {}


class ClientVsHaproxy(_Model):
    """The client's request count against HAProxy's for the same load
    (harness.analyse.cell_metrics.client_vs_haproxy): ``client`` the requests the load
    generator counted; ``haproxy`` HAProxy's: ``received`` (the frontend's req_tot less
    ereq, after the load) when its counters were read, else ``logged`` + ``dropped``
    (log lines, and those it could not write); ``in_flight_bound`` the most requests
    the client can have had in flight when the load stopped (HAProxy has those, the
    client does not count them). ``agree``: 0 <= haproxy - client <= in_flight_bound."""

    client: Count
    haproxy: Count
    received: Count | None = None
    logged: Count
    dropped: Count
    in_flight_bound: Count
    agree: bool


# --- the probe -------------------------------------------------------------------------


class SweepPoint(_Model):
    """One connection's result at one value of a swept parameter (e.g. chunk_size=20):
    stalled (harness.analyse.probe_samples.stalled), bytes received, close delay (ms),
    how it ended and HAProxy's termination state for it."""

    name: Key
    value: bool | Number | Key
    stalled: bool
    bytes: Count | None = None
    delay_ms: Number | None = None
    end: Key
    flag: Key


class FateRow(_Model):
    """harness.analyse.probe_samples.fates: client connections of one (status, termination
    state), closed by the proxy or kept open after their last response."""

    status: Int | None
    state: Key
    connections: Count
    closed: Count
    reset: Count
    kept: Count
    delay_p50_ms: Number | None


class ProbeMetrics(_Model):
    """harness.analyse.probe_samples.summarise: close delays (ms), end types, stalls."""

    connections: Count
    delay_ms: Distribution
    ends: dict[Key, Count]
    complete: Count
    incomplete: Count
    stalled: Count
    bytes: Distribution
    flags: dict[Key, Count]
    # one point per swept value (the last connection with it), in sweep order
    sweep: list[SweepPoint] = []
    # per (status, termination state): closed by the proxy or kept (joined by port)
    fates: list[FateRow] = []


# --- the wire --------------------------------------------------------------------------


class WireMetrics(_Model):
    """harness.analyse.wire.summarise: closes seen in the pcap (ms)."""

    connections: Count
    end: dict[Key, Count]
    first_closer: dict[Key, Count]
    close_sequence: dict[Key, dict[Key, Count]] = {}
    delay_ms: Distribution


class ProbeVsWire(_Model):
    """harness.analyse.wire.agreement: probe against wire, joined by client port."""

    joined: Count
    probe_only: Count
    wire_only: Count
    compared: Count
    abs_diff_ms: Distribution
    tolerance_ms: Number
    within_tolerance: Count
    end_mismatch: Count


# --- the census ------------------------------------------------------------------------


class StateSeries(_Model):
    """One TCP state and direction in one namespace (harness.analyse.census.analyse):
    counts; times in s relative to the load's start; timeline ``[[t, count], ...]``."""

    baseline: Count
    peak: Count
    peak_at_s: Number | None
    final: Count
    drain_s: Number | None
    timeline: list[Annotated[list[Number], Field(min_length=2, max_length=2)]]


class StateTotal(_Model):
    """One TCP state, both directions summed."""

    peak: Count
    peak_at_s: Number | None
    final: Count


class CensusSide(_Model):
    """The census of one namespace (client, haproxy, backend): ``states`` keyed
    "STATE/in" or "STATE/out", ``totals`` keyed by state."""

    samples: Count
    rate_hz: Number | None
    max_gap_s: Number | None
    captured_s: Annotated[list[Number], Field(min_length=2, max_length=2)] | None
    states: dict[Key, StateSeries]
    totals: dict[Key, StateTotal]


class PoolWatch(_Model):
    """HAProxy's idle server-side connections after the load
    (harness.analyse.census.pool_watch): counts, seconds after the load's end."""

    at_load_end: Count | None
    left: Count | None
    watched_s: Number | None
    last_change_s: Number | None
    closed_by_backend: Count | None
    closed_by_proxy: Count | None
    closed_without_time_wait: Count | None = None
    close_wait_peak: Count | None
    fin_wait_2_peak: Count | None


# --- HAProxy ---------------------------------------------------------------------------


class HaproxyLog(_Model):
    """harness.analyse.haproxy_log.summarise: counts and timer percentiles (ms)."""

    total: Count
    termination_states: dict[Key, Count]
    status_codes: dict[Key, Count]
    status_classes: dict[Key, Count]
    retries_total: Count
    redispatches: Count
    timers: dict[Key, Distribution]
    # server name -> status class -> requests (absent from records made before it)
    servers: dict[Key, dict[Key, Count]] = {}
    # the largest %ac %fc %bc %sc %sq %bq of any line (absent from older records)
    peaks: dict[Key, Count] = {}


class HaproxyCounters(_Model):
    """``show info`` / ``show stat`` after the load (harness.analyse.cell_metrics)."""

    info: dict[Key, Int]
    servers: dict[Key, dict[Key, Int]]
    frontend_responses: dict[Key, Int]
    # the frontend's sessions: current, most at once, its limit, total (show stat)
    frontend: dict[Key, Int] = {}


class BackendTotals(_Model):
    """The backend's own counts over the load (its /_stats query not among them):
    requests by the Connection header it received and reuse ("close new", "none
    reused": backends/server.py ``by_header``), and by listening port (one per server)."""

    connections: Int
    requests: Int
    connections_per_s: Number
    requests_by_header: dict[Key, Count] = {}
    requests_by_port: dict[Key, Count] = {}
    # requests with a body by framing ("content-length", "chunked"), and its bytes read
    requests_by_body: dict[Key, Count] = {}
    request_body_bytes: Count = 0


class Resources(_Model):
    """One container over the load window: CPU seconds, average cores, peak memory."""

    cpu_seconds: Number
    cores: Number
    memory_peak_mb: Number


class ClientLimit(_Model):
    """The numbers behind client_bound / host_saturated (cell_metrics.client_limit)."""

    client_cores: Number
    client_ceiling_cores: Number
    bound_fraction: Number
    host_saturated_below_idle_cores: Number
    used_of_ceiling: Number | None = None
    could_use_cores: Number | None = None
    used_of_could_use: Number | None = None
    host_online_cpus: Number | None = None
    host_busy_cores: Number | None = None
    host_idle_cores: Number | None = None
    host_busy_fraction: Number | None = None
    host_steal_cores: Number | None = None
    host_busy_outside_stack_cores: Number | None = None


class Metrics(_Model):
    """Everything measured in one cell (harness.analyse.cell_metrics.compute); a field
    is set only when its raw file was there."""

    load: LoadMetrics | None = None
    client_errors: dict[Text, Count] | None = None
    client_status_codes: dict[Key, Count] = {}
    haproxy: HaproxyLog | None = None
    flags_explained: dict[Key, Text] | None = None
    haproxy_unparsed_lines: Count | None = None
    client_failures: ClientFailures | None = None
    # set for a Locust load through HAProxy (cell_metrics.in_flight_bound)
    client_vs_haproxy: ClientVsHaproxy | None = None
    probe: ProbeMetrics | None = None
    wire: WireMetrics | None = None
    probe_vs_wire: ProbeVsWire | None = None
    # calibration cells: [probe ms, wire ms] per joined connection
    calibration_pairs: (
        list[Annotated[list[Number | None], Field(min_length=2, max_length=2)]] | None
    ) = None
    fault_at_s: Number | None = None
    census: dict[Key, CensusSide] | None = None
    pool_watch: PoolWatch | None = None
    backend: BackendTotals | None = None
    haproxy_counters: HaproxyCounters | None = None
    resources: dict[Key, Resources] | None = None
    client_bound: bool | None = None
    host_saturated: bool | None = None
    client_limit: ClientLimit | None = None


# --- the cell record -------------------------------------------------------------------


class VersionRecord(_Model):
    """The HAProxy a cell ran: its spec, label, origin and the image's reported version."""

    spec: Name
    label: Line
    origin: Line
    custom: bool
    reported: Name
    image: Line
    image_id: Line


class LoadRecord(_Model):
    """The load settings of the cell (harness.plan.spec.Load) and its mode as run:
    ``probe``, ``closed-loop`` or ``open-loop``."""

    mode: Name
    users: Int | None = None
    spawn_rate: Number | None = None
    rate: Number | None = None
    duration_s: Number | None = None
    generator: Generator = "locust"  # absent in records before wrk
    threads: Int | None = None
    workers: Int | None = None
    streams: Int | None = None  # h2load's concurrent streams per connection
    # the request cap (h2load, the native clients) and the native clients' own settings
    # (harness.plan.spec.Load), None for the others
    max_requests: Int | None = None
    session: bool | None = None
    concurrency: Literal["threads", "eventlet"] | None = None
    agent: Literal["none", "keepalive"] | None = None
    max_sockets: Int | None = None
    max_idle_conns: Int | None = None
    max_idle_conns_per_host: Int | None = None
    disable_keepalives: bool | None = None
    pause_ms: Int | None = None

    @property
    def client_settings(self) -> dict[str, Any]:
        """The native client's settings that were given ({} for locust, wrk and h2load)."""
        names = ("max_requests", *CLIENT_SETTINGS)
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


Status = Literal["ok", "failed", "interrupted"]


class CellRecord(_Model):
    """One cell: what ran (version, scenario, parameters, load, images, rendered files'
    sha256), how it went (status, error, phases in s, timestamps in ISO 8601 UTC) and
    what it measured (``metrics``, absent for a cell that measured nothing)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    cell: Name
    index: Int
    run: Name
    version: VersionRecord
    scenario: Name
    params: dict[Name, ParamValue] = {}
    project: Name | None = None
    load_args: list[Text] = []
    rendered: dict[Name, Name] | None = None
    repetition: Int
    target: Name = "haproxy"
    load: LoadRecord
    images: dict[Name, Text] = {}
    started: Name
    phases: dict[Name, Number] = {}
    status: Status
    error: Text | None = None
    finished: Name | None = None
    metrics: Metrics | None = None
    # A stack that spans engines: role -> {"context", "address"} as the matrix placed it,
    # and per engine (context) its host's clock against the harness's: offset_s (ahead
    # by), bound_s (±, half the round trip), rtt_s (harness.stack.hosts.clock_offset).
    hosts: dict[Name, dict[Name, Name]] | None = None
    clocks: dict[Name, dict[Name, Number]] | None = None

    @field_validator("params")
    @classmethod
    def _config_is_allow_listed(cls, params: dict[str, Any]) -> dict[str, Any]:
        # The report shows them as the cell's haproxy.cfg lines: only what the plan takes.
        if "config" in params:
            HaproxyConfig.model_validate(params["config"])
        return params

    @property
    def ok(self) -> bool:
        """The cell ran to its end and was analysed."""
        return self.status == "ok"

    @property
    def m(self) -> Metrics:
        """The metrics, or an empty :class:`Metrics` for a cell that measured nothing."""
        return self.metrics or Metrics()


# --- the run manifest ------------------------------------------------------------------


class ImageRecord(_Model):
    """An image a run used: its tag, and for HAProxy its id and reported version."""

    tag: Line
    id: Line | None = None
    reported: Name | None = None


class Stopped(_Model):
    """Where a run stopped early: the cell, and the signal or the error."""

    cell: Name
    by: Text | None = None
    error: Text | None = None


class RunManifest(_Model):
    """run.json: what was asked (the matrix as validated, its file and sha256), where it
    ran (images, environment), and how it ended (finished, interrupted or failed)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    run: Name
    # The matrix as harness.plan.spec.Matrix dumped it; a resume validates it again.
    matrix: dict[Name, JsonValue]
    # A path as the file system has it: any character but NUL may be in a file name
    # (a newline too); the report shows control characters escaped.
    matrix_file: Text | None = None
    matrix_sha256: Name | None = None
    baseline: Name
    cells: Count
    images: dict[Name, ImageRecord] = {}
    environment: dict[Name, JsonValue] = {}
    started: Name
    finished: Name | None = None
    resumed: list[Name] = []
    interrupted: Stopped | None = None
    failed: Stopped | None = None

    @field_validator("environment")
    @classmethod
    def _environment_is_printable(cls, env: dict[str, JsonValue]) -> dict[str, JsonValue]:
        # Shown under Provenance (kernel, CPU model, sysctls): printable like a Name.
        def walk(value: JsonValue) -> None:
            if isinstance(value, str):
                _printable(value)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    _printable(key)
                    walk(item)

        walk(env)
        return env

    @field_validator("matrix")
    @classmethod
    def _verdicts_are_valid(cls, matrix: dict[str, JsonValue]) -> dict[str, JsonValue]:
        # They reach the statistics (thresholds()): bounded as in a matrix file.
        try:
            Verdicts.model_validate(matrix.get("verdicts") or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, ("verdicts", *first["loc"])))
            raise ValueError(f"{where}: {first['msg']}") from None
        # The name and description open the report (its title, its first paragraph):
        # held to a matrix file's rules, so a run.json edited by hand cannot write a
        # heading or a verdict of its own into report.md.
        for key, kind in (("name", MatrixName), ("description", Description)):
            if key in matrix:
                try:
                    TypeAdapter(kind).validate_python(matrix[key])
                except ValidationError as exc:
                    raise ValueError(f"{key}: {exc.errors()[0]['msg']}") from None
        # The claims reach the report's table: typed and bounded as in a matrix file.
        try:
            TypeAdapter(list[Claim]).validate_python(matrix.get("claims") or [])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, ("claims", *first["loc"])))
            raise ValueError(f"{where}: {first['msg']}") from None
        return matrix

    def thresholds(self) -> dict[str, float]:
        """The matrix's ``verdicts:`` thresholds (harness.analyse.compare.Thresholds),
        validated as a matrix file's (harness.plan.spec.Verdicts)."""
        return Verdicts.model_validate(self.matrix.get("verdicts") or {}).model_dump()

    def load(self) -> JsonValue:
        """The matrix's ``load:`` settings, as recorded."""
        return self.matrix.get("load")


# --- reading and writing ---------------------------------------------------------------


def dumped(model: BaseModel) -> dict[str, Any]:
    """A record or manifest as the JSON value :func:`dump` writes (the fields that were
    set), without the text: json.loads(dump(model)) without json's indenting encoder,
    which is Python, not C."""
    data = model.model_dump(mode="json", exclude_unset=True)
    if isinstance(model, CellRecord | RunManifest):  # a default is still written
        data["schema_version"] = SCHEMA_VERSION
    return data


def dump(model: BaseModel) -> str:
    """The file text of a record or manifest: JSON of the fields that were set, keys
    sorted, two-space indent, ending in a newline."""
    return json.dumps(dumped(model), indent=2, sort_keys=True) + "\n"


_INT_TEXT = re.compile(r"-?[0-9]{1,18}")


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A cell.json written before records had a schema_version, as version 1.

    What changed, and so what this does (nothing else is touched; a record that still
    does not validate is refused like any other):

    - ``metrics.probe.by_sweep`` (``{"chunk_size=20": {...}}``) becomes
      ``metrics.probe.sweep``, a list of points with ``name`` and ``value`` (the value
      parsed as an int where it is one, a point that is no mapping left for validation
      to refuse); migrating never raises: what is wrong is refused by validation;
    - ``metrics.probe.incomplete``, where missing, is ``connections - complete`` (the
      summariser counts every connection as one or the other);
    - ``metrics.probe_vs_wire.within_2ms`` becomes ``within_tolerance`` with
      ``tolerance_ms`` 2.0 (the tolerance was 2 ms then);
    - ``schema_version`` 1 is set.
    """
    data = dict(data)
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        metrics = data["metrics"] = dict(metrics)
        probe = metrics.get("probe")
        if isinstance(probe, dict) and isinstance(probe.get("by_sweep"), dict):
            probe = metrics["probe"] = dict(probe)
            points = []
            for key, point in probe.pop("by_sweep").items():
                name, _, value = str(key).partition("=")
                # ASCII digits only, and within int64: str.isdigit() takes "²", which
                # int() refuses; what is no integer stays text
                parsed: Any = int(value) if _INT_TEXT.fullmatch(value) else value
                # not a mapping: left as it is, for validation to refuse by its key
                points.append(
                    {"name": name, "value": parsed, **point} if isinstance(point, dict) else point
                )
            probe["sweep"] = points
        if isinstance(probe, dict) and "incomplete" not in probe:
            probe = metrics["probe"] = dict(probe)
            connections, complete = probe.get("connections"), probe.get("complete")
            if isinstance(connections, int) and isinstance(complete, int):
                probe["incomplete"] = connections - complete
        joined = metrics.get("probe_vs_wire")
        if isinstance(joined, dict) and "within_2ms" in joined:
            joined = metrics["probe_vs_wire"] = dict(joined)
            joined["within_tolerance"] = joined.pop("within_2ms")
            joined.setdefault("tolerance_ms", 2.0)
    data["schema_version"] = SCHEMA_VERSION
    return data


def _versioned(data: Any, path: Path, what: str) -> Any:
    if not isinstance(data, dict):
        raise RecordError(
            f"{path}: not the {what} the harness writes (it holds a {type(data).__name__}, "
            "not a mapping). It was edited or damaged since; restore it, or measure that "
            "cell or matrix again."
        )
    version = data.get("schema_version")
    if version is None:
        return migrate(data) if what == "cell.json" else {**data, "schema_version": 1}
    if type(version) is not int or version < 1:  # "1", 1.5, true: no harness writes these
        raise RecordError(
            f"{path}: schema_version {shown(version)} is not a schema version (an integer "
            f"from 1; this harness writes {SCHEMA_VERSION}). It was edited or damaged since; "
            "restore it, or measure that cell or matrix again."
        )
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{path}: schema_version {shown(version)}, but this harness reads "
            f"{SCHEMA_VERSION}. A newer harness wrote it: read it with that one, or measure "
            "the cell or matrix again with this one."
        )
    return data


def _plain(text: str) -> bool:
    return len(text) <= 60 and not _CONTROL.search(text)


def _refused(exc: ValidationError, path: Path, what: str) -> RecordError:
    first = exc.errors()[0]
    # A key is the file's own text: quoted safely where it is not a plain printable word.
    where = ".".join(
        str(part) if isinstance(part, int) or _plain(part) else shown(part, 40)
        for part in first["loc"]
    )
    where = (where if len(where) <= 300 else f"{where[:150]}...{where[-150:]}") or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return RecordError(
        f"{path}: not the {what} the harness writes: at {where}, {first['msg'].lower()} "
        f"(got {shown(first.get('input'))}){more}. It was edited or damaged since, or "
        "written by another program. `harness report` will not repair it: restore the "
        "file from a copy, or measure that cell or matrix again."
    )


def parse_cell(data: Any, path: Path) -> CellRecord:
    """A cell record from the JSON value read from ``path`` (migrated if it predates
    schema_version). Raises RecordError naming ``path`` and the first bad key."""
    try:
        return CellRecord.model_validate(_versioned(data, path, "cell.json"))
    except ValidationError as exc:
        raise _refused(exc, path, "cell.json") from None


def parse_run(data: Any, path: Path) -> RunManifest:
    """A run manifest from the JSON value read from ``path``. Raises RecordError."""
    try:
        return RunManifest.model_validate(_versioned(data, path, "run.json"))
    except ValidationError as exc:
        raise _refused(exc, path, "run.json") from None


# The folder `harness rerun` writes beside a cell (runner.rerun: ``<cell>-rerun-<stamp>``,
# results.stamp lowered); its record names the one-cell plan it ran, not its folder.
RERUN_FOLDER = re.compile(r".+-rerun-[0-9]{8}t[0-9]{6}z-[0-9a-f]{6}")


def load_cell(path: Path) -> CellRecord:
    """Read and validate one cell.json. Raises HarnessError (RecordError) naming it."""
    return parse_cell(results.read_json(path), path)


def load_run_cell(path: Path) -> CellRecord:
    """One cell.json of a run folder (``run_dir/<cell>/cell.json``), read and validated,
    whose ``cell`` is its folder's name (but in a rerun's folder, which no run reader
    opens: :func:`cell_paths`). Raises RecordError naming it.

    Every reader of a run joins ``run_dir / record.cell`` to find a cell's raw files:
    a record naming another folder (``../x``, an absolute path) would have the report
    read, and judge, files that are not this cell's, or hang on a FIFO outside the run.
    """
    cell = load_cell(path)
    folder = path.parent.name
    if cell.cell != folder and not RERUN_FOLDER.fullmatch(folder):
        raise RecordError(
            f"{path}: its 'cell' is {shown(cell.cell, 80)}, but it lies in the folder "
            f"{shown(folder, 80)}; the harness names each cell's folder by its id. It was "
            "moved, edited or damaged since: restore the folder's name or the file, or "
            "measure that cell again."
        )
    return cell


def cell_paths(run_dir: Path) -> list[Path]:
    """The cell.json of each of a run's cells, in cell order: ``run_dir/<cell>/cell.json``,
    not a rerun's folder beside a cell (a repeat of a cell, shown by ``rerun``; its
    record is not the run's)."""
    return [
        p for p in sorted(run_dir.glob("*/cell.json")) if not RERUN_FOLDER.fullmatch(p.parent.name)
    ]


def load_run(path: Path) -> RunManifest:
    """Read and validate one run.json. Raises HarnessError (RecordError) naming it."""
    return parse_run(results.read_json(path), path)


def cells(run_dir: Path) -> list[CellRecord]:
    """Every cell record of a run, in cell order. Raises RecordError on the first bad one."""
    return [load_run_cell(p) for p in cell_paths(run_dir)]


def write_cell(path: Path, record: CellRecord) -> None:
    """Write cell.json atomically (harness.results.write_text). Raises ResultsError."""
    results.write_text(path, dump(record))


def write_run(path: Path, manifest: RunManifest) -> None:
    """Write run.json atomically (harness.results.write_text). Raises ResultsError."""
    results.write_text(path, dump(manifest))
