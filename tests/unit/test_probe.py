"""Tests for clients/locustfiles/probe.py (and close_delay.py), on loopback only.

The calibration target is the real backend (backends/server.py, mode fin-delay) run
as a subprocess; behaviours it cannot produce (RST, a stalled body, TLS endings)
come from tiny servers in threads here.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests import backend_process

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILES = ROOT / "clients" / "locustfiles"
sys.path.insert(0, str(LOCUSTFILES))

import probe  # noqa: E402
from probe import ProbeConfig, probe_once, run_probes, summarise  # noqa: E402

TIMEOUT = 5.0


# --- the real backend --------------------------------------------------------------


def _start_backend(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    return backend_process.start(env)


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, int]]:
    """Ports of a fin-delay backend (delay 0; per request ?fin_delay_ms=) and an http one."""
    started = {
        "fin-delay": _start_backend({"BACKEND_MODE": "fin-delay"}),
        "http": _start_backend({}),
    }
    yield {name: port for name, (_, port) in started.items()}
    for proc, _ in started.values():
        proc.terminate()
        proc.wait(timeout=TIMEOUT)


def cfg_for(port: int, **kw: object) -> ProbeConfig:
    cfg = ProbeConfig(host="127.0.0.1", port=port, deadline_s=TIMEOUT, **kw)  # type: ignore[arg-type]
    cfg.validate()
    return cfg


# --- tiny servers for what the backend does not do -----------------------------------


class LocalServer:
    """Accepts on 127.0.0.1 and runs handler(conn) in a thread per connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(TIMEOUT)
            self.handler(conn)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self.stopping = True
        self.thread.join(TIMEOUT)
        self.listener.close()


