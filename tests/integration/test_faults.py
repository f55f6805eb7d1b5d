"""Faults around a run, on real Docker: a full results disk, two runs at once, a run
folder in use, results folders Docker cannot mount, HAProxy killed under load.

Each test runs the real CLI and ends by checking that Docker holds nothing of the harness's.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import ROOT
from harness.stack.compose import client
from harness.stack.project import leftovers
from tests.integration.processes import finish, start, start_in_one_second

NOTHING = {"containers": [], "networks": [], "volumes": []}
ONE_CELL = """
name: one-cell
versions: [debian:bookworm]
load: {users: 5, spawn_rate: 5, duration_s: DURATION}
scenarios:
  - name: smoke
"""
SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def _matrix(folder: Path, duration: float, name: str = "one.yaml") -> Path:
    path = folder / name
    path.write_text(ONE_CELL.replace("DURATION", f"{duration:g}"))
    return path


def _runs(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if (p / "run.json").exists())


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


@pytest.fixture
def full_disk(tmp_path, request):
    """A small tmpfs: 400 KB has room for a run's rendered files, not for a cell's raw
    files; 12 KB not even for the rendered files."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    size = getattr(request, "param", "400k")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True, timeout=30
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True, timeout=30)


def test_a_full_results_disk_stops_the_run_in_one_line_and_leaves_nothing(docker_engine, full_disk):
    results = full_disk / "results"
    proc = start(
        results, "run", "--haproxy", "debian:bookworm", "--scenario", "smoke", "--duration", "6"
    )
    code, err = finish(proc)
    assert "Traceback" not in err, err[-3000:]
    assert code == 2, err[-3000:]
    [line] = _error_lines(err)
    print(f"\nthe run's last word: {line}")
    assert "No space left on device" in line, err[-3000:]
    assert str(results) in line, line  # names the folder (or the file in it) that is full
    assert leftovers(None) == NOTHING
    # run.json was written before the cell, and is closed where it could be: never half.
    [run] = _runs(results)
    json.loads((run / "run.json").read_text())


@pytest.mark.parametrize("full_disk", ["12k"], indirect=True)
def test_a_disk_full_before_the_first_cell_leaves_no_run_folder(docker_engine, full_disk):
    results = full_disk / "results"
    proc = start(
        results, "run", "--haproxy", "debian:bookworm", "--scenario", "smoke", "--duration", "2"
    )
    code, err = finish(proc)
    assert "Traceback" not in err, err[-3000:]
    assert code == 2, err[-3000:]
    assert "No space left on device" in err, err[-3000:]
    [line] = [line for line in err.splitlines() if str(results) in line and "error" in line]
    print(f"\nthe run's last word: {line}")
    assert line.startswith("error: "), err[-3000:]
    assert "is kept" not in err
    assert list(results.iterdir()) == []  # what filled the disk is gone with the run
    assert leftovers(None) == NOTHING


def test_two_runs_of_one_matrix_started_in_the_same_second_both_complete(harness, tmp_path):
    # A name with what must not reach a run id, project name or mount: ':', ' ', '\n'.
    matrix = _matrix(tmp_path, 3, name="same matrix: twice\nat once.yaml")
    results = tmp_path / "results"
    results.mkdir()
    # Started together, the two reached their run ids 0.1-0.5 s apart (imports): across a
    # second's edge in 1 of 5 tries, 1 of 10 with a CPU hog. They meet first, then stamp.
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = start_in_one_second(results, 2, barrier, "matrix", str(matrix))
    ended = [finish(proc) for proc in procs]
    for code, err in ended:
        assert code == 0, err[-3000:]
        assert "Traceback" not in err
    runs = _runs(results)
    assert len(runs) == 2, runs
    assert all(SAFE.match(run.name) for run in runs), runs
    assert runs[0].name[:16] == runs[1].name[:16], runs  # the same second, told apart
    cells = [cell for run in runs for cell in harness.cells(run)]
    assert [c["status"] for c in cells] == ["ok", "ok"]
    projects = {c["project"] for c in cells}
    assert len(projects) == 2 and all(SAFE.match(p) for p in projects), projects
    assert leftovers(None) == NOTHING


