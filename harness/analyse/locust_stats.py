"""Locust's final stats (``locust.json``, written by ``--json-file``), as numbers.

For an open-loop run only the "intended" entries count (latency from the intended
send time: no coordinated omission).

The JSON holds every request, with a histogram of response times; the CSV summary is
written on a timer and can miss the last second of a run, so it is used only when the
JSON is missing: a client killed mid-load (the fault scenario) never writes it.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

PERCENTILES = {"p50_ms": 0.50, "p90_ms": 0.90, "p99_ms": 0.99}


def aggregated(locust_json: Path) -> dict[str, Any]:
    """Requests, failures, req/s and latency percentiles over every request entry."""
    entries = json.loads(locust_json.read_text())
    if not entries:
        raise ValueError(f"{locust_json}: Locust recorded no request")
    # An open-loop run times each request from its intended send time ("intended");
    # those are its numbers. Locust's per-send timings of the same requests stay aside.
    intended = [e for e in entries if e["name"] == "intended"]
    entries = intended or entries
    histogram: dict[float, int] = {}
    for entry in entries:
        for ms, count in entry["response_times"].items():
            histogram[float(ms)] = histogram.get(float(ms), 0) + count
    requests = sum(e["num_requests"] for e in entries)
    start = min(e["start_time"] for e in entries)
    end = max(e["last_request_timestamp"] or start for e in entries)
    total_ms = sum(e["total_response_time"] for e in entries)
    return {
        "requests": requests,
        "failures": sum(e["num_failures"] for e in entries),
        "rps": requests / (end - start) if end > start else 0.0,
        "mean_ms": round(total_ms / requests, 2) if requests else None,
        "max_ms": round(max(e["max_response_time"] or 0 for e in entries), 2),
        **{key: percentile(histogram, q) for key, q in PERCENTILES.items()},
    }


def window(locust_json: Path) -> tuple[float, float]:
    """Epoch seconds of the first and the last request."""
    entries = json.loads(locust_json.read_text())
    start = min(e["start_time"] for e in entries)
    return start, max(e["last_request_timestamp"] or start for e in entries)


def percentile(histogram: dict[float, int], q: float) -> float | None:
    """Nearest-rank percentile of a {value: count} histogram (Locust rounds its values)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank, seen = q * total, 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


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
    }


def errors(failures_csv: Path) -> dict[str, int]:
    """What the clients saw fail, by Locust's error text (e.g. ConnectionResetError(...))."""
    seen: Counter[str] = Counter()
    with failures_csv.open() as f:
        for row in csv.DictReader(f):
            seen[row["Error"]] += int(row["Occurrences"])
    return dict(seen.most_common())
