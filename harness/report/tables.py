"""Publishable outputs of a run, built from the run folder alone (no Docker needed).

    report.md     tables per scenario, verdicts against the baseline version, flags
                  explained, provenance: GitHub-flavoured, pasteable into an issue
    report.html   the same, self-contained, with plots (harness/report/plots.py)
                  (both rendered from harness.report.model by harness.report.render)
    results.csv   one row per cell (harness.report.tidy), connections.csv one per connection
    results.json  one object per cell: its whole cell.json plus those paths
    ../index.md   every run in the results folder with its headline verdicts (render)

``harness.report.rebuild.rebuild`` first recomputes every cell's metrics from its raw
files, so a report always reflects the files next to it (and the current analysis code),
then writes them all; this module holds the columns, tables and verdicts they show.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from harness import results
from harness.analyse import (
    calibration,
    cell_metrics,
    compare,
    haproxy_log,
    latency,
    probe_samples,
)
from harness.analyse.compare import VERDICT_ORDER, Comparison, Thresholds
from harness.analyse.record import (
    CellRecord,
    CensusSide,
    ClientLimit,
    Distribution,
    LoadRecord,
    StateSeries,
)
from harness.plan import scenarios
from harness.plan.spec import NATIVE_GENERATORS, params_text

Record = CellRecord
Column = tuple[str, Callable[[Record], Any]]
RAW_FILES = (
    "haproxy.cfg", "compose.yaml", "haproxy-vv.txt", "locust.json", "latency.hdr", "probe.jsonl",
    "haproxy.log", "haproxy-console.log", "haproxy-info.txt", "haproxy-stat.csv",
    "census-client.txt", "census-haproxy.txt", "census-backend.txt", "haproxy.pcap",
    "calibration.pcap",
    "cpu-samples.json", "timing.json", "backend-stats.json", "commands.log",
)  # fmt: skip


# --- markdown that data cannot break ----------------------------------------------------
# Cell ids, labels, params, errors and log-derived strings come from files anyone can edit:
# a "|" would end a table cell, a newline a row, a backtick a code span.


def _one_line(value: Any) -> str:
    return " ".join(str(value).splitlines())


# What opens raw HTML in CommonMark (0.31, 6.6: an open or closing tag, a comment, a
# processing instruction, a declaration) or an autolink: "<" then a letter, "/", "!" or
# "?". Data from a run folder must not write a heading, a list of verdicts or an image
# of its own into report.md; "p<0.001" and "< 2 ms" open nothing and stay as they are.
_HTML_OPEN = re.compile(r"(\\*)<(?=[A-Za-z/!?])")


def md_text(text: str) -> str:
    """Text for Markdown outside a code span: each ``<`` that would open raw HTML or an
    autolink backslash-escaped (CommonMark 2.4: shown as ``<``, opening nothing), the
    data's own backslashes before it doubled (else ``\\<b>`` would show a backslash and
    then open ``<b>``)."""
    return _HTML_OPEN.sub(lambda m: m.group(1) * 2 + "\\<", text)


def _md_cell(value: Any) -> Any:
    """A GitHub table cell: pipes escaped, newlines folded, raw HTML kept from opening
    (:func:`md_text`; numbers left to tabulate)."""
    return md_text(_one_line(value).replace("|", "\\|")) if isinstance(value, str) else value


def _md_table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(
        [[_md_cell(v) for v in row] for row in rows],
        [_md_cell(h) for h in headers],
        tablefmt="github",
    )


def _code(value: Any) -> str:
    """Inline code that the value's own backticks cannot close (CommonMark: a longer fence)."""
    text = _one_line(value)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fenced(lines: list[str]) -> list[str]:
    """A code block whose fence is longer than any backtick run inside it."""
    fence = "`" * max([3, *(len(run) + 1 for line in lines for run in re.findall(r"`+", line))])
    return [fence, *lines, fence]


# --- reading numbers out of a cell record ------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else compare.format_duration(value)


def _latency(value: float | None) -> str:
    """A load latency in ms to the µs ("0.412 ms"), or s past 1 s: HDR's resolution shown."""
    if value is None:
        return "-"
    return f"{value:.3f} ms" if value < 1000 else f"{value / 1000:.3f} s"


def _counts(counts: dict[str, int] | None) -> str:
    return " ".join(f"{k}×{v}" for k, v in (counts or {}).items() if v) or "-"


def _census(record: Record, side: str) -> CensusSide | None:
    return (record.m.census or {}).get(side)


def census_peak(record: Record, side: str, state: str, direction: str | None = None) -> int | None:
    """The peak count of one TCP state (``ss``'s name, e.g. "CLOSE-WAIT") in one
    namespace's census, in one direction ("in": accepted, "out": opened) or both; 0 when
    it never appeared, None when the cell has no census of that side."""
    census = _census(record, side)
    if not census:
        return None
    if direction is None:
        total = census.totals.get(state)
        return total.peak if total else 0
    series = census.states.get(f"{state}/{direction}")
    return series.peak if series else 0


def census_lasted_s(record: Record, side: str, state: str, direction: str) -> float | None:
    """How long, in s, the state stayed above its pre-load level (first rise to last
    census sample above it, 10 Hz); 0 when it never rose, None without that census."""
    census = _census(record, side)
    if not census:
        return None
    entry: StateSeries | None = census.states.get(f"{state}/{direction}")
    if not entry or entry.peak <= entry.baseline:
        return 0
    above = [t for t, count in entry.timeline if count > entry.baseline]
    return round(above[-1] - above[0], 3)


def _census_peak(record: Record, side: str, state: str, direction: str | None = None) -> Any:
    peak = census_peak(record, side, state, direction)
    return "-" if peak is None else peak


def _census_lasted(record: Record, side: str, state: str, direction: str) -> str:
    """census_lasted_s as a table shows it: "-" when the state never rose."""
    census = _census(record, side)
    entry: StateSeries | None = census.states.get(f"{state}/{direction}") if census else None
    if not entry or entry.peak <= entry.baseline:
        return "-"
    still = entry.final > entry.baseline
    lasted = census_lasted_s(record, side, state, direction) or 0.0
    return f"{lasted:.1f} s" + (" (still there at the end)" if still else "")


def _rps(record: Record) -> str:
    load = record.m.load
    return "-" if load is None else f"{load.rps:.0f}"


def _failures(record: Record) -> str:
    load = record.m.load
    return "None/None" if load is None else f"{load.failures}/{load.requests}"


def _bound(record: Record) -> str:
    """The limit a load cell hit, as cell_metrics.client_limit measured it (LIMIT_NOTE)."""
    m = record.m
    marks = [
        mark
        for flag, mark in ((m.client_bound, "client-bound"), (m.host_saturated, "host saturated"))
        if flag
    ]
    if not marks and m.client_limit and m.client_bound is None:
        return "limit unknown (no host CPU)"
    return ", ".join(marks)


LIMIT_NOTE = (
    "`client-bound` marks cells whose load generator used ≥ "
    f"{cell_metrics.CLIENT_BOUND_FRACTION * 100:g} % of the CPU it could have used: its ceiling "
    f"({cell_metrics.CLIENT_CEILING_CORES:g} core, one Locust process), or less when the host "
    "had no idle CPU to give it (its own cores + the host's idle cores from /proc/stat, "
    "half-second by half-second over the load window). `host saturated` marks cells where "
    "the host had less than "
    f"{cell_metrics.HOST_SATURATED_IDLE_CORES:g} core idle: every container competed for CPU, "
    "so no component's limit can be read from the throughput. The numbers behind both are "
    "in each cell's `metrics.client_limit`."
)


