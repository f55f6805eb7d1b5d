"""The drain after a load waits on the census, not on a fixed sleep (issue 15)."""

from __future__ import annotations

import time
from pathlib import Path

from harness.runner import wait_drained

SIDES = ("client", "haproxy", "backend")


def _census(folder: Path, side: str, samples: list[tuple[float, dict[str, int]]]) -> None:
    lines = ["# census v1 interval_s=0.1 listen_ports=8080,8443"]
    for ts, counts in samples:
        lines.append(f"S {ts:.6f}")
        lines += [f"{key} {n}" for key, n in counts.items()]
    (folder / f"census-{side}.txt").write_text("\n".join(lines) + "\n")


def test_drained_once_every_side_is_back_at_its_baseline_time_wait_aside(tmp_path: Path) -> None:
    now = time.time()
    idle = {"LISTEN in": 2}
    for side in SIDES:
        _census(tmp_path, side, [(now - 3, idle), (now - 1, {"ESTAB in": 20, **idle}),
                                 (now + 0.1, {"TIME-WAIT out": 900, **idle})])  # fmt: skip
    started = time.monotonic()
    assert wait_drained(tmp_path, "haproxy", load_start=now - 2, since=now, bound_s=5.0)
    assert time.monotonic() - started < 0.5


def test_a_state_above_its_baseline_holds_the_drain_to_its_bound(tmp_path: Path) -> None:
    now = time.time()
    for side in SIDES:
        lingering = {"CLOSE-WAIT in": 3} if side == "haproxy" else {}
        _census(tmp_path, side, [(now - 3, {"ESTAB out": 1}), (now + 0.1, lingering)])
    started = time.monotonic()
    assert not wait_drained(tmp_path, "haproxy", load_start=now - 2, since=now, bound_s=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0


def test_a_count_at_its_pre_load_baseline_is_drained(tmp_path: Path) -> None:
    now = time.time()
    for side in SIDES:
        _census(tmp_path, side, [(now - 3, {"ESTAB out": 1}), (now + 0.1, {"ESTAB out": 1})])
    assert wait_drained(tmp_path, "haproxy", load_start=now - 2, since=now, bound_s=0.3)


def test_only_a_sample_taken_after_the_load_counts(tmp_path: Path) -> None:
    # A census that stopped writing (its namespace's container killed) shows nothing
    # after the load: the drain is not assumed, the bound is waited.
    now = time.time()
    for side in SIDES:
        _census(tmp_path, side, [(now - 3, {}), (now - 0.5, {})])
    assert not wait_drained(tmp_path, "haproxy", load_start=now - 2, since=now, bound_s=0.2)
    (tmp_path / "census-backend.txt").unlink()
    assert not wait_drained(tmp_path, "haproxy", load_start=now - 2, since=now - 1, bound_s=0.2)


def test_haproxys_idle_server_pool_does_not_hold_the_drain(tmp_path: Path) -> None:
    # http-reuse keeps HAProxy's connections to the backend open after the clients have
    # gone: ESTAB out of haproxy's namespace and into the backend's, by design.
    now = time.time()
    _census(tmp_path, "client", [(now - 3, {}), (now + 0.1, {"TIME-WAIT out": 40})])
    _census(tmp_path, "haproxy", [(now - 3, {}), (now + 0.1, {"ESTAB out": 10})])
    _census(tmp_path, "backend", [(now - 3, {}), (now + 0.1, {"ESTAB in": 10})])
    assert wait_drained(tmp_path, "haproxy", load_start=now - 2, since=now, bound_s=0.3)
    # the same state the other way round is a connection the load left open
    _census(tmp_path, "backend", [(now - 3, {}), (now + 0.1, {"ESTAB out": 10})])
    assert not wait_drained(tmp_path, "haproxy", load_start=now - 2, since=now, bound_s=0.2)
