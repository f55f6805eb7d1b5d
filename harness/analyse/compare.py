"""Compare one metric between a baseline HAProxy version and a candidate.

Each comparison says "regression", "improvement", "changed", "small change", "no
significant change" or "inconclusive", together with the test, the p-value, the effect
size and a sentence in words. People paste that sentence into bug trackers, so a change
is only called a regression or an improvement when all of these hold:

* it is statistically significant (p < alpha),
* the effect size is large (Cliff's delta for samples, difference in proportions for
  counts), and
* for samples, the medians differ by a ratio that matters. A huge sample makes a
  0.5 ms shift on a 10 ms latency significant, but nobody should file a bug for it.

Samples are compared with the Mann-Whitney U test. It assumes no distribution, which is
right for latencies and close delays: these are skewed and often bimodal (a close in
0.4 ms or after a 20 s timeout). Counts ("10 of 10 connections stalled") are compared
with Fisher's exact test. It stays valid for the small totals that benchmark runs give,
where a chi-squared test would not be.

Between versions, samples are held to the cells they came from (``across_cells``):
the connections of one cell share the host's state while it ran, so a regression or an
improvement stands only when every pair of cells (each candidate cell against each
baseline cell) gives it, and one resting on a single cell per version says so.

A change that is significant but below those practical thresholds is a "small change",
said with its size and the threshold it missed: it is not "no significant change".

How a connection ended (FIN, RST, TLS alert + FIN, still open) is a category, not a
number: ``compare_categories`` tests the two versions' mixes of end types as a
contingency table (Fisher's exact test for two end types, chi-squared otherwise). A
different mix is "changed" (neither better nor worse), except that more connections
left open is a regression and fewer an improvement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from math import comb
from types import ModuleType
from typing import Literal

import numpy as np

from harness.analyse.distribution import median, nearest_rank


def _stats() -> ModuleType:
    """scipy.stats, imported at the first test rather than with this module (about 1 s:
    a command that never tests, and a report whose verdicts are kept, does without it)."""
    from scipy import stats

    return stats


Verdict = Literal[
    "regression", "improvement", "changed", "small change", "no significant change", "inconclusive"
]
# Verdicts in the order a report lists them: what needs a reader's attention first.
VERDICT_ORDER: tuple[Verdict, ...] = (
    "regression",
    "improvement",
    "changed",
    "small change",
    "inconclusive",
    "no significant change",
)

MANN_WHITNEY = "Mann-Whitney U (two-sided)"
FISHER = "Fisher exact (two-sided)"
CHI2 = "chi-squared contingency"
CHI2_PERMUTATION = "chi-squared contingency (permutation)"
TOO_FEW = "none: too few samples"
CLIFFS_DELTA = "Cliff's delta"
PROPORTION_DIFF = "difference in proportions"
# Half the summed absolute share differences: the share of connections that would have
# to end differently for the two mixes to match. For two categories it is the absolute
# difference in proportions.
TOTAL_VARIATION = "total variation distance"

# End types where more is worse: a connection the proxy never closed.
WORSE_ENDS = ("open",)

# Mann-Whitney needs at least 3 per side: with 2 against 2 its smallest two-sided
# p-value is 1/3, so nothing could ever be significant.
MIN_SAMPLES = 3

# Each duration unit, in seconds. Other units (req/s, bytes, ...) are shown as plain
# numbers.
_SECONDS_PER = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

# The default abs_floor, in each duration unit: 1 ms. A median of 0 against one under
# 1 ms is scheduling noise, not a change (see _medians_differ).
_DEFAULT_FLOOR_SECONDS = 1e-3


@dataclass(frozen=True)
class Thresholds:
    """When a difference counts. The defaults are chosen for findings filed as bugs."""

    # 1 %: a matrix runs many comparisons (versions × scenarios × metrics). At 5 %, one
    # in twenty unchanged metrics would be flagged anyway.
    alpha: float = 0.01
    # Cliff's delta of 0.3: between Romano et al.'s "small" (0.147) and "medium"
    # (0.33). The two distributions then overlap far less than they would by chance.
    min_effect: float = 0.3
    # Medians must differ by 20 % or more, so tiny but significant shifts are not
    # reported. That is well above the run-to-run jitter of containerised benchmarks.
    min_ratio: float = 1.2
    # 5 percentage points: less than that, for example 1/100 against 2/100, is within
    # what a flaky network or client produces.
    min_rate_diff: float = 0.05


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline_label: str
    candidate_label: str
    test: str
    p_value: float | None
    effect: float | None  # > 0: the candidate is larger (samples) or higher (counts)
    effect_name: str
    baseline_summary: str
    candidate_summary: str
    delta: str
    verdict: Verdict
    words: str

    @classmethod
    def inconclusive(
        cls,
        metric: str,
        labels: tuple[str, str],
        effect_name: str,
        summaries: tuple[str, str],
        delta: str,
        words: str,
    ) -> Comparison:
        """No test could run (too few samples, nothing observed on a side): no p-value,
        no effect, verdict "inconclusive". ``labels`` and ``summaries``: (baseline,
        candidate)."""
        return cls(
            metric=metric, baseline_label=labels[0], candidate_label=labels[1],
            test=TOO_FEW, p_value=None, effect=None, effect_name=effect_name,
            baseline_summary=summaries[0], candidate_summary=summaries[1], delta=delta,
            verdict="inconclusive", words=words,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------
# Formatting


def format_number(value: float) -> str:
    """About three significant digits; a space groups thousands ("19 998")."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{round(value):,}".replace(",", " ")
    if magnitude >= 1:
        return f"{value:.1f}"
    if magnitude == 0:
        return "0"
    return f"{value:.2g}"


