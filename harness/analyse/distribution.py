"""Percentiles and summaries shared by every measurement: one definition, numpy's.

Every percentile in a table, verdict, plot or CSV is the nearest rank (Hyndman & Fan
1996, definition 1; numpy's ``method="inverted_cdf"``): the smallest observed value
with at least q of the sample at or below it. It is always a value that was measured,
and a p50 reads the same in a cell's table and in the verdict that compares it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

METHOD = "inverted_cdf"
# How reports name it, next to their numbers.
DEFINITION = "percentiles are nearest-rank (numpy method 'inverted_cdf'): always a measured value"


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0 < q <= 1) of a non-empty sample (its order does not matter)."""
    return float(np.quantile(np.asarray(ordered, dtype=float), q, method=METHOD))


def median(values: Sequence[float]) -> float:
    """The nearest-rank p50 of a non-empty sample."""
    return nearest_rank(values, 0.5)


def summary(values: Iterable[float], digits: int = 3) -> dict[str, Any]:
    """count, min, p50, p90, p99, max; the statistics are None for an empty input."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.quantile(np.asarray(ordered, dtype=float), [0.5, 0.9, 0.99], method=METHOD)
    return {
        "count": len(ordered),
        "min": round(ordered[0], digits),
        "p50": round(float(p50), digits),
        "p90": round(float(p90), digits),
        "p99": round(float(p99), digits),
        "max": round(ordered[-1], digits),
    }