WRK_LIMIT_NOTE = LIMIT_NOTE.replace(
    f"({cell_metrics.CLIENT_CEILING_CORES:g} core, one Locust process)",
    "(one core per wrk thread)",
)


def _marked(record: Record, value: Any) -> Any:
    """A count taken from HAProxy's log, marked when HAProxy dropped some of its lines
    ("app 2xx×1879 (+10 log lines dropped)"): the log is then short by up to that many.
    HAProxy drops a line when two of its threads collide on the log's lock (src/fd.c
    fd_write_frag_line gives up after 200 tries) and counts it in ``show info``
    DroppedLogs; which request, server or status the line had is lost with it. ``value``
    unchanged when none was dropped, and None (no log) stays None."""
    counters = record.m.haproxy_counters
    dropped = counters.info.get("DroppedLogs", 0) if counters else 0
    return f"{value} (+{dropped} log lines dropped)" if dropped and value is not None else value


def _from_log(record: Record, counts: dict[str, int] | None) -> str:
    """Counts taken from HAProxy's log ("----×480 sD--×20"), marked as :func:`_marked`."""
    return str(_marked(record, _counts(counts)))


def _flags(record: Record) -> str:
    log = record.m.haproxy
    return _from_log(record, log.termination_states if log else None)


def _status(record: Record) -> str:
    log = record.m.haproxy
    return _from_log(record, log.status_classes if log else None)


def _per_server(record: Record) -> str:
    """Requests per server as HAProxy logged them (the server that answered, after any
    redispatch), each with its status classes: "app 2xx×480; app2 5xx×20"."""
    log = record.m.haproxy
    if not log or not log.servers:
        return "-"
    text = "; ".join(f"{name} {_counts(classes)}" for name, classes in log.servers.items())
    return str(_marked(record, text))


def _queue_peaks(record: Record) -> str:
    """The most requests any log line saw queued, for the server and the backend."""
    peaks = record.m.haproxy.peaks if record.m.haproxy else {}
    if not peaks:
        return "-"
    return f"{peaks.get('srv_queue', 0)}/{peaks.get('backend_queue', 0)}"


def _server_requests(record: Record) -> str:
    """What the backend received: its requests by Connection header and whether they
    came on a reused connection ("close new×500 none reused×9500")."""
    backend = record.m.backend
    if not backend or not backend.requests_by_header:
        return "-"
    ranked = sorted(backend.requests_by_header.items(), key=lambda kv: (-kv[1], kv[0]))
    return _counts(dict(ranked))


def _bad_gateway(record: Record) -> str:
    """HAProxy's 502s (its log) and their share of the requests it logged: "37 (0.41 %)"."""
    log = record.m.haproxy
    if not log or not log.total:
        return "-"
    n = log.status_codes.get("502", 0)
    return str(_marked(record, f"{n} ({100 * n / log.total:.2g} %)" if n else "0"))


def _server_reused(record: Record) -> str:
    """Of the requests the backend got (its /_stats), those on a connection that had
    carried one before, and the connections they came on: "9800/10000 on 200 conns"."""
    backend = record.m.backend
    if not backend or not backend.requests:
        return "-"
    reused = sum(n for key, n in backend.requests_by_header.items() if key.endswith(" reused"))
    return f"{reused}/{backend.requests} on {backend.connections} conns"


def _pool(name: str) -> Callable[[Record], str]:
    """One number of the idle pool's watch after the load (record.PoolWatch)."""

    def column(record: Record) -> str:
        watch = record.m.pool_watch
        if watch is None or watch.at_load_end is None:
            return "-"
        if name == "closed-by":
            # the closer keeps the TIME-WAIT; an RST leaves none (census.pool_watch)
            return (
                f"backend {watch.closed_by_backend}, haproxy {watch.closed_by_proxy}, "
                f"RST {watch.closed_without_time_wait} (CLOSE-WAIT ≤{watch.close_wait_peak}, "
                f"FIN-WAIT-2 ≤{watch.fin_wait_2_peak})"
            )
        if name == "within":
            return "-" if watch.last_change_s is None else f"{watch.last_change_s:g} s"
        if name == "left":
            return f"{watch.left} after {watch.watched_s:g} s"
        return str(watch.at_load_end)

    return column


def _probe_delay(key: str) -> Callable[[Record], str]:
    def column(record: Record) -> str:
        probe = record.m.probe
        return _ms(getattr(probe.delay_ms, key) if probe else None)

    return column


def _stalls(record: Record) -> str:
    points = record.m.probe.sweep if record.m.probe else []
    hit = [str(p.value) for p in points if p.stalled]
    return ", ".join(hit) or "none"


def _probe_vs_wire(record: Record) -> str:
    """The agreement column, "k/n (max x)": of the n connections both the probe and the
    capture timed, k agree within calibration.WIRE_TOLERANCE_MS; x is the largest
    difference. A delay off the wire by more than that is instrument noise, not the proxy."""
    joined = record.m.probe_vs_wire
    if not joined or not joined.compared:
        return "-"  # nothing both timed (e.g. the proxy closed first: no wire delay)
    worst = _ms(joined.abs_diff_ms.max)
    return f"{joined.within_tolerance}/{joined.compared} (max {worst})"


def _probe_field(name: str) -> Callable[[Record], Any]:
    """A count of the probe's summary (None when the cell ran no probe)."""
    return lambda r: getattr(r.m.probe, name) if r.m.probe else None


def _log_field(name: str) -> Callable[[Record], Any]:
    """A count of HAProxy's log summary, marked as :func:`_marked` (None when the cell
    has no log)."""
    return lambda r: _marked(r, getattr(r.m.haproxy, name)) if r.m.haproxy else None


def _close_sequence(side: str) -> Callable[[Record], str]:
    return lambda r: _counts(r.m.wire.close_sequence.get(side) if r.m.wire else None)


def _client_errors(record: Record) -> str:
    """Locust's error texts, shortened to their exception names."""
    seen: dict[str, int] = {}
    for text, n in (record.m.client_errors or {}).items():
        # failures the locustfile marked itself read CatchResponseError('status 503')
        inner = re.fullmatch(r"CatchResponseError\((['\"])(.*)\1\)", text)
        name = inner.group(2) if inner else text.split("(", 1)[0]
        seen[name] = seen.get(name, 0) + n
    return _counts(dict(sorted(seen.items(), key=lambda kv: -kv[1])[:3]))


