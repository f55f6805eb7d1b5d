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


# The idle server-side pool in the haproxy namespace's census, and where each side of a
# closed connection ends: the side that sends the first FIN holds TIME-WAIT (RFC 9293
# section 3.6), Linux for a fixed 60 s (TCP_TIMEWAIT_LEN), the other passes through
# CLOSE-WAIT and LAST-ACK.
POOL = ("ESTAB", "out")


def pool_watch(
    proxy: Census, backend: Census, load_start: float, load_end: float
) -> dict[str, Any]:
    """The proxy's idle server-side connections after the load, from two censuses.

    ``proxy`` is the proxy's namespace (ESTAB/out: its connections to the backend),
    ``backend`` the backend's; ``load_start``/``load_end`` are epoch seconds on their clock
    (``load_end``: the load's last response where the client says, else its end).
    Returns counts above the pre-load baseline and seconds after ``load_end``:

    - ``at_load_end``: ESTAB proxy→backend in the last sample at or before the load's end
      (the first after it when there is none);
    - ``left``, ``watched_s``: the same in the last sample, and how long after the load
      that sample was taken;
    - ``last_change_s``: when the count took its final value (None: it never changed after
      the load);
    - ``closed_by_backend`` / ``closed_by_proxy``: rises of TIME-WAIT in the backend's
      ``in`` / the proxy's ``out`` sockets after the load, summed sample to sample: the
      connections each side closed first. A TIME-WAIT ends 60 s after it began, so an
      expiry in the same sample interval hides a close: the sums are lower bounds once
      the watch reaches 60 s after the load's start;
    - ``closed_without_time_wait``: the fall of the pool (``at_load_end - left``) less
      those two sums, never below 0: connections that left TIME-WAIT on neither side,
      i.e. were ended by an RST (RFC 9293 section 3.5.2), as HAProxy ends the idle
      server connections it purges (measured: pool-purge-delay, no TIME-WAIT anywhere);
    - ``close_wait_peak`` / ``fin_wait_2_peak``: the most proxy→backend sockets in
      CLOSE-WAIT (the backend closed, the proxy has not yet) and FIN-WAIT-2 (the proxy
      closed, the backend has not yet) after the load.

    All None when the proxy's census has no sample after the load's end.
    """
    ts = proxy.timestamps
    after = [i for i, t in enumerate(ts) if t >= load_end]
    if not after:
        return dict.fromkeys(
            ("at_load_end", "left", "watched_s", "last_change_s", "closed_by_backend",
             "closed_by_proxy", "closed_without_time_wait", "close_wait_peak",
             "fin_wait_2_peak"),
        )  # fmt: skip
    estab = _above_baseline(proxy, POOL, load_start)
    before = [i for i, t in enumerate(ts) if t <= load_end]
    at_end = estab[before[-1]] if before else estab[after[0]]
    final = estab[-1]
    changed = [i for i in after[1:] if estab[i] != estab[i - 1]]
    by_backend = _rises(backend, ("TIME-WAIT", "in"), load_end)
    by_proxy = _rises(proxy, ("TIME-WAIT", "out"), load_end)
    return {
        "at_load_end": at_end,
        "left": final,
        "watched_s": _rel(ts[-1], load_end),
        "last_change_s": _rel(ts[changed[-1]], load_end) if changed else None,
        "closed_by_backend": by_backend,
        "closed_by_proxy": by_proxy,
        "closed_without_time_wait": max(0, at_end - final - (by_backend or 0) - (by_proxy or 0)),
        "close_wait_peak": max(_series(proxy, ("CLOSE-WAIT", "out"))[i] for i in after),
        "fin_wait_2_peak": max(_series(proxy, ("FIN-WAIT-2", "out"))[i] for i in after),
    }


def _series(census: Census, key: Key) -> list[int]:
    """A state's count in every sample (zeros when never seen)."""
    return census.counts.get(key, [0] * len(census.timestamps))


def _above_baseline(census: Census, key: Key, load_start: float) -> list[int]:
    """A state's counts less its pre-load most (never below 0); zeros when never seen."""
    counts, ts = _series(census, key), census.timestamps
    baseline = max((c for t, c in zip(ts, counts, strict=True) if t < load_start), default=0)
    return [max(0, c - baseline) for c in counts]


def _rises(census: Census, key: Key, since: float) -> int | None:
    """The rises of a state's count from one sample to the next, from the last sample at
    or before ``since`` on (None: no sample after it)."""
    ts, counts = census.timestamps, _series(census, key)
    if not ts or ts[-1] < since:
        return None
    start = max([i for i, t in enumerate(ts) if t <= since], default=0)
    return sum(max(0, b - a) for a, b in pairwise(counts[start:]))
