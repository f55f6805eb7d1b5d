"""What a cell spends around its load: readiness read from the observers' files, and no
cell analysed twice in one run (issue 15, point 4). No Docker."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.analyse import cell_metrics, record
from harness.errors import CellError
from harness.report import rebuild
from harness.stack import ready

DATA = Path(__file__).parent.parent / "data" / "run-half-close-keepalive"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA, tmp_path / DATA.name))


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[], list[Path]]:
    """The folders cell_metrics.compute was called on so far (it still computes), by
    this process or the report's forked workers (harness/report/workers.py): each call
    appends a line to a file, in one write."""
    log = tmp_path / "computed.log"
    log.touch()
    real = cell_metrics.compute

    def counting(folder: Path, target: str = "haproxy", in_flight: int | None = None):  # type: ignore[no-untyped-def]
        with log.open("a") as out:
            out.write(f"{folder}\n")
        return real(folder, target, in_flight)

    monkeypatch.setattr(cell_metrics, "compute", counting)
    return lambda: [Path(line) for line in log.read_text().splitlines()]


def test_the_report_at_the_end_of_a_run_uses_the_runners_records(run_dir, computed):
    records = record.cells(run_dir)
    rebuild.rebuild(run_dir, records)
    assert computed() == []
    assert (run_dir / "report.md").read_text().startswith("# ")


def test_harness_report_recomputes_every_ok_cell_from_its_raw_files(run_dir, computed):
    ok = [r.cell for r in record.cells(run_dir) if r.ok]
    rebuild.rebuild(run_dir)
    assert sorted(p.name for p in computed()) == sorted(ok)


CENSUS_HEAD = "# census v1 interval_s=0.1 listen_ports=8080,8443\n"


def _sample(listen: bool) -> str:
    return f"S {time.time():.6f}\n" + ("LISTEN in 1\n" if listen else "")


def test_ready_waits_for_listeners_capture_and_baseline_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(ready, "_check_running", lambda project, context="default": None)
    sides = ("client", "haproxy", "backend")
    for side in sides:
        (tmp_path / f"census-{side}.txt").write_text(CENSUS_HEAD)
    (tmp_path / "haproxy.pcap").write_bytes(b"")
    stop = threading.Event()

    def observers() -> None:  # census.sh at 20 ms; haproxy listens late, tcpdump later
        for n in range(200):
            for side in sides:
                listen = side == "backend" or (side == "haproxy" and n >= 5)
                with (tmp_path / f"census-{side}.txt").open("a") as f:
                    f.write(_sample(listen))
            if n == 10:
                (tmp_path / "haproxy.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))
            if stop.wait(0.02):
                return

    writer = threading.Thread(target=observers)
    writer.start()
    try:
        took = ready.wait("p", tmp_path, "haproxy", bound_s=5, baseline_samples=4)
    finally:
        stop.set()
        writer.join()
    # ready once the capture started (sample 10), then 4 more samples in every census
    assert 0.15 < took["listen"] < 2, took
    assert 0.05 < took["baseline"] < 1, took
    for side in sides:
        count, _ = ready.samples(tmp_path / f"census-{side}.txt")
        assert count >= 15


def test_ready_names_what_is_missing_when_its_bound_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(ready, "_check_running", lambda project, context="default": None)
    for side in ("client", "haproxy", "backend"):
        listen = side == "backend"
        (tmp_path / f"census-{side}.txt").write_text(CENSUS_HEAD + _sample(listen))
    with pytest.raises(CellError, match=r"haproxy is not listening.*capture has not started"):
        ready.wait("p", tmp_path, "haproxy", bound_s=0.2)


def test_ready_stops_at_once_when_a_container_exits(tmp_path, monkeypatch):
    def exited(project: str, context: str = "default") -> None:
        raise CellError("haproxy stopped while the stack was starting")

    monkeypatch.setattr(ready, "_check_running", exited)
    started = time.monotonic()
    with pytest.raises(CellError, match="haproxy stopped"):
        ready.wait("p", tmp_path, "haproxy", bound_s=30)
    assert time.monotonic() - started < 1


def test_census_samples_counts_whole_blocks_and_listeners(tmp_path):
    path = tmp_path / "census-backend.txt"
    assert ready.samples(path) == (0, False)
    path.write_text(CENSUS_HEAD + "S 1.0\nESTAB in 2\nS 1.1\nLISTEN in 1\nS 1.2\n")
    assert ready.samples(path) == (3, True)