# Every column a scenario's table may name (plan.scenarios.Shows.columns): header and how
# to read it from a cell record. Headers repeat on purpose ("lasted" twice reads as two).
AGREE_HEADER = f"probe≈wire ≤{calibration.WIRE_TOLERANCE_MS:g} ms"
CATALOGUE: dict[str, Column] = {
    "version": ("HAProxy", lambda r: r.version.label),
    "rps": ("req/s", _rps),
    "latency-p50": ("p50", lambda r: _latency(r.m.load.p50_ms if r.m.load else None)),
    "latency-p99": ("p99", lambda r: _latency(r.m.load.p99_ms if r.m.load else None)),
    "failures": ("failures", _failures),
    "status": ("status", _status),
    "flags": ("flags", _flags),
    "bound": ("", _bound),
    "connections": ("connections", _probe_field("connections")),
    "close-delay-p50": ("close delay p50", _probe_delay("p50")),
    "close-delay-p90": ("p90", _probe_delay("p90")),
    "close-delay-max": ("max", _probe_delay("max")),
    "wire-p50": ("wire p50", lambda r: _ms(r.m.wire.delay_ms.p50 if r.m.wire else None)),
    "ends": ("ends", lambda r: _counts(r.m.probe.ends if r.m.probe else None)),
    # which close delays are within the instrument's noise
    "agree": (AGREE_HEADER, _probe_vs_wire),
    "injected": ("injected", lambda r: f"{r.params['fin_delay_ms']} ms"),
    "max-probe-wire": (
        "max |probe-wire|",
        lambda r: _ms(r.m.probe_vs_wire.abs_diff_ms.max if r.m.probe_vs_wire else None),
    ),
    "probe-off-wire": (
        f"probe off wire > {calibration.WIRE_TOLERANCE_MS:g} ms", calibration.off_wire_count
    ),
    "target-late": ("target late", calibration.target_late),
    "calibration-verdict": ("verdict", calibration.verdict),
    "stalled": (
        "stalled",
        lambda r: f"{_probe_field('stalled')(r)}/{_probe_field('connections')(r)}",
    ),
    "stalled-chunk-sizes": ("stalled chunk sizes", _stalls),
    "bytes-min": ("bytes min", lambda r: r.m.probe.bytes.min if r.m.probe else None),
    "time-wait-client": ("TIME-WAIT client", lambda r: _census_peak(r, "client", "TIME-WAIT")),
    "time-wait-haproxy": ("haproxy", lambda r: _census_peak(r, "haproxy", "TIME-WAIT")),
    "time-wait-backend": ("backend", lambda r: _census_peak(r, "backend", "TIME-WAIT")),
    "backend-conn-rate": (
        "backend conn/s", lambda r: r.m.backend.connections_per_s if r.m.backend else None
    ),
    "time-wait-haproxy-out": (
        "TIME-WAIT haproxy→backend", lambda r: _census_peak(r, "haproxy", "TIME-WAIT", "out")
    ),
    # with http-server-close the backend is told to close, so its side keeps them
    "time-wait-backend-in": (
        "on the backend", lambda r: _census_peak(r, "backend", "TIME-WAIT", "in")
    ),
    "requests-logged": ("requests", _log_field("total")),
    # HAProxy's timers (manual 8.4 "Timing events"): Tw queue wait, Tc connect (-1, so
    # "-", when no connection was made), Ta the whole request: retries show in Ta
    "tw-p50": ("Tw p50", lambda r: _ms(_timer(r, "Tw").p50)),
    "tc-p50": ("Tc p50", lambda r: _ms(_timer(r, "Tc").p50)),
    "ta-p50": ("Ta p50", lambda r: _ms(_timer(r, "Ta").p50)),
    "tw-p99": ("Tw p99", lambda r: _ms(_timer(r, "Tw").p99)),
    # every client connection the kernel completed, accepted by HAProxy or still in its
    # listener's accept queue, against the most HAProxy itself held at once
    "client-conns": (
        "client conns (census)", lambda r: _census_peak(r, "haproxy", "ESTAB", "in")
    ),
    "fe-conn-max": (
        "accepted max (stats)",
        lambda r: r.m.haproxy_counters.frontend.get("smax", "-") if r.m.haproxy_counters else "-",
    ),
    # a request waits in its server's queue (%sq) once assigned to it, else in the
    # backend's (%bq): round robin without persistence queues in the backend's
    "queue-max": ("queued max (log %sq/%bq)", _queue_peaks),
    "retries": ("retries", _log_field("retries_total")),
    # '+' before %rc: the request went to another server than its first (redispatch)
    "redispatches": ("redispatched", _log_field("redispatches")),
    "per-server": ("per server (log)", _per_server),
    # the Connection header HAProxy sent and whether the server connection was reused
    "server-requests": ("backend got (Connection, conn)", _server_requests),
    "econ": ("econ", lambda r: _sum_servers(r, "econ")),
    "502s": ("502 (log)", _bad_gateway),
    # requests on reused server connections, as the backend counted them
    "server-reused": ("backend: reused/requests", _server_reused),
    # HAProxy's idle server connections after the load's last response (census: ESTAB
    # haproxy→backend),
    # who closed them (the closer's TIME-WAIT), when the count last changed, and what is left
    "pool-at-load-end": ("idle haproxy→backend at the last response", _pool("at-end")),
    "pool-closed-by": ("closed after the load by", _pool("closed-by")),
    "pool-closed-within": ("last closed at", _pool("within")),
    "pool-left": ("left", _pool("left")),
    "closed-after": ("closed after", _probe_delay("p50")),
    "fin-wait-2-in": (
        "FIN-WAIT-2 (haproxy←client)", lambda r: _census_peak(r, "haproxy", "FIN-WAIT-2", "in")
    ),
    "fin-wait-2-in-lasted": (
        "lasted", lambda r: _census_lasted(r, "haproxy", "FIN-WAIT-2", "in")
    ),
    # HAProxy holds the client's FIN, not yet its own (a leak if it stays: issue 13)
    "close-wait-in": (
        "CLOSE-WAIT (haproxy←client)", lambda r: _census_peak(r, "haproxy", "CLOSE-WAIT", "in")
    ),
    "close-wait-in-lasted": (
        "lasted (in)", lambda r: _census_lasted(r, "haproxy", "CLOSE-WAIT", "in")
    ),
    # the backend holds HAProxy's FIN (relayed in mode tcp), not yet its own
    "close-wait-backend": (
        "CLOSE-WAIT (backend)", lambda r: _census_peak(r, "backend", "CLOSE-WAIT", "in")
    ),
    "close-wait-out": (
        "CLOSE-WAIT (haproxy→backend)", lambda r: _census_peak(r, "haproxy", "CLOSE-WAIT", "out")
    ),
    "close-wait-out-lasted": (
        "lasted ", lambda r: _census_lasted(r, "haproxy", "CLOSE-WAIT", "out")
    ),
    # What option nolinger is for: HAProxy's FIN then RST (fin-rst), on the wire.
    "haproxy-closes-wire": ("haproxy closes (wire)", _close_sequence("proxy")),
    "client-closes-wire": ("client closes (wire)", _close_sequence("client")),
    "fault-kind": ("fault", lambda r: r.params["fault"]),
    "fault-at": ("at", lambda r: f"{r.m.fault_at_s} s" if r.m.fault_at_s else "-"),
    "client-saw": ("client saw", lambda r: _counts(r.m.client_status_codes)),
    "client-errors": ("client errors", _client_errors),
    "proxy-logged": ("proxy logged", _status),
}  # fmt: skip


# The native clients' own counts (harness.analyse.native), added to any table of theirs.
NATIVE_COLUMNS: list[Column] = [
    ("connections opened", lambda r: r.m.load.connections if r.m.load else None),
    ("ports used", lambda r: r.m.load.ports if r.m.load else None),
    ("client errors", _client_errors),
]


def shows(name: str) -> scenarios.Shows:
    """What the report shows of scenario ``name`` (a run recorded with a scenario since
    removed: its load columns, ``scenarios.UNKNOWN_SHOWS``)."""
    scenario = scenarios.SCENARIOS.get(name)
    return scenario.shows if scenario else scenarios.UNKNOWN_SHOWS


def columns(name: str) -> list[Column]:
    """The columns of scenario ``name``'s table, from the catalogue."""
    return [CATALOGUE[key] for key in shows(name).columns]


def _timer(record: Record, name: str) -> Distribution:
    """One of HAProxy's log timers (ms); an empty distribution when there is no log."""
    log = record.m.haproxy
    return (log.timers.get(name) if log else None) or Distribution()


def _sum_servers(record: Record, counter: str) -> Any:
    servers = record.m.haproxy_counters.servers if record.m.haproxy_counters else {}
    return sum(s.get(counter, 0) for s in servers.values()) if servers else "-"


