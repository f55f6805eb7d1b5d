"""The report of a run as data, built once; report.md and report.html render it
(harness.report.render, Jinja2 templates in templates/).

Every string here is as measured or recorded: plain text, never markup. Escaping is the
renderer's: Markdown escapes table cells and code spans, HTML escapes everything
(autoescape). A few sentences carry Markdown's own `code` and **bold**; the HTML
renderer turns exactly those into tags after escaping (``inline`` there).
"""

from __future__ import annotations

import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import results
from harness.analyse import distribution, haproxy_log
from harness.analyse.compare import Comparison
from harness.analyse.record import CellRecord, RunManifest
from harness.errors import HarnessError
from harness.plan import scenarios
from harness.report import claims, tables

VERDICT_HEADERS = ["comparison", "version", "delta", "test", "p", "effect", "verdict"]
# Verdict groups, in the order a reader needs them.
VERDICT_GROUPS = (
    ("Regressions, improvements and changes", ("regression", "improvement", "changed")),
    ("Small changes (significant, below the practical thresholds)", ("small change",)),
    ("Inconclusive", ("inconclusive",)),
)
SAME = "no significant change"


@dataclass(frozen=True)
class Table:
    """A table: ``headers`` and ``rows`` of plain values (str, numbers, None)."""

    headers: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class CellTable:
    """One parameter set of a scenario: its cells, one row each (``tables.cell_tables``);
    ``bypass``: why no verdict compares versions on them (None: there are verdicts)."""

    params: str
    bypass: str | None
    table: Table
    # the entry's explicit HAProxy config lines (tables.config_body); [] when none
    config: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChunkTable:
    """chunked-stall's per-size table: the sizes where versions differ (``shown``), every
    size (``every``), and what was left out of ``shown`` (empty: nothing)."""

    shown: Table | None
    every: Table | None
    left_out: str


@dataclass(frozen=True)
class ScenarioSection:
    """One scenario of the run: its description, a note when its cells do not show the
    field note's phenomenon, the load, the tables and the proxy-overhead lines."""

    name: str
    summary: str | None
    field_note: str | None
    not_shown: str | None
    load: str
    cell_tables: list[CellTable]
    chunks: ChunkTable | None
    overhead: list[str] | None  # None: the scenario has no proxy-overhead section
    fates: Table | None  # error-fate: connections closed or kept per status and flag
    # the cells themselves, for the plots the HTML draws of them
    records: list[CellRecord] = field(repr=False)


@dataclass(frozen=True)
class VerdictGroup:
    """A heading and the verdicts under it, in verdict order."""

    title: str
    comparisons: list[Comparison]


@dataclass(frozen=True)
class FailedCell:
    """A cell that did not finish: its id, the error's first line and the whole error."""

    cell: str
    first_line: str
    error: str


@dataclass(frozen=True)
class Flag:
    """A termination state seen in HAProxy's logs: count over the run, and its meaning
    in the words of HAProxy's manual (haproxy_log.explain)."""

    state: str
    count: int
    meaning: str


@dataclass(frozen=True)
class Provenance:
    """Where and how the run ran (run.json), and each HAProxy build's ``haproxy -vv`` head
    (its first 12 lines, one per first line)."""

    run: str
    started: str
    finished: str
    matrix_file: str | None
    matrix_sha256: str
    harness_commit: Any
    harness_dirty: bool
    kernel: Any
    cpu_count: Any
    cpu_model: Any
    docker: Any
    compose: Any
    python: Any
    tcp_sysctls: str
    images: Table
    vv_heads: list[list[str]]


