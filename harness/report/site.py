"""Published results that accumulate: ``python -m harness publish [RESULTS_DIR]``.

One static site over every run in a results folder (asv's ``publish`` is the model):
``index.html`` lists the runs, newest first, with their verdict tallies and the verdicts
that need a reader (regressions, improvements, changes), each linking to its run's
``report.html``; ``scenarios.html`` has, per scenario and parameter set, the headline
metric of every version ever measured, as a table and a strip plot (one point per cell).
No server, no script: the pages open from disk.

Run folders may come from other people: they are only read (a folder is a run when its
name is a run id and it holds ``run.json``); every string from them is HTML-escaped by
Jinja2's autoescape; links point only at folder names that match the run id pattern.
The numbers are the ones each run recorded in its ``cell.json`` (``report RUN_DIR``
recomputes a run's numbers from its raw files).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from matplotlib.figure import Figure

from harness import results
from harness.analyse.compare import VERDICT_ORDER, Comparison, format_number
from harness.analyse.distribution import median
from harness.analyse.record import CellRecord, cells, load_run
from harness.errors import HarnessError
from harness.report import plots, render
from harness.report import tables as report

Record = CellRecord
TEMPLATES = Path(__file__).with_name("templates")  # Jinja2, autoescaped
NEEDS_A_READER = ("regression", "improvement", "changed", "small change")


@dataclass(frozen=True)
class Headline:
    """A scenario's headline number: what it is called, its unit, how to read it."""

    name: str
    unit: str
    read: Callable[[Record], float | None]


def _share(hits_total: tuple[int, int]) -> float | None:
    hits, total = hits_total
    return 100.0 * hits / total if total else None


def headline(scenario: str) -> Headline | None:
    """The number a scenario is judged on (report.METRIC), per cell: close delay p50 or
    latency p50 in ms, or the share in % for counts (stalled connections, 5xx answers)."""
    if scenario not in report.METRIC:
        return None
    kind, what = report.METRIC[scenario]
    if kind == "counts":
        return Headline(f"{what} (%)", "%", lambda r: _share(report._hits(r, what)))
    if what == "close delay":
        return Headline("close delay p50 (ms)", "ms",
                        lambda r: r.m.probe.delay_ms.p50 if r.m.probe else None)  # fmt: skip
    return Headline("latency p50 (ms)", "ms", lambda r: r.m.load.p50_ms if r.m.load else None)


@dataclass
class RunEntry:
    name: str
    title: str
    tally: str
    needs_reader: list[str]
    has_html: bool


@dataclass
class Group:
    """One scenario and parameter set, every version that ever ran it."""

    scenario: str
    params: str
    headline: Headline
    # version label -> [(run, value)]
    values: dict[str, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.scenario} {self.params}".encode()).hexdigest()[:10]

    def rows(self) -> list[list[Any]]:
        out = []
        for label, seen in sorted(self.values.items()):
            numbers = [v for _, v in seen]
            spread = (median(numbers), min(numbers), max(numbers))
            out.append([label, len({r for r, _ in seen}), len(numbers),
                        *map(format_number, spread)])  # fmt: skip
        return out


def runs(results_dir: Path) -> list[Path]:
    """The run folders in ``results_dir``, newest first (run ids start with UTC time)."""
    if not results_dir.is_dir():
        return []
    found = [
        p
        for p in results_dir.iterdir()
        if p.is_dir() and results.RUN_ID.fullmatch(p.name) and (p / "run.json").is_file()
    ]
    return sorted(found, key=lambda p: p.name, reverse=True)


def _params_key(record: Record) -> str:
    params = record.params
    return ", ".join(f"{k}={params[k]}" for k in sorted(params)) or "defaults"


def collect(results_dir: Path) -> tuple[list[RunEntry], list[Group]]:
    """Every run's entry for the index, and the scenario groups across runs.

    A run or cell that cannot be read is skipped (a run folder of another harness
    version, or a damaged one, must not stop the site); its entry says so.
    """
    entries: list[RunEntry] = []
    groups: dict[tuple[str, str], Group] = {}
    for run_dir in runs(results_dir):
        try:
            results.require_plain(run_dir)  # nothing read through a planted link or FIFO
            run = load_run(run_dir / "run.json")
            found = report.read_verdicts(run_dir)
            records = report.unique_labels([r for r in cells(run_dir) if r.ok])
        except (HarnessError, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            entries.append(RunEntry(run_dir.name, "", f"unreadable: {type(exc).__name__}",
                                    [], False))  # fmt: skip
            continue
        title = str(run.matrix.get("description") or run.matrix.get("name") or "")
        needs = [c.words for c in _ordered(found) if c.verdict in NEEDS_A_READER]
        entries.append(RunEntry(run_dir.name, title, report.tally(found), needs,
                                (run_dir / "report.html").is_file()))  # fmt: skip
        for record in records:
            if report.bypasses_proxy(record):
                continue
            scenario = record.scenario
            line = headline(scenario)
            if line is None:
                continue
            value = line.read(record)
            label = record.version.label
            if not isinstance(value, int | float):
                continue
            key = (scenario, _params_key(record))
            group = groups.setdefault(key, Group(scenario, key[1], line))
            group.values[label].append((run_dir.name, float(value)))
    return entries, [groups[k] for k in sorted(groups)]


def _ordered(found: list[Comparison]) -> list[Comparison]:
    return sorted(found, key=lambda c: VERDICT_ORDER.index(c.verdict))


def strip_plot(group: Group) -> str:
    """One point per cell, per version; inline SVG (deterministic ids)."""
    labels = sorted(group.values)
    # the report's own deterministic, compact inline-SVG writer
    with plots._style(f"pub-{group.key}"):
        fig = Figure(figsize=(max(3.0, 1.1 * len(labels) + 1), 2.4))
        ax = fig.add_subplot()
        for i, label in enumerate(labels):
            ys = [v for _, v in group.values[label]]
            xs = [i + 0.08 * ((j % 5) - 2) for j in range(len(ys))]
            ax.scatter(xs, ys, s=14, alpha=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_ylabel(group.headline.name)
        ax.set_ylim(bottom=0)
        return plots._svg(fig)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every string from a run folder is someone else's
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def publish(results_dir: Path, out: Path | None = None) -> Path:
    """Write the site to ``out`` (default ``results_dir/site``); returns index.html's path.

    Links to runs are relative (``../<run>/report.html``) when the site is inside the
    results folder, else absolute file paths. Raises OSError when ``out`` cannot be
    written.
    """
    out = out or results_dir / "site"
    entries, groups = collect(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(results_dir.resolve(), out.resolve())
    env = _environment()
    context = {
        "css": jinja2.utils.markupsafe.Markup(render.CSS),  # the project's own stylesheet
        "results_dir": str(results_dir),
        "base": base,
        "runs": entries,
        "groups": [{"group": g, "rows": g.rows(), "plot": strip_plot(g)} for g in groups],
    }
    # The SVG is matplotlib's own output, not a run's string: marked safe on purpose
    # (the labels inside it are escaped by matplotlib's SVG writer).
    for item in context["groups"]:
        item["plot"] = jinja2.utils.markupsafe.Markup(item["plot"])
    for name in ("index.html", "scenarios.html"):
        results.write_text(out / name, env.get_template(f"site-{name}.j2").render(**context))
    results.write_json(out / "runs.json", [e.__dict__ for e in entries])
    return out / "index.html"
