"""TCP-state census: the file ``observers/census.sh`` writes, its parser, and its summary.

One census file covers one network namespace (client, haproxy or backend). Each sample
is a block::

    S 1732484400.123456
    ESTAB in 12
    TIME-WAIT out 3040

``in`` sockets were accepted by this namespace's servers (local port is a listen port),
``out`` sockets were opened from it; a (state, direction) absent from a block had a
count of zero. Lines starting with ``#`` are metadata (``# census v1 interval_s=0.1 ...``).

Times in the summary are seconds relative to the start of load, so cells line up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

DIRECTIONS = ("in", "out")
MAX_TIMELINE_POINTS = 200

Key = tuple[str, str]  # (ss state name, direction)


@dataclass
class Census:
    """Samples of one namespace: ``counts[key][i]`` is the count at ``timestamps[i]``."""

    timestamps: list[float] = field(default_factory=list)
    counts: dict[Key, list[int]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)


def parse(path: Path | str) -> Census:
    """Read a census file.

    A last sample cut short (census.sh killed mid-write: no final newline, or a
    malformed line in it) is dropped; damage anywhere else raises ValueError, since
    census.sh cannot have written it. census.sh writes each block with one write(), so
    a block cut exactly at a line end, which would go unnoticed, is not expected.
    """
    text = Path(path).read_text()
    complete, _, unfinished = text.rpartition("\n")
    samples: list[tuple[float, dict[Key, int]]] = []
    meta: dict[str, str] = {}
    bad_line: tuple[int, str] | None = None
    for number, line in enumerate(complete.split("\n") if complete else [], start=1):
        if bad_line is not None:
            # Only the last sample may be damaged: a damaged line followed by a new
            # sample means the file is corrupt, not truncated.
            if line.startswith("S "):
                raise ValueError(f"{path}:{bad_line[0]}: not a census line: {bad_line[1]!r}")
            continue
        if line.startswith("#"):
            meta.update(_parse_meta(line))
            continue
        parsed = _parse_line(line)
        if isinstance(parsed, float):
            samples.append((parsed, {}))
        elif parsed is not None and samples and parsed[0] not in samples[-1][1]:
            samples[-1][1][parsed[0]] = parsed[1]
        else:
            bad_line = (number, line)
    # An unfinished header starts a sample that has nothing yet; an unfinished count
    # line ("S" alone may be one: SYN-SENT) leaves the sample before it incomplete.
    if (bad_line is not None or (unfinished and not unfinished.startswith("S "))) and samples:
        samples.pop()
    keys = sorted({key for _, sample in samples for key in sample})
    return Census(
        timestamps=[ts for ts, _ in samples],
        counts={key: [sample.get(key, 0) for _, sample in samples] for key in keys},
        meta=meta,
    )


def _parse_line(line: str) -> float | tuple[Key, int] | None:
    """A header's timestamp, a ((state, direction), count), or None if malformed."""
    parts = line.split()
    try:
        if len(parts) == 2 and parts[0] == "S":
            return float(parts[1])
        if len(parts) == 3 and parts[1] in DIRECTIONS and parts[0].isupper():
            count = int(parts[2])
            return ((parts[0], parts[1]), count) if count >= 0 else None
    except ValueError:
        pass
    return None


def _parse_meta(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.lstrip("#").split() if "=" in word)


def analyse(
    census: Census, load_start: float, load_end: float, deadline: float | None = None
) -> dict[str, Any]:
    """Baseline, peak, final value, drain time and timeline of every (state, direction).

    ``load_start``/``load_end``/``deadline`` are epoch seconds on the clock census.sh
    used. ``drain_s`` only looks at samples up to ``deadline`` (all if None): a count
    still above its baseline in the last of them did not drain (None).
    """
    ts = census.timestamps
    gaps = [b - a for a, b in pairwise(ts)]
    states: dict[str, dict[str, Any]] = {}
    for (state, direction), counts in sorted(census.counts.items()):
        states[f"{state}/{direction}"] = _summarise(ts, counts, load_start, load_end, deadline)
    return {
        "samples": len(ts),
        "rate_hz": _rate_hz(ts),
        "max_gap_s": round(max(gaps), 3) if gaps else None,
        "captured_s": [_rel(ts[0], load_start), _rel(ts[-1], load_start)] if ts else None,
        "states": states,
        "totals": _totals(census, load_start),
    }