def format_duration(value: float, unit: str = "ms") -> str:
    """A duration in µs, ms or s, whichever reads best, to one decimal.

    0.412 ms gives "0.4 ms" and 20012 ms gives "20.0 s". The µs scale is used only
    below 0.1 ms, because "0.4 ms" reads better than "412 µs" next to other ms values.
    """
    seconds = value * _SECONDS_PER[unit]
    magnitude = abs(seconds)
    # Unit is chosen after rounding, so 999.96 ms shows as "1.0 s", not "1000.0 ms".
    if round(magnitude * 1e3, 1) >= 1000:
        return f"{seconds:.1f} s"
    if magnitude == 0 or magnitude >= 1e-4:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def format_value(value: float, unit: str) -> str:
    if unit in _SECONDS_PER:
        return format_duration(value, unit)
    return f"{format_number(value)} {unit}".rstrip()


def describe_samples(values: Sequence[float], unit: str = "ms") -> str:
    """For example, "p50 0.4 ms, p90 0.9 ms (n=10)" (nearest-rank percentiles)."""
    if len(values) == 0:
        return "no samples (n=0)"
    p50, p90 = nearest_rank(values, 0.5), nearest_rank(values, 0.9)
    return f"p50 {format_value(p50, unit)}, p90 {format_value(p90, unit)} (n={len(values)})"


def format_p(p: float) -> str:
    """For example, "p=1.1e-05" or "p=0.34"."""
    if p == 0:
        # SciPy underflows to 0 for overwhelming evidence. "p=0" would read as certainty.
        return "p<1e-300"
    return f"p={p:.2g}"


def _format_delta(diff: float, unit: str) -> str:
    # Stays in the caller's unit ("+19 998 ms"), so the delta can be checked against the
    # raw numbers without converting units.
    if diff == 0:
        return f"±0 {unit}".rstrip()
    return f"{'+' if diff > 0 else '-'}{format_number(abs(diff))} {unit}".rstrip()


def _format_pp(diff: float) -> str:
    pp = round(diff * 100, 1)
    if pp == 0:
        return "±0 pp"
    text = f"{abs(pp):.1f}".removesuffix(".0")
    return f"{'+' if pp > 0 else '-'}{text} pp"


def _with_notes(inner: str, notes: str | None) -> str:
    return f"{inner}; {notes}" if notes else inner


