"""Tests for backends/server.py, run as a real subprocess and spoken to over raw sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import backend_process

SERVER = Path(__file__).resolve().parents[2] / "backends" / "server.py"
TIMEOUT = 5.0


# Run the server under another interpreter, e.g. Debian's /usr/bin/python3 as in
# the image (3.11.2 differs from later 3.11 releases in asyncio transport details).
PYTHON = os.environ.get("BACKEND_TEST_PYTHON", sys.executable)


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    return backend_process.start(env, PYTHON)


@pytest.fixture
def backend() -> Iterator[Callable[..., int]]:
    """Factory: backend(SIZE="10", ...) starts a server with BACKEND_* set, returns its port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**knobs: str) -> int:
        proc, port = _start({f"BACKEND_{k}": v for k, v in knobs.items()})
        procs.append(proc)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def default_port() -> Iterator[int]:
    """One server with default settings, shared by the tests that only use queries."""
    proc, port = _start({})
    yield port
    proc.terminate()
    proc.wait(timeout=TIMEOUT)


# --- a minimal HTTP/1.1 client -----------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks: list[int] = field(default_factory=list)


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, target: str = "/", headers: str = "") -> None:
        self.send(f"GET {target} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode())

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise EOFError(f"EOF before {sep!r}; have {self.buf[:200]!r}")
        head, _, self.buf = self.buf.partition(sep)
        return head

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"EOF with {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head_only: bool = False) -> Response:
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        resp = Response(status, headers, b"")
        if head_only:
            return resp
        if "content-length" in headers:
            resp.body = self._exact(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(self._until(b"\r\n"), 16)
                if size == 0:
                    assert self._until(b"\r\n") == b""  # no trailers
                    break
                resp.chunks.append(size)
                resp.body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        else:  # close-delimited
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def wait_eof(self) -> float:
        """Block until the server's FIN; returns the monotonic time it arrived."""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return time.monotonic()
            self.buf += data


def fetch(port: int, target: str = "/", headers: str = "") -> Response:
    conn = Conn(port)
    try:
        conn.get(target, headers)
        return conn.read_response()
    finally:
        conn.close()


# --- tests ----------------------------------------------------------------------------


def test_content_length_default_size(default_port: int) -> None:
    resp = fetch(default_port)
    assert resp.status == 200
    assert resp.headers["content-length"] == "128"
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["x-backend-conn"] == "1"
    assert resp.body == b"x" * 128
    assert "x-request-id" not in resp.headers


def test_size_from_environment(backend: Callable[..., int]) -> None:
    port = backend(SIZE="5000")
    assert len(fetch(port).body) == 5000


@pytest.mark.parametrize("size", [0, 1, 65536, 300_000, 3_000_000])
def test_query_size_override(default_port: int, size: int) -> None:
    resp = fetch(default_port, f"/?size={size}")
    assert resp.headers["content-length"] == str(size)
    assert len(resp.body) == size


def test_chunked_framing(backend: Callable[..., int]) -> None:
    port = backend(FRAMING="chunked", SIZE="1000", CHUNK_SIZE="300")
    resp = fetch(port)
    assert resp.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in resp.headers
    assert resp.chunks == [300, 300, 300, 100]
    assert len(resp.body) == 1000


@pytest.mark.parametrize(
    ("size", "chunk_size"), [(100, 1), (50_000, 32), (1_000_000, 8192), (300_000, 100_000)]
)
def test_chunked_query_decodes_to_size(default_port: int, size: int, chunk_size: int) -> None:
    resp = fetch(default_port, f"/?framing=chunked&size={size}&chunk_size={chunk_size}")
    assert len(resp.body) == size
    full, rest = divmod(size, chunk_size)
    assert resp.chunks == [chunk_size] * full + ([rest] if rest else [])


def test_chunk_pause_respected(default_port: int) -> None:
    conn = Conn(default_port)
    start = time.monotonic()
    conn.get("/?framing=chunked&size=100&chunk_size=10&chunk_pause_ms=20")
    resp = conn.read_response()
    elapsed = time.monotonic() - start
    conn.close()
    assert resp.chunks == [10] * 10
    assert 0.18 <= elapsed < 1.0, elapsed


def test_close_framing(backend: Callable[..., int]) -> None:
    port = backend(FRAMING="close", SIZE="20000")
    resp = fetch(port)
    assert "content-length" not in resp.headers
    assert "transfer-encoding" not in resp.headers
    assert resp.headers["connection"] == "close"
    assert len(resp.body) == 20000


def test_keepalive_off_server_sends_fin(backend: Callable[..., int]) -> None:
    port = backend(KEEPALIVE="off")
    conn = Conn(port)
    conn.get()
    resp = conn.read_response()
    assert resp.headers["connection"] == "close"
    assert len(resp.body) == 128
    conn.sock.settimeout(1.0)  # the FIN must follow promptly
    conn.wait_eof()
    conn.close()


def test_keepalive_on_keeps_connection(default_port: int) -> None:
    conn = Conn(default_port)
    for n in (1, 2, 3):
        conn.get()
        resp = conn.read_response()
        assert resp.headers["x-backend-conn"] == str(n)
        assert "connection" not in resp.headers
    conn.close()


def test_idle_timeout_closes_idle_connection(backend: Callable[..., int]) -> None:
    port = backend(IDLE_TIMEOUT_MS="200")
    conn = Conn(port)
    conn.get()
    conn.read_response()
    start = time.monotonic()
    elapsed = conn.wait_eof() - start
    conn.close()
    assert 0.17 <= elapsed <= 0.35, elapsed


def test_idle_timeout_restarts_on_activity(backend: Callable[..., int]) -> None:
    port = backend(IDLE_TIMEOUT_MS="200")
    conn = Conn(port)
    for _ in range(3):  # 3 x 120 ms of activity outlives a single 200 ms period
        conn.get()
        conn.read_response()
        time.sleep(0.12)
    conn.get()
    assert conn.read_response().headers["x-backend-conn"] == "4"
    conn.close()


def test_max_requests(backend: Callable[..., int]) -> None:
    port = backend(MAX_REQUESTS="2")
    conn = Conn(port)
    conn.get()
    first = conn.read_response()
    conn.get()
    second = conn.read_response()
    assert first.headers["x-backend-conn"] == "1"
    assert "connection" not in first.headers
    assert second.headers["x-backend-conn"] == "2"
    assert second.headers["connection"] == "close"
    conn.sock.settimeout(1.0)
    conn.wait_eof()
    conn.close()


def test_pipelining_in_order(default_port: int) -> None:
    conn = Conn(default_port)
    # The second is delayed and the third arrives while it is pending: a naive
    # server would answer the third first.
    conn.send(
        b"GET /?size=10 HTTP/1.1\r\nHost: t\r\nX-Request-Id: a\r\n\r\n"
        b"GET /?size=20&delay_ms=50 HTTP/1.1\r\nHost: t\r\nX-Request-Id: b\r\n\r\n"
    )
    time.sleep(0.01)
    conn.send(
        b"GET /?size=30&framing=chunked&chunk_size=7 HTTP/1.1\r\nHost: t\r\nX-Request-Id: c\r\n\r\n"
    )
    responses = [conn.read_response() for _ in range(3)]
    conn.close()
    assert [r.headers["x-request-id"] for r in responses] == ["a", "b", "c"]
    assert [r.headers["x-backend-conn"] for r in responses] == ["1", "2", "3"]
    assert [len(r.body) for r in responses] == [10, 20, 30]
    assert responses[2].chunks == [7, 7, 7, 7, 2]


def test_pipelining_single_segment(default_port: int) -> None:
    conn = Conn(default_port)
    conn.send(b"".join(b"GET /?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n for n in (1, 2, 3)))
    responses = [conn.read_response() for _ in range(3)]
    conn.close()
    assert [len(r.body) for r in responses] == [1, 2, 3]
    assert [r.headers["x-backend-conn"] for r in responses] == ["1", "2", "3"]


def test_post_body_is_discarded(default_port: int) -> None:
    conn = Conn(default_port)
    body = b"y" * 100_000
    conn.send(b"POST /?size=5 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
    conn.send(body[:50_000])
    time.sleep(0.02)
    conn.send(body[50_000:] + b"GET /?size=7 HTTP/1.1\r\nHost: t\r\n\r\n")
    first, second = conn.read_response(), conn.read_response()
    conn.close()
    assert (len(first.body), len(second.body)) == (5, 7)
    assert second.headers["x-backend-conn"] == "2"


def test_expect_100_continue(default_port: int) -> None:
    conn = Conn(default_port)
    conn.send(
        b"POST /?size=3 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert conn.read_response(head_only=True).status == 100
    conn.send(b"hello")
    resp = conn.read_response()
    conn.close()
    assert (resp.status, resp.body) == (200, b"xxx")


def test_head_has_no_body(default_port: int) -> None:
    conn = Conn(default_port)
    conn.send(b"HEAD /?size=1000 HTTP/1.1\r\nHost: t\r\n\r\n")
    resp = conn.read_response(head_only=True)
    assert resp.headers["content-length"] == "1000"
    conn.get("/?size=3")  # the next response must follow the headers directly
    assert conn.read_response().body == b"xxx"
    conn.close()


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("size=abc", "size"),
        ("size=-1", "size"),
        ("framing=gzip", "framing"),
        ("chunk_size=0", "chunk_size"),
        ("delay_ms=soon", "delay_ms"),
        ("keepalive=maybe", "keepalive"),
        ("port=1", "port"),
    ],
)
def test_bad_query_value_is_400(default_port: int, query: str, name: str) -> None:
    conn = Conn(default_port)
    conn.get(f"/?{query}")
    resp = conn.read_response()
    assert resp.status == 400
    assert name in resp.body.decode()
    conn.get()  # the request itself was well-formed: the connection stays usable
    assert conn.read_response().status == 200
    conn.close()


def test_unknown_query_parameter_ignored(default_port: int) -> None:
    assert len(fetch(default_port, "/?cachebuster=123&size=9").body) == 9


def test_malformed_request_is_400_and_close(default_port: int) -> None:
    conn = Conn(default_port)
    conn.send(b"NONSENSE\r\n\r\n")
    resp = conn.read_response()
    assert resp.status == 400
    assert resp.headers["connection"] == "close"
    conn.sock.settimeout(1.0)
    conn.wait_eof()
    conn.close()


def test_health_ignores_framing(backend: Callable[..., int]) -> None:
    port = backend(FRAMING="chunked", SIZE="5000", DELAY_MS="500")
    start = time.monotonic()
    resp = fetch(port, "/health")
    assert time.monotonic() - start < 0.4
    assert resp.status == 200
    assert resp.headers["content-length"] == "2"
    assert resp.body == b"ok"


def test_request_id_echo(default_port: int) -> None:
    resp = fetch(default_port, "/", "X-Request-Id: req-42/abc\r\n")
    assert resp.headers["x-request-id"] == "req-42/abc"


def test_client_connection_close(default_port: int) -> None:
    conn = Conn(default_port)
    conn.get("/", "Connection: close\r\n")
    resp = conn.read_response()
    assert resp.headers["connection"] == "close"
    conn.sock.settimeout(1.0)
    conn.wait_eof()
    conn.close()


def test_http10(default_port: int) -> None:
    conn = Conn(default_port)
    conn.send(b"GET /?size=4 HTTP/1.0\r\n\r\n")
    assert conn.read_response().body == b"xxxx"
    conn.sock.settimeout(1.0)
    conn.wait_eof()
    conn.close()
    conn = Conn(default_port)  # HTTP/1.0 keep-alive, and chunked downgraded to close framing
    conn.send(b"GET /?size=4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    resp = conn.read_response()
    assert resp.headers["connection"] == "keep-alive"
    conn.send(b"GET /?size=6&framing=chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    resp = conn.read_response()
    assert "transfer-encoding" not in resp.headers
    assert resp.body == b"x" * 6
    conn.close()


def test_half_close_finishes_response_then_closes(default_port: int) -> None:
    conn = Conn(default_port)
    conn.get("/?size=200000&delay_ms=50")
    conn.sock.shutdown(socket.SHUT_WR)
    assert len(conn.read_response().body) == 200000
    conn.sock.settimeout(1.0)
    conn.wait_eof()
    conn.close()


def test_delay_ms(default_port: int) -> None:
    start = time.monotonic()
    resp = fetch(default_port, "/?delay_ms=100")
    elapsed = time.monotonic() - start
    assert resp.status == 200
    assert 0.095 <= elapsed < 0.5, elapsed


def test_accept_delay(backend: Callable[..., int]) -> None:
    port = backend(ACCEPT_DELAY_MS="150")
    start = time.monotonic()
    fetch(port)
    assert 0.14 <= time.monotonic() - start < 0.6


def test_fin_delay_mode(backend: Callable[..., int]) -> None:
    port = backend(MODE="fin-delay", FIN_DELAY_MS="200")
    conn = Conn(port)
    conn.get()
    assert len(conn.read_response().body) == 128
    conn.get()  # keep-alive holds in this mode
    assert conn.read_response().headers["x-backend-conn"] == "2"
    start = time.monotonic()
    conn.sock.shutdown(socket.SHUT_WR)
    elapsed = conn.wait_eof() - start
    conn.close()
    assert abs(elapsed - 0.200) <= 0.015, elapsed


def test_fin_delay_mode_pins_framing(backend: Callable[..., int]) -> None:
    port = backend(MODE="fin-delay")
    resp = fetch(port, "/?framing=chunked")
    assert resp.status == 400
    assert "framing" in resp.body.decode()


def test_bad_environment_exits() -> None:
    env = {**os.environ, "BACKEND_FRAMING": "bogus"}
    proc = subprocess.run([PYTHON, str(SERVER)], env=env, capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    assert b"BACKEND_FRAMING" in proc.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_slow_reader_does_not_buffer_body() -> None:
    """A 200 MB body to a client that does not read must not sit in server memory."""
    proc, port = _start({})
    try:
        before = _rss(proc.pid)
        conn = Conn(port)
        conn.get("/?size=200000000")
        time.sleep(0.4)
        grown = _rss(proc.pid) - before
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT)
    assert grown < 30 * 1024 * 1024, grown


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_stats_counts_connections_and_requests(backend: Callable[..., int]) -> None:
    port = backend()
    for _ in range(3):
        fetch(port)
    for _ in range(2):
        fetch(port, "/health")  # the health check's connections are not traffic
    stats = json.loads(fetch(port, "/_stats").body)
    # the fixture's readiness probe may or may not have connected: count from the fetches.
    # Neither /health nor /_stats counts (a health check every second once showed as
    # "backend conn/s 3.3" in keep-alive cells).
    assert stats["requests"] == 3
    assert stats["connections"] in (3, 4)


def test_stats_count_requests_by_connection_header_and_reuse(
    backend: Callable[..., int],
) -> None:
    """What a proxy sent the server, counted by the server: the Connection header's
    tokens (case, spaces and order aside; unknown tokens as "other") and whether the
    request reused a connection; the stack's own /health and /_stats are not counted."""
    port = backend()
    conn = Conn(port)
    conn.get()  # no Connection header, first on its connection
    conn.read_response()
    conn.get(headers="Connection: Keep-Alive\r\n")
    conn.read_response()
    conn.get(headers="Connection: X-Foo, close\r\n")  # reused; closes it
    conn.read_response()
    conn.close()
    fetch(port, headers="Connection: close\r\n")
    fetch(port, "/health", headers="Connection: close\r\n")
    stats = json.loads(fetch(port, "/_stats").body)
    assert stats["by_header"] == {
        "none new": 1, "keep-alive reused": 1, "close,other reused": 1, "close new": 1,
    }  # fmt: skip
    assert stats["by_port"] == {str(port): 4}
    assert stats["requests"] == 4


def test_extra_ports_serve_like_the_main_one(backend: Callable[..., int]) -> None:
    """BACKEND_EXTRA_PORTS: one listener per server of a multi-server backend, each
    counted under its own port."""
    spare = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        spare.append(s)
    extra = [s.getsockname()[1] for s in spare]
    for s in spare:
        s.close()
    port = backend(EXTRA_PORTS=",".join(map(str, extra)), SIZE="7")
    for p, n in ((port, 1), (extra[0], 2), (extra[1], 3)):
        for _ in range(n):
            assert fetch(p).body == b"x" * 7
    stats = json.loads(fetch(port, "/_stats").body)
    assert stats["by_port"] == {str(port): 1, str(extra[0]): 2, str(extra[1]): 3}


@pytest.mark.parametrize("raw", ["8080,8080", "0", "70000", "a", ",".join(["1"] * 17)])
def test_extra_ports_refuse_bad_lists(raw: str) -> None:
    proc = subprocess.run(
        [PYTHON, str(SERVER)],
        env={**os.environ, "BACKEND_PORT": "0", "BACKEND_EXTRA_PORTS": raw},
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "BACKEND_EXTRA_PORTS" in proc.stderr


def test_chunked_request_bodies_are_read_whole_in_any_pieces(backend: Callable[..., int]) -> None:
    """A chunked upload (RFC 9112 7.1: extensions, trailers), sent a few bytes at a time,
    is read to its end before the answer; the request pipelined behind it is answered
    next; /_stats counts the body's bytes and its framing."""
    port = backend(SIZE="5")
    body = b"a;ext=1\r\n0123456789\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"
    head = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn = Conn(port)
    wire = head + body + b"POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nwxyz"
    for i in range(0, len(wire), 7):
        conn.send(wire[i : i + 7])
        time.sleep(0.002)
    first, second = conn.read_response(), conn.read_response()
    assert (first.status, first.body, second.status) == (200, b"xxxxx", 200)
    assert first.headers["x-backend-conn"] == "1" and second.headers["x-backend-conn"] == "2"
    conn.close()
    stats = json.loads(fetch(port, "/_stats").body)
    assert stats["body_bytes"] == 13 + 4
    assert stats["by_body"] == {"chunked": 1, "content-length": 1}


@pytest.mark.parametrize(
    "headers, body",
    [
        ("Transfer-Encoding: chunked\r\n", "zz\r\nab\r\n0\r\n\r\n"),  # not hex
        ("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
        ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"),
    ],
    ids=["bad-size", "other-coding", "with-content-length"],
)
def test_malformed_chunked_uploads_get_a_400(default_port: int, headers: str, body: str) -> None:
    conn = Conn(default_port)
    conn.send(f"POST / HTTP/1.1\r\nHost: t\r\n{headers}\r\n{body}".encode())
    assert conn.read_response().status == 400
    conn.close()


def test_blackhole_port_never_accepts(backend: Callable[..., int]) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    hole = free.getsockname()[1]
    free.close()
    backend(BLACKHOLE_PORT=str(hole))
    # The kernel completes a handshake or two into the queue; past that, SYNs go
    # unanswered and connect() times out: what a saturated server looks like.
    outcomes = []
    socks = []
    for _ in range(4):
        s = socket.socket()
        s.settimeout(0.3)
        try:
            s.connect(("127.0.0.1", hole))
            outcomes.append("connected")
        except TimeoutError:
            outcomes.append("timeout")
        socks.append(s)
    for s in socks:
        s.close()
    assert outcomes[0] == "connected"
    assert outcomes[-1] == "timeout"
