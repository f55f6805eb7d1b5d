"""HAProxy access logs: the parser of the log format the harness configures, and a summary.

The harness renders haproxy.cfg with ``log stdout format raw local0`` and
``log-format`` set to ``harness.plan.log_format.HTTP_LOG_FORMAT`` (``TCP_LOG_FORMAT`` for
``mode tcp``, the manual's tcplog format). The parser's regexes
are built from the same tables (``FIELDS``, ``TCP_FIELDS``), so the template and the
parser cannot drift apart. The table is the plan's: the stack writes the format and
the analysis reads it, and both may import the plan, not each other.

Every variable used is in the "Custom log format" table of HAProxy's
doc/configuration.txt for 1.8 (section 8.2.4) and 2.5 (8.2.5), hence in 2.2, and in 2.8
(8.2.6). The termination-state wording is HAProxy's own, shortened, from section 8.5
"Session state at disconnection" of the 2.5 manual (unchanged in 2.8).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

from harness.analyse.distribution import nearest_rank
from harness.plan.log_format import FIELDS, TCP_FIELDS

_LINE = re.compile(" ".join(pattern for _, pattern in FIELDS))
_TCP_LINE = re.compile(" ".join(pattern for _, pattern in TCP_FIELDS))


class LogEntry(NamedTuple):
    """One access-log line. Timers are in ms and -1 when the event never happened.

    A NamedTuple, not a frozen dataclass: as immutable, and built ~6x faster (a frozen
    dataclass sets each of its 25 fields through object.__setattr__)."""

    client_ip: str
    client_port: int
    accept_date: str  # %tr as printed: the date the HTTP request started
    frontend: str
    backend: str
    server: str  # "<NOSRV>" when the request never reached a server
    tr: int  # TR: time to receive the full request headers
    tw: int  # Tw: time waiting in queues
    tc: int  # Tc: time to establish the TCP connection to the server
    tresp: int  # Tr: server response time (until complete response headers)
    ta: int  # Ta: total active time of the request; Tt (the whole session) in TCP lines
    status: int  # -1 when no status was set
    bytes_read: int  # bytes sent from server to client
    termination_state: str  # 4 characters, see explain()
    actconn: int
    feconn: int
    beconn: int
    srv_conn: int
    retries: int
    redispatched: bool  # %rc had a '+': the retries count is not the logged server's
    srv_queue: int
    backend_queue: int
    unique_id: str | None
    request: str  # the request line without its quotes
    logasap: bool  # Ta and bytes_read were '+'-prefixed: logged before the data phase


def parse_line(line: str) -> LogEntry | None:
    """Parse one access-log line, HTTP or TCP format; None for anything else (startup
    notices, warnings...). A TCP line (section 8.2.2) has no request, status or HTTP
    timers: ``tr`` and ``tresp`` are -1, ``status`` -1, ``ta`` is Tt (the whole session),
    ``request`` empty, and ``termination_state`` its two characters."""
    m = _LINE.fullmatch(line.strip())
    if m is None:
        return _parse_tcp(line)
    (client_ip, client_port, accept_date, frontend, backend, server, tr, tw, tc, tresp, ta,
     ta_plus, status, bytes_read, bytes_plus, termination_state, actconn, feconn, beconn,
     srv_conn, retries, redispatched, srv_queue, backend_queue, unique_id, request,
     ) = m.group(*_GROUPS)  # fmt: skip
    # Positional, in the field order: one call per line, not one per field (a run's
    # logs have ~10^5-10^6 lines and this is most of their analysis).
    return LogEntry(
        client_ip, int(client_port), accept_date, frontend, backend, server,
        int(tr), int(tw), int(tc), int(tresp), int(ta),
        -1 if status == "-" else int(status), int(bytes_read), termination_state,
        int(actconn), int(feconn), int(beconn), int(srv_conn), int(retries),
        redispatched == "+", int(srv_queue), int(backend_queue),
        None if unique_id == "-" else unique_id, request,
        ta_plus == "+" or bytes_plus == "+",
    )  # fmt: skip


def _parse_tcp(line: str) -> LogEntry | None:
    m = _TCP_LINE.fullmatch(line.strip())
    if m is None:
        return None
    (client_ip, client_port, accept_date, frontend, backend, server, tw, tc, ta_plus, ta,
     bytes_read, bytes_plus, termination_state, actconn, feconn, beconn, srv_conn, retries,
     redispatched, srv_queue, backend_queue) = m.group(*_TCP_GROUPS)  # fmt: skip
    return LogEntry(
        client_ip, int(client_port), accept_date, frontend, backend, server,
        -1, int(tw), int(tc), -1, int(ta), -1, int(bytes_read), termination_state,
        int(actconn), int(feconn), int(beconn), int(srv_conn), int(retries),
        redispatched == "+", int(srv_queue), int(backend_queue), None, "",
        ta_plus == "+" or bytes_plus == "+",
    )  # fmt: skip


_TCP_GROUPS = (
    "client_ip", "client_port", "accept_date", "frontend", "backend", "server", "tw", "tc",
    "ta_plus", "ta", "bytes_read", "bytes_plus", "termination_state", "actconn", "feconn",
    "beconn", "srv_conn", "retries", "redispatched", "srv_queue", "backend_queue",
)  # fmt: skip

_GROUPS = (
    "client_ip", "client_port", "accept_date", "frontend", "backend", "server", "tr", "tw",
    "tc", "tresp", "ta", "ta_plus", "status", "bytes_read", "bytes_plus",
    "termination_state", "actconn", "feconn", "beconn", "srv_conn", "retries",
    "redispatched", "srv_queue", "backend_queue", "unique_id", "request",
)  # fmt: skip


def parse_log(lines: Iterable[str]) -> tuple[list[LogEntry], list[str]]:
    """Parse many lines: the entries, and the non-empty lines that were not access logs."""
    entries: list[LogEntry] = []
    unparsed: list[str] = []
    for line in lines:
        entry = parse_line(line)
        if entry is not None:
            entries.append(entry)
        elif line.strip():
            # Kept so the caller can report them: a changed format would show up here.
            unparsed.append(line.rstrip("\r\n"))
    return entries, unparsed


# --- Termination state (doc/configuration.txt, 8.5 "Session state at disconnection") ---

FIRST_CHAR: dict[str, str] = {
    "C": "the TCP session was unexpectedly aborted by the client",
    "S": "the TCP session was unexpectedly aborted by the server, or the server "
    "explicitly refused it",
    "P": "the session was prematurely aborted by the proxy (connection limit enforcement, "
    "a DENY filter matched, or a security check blocked a dangerous server response)",
    "L": "the session was locally processed by HAProxy and not passed to a server "
    "(e.g. stats and redirects)",
    "R": "a resource on the proxy has been exhausted (memory, sockets, source ports, ...): "
    "a very serious anomaly, system logs should hold the precise error",
    "I": "an internal error was identified by the proxy during a self-check "
    "(should never happen: almost certainly a bug)",
    "D": "the session was killed by HAProxy because the server was detected as down and "
    "was configured to kill all connections when going down",
    "U": "the session was killed by HAProxy on this backup server because an active server "
    "was detected as up and was configured to kill all backup connections when going up",
    "K": "the session was actively killed by an admin operating on HAProxy",
    "c": "the client-side timeout expired while waiting for the client to send or receive data",
    "s": "the server-side timeout expired while waiting for the server to send or receive data",
    "-": "normal session completion, both the client and the server closed with nothing "
    "left in the buffers",
}
"""First character: the first event which caused the session to terminate."""

SECOND_CHAR: dict[str, str] = {
    "R": "the proxy was waiting for a complete, valid REQUEST from the client "
    "(HTTP only); nothing was sent to any server",
    "Q": "the proxy was waiting in the QUEUE for a connection slot (servers with maxconn, "
    "or the global queue after a redispatch); without a redispatch, no connection "
    "attempt was made to any server",
    "C": "the proxy was waiting for the CONNECTION to establish on the server; the server "
    "might at most have noticed a connection attempt",
    "H": "the proxy was waiting for complete, valid response HEADERS from the server (HTTP only)",
    "D": "the session was in the DATA phase",
    "L": "the proxy was still transmitting LAST data to the client while the server had "
    "already finished",
    "T": 'the request was tarpitted: held open with the client for the whole "timeout '
    'tarpit" or until the client closed (reported in Tw)',
    "-": "normal session completion after end of data transfer",
}
"""Second character: the TCP or HTTP session state when it was closed."""

THIRD_CHAR: dict[str, str] = {
    "N": "the client provided no cookie",
    "I": "the client provided an invalid cookie matching no known server",
    "D": "the client's cookie designated a server which was down",
    "V": "the client provided a valid cookie and was sent to its server",
    "E": "the client's cookie had expired (maxidle) and was ignored",
    "O": "the client's cookie was too old (maxlife) and was ignored",
    "U": "the client's cookie was not used (another mechanism, e.g. use-server, chose)",
    "-": "does not apply (no cookie set in configuration)",
}
"""Third character: the persistence cookie provided by the client (HTTP only)."""

FOURTH_CHAR: dict[str, str] = {
    "N": "no cookie was provided by the server, and none was inserted",
    "I": "the proxy inserted a cookie",
    "U": "the proxy updated the last date in the client's cookie (insert mode, maxidle)",
    "P": "the server provided a cookie, transmitted as-is",
    "R": "the proxy rewrote the server's cookie",
    "D": "the proxy deleted the server's cookie",
    "-": "does not apply (no cookie set in configuration)",
}
"""Fourth character: what was done with the persistence cookie returned by the server."""

COMMON_PAIRS: dict[str, str] = {
    "CC": "the client aborted before the connection to the server could be established",
    "CD": "the client unexpectedly aborted during data transfer",
    "cD": 'the client did not send nor acknowledge any data for as long as "timeout client"',
    "CH": "the client aborted while waiting for the server to start responding",
    "cH": '"timeout client" stroke while waiting for client data (e.g. during a POST)',
    "CQ": "the client aborted while its session was queued, waiting for a server slot",
    "CR": "the client aborted before sending a full HTTP request (status likely 400)",
    "cR": '"timeout http-request" stroke before the client sent a full HTTP request '
    "(status likely 408)",
    "CT": "the client aborted while its session was tarpitted",
    "LR": "the request was intercepted and locally handled by HAProxy (redirect, stats)",
    "SC": "the server or an equipment in between explicitly refused the TCP connection "
    "(RST or ICMP), or the server is unreachable (status likely 502 or 503)",
    "sC": '"timeout connect" stroke before a connection to the server could complete '
    "(status likely 503 or 504)",
    "SD": "the connection to the server died with an error during the data transfer "
    "(RST from the server or ICMP from an intermediate equipment)",
    "sD": 'the server did not send nor acknowledge any data for as long as "timeout server" '
    "during the data phase",
    "SH": "the server aborted before sending its full HTTP response headers, or crashed",
    "sH": '"timeout server" stroke before the server could return its response headers',
    "sQ": 'the session spent too much time in queue and expired ("timeout queue")',
    "PC": "the proxy refused to connect to the server: the process's socket limit was reached",
    "PD": "the proxy blocked an incorrectly formatted chunked message after the server "
    "emitted its headers",
    "PH": "the proxy blocked the server's response (invalid, incomplete, dangerous or "
    "matching a security filter): 502 sent to the client",
    "PR": "the proxy blocked the client's request (invalid syntax: 400, or a deny rule: 403)",
    "PT": "the proxy blocked and tarpitted the client's request before returning a 500",
    "RC": "a local resource was exhausted (memory, sockets, source ports), preventing the "
    "connection to the server",
}
"""The manual's "most common termination flags combinations" of the first two characters."""