def test_a_resume_of_a_run_another_process_is_writing_is_refused(harness, tmp_path):
    matrix = _matrix(tmp_path, 8)
    results = tmp_path / "results"
    first = start(results, "matrix", str(matrix))
    try:
        deadline = time.monotonic() + 120
        while not (results.is_dir() and _runs(results)) and time.monotonic() < deadline:
            time.sleep(0.2)
        [run] = _runs(results)
        second = subprocess.run(
            [sys.executable, "-m", "harness", "matrix", "--resume", str(run)],
            cwd=ROOT, env={**os.environ, "HARNESS_RESULTS": str(results)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        still_running = first.poll() is None
    finally:
        code, err = finish(first)
    assert still_running, "the first run ended before the resume was tried"
    assert second.returncode == 2, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    [line] = _error_lines(second.stderr)
    assert str(run) in line and "another harness process is using" in line, line
    # The first run was not disturbed, and once it is over the run folder is free again.
    assert code == 0, err[-3000:]
    assert [c["status"] for c in harness.cells(run)] == ["ok"]
    again = harness("matrix", "--resume", str(run), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 of 1 cell(s) complete, 0 to run" in again.stderr
    assert leftovers(None) == NOTHING


def test_a_relative_results_folder_with_a_comma_works(docker_engine, tmp_path):
    proc = start(
        "rel/res,ults", "run", "--haproxy", "debian:bookworm", "--scenario", "smoke",
        "--duration", "2", cwd=tmp_path,
    )  # fmt: skip
    code, err = finish(proc)
    assert code == 0, err[-3000:]
    [run] = _runs(tmp_path / "rel" / "res,ults")
    [cell] = [json.loads(p.read_text()) for p in run.glob("*/cell.json")]
    assert cell["status"] == "ok"
    assert leftovers(None) == NOTHING


@pytest.mark.parametrize("char,what", [(":", "a colon"), ("\n", "a newline")])
def test_a_results_folder_docker_cannot_mount_is_refused_by_name(
    docker_engine, tmp_path, char, what
):
    where = tmp_path / f"results{char}here"
    proc = start(where, "run", "--haproxy", "debian:bookworm", "--duration", "1")
    code, err = finish(proc, timeout=120)
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    assert f"error: HARNESS_RESULTS={where}: the path holds {what}" in err, err
    assert "cannot bind-mount" in err and "HAProxy rejects" not in err
    assert not where.exists()
    assert leftovers(None) == NOTHING


def _hit_haproxy_when_loaded(results: Path, verb: str, after_s: float, done: list[str]) -> None:
    """Once the cell's load runs (Locust writes client_status.json every second of it),
    wait ``after_s``, then `docker <verb>` its haproxy container, found by its labels."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if list(results.glob("*/*/client_status.json")):
            break
        time.sleep(0.05)
    else:
        done.append("the load never started")
        return
    time.sleep(after_s)
    [run] = [p.name for p in results.iterdir() if p.is_dir()]
    labels = ["harness=1", f"harness.run={run}", "com.docker.compose.service=haproxy"]
    [haproxy] = client().containers.list(filters={"label": labels})
    subprocess.run(["docker", verb, haproxy.name], check=True, capture_output=True, timeout=60)
    done.append(haproxy.name)


@pytest.mark.parametrize(
    ("action", "error"),
    [
        # SIGKILL: the cell says HAProxy died, when, and with what exit code.
        ("kill", r"HAProxy died ([\d.]+) s into the load \(exit code 137\)"),
        # Not the fault scenario: nothing asked for this restart, so the numbers mix two
        # processes' lives and the cell says so instead of passing as ok.
        ("restart", r"HAProxy died ([\d.]+) s into the load \(exit code \d+\) and was restarted"),
    ],
)
def test_haproxy_killed_or_restarted_mid_load_fails_the_cell(
    docker_engine, tmp_path, action, error
):
    results = tmp_path / "results"
    proc = start(
        results, "run", "--haproxy", "debian:bookworm", "--scenario", "smoke", "--duration", "6"
    )
    hit: list[str] = []
    hitter = threading.Thread(target=_hit_haproxy_when_loaded, args=(results, action, 1.5, hit))
    hitter.start()
    code, err = finish(proc)
    hitter.join(timeout=200)
    assert hit and hit[0].endswith("haproxy-1"), hit
    assert "Traceback" not in err, err[-3000:]
    assert code == 1, err[-3000:]
    [run] = _runs(results)
    [cell] = [json.loads(p.read_text()) for p in run.glob("*/cell.json")]
    assert cell["status"] == "failed", cell.get("error")
    print(f"\nthe cell's error: {cell['error']}")
    found = re.search(error, cell["error"])
    assert found, cell["error"]
    assert 1 <= float(found[1]) <= 4, cell["error"]
    assert leftovers(None) == NOTHING
