"""The HAProxy access-log parser, termination-state explanations and summaries."""

import json

import pytest

from harness.analyse import haproxy_log as hl
from harness.analyse.haproxy_log import (
    LogEntry,
    explain,
    find_by_id,
    index_by_id,
    parse_line,
    parse_log,
    summarise,
)
from harness.plan.log_format import FIELDS, HTTP_LOG_FORMAT, TCP_FIELDS, TCP_LOG_FORMAT

UUID_OK = "0b6c3f9e-5d1a-4c3e-9d1e-2f3a4b5c6d7e"
UUID_CONNECT_TIMEOUT = "7d1e2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"
UUID_REDISPATCH = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
UUID_REFUSED = "11111111-2222-4333-8444-555555555555"
UUID_CLIENT_TIMEOUT = "99999999-8888-4777-8666-555555555555"

# What HAProxy writes with HTTP_LOG_FORMAT and "log stdout format raw".
OK = (
    f"172.18.0.5:41234 [24/Nov/2026:21:30:28.123] fe be/s1 0/0/1/3/4 200 1234 ---- "
    f'2/2/1/1/0 0/0 {UUID_OK} "GET /ping HTTP/1.1"'
)
# timeout connect 3s, retries 3: four attempts, no connection, 503.
CONNECT_TIMEOUT = (
    f"172.18.0.5:41236 [24/Nov/2026:21:30:29.001] fe be/s1 0/0/-1/-1/12011 503 217 sC-- "
    f'1/1/0/0/3 0/0 {UUID_CONNECT_TIMEOUT} "GET /slow?x=1 HTTP/1.1"'
)
REDISPATCH = (
    f"172.18.0.5:41238 [24/Nov/2026:21:30:30.250] fe be/s2 0/0/2/5/3012 200 1234 ---- "
    f'1/1/1/1/+3 0/0 {UUID_REDISPATCH} "GET /ping HTTP/1.1"'
)
REFUSED = (
    f"172.18.0.5:41239 [24/Nov/2026:21:30:30.900] fe be/s1 0/0/-1/-1/4 503 217 SC-- "
    f'1/1/0/0/3 0/0 {UUID_REFUSED} "GET /ping HTTP/1.1"'
)
CLIENT_TIMEOUT = (
    f"172.18.0.5:41241 [24/Nov/2026:21:30:31.000] fe be/s1 0/0/1/2/30003 200 65536 cD-- "
    f'1/1/1/1/0 0/0 {UUID_CLIENT_TIMEOUT} "GET /big HTTP/1.1"'
)
# A bad request never gets a unique id: %ID prints "-".
BADREQ = (
    "172.18.0.5:41240 [24/Nov/2026:21:30:31.500] fe fe/<NOSRV> -1/-1/-1/-1/0 400 0 PR-- "
    '1/1/0/0/0 0/0 - "<BADREQ>"'
)
STARTUP = [
    "[NOTICE]   (1) : haproxy version is 2.6.12-1+deb12u1",
    "[NOTICE]   (1) : path to executable is /usr/sbin/haproxy",
    "[WARNING]  (1) : config : missing timeouts for frontend 'fe'.",
    "[NOTICE] 327/213028 (1) : New worker #1 (8) forked",
    "[ALERT] 327/213028 (1) : Starting frontend fe: cannot bind socket [0.0.0.0:80]",
    "Proxy fe started.",
    "Proxy be started.",
]
ALL = [OK, CONNECT_TIMEOUT, REDISPATCH, REFUSED, CLIENT_TIMEOUT, BADREQ]


def test_format_is_the_documented_string() -> None:
    # The template renders this constant; the parser is built from the same table.
    assert HTTP_LOG_FORMAT == (
        "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc "
        "%ac/%fc/%bc/%sc/%rc %sq/%bq %ID %{+Q}r"
    )
    assert len(FIELDS) == len(HTTP_LOG_FORMAT.split(" "))


# What 2.6.12 wrote with TCP_LOG_FORMAT in mode tcp (backend-closes-first): the probe
# held its side for 6 s; with timeout client-fin 1s HAProxy ended it 1.5 s in (cD).
TCP_HELD = (
    "172.30.81.30:38682 [29/Nov/2026:20:20:38.961] fe_http be_app/app 1/0/6001 227 -- "
    "20/20/19/19/0 0/0"
)
TCP_CLIENT_FIN = (
    "172.30.145.30:42778 [29/Nov/2026:20:20:50.628] fe_http be_app/app 1/0/1503 227 cD "
    "20/20/19/19/0 0/0"
)


def test_tcp_format_is_the_manuals_tcplog() -> None:
    # HAProxy manual 8.2.2 "TCP log format": what "option tcplog" logs, spelled out.
    assert TCP_LOG_FORMAT == "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq"
    assert len(TCP_FIELDS) == len(TCP_LOG_FORMAT.split(" "))


