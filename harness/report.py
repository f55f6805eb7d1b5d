"""Publishable outputs of a run, built from the run folder alone (no Docker needed).

    report.md     tables per scenario, verdicts against the baseline version, flags
                  explained, provenance: GitHub-flavoured, pasteable into an issue
    report.html   the same, self-contained, with plots (harness/plots.py)
    results.csv   one row per cell, headline numbers and the paths of the raw files
    results.json  one object per cell: its whole cell.json plus those paths
    ../index.md   every run in the results folder with its headline verdicts

``rebuild`` first recomputes every cell's metrics from its raw files, so a report
always reflects the files next to it (and the current analysis code).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from harness import calibration, results, scenarios
from harness.analyse import cell_metrics, compare, haproxy_log
from harness.analyse.compare import Comparison, Thresholds

Record = dict[str, Any]
Column = tuple[str, Callable[[Record], Any]]
RAW_FILES = (
    "haproxy.cfg", "compose.yaml", "haproxy-vv.txt", "locust.json", "probe.jsonl",
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


def _md_cell(value: Any) -> Any:
    """A GitHub table cell: pipes escaped, newlines folded (numbers left to tabulate)."""
    return _one_line(value).replace("|", "\\|") if isinstance(value, str) else value


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


def _get(record: Record, *path: str, default: Any = None) -> Any:
    node: Any = record.get("metrics", {})
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _ms(value: float | None) -> str:
    return "-" if value is None else compare.format_duration(value)


def _counts(counts: dict[str, int] | None) -> str:
    return " ".join(f"{k}×{v}" for k, v in (counts or {}).items() if v) or "-"


def _census_peak(record: Record, side: str, state: str, direction: str | None = None) -> Any:
    census = _get(record, "census", side)
    if not census:
        return "-"
    if direction is None:
        return census["totals"].get(state, {}).get("peak", 0)
    return census["states"].get(f"{state}/{direction}", {}).get("peak", 0)


def _census_lasted(record: Record, side: str, state: str, direction: str) -> str:
    """How long the state stayed above its pre-load level (first rise to last sample above)."""
    entry = (_get(record, "census", side) or {}).get("states", {}).get(f"{state}/{direction}")
    if not entry or entry["peak"] <= entry["baseline"]:
        return "-"
    above = [t for t, count in entry["timeline"] if count > entry["baseline"]]
    still = entry["final"] > entry["baseline"]
    return f"{above[-1] - above[0]:.1f} s" + (" (still there at the end)" if still else "")


def _rps(record: Record) -> str:
    rps = _get(record, "load", "rps")
    return "-" if rps is None else f"{rps:.0f}"


def _failures(record: Record) -> str:
    return f"{_get(record, 'load', 'failures')}/{_get(record, 'load', 'requests')}"


def _bound(record: Record) -> str:
    return "client-bound" if _get(record, "client_bound") else ""


def _from_log(record: Record, key: str) -> str:
    """Counts taken from HAProxy's log, marked when HAProxy dropped some of its lines."""
    text = _counts(_get(record, "haproxy", key))
    dropped = _get(record, "haproxy_counters", "info", "DroppedLogs", default=0)
    return f"{text} (+{dropped} log lines dropped)" if dropped else text


def _flags(record: Record) -> str:
    return _from_log(record, "termination_states")


def _status(record: Record) -> str:
    return _from_log(record, "status_classes")


def _probe_delay(key: str) -> Callable[[Record], str]:
    return lambda r: _ms(_get(r, "probe", "delay_ms", key))


def _stalls(record: Record) -> str:
    by = _get(record, "probe", "by_sweep") or {}
    hit = [k.split("=", 1)[1] for k, v in by.items() if v["stalled"]]
    return ", ".join(hit) or "none"


def _client_errors(record: Record) -> str:
    """Locust's error texts, shortened to their exception names."""
    seen: dict[str, int] = {}
    for text, n in (_get(record, "client_errors") or {}).items():
        # failures the locustfile marked itself read CatchResponseError('status 503')
        inner = re.fullmatch(r"CatchResponseError\((['\"])(.*)\1\)", text)
        name = inner.group(2) if inner else text.split("(", 1)[0]
        seen[name] = seen.get(name, 0) + n
    return _counts(dict(sorted(seen.items(), key=lambda kv: -kv[1])[:3]))


