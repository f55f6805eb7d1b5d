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

from harness.analyse import latency


def aggregated(locust_json: Path) -> dict[str, Any]:
    """Requests, failures, req/s, and latency from Locust's rounded histogram.

    The latency fields (``p50_ms``, ``p90_ms``, ``p99_ms`` nearest rank over Locust's
    whole-ms buckets; ``mean_ms`` and ``max_ms`` from Locust's unrounded sums) are the
    fallback for a folder without ``latency.hdr``; cell_metrics replaces them with the
    HDR histogram's where the client wrote one. Raises ValueError on an empty file.
    """
    entries = json.loads(locust_json.read_text())
    if not entries:
        raise ValueError(f"{locust_json}: Locust recorded no request")
    # An open-loop run times each request from its intended send time ("intended");
    # those are its numbers. Locust's per-send timings of the same requests stay aside.
    intended = [e for e in entries if e["name"] == "intended"]
    entries = intended or entries
    requests = sum(e["num_requests"] for e in entries)
    start = min(e["start_time"] for e in entries)
    end = max(e["last_request_timestamp"] or start for e in entries)
    total_ms = sum(e["total_response_time"] for e in entries)
    buckets = latency.summary(*latency.read_locust(locust_json))
    return {
        "requests": requests,
        "failures": sum(e["num_failures"] for e in entries),
        "rps": requests / (end - start) if end > start else 0.0,
        "mean_ms": round(total_ms / requests, 3) if requests else None,
        "max_ms": round(max(e["max_response_time"] or 0 for e in entries), 3),
        **{key: buckets[key] for key in latency.PERCENTILES},
        "latency_source": latency.SOURCE_LOCUST,
    }


def window(locust_json: Path) -> tuple[float, float]:
    """Epoch seconds of the first and the last request."""
    entries = json.loads(locust_json.read_text())
    start = min(e["start_time"] for e in entries)
    return start, max(e["last_request_timestamp"] or start for e in entries)


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


def errors(failures_csv: Path) -> dict[str, int]:
    """What the clients saw fail, by Locust's error text (e.g. ConnectionResetError(...))."""
    seen: Counter[str] = Counter()
    with failures_csv.open() as f:
        for row in csv.DictReader(f):
            seen[row["Error"]] += int(row["Occurrences"])
    return dict(seen.most_common())