def test_tcp_lines_parse_with_their_two_flag_characters() -> None:
    held, cut = parse_line(TCP_HELD), parse_line(TCP_CLIENT_FIN)
    assert held is not None and cut is not None
    assert (held.tw, held.tc, held.ta, held.bytes_read) == (1, 0, 6001, 227)
    assert (held.tr, held.tresp, held.status) == (-1, -1, -1)
    assert (held.request, held.unique_id) == ("", None)
    assert (held.termination_state, cut.termination_state, cut.ta) == ("--", "cD", 1503)
    assert (cut.client_port, cut.backend, cut.server, cut.actconn) == (42778, "be_app", "app", 20)
    assert explain("cD").startswith("cD: the client-side timeout expired")
    summary = summarise([held, cut])
    assert summary["termination_states"] == {"--": 1, "cD": 1}
    assert summary["status_classes"]["none"] == 2 and summary["timers"]["Ta"]["max"] == 6001
    entries, unparsed = parse_log([TCP_HELD, OK, "[WARNING] x"])
    assert len(entries) == 2 and unparsed == ["[WARNING] x"]


def test_normal_200() -> None:
    assert parse_line(OK) == LogEntry(
        client_ip="172.18.0.5",
        client_port=41234,
        accept_date="24/Nov/2026:21:30:28.123",
        frontend="fe",
        backend="be",
        server="s1",
        tr=0,
        tw=0,
        tc=1,
        tresp=3,
        ta=4,
        status=200,
        bytes_read=1234,
        termination_state="----",
        actconn=2,
        feconn=2,
        beconn=1,
        srv_conn=1,
        retries=0,
        redispatched=False,
        srv_queue=0,
        backend_queue=0,
        unique_id=UUID_OK,
        request="GET /ping HTTP/1.1",
        logasap=False,
    )


def test_connect_timeout_503_with_retries() -> None:
    e = parse_line(CONNECT_TIMEOUT)
    assert e is not None
    assert (e.status, e.termination_state, e.tc, e.tresp, e.ta) == (503, "sC--", -1, -1, 12011)
    assert (e.retries, e.redispatched) == (3, False)
    assert e.request == "GET /slow?x=1 HTTP/1.1"


def test_redispatch_plus_prefix() -> None:
    e = parse_line(REDISPATCH)
    assert e is not None
    assert (e.retries, e.redispatched, e.server) == (3, True, "s2")


def test_refused_sc() -> None:
    e = parse_line(REFUSED)
    assert e is not None
    assert (e.termination_state, e.status, e.tc, e.retries) == ("SC--", 503, -1, 3)


def test_client_timeout_cd() -> None:
    e = parse_line(CLIENT_TIMEOUT)
    assert e is not None
    assert (e.termination_state, e.ta, e.bytes_read) == ("cD--", 30003, 65536)


def test_badreq_and_dash_unique_id() -> None:
    e = parse_line(BADREQ)
    assert e is not None
    assert e.request == "<BADREQ>"
    assert e.unique_id is None
    assert (e.backend, e.server) == ("fe", "<NOSRV>")
    assert (e.tr, e.tw, e.tc, e.tresp, e.ta) == (-1, -1, -1, -1, 0)
    assert (e.status, e.termination_state) == (400, "PR--")


def test_no_status_logasap_ipv6_and_empty_request() -> None:
    line = (
        "::ffff:10.0.0.1:50000 [24/Nov/2026:21:30:32.000] fe~ be/s1 9/0/7/14/+30 -1 +243 "
        'CR-- 3/3/3/1/0 0/0 - ""'
    )
    e = parse_line(line + "\n")
    assert e is not None
    assert (e.client_ip, e.client_port, e.frontend) == ("::ffff:10.0.0.1", 50000, "fe~")
    assert (e.ta, e.bytes_read, e.logasap, e.status, e.request) == (30, 243, True, -1, "")


@pytest.mark.parametrize("line", [*STARTUP, "", "   ", OK.replace("----", "--")])
def test_non_access_lines_are_rejected(line: str) -> None:
    assert parse_line(line) is None


def test_parse_log_separates_unparsed() -> None:
    lines = [STARTUP[0], OK + "\n", "", STARTUP[5] + "\n", BADREQ, "\n"]
    entries, unparsed = parse_log(lines)
    assert [e.unique_id for e in entries] == [UUID_OK, None]
    assert unparsed == [STARTUP[0], STARTUP[5]]


def test_explain_sc_connect_timeout() -> None:
    assert explain("sC--") == (
        "sC--: the server-side timeout expired while waiting for the server to send or "
        "receive data. Session state: the proxy was waiting for the CONNECTION to establish "
        "on the server; the server might at most have noticed a connection attempt. "
        'Typically: "timeout connect" stroke before a connection to the server could '
        "complete (status likely 503 or 504)."
    )


