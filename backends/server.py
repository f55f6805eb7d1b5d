#!/usr/bin/env python3
"""Purpose-built HTTP/1.1 origin server for HAProxy benchmarks.

Single file, stdlib only, asyncio.Protocol based (streams and http.server are
too slow to keep a proxy busy). Behaviour is set per run by BACKEND_*
environment variables and may be overridden per request by query parameters
of the same name in lower case without the prefix, e.g.
``GET /?size=50000&framing=chunked&chunk_size=32&chunk_pause_ms=1``.

Per-run only:   BACKEND_HOST [0.0.0.0], BACKEND_PORT [8080, 0 = ephemeral],
                BACKEND_BACKLOG [1024], BACKEND_ACCEPT_DELAY_MS [0],
                BACKEND_MODE [http | fin-delay],
                BACKEND_BLACKHOLE_PORT [0 = none]: a second port that listens
                with a backlog of 1 and never accepts (a saturated server),
                BACKEND_EXTRA_PORTS [none]: more ports served like BACKEND_PORT,
                comma-separated (one listener per server of a multi-server backend)
Per request too: BACKEND_SIZE [128], BACKEND_FRAMING [content-length |
                chunked | close], BACKEND_CHUNK_SIZE [8192],
                BACKEND_CHUNK_PAUSE_MS [0], BACKEND_DELAY_MS [0],
                BACKEND_KEEPALIVE [on | off], BACKEND_IDLE_TIMEOUT_MS [0],
                BACKEND_MAX_REQUESTS [0], BACKEND_FIN_DELAY_MS [0]

GET /_stats answers {"connections": N, "requests": N, "by_header": {...},
"by_port": {...}} since start (JSON), so a cell can count the connections a proxy opened
towards the backend (a connection whose first request is /health or /_stats, the stack's
own machinery, is not counted, nor are those requests). ``by_header`` counts the
requests by the Connection header they came with and whether they came on a connection
that had carried a request before: "close new", "none reused" ("none": no Connection
header; tokens other than close, keep-alive, upgrade read "other"), so what a proxy
sent the server is measurable. ``by_port`` counts requests per listening port,
``by_body`` the requests with a body by framing ("content-length", "chunked"), and
``body_bytes`` the request body bytes read (chunked: the chunks' data). A request body
is read whole and discarded before the response.

Query parameters with other names are ignored (so cache busters pass); a bad
value, or a per-run knob given as a query parameter, gets a 400 naming it.

Mode ``fin-delay`` is the calibration target: it answers with Content-Length
and keep-alive, never times out, and closes its side exactly
BACKEND_FIN_DELAY_MS after reading the client's FIN.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

FRAMINGS = ("content-length", "chunked", "close")
MODES = ("http", "fin-delay")
MAX_HEAD = 64 * 1024  # request line + headers; larger is a 400
MAX_CHUNK_LINE = 4096  # a chunk-size line (with extensions) or a trailer line
MAX_INPUT = 1024 * 1024  # buffered input before reading is paused
FAST_LIMIT = 256 * 1024  # responses up to this are built and written in one call
PIECE = 64 * 1024  # unit of body writes on the streaming path
MAX_SIZE = 1 << 40
MAX_MS = 3_600_000.0
LINGER_S = 2.0  # after our FIN, how long to drain input waiting for the peer's
TEMPLATE_CACHE_MAX = 1024

FILLER = b"x" * FAST_LIMIT
FILLER_VIEW = memoryview(FILLER)
LAST_CHUNK = b"0\r\n\r\n"

# Reasons reading may be paused; reading resumes only when none is left.
READ_ACCEPT_DELAY = 1
READ_BACKPRESSURE = 2
READ_INPUT_FULL = 4


@dataclass(frozen=True, slots=True)
class Knobs:
    """Settings that a request may override with query parameters."""

    size: int = 128
    framing: str = "content-length"
    chunk_size: int = 8192
    chunk_pause_ms: float = 0.0
    delay_ms: float = 0.0
    keepalive: bool = True
    idle_timeout_ms: float = 0.0
    max_requests: int = 0
    fin_delay_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Config:
    host: str
    port: int
    backlog: int
    accept_delay_ms: float
    mode: str
    knobs: Knobs
    blackhole_port: int = 0
    extra_ports: tuple[int, ...] = ()


# A timer this short is late by microseconds at most (the kernel's slack is 0.1 %).
FIN_TIMER_EXACT_S = 0.02
FIN_TIMER_SPIN_S = 0.002

# Totals since start, for GET /_stats (one event loop: no locking needed).
TOTALS: dict[str, Any] = {
    "connections": 0, "requests": 0, "by_header": {}, "by_port": {},
    "body_bytes": 0, "by_body": {},
}  # fmt: skip
# The Connection tokens told apart in by_header; any other token reads "other", so a
# client cannot grow the table without bound.
CONNECTION_TOKENS = (b"close", b"keep-alive", b"upgrade")
# Paths of the stack's own machinery (health check, stats query): not counted in TOTALS.
MACHINERY = (b"/health", b"/_stats")


# --- value parsing (shared by environment and query parameters) -------------


def _int(lo: int, hi: int):
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"invalid {name}: {raw!r} (expected an integer)") from None
        if not lo <= value <= hi:
            raise ValueError(f"invalid {name}: {raw!r} (expected {lo}..{hi})")
        return value

    return parse


def _ms(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"invalid {name}: {raw!r} (expected milliseconds)") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_MS:
        raise ValueError(f"invalid {name}: {raw!r} (expected 0..{MAX_MS:.0f} ms)")
    return value


def _framing(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in FRAMINGS:
        raise ValueError(f"invalid {name}: {raw!r} (expected one of {', '.join(FRAMINGS)})")
    return value


def _switch(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"invalid {name}: {raw!r} (expected on or off)")


def _mode(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in MODES:
        raise ValueError(f"invalid {name}: {raw!r} (expected one of {', '.join(MODES)})")
    return value


KNOB_PARSERS = {
    "size": _int(0, MAX_SIZE),
    "framing": _framing,
    "chunk_size": _int(1, MAX_SIZE),
    "chunk_pause_ms": _ms,
    "delay_ms": _ms,
    "keepalive": _switch,
    "idle_timeout_ms": _ms,
    "max_requests": _int(0, 1 << 62),
    "fin_delay_ms": _ms,
}
assert set(KNOB_PARSERS) == {f.name for f in fields(Knobs)}
RUN_ONLY = (
    "host", "port", "backlog", "accept_delay_ms", "mode", "blackhole_port", "extra_ports"
)  # fmt: skip
# fin-delay mode pins these; overriding them per request would void calibration.
FIN_DELAY_PINNED = ("framing", "keepalive", "idle_timeout_ms")


def load_config(env: Mapping[str, str]) -> Config:
    """Read BACKEND_* variables; raises ValueError naming the bad variable."""

    def get(name: str) -> str | None:
        raw = env.get("BACKEND_" + name.upper())
        return raw if raw is not None and raw.strip() != "" else None

    values = {}
    for name, parse in KNOB_PARSERS.items():
        raw = get(name)
        if raw is not None:
            values[name] = parse("BACKEND_" + name.upper(), raw)
    knobs = Knobs(**values)
    mode = _mode("BACKEND_MODE", get("mode") or "http")
    if mode == "fin-delay":
        knobs = replace(knobs, framing="content-length", keepalive=True, idle_timeout_ms=0.0)
    return Config(
        host=get("host") or "0.0.0.0",
        port=_int(0, 65535)("BACKEND_PORT", get("port") or "8080"),
        backlog=_int(1, 1 << 20)("BACKEND_BACKLOG", get("backlog") or "1024"),
        accept_delay_ms=_ms("BACKEND_ACCEPT_DELAY_MS", get("accept_delay_ms") or "0"),
        mode=mode,
        knobs=knobs,
        blackhole_port=_int(0, 65535)("BACKEND_BLACKHOLE_PORT", get("blackhole_port") or "0"),
        extra_ports=_ports("BACKEND_EXTRA_PORTS", get("extra_ports") or ""),
    )


def _ports(name: str, raw: str) -> tuple[int, ...]:
    """Comma-separated ports 1..65535 (at most 16, none twice); raises ValueError."""
    words = [w.strip() for w in raw.split(",") if w.strip()]
    ports = tuple(_int(1, 65535)(name, w) for w in words)
    if len(ports) > 16 or len(set(ports)) != len(ports):
        raise ValueError(f"invalid {name}: {raw!r} (at most 16 distinct ports)")
    return ports


def apply_query(base: Knobs, query: str, mode: str) -> Knobs | str:
    """Knobs for one request, or the text of a 400 naming the bad parameter."""
    changes = {}
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, raw = pair.partition("=")
        name = unquote_plus(name).strip().lower()
        parse = KNOB_PARSERS.get(name)
        if parse is None:
            if name in RUN_ONLY:
                return f"parameter {name} can only be set per run (BACKEND_{name.upper()})\n"
            continue
        if mode == "fin-delay" and name in FIN_DELAY_PINNED:
            return f"parameter {name} cannot be overridden in fin-delay mode\n"
        try:
            changes[name] = parse(name, unquote_plus(raw))
        except ValueError as exc:
            return f"{exc}\n"
    return replace(base, **changes) if changes else base


# --- request parsing -----------------------------------------------------------


class BadRequest(Exception):
    pass


class Request(NamedTuple):
    head: bool  # HEAD method: headers only
    path: bytes
    query: bytes
    http10: bool
    close: bool  # client asked to close (or HTTP/1.0 without keep-alive)
    request_id: bytes | None
    body_len: int  # Content-Length's; -1 with chunked (the length is in the chunks)
    expect_continue: bool
    connection: str  # the Connection header's tokens as by_header counts them ("none")


def connection_key(value: bytes | None) -> str:
    """A Connection header as ``by_header`` names it: "none" when absent, else its
    tokens (close, keep-alive, upgrade; anything else "other") sorted, joined by ","."""
    if value is None:
        return "none"
    tokens = {t for t in value.lower().replace(b"\t", b"").replace(b" ", b"").split(b",") if t}
    named = {t.decode() if t in CONNECTION_TOKENS else "other" for t in tokens}
    return ",".join(sorted(named)) or "none"


def parse_request(data: bytes, start: int, end: int) -> Request:
    """Parse request line and headers in data[start:end] (without the blank line)."""
    lines = data[start:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if version == b"HTTP/1.1":
        http10 = False
    elif version == b"HTTP/1.0":
        http10 = True
    else:
        raise BadRequest("unsupported HTTP version")
    if target[:1] != b"/":
        # Absolute form (proxies may send it): drop scheme and authority.
        if not target.startswith((b"http://", b"https://")):
            raise BadRequest("malformed request target")
        slash = target.find(b"/", target.find(b"//") + 2)
        target = target[slash:] if slash >= 0 else b"/"
    close = http10
    request_id = None
    body_len = -1
    expect_continue = False
    chunked = False
    connection: bytes | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        # Reject obs-fold and whitespace around names (request smuggling hygiene).
        if not sep or not name or name[0] in b" \t" or name[-1] in b" \t":
            raise BadRequest("malformed header")
        name = name.lower()
        if name == b"connection":
            connection = value if connection is None else connection + b"," + value
            tokens = value.lower().replace(b" ", b"").replace(b"\t", b"").split(b",")
            if b"close" in tokens:
                close = True
            elif http10 and b"keep-alive" in tokens:
                close = False
        elif name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (body_len >= 0 and int(value) != body_len):
                raise BadRequest("bad content-length")
            body_len = int(value)
        elif name == b"transfer-encoding":
            # Only "chunked", alone: any other coding, or chunked beside Content-Length,
            # is refused (RFC 9112 6.1 and 6.3: the request smuggling cases).
            if value.strip().lower() != b"chunked" or chunked:
                raise BadRequest("only Transfer-Encoding: chunked request bodies are supported")
            chunked = True
        elif name == b"x-request-id":
            request_id = value.strip()
        elif name == b"expect":
            expect_continue = value.strip().lower() == b"100-continue"
    path, _, query = target.partition(b"?")
    if chunked and body_len >= 0:
        raise BadRequest("both Transfer-Encoding and Content-Length")
    body_len = -1 if chunked else max(body_len, 0)
    return Request(
        method == b"HEAD", path, query, http10, close, request_id, body_len, expect_continue,
        connection_key(connection),
    )  # fmt: skip


# --- response templates ----------------------------------------------------------

_templates: dict[tuple[str, int, int, bytes, bool], tuple[bytes, bytes | None]] = {}


def encode_chunked(size: int, chunk_size: int) -> bytes:
    full, rest = divmod(size, chunk_size)
    parts = []
    if full:
        parts.append((b"%x\r\n" % chunk_size + FILLER[:chunk_size] + b"\r\n") * full)
    if rest:
        parts.append(b"%x\r\n" % rest + FILLER[:rest] + b"\r\n")
    parts.append(LAST_CHUNK)
    return b"".join(parts)


def template(
    framing: str, size: int, chunk_size: int, conn: bytes, head: bool
) -> tuple[bytes, bytes | None]:
    """Header prefix (ending in 'X-Backend-Conn: ') and prebuilt body.

    The body is None when it is too big to build in one piece; the caller then
    streams it. Cached because building headers per request costs throughput.
    """
    if framing != "chunked":
        chunk_size = 0  # irrelevant: keep it out of the cache key
    key = (framing, size, chunk_size, conn, head)
    cached = _templates.get(key)
    if cached is not None:
        return cached
    lines = [b"HTTP/1.1 200 OK", b"Content-Type: application/octet-stream"]
    body: bytes | None
    if framing == "content-length":
        lines.append(b"Content-Length: %d" % size)
        body = FILLER[:size] if size <= FAST_LIMIT else None
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        # Small chunks inflate the encoding (~6x for 1-byte chunks): bound the
        # encoded size, not the payload.
        encoded = size + (size // chunk_size + 1) * (len(b"%x" % chunk_size) + 4) + len(LAST_CHUNK)
        body = encode_chunked(size, chunk_size) if encoded <= FAST_LIMIT else None
    else:
        body = FILLER[:size] if size <= FAST_LIMIT else None
    if conn:
        lines.append(b"Connection: " + conn)
    lines.append(b"X-Backend-Conn: ")
    entry = (b"\r\n".join(lines), b"" if head else body)
    if len(_templates) >= TEMPLATE_CACHE_MAX:
        _templates.clear()
    _templates[key] = entry
    return entry


def simple_response(
    status: bytes, body: bytes, count: int, close: bool, keep_alive_hdr: bool
) -> bytes:
    """A small text/plain response (health, errors); not on the hot path."""
    if close:
        conn = b"Connection: close\r\n"
    else:
        conn = b"Connection: keep-alive\r\n" if keep_alive_hdr else b""
    return (
        b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
        b"%sX-Backend-Conn: %d\r\n\r\n%s" % (status, len(body), conn, count, body)
    )


# --- protocol -----------------------------------------------------------------------


class BackendProtocol(asyncio.Protocol):
    """One client connection: parse, answer in order, close as configured."""

    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.port = "?"  # the listening port it came in on (by_port's key)
        self.loop = loop
        self.fin_mode = cfg.mode == "fin-delay"
        self.transport: asyncio.Transport | None = None
        self.buf = b""  # unparsed input
        self.body_left = 0  # bytes of the current request body still to discard
        self.pending: Request | None = None  # request waiting for its body
        # Reading a chunked request body: "size" (a chunk-size line), "data" (body_left
        # bytes: the chunk and its CRLF), "trailer" (lines up to an empty one); else None.
        self.chunk_state: str | None = None
        self.count = 0  # requests seen on this connection
        self.busy = False  # a streamed/delayed response is being written
        self.closing = False  # no more responses: lingering or closed
        self.eof = False  # client sent FIN
        self.fin_due = False  # fin-delay timer expired
        self.write_paused = False
        self.read_block = 0
        self.drain_waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.idle_timeout = cfg.knobs.idle_timeout_ms / 1000.0
        self.fin_delay = cfg.knobs.fin_delay_ms / 1000.0
        self.idle_handle: asyncio.TimerHandle | None = None
        self.other_handle: asyncio.TimerHandle | None = None  # accept delay, fin delay, linger
        self.last_active = 0.0
        self.counted = True  # in TOTALS["connections"]: not the stack's own machinery

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sockname = transport.get_extra_info("sockname")
        self.port = str(sockname[1]) if sockname else "?"
        TOTALS["connections"] += 1
        if self.cfg.accept_delay_ms > 0:
            # Python 3.11 transports register their reader in a callback queued
            # right after connection_made, undoing a pause_reading() made here;
            # pausing from the next callback wins (and cancels any queued read).
            self.read_block |= READ_ACCEPT_DELAY
            self.loop.call_soon(transport.pause_reading)
            self.other_handle = self.loop.call_later(
                self.cfg.accept_delay_ms / 1000.0, self._accept_delay_done
            )
        else:
            self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering after our FIN: drain and drop
        if self.idle_timeout:
            self.last_active = self.loop.time()
        self.buf = self.buf + data if self.buf else data
        if not self.busy and not self.write_paused:
            self._process()
        elif len(self.buf) > MAX_INPUT:
            self._block_reading(READ_INPUT_FULL)

    def eof_received(self) -> bool:
        self.eof = True
        if self.closing:
            return False  # peer answered our FIN: let the transport close
        if self.fin_mode:
            if self.fin_delay > 0:
                self._fin_at = self.loop.time() + self.fin_delay
                self._fin_timer_step()
            else:
                self.fin_due = True
        self._maybe_close_after_eof()
        return True  # keep our side open until responses (and fin delay) are done

    def pause_writing(self) -> None:
        self.write_paused = True
        if not self.closing:  # while lingering, keep reading to see the peer's FIN
            self._block_reading(READ_BACKPRESSURE)

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        self._unblock_reading(READ_BACKPRESSURE)
        if not self.busy and not self.closing:
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        for handle in (self.idle_handle, self.other_handle):
            if handle is not None:
                handle.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.cancel()

    # -- request loop

    def _answer_pending(self) -> bool:
        """Answer the request whose body has just been read whole; False when it went
        async (as _answer)."""
        req = self.pending
        assert req is not None
        self.pending = None
        return self._answer(req)

    def _process(self) -> None:
        """Answer every complete buffered request, in order, until one goes async."""
        data = self.buf
        pos = 0
        end_all = len(data)
        try:
            while not self.closing:
                if self.chunk_state is not None:
                    done, pos = self._read_chunked(data, pos, end_all)
                    if not done or not self._answer_pending():
                        break
                    continue
                if self.body_left:
                    take = min(self.body_left, end_all - pos)
                    pos += take
                    self.body_left -= take
                    if self.body_left or not self._answer_pending():
                        break
                    continue
                while data.startswith(b"\r\n", pos):  # tolerated between requests
                    pos += 2
                if pos >= end_all:
                    break
                end = data.find(b"\r\n\r\n", pos, pos + MAX_HEAD)
                if end < 0:
                    if end_all - pos > MAX_HEAD:
                        raise BadRequest("request head too large")
                    break
                req = parse_request(data, pos, end)
                pos = end + 4
                if req.body_len < 0:
                    self.chunk_state = "size"
                    self.pending = req
                    TOTALS["by_body"]["chunked"] = TOTALS["by_body"].get("chunked", 0) + 1
                    if req.expect_continue:
                        self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    continue
                if req.body_len:
                    TOTALS["body_bytes"] += req.body_len
                    by_body = TOTALS["by_body"]
                    by_body["content-length"] = by_body.get("content-length", 0) + 1
                    self.body_left = req.body_len
                    self.pending = req
                    if req.expect_continue and end_all - pos < req.body_len:
                        self._write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits 1 s without
                    continue
                if not self._answer(req):
                    break
        except BadRequest as exc:
            self.count += 1
            self._write(
                simple_response(b"400 Bad Request", f"{exc}\n".encode(), self.count, True, False)
            )
            self._close_gracefully()
            return
        self.buf = data[pos:] if pos < end_all else b""
        if self.busy or self.closing:
            return
        if self.read_block & READ_INPUT_FULL and len(self.buf) <= MAX_INPUT:
            self._unblock_reading(READ_INPUT_FULL)
        if self.eof:
            self._maybe_close_after_eof()
        elif self.idle_handle is None and self.idle_timeout:
            self._arm_idle()

    def _read_chunked(self, data: bytes, pos: int, end: int) -> tuple[bool, int]:
        """Consume a chunked request body from data[pos:end] (RFC 9112 7.1): (True, pos
        after it) once its last chunk and trailers are read, else (False, where to go on
        from when more input comes). Raises BadRequest for a malformed chunk."""
        while True:
            if self.chunk_state == "data":
                take = min(self.body_left, end - pos)
                pos += take
                self.body_left -= take
                if self.body_left:
                    return False, pos
                if data[pos - 2 : pos] != b"\r\n" and take >= 2:
                    raise BadRequest("chunk data not followed by CRLF")
                self.chunk_state = "size"
                continue
            eol = data.find(b"\r\n", pos, end)
            if eol < 0:
                if end - pos > MAX_CHUNK_LINE:
                    raise BadRequest("chunk line too long")
                return False, pos
            line, pos = data[pos:eol], eol + 2
            if self.chunk_state == "trailer":
                if not line:  # the empty line that ends the body
                    self.chunk_state = None
                    return True, pos
                continue
            digits = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
            if not digits or len(digits) > 15 or digits.strip(b"0123456789abcdefABCDEF"):
                raise BadRequest("bad chunk size")
            size = int(digits, 16)
            if size == 0:
                self.chunk_state = "trailer"
                continue
            TOTALS["body_bytes"] += size
            self.body_left = size + 2  # and its CRLF
            self.chunk_state = "data"

    def _answer(self, req: Request) -> bool:
        """Respond to one request. True if the caller may go on to the next one."""
        self.count += 1
        knobs = self.cfg.knobs
        if req.query:
            result = apply_query(knobs, req.query.decode("latin-1"), self.cfg.mode)
            if isinstance(result, str):
                close = req.close or not knobs.keepalive
                self._write(
                    simple_response(
                        b"400 Bad Request", result.encode(), self.count, close, req.http10
                    )
                )
                return self._after_response(close)
            knobs = result
            self._set_connection_knobs(knobs)
        elif (
            self.idle_timeout != knobs.idle_timeout_ms / 1000.0
            or self.fin_delay != knobs.fin_delay_ms / 1000.0
        ):
            self._set_connection_knobs(knobs)  # back to defaults after an override

        close = req.close or not knobs.keepalive or (0 < knobs.max_requests <= self.count)
        if req.path in MACHINERY:
            # The health check's and the stats query's own connections are not traffic:
            # a health check every second showed as "backend conn/s 3.3" in keep-alive
            # cells. They open a connection for this request alone.
            if self.counted and self.count == 1:
                TOTALS["connections"] -= 1
                self.counted = False
        else:
            TOTALS["requests"] += 1
            key = f"{req.connection} {'reused' if self.count > 1 else 'new'}"
            TOTALS["by_header"][key] = TOTALS["by_header"].get(key, 0) + 1
            TOTALS["by_port"][self.port] = TOTALS["by_port"].get(self.port, 0) + 1
        if req.path == b"/health":
            self._write(simple_response(b"200 OK", b"ok", self.count, close, req.http10))
            return self._after_response(close)
        if req.path == b"/_stats":
            body = json.dumps(TOTALS).encode()
            self._write(simple_response(b"200 OK", body, self.count, close, req.http10))
            return self._after_response(close)

        framing = knobs.framing
        if framing == "chunked" and req.http10:
            framing = "close"  # HTTP/1.0 clients cannot parse chunked
        if framing == "close":
            close = True
        conn = b"close" if close else b"keep-alive" if req.http10 else b""
        prefix, body = template(framing, knobs.size, knobs.chunk_size, conn, req.head)
        rid = b"X-Request-Id: " + req.request_id + b"\r\n" if req.request_id is not None else b""
        paced = framing == "chunked" and knobs.chunk_pause_ms > 0 and not req.head
        if body is not None and not paced and knobs.delay_ms <= 0 and not self.write_paused:
            # Fast path: one formatted write, no task, no timer.
            self._write(b"%s%d\r\n%s\r\n%s" % (prefix, self.count, rid, body))
            return self._after_response(close)
        head = b"%s%d\r\n%s\r\n" % (prefix, self.count, rid)
        self.busy = True
        self.task = self.loop.create_task(
            self._respond_slow(head, framing, knobs, req.head, close, body)
        )
        return False

    def _after_response(self, close: bool) -> bool:
        if close:
            self._close_gracefully()
            return False
        return not self.write_paused

    async def _respond_slow(
        self,
        head: bytes,
        framing: str,
        knobs: Knobs,
        head_only: bool,
        close: bool,
        body: bytes | None,
    ) -> None:
        if knobs.delay_ms > 0:
            await asyncio.sleep(knobs.delay_ms / 1000.0)
        await self._drain()
        self._write(head)
        if not head_only:
            if framing != "chunked":
                await self._write_filler(knobs.size)
            elif knobs.chunk_pause_ms > 0:
                await self._write_chunks_paced(
                    knobs.size, knobs.chunk_size, knobs.chunk_pause_ms / 1000.0
                )
            elif body is not None:
                await self._drain()
                self._write(body)
            else:
                await self._write_chunks_bulk(knobs.size, knobs.chunk_size)
        self.busy = False
        self.task = None
        if close:
            self._close_gracefully()
            return
        if self.idle_timeout:
            self.last_active = self.loop.time()
        self._process()

    async def _drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        while self.write_paused:
            waiter = self.drain_waiter
            if waiter is None:
                waiter = self.drain_waiter = self.loop.create_future()
            await waiter

    async def _write_filler(self, size: int) -> None:
        while size > 0:
            n = min(size, PIECE)
            await self._drain()
            self._write(FILLER_VIEW[:n])
            size -= n

    async def _write_chunks_paced(self, size: int, chunk_size: int, pause: float) -> None:
        """One chunk per pause. A chunk up to PIECE bytes goes out in one write, so one
        segment: written as size line, data and CRLF, the three could leave as three
        segments (TCP_NODELAY), and a proxy reading between them would see a partial
        chunk, at moments that depend on the machine's load."""
        first = True
        while size > 0:
            if not first:
                await asyncio.sleep(pause)
            first = False
            n = min(size, chunk_size)
            await self._drain()
            if n <= PIECE:
                self._write(b"%x\r\n%s\r\n" % (n, FILLER_VIEW[:n]))
            else:
                self._write(b"%x\r\n" % n)
                await self._write_filler(n)
                self._write(b"\r\n")
            size -= n
        await self._drain()
        self._write(LAST_CHUNK)

    async def _write_chunks_bulk(self, size: int, chunk_size: int) -> None:
        """Chunked without pauses: as fast as the reader takes it, in ~PIECE writes."""
        full, rest = divmod(size, chunk_size)
        if chunk_size <= PIECE:
            one = b"%x\r\n" % chunk_size + FILLER[:chunk_size] + b"\r\n"
            per_write = max(1, PIECE // len(one))
            group = one * per_write
            while full >= per_write:
                await self._drain()
                self._write(group)
                full -= per_write
            if full:
                await self._drain()
                self._write(one * full)
        else:
            for _ in range(full):
                await self._drain()
                self._write(b"%x\r\n" % chunk_size)
                await self._write_filler(chunk_size)
                self._write(b"\r\n")
        if rest:
            await self._drain()
            self._write(b"%x\r\n" % rest)
            await self._write_filler(rest)
            self._write(b"\r\n")
        await self._drain()
        self._write(LAST_CHUNK)

    # -- connection management

    def _write(self, data: bytes | memoryview) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _set_connection_knobs(self, knobs: Knobs) -> None:
        idle = knobs.idle_timeout_ms / 1000.0
        if idle != self.idle_timeout:
            self.idle_timeout = idle
            if self.idle_handle is not None:
                self.idle_handle.cancel()
                self.idle_handle = None
        self.fin_delay = knobs.fin_delay_ms / 1000.0

    def _block_reading(self, reason: int) -> None:
        if not self.read_block and self.transport is not None and not self.eof:
            self.transport.pause_reading()
        self.read_block |= reason

    def _unblock_reading(self, reason: int) -> None:
        if not self.read_block & reason:
            return
        self.read_block &= ~reason
        if (
            not self.read_block
            and self.transport is not None
            and not self.transport.is_closing()
            and not self.eof
        ):
            self.transport.resume_reading()

    def _accept_delay_done(self) -> None:
        self.other_handle = None
        self._unblock_reading(READ_ACCEPT_DELAY)
        self._arm_idle()

    def _arm_idle(self) -> None:
        if self.idle_timeout and self.idle_handle is None and not self.closing:
            self.last_active = self.loop.time()
            self.idle_handle = self.loop.call_later(self.idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        # One timer per idle period: activity only moves last_active, and the
        # timer re-arms itself for the remainder instead of being rescheduled
        # on every request.
        self.idle_handle = None
        if self.closing or self.busy or self.write_paused or not self.idle_timeout:
            return  # re-armed when the response in flight is done
        remaining = self.last_active + self.idle_timeout - self.loop.time()
        if remaining > 0.0005:
            self.idle_handle = self.loop.call_later(remaining, self._idle_check)
            return
        self._close_gracefully()

    def _fin_timer_step(self) -> None:
        """Wait until _fin_at in steps: Linux lets an epoll timeout run late by 0.1 % of
        its length (5 ms on 5 s) and Python rounds it up to the millisecond, so long
        waits end with a short one, and the last ~2 ms are spun: the truth a calibration
        is measured against must be exact."""
        remaining = self._fin_at - self.loop.time()
        if remaining > FIN_TIMER_EXACT_S:
            step = remaining - max(FIN_TIMER_EXACT_S / 2, remaining * 0.002)
            self.other_handle = self.loop.call_later(step, self._fin_timer_step)
        elif remaining > FIN_TIMER_SPIN_S:
            self.other_handle = self.loop.call_later(
                remaining - FIN_TIMER_SPIN_S, self._fin_timer_step
            )
        else:
            while self.loop.time() < self._fin_at:
                pass  # at most FIN_TIMER_SPIN_S (+ one late wake-up) of busy waiting
            self._fin_timer()

    def _fin_timer(self) -> None:
        self.other_handle = None
        self.fin_due = True
        self._maybe_close_after_eof()

    def _maybe_close_after_eof(self) -> None:
        """After the client's FIN: close once nothing is left to answer."""
        if self.closing or self.busy or self.write_paused:
            return  # resumed from the end of the response / resume_writing
        if self.fin_mode and not self.fin_due:
            return  # _fin_timer will call back
        self.closing = True
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        assert self.transport is not None
        self.transport.close()  # flushes pending output, then FIN

    def _close_gracefully(self) -> None:
        """Server-initiated close: FIN after the output, then drain the peer."""
        if self.closing:
            return
        self.closing = True
        self.buf = b""
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        transport = self.transport
        assert transport is not None
        if self.eof or not transport.can_write_eof():
            transport.close()
            return
        # Half-close rather than close so that late pipelined input is read and
        # dropped instead of making the kernel answer with RST, which could
        # destroy the response in flight at the peer.
        transport.write_eof()
        self._unblock_reading(READ_INPUT_FULL | READ_BACKPRESSURE)
        if self.other_handle is not None:
            self.other_handle.cancel()
        self.other_handle = self.loop.call_later(LINGER_S, transport.close)


# --- main -------------------------------------------------------------------------------


def describe(cfg: Config, port: int) -> str:
    k = cfg.knobs
    return (
        f"backend listening on {cfg.host}:{port} mode={cfg.mode} backlog={cfg.backlog} "
        f"size={k.size} framing={k.framing} chunk_size={k.chunk_size} "
        f"chunk_pause_ms={k.chunk_pause_ms:g} delay_ms={k.delay_ms:g} "
        f"keepalive={'on' if k.keepalive else 'off'} idle_timeout_ms={k.idle_timeout_ms:g} "
        f"max_requests={k.max_requests} accept_delay_ms={cfg.accept_delay_ms:g} "
        f"fin_delay_ms={k.fin_delay_ms:g} "
        f"extra_ports={','.join(map(str, cfg.extra_ports)) or '-'}"
    )


async def serve(cfg: Config) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: BackendProtocol(cfg, loop),
        host=cfg.host,
        port=cfg.port,
        backlog=cfg.backlog,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    # One listener per server of a multi-server backend: same behaviour, own port.
    extra = [
        await loop.create_server(
            lambda: BackendProtocol(cfg, loop),
            host=cfg.host,
            port=p,
            backlog=cfg.backlog,
            reuse_address=True,
        )
        for p in cfg.extra_ports
    ]
    if cfg.blackhole_port:
        # Listening but never accepting: once its queue is full, SYNs go unanswered.
        blackhole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blackhole.bind((cfg.host, cfg.blackhole_port))
        blackhole.listen(1)
    print(describe(cfg, port), flush=True)
    stop: asyncio.Future[None] = loop.create_future()
    # As PID 1 in a container, default SIGTERM handling would be ignored.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop
    for other in extra:
        other.close()


def main() -> int:
    try:
        cfg = load_config(os.environ)
    except ValueError as exc:
        print(f"backend: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
