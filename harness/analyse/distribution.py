"""Percentiles and summaries shared by every measurement (nearest rank: always a real value)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def nearest_rank(ordered: list[float], q: float) -> float:
    """The q-quantile (0 < q <= 1) of an already sorted, non-empty list."""
    # round() first: 0.9 * 10 is 9.000000000000002 in floating point, whose ceil is 10.
    return ordered[max(0, math.ceil(round(q * len(ordered), 9)) - 1)]


def summary(values: Iterable[float], digits: int = 3) -> dict[str, Any]:
    """count, min, p50, p90, p99, max; the statistics are None for an empty input."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None}
    pick = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
    return {
        "count": len(ordered),
        "min": round(ordered[0], digits),
        **{key: round(nearest_rank(ordered, q), digits) for key, q in pick.items()},
        "max": round(ordered[-1], digits),
    }