COMMON: list[Column] = [("HAProxy", lambda r: r["version"]["label"])]
LOAD: list[Column] = [
    ("req/s", _rps),
    ("p50", lambda r: _ms(_get(r, "load", "p50_ms"))),
    ("p99", lambda r: _ms(_get(r, "load", "p99_ms"))),
    ("failures", _failures),
]
PROBE: list[Column] = [
    ("connections", lambda r: _get(r, "probe", "connections")),
    ("close delay p50", _probe_delay("p50")),
    ("p90", _probe_delay("p90")),
    ("max", _probe_delay("max")),
    ("wire p50", lambda r: _ms(_get(r, "wire", "delay_ms", "p50"))),
    ("ends", lambda r: _counts(_get(r, "probe", "ends"))),
]

COLUMNS: dict[str, list[Column]] = {
    "smoke": [*COMMON, *LOAD, ("status", _status), ("flags", _flags), ("", _bound)],
    "calibration": [
        ("injected", lambda r: f"{r['params']['fin_delay_ms']} ms"),
        *PROBE,
        ("max |probe-wire|", lambda r: _ms(_get(r, "probe_vs_wire", "abs_diff_ms", "max"))),
        (f"probe off wire > {calibration.WIRE_TOLERANCE_MS:g} ms", calibration.off_wire_count),
        ("target late", calibration.target_late),
        ("verdict", calibration.verdict),
    ],
    "half-close": [*COMMON, *PROBE, ("flags", _flags)],
    "chunked-stall": [
        *COMMON,
        ("stalled", lambda r: f"{_get(r, 'probe', 'stalled')}/{_get(r, 'probe', 'connections')}"),
        ("stalled chunk sizes", _stalls),
        ("bytes min", lambda r: _get(r, "probe", "bytes", "min")),
        ("close delay p50", _probe_delay("p50")),
        ("max", _probe_delay("max")),
        ("ends", lambda r: _counts(_get(r, "probe", "ends"))),
        ("flags", _flags),
    ],
    "keepalive-vs-close": [
        *COMMON,
        *LOAD,
        ("TIME-WAIT client", lambda r: _census_peak(r, "client", "TIME-WAIT")),
        ("haproxy", lambda r: _census_peak(r, "haproxy", "TIME-WAIT")),
        ("backend", lambda r: _census_peak(r, "backend", "TIME-WAIT")),
        ("backend conn/s", lambda r: _get(r, "backend", "connections_per_s")),
        ("", _bound),
    ],
    "server-pool": [
        *COMMON,
        *LOAD,
        ("TIME-WAIT haproxy→backend", lambda r: _census_peak(r, "haproxy", "TIME-WAIT", "out")),
        # with http-server-close the backend is told to close, so its side keeps them
        ("on the backend", lambda r: _census_peak(r, "backend", "TIME-WAIT", "in")),
        ("backend conn/s", lambda r: _get(r, "backend", "connections_per_s")),
        ("", _bound),
    ],
    "connect-timeout": [
        *COMMON,
        ("requests", lambda r: _get(r, "haproxy", "total")),
        ("status", _status),
        ("flags", _flags),
        ("Tc p50", lambda r: _ms(_get(r, "haproxy", "timers", "Tc", "p50"))),
        ("retries", lambda r: _get(r, "haproxy", "retries_total")),
        ("econ", lambda r: _sum_servers(r, "econ")),
    ],
    "backend-closes-first": [
        *COMMON,
        ("closed after", _probe_delay("p50")),
        ("ends", lambda r: _counts(_get(r, "probe", "ends"))),
        ("FIN-WAIT-2 (haproxy←client)", lambda r: _census_peak(r, "haproxy", "FIN-WAIT-2", "in")),
        ("lasted", lambda r: _census_lasted(r, "haproxy", "FIN-WAIT-2", "in")),
        ("CLOSE-WAIT (haproxy→backend)", lambda r: _census_peak(r, "haproxy", "CLOSE-WAIT", "out")),
        ("lasted ", lambda r: _census_lasted(r, "haproxy", "CLOSE-WAIT", "out")),
        ("flags", _flags),
    ],
    "kernel-knobs": [
        *COMMON,
        *LOAD,
        ("TIME-WAIT client", lambda r: _census_peak(r, "client", "TIME-WAIT")),
        ("haproxy", lambda r: _census_peak(r, "haproxy", "TIME-WAIT")),
        ("closes FIN/RST (wire)", lambda r: _counts(_get(r, "wire", "end"))),
        ("", _bound),
    ],
    "fault": [
        *COMMON,
        ("fault", lambda r: r["params"]["fault"]),
        ("at", lambda r: f"{_get(r, 'fault_at_s')} s" if _get(r, "fault_at_s") else "-"),
        *LOAD,
        ("client saw", lambda r: _counts(_get(r, "client_status_codes"))),
        ("client errors", _client_errors),
        ("proxy logged", _status),
        ("flags", _flags),
    ],
}


