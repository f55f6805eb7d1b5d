"""A run whose process dies without tearing down (SIGKILL, OOM, a reboot) leaves its stack
in Docker. The next run and `harness clean` remove it, and say so; a run that is still
going is never touched by another's sweep (its process holds the run's lease)."""

import os
import signal
import time

from harness.stack.project import leftovers, partition
from tests.integration import processes


def _wait_for_stack(results, timeout: float = 180) -> str:
    """The run id of the one run under ``results`` once its cell's stack is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [p.name for p in results.iterdir() if p.is_dir()] if results.exists() else []
        if runs and any(f"{runs[0].lower()}-" in n for n in leftovers(None)["containers"]):
            time.sleep(5)  # past `up`: every service of the stack exists
            return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"no stack came up under {results} within {timeout} s")


def _containers_of(run: str) -> list[str]:
    return [n for n in leftovers(None)["containers"] if f"-{run.lower()}-" in f"-{n}"]


def test_a_killed_runs_stack_is_swept_and_a_live_runs_is_left_alone(docker_engine, tmp_path):
    smoke = ("run", "--haproxy", "debian:bookworm", "--scenario", "smoke")
    dead = processes.start(tmp_path / "a", *smoke, "--duration", "60")
    try:
        run_a = _wait_for_stack(tmp_path / "a")
        os.killpg(dead.pid, signal.SIGKILL)  # no teardown can run
        dead.communicate(timeout=30)
    finally:
        if dead.poll() is None:
            dead.kill()
    left_by_a = _containers_of(run_a)
    assert len(left_by_a) >= 4, leftovers(None)  # what this test is about: a real leak
    stale, live = partition()
    assert run_a in stale and run_a not in live

    # The next run sweeps it before it starts anything, and says whose it was.
    live_run = processes.start(tmp_path / "b", *smoke, "--duration", "20")
    try:
        run_b = _wait_for_stack(tmp_path / "b")
        assert _containers_of(run_a) == []
        mine = _containers_of(run_b)
        assert len(mine) >= 4
        # `clean` while B is under load: B's stack stays, and clean says why.
        cleaned = processes.start(tmp_path / "c", "clean")
        out, err = cleaned.communicate(timeout=120)
        assert cleaned.returncode == 0, err
        assert f"left alone: run {run_b} is still running" in out, out
        assert sorted(_containers_of(run_b)) == sorted(mine)
        status, err = processes.finish(live_run, timeout=300)
    finally:
        if live_run.poll() is None:
            live_run.kill()
    assert status == 0, err[-3000:]
    assert f"removed what run {run_a} left in Docker when its process died" in err, err[-3000:]
    assert "Traceback" not in err
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}
