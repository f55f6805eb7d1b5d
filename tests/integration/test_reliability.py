"""Interrupts at random moments, resume, per-cell timeouts and a dying engine, on real Docker.

Each test runs the real CLI in its own process group, as a terminal would, and ends by
checking that Docker holds nothing of the harness's.
"""

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness import ROOT
from harness.analyse import latency
from harness.stack.compose import client
from harness.stack.project import leftovers
from tests.integration.processes import finish, start

NOTHING = {"containers": [], "networks": [], "volumes": []}
TWO_CELLS = """
name: two-cells
versions: [debian:bookworm, debian:trixie]
load: {users: 5, spawn_rate: 5, duration_s: 3}
scenarios:
  - name: smoke
"""


def _first_cell(results: Path) -> Path | None:
    cells = sorted(results.glob("*/001-*"))
    return cells[0] if cells else None


def _phase_now(results: Path) -> str:
    """Which phase the run is in, from what the first cell has produced so far."""
    cell = _first_cell(results)
    if cell is not None and (cell / "locust.log").exists():
        return "collect"  # the load has ended; logs and counters are being collected
    if cell is not None and (cell / "client_status.json").exists():
        return "load"  # the locustfile writes it every second of the load
    stack = {"label": "harness.cell"}  # a cell's stack, not an image or config check
    if client().containers.list(all=True, filters=stack, sparse=True):
        return "up"
    return "prepare"


def _wait_for(phase: str, results: Path, limit_s: float = 120) -> None:
    order = ["prepare", "up", "load", "collect"]
    deadline = time.monotonic() + limit_s
    while order.index(_phase_now(results)) < order.index(phase):
        assert time.monotonic() < deadline, f"the run never reached {phase}"
        time.sleep(0.05)


# Each phase of the first cell, several times, at a random moment within it.
PHASES = ["prepare", "up", "load", "collect", "prepare", "up", "load", "collect", "up", "load"]
JITTER_S = {"prepare": (0.5, 1.5), "up": (0.0, 1.0), "load": (0.0, 1.0), "collect": (0.0, 0.3)}


def test_interrupts_at_random_moments_leave_nothing_and_resume_completes(docker_engine, tmp_path):
    matrix = tmp_path / "two.yaml"
    matrix.write_text(TWO_CELLS)
    rng = random.Random(20261125)
    trials = []
    for trial, phase in enumerate(PHASES):
        results = tmp_path / f"trial-{trial}"
        sig = (signal.SIGINT, signal.SIGTERM)[trial % 2]
        proc = start(results, "matrix", str(matrix))
        try:
            if phase != "prepare":
                _wait_for(phase, results)
            time.sleep(rng.uniform(*JITTER_S[phase]))
            seen = _phase_now(results)
        finally:
            os.killpg(proc.pid, sig)  # also when the wait failed: no run outlives the test
        code, err = finish(proc)
        trials.append((trial, phase, seen, sig.name, code))
        assert "Traceback" not in err, err[-3000:]
        assert leftovers(None) == NOTHING, trials[-1]
        assert code == 128 + sig, (trials[-1], err[-2000:])
        runs = [p for p in results.glob("*") if (p / "run.json").exists()]
        if not runs:
            assert seen == "prepare", trials[-1]
            continue  # stopped before the run began: nothing to resume
        [run_dir] = runs
        manifest = json.loads((run_dir / "run.json").read_text())
        interrupted = manifest["interrupted"]["cell"]
        cell = json.loads((run_dir / interrupted / "cell.json").read_text())
        assert cell["status"] == "interrupted" and sig.name in cell["error"]
        kept = {
            p.parent.name: p.read_bytes()
            for p in run_dir.glob("*/cell.json")
            if json.loads(p.read_text())["status"] == "ok"
        }
        # The resume runs only what is missing, keeps what was finished, and completes.
        resumed = start(results, "matrix", "--resume", str(run_dir))
        code, err = finish(resumed)
        assert code == 0, err[-3000:]
        assert f"{len(kept)} of 2 cell(s) complete, {2 - len(kept)} to run" in err
        cells = {p.parent.name: p for p in run_dir.glob("*/cell.json")}
        assert len(cells) == 2
        assert all(json.loads(p.read_text())["status"] == "ok" for p in cells.values())
        assert all(cells[name].read_bytes() == data for name, data in kept.items())
        assert "finished" in json.loads((run_dir / "run.json").read_text())
        assert leftovers(None) == NOTHING
    print("\ntrial, aimed at, seen at the signal, signal, exit:", *trials, sep="\n  ")
    # the signal landed in the phase it was aimed at (a slow or fast step may shift two)
    assert sum(aimed == seen for _, aimed, seen, _, _ in trials) >= 8, trials
    assert {seen for _, _, seen, _, _ in trials} == {"prepare", "up", "load", "collect"}, trials


