"""The field notes' own clients' outcome of a load cell, from the ``client.json`` each
writes (clients-native/: Python requests, Node's http, Go's net/http; one format):

- ``requests``: responses received (any status), ``status``: their count per status code;
- ``errors``: requests that got no response, per kind (an exception's class name in
  Python, an error code in Node, the errno or ``timeout`` in Go);
- ``latency_us``: every request's latency, responses and errors alike, as [whole µs,
  count] pairs (each client's monotonic clock, from the send to the body's end);
- ``connections``: the connections the client opened; ``ports``: the distinct local
  (source) ports they used, as seed 003 counted them;
- ``duration_us``: from the first request's start to the last one's end.

A run folder may come from someone else: the file is validated, and anything else is a
ValueError naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from harness.analyse import client_file

NATIVE_FILE = "client.json"
SOURCE_NATIVE = "the client's own µs latencies"
US_PER_MS = 1000
# The record's bounds (harness.analyse.record): counts within int64, a latency up to
# 10^12 µs, at most 10^15 samples, at most 10^9 responses a second.
MAX_LATENCY_US = 10**12
MAX_SAMPLES = 10**15
MAX_RPS = 10**9
Count = Annotated[int, Field(ge=0, le=MAX_SAMPLES)]
# A status code, or an error's kind: a short word, nothing a table could be broken by.
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class NativeResult(BaseModel):
    """What client.json holds (module docstring)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    generator: Literal["requests", "node", "go"]
    requests: Count
    duration_us: Count
    status: dict[Word, Count] = Field(max_length=1000)
    errors: dict[Word, Count] = Field(max_length=1000)
    latency_us: list[tuple[Annotated[int, Field(ge=0, le=MAX_LATENCY_US)], Count]] = Field(
        max_length=100_000_000
    )
    connections: Count
    ports: Count

    @model_validator(mode="after")
    def _consistent(self) -> NativeResult:
        if sum(self.status.values()) != self.requests:
            raise ValueError("status counts do not add up to requests")
        if sum(c for _, c in self.latency_us) > MAX_SAMPLES:
            raise ValueError(f"more than {MAX_SAMPLES} latency samples in all")
        if self.requests > self.duration_us * MAX_RPS // 10**6 + 1:
            raise ValueError(f"more than {MAX_RPS} requests per second over duration_us")
        if self.ports > self.connections:
            raise ValueError("more distinct ports than connections")
        return self


def read(path: Path) -> NativeResult:
    """The validated contents of a client.json. Raises ValueError naming the file."""
    return client_file.read(
        NativeResult, path, "the client.json the harness's native clients write"
    )


def histogram(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(values in ms, counts) of the client's latencies, values ascending."""
    pairs = sorted(read(path).latency_us)
    values = np.array([v for v, _ in pairs], dtype=float) / US_PER_MS
    return values, np.array([c for _, c in pairs], dtype=np.int64)


def aggregated(path: Path) -> dict[str, Any]:
    """The load summary in the keys Locust's has (``requests``: every request sent,
    ``failures``: those answered >= 400 or not answered, ``rps``: requests per second)
    plus ``generator``, ``errors`` by kind, ``connections`` and ``ports``."""
    result = read(path)
    failed_status = sum(n for code, n in result.status.items() if not code.isdigit()
                        or int(code) >= 400)  # fmt: skip
    errors = sum(result.errors.values())
    sent = result.requests + errors
    seconds = result.duration_us / 1e6
    return {
        "requests": sent,
        "failures": failed_status + errors,
        "rps": sent / seconds if seconds > 0 else 0.0,
        "generator": result.generator,
        "errors": dict(result.errors),
        "connections": result.connections,
        "ports": result.ports,
    }


def status_counts(path: Path) -> dict[str, int]:
    """The responses per status code the client saw."""
    return dict(read(path).status)
