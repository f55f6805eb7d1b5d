"""The HAProxy access-log format the harness configures, one table for both sides.

Each entry is a log-format token and a regex for what HAProxy prints for it. The stack
renders ``log-format`` from the tokens (``HTTP_LOG_FORMAT``, in haproxy.cfg) and the
analysis parses the lines with the regexes (``harness.analyse.haproxy_log``): one table,
so the two cannot drift apart. It lives in the plan because what a cell records is
decided before it runs, and both the stack and the analysis may import the plan.

Every variable used is in the "Custom log format" table of HAProxy's
doc/configuration.txt for 1.8 (section 8.2.4) and 2.5 (8.2.5), hence in 2.2, and in 2.8
(8.2.6).
"""

from __future__ import annotations

# (log-format token, regex for what HAProxy prints for it), in line order. One entry per
# space-separated field: HAProxy merges separators, so fields are split by one space.
FIELDS: tuple[tuple[str, str], ...] = (
    # IPv6 addresses are printed without brackets: the port is after the *last* colon.
    ("%ci:%cp", r"(?P<client_ip>\S+):(?P<client_port>\d+)"),
    # %tr: date of the HTTP request, e.g. 24/Nov/2026:21:30:28.123.
    ("[%tr]", r"\[(?P<accept_date>\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})\]"),
    # %ft: frontend name, with a '~' suffix on SSL listeners.
    ("%ft", r"(?P<frontend>\S+)"),
    # Proxy names cannot contain '/'; the server is "<NOSRV>" when none was chosen.
    ("%b/%s", r"(?P<backend>[^/\s]+)/(?P<server>\S+)"),
    # Timers are -1 when the event never happened; "option logasap" prefixes Ta with '+'.
    (
        "%TR/%Tw/%Tc/%Tr/%Ta",
        r"(?P<tr>-?\d+)/(?P<tw>-?\d+)/(?P<tc>-?\d+)/(?P<tresp>-?\d+)/(?P<ta_plus>\+?)(?P<ta>-?\d+)",
    ),
    ("%ST", r"(?P<status>-?\d+|-)"),
    # logasap also prefixes the byte count with '+' (only headers were counted).
    ("%B", r"(?P<bytes_plus>\+?)(?P<bytes_read>\d+)"),
    ("%tsc", r"(?P<termination_state>[A-Za-z-]{4})"),
    # '+' before the retries: the session was redispatched to another server.
    (
        "%ac/%fc/%bc/%sc/%rc",
        r"(?P<actconn>\d+)/(?P<feconn>\d+)/(?P<beconn>\d+)/(?P<srv_conn>\d+)"
        r"/(?P<redispatched>\+?)(?P<retries>-?\d+)",
    ),
    ("%sq/%bq", r"(?P<srv_queue>\d+)/(?P<backend_queue>\d+)"),
    # The unique id (unique-id-format %[uuid()]); "-" when none was generated.
    ("%ID", r"(?P<unique_id>\S+)"),
    # Always last and quoted: it may hold spaces, or be "<BADREQ>" or empty. HAProxy
    # encodes '"' inside it as #22, so the closing quote is the line's last character.
    ("%{+Q}r", r'"(?P<request>.*)"'),
)

HTTP_LOG_FORMAT = " ".join(token for token, _ in FIELDS)
"""The ``log-format`` string for haproxy.cfg (quote it there: it contains spaces)."""

# mode tcp: HAProxy's own TCP log format ("option tcplog"), spelled out as the manual
# gives it (section 8.2.2 "TCP log format", 2.2 to 3.0). No request, status or HTTP
# timers: Tt is the whole session, and %ts has the two characters of the termination
# state (no cookie characters).
TCP_FIELDS: tuple[tuple[str, str], ...] = (
    FIELDS[0],
    # %t: the accept date, printed like %tr.
    ("[%t]", FIELDS[1][1]),
    FIELDS[2],
    FIELDS[3],
    ("%Tw/%Tc/%Tt", r"(?P<tw>-?\d+)/(?P<tc>-?\d+)/(?P<ta_plus>\+?)(?P<ta>-?\d+)"),
    FIELDS[6],
    ("%ts", r"(?P<termination_state>[A-Za-z-]{2})"),
    FIELDS[8],
    FIELDS[9],
)

TCP_LOG_FORMAT = " ".join(token for token, _ in TCP_FIELDS)
"""The ``log-format`` string of a ``mode tcp`` cell (section 8.2.2's tcplog format)."""

LOG_FORMATS = {"http": HTTP_LOG_FORMAT, "tcp": TCP_LOG_FORMAT}
"""HAProxy's proxy mode (``mode http`` / ``mode tcp``) -> the log-format rendered for it."""