@pytest.fixture
def local_server() -> Iterator[Callable[[Callable[[socket.socket], None]], LocalServer]]:
    servers: list[LocalServer] = []

    def start(handler: Callable[[socket.socket], None]) -> LocalServer:
        servers.append(LocalServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
    for server in servers:
        assert not server.errors, server.errors


def read_request(conn: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(4096)
        assert more, "client closed before sending a request"
        data += more
    return data


def wait_fin(conn: socket.socket) -> None:
    while conn.recv(4096):
        pass


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Unique-ID: uid-1\r\n\r\nhello"


# --- calibration against the backend's fin-delay mode -------------------------------


def test_fin_without_delay_is_immediate(backends: dict[str, int]) -> None:
    samples = run_probes(cfg_for(backends["fin-delay"], connections=5))
    for s in samples:
        assert s["end"] == "fin" and s["error"] is None
        assert s["complete"] and s["statuses"] == [200] and s["bytes"] == 128
        assert s["expected_bytes"] == 128 and s["truncated_at"] is None
        # immediate: well under any delay the backend can inject (the smallest other
        # test uses 100 ms); not < 5 ms, which a busy shared host's scheduler can exceed
        assert 0 <= s["delay_ms"] < 50


def test_fin_delay_200ms_is_measured_to_10ms(backends: dict[str, int]) -> None:
    cfg = cfg_for(backends["fin-delay"], path="/?fin_delay_ms=200", connections=5, requests=3)
    for s in run_probes(cfg):
        assert s["end"] == "fin"
        assert s["statuses"] == [200, 200, 200] and s["bytes"] == 3 * 128 and s["complete"]
        assert abs(s["delay_ms"] - 200) <= 10, s
        assert abs(s["t_fin_wall"] - time.time()) < 10


def test_connections_run_concurrently_from_distinct_ports(backends: dict[str, int]) -> None:
    cfg = cfg_for(backends["fin-delay"], path="/?fin_delay_ms=100", connections=10, concurrency=10)
    seen: list[dict] = []
    start = time.monotonic()
    samples = run_probes(cfg, seen.append)
    elapsed = time.monotonic() - start
    assert elapsed < 0.6, f"10 x 100 ms took {elapsed:.3f} s: not concurrent"
    assert seen == samples and len(samples) == 10
    assert len({s["src_port"] for s in samples}) == 10
    assert all(s["end"] == "fin" and 95 <= s["delay_ms"] <= 120 for s in samples)


def test_open_when_the_deadline_comes_first(backends: dict[str, int]) -> None:
    cfg = cfg_for(backends["fin-delay"], path="/?fin_delay_ms=2000")
    cfg.deadline_s = 0.3
    start = time.monotonic()
    s = probe_once(cfg)
    assert 0.3 <= time.monotonic() - start < 1.0
    assert s["end"] == "open" and s["delay_ms"] is None and s["complete"]


def test_fin_with_request_measures_from_our_fin(backends: dict[str, int]) -> None:
    s = probe_once(
        cfg_for(backends["fin-delay"], path="/?fin_delay_ms=200", variant="fin-with-request")
    )
    assert s["end"] == "fin" and s["complete"] and s["bytes"] == 128
    assert abs(s["delay_ms"] - 200) <= 10


def test_fin_with_request_counts_the_response_that_comes_after_our_fin(
    backends: dict[str, int],
) -> None:
    # The backend answers 100 ms after the request, so every body byte arrives after our FIN.
    cfg = cfg_for(backends["http"], path="/?delay_ms=100&size=3000", variant="fin-with-request")
    s = probe_once(cfg)
    assert s["end"] == "fin" and s["complete"] and s["bytes"] == s["expected_bytes"] == 3000
    # the response's 100 ms, never before it; the upper bound leaves a busy shared host
    # room and still tells it apart from a wait for a timeout (seconds)
    assert 95 <= s["delay_ms"] < 400


@pytest.mark.parametrize(("query", "requests"), [("keepalive=off&", 1), ("", 3)])
def test_conn_close_waits_for_the_peer(backends: dict[str, int], query: str, requests: int) -> None:
    # The backend closes after its one response (keepalive off), or after the last
    # request, the one that says Connection: close.
    cfg = cfg_for(backends["http"], path=f"/?{query}size=1000", variant="conn-close")
    cfg.requests = requests
    s = probe_once(cfg)
    assert s["end"] == "fin" and s["statuses"] == [200] * requests
    assert s["complete"] and s["bytes"] == 1000 * requests
    assert 0 <= s["delay_ms"] < 20


def test_chunked_body_is_decoded(backends: dict[str, int]) -> None:
    cfg = cfg_for(backends["http"], path="/?framing=chunked&chunk_size=32&size=5000")
    s = probe_once(cfg)
    assert s["complete"] and s["bytes"] == 5000 and s["expected_bytes"] is None
    assert s["end"] == "fin" and s["delay_ms"] < 20


def test_close_delimited_body_ends_with_the_peers_fin(backends: dict[str, int]) -> None:
    s = probe_once(cfg_for(backends["http"], path="/?framing=close&size=7000"))
    # The peer closed first: the body is complete and the delay is not positive.
    assert s["complete"] and s["bytes"] == 7000 and s["end"] == "fin" and s["delay_ms"] <= 0


def test_slow_reader_with_a_small_receive_buffer(backends: dict[str, int]) -> None:
    cfg = cfg_for(backends["http"], path="/?size=2000000", rcvbuf=4096, read_pause_ms=50)
    s = probe_once(cfg)
    assert s["complete"] and s["bytes"] == 2_000_000 and s["end"] == "fin"


def test_connect_failure_is_an_error_sample() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        s = probe_once(cfg_for(port))
    assert s["end"] == "error" and s["delay_ms"] is None and s["truncated_at"] is None
    assert "connect to 127.0.0.1" in s["error"] and "Refused" in s["error"]


# --- ends and bodies only the local servers produce --------------------------------


def test_rst_after_our_fin(local_server) -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(RESPONSE)
        wait_fin(conn)
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    s = probe_once(cfg_for(local_server(handler).port))
    assert s["end"] == "rst" and s["complete"] and s["unique_ids"] == ["uid-1"]
    assert 45 <= s["delay_ms"] < 100


def test_stalled_body_is_truncated_then_we_fin(local_server) -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        wait_fin(conn)  # quiet until the client gives up and sends its FIN

    cfg = cfg_for(local_server(handler).port, stall_ms=150, requests=3)
    start = time.monotonic()
    s = probe_once(cfg)
    assert 0.15 <= time.monotonic() - start < 1.0
    assert not s["complete"] and s["truncated_at"] == s["stalled_at"] == 1000
    assert s["bytes"] == 1000
    assert s["statuses"] == [200] and s["expected_bytes"] is None  # 2 requests never sent
    assert s["end"] == "fin" and 0 <= s["delay_ms"] < 20


def test_body_that_resumes_after_our_fin_still_counts(local_server) -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 1000)
        wait_fin(conn)
        conn.sendall(b"y" * 1000)

    s = probe_once(cfg_for(local_server(handler).port, stall_ms=100))
    assert s["complete"] and s["bytes"] == s["expected_bytes"] == 2000
    assert s["stalled_at"] == 1000 and s["truncated_at"] is None and s["end"] == "fin"


def test_peer_that_closes_between_keepalive_requests(local_server) -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(RESPONSE)  # then close, although the client will send another request

    s = probe_once(cfg_for(local_server(handler).port, requests=2))
    # FIN or RST, depending on whether our second request reached a closed socket.
    assert s["end"] in ("fin", "rst") and s["delay_ms"] <= 0
    assert s["statuses"] == [200] and not s["complete"] and s["truncated_at"] == 0


def test_peer_that_resets_before_our_fin(local_server) -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nxx")
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    s = probe_once(cfg_for(local_server(handler).port))
    assert s["end"] == "rst" and s["truncated_at"] == 2 and not s["complete"]
    assert s["delay_ms"] <= 0  # the peer ended first


# --- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_context() -> ssl.SSLContext:
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


def tls_handler(ctx: ssl.SSLContext, mode: str, seen: list[tuple[str, bool]]):
    """Answers one request over TLS, then, on the client's end, does per `mode`:

    notify       sends close_notify, then FIN
    fin          sends FIN only
    openssl-eof  reads the end with an SSLSocket, then FIN only: OpenSSL 3 answers
                 a FIN without close_notify with a decode_error alert of its own

    Records (TLS version, whether the client's end came with close_notify).
    """

    def handler(raw: socket.socket) -> None:
        if mode == "openssl-eof":
            return sslsocket_end(raw)
        # Memory BIOs, as in the probe: OpenSSL never sees the TCP end, so it never
        # answers it, and only what this handler sends goes out.
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_side=True)

        def pump() -> bool:
            if data := outgoing.read():
                raw.sendall(data)
            data = raw.recv(65536)
            incoming.write(data)
            return bool(data)

        def read() -> bytes:
            while True:
                try:
                    return tls.read(65536)
                except ssl.SSLWantReadError:
                    if not pump():
                        raise EOFError from None

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                assert pump()
        request = b""
        while b"\r\n\r\n" not in request:
            request += read()
        tls.write(RESPONSE)
        try:
            got_notify = read() == b""  # b"" is close_notify
        except ssl.SSLZeroReturnError:
            got_notify = True
        except EOFError:
            got_notify = False
        seen.append((tls.version() or "", got_notify))
        if mode == "notify":
            with contextlib.suppress(ssl.SSLError):
                tls.unwrap()
            raw.sendall(outgoing.read())
        raw.shutdown(socket.SHUT_RDWR)

    def sslsocket_end(raw: socket.socket) -> None:
        with ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False) as conn:
            read_request(conn)
            version = conn.version() or ""
            conn.sendall(RESPONSE)
            try:
                got_notify = conn.recv(4096) == b""
            except ssl.SSLEOFError:  # the alert went out while raising this
                got_notify = False
            seen.append((version, got_notify))
            conn.shutdown(socket.SHUT_RDWR)  # SSLSocket.shutdown sends no close_notify

    return handler


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize("variant", ["tls-notify", "tls-fin-no-notify", "fin"])
@pytest.mark.parametrize("server_end", ["notify", "fin", "openssl-eof"])
def test_tls_endings(local_server, tls_context, tls, variant, server_end) -> None:
    seen: list[tuple[str, bool]] = []
    server = local_server(tls_handler(tls_context, server_end, seen))
    s = probe_once(cfg_for(server.port, tls=tls, variant=variant))
    assert s["error"] is None, s
    assert s["complete"] and s["bytes"] == 5 and s["unique_ids"] == ["uid-1"]
    assert s["tls"] == tls
    # The server saw our close_notify exactly when we meant to send it.
    assert seen == [(f"TLSv{tls}", variant == "tls-notify")]
    if server_end == "notify":
        assert (s["end"], s["tls_alert"]) == ("tls-alert-fin", "close_notify")
    elif server_end == "fin" or variant == "tls-notify":
        assert (s["end"], s["tls_alert"]) == ("fin", None)
    else:
        assert (s["end"], s["tls_alert"]) == ("tls-alert-fin", "TLSV1_ALERT_DECODE_ERROR")
    assert 0 <= s["delay_ms"] < 50


