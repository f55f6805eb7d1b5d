"""Tidy data for notebooks: one observation per row, one variable per column.

``results.csv``     one row per cell: identity, one ``param_<name>`` column per
                    parameter, the headline metrics named by what they are
                    (``latency_p50_ms``, ``close_delay_p50_ms``, ...), and one
                    ``flag_<state>`` column per HAProxy termination state (its count)
``connections.csv`` one row per probe connection of the run (long format): the cell's
                    identity and parameters, then that connection's close delay, how it
                    ended, bytes, whether it stalled, its termination state and any swept
                    value (``sweep_<name>``)

``pandas.read_csv`` reads both with no string splitting: numbers are numbers, a missing
value is an empty field, booleans are ``True``/``False``. :data:`CELL_COLUMNS` and
:data:`CONNECTION_COLUMNS` document every fixed column (the README lists them too).
Per-request latency is not sampled request by request: it is the HDR histogram in each
cell's ``latency.hdr``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.analyse import haproxy_log, probe_samples
from harness.analyse.record import CellRecord

Record = dict[str, Any]  # one CSV row


def _of(part: str, name: str) -> Callable[[CellRecord], Any]:
    """A field of one part of the cell's metrics (None when the cell did not measure it)."""

    def read(record: CellRecord) -> Any:
        measured = getattr(record.m, part)
        return None if measured is None else getattr(measured, name)

    return read


def _dist(part: str, name: str, stat: str) -> Callable[[CellRecord], Any]:
    """A statistic of a distribution of one part of the metrics (probe.delay_ms.p50, ...)."""
    return lambda r: None if (d := _of(part, name)(r)) is None else getattr(d, stat)


def _dropped(record: CellRecord) -> Any:
    counters = record.m.haproxy_counters
    return None if counters is None else counters.info.get("DroppedLogs")


# name -> (what it is, how to read it from a cell record; None: the run folder's name,
# which is not in the record, since a run folder may be renamed or copied)
CELL_COLUMNS: dict[str, tuple[str, Callable[[CellRecord], Any] | None]] = {
    "run": ("run id (the run folder's name)", None),
    "cell": ("cell id (its folder in the run)", lambda r: r.cell),
    "status": ("ok, or failed", lambda r: r.status),
    "scenario": ("scenario name", lambda r: r.scenario),
    "version": ("HAProxy version spec, e.g. debian:bookworm", lambda r: r.version.spec),
    "version_label": ("the version as reports name it", lambda r: r.version.label),
    "reported": ("the version haproxy -vv reported", lambda r: r.version.reported),
    "repetition": ("repetition, from 1", lambda r: r.repetition),
    "load_mode": ("Locust load: closed or open loop", lambda r: r.load.mode),
    "load_generator": ("locust, wrk, or a field note's client: requests, node, go",
                       lambda r: r.load.generator),
    "load_client": ("a native client's settings as words (session=..., agent=...)",
                    lambda r: " ".join(f"{k}={v}" for k, v in r.load.client_settings.items())
                    or None),
    "requests": ("requests Locust sent", _of("load", "requests")),
    "failures": ("requests that failed", _of("load", "failures")),
    "rps": ("requests per second over the load", _of("load", "rps")),
    "client_connections": ("connections a native client opened", _of("load", "connections")),
    "client_ports": ("distinct local ports of those connections", _of("load", "ports")),
    "latency_p50_ms": ("request latency p50, ms (µs resolution)", _of("load", "p50_ms")),
    "latency_p99_ms": ("request latency p99, ms", _of("load", "p99_ms")),
    "latency_max_ms": ("request latency max, ms", _of("load", "max_ms")),
    "probe_connections": ("close-delay probe connections", _of("probe", "connections")),
    "close_delay_p50_ms": ("close delay p50 (probe), ms", _dist("probe", "delay_ms", "p50")),
    "close_delay_max_ms": ("close delay max (probe), ms", _dist("probe", "delay_ms", "max")),
    "stalled": ("probe connections that stalled", _of("probe", "stalled")),
    "probe_wire_compared": ("connections probe and capture both timed",
                            _of("probe_vs_wire", "compared")),
    "probe_wire_within_tolerance": ("of those, probe within 2 ms of the wire",
                                    _of("probe_vs_wire", "within_tolerance")),
    "probe_wire_max_diff_ms": ("largest |probe - wire|, ms",
                               _dist("probe_vs_wire", "abs_diff_ms", "max")),
    "log_lines": ("HAProxy access-log lines", _of("haproxy", "total")),
    "log_lines_dropped": ("log lines dropped", _dropped),
    "client_bound": ("the load generator, not HAProxy, set the pace", lambda r: r.m.client_bound),
    "host_saturated": ("the host had < 0.1 core idle over the load",
                       lambda r: r.m.host_saturated),
}  # fmt: skip