def test_a_cell_past_its_timeout_is_killed_and_the_run_goes_on(harness, tmp_path):
    matrix = tmp_path / "slow.yaml"
    matrix.write_text(TWO_CELLS.replace("duration_s: 3", "duration_s: 60") + "cell_timeout_s: 20\n")
    started = time.monotonic()
    proc = harness("matrix", str(matrix), timeout=300)
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-2000:]
    cells = harness.cells(harness.newest_run())
    assert [c["status"] for c in cells] == ["failed", "failed"]  # the second cell still ran
    for cell in cells:
        assert "timed out" in cell["error"] and "cell_timeout_s" in cell["error"]
        folder = harness.newest_run() / cell["cell"]
        containers = (folder / "containers.log").read_text()
        assert "backend-1  |" in containers and "capture-1  |" in containers
    assert took < 2 * 60, took  # killed at 20 s each, not after the 60 s load
    assert "Traceback" not in proc.stderr
    assert leftovers(None) == NOTHING


def _dockerd_pid() -> int:
    return int(Path("/var/run/docker.pid").read_text())


def _open_files(pid: int) -> set[str]:
    """What the process's descriptors point at (one closed meanwhile is skipped)."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(os.readlink(fd))
        except FileNotFoundError:
            continue
    return found


@pytest.fixture
def engine_restorer():
    """Whatever a test does to the engine, it answers again afterwards."""
    yield
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "engine.sh")],
        env={**os.environ, "VENV": str(ROOT / ".venv")}, check=True, timeout=180,
        capture_output=True,
    )  # fmt: skip


def test_engine_stopping_mid_load_fails_the_cell_in_one_line_and_leaks_nothing(
    docker_engine, tmp_path, engine_restorer, request
):
    matrix = tmp_path / "one.yaml"
    matrix.write_text(
        TWO_CELLS.replace(", debian:trixie", "").replace("duration_s: 3", "duration_s: 30")
    )
    results = tmp_path / "results"
    proc = start(results, "matrix", str(matrix))
    deadline = time.monotonic() + 120
    while len(leftovers(None)["containers"]) < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(5)  # the load is running
    # Another process named dockerd (e.g. an engine of scripts/engines-multi.sh) is not
    # the engine: stopping and restarting the engine must go by its pidfile.
    decoy_exe = tmp_path / "dockerd"
    shutil.copy("/bin/sleep", decoy_exe)
    decoy = subprocess.Popen([str(decoy_exe), "600"])
    request.addfinalizer(decoy.kill)
    pid = _dockerd_pid()
    os.kill(pid, signal.SIGTERM)  # the engine stops, and its containers with it
    gone_by = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < gone_by:
        time.sleep(0.5)
    time.sleep(5)  # the harness finds it gone
    # Restarted by a caller that holds a lock (e.g. `flock LOCK make engine`): the daemon
    # must not inherit it, or the lock stays held for as long as the engine runs.
    lock = tmp_path / "caller.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "engine.sh")], pass_fds=(held.fileno(),),
            env={**os.environ, "VENV": str(ROOT / ".venv")}, check=True, timeout=180,
            capture_output=True,
        )  # fmt: skip
    with lock.open("w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if inherited
    assert str(lock) not in _open_files(_dockerd_pid())
    code, err = finish(proc)
    assert "Traceback" not in err, err[-3000:]
    assert "the Docker engine stopped answering" in err
    found = list(results.glob("*/*/cell.json"))
    assert len(found) == 1, (found, err[-3000:])
    [cell_json] = found
    cell = json.loads(cell_json.read_text())
    assert cell["status"] == "failed"
    assert "Docker engine stopped answering during this cell" in cell["error"]
    assert code == 1
    assert leftovers(None) == NOTHING


def _log_time(line: str) -> float:
    """Epoch seconds of a log line's accept date, e.g. [25/Nov/2026:00:55:15.010]."""
    stamp = line.split("[", 1)[1].split("]", 1)[0]
    return datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