def test_tls_with_the_real_backend_is_an_error_sample(backends: dict[str, int]) -> None:
    s = probe_once(cfg_for(backends["http"], tls="1.3", connect_timeout_s=0.3))
    assert s["end"] == "error" and "connect to" in s["error"] and s["delay_ms"] is None


# --- parsing, summary, command line ---------------------------------------------------


def test_parser_byte_by_byte() -> None:
    stream = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Unique-ID: a\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nTrailer: t\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nabcEXTRA"
    )
    parser = probe._Parser(3)
    for i in range(len(stream)):
        parser.feed(stream[i : i + 1])
    assert parser.error is None and parser.done == 3
    assert [(r.status, r.body, r.unique_id) for r in parser.responses] == [
        (200, 31, "a"),
        (204, 0, None),
        (404, 3, None),
    ]


def test_parser_rejects_garbage() -> None:
    parser = probe._Parser(1)
    parser.feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert parser.error is not None and "status line" in parser.error


def sample(delay: float | None, end: str = "fin", size: int = 10, trunc: int | None = None):
    return {"delay_ms": delay, "end": end, "bytes": size, "complete": trunc is None,
            "truncated_at": trunc}  # fmt: skip


def test_summarise_nearest_rank() -> None:
    samples = [sample(float(d)) for d in range(100, 0, -1)]
    samples += [sample(None, "open", 0, 0), sample(None, "error", 0, 0), sample(7.0, "rst", 99)]
    got = summarise(samples)
    assert got == {
        "count": 103,
        "delays": 101,
        "min": 1.0,
        "p50": 50.0,
        "p90": 90.0,
        "p99": 99.0,
        "max": 100.0,
        "ends": {"error": 1, "fin": 100, "open": 1, "rst": 1},
        "complete": 101,
        "truncated": 2,
        "bytes": {"min": 0, "max": 99},
    }
    small = summarise([sample(30.0), sample(10.0), sample(20.0)])
    assert (small["min"], small["p50"], small["p90"], small["p99"]) == (10.0, 20.0, 30.0, 30.0)
    empty = summarise([])
    assert empty["count"] == 0 and empty["p50"] is None and empty["bytes"]["min"] is None