# ---------------------------------------------------------------------------------------
# Samples


def _default_floor(unit: str) -> float:
    if unit in _SECONDS_PER:
        return _DEFAULT_FLOOR_SECONDS / _SECONDS_PER[unit]
    return 0.0


def _medians_differ(a: float, b: float, min_ratio: float, abs_floor: float) -> bool:
    """True when the medians differ by min_ratio and by abs_floor or more.

    The floor applies everywhere: 83 µs against 0.7 ms is an 8-fold ratio, but no one
    waits on a connection for a difference below a millisecond.
    """
    if a == b:
        return min_ratio <= 1 and abs_floor <= 0
    if abs(a - b) < abs_floor:
        return False
    if a == 0 or b == 0 or (a < 0) != (b < 0):
        return True  # a ratio is meaningless here; the floor has decided
    return max(abs(a), abs(b)) / min(abs(a), abs(b)) >= min_ratio


def _min_p_samples(n1: int, n2: int) -> float:
    """The smallest two-sided p that an exact Mann-Whitney test can give for n1 against n2.

    It is reached when the two samples do not overlap: 2 of the C(n1+n2, n1) rank
    arrangements are that extreme.
    """
    return min(1.0, 2 / comb(n1 + n2, n1))


def _min_p_counts(n1: int, n2: int) -> float:
    """The smallest two-sided Fisher p for these totals: all hits on one side, none on the other."""
    return float(_stats().fisher_exact([[n1, 0], [0, n2]]).pvalue)


def _powerless(n1: int, n2: int, alpha: float, min_p: float) -> str:
    # Without this, 3 runs against 3 that never overlap would read "no significant
    # change", though no data of that size could ever have shown a change.
    return f"n={n1} vs n={n2} cannot reach p<{alpha:g}: the smallest possible p is {min_p:.2g}"


def _unless_powerless(
    verdict: Verdict, stats_text: str, n1: int, n2: int, min_p: float, thresholds: Thresholds
) -> tuple[Verdict, str]:
    """'No significant change' claims too much when no outcome could have been significant."""
    if verdict == "no significant change" and min_p >= thresholds.alpha:
        return "inconclusive", f"{stats_text}; {_powerless(n1, n2, thresholds.alpha, min_p)}"
    return verdict, stats_text


def _direction(effect: float, higher_is_worse: bool) -> Verdict:
    return "regression" if (effect > 0) == higher_is_worse else "improvement"


