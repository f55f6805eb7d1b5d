#!/usr/bin/env python3
"""Close-delay probe: how long the peer takes to end a connection after our FIN.

One probe is one connection: connect (plain TCP or TLS), send ``requests``
keep-alive GETs one after another, read each response completely, then end our
side in one of these ways (``variant``):

  fin                shutdown(SHUT_WR) after the last response (over TLS: no close_notify)
  tls-fin-no-notify  TLS: shutdown(SHUT_WR) of the TCP socket, no close_notify
  tls-notify         TLS: close_notify, then shutdown(SHUT_WR)
  conn-close         the last request says ``Connection: close``; we never shut down
                     and wait for the peer; the delay counts from the last response byte
  fin-with-request   shutdown(SHUT_WR) right after sending the last request (with its
                     body, if any), before reading its response; the delay counts from
                     our FIN

and wait, up to ``deadline_s``, for the peer's end: ``fin``, ``rst``,
``tls-alert-fin`` (a TLS close_notify or other alert, then the TCP FIN), or
``open`` at the deadline; ``error`` when the connection could not be made.

Requests are GETs, or POSTs of ``body_bytes`` bytes when that is above 0: with
Content-Length, or with Transfer-Encoding: chunked (``chunked``, chunks of at most
BODY_CHUNK bytes and the last-chunk; RFC 9112 section 7.1).

TLS runs through ``ssl.SSLObject`` over memory BIOs on a raw socket, so that we
alone decide whether close_notify goes out, and we see exactly what the peer
sends after our FIN. Only blocking socket calls with timeouts are used: under
Locust (gevent) they cooperate, and under plain threads (the unit tests, the
CLI) they are ordinary threads. After our FIN, one real OS thread (_EndWatcher)
also waits in epoll for the peer's end, so the end is stamped when the kernel has
it even while the event loop is busy with other connections.

Each connection gives one sample (a JSON-ready dict):

  src_port        our local port (to match the connection in a packet capture)
  variant, tls, requests   as configured
  statuses        status of each response whose head arrived
  unique_ids      X-Unique-ID of each response that carried one
  bytes           body bytes over all responses (decoded when chunked), including
                  those that arrived after our FIN
  expected_bytes  sum of Content-Length when every response had one, else null
  complete        every response body fully received
  truncated_at    body bytes of the first incomplete response, else null
  stalled_at      body bytes of the response when stall_ms (or the deadline) made us
                  give up on it, else null; the rest may still arrive after our FIN
  end             fin | rst | tls-alert-fin | open | error
  delay_ms        peer's end minus our FIN (conn-close: minus the last response byte),
                  3 decimals; negative when the peer ended first; null for open/error
  t_fin_wall      time.time() at our FIN (conn-close: at the last response byte)
  tls_alert       "close_notify", or the alert OpenSSL reported, when one came first
  error           what went wrong, else null

Stdlib only. Run ``python3 probe.py --help`` for the CLI; close_delay.py runs it
as a Locust user.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import select
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, fields
from typing import Any

# hold: keep-alive, never send a FIN: wait for the peer to close (delay from the last
# response byte), then keep our side open until the deadline (the peer sits in FIN_WAIT2).
VARIANTS = ("fin", "tls-fin-no-notify", "tls-notify", "conn-close", "fin-with-request", "hold")
WAIT_FOR_PEER = ("conn-close", "hold")
TLS_ONLY = ("tls-fin-no-notify", "tls-notify")
TLS_CHOICES = ("off", "1.2", "1.3")
ENDS = ("fin", "rst", "tls-alert-fin", "open", "error")
MAX_HEAD = 64 * 1024  # status line + headers; larger is a protocol error
RECV_SIZE = 256 * 1024
BODY_CHUNK = 8192  # the largest chunk of a chunked request body
MAX_BODY_BYTES = 10_000_000


@dataclass
class ProbeConfig:
    host: str = "127.0.0.1"
    port: int | None = None  # None: 8443 with TLS, 8080 without (the stack's frontends)
    tls: str = "off"  # off | 1.2 | 1.3
    variant: str = "fin"
    connections: int = 1
    concurrency: int | None = None  # None: all connections at once
    requests: int = 1
    path: str = "/"
    rcvbuf: int = 0  # SO_RCVBUF in bytes, set before connect; 0 = kernel default
    body_bytes: int = 0  # a POST body of this many bytes per request; 0 = GETs
    chunked: bool = False  # the body with Transfer-Encoding: chunked, not Content-Length
    read_pause_ms: float = 0.0  # sleep between sending a request and reading it
    stall_ms: float = 0.0  # give up on a response after this long without a byte; 0 = never
    # Start connection i after i*stagger_ms: closes that all land in the same instant
    # queue up in one event loop, and the last ones are timed late by a few ms.
    stagger_ms: float = 0.0
    deadline_s: float = 30.0  # longest wait for the peer's end after our FIN
    connect_timeout_s: float = 5.0

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8080 if self.tls == "off" else 8443

    @property
    def effective_concurrency(self) -> int:
        return self.concurrency if self.concurrency is not None else self.connections

    def validate(self) -> None:
        """Raise ValueError naming the bad setting (callers turn it into exit code 2)."""
        if self.tls not in TLS_CHOICES:
            raise ValueError(f"--tls must be one of {', '.join(TLS_CHOICES)}, not {self.tls!r}")
        if self.variant not in VARIANTS:
            raise ValueError(
                f"--variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}"
            )
        if self.variant in TLS_ONLY and self.tls == "off":
            raise ValueError(f"--variant {self.variant} needs --tls 1.2 or 1.3")
        if not self.host:
            raise ValueError("--host must not be empty")
        if not 1 <= self.effective_port <= 65535:
            raise ValueError(f"--port must be 1..65535, not {self.port}")
        for name in ("connections", "requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, not {getattr(self, name)}")
        if self.effective_concurrency < 1:
            raise ValueError(f"--concurrency must be at least 1, not {self.concurrency}")
        if not self.path.startswith("/") or any(c in self.path for c in " \r\n"):
            raise ValueError(f"--path must start with / and hold no spaces: {self.path!r}")
        if not 0 <= self.body_bytes <= MAX_BODY_BYTES:
            raise ValueError(f"--body-bytes must be 0 to {MAX_BODY_BYTES}, not {self.body_bytes}")
        if self.chunked and not self.body_bytes:
            raise ValueError("--chunked needs a body: set --body-bytes above 0")
        if self.rcvbuf < 0:
            raise ValueError(f"--rcvbuf must be 0 or more bytes, not {self.rcvbuf}")
        for name in ("read_pause_ms", "stall_ms"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, not {value}")
        for name in ("deadline_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be above 0, not {value}")


# --- an incremental HTTP/1.1 response parser --------------------------------------


class ProtocolError(Exception):
    pass


@dataclass
class _Response:
    status: int | None = None
    unique_id: str | None = None
    length: int | None = None  # Content-Length, when the body is framed by it
    body: int = 0  # body bytes received (decoded payload when chunked)
    complete: bool = False


class _Parser:
    """Counts responses and body bytes as data arrives; bodies are never stored.

    Bytes after the last expected response are ignored: the probe only needs to
    know what it asked for.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.responses: list[_Response] = []
        self.buf = b""
        self.state = "head"  # head | length | size | data | crlf | trailer | close | done
        self.sent = 0  # requests sent
        self.stalled_at: int | None = None  # body bytes of the response when we gave up on it
        self.remaining = 0
        self.error: str | None = None

    @property
    def done(self) -> int:
        """How many responses are complete."""
        return sum(r.complete for r in self.responses)

    def feed(self, data: bytes) -> None:
        if self.state == "done" or self.error is not None:
            return
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        try:
            while pos < end and self.state != "done":
                pos = self._step(buf, pos, end)
                if pos < 0:  # need more bytes
                    pos = -pos - 1
                    break
        except ProtocolError as exc:
            self.error = str(exc)
            buf, pos = b"", 0
        self.buf = buf[pos:]  # only an unfinished head or chunk-size line is kept

    def eof(self) -> None:
        """The peer ended the stream: that completes a close-delimited body."""
        if self.state == "close":
            self._finish()

    def _step(self, buf: bytes, pos: int, end: int) -> int:
        """Consume what the current state can from buf[pos:end]; -(pos+1) = need more."""
        state = self.state
        if state == "head":
            stop = buf.find(b"\r\n\r\n", pos)
            if stop < 0:
                if end - pos > MAX_HEAD:
                    raise ProtocolError("response head larger than 64 KiB")
                return -(pos + 1)
            self._head(buf[pos:stop])
            return stop + 4
        if state in ("length", "data"):
            take = min(self.remaining, end - pos)
            self.responses[-1].body += take
            self.remaining -= take
            if not self.remaining:
                if state == "length":
                    self._finish()
                else:
                    self.state = "crlf"
            return pos + take
        if state == "close":
            self.responses[-1].body += end - pos
            return end
        if state == "crlf":
            if end - pos < 2:
                return -(pos + 1)
            if buf[pos : pos + 2] != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
            self.state = "size"
            return pos + 2
        stop = buf.find(b"\r\n", pos)  # size and trailer states work on lines
        if stop < 0:
            if end - pos > MAX_HEAD:
                raise ProtocolError("chunk-size or trailer line too long")
            return -(pos + 1)
        line = buf[pos:stop]
        if state == "size":
            digits = line.split(b";", 1)[0].strip()
            try:
                size = int(digits, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {digits[:20]!r}") from None
            if size < 0:
                raise ProtocolError(f"bad chunk size {digits[:20]!r}")
            self.state, self.remaining = ("trailer", 0) if size == 0 else ("data", size)
        elif not line:  # state == "trailer": the empty line ends the message
            self._finish()
        return stop + 2

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            return  # interim response (100 Continue...): the real one follows
        resp = _Response(status=status)
        self.responses.append(resp)
        chunked = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                if not value.isdigit():
                    raise ProtocolError(f"bad Content-Length {value[:20]!r}")
                resp.length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif name == b"x-unique-id":
                resp.unique_id = value.decode("latin-1")
        if chunked:
            resp.length = None  # Transfer-Encoding wins over Content-Length (RFC 9112 6.3)
            self.state = "size"
        elif status in (101, 204, 304):
            resp.length = 0
            self._finish()
        elif resp.length is not None:
            self.remaining = resp.length
            self.state = "length"
            if not resp.length:
                self._finish()
        else:
            self.state = "close"

    def _finish(self) -> None:
        self.responses[-1].complete = True
        self.state = "done" if len(self.responses) >= self.expected else "head"


# --- one connection -----------------------------------------------------------------


class PeerEnd(Exception):
    """The peer ended the connection: kind is fin, rst or tls-alert-fin."""

    def __init__(self, kind: str, at: float) -> None:
        super().__init__(kind)
        self.kind = kind
        self.at = at


def _original(module: str, name: str) -> Any:
    """The stdlib's own ``module.name``, even where gevent has monkey-patched it."""
    try:
        from gevent import monkey
    except ImportError:
        return getattr(importlib.import_module(module), name)
    return monkey.get_original(module, name)


class _EndWatcher:
    """Stamps the instant the kernel has the peer's FIN or RST, whoever is running then.

    Under Locust every connection is a greenlet in one event loop, and a connection's
    recv() returns (and is stamped) only once the loop is free: a close that arrives
    while another greenlet parses or decrypts a body was stamped as late as that work
    lasted (up to 19 ms in the scenarios). Here one real OS thread waits in epoll(7) for
    EPOLLRDHUP (the peer's FIN, taken in sequence: after every byte before it) or
    EPOLLHUP/EPOLLERR (a reset) on each socket whose end we wait for, and takes the
    time as epoll_wait returns; it needs only the GIL, which a busy thread hands over
    within sys.getswitchinterval() (lowered to 0.5 ms here). Linux only; elsewhere, or
    when the thread cannot start, the probe's own stamp stands.
    """

    MASK = getattr(select, "EPOLLRDHUP", 0) | getattr(select, "EPOLLHUP", 0)
    MASK |= getattr(select, "EPOLLERR", 0) | getattr(select, "EPOLLONESHOT", 0)

    def __init__(self) -> None:
        self._lock = _original("_thread", "allocate_lock")()
        self._epoll: Any = None
        self._watched: set[int] = set()
        self._stamps: dict[int, float] = {}

    def _start(self) -> bool:
        if self._epoll is None:
            try:  # gevent's monkey-patching removes select.epoll: the original is kept
                self._epoll = _original("select", "epoll")()
            except (AttributeError, OSError):
                return False
            sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
            _original("_thread", "start_new_thread")(self._run, ())
        return True

    def watch(self, sock: socket.socket) -> None:
        """Start watching (after our FIN): stamps taken from now on belong to sock."""
        with self._lock:
            if not self._start():
                return
            fd = sock.fileno()
            self._stamps.pop(fd, None)
            with contextlib.suppress(OSError):
                self._epoll.register(fd, self.MASK)
                self._watched.add(fd)

    def take(self, sock: socket.socket) -> float | None:
        """Stop watching sock (before it is closed); the monotonic time of its end, if seen."""
        with self._lock:
            fd = sock.fileno()
            if fd not in self._watched:
                return None
            self._watched.discard(fd)
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            return self._stamps.pop(fd, None)

    # poll(2)'s flags for the same ends (Linux's values where gevent hid the constants),
    # to check an event against the socket now at its fd
    POLL_END = (getattr(select, "POLLRDHUP", 0x2000) | getattr(select, "POLLHUP", 0x10)
                | getattr(select, "POLLERR", 0x8))  # fmt: skip

    def _run(self) -> None:
        while True:
            events = self._epoll.poll()
            self.stamp(events, time.monotonic())

    def stamp(self, events: list[tuple[int, int]], now: float) -> None:
        """Stamp ``now`` (monotonic s) on each watched fd of ``events`` (epoll's (fd,
        mask) pairs) whose socket has really ended (:meth:`_ended`); a first stamp stands."""
        check = _original("select", "poll")
        with self._lock:
            for fd, _ in events:
                if fd in self._watched and fd not in self._stamps and self._ended(check, fd):
                    self._stamps[fd] = now

    def _ended(self, check: Any, fd: int) -> bool:
        """Whether the socket now at ``fd`` has the peer's FIN or an error pending. An
        event epoll returned can be stale: its socket was taken, closed and its fd number
        reused by a new connection (watched again) before this thread held the lock; it
        then stamped the new connection's end a few µs after our FIN. The ends are levels
        (they stay until the socket is closed), so a poll with no wait tells them apart."""
        probe = check()
        probe.register(fd, self.POLL_END)
        return bool(probe.poll(0))


WATCHER = _EndWatcher()


class _Conn:
    """A raw TCP socket, with TLS run by hand over memory BIOs when asked."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.src_port: int | None = None
        self.tls: ssl.SSLObject | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.alert: str | None = None  # TLS close_notify / alert seen from the peer
        self.fin_sent = False
        self.last_rx = 0.0  # monotonic time of the last bytes received

    def open(self, cfg: ProbeConfig) -> None:
        port = cfg.effective_port
        infos = socket.getaddrinfo(cfg.host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        self.sock = sock
        if cfg.rcvbuf:
            # Before connect: the window scale is fixed by the SYN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(cfg.connect_timeout_s)
        try:
            sock.connect(addr)
        finally:
            with contextlib.suppress(OSError):
                self.src_port = sock.getsockname()[1] or None
        if cfg.tls != "off":
            self._handshake(cfg)

    def _handshake(self, cfg: ProbeConfig) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # per-run test certificates
        version = ssl.TLSVersion.TLSv1_2 if cfg.tls == "1.2" else ssl.TLSVersion.TLSv1_3
        ctx.minimum_version = ctx.maximum_version = version
        server_name = None if _is_ip(cfg.host) else cfg.host
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)
        deadline = time.monotonic() + cfg.connect_timeout_s
        while True:
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("TLS handshake timed out") from None
                data = self._raw_recv(remaining)
                if not data:
                    raise ConnectionError("peer closed during the TLS handshake") from None
                self.incoming.write(data)

    def _flush(self) -> None:
        """Send whatever TLS produced (records, close_notify, handshake replies)."""
        data = self.outgoing.read()
        if data and self.sock is not None:
            if self.fin_sent:
                return  # e.g. a TLS 1.3 KeyUpdate reply after our FIN: cannot go out
            self.sock.sendall(data)

    def _raw_recv(self, timeout: float) -> bytes:
        assert self.sock is not None
        self.sock.settimeout(max(timeout, 0.000001))
        data = self.sock.recv(RECV_SIZE)
        if data:
            self.last_rx = time.monotonic()
        return data

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        if self.tls is None:
            self.sock.sendall(data)
        else:
            self.tls.write(data)
            self._flush()

    def recv(self, timeout: float) -> bytes:
        """Application bytes (never empty); TimeoutError; PeerEnd when the peer ended.

        Raw recv returning b"" is the peer's FIN and ConnectionResetError its RST;
        each is timestamped the moment the call returns. Over TLS, a close_notify
        or alert is remembered and reading goes on on the raw socket until the TCP
        end arrives, which is what the delay is measured to.
        """
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.tls is not None and self.alert is None:
                    data = self._tls_recv(deadline)
                    if data:
                        return data
                    continue  # an alert arrived: wait for the TCP end below
                data = self._raw_recv(deadline - time.monotonic())
                if not data:
                    raise PeerEnd("tls-alert-fin" if self.alert else "fin", time.monotonic())
                if self.tls is None:
                    return data
                # After a TLS alert nothing more can be decrypted: drop it.
        except ConnectionResetError:
            raise PeerEnd("rst", time.monotonic()) from None

    def _tls_recv(self, deadline: float) -> bytes:
        """Decrypted bytes, or b"" once the peer's close_notify or alert was read."""
        assert self.tls is not None
        while True:
            try:
                data = self.tls.read(RECV_SIZE)
                if not data:  # CPython's way of saying close_notify before we sent ours
                    self.alert = "close_notify"
                return data
            except ssl.SSLWantReadError:
                self._flush()
                raw = self._raw_recv(deadline - time.monotonic())
                if not raw:
                    raise PeerEnd("fin", time.monotonic()) from None
                self.incoming.write(raw)
            except ssl.SSLZeroReturnError:
                self.alert = "close_notify"
                return b""
            except ssl.SSLEOFError:  # pragma: no cover - we never write EOF to the BIO
                raise PeerEnd("fin", time.monotonic()) from None
            except ssl.SSLError as exc:  # an alert (or garbage): what the peer sent first
                self.alert = exc.reason or str(exc)
                return b""

    def fin(self, notify: bool) -> float:
        """End our side (close_notify first if asked); returns the monotonic time of the FIN."""
        assert self.sock is not None
        if notify and self.tls is not None:
            try:
                self.tls.unwrap()  # writes close_notify; then wants the peer's, later
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                pass  # the peer's close_notify was already read: ours went out all the same
            self._flush()
        self.fin_sent = True
        # Stamped before the call: the FIN leaves inside it, while the stamp after it
        # would wait for the GIL behind the other probe threads.
        at = time.monotonic()
        with contextlib.suppress(OSError):  # already reset by the peer: the end type says so
            self.sock.shutdown(socket.SHUT_WR)
        return at

    def close(self) -> None:
        if self.sock is not None:
            WATCHER.take(self.sock)  # before its descriptor can be reused
            self.sock.close()


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


def _request(cfg: ProbeConfig, close: bool) -> bytes:
    """One request, head and body: a GET, or a POST of cfg.body_bytes bytes framed by
    Content-Length or, with cfg.chunked, as chunks of at most BODY_CHUNK bytes and the
    last-chunk (RFC 9112 sections 6.2 and 7.1)."""
    conn = "Connection: close\r\n" if close else ""
    size = cfg.body_bytes
    if not size:
        method, framing, body = "GET", "", b""
    elif cfg.chunked:
        full, rest = divmod(size, BODY_CHUNK)
        parts = [b"%x\r\n" % BODY_CHUNK + b"x" * BODY_CHUNK + b"\r\n"] * full
        if rest:
            parts.append(b"%x\r\n" % rest + b"x" * rest + b"\r\n")
        method, framing, body = "POST", "Transfer-Encoding: chunked\r\n", b"".join(parts)
        body += b"0\r\n\r\n"
    else:
        method, framing, body = "POST", f"Content-Length: {size}\r\n", b"x" * size
    return (
        f"{method} {cfg.path} HTTP/1.1\r\nHost: {cfg.host}:{cfg.effective_port}\r\n"
        f"User-Agent: harness-probe\r\nAccept: */*\r\n{framing}{conn}\r\n"
    ).encode("latin-1") + body


def _read_response(
    conn: _Conn, parser: _Parser, index: int, cfg: ProbeConfig, until: float
) -> bool:
    """Read until response `index` is complete; False when it stalled or broke off.

    Stalled means no byte for stall_ms (or nothing more before `until`). PeerEnd
    propagates: the peer ended the connection before we did.
    """
    stall_s = cfg.stall_ms / 1000.0
    while parser.done <= index and parser.error is None:
        remaining = until - time.monotonic()
        if remaining <= 0:
            return False
        try:
            data = conn.recv(min(stall_s, remaining) if stall_s else remaining)
        except TimeoutError:
            current = parser.responses[index] if len(parser.responses) > index else None
            parser.stalled_at = current.body if current is not None else 0
            return False
        parser.feed(data)
    return parser.error is None


def probe_once(cfg: ProbeConfig) -> dict[str, Any]:
    """One connection, start to end; never raises (failures become end=error)."""
    sample: dict[str, Any] = {
        "src_port": None,
        "variant": cfg.variant,
        "tls": cfg.tls,
        "requests": cfg.requests,
        "statuses": [],
        "unique_ids": [],
        "bytes": 0,
        "expected_bytes": None,
        "complete": False,
        "truncated_at": None,
        "stalled_at": None,
        "end": "error",
        "delay_ms": None,
        "t_fin_wall": None,
        "tls_alert": None,
        "error": None,
    }
    conn = _Conn()
    parser = _Parser(cfg.requests)
    try:
        try:
            conn.open(cfg)
        except (OSError, ssl.SSLError, ValueError) as exc:
            sample["error"] = f"connect to {cfg.host}:{cfg.effective_port}: {_describe(exc)}"
            return sample
        _converse(conn, parser, cfg, sample)
    except Exception as exc:  # a bug or an unforeseen socket error: keep the run going
        sample["end"] = "error"
        sample["delay_ms"] = None
        sample["error"] = f"probe failed: {_describe(exc)}"
    finally:
        sample["src_port"] = conn.src_port
        conn.close()
        _account(parser, sample)
    return sample


def _converse(conn: _Conn, parser: _Parser, cfg: ProbeConfig, sample: dict[str, Any]) -> None:
    t_ref: float | None = None  # our FIN, or the last response byte for conn-close
    end: PeerEnd | None = None
    try:
        for i in range(cfg.requests):
            last = i == cfg.requests - 1
            try:
                conn.send(_request(cfg, close=last and cfg.variant == "conn-close"))
            except (BrokenPipeError, ConnectionResetError) as exc:
                # The peer closed between two keep-alive requests: what it did is
                # read below as the end; note that the request never went.
                sample["error"] = f"request {i + 1} not sent: {_describe(exc)}"
                break
            parser.sent += 1
            if last and cfg.variant == "fin-with-request":
                t_ref = _fin(conn, False, sample)
            if cfg.read_pause_ms:
                time.sleep(cfg.read_pause_ms / 1000.0)
            until = (t_ref if t_ref is not None else time.monotonic()) + cfg.deadline_s
            if not _read_response(conn, parser, i, cfg, until):
                break  # stalled or malformed: no more requests, go to the ending
    except PeerEnd as exc:
        end = exc  # the peer ended before we did (it closed first, or reset)
    if t_ref is None:
        if cfg.variant in WAIT_FOR_PEER:
            t_ref = conn.last_rx or time.monotonic()
            sample["t_fin_wall"] = round(time.time() - (time.monotonic() - t_ref), 6)
        else:
            t_ref = _fin(conn, cfg.variant == "tls-notify", sample)
    while end is None:
        remaining = t_ref + cfg.deadline_s - time.monotonic()
        if remaining <= 0:
            break
        try:
            parser.feed(conn.recv(remaining))  # bytes after our FIN still count
        except TimeoutError:
            break
        except PeerEnd as exc:
            end = exc
    if t_ref is not None and cfg.variant not in WAIT_FOR_PEER and conn.sock is not None:
        # The kernel's moment, when the watcher saw it before we did (see _EndWatcher).
        seen = WATCHER.take(conn.sock)
        if end is not None and seen is not None and t_ref <= seen < end.at:
            end.at = seen
    if cfg.variant == "hold" and end is not None and end.kind != "rst":
        # Stay half-open: the peer's FIN is acknowledged, ours comes at the deadline.
        time.sleep(max(0.0, t_ref + cfg.deadline_s - time.monotonic()))
    sample["tls_alert"] = conn.alert
    if parser.error is not None:
        sample["error"] = f"bad response: {parser.error}"  # the end is still measured
    if end is None:
        sample["end"] = "open"
        return
    if end.kind != "rst":
        parser.eof()
    sample["end"] = end.kind
    # Negative when the peer ended before our FIN (it closed first).
    sample["delay_ms"] = round((end.at - t_ref) * 1000.0, 3)


def _fin(conn: _Conn, notify: bool, sample: dict[str, Any]) -> float:
    t = conn.fin(notify)
    sample["t_fin_wall"] = round(time.time(), 6)
    if conn.sock is not None:
        WATCHER.watch(conn.sock)
    return t


def _account(parser: _Parser, sample: dict[str, Any]) -> None:
    responses = parser.responses
    sample["statuses"] = [r.status for r in responses if r.status is not None]
    sample["unique_ids"] = [r.unique_id for r in responses if r.unique_id is not None]
    sample["bytes"] = sum(r.body for r in responses)
    lengths = [r.length for r in responses]
    full = len(responses) == parser.expected and None not in lengths
    sample["expected_bytes"] = sum(x for x in lengths if x is not None) if full else None
    sample["complete"] = parser.done == parser.expected
    sample["stalled_at"] = parser.stalled_at
    if not sample["complete"] and parser.sent:
        partial = next((r for r in responses if not r.complete), None)
        sample["truncated_at"] = partial.body if partial is not None else 0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- many connections ------------------------------------------------------------------


def run_probes(
    cfg: ProbeConfig, on_sample: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Run cfg.connections probes, cfg.concurrency at a time (threads, or greenlets
    under gevent). on_sample sees each sample as it finishes, in the caller's thread."""
    cfg.validate()
    samples: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=cfg.effective_concurrency) as pool:
        futures = [pool.submit(_staggered, cfg, i) for i in range(cfg.connections)]
        for future in as_completed(futures):
            sample = future.result()
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
    return samples


def _staggered(cfg: ProbeConfig, index: int) -> dict[str, Any]:
    if cfg.stagger_ms:
        time.sleep(index * cfg.stagger_ms / 1000.0)
    return probe_once(cfg)


def _nearest_rank(ordered: Sequence[float], pct: float) -> float:
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered))) - 1]