def client_text(load: LoadRecord) -> str:
    """A native client and its settings as words ("requests, 4 users, session=False");
    "" for locust and wrk, whose load is the run's and said once per scenario."""
    if load.generator not in NATIVE_GENERATORS:
        return ""
    return f"{load.generator}, {load.users} users" + "".join(
        f", {k}={v}" for k, v in load.client_settings.items()
    )


def _params(record: Record) -> str:
    """The cell's parameter set as a table's title: its parameters, and the native
    client's settings when one drove it (two cells that differ only there are apart)."""
    client = client_text(record.load)
    return params_text(record.params) + (f" · {client}" if client else "")


# --- comparisons ---------------------------------------------------------------------------


def _samples(run_dir: Path, record: Record) -> tuple[list[float], str | None]:
    """Per-connection close delays (probe) or per-request latencies in ms, and their source.

    Latencies come from the client's µs HDR histogram (``latency.SOURCE_HDR``), or, in a
    folder recorded before it existed, from Locust's whole-ms buckets
    (``latency.SOURCE_LOCUST``); None for close delays or when nothing was measured.
    """
    folder = run_dir / record.cell
    probe = folder / "probe.jsonl"
    if probe.exists():
        return [s["delay_ms"] for s in map(json.loads, probe.read_text().splitlines())
                if s.get("delay_ms") is not None], None  # fmt: skip
    # neither file: nothing measured, and the comparison says "too few samples"
    return latency.samples(folder)


def _pooled(run_dir: Path, records: list[Record]) -> tuple[list[float], str | None]:
    """The samples of these cells together, and a note when any came from coarse buckets."""
    values: list[float] = []
    coarse = 0
    for record in records:
        found, source = _samples(run_dir, record)
        values += found
        coarse += source == latency.SOURCE_LOCUST
    note = None
    if coarse:
        # an old folder: Locust rounded every latency to whole ms before it was saved
        note = f"latency from {latency.SOURCE_LOCUST} in {coarse} of {len(records)} cells"
    return values, note


