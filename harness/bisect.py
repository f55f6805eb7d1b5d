"""``python -m harness bisect``: the first bad version between a good one and a bad one.

A bisect walks an ordered list of candidates, ``good`` first and ``bad`` last:

- releases: the versions the harness can obtain between the two (Debian's packages and
  the catalogue's pinned tarballs, one spec per version), or a list given with
  ``--candidates``;
- commits: with ``git:<path>@<rev>`` ends, the commits of ``good..bad`` on the ancestry
  path (``git rev-list --ancestry-path``), oldest first, each built by the git spec.

Each step runs cells of one candidate (a *round* is ``--repetitions`` cells) and judges
them with the *signal*: a predicate on a metric (``stalled connections > 0``,
``close delay p50 > 1 s``, ``CLOSE-WAIT peak > 10``) or a verdict against the good
version (``regression``, ``change``). A step is

- ``bad`` / ``good`` when the signal decides it at ``alpha`` (see :class:`Predicate` and
  :class:`VerdictSignal` for the tests);
- ``undecided`` when it still does not after ``--max-rounds`` rounds: never a guess;
- ``skipped`` when its image cannot be built (``git bisect skip``).

Undecided and skipped candidates are left out of the search, as ``git bisect skip``
leaves them; when the first bad one could be one of them, the result names them all
instead of picking one. The search itself (:func:`search`) is plain binary search and
costs about log2(N) steps.

Everything lands in one folder: ``bisect.md`` (also printed), ``bisect.json``, and per
step a folder whose rounds are ordinary run folders (their own ``report.md``): the
step's evidence.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from tabulate import tabulate

from harness import results, runner
from harness.analyse import latency, probe_samples
from harness.analyse.distribution import nearest_rank
from harness.analyse.record import CellRecord
from harness.errors import ImageError, SpecError
from harness.plan import scenarios, spec, versions
from harness.plan.versions import VersionSpec
from harness.progress import Progress
from harness.quote import shown

Decision = Literal["good", "bad", "undecided", "skipped"]
Record = CellRecord

# --- the signal: metrics a predicate can name ------------------------------------------

Kind = Literal["share", "quantile", "per_cell"]


@dataclass(frozen=True)
class Metric:
    """One metric a predicate can name.

    ``kind``: ``share`` (events among connections or requests: a binomial count),
    ``quantile`` (a percentile of per-connection or per-request samples, in ms) or
    ``per_cell`` (one number per cell, e.g. a census peak). ``what`` says what it counts.
    """

    name: str
    kind: Kind
    what: str
    quantile: float | None = None  # for kind quantile: 0.5, 0.9, 0.99


_STATES = {"close_wait": "CLOSE-WAIT", "fin_wait2": "FIN-WAIT-2", "time_wait": "TIME-WAIT"}

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("stalled_connections", "share", "probe connections stalled (probe_samples)"),
        Metric("open_connections", "share", "probe connections HAProxy never closed (end open)"),
        Metric("reset_connections", "share", "probe connections HAProxy ended with a RST"),
        Metric("responses_5xx", "share", "requests HAProxy answered 5xx (its log)"),
        Metric("client_failures", "share", "requests that failed at the client (Locust)"),
        *[
            Metric(f"close_delay_p{int(q * 100)}", "quantile", "close delay (probe), ms", q)
            for q in (0.5, 0.9, 0.99)
        ],
        *[
            Metric(f"latency_p{int(q * 100)}", "quantile", "request latency (Locust), ms", q)
            for q in (0.5, 0.9, 0.99)
        ],
        *[
            Metric(f"{key}_peak", "per_cell", f"{state} peak in HAProxy's namespace (census)")
            for key, state in _STATES.items()
        ],
        Metric("requests_per_s", "per_cell", "requests per second (Locust)"),
    ]
}

# Units a predicate's number may carry, per metric kind: durations in ms.
_DURATION_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
_PREDICATE = re.compile(
    r"\s*(?P<metric>[A-Za-z0-9][A-Za-z0-9 _-]*?)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<number>[0-9]{1,12}(?:\.[0-9]{1,12})?)\s*(?P<unit>[A-Za-zµ%]{0,3})\s*"
)
Op = Literal[">", ">=", "<", "<="]
MAX_SIGNAL_CHARS = 200


def _metric_name(text: str) -> str:
    """``'CLOSE-WAIT peak'`` -> ``close_wait_peak``: case, spaces and dashes do not matter."""
    name = re.sub(r"[\s-]+", "_", text.strip().lower()).replace("wait_2", "wait2")
    return {"stalled": "stalled_connections", "5xx": "responses_5xx"}.get(name, name)


@dataclass(frozen=True)
class Observed:
    """A step's measurements of one metric, pooled over its cells.

    share: ``hits`` of ``total`` (and the cells they came from); quantile: ``samples``
    (ms); per_cell: ``per_cell`` (one value per cell)."""

    cells: int
    hits: int = 0
    total: int = 0
    samples: tuple[float, ...] = ()
    per_cell: tuple[float, ...] = ()


@dataclass(frozen=True)
class Judgement:
    """What a signal made of a step's cells: the decision, the value in words, and the
    test behind it (p-values where there is one)."""

    decision: Decision
    value: str
    why: str


def _holds(value: float, op: Op, threshold: float) -> bool:
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
    }[op]


@dataclass(frozen=True)
class Predicate:
    """``<metric> <op> <number>[unit]``: the step is bad when it holds.

    Thresholds, in the metric's own terms: a duration for a quantile (``1 s``, ``200ms``;
    a unit is required), a share for a share metric (``5%``) or, without ``%``, a count
    per cell (``> 0``: any one), a plain number for a per-cell metric.

    Decisions at ``alpha``:

    - share: bad when an exact binomial test says the share exceeds the threshold
      (p < alpha; with a threshold of 0 a single event decides); good when the predicate
      does not hold and the share is significantly below the bad version's own share
      (one-sided exact binomial test against the lower end of that share's one-sided
      Clopper-Pearson interval at 1 - alpha): enough connections were seen that the bad
      version would have shown it;
    - quantile: the exact order-statistic test of the quantile against the threshold
      (``scipy.stats.quantile_test``, Conover 1999, 3.2): bad when significantly above,
      good when significantly below;
    - per_cell: a per-cell number has no within-cell sample to test, so every cell must
      agree: bad when it holds in all of them, good in none, undecided when they differ.

    ``<`` and ``<=`` mirror every test.
    """

    text: str
    metric: Metric
    op: Op
    threshold: float  # ms for quantiles, a share (0..1) or a per-cell count
    percent: bool = False  # share thresholds: given as a percentage

    @property
    def upward(self) -> bool:
        return self.op in (">", ">=")

    def share_threshold(self, obs: Observed) -> float:
        """The threshold as a share of connections or requests."""
        if self.percent:
            return self.threshold / 100
        per_cell = obs.total / obs.cells if obs.cells else 0
        return min(1.0, self.threshold / per_cell) if per_cell else math.inf

    def observe(self, records: Sequence[Record], base: Path) -> Observed:
        """This metric from ``records`` of ok cells; each cell's raw files are under
        ``base / record.cell``."""
        ok = [r for r in records if r.ok]
        m = self.metric
        if m.kind == "share":
            pairs = [_share(m.name, r) for r in ok]
            return Observed(len(ok), sum(h for h, _ in pairs), sum(t for _, t in pairs))
        if m.kind == "quantile":
            samples: list[float] = []
            for r in ok:
                samples += _samples(m.name, base / r.cell)
            return Observed(len(ok), samples=tuple(samples))
        values = [_per_cell(m.name, r) for r in ok]
        return Observed(len(ok), per_cell=tuple(v for v in values if v is not None))

    def judge(self, obs: Observed, bad: Observed | None, alpha: float) -> Judgement:
        """Decide a step from its pooled observation; ``bad`` is the bad version's own
        (None while judging the bad version itself)."""
        kind = self.metric.kind
        if obs.cells == 0:
            return Judgement("undecided", "no cell ran", "every cell failed")
        if kind == "share":
            return self._judge_share(obs, bad, alpha)
        if kind == "quantile":
            return self._judge_quantile(obs, alpha)
        return self._judge_per_cell(obs)

    def _judge_share(self, obs: Observed, bad: Observed | None, alpha: float) -> Judgement:
        from scipy import stats  # a second of start-up: only when a bisect judges

        name = self.metric.name.replace("_", " ")
        value = f"{obs.hits}/{obs.total} {name} ({obs.cells} cell(s))"
        if obs.total == 0:
            return Judgement("undecided", value, "nothing was counted")
        share, t = obs.hits / obs.total, self.share_threshold(obs)
        up = self.upward
        if up and t == 0:
            if obs.hits > 0:
                return Judgement("bad", value, f"{obs.hits} seen, the predicate is > 0")
            p_bad = 1.0
        elif not (0 <= t <= 1):
            p_bad = 1.0
        else:
            p_bad = stats.binomtest(obs.hits, obs.total, t, "greater" if up else "less").pvalue
        if p_bad < alpha:
            return Judgement("bad", value, f"binomial test against {t:.3g}: p={p_bad:.2g}")
        if _holds(share, self.op, t) or bad is None or bad.total == 0:
            return Judgement("undecided", value, f"binomial test against {t:.3g}: p={p_bad:.2g}")
        # The bad version's share, taken at the end of its confidence interval nearest
        # to the threshold (one-sided Clopper-Pearson at 1 - alpha): a bad version seen
        # a few times is not taken for a frequent one.
        ci = stats.binomtest(bad.hits, bad.total).proportion_ci(1 - 2 * alpha, method="exact")
        ref = ci.low if up else ci.high
        if (up and ref <= share) or (not up and ref >= share):
            why = f"not below the bad version's share {ref:.3g}"
            return Judgement("undecided", value, why)
        p_good = stats.binomtest(obs.hits, obs.total, ref, "less" if up else "greater").pvalue
        bound = ">=" if up else "<="
        why = f"binomial test against the bad version's share ({bound} {ref:.3g}): p={p_good:.2g}"
        return Judgement("good" if p_good < alpha else "undecided", value, why)

    def _judge_quantile(self, obs: Observed, alpha: float) -> Judgement:
        from scipy import stats

        q = self.metric.quantile or 0.5
        if not obs.samples:
            return Judgement("undecided", f"no sample ({obs.cells} cell(s))", "nothing measured")
        x = np.asarray(obs.samples, dtype=float)
        value = f"p{int(q * 100)} {nearest_rank(x, q):.1f} ms of {len(x)} ({obs.cells} cell(s))"
        above = stats.quantile_test(x, q=self.threshold, p=q, alternative="greater").pvalue
        below = stats.quantile_test(x, q=self.threshold, p=q, alternative="less").pvalue
        p_bad, p_good = (above, below) if self.upward else (below, above)
        why = f"quantile test against {self.threshold:g} ms: p={min(p_bad, p_good):.2g}"
        if p_bad < alpha:
            return Judgement("bad", value, why)
        if p_good < alpha:
            return Judgement("good", value, why)
        return Judgement("undecided", value, why)

    def _judge_per_cell(self, obs: Observed) -> Judgement:
        if not obs.per_cell:
            return Judgement("undecided", f"not measured ({obs.cells} cell(s))", "no value")
        value = ", ".join(f"{v:g}" for v in obs.per_cell)
        held = [_holds(v, self.op, self.threshold) for v in obs.per_cell]
        if all(held):
            return Judgement("bad", value, f"holds in all {len(held)} cell(s)")
        if not any(held):
            return Judgement("good", value, f"holds in none of {len(held)} cell(s)")
        return Judgement("undecided", value, f"holds in {sum(held)} of {len(held)} cells")


def _share(name: str, record: Record) -> tuple[int, int]:
    """(hits, total) of a share metric in one cell.json."""
    m = record.m
    probe = m.probe
    if name == "stalled_connections":
        return (probe.stalled, probe.connections) if probe else (0, 0)
    if name in ("open_connections", "reset_connections"):
        end = "open" if name == "open_connections" else "rst"
        return (probe.ends.get(end, 0), probe.connections) if probe else (0, 0)
    if name == "responses_5xx":
        log = m.haproxy
        return (log.status_classes.get("5xx", 0), log.total) if log else (0, 0)
    return (m.load.failures, m.load.requests) if m.load else (0, 0)


def _samples(name: str, folder: Path) -> list[float]:
    """Per-connection close delays (probe.jsonl) or per-request latencies (the client's
    µs histogram, else Locust's ms buckets: analyse.latency), in ms."""
    if name.startswith("close_delay"):
        return [
            float(s["delay_ms"])
            for s in probe_samples.read(folder / "probe.jsonl")
            if isinstance(s.get("delay_ms"), int | float)
        ]
    return [float(v) for v in latency.samples(folder)[0]]


def _per_cell(name: str, record: Record) -> float | None:
    m = record.m
    if name == "requests_per_s":
        return None if m.load is None else float(m.load.rps)
    state = _STATES[name.removesuffix("_peak")]
    census = (m.census or {}).get("haproxy")
    if not census:
        return None
    total = census.totals.get(state)
    return float(total.peak if total else 0)


def _metric_table() -> str:
    return "\n".join(f"  {m.name:22} {m.kind:9} {m.what}" for m in METRICS.values())


def parse_predicate(text: str, where: str = "--signal") -> Predicate:
    """Parse ``<metric> <op> <number>[unit]``. Raises SpecError with the metric table,
    the form and an example for anything else."""
    form = (
        f"Write <metric> <op> <number>[unit], op one of > >= < <=, e.g. "
        f"'stalled connections > 0', 'close delay p50 > 1 s', 'CLOSE-WAIT peak > 10', "
        f"or regression / change for a verdict against the good version. Metrics:\n"
        f"{_metric_table()}"
    )
    match = _PREDICATE.fullmatch(text) if len(text) <= MAX_SIGNAL_CHARS else None
    if match is None:
        raise SpecError(f"{where}: {shown(text)} is not a signal. {form}")
    name = _metric_name(match["metric"])
    metric = METRICS.get(name)
    if metric is None:
        close = difflib.get_close_matches(name, list(METRICS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SpecError(f"{where}: no metric {shown(match['metric'])}{hint}. {form}")
    number, unit = float(match["number"]), match["unit"]
    op: Op = match["op"]  # type: ignore[assignment]
    if metric.kind == "quantile":
        if unit not in _DURATION_MS:
            raise SpecError(
                f"{where}: {metric.name} is a duration: give the number a unit (us, ms, s), "
                f"e.g. '{metric.name} {op} 1 s'."
            )
        return Predicate(text, metric, op, number * _DURATION_MS[unit])
    if metric.kind == "share" and unit == "%":
        if number > 100:
            raise SpecError(f"{where}: {shown(text)}: a share is at most 100%. {form}")
        return Predicate(text, metric, op, number, percent=True)
    if unit:
        allowed = "none, or % for a share" if metric.kind == "share" else "none"
        raise SpecError(
            f"{where}: {metric.name} takes no unit {shown(unit)} (units: {allowed}). {form}"
        )
    return Predicate(text, metric, op, number)


class Signal(Protocol):
    text: str
    # The end judged first: the other end's judgement may need it as a reference.
    first_end: Literal["good", "bad"]

    def judge_step(
        self, step: Evidence, good: Evidence | None, bad: Evidence | None, alpha: float
    ) -> Judgement: ...


@dataclass
class Evidence:
    """The cells of one candidate so far: its spec text, and its records with each
    ``cell`` relative to the bisect folder ``base``."""

    spec: str
    base: Path
    records: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class PredicateSignal:
    predicate: Predicate
    first_end: Literal["good", "bad"] = "bad"  # a share is judged against the bad one's

    @property
    def text(self) -> str:
        return self.predicate.text

    def judge_step(
        self, step: Evidence, good: Evidence | None, bad: Evidence | None, alpha: float
    ) -> Judgement:
        obs = self.predicate.observe(step.records, step.base)
        ref = self.predicate.observe(bad.records, bad.base) if bad is not None else None
        return self.predicate.judge(obs, ref, alpha)


@dataclass(frozen=True)
class VerdictSignal:
    """A verdict against the good version, as a run's report gives it (report.comparisons:
    Fisher's exact test on counts, Mann-Whitney U on samples, the run's thresholds).

    bad: a verdict of the step against the good version matches ``fail_on``
    (regression; or change: regression, improvement or changed outcome). good: the bad
    version's cells, judged against the step's, match it (the step is as far from the bad
    version as the good one is). Otherwise undecided."""

    fail_on: Literal["regression", "change"]
    thresholds: Any  # analyse.compare.Thresholds
    first_end: Literal["good", "bad"] = "good"  # the baseline of every verdict

    @property
    def text(self) -> str:
        return f"a verdict of {self.fail_on} against the good version"

    def judge_step(
        self, step: Evidence, good: Evidence | None, bad: Evidence | None, alpha: float
    ) -> Judgement:
        from harness.report import tables as report  # scipy: only when a bisect judges

        cells = f"{len([r for r in step.records if r.ok])} cell(s)"
        if good is None:
            return Judgement("undecided", cells, "the good version has not run")
        if good.spec == step.spec:
            return Judgement("good", f"the baseline ({cells})", "the good version")
        found = report.comparisons(step.base, good.records + step.records, good.spec,
                                   self.thresholds)  # fmt: skip
        hits = report.failing(found, self.fail_on)
        if hits:
            return Judgement("bad", f"{hits[0].verdict} ({cells})", hits[0].words)
        if bad is not None and bad.spec != step.spec:
            back = report.comparisons(step.base, step.records + bad.records, step.spec,
                                      self.thresholds)  # fmt: skip
            if report.failing(back, self.fail_on):
                verdicts = ", ".join(dict.fromkeys(c.verdict for c in found)) or "none"
                return Judgement(
                    "good", f"{verdicts} ({cells})", "the bad version is a regression against it"
                )
        verdicts = ", ".join(dict.fromkeys(c.verdict for c in found)) or "no comparison"
        return Judgement("undecided", f"{verdicts} ({cells})", "neither way at alpha")


def parse_signal(text: str, alpha: float) -> Signal:
    """``regression`` / ``change`` (a verdict against the good version) or a predicate."""
    from harness.analyse.compare import Thresholds

    if text.strip() in ("regression", "change"):
        return VerdictSignal(text.strip(), Thresholds(alpha=alpha))  # type: ignore[arg-type]
    return PredicateSignal(parse_predicate(text))


# --- the search --------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """Indices into the candidate list: ``last_good`` and ``first_bad`` as decided, and
    ``could_be``: the candidates between them left out (undecided or skipped). With
    ``could_be`` empty, ``first_bad`` is the answer; otherwise any of ``could_be`` or
    ``first_bad`` is."""

    last_good: int
    first_bad: int
    could_be: tuple[int, ...]

    @property
    def found(self) -> bool:
        return not self.could_be


def search(count: int, judge: Callable[[int], Decision]) -> SearchResult:
    """Binary search for the first bad one of ``count`` candidates, 0 good and
    ``count - 1`` bad (already judged: they are not judged again).

    ``judge(i)`` decides candidate i. Candidates judged undecided or skipped are left
    out, and the next one nearest the middle of what is left is tried (git bisect
    skip). About log2(count) calls when every step decides. Raises ValueError for fewer
    than 2 candidates.
    """
    if count < 2:
        raise ValueError("a bisect needs a good and a bad candidate")
    lo, hi = 0, count - 1
    left_out: set[int] = set()
    while True:
        open_ = [i for i in range(lo + 1, hi) if i not in left_out]
        if not open_:
            break
        middle = (lo + hi) / 2
        i = min(open_, key=lambda j: (abs(j - middle), j))
        decision = judge(i)
        if decision == "good":
            lo = i
        elif decision == "bad":
            hi = i
        else:
            left_out.add(i)
    return SearchResult(lo, hi, tuple(i for i in range(lo + 1, hi) if i in left_out))


# --- steps: rounds of cells until the signal decides -------------------------------------


@dataclass
class Step:
    """One candidate judged: its place in the report."""

    number: int  # 0: an end point (good or bad), then 1, 2, ... in the order run
    index: int  # position in the candidate list
    spec: str
    label: str
    cells: int
    value: str
    decision: Decision
    why: str
    evidence: str  # folder, relative to the bisect folder

    def row(self) -> list[Any]:
        step = "end" if self.number == 0 else str(self.number)
        return [step, self.label, self.cells, self.value, self.decision, self.why, self.evidence]


class BuildFailed(Exception):
    """The candidate's image could not be built: the step is skipped."""


def decide(
    evidence: Evidence,
    run_round: Callable[[int], list[Record]],
    judge: Callable[[Evidence], Judgement],
    max_rounds: int,
) -> tuple[Judgement, int]:
    """Rounds of cells for one candidate until ``judge`` decides it, at most
    ``max_rounds``; returns the last judgement (``undecided`` if none decided) and the
    rounds run. ``run_round(r)`` raises BuildFailed for a candidate that cannot be built:
    then the judgement is ``skipped``."""
    judgement = Judgement("undecided", "-", "no round ran")
    for r in range(1, max_rounds + 1):
        try:
            evidence.records += run_round(r)
        except BuildFailed as exc:
            return Judgement("skipped", "build failed", str(exc).splitlines()[0][:200]), r
        judgement = judge(evidence)
        if judgement.decision in ("good", "bad"):
            return judgement, r
    return judgement, max_rounds


# --- candidates --------------------------------------------------------------------------


def version_key(version: str | None) -> tuple[int, ...]:
    """``'3.4.7'`` -> (3, 4, 7): release order (a -dev suffix sorts with its release)."""
    return tuple(int(n) for n in re.findall(r"\d+", (version or "").split("-")[0]))


def _reachable(url: str, timeout: float = 10) -> bool:
    """A HEAD request for a tarball URL answers 200 (no download)."""
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def release_candidates(
    good: VersionSpec,
    bad: VersionSpec,
    reachable: Callable[[str], bool] = _reachable,
) -> tuple[list[VersionSpec], list[str]]:
    """The versions between ``good`` and ``bad`` the harness can obtain: Debian's
    packages and the catalogue's tarballs that are local or whose URL answers, one spec
    per version (the ends' own kind first, then Debian's package, then the tarball).
    Returns the ordered list, ends included, and a note per version left out."""
    lo, hi = version_key(good.expected), version_key(bad.expected)
    if not good.expected or not bad.expected or lo == hi:
        raise SpecError(
            "--good and --bad must name two different versions to bisect releases between "
            f"({good.text}: {good.expected or '?'}, {bad.text}: {bad.expected or '?'}); "
            "or list them with --candidates."
        )
    ascending = lo < hi
    cat = versions.catalogue()
    options: dict[str, list[str]] = {}
    for release in cat.debian:
        options.setdefault(cat.debian[release], []).append(f"debian:{release}")
    for version in cat.sources:
        options.setdefault(version, []).append(f"source:{version}")
    prefer = {good.kind: 0, bad.kind: 0, "debian": 1, "source": 2}
    chosen: list[VersionSpec] = []
    notes: list[str] = []
    for version, texts in options.items():
        key = version_key(version)
        if not (min(lo, hi) < key < max(lo, hi)):
            continue
        for text in sorted(texts, key=lambda t: prefer.get(t.split(":")[0], 3)):
            if text.startswith("source:") and not _tarball_obtainable(version, reachable):
                notes.append(f"{text}: no local tarball and no URL of it answers")
                continue
            chosen.append(versions.parse(text, "the catalogue"))
            break
    chosen.sort(key=lambda s: version_key(s.expected), reverse=not ascending)
    return [good, *chosen, bad], notes


def _tarball_obtainable(version: str, reachable: Callable[[str], bool]) -> bool:
    if (versions.TARBALL_DIR / f"haproxy-{version}.tar.gz").is_file():
        return True
    return any(reachable(url) for url in versions.catalogue().sources[version].urls)


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str


def commit_candidates(good: VersionSpec, bad: VersionSpec) -> list[Commit]:
    """The commits of ``good..bad`` on its ancestry path, oldest first, ``good`` first
    and ``bad`` last. Raises SpecError when the two are not in one repository or
    ``good`` is not an ancestor of ``bad``."""
    if good.kind != "git" or bad.kind != "git" or good.git_path != bad.git_path:
        raise SpecError(
            "a commit bisect needs --good and --bad in one checkout: "
            "git:<path>@<rev> with the same <path>."
        )
    path, a, b = good.git_path, good.git_commit, bad.git_commit
    if versions.git(path, "merge-base", "--is-ancestor", a, b, check=False).returncode != 0:
        raise SpecError(
            f"--good {a[:12]} is not an ancestor of --bad {b[:12]} in {path}: a bisect looks "
            "for the first bad commit after a good one. Swap them, or pick a good commit "
            "that the bad one descends from."
        )
    listed = versions.git(
        path, "rev-list", "--reverse", "--ancestry-path", "--format=%H %s", f"{a}..{b}"
    ).stdout
    # --format prints "commit <sha>" then the formatted line, per commit
    lines = [line for line in listed.splitlines() if not line.startswith("commit ")]
    commits = [
        Commit(sha, _subject(subject))
        for sha, _, subject in (line.partition(" ") for line in lines)
    ]
    first = versions.git(path, "log", "-1", "--format=%s", a).stdout.strip()
    return [Commit(a, _subject(first)), *commits]


def _subject(text: str) -> str:
    """A commit's subject as the report shows it: printable, no table separator."""
    return re.sub(r"[^\x20-\x7e]", "?", text).replace("|", "/")[:200]


# --- the orchestration -------------------------------------------------------------------


@dataclass
class Outcome:
    """A finished (or stopped) bisect: every step, and the answer."""

    folder: Path
    good: str
    bad: str
    scenario: str
    params: dict[str, Any]
    signal: str
    alpha: float
    candidates: list[str]  # labels, in order
    steps: list[Step]
    result: SearchResult | None
    answer: str
    notes: list[str]


class CellsRunner(Protocol):
    def __call__(self, spec: VersionSpec, folder: Path) -> list[Record]: ...


@dataclass
class Bisect:
    """A bisect's inputs and its folder; :meth:`run` does it.

    ``run_cells(spec, folder)`` runs one round of cells of ``spec`` into the run folder
    ``folder`` and returns their records (raises BuildFailed when the image cannot be
    built); the CLI passes :func:`run_cells_with`, a test may pass anything."""

    folder: Path
    specs: list[VersionSpec]
    labels: list[str]
    scenario: str
    params: dict[str, Any]
    signal: Signal
    alpha: float
    max_rounds: int
    run_cells: CellsRunner
    progress: Callable[[str], None] = lambda _: None
    notes: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    evidence: dict[int, Evidence] = field(default_factory=dict)

    def _step(self, index: int, number: int) -> Decision:
        spec, label = self.specs[index], self.labels[index]
        name = f"{'end' if number == 0 else f'step{number:02d}'}-{results.safe_name(label, 60)}"
        step_dir = self.folder / name
        evidence = self.evidence.setdefault(index, Evidence(spec.text, self.folder))
        good = self.evidence.get(0)
        bad = self.evidence.get(len(self.specs) - 1)
        self.progress(f"bisect {name}: {spec.text}")

        def one_round(r: int) -> list[Record]:
            run_dir = step_dir / f"{results.stamp()}-round{r}"
            records = self.run_cells(spec, run_dir)
            rel = run_dir.relative_to(self.folder)
            return [rec.model_copy(update={"cell": str(rel / rec.cell)}) for rec in records]

        def judge(ev: Evidence) -> Judgement:
            return self.signal.judge_step(ev, good, bad, self.alpha)

        judgement, _ = decide(evidence, one_round, judge, self.max_rounds)
        self.steps.append(
            Step(
                number, index, spec.text, label, len(evidence.records), judgement.value,
                judgement.decision, judgement.why, name,
            )
        )  # fmt: skip
        self.progress(f"bisect {name}: {judgement.decision}: {judgement.value}")
        return judgement.decision

    def run(self) -> Outcome:
        """Judge the ends (bad first: a share predicate measures good against it), then
        search. Ends that the signal does not tell apart stop the bisect with the reason
        in the answer."""
        last = len(self.specs) - 1
        result: SearchResult | None = None
        good: Decision | None = None
        bad: Decision | None = None
        if self.signal.first_end == "bad":
            bad = self._step(last, 0)
            good = self._step(0, 0) if bad == "bad" else None
        else:
            good = self._step(0, 0)
            bad = self._step(last, 0) if good == "good" else None
        if bad not in (None, "bad"):
            answer = (
                f"stopped: the bad version {self.labels[last]} was judged {bad}, not bad: "
                "the signal does not show on it (see its step). Check the signal, the "
                "scenario's parameters, or raise --max-rounds."
            )
        elif good not in (None, "good"):
            answer = (
                f"stopped: the good version {self.labels[0]} was judged {good}, not good: "
                "the signal does not tell the two apart. Check the signal, or raise "
                "--max-rounds."
            )
        else:
            counter = iter(range(1, 10_000))
            result = search(len(self.specs), lambda i: self._step(i, next(counter)))
            answer = self._answer(result)
        return Outcome(
            self.folder, self.specs[0].text, self.specs[last].text, self.scenario, self.params,
            self.signal.text, self.alpha, list(self.labels), self.steps, result, answer,
            self.notes,
        )  # fmt: skip

    def stopped(self, why: str) -> Outcome:
        """The outcome so far, when the bisect cannot go on."""
        return Outcome(
            self.folder, self.specs[0].text, self.specs[-1].text, self.scenario, self.params,
            self.signal.text, self.alpha, list(self.labels), self.steps, None, why, self.notes,
        )  # fmt: skip

    def _answer(self, result: SearchResult) -> str:
        first = self.labels[result.first_bad]
        if result.found:
            return f"first bad: {first} (last good: {self.labels[result.last_good]})"
        maybe = ", ".join(self.labels[i] for i in result.could_be)
        return (
            f"not decided: the first bad one is one of {maybe}, {first} (the ones before "
            f"{first} were undecided or skipped; last good: {self.labels[result.last_good]})"
        )


def run_cells_with(
    scenario: str,
    params: dict[str, Any],
    repetitions: int,
    alpha: float,
    progress: Progress,
) -> CellsRunner:
    """A :class:`CellsRunner` that runs ``repetitions`` cells of the scenario through
    the runner, each round an ordinary run folder with its report."""

    def run(spec_: VersionSpec, folder: Path) -> list[Record]:
        from harness.report.rebuild import rebuild  # matplotlib: only when cells ran

        plan = spec.expand(
            {
                "name": f"bisect-{scenario}",
                "versions": [spec_.text],
                "repetitions": repetitions,
                "verdicts": {"alpha": alpha},
                "scenarios": [{"name": scenario, "params": params}],
            },
            folder.name,
            where="the command line (bisect)",
        )
        folder.mkdir(parents=True)
        with results.locked(folder), results.writing(folder):
            try:
                records = runner.execute(plan, folder, progress)
            except ImageError as exc:
                raise BuildFailed(str(exc)) from exc
            rebuild(folder)
        return records

    return run


def plan_bisect(
    good_text: str,
    bad_text: str,
    scenario: str,
    params: dict[str, Any],
    candidates: list[str] | None,
) -> tuple[list[VersionSpec], list[str], list[str]]:
    """The ordered candidate specs, their labels and notes (versions left out).
    Validates everything before anything starts; raises SpecError."""
    good = versions.parse(good_text, "--good")
    bad = versions.parse(bad_text, "--bad")
    scenarios.get(scenario, "--scenario")
    # the parameters, validated by the scenario's model as a matrix's would be
    spec.expand(
        {"name": "bisect", "versions": [good.text], "scenarios": [{"name": scenario,
                                                                  "params": params}]},
        "19700101T000000Z-check",
        where="the command line (--scenario, --param)",
    )  # fmt: skip
    if good.text == bad.text:
        raise SpecError("--good and --bad are the same version: nothing lies between them.")
    notes: list[str] = []
    if candidates:
        specs = [good, *(versions.parse(c, "--candidates") for c in candidates), bad]
        texts = [s.text for s in specs]
        if len(set(texts)) != len(texts):
            raise SpecError("--candidates lists a version twice (or --good / --bad again).")
        labels = [s.label for s in specs]
    elif good.kind == "git" or bad.kind == "git":
        commits = commit_candidates(good, bad)
        path = good.git_path
        specs = [good] + [versions.parse(f"git:{path}@{c.sha}", "rev-list") for c in commits[1:-1]]
        specs.append(bad)
        labels = [f"{c.sha[:12]} {c.subject[:60]}" for c in commits]
    else:
        specs, notes = release_candidates(good, bad)
        labels = [s.label for s in specs]
    return specs, labels, notes


# --- the report ---------------------------------------------------------------------------

HEADERS = ["step", "version / commit", "cells", "signal's value", "decision", "why", "evidence"]


def markdown(outcome: Outcome) -> str:
    """bisect.md: what was asked, the answer, then every step in the order run."""
    params = " ".join(f"{k}={v}" for k, v in sorted(outcome.params.items())) or "defaults"
    rows = [s.row() for s in outcome.steps]
    lines = [
        f"# bisect: {outcome.scenario}",
        "",
        f"- good: `{outcome.good}`; bad: `{outcome.bad}`",
        f"- scenario: `{outcome.scenario}` ({params})",
        f"- signal: {outcome.signal}; alpha {outcome.alpha:g}",
        f"- candidates ({len(outcome.candidates)}, in order): " + ", ".join(outcome.candidates),
        "",
        f"**{outcome.answer}**",
        "",
        tabulate(rows, HEADERS, tablefmt="github"),
        "",
        "Steps marked `end` judge the good and bad versions themselves. `undecided`: the "
        "signal did not decide at alpha within the rounds allowed; `skipped`: the image "
        "could not be built. Both are left out of the search, never guessed. Each "
        "evidence folder holds the step's rounds, each an ordinary run folder.",
    ]
    lines += [f"- left out: {n}" for n in outcome.notes]
    return "\n".join(lines) + "\n"


def save(outcome: Outcome) -> str:
    """Write bisect.md and bisect.json into the bisect folder; return bisect.md."""
    text = markdown(outcome)
    (outcome.folder / "bisect.md").write_text(text)
    results.write_json(
        outcome.folder / "bisect.json",
        {
            "good": outcome.good,
            "bad": outcome.bad,
            "scenario": outcome.scenario,
            "params": outcome.params,
            "signal": outcome.signal,
            "alpha": outcome.alpha,
            "candidates": outcome.candidates,
            "answer": outcome.answer,
            "first_bad": (
                outcome.candidates[outcome.result.first_bad]
                if outcome.result and outcome.result.found
                else None
            ),
            "steps": [vars(s) for s in outcome.steps],
            "notes": outcome.notes,
            "finished": datetime.now(UTC).isoformat(),
        },
    )
    return text


# --- the command ---------------------------------------------------------------------------

EXIT_UNDECIDED = 1  # the first bad one could not be named (undecided or skipped steps)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m harness bisect``."""
    p.add_argument("--good", required=True, metavar="SPEC", help="a version without the problem")
    p.add_argument("--bad", required=True, metavar="SPEC", help="a version with it")
    p.add_argument("--scenario", required=True)
    p.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="a scenario parameter (repeatable)"
    )
    p.add_argument(
        "--signal",
        required=True,
        help="what makes a version bad: a predicate such as 'stalled connections > 0', "
        "'close delay p50 > 1 s', 'CLOSE-WAIT peak > 10', or regression / change (a "
        "verdict against the good version)",
    )
    p.add_argument(
        "--candidates",
        nargs="+",
        metavar="SPEC",
        help="the versions between good and bad, in order (default: every release the "
        "harness can obtain between them; for git: specs, the commits of good..bad)",
    )
    p.add_argument("--repetitions", type=int, default=1, help="cells per round [1]")
    p.add_argument(
        "--max-rounds",
        type=int,
        default=3,
        help="rounds per step before it is called undecided [3]",
    )
    p.add_argument("--alpha", type=float, default=0.01, help="significance level [0.01]")
    p.add_argument("--dry-run", action="store_true", help="list the candidates; start nothing")


def command(args: argparse.Namespace) -> int:
    """Run ``bisect`` from parsed arguments: 0 when the first bad one is named,
    EXIT_UNDECIDED when it is not; SpecError (exit 2) for bad input, before anything
    starts."""
    from harness.stack import images
    from harness.stack.compose import CommandLog

    if not 1 <= args.repetitions <= 100 or not 1 <= args.max_rounds <= 20:
        raise SpecError("--repetitions must be 1 to 100 and --max-rounds 1 to 20.")
    if not 0 < args.alpha < 0.5:
        raise SpecError(f"--alpha {args.alpha:g}: a significance level above 0 and below 0.5.")
    params = spec.param_options(args.param, for_scenarios=(args.scenario,))
    signal = parse_signal(args.signal, args.alpha)
    specs, labels, notes = plan_bisect(args.good, args.bad, args.scenario, params,
                                       args.candidates)  # fmt: skip
    steps = math.ceil(math.log2(max(len(specs) - 1, 1)))
    summary = (
        f"{len(specs)} candidates, about {steps} step(s) between the ends; signal: {signal.text}"
    )
    if args.dry_run:
        print("\n".join([*labels, summary, *(f"left out: {n}" for n in notes)]))
        return 0
    results.check_writable()
    folder = results.RESULTS_DIR / f"{results.stamp()}-bisect-{results.safe_name(args.scenario)}"
    folder.mkdir(parents=True)
    progress = Progress()
    progress.step(f"bisect in {folder}: {summary}")
    # Built first: an image error from a step is then that candidate's own build.
    images.support_images(CommandLog(folder / "images.log"), progress.step)
    job = Bisect(
        folder, specs, labels, args.scenario, params, signal, args.alpha, args.max_rounds,
        run_cells_with(args.scenario, params, args.repetitions, args.alpha, progress),
        progress.step, notes,
    )  # fmt: skip
    try:
        outcome = job.run()
    except BaseException as exc:  # keep every step so far, whatever stopped it
        save(job.stopped(f"stopped by {type(exc).__name__}: {str(exc)[:200]}"))
        raise
    print(save(outcome))
    print(f"bisect: {outcome.answer}; details in {folder / 'bisect.md'}", file=sys.stderr)
    return 0 if outcome.result is not None and outcome.result.found else EXIT_UNDECIDED