def _sum_servers(record: Record, counter: str) -> Any:
    servers = _get(record, "haproxy_counters", "servers") or {}
    return sum(s.get(counter, 0) for s in servers.values()) if servers else "-"


def _params(record: Record) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(record["params"].items()))


# --- comparisons ---------------------------------------------------------------------------


def _samples(run_dir: Path, record: Record) -> list[float]:
    """Per-connection close delays (probe) or per-request latencies (Locust's histogram)."""
    folder = run_dir / record["cell"]
    probe = folder / "probe.jsonl"
    if probe.exists():
        return [s["delay_ms"] for s in map(json.loads, probe.read_text().splitlines())
                if s.get("delay_ms") is not None]  # fmt: skip
    values: list[float] = []
    for entry in json.loads((folder / "locust.json").read_text()):
        for ms, count in entry["response_times"].items():
            values.extend([float(ms)] * count)
    return values


# What each scenario is judged on: ("samples", metric, unit) or ("counts", what, hits, total).
METRIC: dict[str, tuple[str, ...]] = {
    "half-close": ("samples", "close delay"),
    "backend-closes-first": ("samples", "close delay"),
    "chunked-stall": ("counts", "connections stalled"),
    "connect-timeout": ("counts", "requests answered 5xx"),
    "smoke": ("samples", "latency"),
    "keepalive-vs-close": ("samples", "latency"),
    "server-pool": ("samples", "latency"),
    "kernel-knobs": ("samples", "latency"),
}


def _hits(record: Record, what: str) -> tuple[int, int]:
    if what == "connections stalled":
        return _get(record, "probe", "stalled", default=0), _get(
            record, "probe", "connections", default=0
        )
    return (
        _get(record, "haproxy", "status_classes", "5xx", default=0),
        _get(record, "haproxy", "total", default=0),
    )


def _notes(records: list[Record]) -> str | None:
    ends: dict[str, int] = defaultdict(int)
    for record in records:
        for end, n in (_get(record, "probe", "ends") or {}).items():
            ends[end] += n
    return ("end: " + ", ".join(f"{k} ×{v}" for k, v in ends.items())) if ends else None


