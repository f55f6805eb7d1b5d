"""Per-request load latency at microsecond resolution, from the client's HDR histogram.

The locustfile (clients/locustfiles/http_load.py) records every request's latency in
whole microseconds into an HdrHistogram (1 µs .. 1 h, 3 significant digits) and writes
it to ``latency.hdr`` in the cell folder, in HdrHistogram's standard compressed base64
encoding ("HISTFAAAA..."), which any HdrHistogram implementation decodes. Closed loop:
Locust's own per-request time (unrounded). Open loop: the time from the *intended* send
time only. Failed requests count, as they always did in Locust's numbers.

A run folder recorded before that file existed has only Locust's ``locust.json``, whose
histogram Locust rounds to whole ms (below 100 ms; coarser above): that is the fallback,
and every number or verdict taken from it says so (``SOURCE_LOCUST``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from harness.analyse import distribution, h2load, native, wrk

HDR_FILE = "latency.hdr"
SOURCE_HDR = "HDR histogram (µs)"
SOURCE_LOCUST = "Locust's whole-ms buckets"
US_PER_MS = 1000
# The histogram's shape, as the locustfile creates it (recording and reading agree).
LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 3_600_000_000, 3
PERCENTILES = {"p50_ms": 0.50, "p90_ms": 0.90, "p99_ms": 0.99}


def read_hdr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Recorded (values in ms, counts) of an encoded HdrHistogram file, values ascending.

    Each value is the top of its HDR bucket ("highest equivalent value") in µs, divided
    by 1000: within 0.1 % of every latency it stands for. Raises ValueError when the file
    does not decode as an HdrHistogram.
    """
    text = path.read_text().strip()
    try:
        histogram = HdrHistogram.decode(text.encode("ascii"))
    except Exception as exc:  # the codec raises bare Exceptions on garbage
        raise ValueError(f"{path}: not an encoded HdrHistogram ({exc})") from exc
    # The recorded buckets straight from the counts array: what hdrh's recorded iterator
    # yields (value_iterated_to: the highest equivalent value of each non-empty bucket),
    # without its Python walk over every bucket up to the largest (~1.4 M steps over a
    # default matrix's cells, 13 s of a 20 s `harness report`).
    counts_all = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len]
    (index,) = np.nonzero(counts_all)
    values = np.array(
        [
            histogram.get_highest_equivalent_value(histogram.get_value_from_index(int(i)))
            for i in index
        ],
        dtype=float,
    )
    return values / US_PER_MS, counts_all[index].astype(np.int64)


def client_parts(folder: Path, name: str, ext: str) -> list[Path]:
    """The client's own ``<name>.<ext>``, or one per Locust worker process
    (``<name>.w<pid>.<ext>``, distributed mode: clients/locustfiles/http_load.py)."""
    alone = folder / f"{name}.{ext}"
    return [alone] if alone.exists() else sorted(folder.glob(f"{name}.w*.{ext}"))


def hdr_files(folder: Path) -> list[Path]:
    """The cell's HDR files: ``latency.hdr``, or one per Locust worker process."""
    return client_parts(folder, "latency", "hdr")


def merged(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One histogram (values ascending, counts) from several: counts of equal values add
    (HDR files of one shape share their bucket values)."""
    found = list(parts)
    if not found:
        return np.array([], dtype=float), np.array([], dtype=np.int64)
    values = np.concatenate([v for v, _ in found])
    keys, where = np.unique(values, return_inverse=True)  # sorted, ascending
    total = np.zeros(len(keys), dtype=np.int64)
    np.add.at(total, where, np.concatenate([c for _, c in found]).astype(np.int64))
    return keys.astype(float), total


def read_locust(locust_json: Path) -> tuple[np.ndarray, np.ndarray]:
    """Locust's rounded latency histogram (values in ms, counts), the fallback.

    For an open-loop run only the "intended" entries (latency from the intended send
    time); Locust's per-send timings of the same requests stay aside.
    """
    entries = json.loads(locust_json.read_text())
    entries = [e for e in entries if e.get("name") == "intended"] or entries
    histogram: dict[float, int] = {}
    for entry in entries:
        for ms, count in entry["response_times"].items():
            histogram[float(ms)] = histogram.get(float(ms), 0) + int(count)
    values = sorted(histogram)
    return np.array(values, dtype=float), np.array([histogram[v] for v in values], np.int64)


def histogram(folder: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The cell's latency histogram (values in ms, counts, source), or None if unmeasured.

    ``latency.hdr`` when the Locust client wrote it, ``wrk.json`` when wrk drove the
    load, ``h2load-requests.tsv`` when h2load did, ``client.json`` when a native client
    did, else Locust's ``locust.json`` (a folder recorded before the HDR file existed).
    """
    parts = hdr_files(folder)
    if parts:
        return (*merged(read_hdr(p) for p in parts), SOURCE_HDR)
    if (folder / wrk.WRK_FILE).exists():
        return (*wrk.histogram(folder / wrk.WRK_FILE), wrk.SOURCE_WRK)
    if (folder / h2load.REQUESTS_FILE).exists():
        return (*h2load.histogram(folder / h2load.REQUESTS_FILE), h2load.SOURCE_H2LOAD)
    if (folder / native.NATIVE_FILE).exists():
        return (*native.histogram(folder / native.NATIVE_FILE), native.SOURCE_NATIVE)
    if (folder / "locust.json").exists():
        return (*read_locust(folder / "locust.json"), SOURCE_LOCUST)
    return None


def summary(values: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """count, mean_ms, p50_ms, p90_ms, p99_ms and max_ms of a histogram, in ms to the µs.

    Percentiles are distribution's nearest rank over the recorded values; the mean is
    the count-weighted mean of those values. Statistics are None for an empty histogram.
    """
    total = int(counts.sum())
    if total == 0:
        return {"count": 0, "mean_ms": None, "max_ms": None, **dict.fromkeys(PERCENTILES)}
    found = distribution.weighted_quantiles(values, counts, list(PERCENTILES.values()))
    return {
        "count": total,
        "mean_ms": round(float(np.average(values, weights=counts)), 3),
        "max_ms": round(float(values[counts > 0].max()), 3),
        **{key: round(v, 3) for key, v in zip(PERCENTILES, found, strict=True)},
    }


def samples(folder: Path) -> tuple[list[float], str | None]:
    """Every request's latency in ms (the histogram expanded), and its source.

    ([], None) when the cell measured no latency.
    """
    found = histogram(folder)
    if found is None:
        return [], None
    values, counts, source = found
    return np.repeat(values, counts).tolist(), source