CONNECTION_COLUMNS: dict[str, str] = {
    "run": "run id",
    "cell": "cell id",
    "scenario": "scenario name",
    "version": "HAProxy version spec",
    "version_label": "the version as reports name it",
    "repetition": "repetition, from 1",
    "connection": "the connection's place in the cell's probe.jsonl, from 1",
    "src_port": "the client's port (joins the packet capture)",
    "end": "how the connection ended, as the probe saw it: fin, rst, tls-alert-fin, open",
    "delay_ms": "close delay: from the client's FIN to the proxy's close, ms",
    "bytes": "response bytes received",
    "expected_bytes": "response bytes the backend sent",
    "complete": "the whole response arrived",
    "stalled": "the response stopped and the proxy ignored the client's FIN (>= 500 ms)",
    "flag": "HAProxy's termination state for the connection's last request, if logged",
}


def _scalar(value: Any) -> Any:
    # A list parameter (chunk_sizes) is one value of the cell: JSON text, not columns.
    return json.dumps(value) if isinstance(value, list | dict) else value


def _params(record: CellRecord) -> dict[str, Any]:
    return {f"param_{k}": _scalar(v) for k, v in sorted(record.params.items())}


def cell_rows(records: list[CellRecord], run_id: str) -> list[Record]:
    """One row per cell: CELL_COLUMNS, then ``param_*``, then ``flag_*`` counts."""
    rows = []
    for record in records:
        row = {
            name: run_id if read is None else read(record)
            for name, (_, read) in CELL_COLUMNS.items()
        }
        row.update(_params(record))
        states = record.m.haproxy.termination_states if record.m.haproxy else {}
        row.update({f"flag_{state}": n for state, n in sorted(states.items())})
        rows.append(row)
    return rows


def connection_rows(run_dir: Path, records: list[CellRecord]) -> list[Record]:
    """One row per probe connection of the run's finished cells (long format)."""
    rows = []
    for record in records:
        if not record.ok:
            continue
        folder = run_dir / record.cell
        samples = probe_samples.read(folder / "probe.jsonl")
        if not samples:
            continue
        flags: dict[str, str] = {}
        log = folder / "haproxy.log"
        if log.exists():
            entries, _ = haproxy_log.parse_log(log.read_text().splitlines())
            flags = {
                uid: e.termination_state for uid, e in haproxy_log.index_by_id(entries).items()
            }
        identity = {
            "run": run_dir.name,
            "cell": record.cell,
            "scenario": record.scenario,
            "version": record.version.spec,
            "version_label": record.version.label,
            "repetition": record.repetition,
        }
        for i, sample in enumerate(samples, start=1):
            ids = sample.get("unique_ids") or []
            flag = next((flags[u] for u in reversed(ids) if u in flags), None)
            rows.append(
                {
                    **identity,
                    "connection": i,
                    "src_port": sample.get("src_port"),
                    "end": sample.get("end"),
                    "delay_ms": sample.get("delay_ms"),
                    "bytes": sample.get("bytes"),
                    "expected_bytes": sample.get("expected_bytes"),
                    "complete": sample.get("complete"),
                    "stalled": probe_samples.stalled(sample),
                    "flag": flag,
                    **_params(record),
                    **{f"sweep_{k}": v for k, v in (sample.get("sweep") or {}).items()},
                }
            )
    return rows


def write_csv(path: Path, rows: list[Record]) -> None:
    """Rows as CSV with the union of their columns, in order of first appearance; a
    missing value is an empty field. Writes nothing for no rows (and removes a stale
    file)."""
    if not rows:
        path.unlink(missing_ok=True)
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write(run_dir: Path, records: list[CellRecord]) -> None:
    """results.csv and connections.csv of a run (records with unique version labels)."""
    write_csv(run_dir / "results.csv", cell_rows(records, run_dir.name))
    write_csv(run_dir / "connections.csv", connection_rows(run_dir, records))
