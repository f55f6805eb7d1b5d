"""A run's cells on a real engine: each analysed once, `harness report` after the run
included, each step of each cell timed (issue 15, point 4). The overhead target itself
is `make bench`'s, not a timed test."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from harness import cli
from harness.analyse import cell_metrics, record
from harness.report import cache
from harness.stack.project import leftovers

MATRIX = """\
name: analysed-once
versions: [debian:bookworm]
load: {users: 2, spawn_rate: 2, duration_s: 2}
scenarios:
  - name: smoke
  - name: half-close
    params: {connections: 3}
"""


def test_each_cell_of_a_run_is_analysed_once_and_harness_report_again(
    docker_engine, tmp_path, monkeypatch
):
    # Counted in a file: `harness report` computes in forked workers (report/workers.py).
    log = tmp_path / "computed.log"
    log.touch()
    real = cell_metrics.compute

    def counting(folder: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        with log.open("a") as out:
            out.write(f"{folder.name}\n")
        return real(folder, *args, **kwargs)

    def calls() -> list[str]:
        return log.read_text().splitlines()

    monkeypatch.setattr(cell_metrics, "compute", counting)
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    out = tmp_path / "results"
    assert cli.main(["--results-dir", str(out), "matrix", str(matrix)]) == 0
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    cells = record.cells(run_dir)
    assert [c.status for c in cells] == ["ok", "ok"], [c.error for c in cells]
    assert sorted(calls()) == sorted(c.cell for c in cells)  # once each, report included
    for cell in cells:
        assert cell.schema_version == record.SCHEMA_VERSION
        phases = cell.phases
        assert set(phases) >= {"up", "listen", "baseline", "load", "drain", "down", "analyse"}
        assert cell.finished is not None
        wall = datetime.fromisoformat(cell.finished) - datetime.fromisoformat(cell.started)
        # the steps are the cell: nothing sizeable untimed
        assert abs(sum(phases.values()) - wall.total_seconds()) < 1.0, phases
        # every census sampled the idle stack before the load: the states' baseline
        for side, summary in (cell.m.census or {}).items():
            assert summary.captured_s is not None
            assert summary.captured_s[0] <= -0.3, (side, summary.captured_s)
    log.write_text("")
    report = (run_dir / "report.md").read_text()
    # `harness report` after the run: the runner's analysis is kept (harness.report.cache)
    kept = sorted((run_dir / cache.CACHE_DIR).iterdir())
    assert cli.main(["report", str(run_dir)]) == 0
    assert calls() == []
    assert (run_dir / "report.md").read_text() == report
    assert sorted((run_dir / cache.CACHE_DIR).iterdir()) == kept  # nor drawn nor tested again
    # a raw file that changes is what a cell is recomputed from: that cell alone
    with (run_dir / cells[0].cell / "commands.log").open("a") as f:
        f.write("\n")
    assert cli.main(["report", str(run_dir)]) == 0
    assert calls() == [cells[0].cell]
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}