def comparisons(
    run_dir: Path, records: list[Record], baseline: str, th: Thresholds
) -> list[Comparison]:
    """Every version against the baseline, per scenario and parameter set (repetitions pooled)."""
    groups: dict[tuple[str, str], dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    labels: dict[str, str] = {}
    for record in records:
        if record.get("status") == "ok" and record["scenario"] in METRIC:
            spec = record["version"]["spec"]
            labels[spec] = record["version"]["label"]
            groups[(record["scenario"], _params(record))][spec].append(record)
    found = []
    for (scenario, params), by_version in groups.items():
        if baseline not in by_version:
            continue
        kind, what = METRIC[scenario]
        base = by_version[baseline]
        for spec, cand in by_version.items():
            if spec == baseline:
                continue
            pair = (labels[baseline], labels[spec])
            if kind == "samples":
                comparison = compare.compare_samples(
                    f"{scenario} [{params}] {what}",
                    [v for r in base for v in _samples(run_dir, r)],
                    [v for r in cand for v in _samples(run_dir, r)],
                    labels=pair, thresholds=th,
                    baseline_notes=_notes(base), candidate_notes=_notes(cand),
                )  # fmt: skip
            else:
                bh, bt = map(sum, zip(*(_hits(r, what) for r in base), strict=True))
                ch, ct = map(sum, zip(*(_hits(r, what) for r in cand), strict=True))
                comparison = compare.compare_counts(
                    f"{scenario} [{params}] {what}", bh, bt, ch, ct,
                    labels=pair, thresholds=th, what=what,
                    baseline_notes=_notes(base), candidate_notes=_notes(cand),
                )  # fmt: skip
                # The sentence names the counts only: say which experiment they come from.
                head, _, rest = comparison.words.partition(": ")
                comparison = dataclasses.replace(
                    comparison, words=f"{head}: {scenario} [{params}]: {rest}"
                )
            found.append(comparison)
    return found


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
    """keepalive-vs-close: how much slower through HAProxy than straight to the backend."""
    lines = []
    by_key: dict[tuple[str, Any], dict[str, Record]] = defaultdict(dict)
    for r in records:
        if r["scenario"] == "keepalive-vs-close" and r.get("status") == "ok":
            by_key[(r["version"]["label"], r["params"]["keepalive"])][r["params"]["via"]] = r
    for (label, keepalive), pair in sorted(by_key.items()):
        if {"haproxy", "backend"} <= set(pair):
            via, direct = pair["haproxy"]["metrics"]["load"], pair["backend"]["metrics"]["load"]
            rps = 100 * (direct["rps"] - via["rps"]) / direct["rps"] if direct["rps"] else 0
            mean = (
                100 * (via["mean_ms"] - direct["mean_ms"]) / direct["mean_ms"]
                if direct["mean_ms"]
                else 0
            )
            lines.append(
                f"- {label}, keep-alive {'on' if keepalive else 'off'}: proxy overhead "
                f"{rps:+.1f} % req/s, {mean:+.1f} % mean latency (through HAProxy vs direct)."
            )
    return lines


def _chunk_table(records: list[Record], fmt: str) -> str:
    """chunked-stall: one row per chunk size, one column per version and TLS setting."""
    columns: dict[str, dict[str, str]] = {}
    for r in records:
        if r["scenario"] != "chunked-stall" or r.get("status") != "ok":
            continue
        name = f"{r['version']['label']} tls={r['params']['tls']}"
        for key, v in (_get(r, "probe", "by_sweep") or {}).items():
            cell = (
                f"STALL {v['bytes']} B, {_ms(v['delay_ms'])} {v['flag']}" if v["stalled"] else "ok"
            )
            columns.setdefault(name, {})[key.split("=", 1)[1]] = cell
    if not columns:
        return ""
    sizes = sorted({s for col in columns.values() for s in col}, key=int)
    rows = [[s, *(columns[c].get(s, "") for c in columns)] for s in sizes]
    if fmt == "github":
        return _md_table(rows, ["chunk size", *columns])
    return tabulate(rows, ["chunk size", *columns], tablefmt=fmt)


def _flag_lines(records: list[Record]) -> list[str]:
    seen: dict[str, int] = defaultdict(int)
    for r in records:
        for state, n in (_get(r, "haproxy", "termination_states") or {}).items():
            seen[state] += n
    return [
        f"- {_code(s)} ({n}×): {_one_line(haproxy_log.explain(s))}" for s, n in sorted(seen.items())
    ]


def _provenance(run: Record, run_dir: Path) -> list[str]:
    env = run.get("environment", {})
    lines = ["## Provenance", ""]
    lines += [
        f"- Run {_code(run['run'])}, started {run.get('started')}, "
        f"finished {run.get('finished', '?')}",
        f"- Matrix {_code(run.get('matrix_file'))} sha256 {_code(run.get('matrix_sha256', '?'))}",
        f"- Harness commit {_code(env.get('harness_commit'))}"
        + (" (with uncommitted changes)" if env.get("harness_dirty") else ""),
        f"- Kernel {env.get('kernel')}; {env.get('cpu_count')} × {env.get('cpu_model')}",
        f"- Docker {env.get('docker')}, Compose {env.get('compose')}, Python {env.get('python')}",
        "- TCP sysctls: " + ", ".join(f"{k}={v}" for k, v in env.get("tcp_sysctls", {}).items()),
        "",
        _md_table(
            [
                [name, i.get("tag"), i.get("id", "-"), i.get("reported", "-")]
                for name, i in run.get("images", {}).items()
            ],
            ["image", "tag", "id", "HAProxy reported"],
        ),
        "",
    ]
    for vv in sorted(run_dir.glob("*/haproxy-vv.txt")):
        head = vv.read_text().splitlines()
        if head and not any(head[0] in line for line in lines):
            lines += [*_fenced(head[:12]), ""]
    return lines


def markdown(run_dir: Path, records: list[Record], found: list[Comparison], run: Record) -> str:
    ok = sum(1 for r in records if r.get("status") == "ok")
    matrix = run.get("matrix", {})
    lines = [
        f"# {matrix.get('name', run_dir.name)}: run {run_dir.name}",
        "",
        matrix.get("description", ""),
        "",
        f"{ok}/{len(records)} cells measured. Baseline for verdicts: "
        f"`{run.get('baseline')}`. Every number below is computed from the files in this "
        "run's folder (`python -m harness report <run>` rebuilds it).",
        "",
    ]
    if found:
        lines += ["## Verdicts", ""]
        lines += [f"- {_one_line(c.words)}" for c in found]
        headers = ["comparison", "version", "delta", "test", "p", "effect", "verdict"]
        lines += ["", _md_table(_verdict_rows(found), headers), ""]
    by_scenario: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_scenario[r["scenario"]].append(r)
    for name, rows in by_scenario.items():
        scenario = scenarios.SCENARIOS.get(name)
        lines += [f"## {name}", ""]
        if scenario:
            lines += [scenario.summary, "", f"Field note: {scenario.field_note}.", ""]
        load = rows[0]["load"]
        lines += [_load_line(load), ""]
        columns = COLUMNS.get(name, COLUMNS["smoke"])
        for params, group in _by_params(rows).items():
            lines += [f"Parameters: {_code(params)}", ""]
            table = [[_cell(r, fn) for _, fn in columns] for r in group]
            lines += [_md_table(table, [h for h, _ in columns]), ""]
        if name == "chunked-stall":
            lines += ["Per chunk size:", "", _chunk_table(rows, "github"), ""]
        if name == "keepalive-vs-close":
            lines += [*_proxy_overhead(rows), ""]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines += ["## Failed cells", ""]
        lines += [
            f"- {_code(r['cell'])}: {(r.get('error') or '?').splitlines()[0]}" for r in failed
        ]
        lines.append("")
    flags = _flag_lines(records)
    if flags:
        lines += ["## Termination flags seen, as HAProxy documents them", "", *flags, ""]
    lines += _provenance(run, run_dir)
    return "\n".join(lines) + "\n"


def _load_line(load: Record) -> str:
    if load["mode"] == "probe":
        return "Load: the close-delay probe (concurrent connections, one per sample)."
    if load["mode"] == "open-loop":
        return (
            f"Load: Locust open loop, {load['rate']:g} requests/s for {load['duration_s']:g} s "
            "per cell; latency from each request's intended send time (no coordinated "
            "omission). `client-bound` marks cells whose load generator used ≥ 90 % of a core."
        )
    return (
        f"Load: Locust closed loop, {load['users']} users, {load['duration_s']:g} s per cell. "
        "`client-bound` marks cells whose load generator used ≥ 90 % of a core."
    )


def _cell(record: Record, fn: Callable[[Record], Any]) -> Any:
    if record.get("status") != "ok":
        return "failed"
    value = fn(record)
    return "-" if value is None else value


def _by_params(rows: list[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in rows:
        groups[_params(r)].append(r)
    return groups


def _csv_rows(run_dir: Path, records: list[Record]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        folder = run_dir / r["cell"]
        rows.append({
            "cell": r["cell"], "status": r.get("status"), "scenario": r["scenario"],
            "version": r["version"]["label"], "reported": r["version"].get("reported"),
            "params": _params(r), "repetition": r["repetition"], "load_mode": r["load"]["mode"],
            "rps": _get(r, "load", "rps"), "p50_ms": _get(r, "load", "p50_ms"),
            "p99_ms": _get(r, "load", "p99_ms"), "failures": _get(r, "load", "failures"),
            "requests": _get(r, "load", "requests"),
            "close_delay_p50_ms": _get(r, "probe", "delay_ms", "p50"),
            "close_delay_max_ms": _get(r, "probe", "delay_ms", "max"),
            "stalled": _get(r, "probe", "stalled"),
            "flags": _flags(r) if r.get("status") == "ok" else "",
            "client_bound": _get(r, "client_bound"),
            "raw_files": " ".join(
                str((folder / f).relative_to(run_dir)) for f in RAW_FILES if (folder / f).exists()
            ),
        })  # fmt: skip
    return rows


def rebuild(run_dir: Path) -> str:
    """Recompute every cell from its raw files, then write every output; return report.md."""
    run = results.read_json(run_dir / "run.json")
    records = []
    for path in sorted(run_dir.glob("*/cell.json")):
        record = results.read_json(path)
        if record.get("status") == "ok":
            record["metrics"] = cell_metrics.compute(path.parent, record.get("target", "haproxy"))
            results.write_json(path, record)
        records.append(record)
    thresholds = Thresholds(**run.get("matrix", {}).get("verdicts", {}))
    found = comparisons(run_dir, records, run.get("baseline") or "", thresholds)
    text = markdown(run_dir, records, found, run)
    (run_dir / "report.md").write_text(text)
    results.write_json(run_dir / "verdicts.json", [dataclasses.asdict(c) for c in found])
    rows = _csv_rows(run_dir, records)
    if rows:
        with (run_dir / "results.csv").open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    results.write_json(
        run_dir / "results.json",
        [
            {**r, "raw_files": row["raw_files"].split()}
            for r, row in zip(records, rows, strict=True)
        ],
    )
    from harness import plots  # matplotlib is slow to import: only when writing HTML

    (run_dir / "report.html").write_text(plots.html_report(run_dir, records, found, run, text))
    write_index(run_dir.parent)
    return text


def write_index(results_dir: Path) -> None:
    """results/index.md: every run with its headline verdicts."""
    lines = ["# Runs", ""]
    for run_dir in sorted(results_dir.iterdir(), reverse=True):
        report = run_dir / "report.md"
        if not report.exists():
            continue
        headline = [
            line
            for line in report.read_text().splitlines()
            if line.startswith("- ") and "—" in line
        ]
        lines.append(f"## [{run_dir.name}]({run_dir.name}/report.md)")
        lines += headline[:8] or ["- (no comparisons)"]
        lines.append("")
    (results_dir / "index.md").write_text("\n".join(lines) + "\n")


def verdict_screen(run_dir: Path) -> str:
    """The verdicts of a run on one screen: words first, then the table."""
    found = [Comparison(**c) for c in results.read_json(run_dir / "verdicts.json")]
    if not found:
        return f"No comparison could be made; see {run_dir / 'report.md'}."
    lines = [f"- {c.words}" for c in found]
    table = tabulate(
        _verdict_rows(found),
        ["comparison", "version", "delta", "test", "p", "effect", "verdict"],
        tablefmt="simple",
    )
    verdicts = " / ".join(sorted({c.verdict for c in found}))
    return "\n".join([*lines, "", table.replace("**", ""), "", f"verdict: {verdicts}"])


def side_by_side(old: Record, new: Record) -> str:
    """A re-run next to the original: the headline numbers of the cell's scenario."""
    columns = COLUMNS.get(old["scenario"], COLUMNS["smoke"])
    rows = [
        [header, _cell(old, fn), _cell(new, fn)]
        for header, fn in columns
        if header not in ("HAProxy", "")
    ]
    title = f"{old['cell']}: {old['version']['label']} · {old['scenario']} · {_params(old)}"
    return title + "\n\n" + tabulate(rows, ["", "original", "re-run"], tablefmt="simple")
