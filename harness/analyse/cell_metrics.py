"""A cell's metrics, computed from the raw files in its folder alone (no Docker needed).

Each measurement is read only when its raw file is there, so a cell's metrics say
exactly what was measured: no file, no number.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.analyse import (
    census,
    h2load,
    haproxy_log,
    latency,
    locust_stats,
    native,
    probe_samples,
    wire,
    wrk,
)
from harness.analyse.haproxy_stats import parse_info, parse_stat
from harness.analyse.record import LoadRecord, Metrics
from harness.analyse.resources import could_use, cpu_usage, host_usage
from harness.plan.ports import FRONTEND_PORTS

# A Locust process is one Python process whose greenlets run one at a time (one thread
# holds the GIL): it can use one core at most, however many the host has.
CLIENT_CEILING_CORES = 1.0
# Client-bound: the client used at least this share of what it could have used
# (its ceiling, or less when the host had no idle CPU to give it). A client running flat
# out measures well under that: on the 2-core host, Locust through HAProxy 2.6.12 with
# keep-alive (128 B, 20 users; wrk pushed 2.2x more through the same proxy, issue 11)
# used 0.85 of what it could (0.76-0.93 per half-second) with 0.28 core idle, and direct
# to the backend 0.89. Part of its work is the network stack's, run as softirq (0.2-0.3
# core there) and charged to no container; the rest is scheduling latency and the 0.5 s
# samples. 0.8 flags those; 0.9 missed them.
CLIENT_BOUND_FRACTION = 0.8
# Host saturated: less idle CPU than this, in cores, over the load window. Every
# container then competed for CPU, so the throughput says how the CPUs were shared, not
# which component's limit was reached (HAProxy's included).
HOST_SATURATED_IDLE_CORES = 0.1


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


# OpenLoop's connection pool (clients/locustfiles/http_load.py: LOAD_MAX_CONNECTIONS,
# which the harness leaves at its default): the most requests one process has in flight.
OPEN_LOOP_POOL = 100
# Faults after which HAProxy's log and the client's count are not of the same requests:
# a restarted HAProxy loses the requests it held and refuses some while it is down; a
# killed client loses its count since its last second.
UNCOUNTED_FAULTS = frozenset({"haproxy-restarted", "client-killed"})


def in_flight_bound(load: LoadRecord, params: Mapping[str, Any]) -> int | None:
    """The most requests a cell's load can have in flight when it stops, or None when
    its client's count is not to be held against HAProxy's (see :func:`client_vs_haproxy`).

    ``load``: the cell's load as recorded; ``params``: its scenario parameters. None
    unless the load is Locust's HTTP load (closed or open loop, not the probe: wrk,
    h2load and the native clients count otherwise) through HAProxy in HTTP mode (direct
    to the backend HAProxy sees nothing; in ``mode: tcp`` a log line is a connection,
    not a request) without a fault in :data:`UNCOUNTED_FAULTS`. Closed loop: ``users``
    (each has at most one request out, and Locust stops the ones still in one after
    ``--stop-timeout``); open loop: :data:`OPEN_LOOP_POOL` per process (stopped at once).
    """
    if load.generator != "locust" or load.mode not in ("closed-loop", "open-loop"):
        return None
    if params.get("via", "haproxy") != "haproxy" or params.get("mode", "http") != "http":
        return None
    if params.get("fault") in UNCOUNTED_FAULTS:
        return None
    if load.mode == "open-loop":
        return OPEN_LOOP_POOL * (load.workers or 1)
    return load.users


def client_vs_haproxy(
    client: int, logged: int, dropped: int, received: int | None, in_flight: int
) -> dict[str, Any]:
    """The client's request count held against HAProxy's for the same load.

    ``client``: requests the load generator counted (Locust's stats: answered, failed or
    cut off, each once). HAProxy's count is ``received`` when its counters were read:
    the frontend's requests (``show stat`` req_tot, counted as each request arrives)
    less its request errors (ereq: connections that sent no valid request, such as a
    bare connect and close), read after the load, so those in flight at the stop are
    in it. Else (no counters) the log's: ``logged`` lines plus the ``dropped`` ones
    (``show info`` DroppedLogs). The log alone can fall short: HAProxy logs no line for
    a keep-alive request whose reused server connection broke (a killed backend) and
    that it closes unanswered for the client to retry. ``in_flight``:
    :func:`in_flight_bound`. Every request the client sent reached HAProxy and every one
    HAProxy received came from the client, so they agree when HAProxy's count is the
    client's plus at most the requests in flight at the stop: a client that sends one of
    its requests twice (a library's retry) or counts what never went out disagrees.

    Returns ``{"client", "haproxy", "received", "logged", "dropped", "in_flight_bound",
    "agree"}`` (counts of requests, ``received`` None without counters; ``agree`` a bool).
    """
    haproxy = received if received is not None else logged + dropped
    return {
        "client": client,
        "haproxy": haproxy,
        "received": received,
        "logged": logged,
        "dropped": dropped,
        "in_flight_bound": in_flight,
        "agree": 0 <= haproxy - client <= in_flight,
    }


def compute(folder: Path, target: str = "haproxy", in_flight: int | None = None) -> Metrics:
    """A cell's :class:`~harness.analyse.record.Metrics` from the raw files in ``folder``
    (``target``: "haproxy", or "calibration" for the calibration target's pcap).
    ``in_flight``: :func:`in_flight_bound` of the cell; given, the client's request count
    is checked against HAProxy's (``client_vs_haproxy``).

    Raises OSError / ValueError on a raw file that cannot be read or parsed, and
    pydantic.ValidationError when a number is out of the record's bounds.
    """
    metrics = _measured(folder, target)
    if in_flight is not None and "load" in metrics and "haproxy" in metrics:
        counters = metrics.get("haproxy_counters") or {}
        frontend = counters.get("frontend", {})
        received = (
            frontend["req_tot"] - frontend["ereq"]
            if "req_tot" in frontend and "ereq" in frontend
            else None
        )
        metrics["client_vs_haproxy"] = client_vs_haproxy(
            metrics["load"]["requests"],
            metrics["haproxy"]["total"],
            counters.get("info", {}).get("DroppedLogs", 0),
            received,
            in_flight,
        )
    return Metrics.model_validate(metrics, strict=False)


def _measured(folder: Path, target: str) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    locust_parts = locust_stats.stats_files(folder)  # distributed: the workers' own
    if locust_parts:
        metrics["load"] = locust_stats.aggregated(locust_parts)
    elif (folder / "locust_stats.csv").exists():
        metrics["load"] = locust_stats.from_csv(folder / "locust_stats.csv")
    elif (folder / wrk.WRK_FILE).exists():
        metrics["load"] = wrk.aggregated(folder / wrk.WRK_FILE)
    elif (folder / h2load.REQUESTS_FILE).exists():
        metrics["load"] = h2load.aggregated(folder / h2load.SUMMARY_FILE)
    elif (folder / native.NATIVE_FILE).exists():
        metrics["load"] = native.aggregated(folder / native.NATIVE_FILE)
    found = latency.histogram(folder) if "load" in metrics else None
    if found is not None and found[2] != latency.SOURCE_LOCUST:
        # The client's µs histogram replaces Locust's rounded latencies; Locust still
        # counts the requests, failures and req/s. A killed client left its last second's.
        values, counts, source = found
        hdr = latency.summary(values, counts)
        metrics["load"].update(
            {k: v for k, v in hdr.items() if k != "count"},
            latency_count=hdr["count"],
            latency_source=source,
        )
    if locust_failures := locust_stats.failure_files(folder):
        metrics["client_errors"] = locust_stats.errors(locust_failures)
    metrics["client_status_codes"] = _client_status(folder)
    if (folder / wrk.WRK_FILE).exists():
        errors = metrics["load"]["errors"]
        metrics["client_errors"] = {k: v for k, v in errors.items() if v and k != "status"}
        metrics["client_status_codes"] = wrk.status_counts(folder / wrk.WRK_FILE)
    elif (folder / h2load.REQUESTS_FILE).exists():
        errors = metrics["load"]["errors"]
        metrics["client_errors"] = {k: v for k, v in errors.items() if v}
        metrics["client_status_codes"] = h2load.status_counts(folder / h2load.REQUESTS_FILE)
    elif (folder / native.NATIVE_FILE).exists():
        metrics["client_errors"] = dict(metrics["load"]["errors"])
        metrics["client_status_codes"] = native.status_counts(folder / native.NATIVE_FILE)

    entries: list[haproxy_log.LogEntry] = []
    if target == "haproxy" and (folder / "haproxy.log").exists():
        lines = (folder / "haproxy.log").read_text().splitlines()
        entries, unparsed = haproxy_log.parse_log(lines)
        summary = haproxy_log.summarise(entries)
        metrics["haproxy"] = summary
        metrics["flags_explained"] = {
            state: haproxy_log.explain(state) for state in summary["termination_states"]
        }
        metrics["haproxy_unparsed_lines"] = len(unparsed)

    failure_files = latency.client_parts(folder, "client_failures", "jsonl")
    if failure_files:
        by_id = haproxy_log.index_by_id(entries)
        seen = [
            json.loads(line)
            for path in failure_files
            for line in path.read_text().splitlines()
            if line.strip()
        ]
        matched = [by_id[f["unique_id"]] for f in seen if f.get("unique_id") in by_id]
        # Each failure the client saw, joined to the proxy's own log line by unique id.
        metrics["client_failures"] = {
            "count": len(seen),
            # Requests cut off when the load stopped got no response, so no id.
            "with_id": sum(1 for f in seen if f.get("unique_id")),
            "matched_in_log": len(matched),
            "flags": dict(Counter(e.termination_state for e in matched).most_common()),
        }

    samples = probe_samples.read(folder / "probe.jsonl")
    if samples:
        flags = {uid: e.termination_state for uid, e in haproxy_log.index_by_id(entries).items()}
        metrics["probe"] = probe_samples.summarise(samples, flags)
        # A connection's fate is HAProxy's to decide only where the client never closes.
        if entries and all(s.get("variant") == "hold" for s in samples):
            metrics["probe"]["fates"] = probe_samples.fates(probe_samples.fate_of(samples, entries))

    pcap = folder / f"{target}.pcap"
    if pcap.exists() and pcap.stat().st_size > 0:
        closes = wire.close_delays(pcap, FRONTEND_PORTS)
        metrics["wire"] = wire.summarise(closes)
        if samples:
            joined = wire.agreement(samples, closes)
            pairs = joined.pop("per_connection")  # stays derivable from the raw files
            metrics["probe_vs_wire"] = joined
            if target == "calibration":
                # judged connection by connection against the injected delay (calibration.py)
                metrics["calibration_pairs"] = [[c["probe_ms"], c["wire_ms"]] for c in pairs]

    timing = _json(folder / "timing.json")
    if timing and "fault" in timing:
        metrics["fault_at_s"] = round(timing["fault"] - timing["load_start"], 2)
    if timing:
        metrics["census"] = {
            path.stem.removeprefix("census-"): census.analyse(
                census.parse(path), timing["load_start"], timing["load_end"], timing["drain_end"]
            )
            for path in sorted(folder.glob("census-*.txt"))
        }
        proxy, server = folder / f"census-{target}.txt", folder / "census-backend.txt"
        if timing.get("watch_pool") and proxy.exists() and server.exists():
            # From the last response Locust counted: its exec ends 0.2-0.5 s later (users
            # stopped, stats written), which a 1 s idle timeout would read as 0.5 s.
            last = locust_stats.window(locust_parts)[1] if locust_parts else timing["load_end"]
            metrics["pool_watch"] = census.pool_watch(
                census.parse(proxy), census.parse(server), timing["load_start"], last
            )

    totals = _json(folder / "backend-stats.json")
    if totals and timing:
        seconds = max(timing["load_end"] - timing["load_start"], 1e-9)
        # The backend leaves its own /_stats query (and health checks) out of these
        # counts (backends/server.py MACHINERY): nothing to subtract.
        connections = totals["connections"]
        metrics["backend"] = {
            "connections": connections,
            "requests": totals["requests"],
            "connections_per_s": round(connections / seconds, 1),
            "requests_by_header": totals.get("by_header", {}),
            "requests_by_port": totals.get("by_port", {}),
            "requests_by_body": totals.get("by_body", {}),
            "request_body_bytes": totals.get("body_bytes", 0),
        }

    info, stat = folder / "haproxy-info.txt", folder / "haproxy-stat.csv"
    if info.exists() and stat.exists():
        metrics["haproxy_counters"] = haproxy_counters(info.read_text(), stat.read_text())

    cpu_samples = _json(folder / "cpu-samples.json")
    window, ceiling_cores = None, CLIENT_CEILING_CORES
    if locust_parts:
        window = locust_stats.window(locust_parts)  # first to last request
        # each Locust process that runs users can use a core (distributed: its workers)
        ceiling_cores *= max(len(latency.client_parts(folder, "client_status", "json")), 1)
    elif (folder / wrk.WRK_FILE).exists() and timing:
        # wrk keeps no timestamps: the load's window is the exec's, and each of its
        # threads is an event loop that can keep one core busy.
        window = (timing["load_start"], timing["load_end"])
        ceiling_cores = float(metrics["load"]["threads"])
    elif (folder / h2load.REQUESTS_FILE).exists():
        # first request to last response, as Locust's; each h2load thread is an event
        # loop that can keep one core busy
        window = h2load.window(folder / h2load.REQUESTS_FILE)
        ceiling_cores = float(metrics["load"]["threads"])
    elif (folder / native.NATIVE_FILE).exists() and timing:
        # the exec's window again; Python's threads share one GIL and Node has one event
        # loop (a core each at most); Go's goroutines run on every core (GOMAXPROCS)
        window = (timing["load_start"], timing["load_end"])
        if metrics["load"]["generator"] == "go" and cpu_samples:
            online = host_usage(cpu_samples, *window).get("online_cpus")
            ceiling_cores = float(online or CLIENT_CEILING_CORES)
    if cpu_samples and window:
        resources = cpu_usage(cpu_samples, *window)
        metrics["resources"] = resources
        client = resources.get("client", {}).get("cores")
        if client is not None:
            host = host_usage(cpu_samples, *window)
            ceiling = could_use(cpu_samples, *window, "client", ceiling_cores)
            metrics.update(client_limit(client, host, ceiling, ceiling_cores))
            if host:
                # what ran beside the stack (other work on the host) took CPU from it too
                stack = sum(r["cores"] for r in resources.values())
                outside = max(host["busy_cores"] - stack, 0.0)
                metrics["client_limit"]["host_busy_outside_stack_cores"] = round(outside, 3)
    return metrics


def _client_status(folder: Path) -> dict[str, int]:
    total: Counter[str] = Counter()
    for path in latency.client_parts(folder, "client_status", "json"):
        total.update(_json(path) or {})
    return dict(total)


def client_limit(
    client_cores: float,
    host: dict[str, float],
    could: float | None = None,
    ceiling_cores: float = CLIENT_CEILING_CORES,
) -> dict[str, Any]:
    """Was the load generator, or the host's CPU, the limit of a load cell?

    ``client_cores``: the client container's average cores over the load window;
    ``host``: :func:`harness.analyse.resources.host_usage` over the same window (empty if unknown);
    ``could``: :func:`harness.analyse.resources.could_use`, what the client could have used, sample
    interval by interval: min(``ceiling_cores``, its cores + the host's idle cores);
    when None, the same over the window's averages. ``ceiling_cores``: the most the
    generator can use (Locust: CLIENT_CEILING_CORES; wrk, h2load: its threads). ``client_bound``
    when it used
    >= CLIENT_BOUND_FRACTION of that, ``host_saturated`` when the host's average idle
    was < HOST_SATURATED_IDLE_CORES.

    Returns ``{"client_bound", "host_saturated", "client_limit": {...the numbers}}``.
    Without host data, what the client could use is unknown: ``client_bound`` is True
    only when its ceiling alone proves it (could-use <= ceiling), else None, and
    ``host_saturated`` is None; no host number is made up.
    """
    numbers: dict[str, Any] = {
        "client_cores": client_cores,
        "client_ceiling_cores": ceiling_cores,
        "bound_fraction": CLIENT_BOUND_FRACTION,
        "host_saturated_below_idle_cores": HOST_SATURATED_IDLE_CORES,
    }
    if not host:
        used = client_cores / ceiling_cores
        numbers["used_of_ceiling"] = round(used, 3)
        bound = True if used >= CLIENT_BOUND_FRACTION else None
        return {"client_bound": bound, "host_saturated": None, "client_limit": numbers}
    if could is None:
        could = min(ceiling_cores, client_cores + host["idle_cores"])
    used = client_cores / could if could > 0 else 0.0  # nothing to use: saturated below
    numbers |= {
        "could_use_cores": round(could, 3),
        "used_of_could_use": round(used, 3),
        "host_online_cpus": host["online_cpus"],
        "host_busy_cores": host["busy_cores"],
        "host_idle_cores": host["idle_cores"],
        "host_busy_fraction": host["busy_fraction"],
        "host_steal_cores": host["steal_cores"],
    }
    return {
        "client_bound": used >= CLIENT_BOUND_FRACTION,
        "host_saturated": host["idle_cores"] < HOST_SATURATED_IDLE_CORES,
        "client_limit": numbers,
    }


SERVER_COUNTERS = ("stot", "econ", "eresp", "cli_abrt", "srv_abrt", "wretr", "wredis", "dresp")
INFO_COUNTERS = ("CumConns", "CumReq", "DroppedLogs", "ConnRate", "MaxConnRate")
# The frontend's sessions (manual 9.1 "CSV format"): current, max at once, limit, total;
# its HTTP requests received and its request errors.
FRONTEND_COUNTERS = ("scur", "smax", "slim", "stot", "req_tot", "ereq")


def haproxy_counters(info_text: str, stat_text: str) -> dict[str, Any]:
    """HAProxy's own counters at the end of the load (show info, show stat)."""
    info = parse_info(info_text)
    rows = parse_stat(stat_text)
    servers = {
        f"{r['pxname']}/{r['svname']}": {k: int(r.get(k, 0) or 0) for k in SERVER_COUNTERS}
        for r in rows
        if r.get("svname") not in ("FRONTEND", "BACKEND")
    }
    frontend = next((r for r in rows if r.get("svname") == "FRONTEND"), {})
    return {
        "info": {k: int(info[k]) for k in INFO_COUNTERS if info.get(k, "").isdigit()},
        "servers": servers,
        "frontend_responses": {
            k.removeprefix("hrsp_"): int(v) for k, v in frontend.items() if k.startswith("hrsp_")
        },
        "frontend": {
            k: int(frontend[k]) for k in FRONTEND_COUNTERS if frontend.get(k, "").isdigit()
        },
    }