def explain(state: str) -> str:
    """Explain a termination state in HAProxy's documented words; never raises.

    Composed from the first two characters (plus the manual's note on that pair when it
    has one) and the cookie characters when they are not "-".
    """
    if not state:
        return "'': unknown (empty termination state)"
    # A 2-character TCP-mode state has no cookie flags: treat them as "-".
    first, second, client_cookie, server_cookie = (state + "---")[:4]
    parts = [
        FIRST_CHAR.get(first, f"unknown first character {first!r}"),
        "Session state: " + SECOND_CHAR.get(second, f"unknown second character {second!r}"),
    ]
    if first + second in COMMON_PAIRS:
        parts.append("Typically: " + COMMON_PAIRS[first + second])
    # Cookie flags are "-" unless persistence cookies are configured: say nothing then.
    if client_cookie != "-":
        desc = THIRD_CHAR.get(client_cookie, f"unknown third character {client_cookie!r}")
        parts.append("Client cookie: " + desc)
    if server_cookie != "-":
        desc = FOURTH_CHAR.get(server_cookie, f"unknown fourth character {server_cookie!r}")
        parts.append("Server cookie: " + desc)
    return f"{state}: " + ". ".join(parts) + "."


# --- Summaries ---


def _percentiles(values: list[int]) -> dict[str, int | None]:
    """p50/p90/p99/max by nearest rank: always an observed value, no interpolation."""
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    ranks = {f"p{p}": nearest_rank(ordered, p / 100) for p in (50, 90, 99)}
    return {"count": len(ordered), **ranks, "max": ordered[-1]}


