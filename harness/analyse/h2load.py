"""h2load's outcome of a load cell: its summary (the output the runner keeps as
``h2load.log``) and its per-request log (``h2load-requests.tsv``, written by
``--log-file``), nghttp2 1.52's h2load(1).

The summary counts, over the measurement (src/h2load.cc):
- ``done``: requests whose stream closed, any outcome; ``succeeded``: those with a 2xx
  or 3xx status; ``failed``: done without one (an error status, or a stream reset or
  cut off); ``errored``: the failed ones that never got a response; ``timeout``:
  requests cut by h2load's own timeouts (none are set here);
- ``finished in``: the measurement's length.

The per-request log has a row per request, tab-separated: the start time in µs since
the epoch, the HTTP status (-1 for a stream that failed), and the µs until the end of
its response. Latency percentiles come from it, over the requests that got a status,
with the project's one percentile definition (harness.analyse.latency.summary).

A run folder may come from someone else: anything but what h2load writes is a
ValueError naming the file.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import numpy as np

SUMMARY_FILE = "h2load.log"
REQUESTS_FILE = "h2load-requests.tsv"
SOURCE_H2LOAD = "h2load's per-request log (µs)"
US_PER_MS = 1000
# The summary is a few KB; the per-request log about 25 bytes a request: 1 GiB is 40
# million requests, far beyond a 10-minute cell on this 2-core host (~10^7).
MAX_SUMMARY_BYTES = 1 << 20
MAX_LOG_BYTES = 1 << 30
# The record's bounds (harness.analyse.record): µs start times and latencies fit int64,
# a latency of at most 10^12 µs (11.6 days).
MAX_LATENCY_US = 10**12

_COUNT = r"(\d{1,15})"
_REQUESTS = re.compile(
    rf"^requests: {_COUNT} total, {_COUNT} started, {_COUNT} done, {_COUNT} succeeded, "
    rf"{_COUNT} failed, {_COUNT} errored, {_COUNT} timeout$",
    re.MULTILINE,
)
_FINISHED = re.compile(r"^finished in (\d{1,12}(?:\.\d{1,6})?)(us|ms|s), ", re.MULTILINE)
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_THREAD = re.compile(r"^spawning thread #(\d{1,2}): ", re.MULTILINE)
_COUNTS = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")


def summary(path: Path) -> dict[str, Any]:
    """h2load's summary from its output at ``path``: ``{"seconds": float, "threads",
    "total", "started", "done", "succeeded", "failed", "errored", "timeout": int}``
    (threads: its "spawning thread #N" lines). Raises
    ValueError naming the file when it holds no complete summary (h2load was killed, or
    the file is not h2load's)."""
    text = _text(path, MAX_SUMMARY_BYTES)
    requests, finished = _REQUESTS.search(text), _FINISHED.search(text)
    threads = len(set(_THREAD.findall(text)))
    if requests is None or finished is None or not threads:
        raise ValueError(
            f"{path}: no 'finished in' and 'requests:' summary of h2load in it (h2load "
            "did not finish, or this is not its output). Re-measure the cell."
        )
    counts = dict(zip(_COUNTS, map(int, requests.groups()), strict=True))
    if not counts["succeeded"] <= counts["done"] or not counts["errored"] <= counts["failed"]:
        raise ValueError(f"{path}: h2load's counts do not add up ({requests.group(0)})")
    seconds = float(finished.group(1)) * _UNIT_S[finished.group(2)]
    return {"seconds": seconds, "threads": threads, **counts}


def requests(path: Path) -> np.ndarray:
    """The per-request log at ``path`` as an int64 array of rows (start µs since the
    epoch, status or -1, latency µs). Raises ValueError naming the file for anything
    but rows of three integers in range."""
    info = path.stat()
    return _requests(str(path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _requests(path: str, size: int, mtime_ns: int) -> np.ndarray:
    """Parsed once per version of the file (the load summary, the latency histogram
    and the statuses all ask)."""
    text = _text(Path(path), MAX_LOG_BYTES)
    lines = text.count("\n") + (0 if not text or text.endswith("\n") else 1)
    try:
        values = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        values = None
    if values is None or len(values) != 3 * lines:
        raise ValueError(
            f"{path}: not h2load's per-request log (rows of start µs, status, latency µs, "
            "tab-separated). Re-measure the cell; an edited file is not read."
        )
    rows = values.reshape(-1, 3)
    status, latency = rows[:, 1], rows[:, 2]
    if ((status != -1) & ((status < 100) | (status > 999))).any() or (
        (rows[:, 0] < 0) | (latency < 0) | (latency > MAX_LATENCY_US)
    ).any():
        raise ValueError(f"{path}: a status or time out of range in h2load's per-request log")
    return rows


def histogram(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(values in ms, counts) of the latency of every request that got a status,
    values ascending, exact to the µs."""
    rows = requests(path)
    values, counts = np.unique(rows[rows[:, 1] != -1, 2], return_counts=True)
    return values.astype(float) / US_PER_MS, counts.astype(np.int64)


def window(path: Path) -> tuple[float, float] | None:
    """(first request's start, last response's end), epoch seconds: the load's window
    by the client's own clock (the host's: containers share its kernel). None when no
    request was logged."""
    rows = requests(path)
    if not len(rows):
        return None
    return float(rows[:, 0].min()) / 1e6, float((rows[:, 0] + rows[:, 2]).max()) / 1e6


def aggregated(path: Path) -> dict[str, Any]:
    """The load summary (from h2load's output at ``path``) in the keys Locust's and wrk's
    have (``requests``: requests done, ``failures``: h2load's failed plus timed out,
    ``rps``: done per second of measurement), with ``generator``, ``threads`` and
    h2load's counts by kind in ``errors``.
    Latency comes from :func:`histogram` (harness.analyse.latency)."""
    got = summary(path)
    seconds = got["seconds"]
    return {
        "requests": got["done"],
        "failures": got["failed"] + got["timeout"],
        "rps": got["done"] / seconds if seconds > 0 else 0.0,
        "generator": "h2load",
        "threads": got["threads"],
        "errors": {k: got[k] for k in ("failed", "errored", "timeout")},
    }


def status_counts(path: Path) -> dict[str, int]:
    """Requests per HTTP status in the per-request log; "none" for streams that failed
    without one (h2load's -1)."""
    codes, counts = np.unique(requests(path)[:, 1], return_counts=True)
    return {
        ("none" if code == -1 else str(code)): int(n)
        for code, n in zip(codes.tolist(), counts.tolist(), strict=True)
    }


def _text(path: Path, limit: int) -> str:
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path}: more than {limit:,} bytes, more than h2load writes here")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not h2load's output (not UTF-8 text)") from None
