"""maxconn on a real stack (2.6.12): 12 keep-alive clients against 100 ms responses.

- Frontend or global ``maxconn 4``: HAProxy takes 4 connections. Its listener's
  backlog defaults to the frontend's maxconn, so the kernel completes 5 more into the
  accept queue (Linux keeps backlog + 1: the census counts 9 ESTABLISHED on haproxy's
  side) and drops the other clients' SYNs (3 in SYN-SENT on the client's side). Those
  clients wait without an answer; nothing queues inside HAProxy. When the load stops,
  the queued clients close and their connections sit in CLOSE-WAIT in the accept queue.
- Server ``maxconn 4``: HAProxy accepts all 12 and queues the requests above 4 (round
  robin without persistence: in the backend's queue, the log's %bq; Tw about 100 ms);
  with ``timeout queue 150ms`` those that wait longer are answered 503 ``sQ--``.

Exact counts need the accept queue to hold clients only, filled one at a time. Two
things broke that on a busy host (with a CPU hog on one core: 3 of 10 limited cells
failed; 0 of 8 without): the users started at once, so their 12 SYNs met a queue
HAProxy had not drained yet (6 or 7 in SYN-SENT at the peak); and Docker's health check,
a bare connect every second to the frontend, took a queue slot when it came between
HAProxy reaching maxconn and the clients filling the queue (8 established, ereq 2). The
scenario now starts its users 50 ms apart (HttpLoad.start_stagger_ms) and the check goes
to the stats socket: 12 of 12 limited cells right with the hog.

One matrix, four 2-second cells.
"""

import textwrap

import pytest

USERS = 12
LIMIT = 4
MATRIX = textwrap.dedent(
    f"""
    name: maxconn
    versions: [debian:bookworm]
    load: {{users: {USERS}, spawn_rate: {USERS}, duration_s: 2}}
    scenarios:
      - name: maxconn
        grid:
          frontend_maxconn: [0, {LIMIT}]
      - name: maxconn
        params: {{global_maxconn: {LIMIT}}}
      - name: maxconn
        params: {{server_maxconn: {LIMIT}, timeout_queue: 150ms}}
    """
)


@pytest.fixture(scope="module")
def cells(harness, tmp_path_factory):
    run_dir, records = harness.matrix_ok(MATRIX, tmp_path_factory.mktemp("matrix"))
    found = {}
    for record in records:
        p = record["params"]
        found[(p["global_maxconn"], p["frontend_maxconn"], p["server_maxconn"])] = record
    assert len(found) == 4, sorted(found)
    found["report"] = (run_dir / "report.md").read_text()
    return found


def _peak(record, side, state):
    """A census state's peak above its pre-load level (0 when never seen)."""
    entry = record["metrics"]["census"][side]["states"].get(state)
    return entry["peak"] - entry["baseline"] if entry else 0


def _estab_in(record):
    return _peak(record, "haproxy", "ESTAB/in")


def test_unlimited_takes_every_client(cells):
    record = cells[(4096, 0, 0)]
    # smax: 12 (13 while Docker's health check still connected to the frontend)
    assert record["metrics"]["haproxy_counters"]["frontend"]["smax"] >= USERS
    assert _estab_in(record) == USERS
    peaks = record["metrics"]["haproxy"]["peaks"]
    assert peaks["srv_queue"] == peaks["backend_queue"] == 0
    assert _peak(record, "client", "SYN-SENT/out") == 0


@pytest.mark.parametrize("key", [(4096, LIMIT, 0), (LIMIT, 0, 0)], ids=["frontend", "global"])
def test_above_maxconn_clients_wait_in_the_listeners_queue(cells, key):
    m = cells[key]["metrics"]
    # HAProxy held LIMIT; the kernel completed LIMIT + 1 more into the accept queue (the
    # backlog is the frontend's maxconn) and left the rest of the clients in SYN-SENT.
    assert m["haproxy_counters"]["frontend"]["smax"] == LIMIT
    assert m["haproxy"]["peaks"]["feconn"] <= LIMIT
    assert _estab_in(cells[key]) == 2 * LIMIT + 1, m["census"]["haproxy"]["states"]
    assert _peak(cells[key], "client", "SYN-SENT/out") == USERS - (2 * LIMIT + 1)
    # Queued clients that gave up when the load stopped: CLOSE-WAIT on the listener
    # (5 in most cells). The census may also catch HAProxy's own LIMIT in CLOSE-WAIT for
    # the moment before it closes them (8 seen once in 12 cells under a CPU hog).
    assert 1 <= _peak(cells[key], "haproxy", "CLOSE-WAIT/in") <= 2 * LIMIT + 1
    # The accepted clients keep their connections (keep-alive): only they are served,
    # at the backend's pace (100 ms a response), and nothing queues inside HAProxy.
    assert m["haproxy"]["peaks"]["srv_queue"] == m["haproxy"]["peaks"]["backend_queue"] == 0
    assert m["haproxy"]["status_classes"]["5xx"] == 0
    assert m["load"]["rps"] <= LIMIT * 10 * 1.3, m["load"]


def test_above_the_servers_maxconn_requests_queue_then_time_out(cells):
    m = cells[(4096, 0, LIMIT)]["metrics"]
    haproxy = m["haproxy"]
    # Every client accepted; the server never had more than LIMIT at once.
    assert m["haproxy_counters"]["frontend"]["smax"] >= USERS
    assert _estab_in(cells[(4096, 0, LIMIT)]) == USERS
    assert haproxy["peaks"]["srv_conn"] <= LIMIT
    # %bq counts the requests queued ahead of this one when it left the queue: 8 and 6
    # in two runs, of the 8 that can wait
    assert 3 <= haproxy["peaks"]["backend_queue"] <= USERS - LIMIT, haproxy["peaks"]
    # Queued requests waited (Tw) up to timeout queue, then got a 503 sQ--.
    assert haproxy["termination_states"].get("sQ--", 0) > 0, haproxy["termination_states"]
    assert haproxy["status_codes"]["503"] == haproxy["termination_states"]["sQ--"]
    assert 100 <= haproxy["timers"]["Tw"]["max"] <= 400, haproxy["timers"]["Tw"]
    assert "queued max (log %sq/%bq)" in cells["report"]