def _status_class(status: int) -> str:
    if status < 0:
        return "none"
    if 100 <= status <= 599:
        return f"{status // 100}xx"
    return "other"


def summarise(entries: Iterable[LogEntry]) -> dict[str, Any]:
    """Counts and timer percentiles; JSON-serialisable (all keys are strings)."""
    entries = list(entries)
    states = Counter(e.termination_state for e in entries)
    statuses = Counter(e.status for e in entries)
    # Every class present, even at 0, so reports compare runs key by key.
    classes: dict[str, int] = dict.fromkeys(("1xx", "2xx", "3xx", "4xx", "5xx", "none"), 0)
    for e in entries:
        cls = _status_class(e.status)
        classes[cls] = classes.get(cls, 0) + 1
    # Requests per server the log names (the one that answered, after any redispatch;
    # "<NOSRV>" when none was chosen), by status class.
    servers: dict[str, Counter[str]] = {}
    for e in entries:
        servers.setdefault(e.server, Counter())[_status_class(e.status)] += 1
    return {
        "total": len(entries),
        "termination_states": {
            k: v for k, v in sorted(states.items(), key=lambda kv: (-kv[1], kv[0]))
        },
        "status_codes": {str(k): statuses[k] for k in sorted(statuses)},
        "status_classes": classes,
        "retries_total": sum(max(e.retries, 0) for e in entries),
        "redispatches": sum(e.redispatched for e in entries),
        "servers": {name: dict(sorted(c.items())) for name, c in sorted(servers.items())},
        # The most at once any line saw: connections (process, frontend, backend, server)
        # and queued requests (the server's, the backend's): %ac %fc %bc %sc %sq %bq.
        "peaks": {
            key: max((getattr(e, key) for e in entries), default=0)
            for key in ("actconn", "feconn", "beconn", "srv_conn", "srv_queue", "backend_queue")
        },
        # -1 means "never happened": excluded rather than counted as 0 ms.
        "timers": {
            "Tw": _percentiles([e.tw for e in entries if e.tw >= 0]),
            "Tc": _percentiles([e.tc for e in entries if e.tc >= 0]),
            "Tr": _percentiles([e.tresp for e in entries if e.tresp >= 0]),
            "Ta": _percentiles([e.ta for e in entries if e.ta >= 0]),
        },
    }


def index_by_id(entries: Iterable[LogEntry]) -> dict[str, LogEntry]:
    """Entries by unique id, skipping those without one; the first of a duplicate id wins."""
    index: dict[str, LogEntry] = {}
    for e in entries:
        if e.unique_id is not None:
            index.setdefault(e.unique_id, e)
    return index


def find_by_id(entries: Iterable[LogEntry], unique_id: str) -> LogEntry | None:
    """The first entry with this unique id, or None."""
    return next((e for e in entries if e.unique_id == unique_id), None)