@dataclass(frozen=True)
class Report:
    """Everything report.md and report.html say, in their order."""

    title: str
    baseline: str
    description: str
    measured: int
    cells: int
    definition: str
    # cells whose client and HAProxy counted different requests (tables.miscounted)
    miscounted: list[str]
    miscount_note: str
    tally: str
    # comparisons in verdict order; their table rows (tables._verdict_rows)
    found: list[Comparison]
    verdict_rows: list[list[Any]]
    groups: list[VerdictGroup]
    same: list[Comparison]
    verdict_counts: dict[str, int]
    scenarios: list[ScenarioSection]
    # the matrix's field-note claims against the measured numbers (harness.report.claims)
    claims: Table | None
    failed: list[FailedCell]
    flags: list[Flag]
    provenance: Provenance


def _failed(record: CellRecord) -> FailedCell:
    error = record.error or "?"
    return FailedCell(record.cell, error.splitlines()[0] if error.strip() else "?", error)


def _provenance(run: RunManifest, run_dir: Path) -> Provenance:
    env = run.environment
    sysctls = env.get("tcp_sysctls")
    heads: dict[str, list[str]] = {}
    for vv in sorted(run_dir.glob("*/haproxy-vv.txt")):
        head = vv.read_text(errors="replace").splitlines()[:12]
        if head:
            heads.setdefault(head[0], head)  # one per HAProxy build
    return Provenance(
        run=run.run,
        started=run.started,
        finished=run.finished or "?",
        # a newline in a file name would end the Markdown line: shown as \n
        matrix_file=run.matrix_file.replace("\n", "\\n") if run.matrix_file else None,
        matrix_sha256=run.matrix_sha256 or "?",
        harness_commit=env.get("harness_commit"),
        harness_dirty=bool(env.get("harness_dirty")),
        kernel=env.get("kernel"),
        cpu_count=env.get("cpu_count"),
        cpu_model=env.get("cpu_model"),
        docker=env.get("docker"),
        compose=env.get("compose"),
        python=env.get("python"),
        tcp_sysctls=", ".join(
            f"{k}={v}" for k, v in (sysctls if isinstance(sysctls, dict) else {}).items()
        ),
        images=Table(
            ["image", "tag", "id", "HAProxy reported"],
            [[name, i.tag, i.id or "-", i.reported or "-"] for name, i in run.images.items()],
        ),
        vv_heads=list(heads.values()),
    )


def _scenario(run_dir: Path, name: str, rows: list[CellRecord]) -> ScenarioSection:
    scenario = scenarios.SCENARIOS.get(name)
    shows = tables.shows(name)
    chunks = None
    if "chunk-sizes" in shows.sections:
        headers, shown, left_out = tables.chunk_rows(rows, run_dir)
        _, every, _ = tables.chunk_rows(rows, run_dir, all_sizes=True)
        chunks = ChunkTable(
            Table(headers, shown) if shown else None,
            Table(headers, every) if every else None,
            left_out,
        )
    return ScenarioSection(
        name=name,
        summary=scenario.summary if scenario else None,
        field_note=scenario.field_note if scenario else None,
        not_shown=tables.phenomenon_note(run_dir, name, rows),
        load=tables._load_line(rows[0].load),
        cell_tables=[
            CellTable(
                params,
                bypass,
                Table(headers, table),
                tables.config_body(next(r for r in rows if tables._params(r) == params).params),
            )
            for params, bypass, headers, table in tables.cell_tables(run_dir, name, rows)
        ],
        chunks=chunks,
        overhead=tables._proxy_overhead(rows) if "proxy-overhead" in shows.sections else None,
        fates=_fates(rows, run_dir) if "error-fates" in shows.sections else None,
        records=rows,
    )


def _fates(rows: list[CellRecord], run_dir: Path) -> Table | None:
    found = tables.fate_rows(rows, run_dir)
    return Table(tables.FATE_HEADERS, found) if found else None


def _claims(run: RunManifest, records: list[CellRecord]) -> Table | None:
    found = claims.read(run.matrix)
    if not found:
        return None
    return Table(claims.HEADERS, [row.row() for row in claims.evaluate(found, records)])