def compare_samples(
    metric: str,
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    labels: tuple[str, str],
    higher_is_worse: bool = True,
    unit: str = "ms",
    thresholds: Thresholds = Thresholds(),
    abs_floor: float | None = None,
    baseline_notes: str | None = None,
    candidate_notes: str | None = None,
) -> Comparison:
    """Mann-Whitney U and Cliff's delta, candidate against baseline.

    ``labels`` is (baseline, candidate). ``abs_floor``, in ``unit``, is the smallest
    difference that counts when one median is zero. By default it is 1 ms for duration
    units and 0 otherwise. Notes such as "end: TLS alert + FIN" go in parentheses after
    each side's numbers in ``words``.
    """
    base = np.asarray(baseline, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    if not (np.isfinite(base).all() and np.isfinite(cand).all()):
        # NaN or inf means a parsing bug upstream. Dropping those values would hide it.
        raise ValueError(f"{metric}: samples must be finite numbers")
    base_label, cand_label = labels
    floor = _default_floor(unit) if abs_floor is None else abs_floor
    base_summary = describe_samples(base, unit)
    cand_summary = describe_samples(cand, unit)

    def sentence(tail: str) -> str:
        c = _side(cand, unit, candidate_notes)
        b = _side(base, unit, baseline_notes)
        return f"{cand_label} vs {base_label}: {metric} p50 {c} vs {b} — {tail}."

    if len(base) < MIN_SAMPLES or len(cand) < MIN_SAMPLES:
        return Comparison.inconclusive(
            metric, labels, CLIFFS_DELTA, (base_summary, cand_summary),
            _sample_delta(base, cand, unit),
            sentence(f"inconclusive (too few samples: need at least {MIN_SAMPLES} per side)"),
        )  # fmt: skip

    if np.all(base == base[0]) and np.all(cand == base[0]):
        # Every value is tied, so the normal approximation has zero variance. SciPy
        # copes with that, but the answer (no evidence of any difference) is set here.
        p, effect = 1.0, 0.0
    else:
        # U is candidate's: the number of (candidate, baseline) pairs where the candidate
        # is larger, with ties counting one half. So 2U/(n1 n2) - 1 is
        # P(c > b) - P(c < b), Cliff's delta, positive when the candidate is larger.
        result = _stats().mannwhitneyu(cand, base, alternative="two-sided")
        p = float(result.pvalue)
        effect = 2 * float(result.statistic) / (len(cand) * len(base)) - 1

    med_base, med_cand = median(base), median(cand)
    significant = p < thresholds.alpha
    large = abs(effect) >= thresholds.min_effect
    # The medians must also move the same way as Cliff's delta. Otherwise the sentence
    # would call a lower p50 a regression.
    far_apart = _medians_differ(med_base, med_cand, thresholds.min_ratio, floor)
    same_way = (med_cand - med_base) * effect > 0 or thresholds.min_ratio <= 1
    material = far_apart and same_way
    verdict: Verdict = "no significant change"
    if significant:
        verdict = _direction(effect, higher_is_worse) if large and material else "small change"
    stats_text = f"Mann-Whitney U {format_p(p)}, {CLIFFS_DELTA} {effect:+.2f}"
    verdict, stats_text = _unless_powerless(
        verdict, stats_text, len(cand), len(base), _min_p_samples(len(cand), len(base)), thresholds
    )
    tail = f"{verdict} ({stats_text})"
    if verdict == "small change":
        # Significant, but under a practical threshold: said with its size and the
        # threshold it missed, so it reads neither as a finding nor as "no change".
        size, reasons = _small_sample_change(
            med_base, med_cand, effect, large, far_apart, thresholds, floor, unit
        )
        missed = ", ".join(reasons[:-1]) + " and " + reasons[-1] if len(reasons) > 1 else reasons[0]
        tail = f"small change: {size} ({stats_text}), below {missed}"
    return Comparison(
        metric=metric,
        baseline_label=base_label,
        candidate_label=cand_label,
        test=MANN_WHITNEY,
        p_value=p,
        effect=effect,
        effect_name=CLIFFS_DELTA,
        baseline_summary=base_summary,
        candidate_summary=cand_summary,
        delta=_sample_delta(base, cand, unit),
        verdict=verdict,
        words=sentence(tail),
    )


def _small_sample_change(
    med_base: float,
    med_cand: float,
    effect: float,
    large: bool,
    far_apart: bool,
    th: Thresholds,
    floor: float,
    unit: str,
) -> tuple[str, list[str]]:
    """How big a significant but sub-threshold change is, and which thresholds it missed."""
    diff = med_cand - med_base
    reasons = []
    ratio_missed = False
    if not far_apart:
        if med_base != 0 and med_cand != 0 and (med_base < 0) == (med_cand < 0):
            ratio = max(abs(med_base), abs(med_cand)) / min(abs(med_base), abs(med_cand))
            if ratio < th.min_ratio:
                ratio_missed = True
                reasons.append(f"the {100 * (th.min_ratio - 1):g} % threshold")
        if abs(diff) < floor:
            reasons.append(f"the {format_value(floor, unit)} floor")
        if not reasons:  # equal medians (both zero, no floor): the ratio is what is missing
            ratio_missed = True
            reasons.append(f"the {100 * (th.min_ratio - 1):g} % threshold")
    elif diff * effect <= 0:
        reasons.append(f"a p50 that moved against {CLIFFS_DELTA}")
    if not large:
        reasons.append(f"the {th.min_effect:g} {CLIFFS_DELTA} threshold")
    if diff == 0:
        # The medians did not move; the distributions did, by less than counts.
        if not large:
            reasons = [f"the {th.min_effect:g} {CLIFFS_DELTA} threshold"]
        return "p50 unchanged", reasons
    floor_only = reasons[0].endswith("floor") and not ratio_missed
    if med_base != 0 and not floor_only:
        pct = 100 * diff / abs(med_base)
        size = f"{'+' if pct >= 0 else '-'}{abs(pct):.{0 if abs(pct) >= 10 else 1}f} % in p50"
    else:
        size = f"{_format_delta(diff, unit)} in p50"
    return size, reasons


def _side(values: np.ndarray, unit: str, notes: str | None) -> str:
    if len(values) == 0:
        return _with_notes("none (n=0)", notes)
    return f"{format_value(median(values), unit)} ({_with_notes(f'n={len(values)}', notes)})"


def _sample_delta(base: np.ndarray, cand: np.ndarray, unit: str) -> str:
    if len(base) == 0 or len(cand) == 0:
        return "n/a"
    return f"{_format_delta(median(cand) - median(base), unit)} (p50)"


def _ratio_reason(a: float, b: float, min_ratio: float, floor: float, unit: str) -> str:
    reasons = []
    if a != 0 and b != 0 and (a < 0) == (b < 0):
        ratio = max(abs(a), abs(b)) / min(abs(a), abs(b))
        if ratio < min_ratio:
            reasons.append(f"p50 ratio {ratio:.2f} < {min_ratio:g}")
    if abs(a - b) < floor:
        reasons.append(f"p50 difference < {format_value(floor, unit)}")
    return ", ".join(reasons)


# ---------------------------------------------------------------------------------------
# Repetitions

# The verdicts that claim a direction: these must hold across cells, not only within one.
CLAIMS: tuple[Verdict, ...] = ("regression", "improvement")


# The smallest difference of medians a claim on one cell of a version may rest on, in s.
# Cells of one version differ among themselves: in the A/A test (README, "Verdicts":
# 2.6.12 against itself, half-close, 10 cells each of three settings on the 2-core host)
# their median close delays ranged 0.4-6.7 ms, 0.9-81 ms and 0.7-21 ms, and one cell
# against one was called a regression or an improvement in 47 % of pairs. A difference
# within that range says nothing of the version; the field's findings (a ~20 s close
# after the FIN, a 1 s timeout striking) are far above it.
SINGLE_CELL_FLOOR_S = 1.0


def cell_floor(cells: tuple[int, int], unit: str = "ms") -> float | None:
    """The ``abs_floor`` for compare_samples given the cells per side (baseline,
    candidate): :data:`SINGLE_CELL_FLOOR_S` in ``unit`` when a side has one cell and
    ``unit`` is a duration, else None (the default floor; more cells are held to each
    pair instead, :func:`across_cells`)."""
    if min(cells) > 1 or unit not in _SECONDS_PER:
        return None
    return SINGLE_CELL_FLOOR_S / _SECONDS_PER[unit]


def one_cell(labels: tuple[str, str], cells: tuple[int, int]) -> str:
    """The caveat of a claim that rests on one cell of a version: "one cell each; repeat
    with repetitions: 3 to confirm" (or "one cell of 2.6.12; ..." when only that side has
    one). ``labels`` and ``cells`` (cells per side) are (baseline, candidate). Three: in
    the A/A test (README) 3+3 cells claimed a change in 0.3 % of splits, 2+2 in 6 %."""
    single = [lab for lab, n in zip(labels, cells, strict=True) if n < 2]
    which = "one cell each" if len(single) == 2 else f"one cell of {single[0]}"
    return f"{which}; repeat with repetitions: 3 to confirm"


def across_cells(
    pooled: Comparison, pairs: Mapping[tuple[int, int], Comparison], cells: tuple[int, int]
) -> Comparison:
    """The verdict on a sample metric between versions: the pooled comparison (every
    connection of every repetition on each side), held to the cells it came from.

    The samples of one cell share the host's state while it ran (other work on the same
    cores), so they are not independent samples of the version: a within-cell test's p
    says nothing of how the next cell will differ. The experimental unit is the cell
    (Kalibera & Jones, "Rigorous Benchmarking in Reasonable Time", ISMM 2013: repeat at
    the level with the most variance). So a regression or an improvement stands only when
    every pair of cells, each candidate cell against each baseline cell tested on its own,
    gives that same verdict. ``pairs`` maps (baseline cell, candidate cell), numbered from
    1 in repetition order, to that comparison; ``cells`` is the cells per side (baseline,
    candidate). Otherwise the verdict is "inconclusive", its words saying how the pairs
    disagreed ("3 of 4 pairs of cells regression, 1 no significant change: r2 vs r1 no
    significant change") and keeping the pooled test, p-value, effect and summaries.
    Every pair rather than rep i against rep i (which pairing is arbitrary: the cells of a
    version do not run beside the other's): an A/A test (one version against itself,
    half-close, 10 cells; README) claimed a change in 6 % of 2+2 splits that way against
    10 % with rep i against rep i, 0.3 % against 1.8 % with 3+3 (pooled: about 40 %).
    With one cell on either side the claim is kept (its medians differed by
    :data:`SINGLE_CELL_FLOOR_S` or more: the caller passed :func:`cell_floor`) and its
    words say it rests on one cell, as do a small change's. Other verdicts are returned
    unchanged.
    """
    head, _, tail = pooled.words.rpartition(" — ")
    tail = tail.removesuffix(".")

    def on_one_cell() -> Comparison:
        labels = (pooled.baseline_label, pooled.candidate_label)
        return replace(pooled, words=f"{head} — {tail}; {one_cell(labels, cells)}.")

    if pooled.verdict == "small change" and min(cells) < 2:
        return on_one_cell()
    if pooled.verdict not in CLAIMS:
        return pooled
    if min(cells) < 2 or len(pairs) < 2:
        return on_one_cell()
    counts = Counter(p.verdict for p in pairs.values())
    if counts[pooled.verdict] == len(pairs):
        return replace(
            pooled,
            words=f"{head} — {tail}; the same in each of the {len(pairs)} pairs of cells "
            f"({cells[1]} of the candidate × {cells[0]} of the baseline).",
        )
    tally = ", ".join(
        f"{n} {v}" if i else f"{n} of {len(pairs)} pairs of cells {v}"
        for i, (v, n) in enumerate(sorted(counts.items(), key=lambda vn: (-vn[1], vn[0])))
    )
    dissent = [f"r{c} vs r{b} {p.verdict}" for (b, c), p in sorted(pairs.items())
               if p.verdict != pooled.verdict]  # fmt: skip
    more = f" and {len(dissent) - 3} more" if len(dissent) > 3 else ""
    words = (
        f"{head} — inconclusive: the cells disagreed ({tally}: {', '.join(dissent[:3])}{more}); "
        f"pooled: {tail}."
    )
    return replace(pooled, verdict="inconclusive", words=words)


# ---------------------------------------------------------------------------------------
# Counts


def compare_counts(
    metric: str,
    baseline_hits: int,
    baseline_total: int,
    candidate_hits: int,
    candidate_total: int,
    *,
    labels: tuple[str, str],
    higher_is_worse: bool = True,
    thresholds: Thresholds = Thresholds(),
    what: str = "connections stalled",
    baseline_notes: str | None = None,
    candidate_notes: str | None = None,
) -> Comparison:
    """Fisher's exact test on hits/total, candidate against baseline.

    ``labels`` is (baseline, candidate). ``effect`` is the candidate's proportion minus
    the baseline's.
    """
    for hits, total in ((baseline_hits, baseline_total), (candidate_hits, candidate_total)):
        if total < 0 or not 0 <= hits <= total:
            raise ValueError(f"{metric}: need 0 <= hits <= total, got {hits}/{total}")
    base_label, cand_label = labels
    base_summary = _count_summary(baseline_hits, baseline_total, what)
    cand_summary = _count_summary(candidate_hits, candidate_total, what)

    def sentence(tail: str) -> str:
        # `what` ("connections stalled") names the metric readably, so `metric` is left out.
        c = _count_side(candidate_hits, candidate_total, candidate_notes, what)
        b = _count_side(baseline_hits, baseline_total, baseline_notes, "")
        return f"{cand_label} vs {base_label}: {c} vs {b} — {tail}."

    if baseline_total == 0 or candidate_total == 0:
        empty = [
            lab
            for lab, t in ((base_label, baseline_total), (cand_label, candidate_total))
            if t == 0
        ]
        return Comparison.inconclusive(
            metric, (base_label, cand_label), PROPORTION_DIFF, (base_summary, cand_summary),
            "n/a", sentence(f"inconclusive (nothing observed on {' and '.join(empty)})"),
        )  # fmt: skip

    table = [
        [candidate_hits, candidate_total - candidate_hits],
        [baseline_hits, baseline_total - baseline_hits],
    ]
    p = float(_stats().fisher_exact(table, alternative="two-sided").pvalue)
    diff = candidate_hits / candidate_total - baseline_hits / baseline_total
    significant = p < thresholds.alpha
    large = abs(diff) >= thresholds.min_rate_diff
    verdict: Verdict = "no significant change"
    if significant:
        verdict = _direction(diff, higher_is_worse) if large else "small change"
    stats_text = f"Fisher exact {format_p(p)}, {PROPORTION_DIFF} {_format_pp(diff)}"
    verdict, stats_text = _unless_powerless(
        verdict, stats_text, candidate_total, baseline_total,
        _min_p_counts(candidate_total, baseline_total), thresholds,
    )  # fmt: skip
    tail = f"{verdict} ({stats_text})"
    if verdict == "small change":
        threshold = _format_pp(thresholds.min_rate_diff).lstrip("+")
        tail = f"small change: {_format_pp(diff)} ({stats_text}), below the {threshold} threshold"
    return Comparison(
        metric=metric,
        baseline_label=base_label,
        candidate_label=cand_label,
        test=FISHER,
        p_value=p,
        effect=diff,
        effect_name=PROPORTION_DIFF,
        baseline_summary=base_summary,
        candidate_summary=cand_summary,
        delta=_format_pp(diff),
        verdict=verdict,
        words=sentence(tail),
    )


def _percent(hits: int, total: int) -> str:
    return f"{format_number(100 * hits / total)}%" if total else "n/a"


def _count_summary(hits: int, total: int, what: str) -> str:
    return f"{hits}/{total} {what} ({_percent(hits, total)})"


def _count_side(hits: int, total: int, notes: str | None, what: str) -> str:
    counted = f"{hits}/{total} {what}".rstrip()
    return f"{counted} ({_with_notes(_percent(hits, total), notes)})"


# ---------------------------------------------------------------------------------------
# Categories


def _mix(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in counts.items() if v) or "none"


def compare_categories(
    metric: str,
    baseline: Mapping[str, int],
    candidate: Mapping[str, int],
    *,
    labels: tuple[str, str],
    thresholds: Thresholds = Thresholds(),
    worse: Sequence[str] = WORSE_ENDS,
) -> Comparison:
    """How often each outcome (here: each end type) occurred, candidate against baseline.

    The two mixes form a contingency table: Fisher's exact test when there are two
    outcomes, chi-squared otherwise (by permutation when an expected count is below 5,
    where the chi-squared approximation does not hold). The effect is the total
    variation distance between the two mixes. A significant, large shift is "changed";
    when the outcomes in ``worse`` (a connection left open) moved by ``min_rate_diff``
    or more, it is a regression or an improvement.
    """
    for counts in (baseline, candidate):
        if any(n < 0 for n in counts.values()):
            raise ValueError(f"{metric}: counts must not be negative")
    base_label, cand_label = labels
    kinds = [
        k
        for k in dict.fromkeys([*baseline, *candidate])
        if baseline.get(k, 0) + candidate.get(k, 0)
    ]
    b_total = sum(baseline.get(k, 0) for k in kinds)
    c_total = sum(candidate.get(k, 0) for k in kinds)
    b_mix = {k: baseline.get(k, 0) for k in kinds}
    c_mix = {k: candidate.get(k, 0) for k in kinds}

    def sentence(tail: str) -> str:
        return f"{cand_label} vs {base_label}: {metric}: {_mix(c_mix)} vs {_mix(b_mix)} — {tail}."

    common = dict(
        metric=metric, baseline_label=base_label, candidate_label=cand_label,
        effect_name=TOTAL_VARIATION,
        baseline_summary=f"{_mix(b_mix)} (n={b_total})",
        candidate_summary=f"{_mix(c_mix)} (n={c_total})",
    )  # fmt: skip
    if b_total == 0 or c_total == 0:
        empty = [lab for lab, t in ((base_label, b_total), (cand_label, c_total)) if t == 0]
        return Comparison.inconclusive(
            metric, (base_label, cand_label), TOTAL_VARIATION,
            (common["baseline_summary"], common["candidate_summary"]),
            "n/a", sentence(f"inconclusive (nothing observed on {' and '.join(empty)})"),
        )  # fmt: skip
    shares = {k: c_mix[k] / c_total - b_mix[k] / b_total for k in kinds}
    effect = sum(abs(v) for v in shares.values()) / 2
    if len(kinds) == 1:
        test, p = FISHER, 1.0  # one outcome on both sides: nothing to tell apart
    elif len(kinds) == 2:
        table = [[c_mix[k] for k in kinds], [b_mix[k] for k in kinds]]
        test, p = FISHER, float(_stats().fisher_exact(table).pvalue)
    else:
        table = np.array([[c_mix[k] for k in kinds], [b_mix[k] for k in kinds]])
        expected = _stats().contingency.expected_freq(table)
        if (expected < 5).any():
            method = _stats().PermutationMethod(n_resamples=9999, rng=np.random.default_rng(0))
            result = _stats().chi2_contingency(table, correction=False, method=method)
            test = CHI2_PERMUTATION
        else:
            result = _stats().chi2_contingency(table)
            test = CHI2
        p = float(result.pvalue)
    moved = max(kinds, key=lambda k: (abs(shares[k]), k))
    delta = f"{moved} {_format_pp(shares[moved])}"
    significant = p < thresholds.alpha
    large = effect >= thresholds.min_rate_diff
    verdict: Verdict = "no significant change"
    if significant:
        verdict = "changed" if large else "small change"
        worse_shift = sum(shares.get(k, 0.0) for k in worse)
        if large and abs(worse_shift) >= thresholds.min_rate_diff:
            verdict = _direction(worse_shift, higher_is_worse=True)
    short = test.split(" (")[0] if test == FISHER else test
    stats_text = f"{short} {format_p(p)}, {TOTAL_VARIATION} {_format_pp(effect).lstrip('+')}"
    verdict, stats_text = _unless_powerless(
        verdict, stats_text, c_total, b_total, _min_p_counts(c_total, b_total), thresholds
    )
    tail = f"{verdict} ({stats_text})"
    if verdict == "small change":
        threshold = _format_pp(thresholds.min_rate_diff).lstrip("+")
        tail = f"small change: {delta} ({stats_text}), below the {threshold} threshold"
    return Comparison(
        **common, test=test, p_value=p, effect=effect, delta=delta, verdict=verdict,
        words=sentence(tail),
    )  # fmt: skip


__all__ = [
    "CHI2",
    "CHI2_PERMUTATION",
    "CLAIMS",
    "CLIFFS_DELTA",
    "FISHER",
    "MANN_WHITNEY",
    "MIN_SAMPLES",
    "PROPORTION_DIFF",
    "TOO_FEW",
    "TOTAL_VARIATION",
    "VERDICT_ORDER",
    "WORSE_ENDS",
    "Comparison",
    "Thresholds",
    "Verdict",
    "across_cells",
    "compare_categories",
    "compare_counts",
    "compare_samples",
    "describe_samples",
    "format_duration",
    "format_number",
    "format_p",
    "format_value",
    "one_cell",
]