@pytest.mark.parametrize("chunked", [False, True])
def test_post_body_then_fin_reaches_the_backend_whole(backends: dict[str, int], chunked) -> None:
    # 20000 bytes: chunked, two full 8192-byte chunks and a short one; the FIN right after.
    cfg = cfg_for(backends["http"], variant="fin-with-request", body_bytes=20000, chunked=chunked)
    s = probe_once(cfg)
    assert s["end"] == "fin" and s["statuses"] == [200] and s["complete"], s
    assert 0 <= s["delay_ms"] < 400


@pytest.mark.parametrize(
    ("chunked", "framing", "tail"),
    [
        (False, b"Content-Length: 9000\r\n", b"x" * 9000),
        (True, b"Transfer-Encoding: chunked\r\n",
         b"2000\r\n" + b"x" * 8192 + b"\r\n328\r\n" + b"x" * 808 + b"\r\n0\r\n\r\n"),
    ],
)  # fmt: skip
def test_request_body_framing(chunked: bool, framing: bytes, tail: bytes) -> None:
    cfg = ProbeConfig(port=8080, body_bytes=9000, chunked=chunked)
    head, _, body = probe._request(cfg, close=False).partition(b"\r\n\r\n")
    assert head.startswith(b"POST / HTTP/1.1\r\n") and framing in head + b"\r\n"
    assert body == tail
    assert probe._request(ProbeConfig(port=8080), close=False).startswith(b"GET / ")


