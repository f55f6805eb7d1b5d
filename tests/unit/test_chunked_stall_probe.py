"""chunked-stall's parameters, and how they reach the probe and the backend.

A single chunk size (chunk_min == chunk_max, or chunk_sizes of one) must be tested at
that size: it once ran the backend's default 8192-byte chunks under the size's label.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.plan.scenarios import MAX_CHUNK_SIZES, SCENARIOS
from harness.stack.workload import run_time_s
from tests.unit.test_probe import LocalServer  # one thread per connection, on loopback

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILES = ROOT / "clients" / "locustfiles"
STALL = SCENARIOS["chunked-stall"]


def knobs(**overrides):
    return STALL.knobs(STALL.resolve(overrides, "t"))


@pytest.mark.parametrize(
    ("overrides", "sizes"),
    [
        ({}, "31,32,39,40"),
        ({"chunk_sizes": [40]}, "40"),
        ({"chunk_min": 40, "chunk_max": 40}, "40"),
        ({"chunk_min": 16, "chunk_max": 18}, "16,17,18"),
    ],
)
def test_every_chunk_size_reaches_the_probe_sweep(overrides, sizes) -> None:
    env = knobs(**overrides).load.env("haproxy")
    assert env["PROBE_SWEEP"] == f"chunk_size={sizes}"


def test_a_range_is_recorded_as_the_sizes_it_ran() -> None:
    params = STALL.resolve({"chunk_min": 40, "chunk_max": 41}, "t")
    assert params["chunk_sizes"] == [40, 41]
    assert params["chunk_min"] is None and params["chunk_max"] is None
    assert STALL.resolve(params, "t") == params  # a record re-validates as it is (rerun)


def test_concurrency_bounds_the_whole_cell_and_its_time() -> None:
    k = knobs(chunk_sizes=[31, 32, 39, 40], per_size=10, concurrency=8)
    probe = k.load
    assert (probe.connections, probe.concurrency, probe.total_connections) == (10, 8, 40)
    # a connection may read `requests` responses, each with its pause and deadline
    assert probe.requests == 2
    one = 2 * (probe.read_pause_ms / 1000 + probe.deadline_s) + 30
    assert run_time_s(None, k) == 5 * one  # 40 connections, 8 at once: 5 waves


@pytest.mark.parametrize(("overrides", "requests"), [({}, "2"), ({"requests": 1}, "1")])
def test_each_connection_asks_again_when_a_response_got_through(overrides, requests) -> None:
    """A second slow-read response is a second chance for the buffer to fill on a chunk
    boundary: one response at a time, about 1 in 30 got through at random."""
    assert knobs(**overrides).load.env("haproxy")["PROBE_REQUESTS"] == requests


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chunk_sizes": [40, 40]}, "repeats a size"),
        ({"chunk_sizes": []}, "at least 1 item"),
        ({"chunk_sizes": [0]}, "greater than or equal to 1"),
        ({"chunk_sizes": [65537]}, "less than or equal to 65536"),
        ({"chunk_sizes": list(range(1, MAX_CHUNK_SIZES + 2))}, f"at most {MAX_CHUNK_SIZES}"),
        ({"chunk_sizes": [32], "chunk_min": 1, "chunk_max": 2}, "not both"),
        ({"chunk_min": 3}, "go together"),
        ({"chunk_min": 50, "chunk_max": 40}, "above chunk_max"),
        ({"chunk_min": 1, "chunk_max": 200}, "narrow the range"),
        ({"concurrency": 0}, "greater than or equal to 1"),
        ({"per_size": 600}, "plan 2400 probe connections"),
    ],
)
def test_bad_chunk_sizes_are_refused(overrides, message) -> None:
    with pytest.raises(SpecError, match=message):
        STALL.resolve(overrides, "t")


# --- the Locust probe user, for real: what the backend is asked for ---------------------


class Recorder(LocalServer):
    """A tiny HTTP server that answers 'hello' and records each request target and how
    many connections were open at once."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.open = 0
        self.peak = 0
        self.lock = threading.Lock()
        super().__init__(self._serve)

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            with self.lock:
                self.paths.append(data.split(b" ", 2)[1].decode())
            time.sleep(0.2)  # long enough for the probe's connections to overlap
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            while conn.recv(4096):  # until the probe's FIN
                pass
        finally:
            with self.lock:
                self.open -= 1


def run_probe_user(tmp_path: Path, port: int, **env_over: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    env.update(
        PROBE_HOST="127.0.0.1",
        PROBE_PORT=str(port),
        PROBE_PATH="/?framing=chunked&size=5",
        PROBE_OUT=str(tmp_path / "probe.jsonl"),
        **env_over,
    )
    locust = [
        str(Path(sys.executable).parent / "locust"),
        *("-f", str(LOCUSTFILES / "close_delay.py"), "--headless", "-u", "1", "-r", "1"),
        *("--run-time", "30s"),
    ]
    proc = subprocess.run(locust, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(x) for x in (tmp_path / "probe.jsonl").read_text().splitlines()]


def test_a_single_swept_size_is_asked_of_the_backend(tmp_path: Path) -> None:
    server = Recorder()
    try:
        samples = run_probe_user(
            tmp_path, server.port, PROBE_SWEEP="chunk_size=40", PROBE_CONNECTIONS="3"
        )
    finally:
        server.close()
    assert server.paths == ["/?framing=chunked&size=5&chunk_size=40"] * 3
    assert [s["sweep"] for s in samples] == [{"chunk_size": 40}] * 3


def test_a_sweep_interleaves_its_sizes_within_the_cells_concurrency(tmp_path: Path) -> None:
    server = Recorder()
    try:
        samples = run_probe_user(
            tmp_path,
            server.port,
            PROBE_SWEEP="chunk_size=31,32,39",
            PROBE_CONNECTIONS="4",
            PROBE_CONCURRENCY="2",
        )
    finally:
        server.close()
    sizes = [p.rsplit("=", 1)[1] for p in server.paths]
    assert sorted(sizes) == sorted(["31", "32", "39"] * 4)
    # Round-robin, not one size after another (31 ×4, then 32 ×4...). The first four
    # requests, not three: two connections that start together may reach the server in
    # either order on a busy machine (a fresh clone's run once saw 31, 32, 31, 39).
    assert set(sizes[:4]) == {"31", "32", "39"}
    assert server.peak == 2
    assert len(samples) == 12 and all(s["end"] == "fin" for s in samples)


def test_defaults_let_a_stalled_stream_outlast_the_probes_wait() -> None:
    """The probe sleeps, reads until stall_ms of silence, then sends its FIN: HAProxy's
    timeout server must not have ended the stalled stream by then, or the stall would
    read as a prompt close. The timeout runs from HAProxy's last read from the backend,
    which comes after the request, so equal is enough."""
    params = STALL.resolve({}, "t")
    waited_ms = params["read_pause_ms"] + params["stall_ms"]
    assert params["timeout_server_s"] * 1000 >= waited_ms
    # HAProxy's buffer fills after ~50 KB (the client side takes 33-38 KB, the buffer
    # ~15 KB): the body must be longer than that, or a connection can end before it.
    assert params["size"] >= 2 * 50_000
