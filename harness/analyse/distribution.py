"""Percentiles and summaries shared by every measurement: one definition, numpy's.

Every percentile in a table, verdict, plot or CSV is the nearest rank (Hyndman & Fan
1996, definition 1; numpy's ``method="inverted_cdf"``): the smallest observed value
with at least q of the sample at or below it. It is always a value that was measured,
and a p50 reads the same in a cell's table and in the verdict that compares it.

Load latencies come from the client's HDR histogram (``latency.hdr``, HdrHistogram with
3 significant digits): each recorded value stands for its bucket, reported as the top of
it (HdrHistogram's "highest equivalent value"), so a latency percentile is a measured
value to within 0.1 %. The same nearest rank applies to a histogram, through
``weighted_quantiles`` (numpy's weighted ``inverted_cdf``), never HdrHistogram's own
``get_value_at_percentile``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

METHOD = "inverted_cdf"
# How reports name it, next to their numbers.
DEFINITION = (
    "percentiles are nearest-rank (numpy method 'inverted_cdf'): always a measured value "
    "(load latencies: HDR-quantised to 3 significant digits, i.e. within 0.1 %)"
)


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0 < q <= 1) of a non-empty sample (its order does not matter)."""
    return float(np.quantile(np.asarray(ordered, dtype=float), q, method=METHOD))


def weighted_quantiles(
    values: Sequence[float], counts: Sequence[int], qs: Sequence[float]
) -> list[float]:
    """Nearest-rank q-quantiles of a histogram: ``values[i]`` observed ``counts[i]`` times.

    The same definition as ``nearest_rank`` on the expanded sample (numpy's weighted
    ``inverted_cdf``), without expanding it. Raises ValueError if no count is positive.
    """
    weights = np.asarray(counts, dtype=float)
    if weights.sum() <= 0:
        raise ValueError("an empty histogram has no quantile")
    found = np.quantile(np.asarray(values, dtype=float), qs, weights=weights, method=METHOD)
    return [float(v) for v in found]


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
