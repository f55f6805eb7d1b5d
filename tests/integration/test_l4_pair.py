"""Seed 000's pair on a real stack: in mode tcp HAProxy relays the backend's FIN to the
client and keeps its own side to the backend open, so CLOSE-WAIT (haproxy→backend) and
FIN-WAIT-2 (haproxy←client) rise together, one per connection, for as long as the client
keeps its side open; in mode http HAProxy closes the server side at once (no CLOSE-WAIT).

One matrix, 2.6.12, five short cells (10 connections held 4 s each): about a minute.
"""

import textwrap

import pytest

HOLD_S = 4.0
IDLE_MS = 500  # the backend closes an idle keep-alive connection after this
MATRIX = textwrap.dedent(
    f"""
    name: l4-pair
    versions: [debian:bookworm]
    scenarios:
      - name: backend-closes-first
        params: {{connections: 10, hold_s: {HOLD_S}, watch_s: 1.0, backend_idle_ms: {IDLE_MS}}}
        grid:
          mode: [http, tcp]
      - name: backend-closes-first
        params: {{connections: 10, hold_s: {HOLD_S}, watch_s: 1.0, backend_idle_ms: {IDLE_MS},
                  mode: tcp, client_fin: "1s"}}
      - name: backend-closes-first
        params: {{connections: 10, hold_s: {HOLD_S}, watch_s: 1.0, backend_idle_ms: {IDLE_MS},
                  mode: tcp, server_fin: "1s"}}
      - name: backend-closes-first
        params: {{connections: 10, hold_s: {HOLD_S}, watch_s: 1.0, backend_idle_ms: {IDLE_MS},
                  mode: tcp, tunnel: "1s"}}
    """
)


@pytest.fixture(scope="module")
def cells(harness, tmp_path_factory):
    matrix = tmp_path_factory.mktemp("matrix") / "l4-pair.yaml"
    matrix.write_text(MATRIX)
    proc = harness("matrix", str(matrix), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = {}
    for record in harness.cells(harness.newest_run()):
        assert record["status"] == "ok", record.get("error")
        p = record["params"]
        found[(p["mode"], p["client_fin"], p["server_fin"], p["tunnel"])] = record
    assert len(found) == 5, sorted(found)
    return found


def _state(record, state):
    """(peak, seconds above the pre-load level, first and last such sample) of a haproxy
    socket state as the census counted it (ss, 10 samples a second)."""
    entry = record["metrics"]["census"]["haproxy"]["states"].get(state)
    if not entry:
        return 0, 0.0
    above = [t for t, n in entry["timeline"] if n > entry["baseline"]]
    return entry["peak"] - entry["baseline"], (above[-1] - above[0]) if above else 0.0


def test_mode_tcp_pairs_close_wait_to_the_backend_with_fin_wait_2_to_the_client(cells):
    record = cells[("tcp", "off", "off", "off")]
    close_wait, cw_lasted = _state(record, "CLOSE-WAIT/out")
    fin_wait_2, fw_lasted = _state(record, "FIN-WAIT-2/in")
    # One of each per connection, at the same time.
    assert close_wait == fin_wait_2 == 10, (close_wait, fin_wait_2)
    # The backend's FIN reaches the client through HAProxy after its idle timeout...
    probe = record["metrics"]["probe"]
    assert probe["ends"] == {"fin": 10}
    assert IDLE_MS <= probe["delay_ms"]["p50"] < IDLE_MS + 200, probe["delay_ms"]
    # ...and both states last until the client's FIN at the end of the hold.
    for lasted in (cw_lasted, fw_lasted):
        assert HOLD_S - IDLE_MS / 1000 - 1.0 <= lasted <= HOLD_S, (cw_lasted, fw_lasted)
    # A normal end in HAProxy's TCP log: both sides closed, the session lasted the hold.
    haproxy = record["metrics"]["haproxy"]
    assert haproxy["termination_states"] == {"--": 10}
    assert record["metrics"]["haproxy_unparsed_lines"] == 0
    assert HOLD_S * 1000 <= haproxy["timers"]["Ta"]["p50"] < HOLD_S * 1000 + 500


def test_mode_http_closes_the_server_side_at_once(cells):
    record = cells[("http", "off", "off", "off")]
    assert _state(record, "CLOSE-WAIT/out")[0] == 0
    # The client side is closed by HAProxy's keep-alive timeout instead (2 s, default).
    assert _state(record, "FIN-WAIT-2/in")[0] == 10
    assert record["metrics"]["probe"]["delay_ms"]["p50"] >= 2000
    assert record["metrics"]["haproxy"]["termination_states"] == {"----": 10}


def test_timeout_client_fin_ends_the_half_closed_session(cells):
    record = cells[("tcp", "1s", "off", "off")]
    close_wait, cw_lasted = _state(record, "CLOSE-WAIT/out")
    assert close_wait == 10
    # client-fin counts from HAProxy's FIN to the client: CLOSE-WAIT ends ~1 s later,
    # the session is logged as a client-side timeout in the data phase, at ~idle + 1 s.
    assert cw_lasted <= 1.5, cw_lasted
    haproxy = record["metrics"]["haproxy"]
    assert haproxy["termination_states"] == {"cD": 10}
    assert IDLE_MS + 1000 <= haproxy["timers"]["Ta"]["p50"] < IDLE_MS + 1500
    # HAProxy has closed its socket, but the client never sent its FIN: the kernel keeps
    # the orphan in FIN-WAIT-2 (up to tcp_fin_timeout) until the client's FIN comes.
    assert _state(record, "FIN-WAIT-2/in")[1] >= HOLD_S - IDLE_MS / 1000 - 1.0


def test_timeout_server_fin_does_not_apply_when_the_backend_closed_first(cells):
    # server-fin counts once HAProxy has sent its own FIN to the server (the client
    # closed first): here nobody has, so the pair lasts the whole hold as without it.
    record = cells[("tcp", "off", "1s", "off")]
    assert _state(record, "CLOSE-WAIT/out")[1] >= HOLD_S - IDLE_MS / 1000 - 1.0
    assert record["metrics"]["haproxy"]["termination_states"] == {"--": 10}


def test_timeout_tunnel_ends_the_idle_session(cells):
    record = cells[("tcp", "off", "off", "1s")]
    close_wait, cw_lasted = _state(record, "CLOSE-WAIT/out")
    assert close_wait == 10 and cw_lasted <= 1.0, cw_lasted
    haproxy = record["metrics"]["haproxy"]
    assert haproxy["termination_states"] == {"cD": 10}
    assert 1000 <= haproxy["timers"]["Ta"]["p50"] < 1500
