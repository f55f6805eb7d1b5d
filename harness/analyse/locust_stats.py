"""Locust's final stats (``locust.json``, written by ``--json-file``), as numbers.

For an open-loop run only the "intended" entries count (latency from the intended
send time: no coordinated omission).

The JSON holds every request, with a histogram of response times; the CSV summary is
written on a timer and can miss the last second of a run, so it is used only when the
JSON is missing: a client killed mid-load (the fault scenario) never writes it.

Distributed (``load.workers``), the master's ``locust.json`` can miss the workers' last
reports (it waits 0.5 s for them: clients/locustfiles/http_load.py), so each worker
writes the sum of every report it sent, ``locust.w<pid>.json`` in the same format, and
those parts are the cell's stats (:func:`stats_files`): the same entries, added up.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from harness.analyse import latency

# Where a distributed cell's counts came from (LoadMetrics.source); a single process's
# locust.json needs no saying.
SOURCE_WORKERS = "the workers' own stats (locust.w<pid>.json: every report each sent the master)"


def stats_files(folder: Path) -> list[Path]:
    """The cell's Locust stats: one ``locust.w<pid>.json`` per worker when the workers
    wrote them (distributed), else the master's or the single process's ``locust.json``,
    else none (Locust did not finish)."""
    workers = sorted(folder.glob("locust.w*.json"))
    if workers:
        return workers
    alone = folder / "locust.json"
    return [alone] if alone.exists() else []


def _entries(parts: list[Path]) -> list[dict[str, Any]]:
    """Every part's entries, the open loop's "intended" ones only: an open-loop run times
    each request from its intended send time, and those are its numbers (Locust's
    per-send timings of the same requests stay aside)."""
    entries = [e for part in parts for e in json.loads(part.read_text())]
    return [e for e in entries if e["name"] == "intended"] or entries


def aggregated(parts: Path | list[Path]) -> dict[str, Any]:
    """Requests, failures, req/s, and latency from Locust's rounded histogram, over one
    ``locust.json`` or several parts (:func:`stats_files`), whose entries add up.

    ``rps``: requests / (last request - first entry's start), epoch seconds, Locust's
    own ``total_rps`` definition (stats.py StatsEntry). The latency fields (``p50_ms``,
    ``p90_ms``, ``p99_ms`` nearest rank over Locust's whole-ms buckets; ``mean_ms`` and
    ``max_ms`` from Locust's unrounded sums) are the fallback for a folder without
    ``latency.hdr``; cell_metrics replaces them with the HDR histogram's where the client
    wrote one. ``source`` is :data:`SOURCE_WORKERS` for worker parts. Raises ValueError
    when no part holds a request.
    """
    files = [parts] if isinstance(parts, Path) else parts
    entries = _entries(files)
    if not entries:
        raise ValueError(f"{', '.join(map(str, files))}: Locust recorded no request")
    requests = sum(e["num_requests"] for e in entries)
    start, end = _window(entries)
    total_ms = sum(e["total_response_time"] for e in entries)
    buckets = latency.summary(*latency.merged(latency.read_locust(p) for p in files))
    found = {
        "requests": requests,
        "failures": sum(e["num_failures"] for e in entries),
        "rps": requests / (end - start) if end > start else 0.0,
        "mean_ms": round(total_ms / requests, 3) if requests else None,
        "max_ms": round(max(e["max_response_time"] or 0 for e in entries), 3),
        **{key: buckets[key] for key in latency.PERCENTILES},
        "latency_source": latency.SOURCE_LOCUST,
    }
    if any(p.name != "locust.json" for p in files):
        found["source"] = SOURCE_WORKERS
    return found


def _window(entries: list[dict[str, Any]]) -> tuple[float, float]:
    start = min(e["start_time"] for e in entries)
    return start, max(e["last_request_timestamp"] or start for e in entries)


def window(parts: Path | list[Path]) -> tuple[float, float]:
    """Epoch seconds of the first entry's start and the last request, over one
    ``locust.json`` or several parts (:func:`stats_files`)."""
    return _window(_entries([parts] if isinstance(parts, Path) else parts))


def from_csv(stats_csv: Path) -> dict[str, Any]:
    """The last "Aggregated" row Locust wrote on its timer (at most a second old)."""
    with stats_csv.open() as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "rps": float(row["Requests/s"]),
        "p50_ms": float(row["50%"]) if row["50%"] != "N/A" else None,
        "p99_ms": float(row["99%"]) if row["99%"] != "N/A" else None,
        "source": "locust_stats.csv (Locust did not finish: its last periodic summary)",
        "latency_source": "Locust's periodic summary (whole ms)",
    }


def failure_files(folder: Path) -> list[Path]:
    """Locust's failures CSV: one ``locust_failures.w<pid>.csv`` per worker when the
    workers wrote them (as :func:`stats_files`), else ``locust_failures.csv``."""
    workers = sorted(folder.glob("locust_failures.w*.csv"))
    if workers:
        return workers
    alone = folder / "locust_failures.csv"
    return [alone] if alone.exists() else []


def errors(failures_csv: Path | list[Path]) -> dict[str, int]:
    """What the clients saw fail, by Locust's error text (e.g. ConnectionResetError(...)),
    added up over one failures CSV or several parts (columns Name, Error, Occurrences).
    An open-loop run's failures are its "intended" rows only, as its counts (each
    failed "GET" fails its "intended" event with the same text); a run without them
    (closed loop, or an open loop recorded before they carried statuses) counts all."""
    rows: list[dict[str, str]] = []
    for path in [failures_csv] if isinstance(failures_csv, Path) else failures_csv:
        with path.open() as f:
            rows += list(csv.DictReader(f))
    rows = [r for r in rows if r.get("Name") == "intended"] or rows
    seen: Counter[str] = Counter()
    for row in rows:
        seen[row["Error"]] += int(row["Occurrences"])
    return dict(seen.most_common())