def _joined(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


# What each scenario is judged on: ("samples", metric, unit) or ("counts", what, hits, total).
# What each scenario is judged on (plan.scenarios.Shows.verdict): (kind, what).
METRIC: dict[str, tuple[str, str]] = {
    name: (s.shows.verdict.kind, s.shows.verdict.what)
    for name, s in scenarios.SCENARIOS.items()
    if s.shows.verdict is not None
}


def _hits(record: Record, what: str) -> tuple[int, int]:
    if what == "connections stalled":
        probe = record.m.probe
        return (probe.stalled, probe.connections) if probe else (0, 0)
    log = record.m.haproxy
    return (log.status_classes.get("5xx", 0), log.total) if log else (0, 0)


def _notes(records: list[Record]) -> str | None:
    ends: dict[str, int] = defaultdict(int)
    for record in records:
        for end, n in (record.m.probe.ends if record.m.probe else {}).items():
            ends[end] += n
    return ("end: " + ", ".join(f"{k} ×{v}" for k, v in ends.items())) if ends else None


# --- versions, parameters and what is in the path --------------------------------------------


def unique_labels(records: list[Record]) -> list[Record]:
    """The records, each version's label made unique within the run.

    Two specs can share a label (two custom tarballs of one version both read
    "2.6.15 (custom)"): their cells would merge into one column and one side of a
    verdict. Colliding labels get their spec appended. Records are copied, not changed.
    """
    specs_by_label: dict[str, set[str]] = defaultdict(set)
    for r in records:
        specs_by_label[r.version.label].add(r.version.spec)
    out = []
    for r in records:
        version = r.version
        if len(specs_by_label[version.label]) > 1:
            label = f"{version.label} [{version.spec}]"
            r = r.model_copy(update={"version": version.model_copy(update={"label": label})})
        out.append(r)
    return out


def _param(record: Record, key: str) -> Any:
    """A cell's parameter; one its record leaves out (a parameter added later is recorded
    only when it is not at its default, so older cells keep their ids) is the scenario's
    default, None only where the scenario has no such parameter."""
    if key in record.params:
        return record.params[key]
    return _defaults(record.scenario).get(key)


@functools.cache
def _defaults(name: str) -> dict[str, Any]:
    scenario = scenarios.SCENARIOS.get(name)
    return scenario.defaults if scenario else {}


def varying(rows: list[Record]) -> list[str]:
    """Parameters whose value differs between these cells: the only ones worth naming."""
    keys = sorted({k for r in rows for k in r.params})
    return [k for k in keys if len({repr(_param(r, k)) for r in rows}) > 1]


def param_values(record: Record, keys: list[str]) -> dict[str, Any]:
    """The cell's ``keys`` parameters, a left-out one at its default (:func:`_param`)."""
    return {k: _param(record, k) for k in keys}


def _short_params(record: Record, keys: list[str]) -> str:
    client = client_text(record.load)
    return params_text(param_values(record, keys), keys) + (f" · {client}" if client else "")


def bypasses_proxy(record: Record) -> bool:
    """The cell's load went straight to the backend: HAProxy was not in the path."""
    return record.params.get("via") == "backend"


BYPASS_NOTE = (
    "HAProxy is not in the path of these cells (`via=backend`: the client talks straight "
    "to the backend). They are the baseline for the proxy overhead, not evidence about a "
    "release: no verdict compares versions on them."
)


def _probe(folder: Path) -> list[dict[str, Any]]:
    """probe.jsonl's samples; a line cut short by a killed client is skipped, the rest count."""
    path = folder / "probe.jsonl"
    if not path.exists():
        return []
    samples = []
    for line in path.read_text().splitlines():
        try:
            sample = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(sample, dict):
            samples.append(sample)
    return samples


def _probe_ends(run_dir: Path, records: list[Record]) -> list[tuple[str, float | None]]:
    """(end type, close delay) of every probe connection of these cells."""
    return [
        (s.get("end", "?"), s.get("delay_ms"))
        for r in records
        for s in _probe(run_dir / r.cell)
        if isinstance(s.get("delay_ms"), int | float | None)
    ]


def _end_counts(ends: list[tuple[str, float | None]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for end, _ in ends:
        counts[end] += 1
    return dict(counts)


def _timing_by_end(
    metric: str,
    base: list[tuple[str, float | None]],
    cand: list[tuple[str, float | None]],
    pair: tuple[str, str],
    th: Thresholds,
    reps: dict[
        tuple[int, int], tuple[list[tuple[str, float | None]], list[tuple[str, float | None]]]
    ],
    cells: tuple[int, int],
) -> list[Comparison]:
    """Close delays compared like with like: connections that ended the same way.

    A plain FIN and a close_notify + FIN are different events; pooling them would
    compare one version's FIN timings with another's TLS alert timings. ``reps``: the
    (baseline, candidate) connections of every pair of cells, keyed as compare.across_cells
    takes them (a regression or an improvement must hold in each); ``cells``: cells per side.
    """

    def delays(side: list[tuple[str, float | None]], end: str) -> list[float]:
        return [d for e, d in side if e == end and d is not None]

    def judged(end: str) -> Comparison:
        def test(
            b: list[tuple[str, float | None]],
            c: list[tuple[str, float | None]],
            floor: float | None = None,
        ) -> Comparison:
            return compare.compare_samples(
                f"{metric} (end {end})", delays(b, end), delays(c, end), labels=pair,
                thresholds=th, abs_floor=floor,
            )  # fmt: skip

        pooled = test(base, cand, compare.cell_floor(cells))
        pairs = {}
        if pooled.verdict in compare.CLAIMS and min(cells) > 1:
            pairs = {k: test(b, c) for k, (b, c) in reps.items()}
        return compare.across_cells(pooled, pairs, cells)

    ends = [e for e in dict.fromkeys(e for e, _ in base) if delays(base, e) and delays(cand, e)]
    found = [judged(end) for end in ends]
    if not found:
        b = ", ".join(sorted({e for e, d in base if d is not None})) or "none"
        c = ", ".join(sorted({e for e, d in cand if d is not None})) or "none"
        found.append(
            Comparison(
                metric=metric,
                baseline_label=pair[0],
                candidate_label=pair[1],
                test="none: no end type in common",
                p_value=None,
                effect=None,
                effect_name=compare.CLIFFS_DELTA,
                baseline_summary=compare.describe_samples([d for _, d in base if d is not None]),
                candidate_summary=compare.describe_samples([d for _, d in cand if d is not None]),
                delta="n/a",
                verdict="inconclusive",
                words=f"{pair[1]} vs {pair[0]}: {metric} not compared — inconclusive (no "
                f"end type in common with a close delay: {c} on {pair[1]}, {b} on {pair[0]}; "
                "delays are compared only between connections that ended alike, and the "
                "end types have their own verdict).",
            )
        )
    return found


def _cell_pairs(
    base: list[Record], cand: list[Record]
) -> dict[tuple[int, int], tuple[Record, Record]]:
    """Every baseline cell with every candidate cell, keyed (baseline, candidate) by their
    place in repetition (then cell) order, from 1 (compare.across_cells)."""

    def order(r: Record) -> tuple[int, int]:
        return (r.repetition, r.index)

    return {
        (i, j): (b, c)
        for i, b in enumerate(sorted(base, key=order), 1)
        for j, c in enumerate(sorted(cand, key=order), 1)
    }


def _samples_verdict(
    run_dir: Path,
    metric: str,
    base: list[Record],
    cand: list[Record],
    pair: tuple[str, str],
    th: Thresholds,
) -> Comparison:
    """Mann-Whitney U on the pooled samples of these cells, held to every pair of cells
    (compare.across_cells)."""

    def compared(b: list[Record], c: list[Record], floor: float | None = None) -> Comparison:
        base_values, base_source = _pooled(run_dir, b)
        cand_values, cand_source = _pooled(run_dir, c)
        return compare.compare_samples(
            metric, base_values, cand_values, labels=pair, thresholds=th, abs_floor=floor,
            baseline_notes=_joined(_notes(b), base_source),
            candidate_notes=_joined(_notes(c), cand_source),
        )  # fmt: skip

    cells = (len(base), len(cand))
    pooled = compared(base, cand, compare.cell_floor(cells))
    pairs = {}
    if pooled.verdict in compare.CLAIMS and min(cells) > 1:
        pairs = {k: compared([b], [c]) for k, (b, c) in _cell_pairs(base, cand).items()}
    return compare.across_cells(pooled, pairs, cells)


def comparisons(
    run_dir: Path, records: list[Record], baseline: str, th: Thresholds
) -> list[Comparison]:
    """Every version against the baseline, per scenario and parameter set: repetitions
    pooled, a sample metric's regression or improvement held to every pair of cells.

    Cells that bypass HAProxy get no verdict. Where the probe saw how connections ended,
    the end types are compared as categories, and close delays per end type.
    """
    records = unique_labels(records)
    groups: dict[tuple[str, str], dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    labels: dict[str, str] = {}
    by_scenario: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.ok and record.scenario in METRIC:
            by_scenario[record.scenario].append(record)
    for scenario, rows in by_scenario.items():
        keys = varying(rows)
        for record in rows:
            if bypasses_proxy(record):
                continue
            spec = record.version.spec
            labels[spec] = record.version.label
            groups[(scenario, _short_params(record, keys))][spec].append(record)
    found = []
    for (scenario, params), by_version in groups.items():
        if baseline not in by_version:
            continue
        kind, what = METRIC[scenario]
        name = f"{scenario} [{params}]" if params else scenario
        base = by_version[baseline]
        # each cell's probe file read once: pooled per version, and per pair of cells
        ends_of = {r.cell: _probe_ends(run_dir, [r]) for rows in by_version.values() for r in rows}
        base_ends = [e for r in base for e in ends_of[r.cell]]
        for spec, cand in by_version.items():
            if spec == baseline:
                continue
            pair = (labels[baseline], labels[spec])
            cand_ends = [e for r in cand for e in ends_of[r.cell]]
            cells = (len(base), len(cand))
            if kind == "samples" and base_ends and cand_ends:
                reps = {
                    k: (ends_of[b.cell], ends_of[c.cell])
                    for k, (b, c) in _cell_pairs(base, cand).items()
                }
                found += _timing_by_end(
                    f"{name} {what}", base_ends, cand_ends, pair, th, reps, cells
                )
            elif kind == "samples":
                found.append(_samples_verdict(run_dir, f"{name} {what}", base, cand, pair, th))
            else:
                bh, bt = map(sum, zip(*(_hits(r, what) for r in base), strict=True))
                ch, ct = map(sum, zip(*(_hits(r, what) for r in cand), strict=True))
                comparison = compare.compare_counts(
                    f"{name} {what}", bh, bt, ch, ct,
                    labels=pair, thresholds=th, what=what,
                    baseline_notes=_notes(base), candidate_notes=_notes(cand),
                )  # fmt: skip
                # The sentence names the counts only: say which experiment they come from.
                head, _, rest = comparison.words.partition(": ")
                found.append(dataclasses.replace(comparison, words=f"{head}: {name}: {rest}"))
            if base_ends and cand_ends:
                found.append(
                    compare.compare_categories(
                        f"{name} ends",
                        _end_counts(base_ends),
                        _end_counts(cand_ends),
                        labels=pair,
                        thresholds=th,
                    )
                )
    return found


def ordered(found: list[Comparison]) -> list[Comparison]:
    """Regressions and improvements first, then changed and small, then the rest."""
    return sorted(found, key=lambda c: VERDICT_ORDER.index(c.verdict))


_PLURAL = {
    "regression": ("regression", "regressions"),
    "improvement": ("improvement", "improvements"),
    "changed": ("changed", "changed"),
    "small change": ("small change", "small changes"),
    "inconclusive": ("inconclusive", "inconclusive"),
    "no significant change": ("no change", "no change"),
}


def tally(found: list[Comparison]) -> str:
    """One line, e.g. "verdicts: 2 regressions, 1 improvement, 3 small changes, 27 no change"."""
    if not found:
        return "verdicts: none (nothing to compare)"
    counts = {v: sum(1 for c in found if c.verdict == v) for v in VERDICT_ORDER}
    always = ("regression", "improvement", "small change", "no significant change")
    parts = [f"{n} {_PLURAL[v][n != 1]}" for v, n in counts.items() if n or v in always]
    return "verdicts: " + ", ".join(parts)


FAIL_ON = {
    "regression": {"regression"},
    "change": {"regression", "improvement", "changed"},
}


def failing(found: list[Comparison], fail_on: str | None) -> list[Comparison]:
    """The verdicts that make `--fail-on` exit non-zero."""
    return [c for c in found if fail_on and c.verdict in FAIL_ON[fail_on]]


def read_verdicts(run_dir: Path) -> list[Comparison]:
    path = run_dir / "verdicts.json"
    if not path.exists():
        return []
    return [Comparison(**c) for c in results.read_json(path)]


def _verdict_rows(found: list[Comparison]) -> list[list[Any]]:
    return [
        [
            c.metric,
            c.candidate_label,
            c.delta,
            c.test,
            "-" if c.p_value is None else compare.format_p(c.p_value).removeprefix("p="),
            "-" if c.effect is None else f"{c.effect:+.2f} ({c.effect_name})",
            f"**{c.verdict}**",
        ]
        for c in found
    ]


# --- the report ------------------------------------------------------------------------------


def _proxy_overhead(records: list[Record]) -> list[str]:
    """keepalive-vs-close: req/s and mean latency through HAProxy relative to direct to the
    backend, same client; one line per (version, keep-alive). The comparison measures the
    proxy only where neither cell's load was limited by the client or by the host's CPU
    (cell_metrics.client_limit); elsewhere the line says why there is no number."""
    lines = []
    by_key: dict[tuple[str, Any, str], dict[str, Record]] = defaultdict(dict)
    for r in records:
        if "proxy-overhead" in shows(r.scenario).sections and r.ok:
            # same client: a native client's cells pair only with its own settings
            key = (r.version.label, r.params["keepalive"], client_text(r.load))
            by_key[key][str(r.params["via"])] = r
    for (label, keepalive, client), pair in sorted(by_key.items()):
        if {"haproxy", "backend"} <= set(pair):
            head = f"- {label}, keep-alive {'on' if keepalive else 'off'}: proxy overhead"
            head = head.replace(": proxy", f" ({client}): proxy") if client else head
            if why := _overhead_not_measured(pair["haproxy"], pair["backend"]):
                lines.append(f"{head} not measured: {why}.")
                continue
            via, direct = pair["haproxy"].m.load, pair["backend"].m.load
            if via is None or direct is None:
                lines.append(f"{head} not measured: a cell has no load numbers.")
                continue
            rps = 100 * (via.rps - direct.rps) / direct.rps if direct.rps else 0
            mean = (
                100 * ((via.mean_ms or 0) - direct.mean_ms) / direct.mean_ms
                if direct.mean_ms
                else 0
            )
            lines.append(
                f"{head}: {rps:+.1f} % req/s, {mean:+.1f} % mean latency (req/s and mean "
                "latency through HAProxy relative to direct to the backend, same client; "
                "neither the client nor the host's CPU was the limit)."
            )
    return lines


def _overhead_not_measured(via: Record, direct: Record) -> str | None:
    """Why the pair's difference is not the proxy's (None when it is): which cell hit the
    client's limit or a saturated host, with the numbers, or that it is unknown."""
    reasons: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for where, r in (("through HAProxy", via), ("direct to the backend", direct)):
        limit = r.m.client_limit or ClientLimit(
            client_cores=0, client_ceiling_cores=0, bound_fraction=0,
            host_saturated_below_idle_cores=0,
        )  # fmt: skip
        bound, saturated = r.m.client_bound, r.m.host_saturated
        if bound:  # without host data, the share of its ceiling: a lower bound
            used = limit.used_of_could_use
            used = limit.used_of_ceiling if used is None else used
            reasons["client"].append((where, f"{used:.2f}"))
        if saturated:
            reasons["host"].append((where, f"{limit.host_idle_cores:.2f}"))
        if not bound and not saturated and (bound is None or saturated is None):
            reasons["unknown"].append((where, ""))
    wording = {
        "client": ("the client was the limit", "of what it could use"),
        "host": ("the host's CPU was saturated", "core idle"),
        "unknown": ("no host CPU recorded, so whether the client or the host was the limit "
                    "is unknown", ""),
    }  # fmt: skip
    parts = []
    for kind, found in reasons.items():
        what, unit = wording[kind]
        if len(found) == 2:
            numbers = " / ".join(n for _, n in found)
            parts.append(f"{what} in both cells" + (f" ({numbers} {unit})" if unit else ""))
        else:
            [(where, number)] = found
            parts.append(f"{what} {where}" + (f" ({number} {unit})" if unit else ""))
    return "; ".join(parts) or None


FATE_HEADERS = [
    "version", "cell", "status", "termination state", "connections", "closed by HAProxy",
    "of them RST", "kept open", "close delay p50",
]  # fmt: skip


def fate_rows(records: list[Record], run_dir: Path) -> list[list[str]]:
    """error-fate: per version, parameter set, status and termination state, the client
    connections HAProxy closed after their last response (within the probe's deadline)
    and those it kept, repetitions pooled (FATE_HEADERS' columns). From each cell's raw
    probe.jsonl and haproxy.log, joined by client port (probe_samples.fate_of)."""
    cells = [r for r in unique_labels(records) if "error-fates" in shows(r.scenario).sections]
    cells = [r for r in cells if r.ok]
    keys = varying(cells)
    pooled: dict[tuple[str, str], list[probe_samples.Fate]] = {}
    for r in cells:
        folder = run_dir / r.cell
        log = folder / "haproxy.log"
        if not log.exists():
            continue
        entries, _ = haproxy_log.parse_log(log.read_text().splitlines())
        group = (r.version.label, _short_params(r, keys) if keys else "")
        pooled.setdefault(group, []).extend(probe_samples.fate_of(_probe(folder), entries))
    rows = []
    for (version, params), connections in pooled.items():
        for f in probe_samples.fates(connections):
            rows.append([
                version, params or "-", str(f["status"] if f["status"] is not None else "-"),
                f"`{f['state']}`", str(f["connections"]), str(f["closed"]), str(f["reset"]),
                str(f["kept"]), _ms(f["delay_p50_ms"]),
            ])  # fmt: skip
    return rows


def _sweep_stats(folder: Path, record: Record) -> dict[str, dict[str, Any]]:
    """Per swept value ("chunk_size=30"): every connection of the cell, not only the last.

    From probe.jsonl, each connection's flag joined from haproxy.log by unique id (or,
    without the log, the flag the cell's metrics recorded for that value).
    """
    flags_by_id: dict[str, str] = {}
    if (folder / "haproxy.log").exists():
        entries, _ = haproxy_log.parse_log((folder / "haproxy.log").read_text().splitlines())
        flags_by_id = {u: e.termination_state for u, e in haproxy_log.index_by_id(entries).items()}
    recorded = {
        f"{p.name}={p.value}": p.flag for p in (record.m.probe.sweep if record.m.probe else [])
    }
    out: dict[str, dict[str, Any]] = {}
    for sample in _probe(folder):
        for name, value in (sample.get("sweep") or {}).items():
            key = f"{name}={value}"
            entry = out.setdefault(
                key, {"stalled": 0, "total": 0, "bytes": [], "delays": [], "flags": Counter()}
            )
            entry["total"] += 1
            if not probe_samples.stalled(sample):
                continue
            entry["stalled"] += 1
            entry["bytes"].append(sample.get("bytes") or 0)
            if sample.get("delay_ms") is not None:
                entry["delays"].append(sample["delay_ms"])
            ids = [u for u in reversed(sample.get("unique_ids") or []) if u in flags_by_id]
            flag = flags_by_id[ids[0]] if ids else recorded.get(key, "not logged")
            entry["flags"][flag] += 1
    return out


def _stalls_in(run_dir: Path) -> Callable[[Record], str]:
    """The "stalled chunk sizes" column: every size where a connection stalled, with
    stalled/total where not every connection of that size did."""

    def column(record: Record) -> str:
        stats = _sweep_stats(run_dir / record.cell, record)
        if not stats:
            return _stalls(record)
        hit = [
            key.split("=", 1)[1]
            + ("" if v["stalled"] == v["total"] else f" ({v['stalled']}/{v['total']})")
            for key, v in sorted(stats.items(), key=lambda kv: _sweep_order(kv[0]))
            if v["stalled"]
        ]
        return ", ".join(hit) or "none"

    return column


def _sweep_order(key: str) -> tuple[int, Any]:
    value = key.split("=", 1)[-1]
    return (0, int(value)) if value.lstrip("-").isdigit() else (1, value)


def _stall_cell(v: dict[str, Any]) -> str:
    if not v["stalled"]:
        return f"{v['stalled']}/{v['total']}"
    flags = v["flags"]
    flag = (
        next(iter(flags))
        if len(flags) == 1
        else " ".join(f"{f}×{n}" for f, n in flags.most_common())
    )
    delay = _ms(max(v["delays"])) if v["delays"] else "no close"
    return f"STALL {v['stalled']}/{v['total']}: {min(v['bytes'])} B, {delay} {flag}"


def chunk_rows(
    records: list[Record], run_dir: Path, all_sizes: bool = False
) -> tuple[list[str], list[list[str]], str]:
    """chunked-stall: one row per chunk size, one column per version and TLS setting:
    (headers, rows, what was left out).

    Each cell counts stalled/total over every connection of that size in every
    repetition. By default only the sizes where the versions differ are shown; the
    third value says what was left out ("" when nothing was).
    """
    columns: dict[str, dict[str, dict[str, Any]]] = {}
    group_of: dict[str, str] = {}
    cells = [
        r for r in unique_labels(records) if "chunk-sizes" in shows(r.scenario).sections and r.ok
    ]
    # One column per version and parameter set (TLS always named), repetitions pooled.
    param_keys = sorted({"tls", *varying(cells)})
    for r in cells:
        params = _short_params(r, param_keys)
        name = f"{r.version.label} {params}"
        group_of[name] = params
        column = columns.setdefault(name, {})
        for key, v in _sweep_stats(run_dir / r.cell, r).items():
            into = column.setdefault(
                key, {"stalled": 0, "total": 0, "bytes": [], "delays": [], "flags": Counter()}
            )
            for field in ("stalled", "total", "bytes", "delays", "flags"):
                into[field] += v[field]
    if not columns:
        return [], [], ""
    keys = sorted({k for col in columns.values() for k in col}, key=_sweep_order)
    if not keys:
        return [], [], ""
    sweep = keys[0].split("=", 1)[0].replace("_", " ")

    def differs(key: str) -> bool:
        for group in set(group_of.values()):
            shares = {
                columns[c][key]["stalled"] / columns[c][key]["total"]
                for c in columns
                if group_of[c] == group and columns[c].get(key, {}).get("total")
            }
            names = [c for c in columns if group_of[c] == group]
            if len(shares) > 1 or (len(names) == 1 and shares and max(shares) > 0):
                return True
        return False

    shown = [k for k in keys if all_sizes or differs(k)]
    left_out = len(keys) - len(shown)
    note = ""
    if left_out:
        note = (
            f"{left_out} of {len(keys)} {sweep}s left out: there every version stalled on "
            "the same share of connections"
            + (" (none)." if not any(columns[c].get(k, {}).get("stalled") for c in columns
                                     for k in keys if k not in shown) else ".")
        )  # fmt: skip
    if not shown:
        return [], [], note
    rows = [
        [
            k.split("=", 1)[1],
            *(_stall_cell(columns[c][k]) if k in columns[c] else "" for c in columns),
        ]
        for k in shown
    ]
    return [sweep, *columns], rows, note


# --- does the scenario show its field note's phenomenon? -------------------------------------


def _versions(rows: list[Record]) -> str:
    return ", ".join(dict.fromkeys(r.version.label for r in unique_labels(rows)))


def _late_closes(run_dir: Path, rows: list[Record]) -> str | None:
    samples = [s for r in rows for s in _probe(run_dir / r.cell)]
    delays = [s["delay_ms"] for s in samples if s.get("delay_ms") is not None]
    late = [d for d in delays if d >= probe_samples.LATE_CLOSE_MS]
    if not samples or late or any(s.get("end") == "open" for s in samples):
        return None
    return (
        f"These cells do not show the field note's delay: on {_versions(rows)} every one of "
        f"{len(samples)} connections was closed within {_ms(max(delays, default=0))} of the "
        f"client's FIN (a close the proxy did not notice takes "
        f"{probe_samples.LATE_CLOSE_MS:g} ms or more). What would show it: a HAProxy that "
        f"misses the client's FIN{_as_reproduced('stalls')} on the versions its field note "
        "names."
    )


def _as_reproduced(phenomenon: scenarios.Phenomenon) -> str:
    """ ", as `<scenario>` reproduces" for the scenario that shows ``phenomenon``."""
    name = scenarios.reproduced_by(phenomenon)
    return f", as `{name}` reproduces" if name else ""


def _no_stalls(run_dir: Path, rows: list[Record]) -> str | None:
    samples = [s for r in rows for s in _probe(run_dir / r.cell)]
    if not samples or any(probe_samples.stalled(s) for s in samples):
        return None
    return (
        f"These cells do not show the field note's stall: no connection of {len(samples)} "
        f"stalled on {_versions(rows)}. What would show it: a version in the field note's "
        "affected range, or other chunk or buffer sizes."
    )


def _no_connect_timeouts(run_dir: Path, rows: list[Record]) -> str | None:
    states = [s for r in rows if r.m.haproxy for s in r.m.haproxy.termination_states]
    if not states or any(s.startswith("sC") for s in states):
        return None
    return (
        f"These cells do not show the field note's `sC--` 503s: no request on "
        f"{_versions(rows)} was ended by `timeout connect`. What would show it: a backend "
        "that never accepts (`backend=blackhole`)."
    )


def _no_lingering_states(run_dir: Path, rows: list[Record]) -> str | None:
    censuses = [_census(r, "haproxy") for r in rows]
    if not any(censuses):
        return None
    for census in filter(None, censuses):
        for state in ("FIN-WAIT-2/in", "CLOSE-WAIT/out"):
            entry = census.states.get(state)
            if entry and entry.peak > entry.baseline:
                return None
    return (
        "These cells do not show the field note's half-closed sockets: on "
        f"{_versions(rows)} neither FIN-WAIT-2 towards the client nor CLOSE-WAIT towards "
        "the backend rose above its level before the load. What would show it: a backend "
        "idle timeout (`backend_idle_ms`) shorter than the time the client keeps its "
        "connection idle."
    )


# plan.scenarios.Shows.phenomenon -> the check that says the numbers do not show it
PHENOMENA: dict[str, Callable[[Path, list[Record]], str | None]] = {
    "late-closes": _late_closes,
    "stalls": _no_stalls,
    "connect-timeouts": _no_connect_timeouts,
    "lingering-states": _no_lingering_states,
}


MISCOUNT_NOTE = (
    "The client and HAProxy counted different requests for the same load, so these "
    "cells' request counts, failures, req/s and latencies are not what went over the "
    "wire: HAProxy's count (the requests its frontend received, from its counters; "
    "else its log lines plus the lines it dropped) should be the client's plus at most "
    "the requests in flight when the load stopped (`metrics.client_vs_haproxy` in each "
    "cell.json)."
)


def miscounted(records: list[Record]) -> list[str]:
    """One line per measured cell whose client and HAProxy disagree on the request count
    (cell_metrics.client_vs_haproxy), in cell order; [] when every checked cell agrees."""
    lines = []
    for r in records:
        check = r.m.client_vs_haproxy
        if r.ok and check is not None and not check.agree:
            received = "" if check.received is None else f"{check.received} received; "
            lines.append(
                f"{r.cell} ({r.version.label}, {r.scenario}): the client counted "
                f"{check.client} requests, HAProxy {check.haproxy} ({received}"
                f"{check.logged} logged + {check.dropped} dropped); at most "
                f"{check.in_flight_bound} were in flight when the load stopped"
            )
    return lines


def phenomenon_note(run_dir: Path, name: str, rows: list[Record]) -> str | None:
    """A line for a scenario whose measured numbers do not show its field note's phenomenon."""
    phenomenon = shows(name).phenomenon
    check = PHENOMENA[phenomenon] if phenomenon else None
    ok = [r for r in rows if r.ok]
    return check(run_dir, ok) if check and ok else None


# --- per-cell tables --------------------------------------------------------------------------


def columns_for(name: str, run_dir: Path) -> list[Column]:
    """The table's columns, the per-size stall column counting every observation of the
    run (its raw files), not only the cell's record."""
    found = columns(name)
    if "stalled-chunk-sizes" in shows(name).columns:
        stalls = _stalls_in(run_dir)
        found = [(h, stalls if fn is _stalls else fn) for h, fn in found]
    return found


def cell_tables(
    run_dir: Path, name: str, rows: list[Record]
) -> list[tuple[str, str | None, list[str], list[list[Any]]]]:
    """(parameters, note, headers, rows) per parameter set of a scenario. Repetitions get
    a label (r1, r2...) so that they are not read as identical rows."""
    columns = columns_for(name, run_dir)
    tables = []
    for params, group in _by_params(unique_labels(rows)).items():
        shown = columns
        if any(r.m.load and r.m.load.ports is not None for r in group):
            shown = [*columns, *NATIVE_COLUMNS]  # what a native client counted itself
        headers = [h for h, _ in shown]
        table = [[_cell(r, fn) for _, fn in shown] for r in group]
        if len(group) > len({r.version.label for r in group}) or any(
            r.repetition != 1 for r in group
        ):
            headers = ["rep", *headers]
            table = [[f"r{r.repetition}", *row] for r, row in zip(group, table, strict=True)]
        note = BYPASS_NOTE if group and all(bypasses_proxy(r) for r in group) else None
        tables.append((params, note, headers, table))
    return tables


def verdict_lines(found: list[Comparison], bullet: str = "- ") -> list[str]:
    """Regressions, improvements and changes, then small changes, then inconclusive, then
    the count of comparisons without a significant change."""
    found = ordered(found)
    sections = [
        ("Regressions, improvements and changes", ("regression", "improvement", "changed")),
        ("Small changes (significant, below the practical thresholds)", ("small change",)),
        ("Inconclusive", ("inconclusive",)),
    ]
    lines = []
    for title, kinds in sections:
        picked = [c for c in found if c.verdict in kinds]
        if picked:
            lines += [f"### {title}", ""] + [f"{bullet}{_one_line(c.words)}" for c in picked]
            lines.append("")
    same = sum(1 for c in found if c.verdict == "no significant change")
    if same:
        lines += [
            f"No significant change: {same} comparison{'s' if same != 1 else ''} "
            "(in the table below).",
            "",
        ]
    return lines


H2LOAD_LIMIT_NOTE = LIMIT_NOTE.replace(
    f"({cell_metrics.CLIENT_CEILING_CORES:g} core, one Locust process)",
    "(one core per h2load thread)",
)


def _load_line(load: LoadRecord) -> str:
    if load.mode == "probe":
        return "Load: the close-delay probe (concurrent connections, one per sample)."
    locust = f"Locust ({load.workers} worker processes)" if load.workers else "Locust"
    if load.mode == "open-loop":
        return (
            f"Load: {locust} open loop, {load.rate:g} requests/s for {load.duration_s:g} s "
            "per cell; latency from each request's intended send time (no coordinated "
            f"omission). {LIMIT_NOTE}"
        )
    if load.generator in NATIVE_GENERATORS:
        return (
            "Load: the field notes' own clients (Python requests, Node's http, Go's "
            f"net/http), closed loop, at most {load.duration_s:g} s per cell (or their "
            "max_requests); each table's title names the client and its settings. Latency "
            "is each request's, from its send to its body's end, in µs; `ports used` counts "
            "the distinct local ports of the connections the client opened."
        )
    if load.generator == "wrk":
        threads = load.threads or 1
        return (
            f"Load: wrk closed loop, {load.users} connections over {threads} "
            f"thread{'s' if threads != 1 else ''}, {load.duration_s:g} s per cell; latency "
            "from each request's actual send (coordinated omission: a stall delays the "
            f"requests behind it rather than showing as their latency). {WRK_LIMIT_NOTE}"
        )
    if load.generator == "h2load":
        threads = load.threads or 1
        span = (
            f"{load.max_requests} requests per cell"
            if load.max_requests is not None
            else f"{load.duration_s:g} s per cell"
        )
        return (
            f"Load: h2load closed loop over HTTP/2 (the cell's http2: h2c prior knowledge or "
            f"ALPN h2 on TLS), {load.users} connections of {load.streams or 1} concurrent "
            f"stream{'s' if (load.streams or 1) != 1 else ''} over {threads} "
            f"thread{'s' if threads != 1 else ''}, {span}; latency from each request's "
            "actual send (coordinated omission, as wrk's), from h2load's per-request log. "
            f"{H2LOAD_LIMIT_NOTE}"
        )
    return (
        f"Load: {locust} closed loop, {load.users} users, {load.duration_s:g} s per cell. "
        f"{LIMIT_NOTE}"
    )


def _cell(record: Record, fn: Callable[[Record], Any]) -> Any:
    if not record.ok:
        return "failed"
    value = fn(record)
    return "-" if value is None else value


CONFIG_INTRO = (
    "HAProxy config lines of this entry (`config`), after the scenario's own in each "
    "section (`haproxy.cfg` in each cell folder has them all):"
)


def config_body(params: dict[str, Any]) -> list[str]:
    """A cell's explicit HAProxy config lines (its ``config`` parameter, validated by
    harness.plan.params) as haproxy.cfg would list them: each section that has some,
    then its lines indented; [] when it has none."""
    config = params.get("config") or {}
    body: list[str] = []
    for section in ("global", "defaults", "frontend", "backend"):
        if config.get(section):
            body += [section, *(f"    {line}" for line in config[section])]
    return body


def config_lines(params: dict[str, Any]) -> list[str]:
    """:func:`config_body` as a Markdown paragraph and code block; [] when none."""
    body = config_body(params)
    return [CONFIG_INTRO, "", *_fenced(body), ""] if body else []


def _by_params(rows: list[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in rows:
        groups[_params(r)].append(r)
    return groups


def raw_files(run_dir: Path, record: Record) -> list[str]:
    """The raw files a cell's numbers come from, relative to the run folder."""
    folder = run_dir / record.cell
    return [str((folder / f).relative_to(run_dir)) for f in RAW_FILES if (folder / f).exists()]


def verdict_screen(run_dir: Path) -> str:
    """The verdicts of a run on one screen: words first (in verdict order), then the table."""
    found = read_verdicts(run_dir)
    if not found:
        return f"No comparison could be made; see {run_dir / 'report.md'}."
    found = ordered(found)
    lines = [f"- {c.words}" for c in found]
    table = tabulate(
        _verdict_rows(found),
        ["comparison", "version", "delta", "test", "p", "effect", "verdict"],
        tablefmt="simple",
    )
    verdicts = " / ".join(dict.fromkeys(c.verdict for c in found))
    return "\n".join([*lines, "", table.replace("**", ""), "", f"verdict: {verdicts}"])


def side_by_side(old: Record, new: Record) -> str:
    """A re-run next to the original: the headline numbers of the cell's scenario."""
    rows = [
        [header, _cell(old, fn), _cell(new, fn)]
        for header, fn in columns(old.scenario)
        if header not in ("HAProxy", "")
    ]
    title = f"{old.cell}: {old.version.label} · {old.scenario} · {_params(old)}"
    return title + "\n\n" + tabulate(rows, ["", "original", "re-run"], tablefmt="simple")