def build(
    run_dir: Path, records: list[CellRecord], found: list[Comparison], run: RunManifest
) -> Report:
    """The report of the run in ``run_dir``: its records (version labels made unique
    here), the verdicts ``found`` and its manifest ``run``. Reads the raw files the
    tables count (probe.jsonl, haproxy.log, haproxy -vv); writes nothing."""
    records = tables.unique_labels(records)
    found = tables.ordered(found)
    by_scenario: dict[str, list[CellRecord]] = defaultdict(list)
    for r in records:
        by_scenario[r.scenario].append(r)
    seen: dict[str, int] = defaultdict(int)
    for r in records:
        for state, n in (r.m.haproxy.termination_states if r.m.haproxy else {}).items():
            seen[state] += n
    counts: dict[str, int] = defaultdict(int)
    for c in found:
        counts[c.verdict] += 1
    groups = [
        VerdictGroup(title, [c for c in found if c.verdict in kinds])
        for title, kinds in VERDICT_GROUPS
    ]
    return Report(
        title=f"{run.matrix.get('name', run_dir.name)}: run {run_dir.name}",
        baseline=run.baseline,
        description=str(run.matrix.get("description") or ""),
        measured=sum(1 for r in records if r.ok),
        cells=len(records),
        definition=distribution.DEFINITION,
        miscounted=tables.miscounted(records),
        miscount_note=tables.MISCOUNT_NOTE,
        tally=tables.tally(found),
        found=found,
        verdict_rows=tables._verdict_rows(found),
        groups=[g for g in groups if g.comparisons],
        same=[c for c in found if c.verdict == SAME],
        verdict_counts=dict(counts),
        scenarios=[_scenario(run_dir, name, rows) for name, rows in by_scenario.items()],
        claims=_claims(run, records),
        failed=[_failed(r) for r in records if not r.ok],
        flags=[Flag(s, n, haproxy_log.explain(s)) for s, n in sorted(seen.items())],
        provenance=_provenance(run, run_dir),
    )


@dataclass(frozen=True)
class IndexEntry:
    """One run in the results folder's index.md: its verdicts from verdicts.json (None
    when that file is not what this harness writes), those that need a reader
    (regressions, improvements, changes, small changes), and how many showed no
    significant change; ``compared``: how many comparisons it made."""

    run: str
    tally: str | None
    compared: int
    needs_reader: list[Comparison]
    same: int


NEEDS_A_READER = ("regression", "improvement", "changed", "small change")


def _regular(run_dir: Path, name: str) -> bool:
    """``run_dir`` is a folder (not a link to one) holding ``name`` as a regular file."""
    try:
        return stat.S_ISDIR(run_dir.lstat().st_mode) and stat.S_ISREG(
            (run_dir / name).lstat().st_mode
        )
    except OSError:
        return False


def index(results_dir: Path) -> list[IndexEntry]:
    """Every run folder with a report.md in ``results_dir``, newest first, with its
    verdicts read from its verdicts.json (never from its report.md).

    A run folder is a folder (not a link) named like a run id (results.RUN_ID) whose
    report.md and verdicts.json are regular files: the folder beside a run may hold
    anything, and a verdicts.json that is a FIFO there hung ``report`` on that run.
    """
    entries = []
    for run_dir in sorted(results_dir.iterdir(), reverse=True):
        if not (results.RUN_ID.fullmatch(run_dir.name) and _regular(run_dir, "report.md")):
            continue
        try:
            if (run_dir / "verdicts.json").exists() and not _regular(run_dir, "verdicts.json"):
                raise HarnessError(f"{run_dir / 'verdicts.json'}: not a regular file")
            found: list[Comparison] | None = tables.ordered(tables.read_verdicts(run_dir))
        except (HarnessError, OSError, TypeError, ValueError):
            found = None  # written by another version of the harness, or edited
        entries.append(
            IndexEntry(
                run_dir.name,
                None if found is None else tables.tally(found),
                len(found or []),
                [c for c in found or [] if c.verdict in NEEDS_A_READER],
                sum(1 for c in found or [] if c.verdict == SAME),
            )
        )
    return entries