def test_locust_env_reads_the_body_settings() -> None:
    # In a child: importing close_delay imports locust, which monkey-patches the process.
    script = """
import json, sys
sys.path.insert(0, sys.argv[1])
import close_delay
out = []
for env in ({"PROBE_BODY_BYTES": "100", "PROBE_CHUNKED": "on"}, {"PROBE_CHUNKED": "off"},
            {"PROBE_BODY_BYTES": "1", "PROBE_CHUNKED": "yes"}, {"PROBE_CHUNKED": "on"}):
    try:
        cfg = close_delay.config_from_env(env)
        out.append([cfg.body_bytes, cfg.chunked])
    except ValueError as exc:
        out.append(str(exc))
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(LOCUSTFILES)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    on, off, bad, bodiless = json.loads(proc.stdout.splitlines()[-1])
    assert on == [100, True] and off == [0, False]
    assert bad == "PROBE_CHUNKED='yes' is not on or off"
    assert "PROBE_CHUNKED needs a body" in bodiless


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variant", "tls-notify"], "--variant tls-notify needs --tls 1.2 or 1.3"),
        (["--variant", "tls-fin-no-notify", "--tls", "off"], "needs --tls 1.2 or 1.3"),
        (["--requests", "0"], "--requests must be at least 1"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--deadline-s", "0"], "--deadline-s must be above 0"),
        (["--path", "nope"], "--path must start with /"),
        (["--port", "70000"], "--port must be 1..65535"),
        (["--variant", "rst"], "invalid choice"),
        (["--body-bytes", "-1"], "--body-bytes must be 0 to 10000000"),
        (["--body-bytes", "10000001"], "--body-bytes must be 0 to 10000000"),
        (["--chunked"], "--chunked needs a body"),
    ],
)
def test_cli_rejects_bad_arguments(capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        probe.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_writes_samples_and_summary(backends: dict[str, int], tmp_path: Path, capsys) -> None:
    out, summary = tmp_path / "p.jsonl", tmp_path / "s.json"
    argv = ["--port", str(backends["fin-delay"]), "--connections", "4", "--concurrency", "2"]
    assert probe.main([*argv, "--out", str(out), "--summary", str(summary)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4 and all(line["end"] == "fin" for line in lines)
    written = json.loads(summary.read_text())
    assert written == json.loads(capsys.readouterr().out)
    assert written["count"] == 4 and written["ends"] == {"fin": 4}
    assert written["config"]["concurrency"] == 2 and written["config"]["host"] == "127.0.0.1"


# --- the Locust user, for real (gevent) ------------------------------------------------


def test_locust_user_runs_the_probes_and_stops_the_run(local_server, tls_context, tmp_path) -> None:
    seen: list[tuple[str, bool]] = []
    server = local_server(tls_handler(tls_context, "notify", seen))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    env.update(
        PROBE_HOST="127.0.0.1",
        PROBE_PORT=str(server.port),
        PROBE_TLS="1.3",
        PROBE_VARIANT="tls-notify",
        PROBE_CONNECTIONS="6",
        PROBE_CONCURRENCY="3",
        PROBE_OUT=str(tmp_path / "probe.jsonl"),
    )
    locust = [
        str(Path(sys.executable).parent / "locust"),
        *("-f", str(LOCUSTFILES / "close_delay.py"), "--headless", "-u", "1", "-r", "1"),
        *("--run-time", "30s", "--json-file", str(tmp_path / "stats")),
    ]
    start = time.monotonic()
    proc = subprocess.run(locust, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 15, "the run did not stop by itself"
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [(s["method"], s["name"], s["num_requests"], s["num_failures"]) for s in stats] == [
        ("close-delay", "tls-notify", 6, 0)
    ]
    samples = [json.loads(x) for x in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert [s["end"] for s in samples] == ["tls-alert-fin"] * 6
    assert seen == [("TLSv1.3", True)] * 6

    env["PROBE_TLS"] = "off"  # bad combination: stops before anything runs
    proc = subprocess.run(locust, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "PROBE_VARIANT tls-notify needs PROBE_TLS 1.2 or 1.3" in proc.stderr


def test_a_close_is_stamped_when_it_arrives_even_while_the_event_loop_is_busy(backends) -> None:
    # Under gevent a connection's recv() returns only once the loop is free: a greenlet
    # busy for 200 ms from 60 ms on had every close of a 100 ms target stamped at ~255 ms
    # (now busy 1 s: on a busy machine the 200 ms bound failed once).
    # The end watcher (a real thread in epoll) stamps the kernel's moment instead.
    script = ROOT / "tests" / "busy_loop_probe.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(LOCUSTFILES), str(backends["fin-delay"])],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    delays = json.loads(proc.stdout)
    assert len(delays) == 5
    # at d = 100 ms, well before the loop is free again at 1060 ms. A busy machine may
    # delay the target or the watcher's thread (it needs the GIL the hog holds, handed
    # over every 5 ms) by tens of ms, so the loop is busy long enough to tell the two
    # apart with room: the watcher's stamp under 600 ms, the loop's near 1060.
    assert all(100 <= d < 600 for d in delays), delays


def test_the_end_watcher_stamps_only_a_socket_that_has_ended() -> None:
    """An epoll event can outlive its socket: taken, closed, its fd number reused by the
    next connection, which is watched again before the watcher's thread reads the event.
    Stamped, it gave that connection an end a few µs after our FIN (a 100 ms close read
    0.04 ms). Whatever the event, a stamp needs the socket at that fd to have ended."""
    watcher = probe._EndWatcher()
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        try:
            fd = client.fileno()
            watcher._watched.add(fd)
            stale = [(fd, probe._EndWatcher.MASK)]
            watcher.stamp(stale, 1.0)  # nothing has ended: a stale event is not a stamp
            assert watcher._stamps == {}
            peer.shutdown(socket.SHUT_WR)  # the peer's FIN
            deadline = time.monotonic() + 2
            while not watcher._stamps and time.monotonic() < deadline:
                watcher.stamp(stale, 2.0)
            assert watcher._stamps == {fd: 2.0}
            watcher.stamp(stale, 3.0)  # the first stamp stands
            assert watcher._stamps == {fd: 2.0}
        finally:
            client.close()
            peer.close()
