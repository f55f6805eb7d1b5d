"""Publish a run: recompute its cells from their raw files, then write every output.

The one place that writes every output: the report model is built once (``model``) and
rendered as report.md and report.html (``render``, Jinja2 templates); results.csv and
connections.csv (``tidy``), results.json, verdicts.json and the results folder's index.md.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from pathlib import Path

from pydantic import ValidationError

from harness import results
from harness.analyse import cell_metrics, record
from harness.analyse.compare import Comparison, Thresholds
from harness.analyse.record import CellRecord, Metrics, RunManifest
from harness.errors import HarnessError
from harness.quote import shown
from harness.report import cache, model, render, tables, tidy, workers


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
        records, keys = _recomputed(run_dir)
    else:
        keys = _keys(run_dir, records)
    found = _verdicts(run_dir, records, keys, run)
    report = model.build(run_dir, records, found, run)  # once, for both renderers
    text = render.markdown_of(report)
    (run_dir / "report.md").write_text(text)
    results.write_json(run_dir / "verdicts.json", [dataclasses.asdict(c) for c in found])
    tidy.write(run_dir, tables.unique_labels(records))  # one version label per spec
    results.write_json(
        run_dir / "results.json",
        [{**record.dumped(r), "raw_files": tables.raw_files(run_dir, r)} for r in records],
    )
    with workers.pool(len(records)) as draw:
        (run_dir / "report.html").write_text(render.html_of(report, run_dir, text, draw))
    render.write_index(run_dir.parent)
    return text


def _recomputed(run_dir: Path) -> tuple[list[CellRecord], dict[str, str]]:
    """Every cell record of the run, each ok cell's metrics recomputed from its raw files
    or kept from before (cells at once over the cores: :mod:`harness.report.workers`;
    :func:`harness.report.cache.analysed`), its cell.json rewritten where they differ;
    and each ok cell's cache key (:func:`harness.report.cache.analysis_key`) by cell."""
    paths = record.cell_paths(run_dir)
    cells = [record.load_run_cell(path) for path in paths]
    ok = [(cell, path.parent) for cell, path in zip(cells, paths, strict=True) if cell.ok]
    cache.secret()  # read (or made) once here: the forked workers inherit it
    with workers.pool(len(ok)) as each:
        done = iter(each(_compute, ok))
    records, keys = [], {}
    for cell, path in zip(cells, paths, strict=True):
        if cell.ok:
            metrics, keys[cell.cell] = next(done)
            if metrics != cell.metrics:  # written only when the numbers changed
                cell = cell.model_copy(update={"metrics": metrics})
                record.write_cell(path, cell)
        records.append(cell)
    return records, keys


# What a raw file edited or damaged since its run makes a parser raise (a missing key, a
# string where a number goes, a count beyond int64 overflowing numpy).
_DAMAGE = (ValidationError, KeyError, TypeError, AttributeError, IndexError, ValueError,
           ArithmeticError)  # fmt: skip


def _compute(args: tuple[CellRecord, Path]) -> tuple[Metrics, str]:
    """One cell's metrics from the raw files in its folder (or kept from when they were
    last: :func:`harness.report.cache.analysed`), and its cache key. Raises HarnessError
    naming the cell's folder and the parser that tripped when a raw file is not what the
    harness wrote."""
    cell, folder = args
    in_flight = cell_metrics.in_flight_bound(cell.load, cell.params)
    results.check_raw_sizes(folder)  # before a byte is hashed or parsed
    try:
        return cache.analysed(folder, cell.target, in_flight)
    except _DAMAGE as exc:
        raise HarnessError(
            f"{folder}: a raw file of this cell is not what the harness wrote "
            f"({type(exc).__name__} {shown(str(exc), 200)}, {_tripped(exc, folder)}). It was "
            "edited or damaged since: restore the run from a copy, or run that cell again."
        ) from exc


def _tripped(exc: BaseException, folder: Path) -> str:
    """Where ``exc`` was raised: the innermost line of the harness's own code, as
    ``harness/analyse/probe_samples.py:52`` (which parser, so which of the cell's files),
    and the file it was reading when that frame holds exactly one path in ``folder``."""
    root = Path(__file__).resolve().parents[2]
    where = "?"
    reading: list[Path] = []
    for frame, line in traceback.walk_tb(exc.__traceback__):
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(root / "harness"):
            where = f"{path.relative_to(root)}:{line}"
            values = frame.f_locals.values()
            reading = [v for v in values if isinstance(v, Path) and v.parent == folder]
    return f"reading {reading[0].name} at {where}" if len(reading) == 1 else f"at {where}"


def _keys(run_dir: Path, records: list[CellRecord]) -> dict[str, str]:
    """Each ok cell's cache key, by cell (its raw files hashed over the cores)."""
    ok = [(r.cell, run_dir / r.cell, r.target, cell_metrics.in_flight_bound(r.load, r.params))
          for r in records if r.ok]  # fmt: skip
    with workers.pool(len(ok)) as each:
        return dict(zip([c for c, *_ in ok], each(_key, ok), strict=True))


def _key(args: tuple[str, Path, str, int | None]) -> str:
    _, folder, target, in_flight = args
    return cache.analysis_key(folder, target, in_flight)


# The cache's kind for a run's verdicts.
VERDICTS = "verdicts"


def _verdicts(
    run_dir: Path, records: list[CellRecord], keys: dict[str, str], run: RunManifest
) -> list[Comparison]:
    """Every verdict of the run (:func:`harness.report.tables.comparisons`), or those kept
    for the same records, raw files (``keys``), baseline and thresholds: the tests are a
    second or two (scipy's import most of it) of a report whose cells are all kept."""
    thresholds = Thresholds(**run.thresholds())
    inputs = [run.baseline, json.dumps(dataclasses.asdict(thresholds), sort_keys=True)]
    for r in records:
        inputs += [cache.canonical(r), keys.get(r.cell, "")]
    entry_key = cache.key(inputs)
    kept = cache.read(run_dir, VERDICTS, entry_key)
    if kept is not None:
        try:
            return [Comparison(**c) for c in json.loads(kept)]
        except (ValueError, TypeError, RecursionError):  # authentic, yet not ours: tested
            pass
    found = tables.comparisons(run_dir, records, run.baseline, thresholds)
    payload = json.dumps([dataclasses.asdict(c) for c in found]).encode()
    if [Comparison(**c) for c in json.loads(payload)] == found:  # kept only if it reads back
        cache.write(run_dir, VERDICTS, entry_key, payload)
    return found