FAULTS = """
name: faults
versions: [debian:bookworm]
load: {users: 10, spawn_rate: 10, duration_s: 8}
scenarios:
  - name: fault
    grid: {fault: [backend-killed, haproxy-restarted]}
  - name: fault
    params: {fault: client-killed}
  # The users run in lock-step (spawned at once, same delay): with 50 ms responses the kill
  # landed between two rounds, nothing held, in 1 of 6 runs. Rounds at 0 s, 2 s, 4 s put
  # the kill at 3 s (docker takes 0.05-0.2 s) a second from either edge.
  - name: fault
    params: {fault: client-killed, abortonclose: true, delay_ms: 2000}
"""


def test_fault_scenarios_complete_and_show_what_proxy_and_clients_saw(harness, tmp_path):
    matrix = tmp_path / "faults.yaml"
    matrix.write_text(FAULTS)
    proc = harness("matrix", str(matrix), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = {
        c["params"]["fault"] + ("+abortonclose" if c["params"].get("abortonclose") else ""): c
        for c in harness.cells(harness.newest_run())
    }
    assert sorted(cells) == [
        "backend-killed",
        "client-killed",
        "client-killed+abortonclose",
        "haproxy-restarted",
    ]
    assert all(c["status"] == "ok" for c in cells.values())
    for cell in cells.values():
        assert 2.5 < cell["metrics"]["fault_at_s"] < 4, cell["metrics"]["fault_at_s"]

    # Backend killed at 3 s: HAProxy answers 503 once it cannot connect (SC--: refused or
    # unreachable; sC--: timeout connect), and the clients saw exactly those 503s.
    killed = cells["backend-killed"]["metrics"]
    flags = killed["haproxy"]["termination_states"]
    assert flags.get("----", 0) > 100
    assert sum(n for f, n in flags.items() if f[:2] in ("SC", "sC")) >= 5, flags
    assert killed["client_status_codes"].get("503", 0) >= 5
    # (less HAProxy's dropped lines: 2 threads log the lock-step users' 503s at once)
    dropped = killed["haproxy_counters"]["info"]["DroppedLogs"]
    matched, with_id = (
        killed["client_failures"]["matched_in_log"],
        killed["client_failures"]["with_id"],
    )
    assert matched >= with_id - 1 - dropped, killed["client_failures"]

    # HAProxy restarted at 3 s: the clients saw refused connections while it was down.
    # Both processes' logs are kept (one file per start): lines from before and after the
    # restart, one per answered request but for the few in flight when the first process
    # was stopped (at most one per user; it may die before logging them).
    restarted = cells["haproxy-restarted"]["metrics"]
    assert restarted["client_status_codes"].get("0", 0) > 0
    assert any("ConnectionRefusedError" in e for e in restarted["client_errors"])
    ok_seen = restarted["client_status_codes"]["200"]
    logged = restarted["haproxy"]["status_codes"]["200"]
    assert ok_seen - 10 <= logged <= ok_seen + 10, (ok_seen, logged)
    folder = harness.newest_run() / cells["haproxy-restarted"]["cell"]
    timing = json.loads((folder / "timing.json").read_text())
    accepted = [_log_time(line) for line in (folder / "haproxy.log").read_text().splitlines()]
    assert min(accepted) < timing["fault"] < max(accepted), (min(accepted), timing, max(accepted))

    # Client container killed at 3 s mid-round, abortonclose on: HAProxy logs the
    # requests it was holding for the vanished client (one per user) as client aborts
    # (C...), and carries on.
    # (2 threads may drop a line of the 10 logged at once: HAProxy's DroppedLogs.)
    held = cells["client-killed+abortonclose"]["metrics"]
    aborts = sum(n for f, n in held["haproxy"]["termination_states"].items() if f[0] == "C")
    dropped = held["haproxy_counters"]["info"]["DroppedLogs"]
    assert 10 - dropped <= aborts <= 10, (held["haproxy"], dropped)

    # Client container killed at 3 s: what it had seen is in its files all the same.
    gone = cells["client-killed"]["metrics"]
    assert gone["load"]["source"].startswith("locust_stats.csv")
    assert gone["client_status_codes"].get("200", 0) > 50  # written up to its last second
    # ... and so is its µs latency histogram (written in the same tick as the status
    # codes): one sample per request it saw answered or fail
    assert gone["load"]["latency_source"] == latency.SOURCE_HDR, gone["load"]
    seen = sum(gone["client_status_codes"].values())
    assert gone["load"]["latency_count"] > 50 and gone["load"]["p50_ms"] > 0, gone["load"]
    assert abs(gone["load"]["latency_count"] - seen) <= 20, (gone["load"], seen)
    report = (harness.newest_run() / "report.md").read_text()
    assert "client-killed" in report and "ConnectionRefusedError" in report
    assert leftovers(None) == NOTHING
