"""Two runs side by side: ``python -m harness compare RUN_A RUN_B``.

A cell of run B is compared with the cell of run A that has the same HAProxy version
spec, scenario, parameters and load shape (generator, loop, users or connections,
workers, threads, and the open loop's rate: what a latency or a req/s is measured
under; a probe cell's load is its probe), repetitions pooled, as inside one run. Each pair gets
the verdicts a single run gives a candidate version against its baseline
(:func:`harness.report.comparisons`: Mann-Whitney U on samples, Fisher's exact test on
counts, end types as a contingency table), with run A as the baseline. Cells found in
only one of the runs are listed, not compared.

Both folders are read, never written: every metric is recomputed in memory from the
cells' raw files, so two runs recorded by different versions of the harness are judged
by the same code. A run folder may come from someone else: a cell is read only from the
folder its ``cell.json`` was found in, whatever the record says its folder is.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from harness import results
from harness.analyse import cell_metrics
from harness.analyse.compare import Comparison, Thresholds
from harness.analyse.record import CellRecord, RunManifest, cell_paths, load_run, load_run_cell
from harness.plan.spec import params_text
from harness.report import tables as report

Record = CellRecord
# (version spec, scenario, parameters as canonical JSON, load shape): what makes two
# cells comparable.
Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class RunComparison:
    """The outcome of comparing run B against run A.

    ``found``: one :class:`Comparison` per metric and matched (version, scenario,
    parameters); its labels read "<version label> [A]" and "<version label> [B]".
    ``only_a`` / ``only_b``: cells without a counterpart, as "version · scenario ·
    parameters". ``notes``: differences between the runs that a reader must weigh
    (load settings, verdict thresholds).
    """

    run_a: Path
    run_b: Path
    found: list[Comparison]
    only_a: list[str]
    only_b: list[str]
    notes: list[str]


def _load_shape(record: Record) -> str:
    """The load settings a cell's numbers depend on, as text ("probe" for a probe cell:
    its connections are its parameters). A latency measured by wrk and one measured by
    Locust, at 20 users and at 200, or by h2load at 1 stream per connection and at 10,
    are different quantities: never compared."""
    load = record.load
    if load.mode == "probe":
        return "probe"
    shape = f"{load.generator} {load.mode}, {load.users} users"
    if load.workers:
        shape += f", {load.workers} workers"
    if load.threads:
        shape += f", {load.threads} threads"
    if load.streams:  # h2load: requests in flight per connection
        shape += f", {load.streams} streams"
    if load.mode == "open-loop":
        shape += f", {load.rate:g} req/s"
    # a native client's settings (session, agent, pool sizes) are the experiment itself
    shape += "".join(f", {k}={v}" for k, v in load.client_settings.items())
    return shape


def _key(record: Record) -> Key:
    params = json.dumps(record.params, sort_keys=True, default=str)
    return record.version.spec, record.scenario, params, _load_shape(record)


def _describe(record: Record) -> str:
    params = params_text(record.params) or "defaults"
    return f"{record.version.label} · {record.scenario} · {params} · {_load_shape(record)}"


def _cells(run_dir: Path) -> list[Record]:
    """The run's finished cells, metrics recomputed from their raw files (nothing written).

    ``cell`` is replaced by the absolute folder the record was read from, so the report's
    readers (which join ``run_dir / record["cell"]``) open exactly that folder.
    """
    out = []
    for path in cell_paths(run_dir):
        record = load_run_cell(path)
        if not record.ok:
            continue
        in_flight = cell_metrics.in_flight_bound(record.load, record.params)
        metrics = cell_metrics.compute(path.parent, record.target, in_flight)
        out.append(
            record.model_copy(update={"metrics": metrics, "cell": str(path.parent.resolve())})
        )
    return out


def _tagged(record: Record, side: str) -> Record:
    version = record.version.model_copy(
        update={
            "spec": f"{side}:{record.version.spec}",
            "label": f"{record.version.label} [{side}]",
        }
    )
    return record.model_copy(update={"version": version})


def _notes(run_a: RunManifest, run_b: RunManifest) -> list[str]:
    notes = []
    load_a, load_b = run_a.load(), run_b.load()
    if load_a != load_b:
        notes.append(
            f"the load settings differ: A {load_a}, B {load_b}; load cells whose generator, "
            "loop, users, workers, threads or open-loop rate differ are not compared "
            "(listed below)"
        )
    th_a, th_b = run_a.thresholds(), run_b.thresholds()
    if th_a != th_b:
        notes.append(f"the verdict thresholds differ: A {th_a}, B {th_b}; A's are used")
    return notes


def compare(run_a: Path, run_b: Path) -> RunComparison:
    """Run B against run A, cell by matching cell.

    Raises :class:`harness.errors.HarnessError` (via :func:`results.require_run`) when a
    folder is not a run, and ``KeyError``/``TypeError``/``ValueError`` on a record that
    is not what the harness writes (the command line turns those into a message).
    """
    results.require_run(run_a)
    results.require_run(run_b)
    meta_a = load_run(run_a / "run.json")
    meta_b = load_run(run_b / "run.json")
    thresholds = Thresholds(**meta_a.thresholds())

    by_key: dict[str, dict[Key, list[Record]]] = {"A": defaultdict(list), "B": defaultdict(list)}
    for side, run_dir in (("A", run_a), ("B", run_b)):
        for record in _cells(run_dir):
            by_key[side][_key(record)].append(record)

    only_a = [_describe(by_key["A"][k][0]) for k in sorted(by_key["A"].keys() - by_key["B"].keys())]
    only_b = [_describe(by_key["B"][k][0]) for k in sorted(by_key["B"].keys() - by_key["A"].keys())]

    # One comparison per version: its cells in B against its cells in A, exactly as a
    # candidate against the baseline inside one run.
    found: list[Comparison] = []
    for spec in sorted({k[0] for k in by_key["A"].keys() & by_key["B"].keys()}):
        matched = [k for k in by_key["A"].keys() & by_key["B"].keys() if k[0] == spec]
        records = [_tagged(r, "A") for k in matched for r in by_key["A"][k]]
        records += [_tagged(r, "B") for k in matched for r in by_key["B"][k]]
        # run_dir is unused for these records: their "cell" is an absolute folder.
        found += report.comparisons(run_a, records, f"A:{spec}", thresholds)
    return RunComparison(run_a, run_b, found, only_a, only_b, _notes(meta_a, meta_b))


def markdown(outcome: RunComparison) -> str:
    """The comparison as Markdown: verdicts first, then the table, then unmatched cells."""
    lines = [
        f"# {outcome.run_b.name} against {outcome.run_a.name}",
        "",
        f"A (baseline) = `{outcome.run_a}`",
        f"B = `{outcome.run_b}`",
        "",
        "Cells are matched by HAProxy version spec, scenario and parameters; repetitions "
        "are pooled. Each verdict is run B's cells against run A's.",
        "",
    ]
    lines += [f"Note: {note}." for note in outcome.notes]
    if outcome.notes:
        lines.append("")
    lines += [report.tally(outcome.found), ""]
    lines += report.verdict_lines(outcome.found)
    if outcome.found:
        lines += [
            report._md_table(
                report._verdict_rows(report.ordered(outcome.found)),
                ["comparison", "version", "delta", "test", "p", "effect", "verdict"],
            ),
            "",
        ]
    for side, only in (("A", outcome.only_a), ("B", outcome.only_b)):
        if only:
            lines += [f"### Only in run {side} (not compared)", ""]
            lines += [f"- {cell}" for cell in only]
            lines.append("")
    return "\n".join(lines)