def summarise(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Delay distribution (nearest-rank percentiles) over samples with a delay, plus counts.

    count is the number of samples; delays the number with a delay (not open/error).
    """
    samples = list(samples)
    delays = sorted(s["delay_ms"] for s in samples if s.get("delay_ms") is not None)
    stats: dict[str, float | None] = dict.fromkeys(("min", "p50", "p90", "p99", "max"))
    if delays:
        stats = {
            "min": delays[0],
            "p50": _nearest_rank(delays, 50),
            "p90": _nearest_rank(delays, 90),
            "p99": _nearest_rank(delays, 99),
            "max": delays[-1],
        }
    sizes = [s["bytes"] for s in samples]
    return {
        "count": len(samples),
        "delays": len(delays),
        **stats,
        "ends": dict(sorted(Counter(s["end"] for s in samples).items())),
        "complete": sum(1 for s in samples if s.get("complete")),
        "truncated": sum(1 for s in samples if s.get("truncated_at") is not None),
        "bytes": {"min": min(sizes) if sizes else None, "max": max(sizes) if sizes else None},
    }


def run_to_files(
    cfg: ProbeConfig,
    out: str | None,
    summary: str | None,
    on_sample: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """run_probes, one JSON line per sample to `out` as each finishes, then the summary
    (with the configuration it ran) to `summary`. Returns the summary."""
    handle = open(out, "w", encoding="utf-8") if out else None  # noqa: SIM115 - closed below
    try:

        def record(sample: dict[str, Any]) -> None:
            if handle is not None:
                handle.write(json.dumps(sample, sort_keys=True) + "\n")
                handle.flush()  # a run cut short still leaves every finished sample
            if on_sample is not None:
                on_sample(sample)

        samples = run_probes(cfg, record)
    finally:
        if handle is not None:
            handle.close()
    result = {"config": config_dict(cfg), **summarise(samples)}
    if summary:
        with open(summary, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, sort_keys=True)
            f.write("\n")
    return result


def config_dict(cfg: ProbeConfig) -> dict[str, Any]:
    values = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    values["port"] = cfg.effective_port
    values["concurrency"] = cfg.effective_concurrency
    return values


# --- command line ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="probe.py",
        description="Measure how long a peer takes to end connections after the client's FIN.",
    )
    d = ProbeConfig()
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=None, help="default 8080, or 8443 with --tls")
    p.add_argument("--tls", default=d.tls, choices=TLS_CHOICES)
    p.add_argument("--variant", default=d.variant, choices=VARIANTS)
    p.add_argument("--connections", type=int, default=d.connections)
    p.add_argument("--concurrency", type=int, default=None, help="default: all at once")
    p.add_argument("--requests", type=int, default=d.requests, help="keep-alive GETs per conn")
    p.add_argument("--path", default=d.path, help="request path and query")
    p.add_argument("--body-bytes", type=int, default=d.body_bytes, help="POST body; 0 = GET")
    p.add_argument("--chunked", action="store_true", help="send the body chunked")
    p.add_argument("--rcvbuf", type=int, default=d.rcvbuf, help="SO_RCVBUF bytes, 0 = default")
    p.add_argument("--read-pause-ms", type=float, default=d.read_pause_ms)
    p.add_argument("--stall-ms", type=float, default=d.stall_ms, help="0 = wait to deadline")
    p.add_argument("--stagger-ms", type=float, default=d.stagger_ms, help="start gap")
    p.add_argument("--deadline-s", type=float, default=d.deadline_s)
    p.add_argument("--connect-timeout-s", type=float, default=d.connect_timeout_s)
    p.add_argument("--out", metavar="PATH.jsonl", help="one JSON line per connection")
    p.add_argument("--summary", metavar="PATH.json", help="the summary as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = vars(parser.parse_args(argv))
    out, summary = args.pop("out"), args.pop("summary")
    cfg = ProbeConfig(**args)
    try:
        cfg.validate()
    except ValueError as exc:
        parser.error(str(exc))  # usage + message, exit code 2
    result = run_to_files(cfg, out, summary)
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
