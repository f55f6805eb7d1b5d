"""wrk's outcome of a load cell, from the ``wrk.json`` its script wrote
(clients/wrk/harness.lua): requests, errors, req/s and the latency histogram.

wrk 4.1 counts, over the whole load (its SCRIPTING and src/wrk.c):
- ``requests``: responses completed (any status);
- ``errors.status``: responses with a status above 399;
- ``errors.connect`` / ``read`` / ``write``: socket errors (a refused or reset connection,
  a read that failed); ``errors.timeout``: requests without a response within --timeout;
- the latency of each completed request in whole µs, from its send to its response's end.

A run folder may come from someone else: the file is validated, and anything else is a
ValueError naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.analyse import client_file

WRK_FILE = "wrk.json"
SOURCE_WRK = "wrk's histogram (µs)"
US_PER_MS = 1000
_COUNT = Field(ge=0, le=10**15)
# The bounds the analysis and the cell record hold (harness.analyse.record: floats up to
# 1e15, counts within int64): a latency of up to 10^12 µs (11.6 days; wrk's histogram
# stops at its --timeout), and at most 10^15 samples in all, so that no count or sum of
# counts overflows numpy's int64.
MAX_LATENCY_US = 10**12
MAX_SAMPLES = 10**15
# And at most 10^9 responses per second over the run (about 1000 times what a 2-core host
# pushes through HAProxy here), so that req/s stays a number a record holds.
MAX_RPS = 10**9
Micros = Annotated[int, Field(ge=0, le=MAX_LATENCY_US)]
Samples = Annotated[int, Field(ge=0, le=MAX_SAMPLES)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Errors(_Strict):
    connect: int = _COUNT
    read: int = _COUNT
    write: int = _COUNT
    status: int = _COUNT
    timeout: int = _COUNT


class WrkResult(_Strict):
    """What wrk.json holds. ``latency_us``: the histogram as [µs, count] pairs, values
    ascending; or, when walking it would have cost the script too long (a tail seconds
    wide), ``latency_quantiles_us``: the values at n evenly spaced quantiles."""

    requests: int = _COUNT
    duration_us: int = _COUNT
    bytes: int = Field(ge=0, le=10**18)
    threads: int = Field(ge=1, le=64)
    errors: Errors
    latency_us: list[tuple[Micros, Samples]] | None = Field(None, max_length=100_000_000)
    latency_quantiles_us: list[Micros] | None = Field(None, min_length=1, max_length=10_000_000)

    @model_validator(mode="after")
    def _one_latency_form(self) -> WrkResult:
        if (self.latency_us is None) == (self.latency_quantiles_us is None):
            raise ValueError("exactly one of latency_us and latency_quantiles_us")
        if self.latency_us is not None and sum(c for _, c in self.latency_us) > MAX_SAMPLES:
            raise ValueError(f"more than {MAX_SAMPLES} latency samples in all")
        if self.requests > self.duration_us * MAX_RPS // 10**6:
            raise ValueError(f"more than {MAX_RPS} requests per second over duration_us")
        # wrk counts a status > 399 in response_complete, with the request (src/wrk.c)
        if self.errors.status > self.requests:
            raise ValueError("errors.status counts more responses than requests")
        return self


def read(path: Path) -> WrkResult:
    """The validated contents of a wrk.json. Raises ValueError naming the file.

    One cell's analysis asks three times (load summary, latency histogram, statuses):
    the file is parsed once per version of it (path, size, mtime)."""
    return client_file.read(WrkResult, path, "the wrk.json the harness's wrk script writes")


def histogram(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(values in ms, counts) of wrk's latency histogram, values ascending.

    From quantiles (see :class:`WrkResult`): each of the n values stands for an equal
    share of the requests (counts summing to ``requests``, the rounding spread so that
    none is lost), so percentiles read from it are within one quantile step.
    """
    result = read(path)
    if result.latency_us is not None:
        pairs = sorted(result.latency_us)
        values = np.array([v for v, _ in pairs], dtype=float) / US_PER_MS
        return values, np.array([c for _, c in pairs], dtype=np.int64)
    quantiles = np.sort(np.array(result.latency_quantiles_us or [], dtype=float))
    n, total = len(quantiles), max(result.requests, len(quantiles))
    shares = np.diff(np.floor(np.arange(n + 1) * total / n)).astype(np.int64)
    return quantiles / US_PER_MS, shares


def aggregated(path: Path) -> dict[str, Any]:
    """The load summary, in the keys Locust's has (``requests``, ``failures``, ``rps``),
    plus wrk's ``errors`` by kind and ``threads``. ``failures``: responses with a status
    above 399 plus requests lost to a socket error or a timeout (connect errors are
    connections that never carried one, and count once each). Latency comes from
    :func:`histogram` (harness.analyse.latency)."""
    result = read(path)
    e = result.errors
    seconds = result.duration_us / 1e6
    return {
        "requests": result.requests,
        "failures": e.status + e.connect + e.read + e.write + e.timeout,
        "rps": result.requests / seconds if seconds > 0 else 0.0,
        "generator": "wrk",
        "threads": result.threads,
        "errors": e.model_dump(),
    }


def status_counts(path: Path) -> dict[str, int]:
    """What wrk knows of the statuses (it keeps no per-code count): responses below 400
    and from 400 up."""
    result = read(path)
    counts = {"<400": result.requests - result.errors.status, ">=400": result.errors.status}
    return {k: v for k, v in counts.items() if v}