def test_explain_sd() -> None:
    assert explain("SD--") == (
        "SD--: the TCP session was unexpectedly aborted by the server, or the server "
        "explicitly refused it. Session state: the session was in the DATA phase. "
        "Typically: the connection to the server died with an error during the data "
        "transfer (RST from the server or ICMP from an intermediate equipment)."
    )


def test_explain_normal() -> None:
    assert explain("----") == (
        "----: normal session completion, both the client and the server closed with "
        "nothing left in the buffers. Session state: normal session completion after end "
        "of data transfer."
    )


def test_explain_client_abort_in_data() -> None:
    assert explain("CD--") == (
        "CD--: the TCP session was unexpectedly aborted by the client. Session state: the "
        "session was in the DATA phase. Typically: the client unexpectedly aborted during "
        "data transfer."
    )


def test_explain_cookie_flags_and_unknowns_never_raise() -> None:
    assert explain("--VN").endswith(
        "of data transfer. "
        "Client cookie: the client provided a valid cookie and was sent to its server. "
        "Server cookie: no cookie was provided by the server, and none was inserted."
    )
    weird = explain("X?Z!")
    assert "unknown first character 'X'" in weird
    assert "unknown second character '?'" in weird
    assert "unknown third character 'Z'" in weird
    assert "unknown fourth character '!'" in weird
    assert explain("cD").startswith("cD: the client-side timeout expired")
    assert "unknown" in explain("")


def test_documented_tables_are_complete() -> None:
    assert set(hl.FIRST_CHAR) == set("CSPLRIDUKcs-")
    assert set(hl.SECOND_CHAR) == set("RQCHDLT-")
    assert set(hl.THIRD_CHAR) == set("NIDVEOU-")
    assert set(hl.FOURTH_CHAR) == set("NIUPRD-")


def test_summarise_counts_and_percentiles() -> None:
    entries, unparsed = parse_log([*STARTUP, *ALL])
    assert len(unparsed) == len(STARTUP)
    s = summarise(entries)
    assert s == {
        "total": 6,
        "termination_states": {"----": 2, "PR--": 1, "SC--": 1, "cD--": 1, "sC--": 1},
        "status_codes": {"200": 3, "400": 1, "503": 2},
        "status_classes": {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 1, "5xx": 2, "none": 0},
        "retries_total": 9,
        "redispatches": 1,
        # the server each request was logged on, by status class (the 400 had none)
        "servers": {"<NOSRV>": {"4xx": 1}, "s1": {"2xx": 2, "5xx": 2}, "s2": {"2xx": 1}},
        # the most connections and queued requests any line saw
        "peaks": {
            "actconn": 2,
            "feconn": 2,
            "beconn": 1,
            "srv_conn": 1,
            "srv_queue": 0,
            "backend_queue": 0,
        },
        "timers": {
            # -1 (never queued / never connected / no response) is excluded, not 0 ms.
            "Tw": {"count": 5, "p50": 0, "p90": 0, "p99": 0, "max": 0},
            "Tc": {"count": 3, "p50": 1, "p90": 2, "p99": 2, "max": 2},
            "Tr": {"count": 3, "p50": 3, "p90": 5, "p99": 5, "max": 5},
            "Ta": {"count": 6, "p50": 4, "p90": 30003, "p99": 30003, "max": 30003},
        },
    }
    assert list(s["termination_states"]) == ["----", "PR--", "SC--", "cD--", "sC--"]
    assert json.loads(json.dumps(s)) == s


def test_summarise_nearest_rank_percentiles_and_no_status() -> None:
    base = parse_line(OK)
    assert base is not None
    entries = [base._replace(ta=ms) for ms in range(100, 0, -1)]
    entries.append(base._replace(status=-1, ta=-1, tc=-1, tresp=-1))
    s = summarise(entries)
    assert s["timers"]["Ta"] == {"count": 100, "p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert s["status_classes"]["none"] == 1
    assert s["status_codes"] == {"-1": 1, "200": 100}


def test_summarise_empty() -> None:
    s = summarise([])
    assert s["total"] == 0
    assert s["timers"]["Tc"] == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    assert json.loads(json.dumps(s)) == s


def test_lookup_by_unique_id() -> None:
    entries, _ = parse_log(ALL)
    index = index_by_id(entries)
    assert set(index) == {
        UUID_OK,
        UUID_CONNECT_TIMEOUT,
        UUID_REDISPATCH,
        UUID_REFUSED,
        UUID_CLIENT_TIMEOUT,
    }
    assert index[UUID_REFUSED].termination_state == "SC--"
    found = find_by_id(entries, UUID_CONNECT_TIMEOUT)
    assert found is not None and found.termination_state == "sC--"
    assert find_by_id(entries, "nope") is None
