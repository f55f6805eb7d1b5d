"""Publish a run: recompute its cells from their raw files, then write every output.

The one place that writes every output: the report model is built once (``model``) and
rendered as report.md and report.html (``render``, Jinja2 templates); results.csv and
connections.csv (``tidy``), results.json, verdicts.json and the results folder's index.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from harness import results
from harness.analyse import cell_metrics, record
from harness.analyse.compare import Thresholds
from harness.analyse.record import CellRecord
from harness.report import model, render, tables, tidy, workers


def rebuild(run_dir: Path, records: list[CellRecord] | None = None) -> str:
    """Write every output of a run; return report.md's text.

    ``records``: the run's cell records as the runner just wrote them (each cell was
    analysed once, as it ended), used as they are. Without them (``harness report``),
    every ok cell is recomputed from its raw files and its cell.json rewritten: the raw
    files are the truth, and the analysis may have changed since the run.

    Raises RecordError (exit 2) for a run.json or cell.json that does not validate.
    """
    run = record.load_run(run_dir / "run.json")
    if records is None:
        records = _recomputed(run_dir)
    thresholds = Thresholds(**run.thresholds())
    found = tables.comparisons(run_dir, records, run.baseline, thresholds)
    report = model.build(run_dir, records, found, run)  # once, for both renderers
    text = render.markdown_of(report)
    (run_dir / "report.md").write_text(text)
    results.write_json(run_dir / "verdicts.json", [dataclasses.asdict(c) for c in found])
    tidy.write(run_dir, tables.unique_labels(records))  # one version label per spec
    results.write_json(
        run_dir / "results.json",
        [
            {**json.loads(record.dump(r)), "raw_files": tables.raw_files(run_dir, r)}
            for r in records
        ],
    )
    with workers.pool(len(records)) as draw:
        (run_dir / "report.html").write_text(render.html_of(report, run_dir, text, draw))
    render.write_index(run_dir.parent)
    return text


def _recomputed(run_dir: Path) -> list[CellRecord]:
    """Every cell record of the run, each ok cell's metrics recomputed from its raw files
    (cells at once over the cores: :mod:`harness.report.workers`) and its cell.json
    rewritten."""
    paths = sorted(run_dir.glob("*/cell.json"))
    cells = [record.load_cell(path) for path in paths]
    ok = [(cell, path.parent) for cell, path in zip(cells, paths, strict=True) if cell.ok]
    with workers.pool(len(ok)) as each:
        done = iter(each(_compute, ok))
    records = []
    for cell, path in zip(cells, paths, strict=True):
        if cell.ok:
            cell = next(done)
            record.write_cell(path, cell)
        records.append(cell)
    return records


def _compute(args: tuple[CellRecord, Path]) -> CellRecord:
    """One cell's record with its metrics recomputed from the raw files in its folder."""
    cell, folder = args
    in_flight = cell_metrics.in_flight_bound(cell.load, cell.params)
    metrics = cell_metrics.compute(folder, cell.target, in_flight)
    return cell.model_copy(update={"metrics": metrics})