def _rate_hz(ts: list[float]) -> float | None:
    """Samples per second achieved over the capture (None below two distinct times)."""
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return None
    return round((len(ts) - 1) / (ts[-1] - ts[0]), 2)


def _summarise(
    ts: list[float], counts: list[int], load_start: float, load_end: float, deadline: float | None
) -> dict[str, Any]:
    before = [c for t, c in zip(ts, counts, strict=True) if t < load_start]
    baseline = max(before, default=0)
    peak = max(counts)
    return {
        "baseline": baseline,
        "peak": peak,
        "peak_at_s": _rel(ts[counts.index(peak)], load_start),
        "final": counts[-1],
        "drain_s": _drain_s(ts, counts, baseline, load_end, deadline),
        "timeline": downsample([[_rel(t, load_start), c] for t, c in zip(ts, counts, strict=True)]),
    }


def _drain_s(
    ts: list[float], counts: list[int], baseline: int, load_end: float, deadline: float | None
) -> float | None:
    """Seconds from load_end to the first sample of the final run at or below baseline.

    A count between two samples is unknown, so a drain is placed at the first sample
    that shows it (the value is late by up to one sampling interval), and a capture
    with no sample at or after load_end shows nothing drained (None).
    """
    window = [(t, c) for t, c in zip(ts, counts, strict=True) if deadline is None or t <= deadline]
    if not window or window[-1][0] < load_end or window[-1][1] > baseline:
        return None
    drained_at = window[0][0]
    for (_, c), (t_next, _) in pairwise(window):
        if c > baseline:
            drained_at = t_next
    return round(max(0.0, drained_at - load_end), 3)


def _totals(census: Census, load_start: float) -> dict[str, dict[str, Any]]:
    """Per state, in and out added sample by sample (the peak of the sum, not the sum
    of the peaks: in and out need not peak together)."""
    summed: dict[str, list[int]] = {}
    for (state, _), counts in census.counts.items():
        into = summed.get(state, [0] * len(counts))
        summed[state] = [a + b for a, b in zip(into, counts, strict=True)]
    totals = {}
    for state, counts in sorted(summed.items()):
        peak = max(counts)
        totals[state] = {
            "peak": peak,
            "peak_at_s": _rel(census.timestamps[counts.index(peak)], load_start),
            "final": counts[-1],
        }
    return totals


def totals_by_state(result: dict[str, Any]) -> dict[str, int]:
    """{state: peak of in+out} from an :func:`analyse` result, for report tables."""
    return {state: total["peak"] for state, total in result["totals"].items()}


def downsample(points: list[list[Any]], max_points: int = MAX_TIMELINE_POINTS) -> list[list[Any]]:
    """At most ``max_points`` of a ``[[t, count], ...]`` step series, the peak among them.

    Runs of an equal count shrink to their first and last point (lossless for a step
    plot). If that is still too many, time is cut into ``max_points // 2`` equal
    buckets, each keeping its lowest and highest point, so spikes and dips survive.
    """
    last = len(points) - 1
    kept = [
        p
        for i, p in enumerate(points)
        if i in (0, last) or p[1] != points[i - 1][1] or p[1] != points[i + 1][1]
    ]
    if len(kept) <= max_points:
        return kept
    n_buckets = max_points // 2
    t0 = points[0][0]
    width = (points[-1][0] - t0) / n_buckets or 1.0
    buckets: list[list[list[Any]]] = [[] for _ in range(n_buckets)]
    for p in points:
        buckets[min(int((p[0] - t0) / width), n_buckets - 1)].append(p)
    out: list[list[Any]] = []
    for bucket in filter(None, buckets):
        # min() and max() return the first of equal points, so the series' first peak,
        # which peak_at_s names, is the one kept.
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        out.extend([low] if low is high else sorted([low, high], key=lambda p: p[0]))
    return out


def _rel(t: float, origin: float) -> float:
    return round(t - origin, 3)
