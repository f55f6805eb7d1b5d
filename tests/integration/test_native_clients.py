"""The field notes' own clients as load generators (load.generator: requests / node /
go) through a real HAProxy: each pair of settings the notes contrast, measured on the
ports the client used, the connections HAProxy accepted and the client's TIME-WAITs."""

import re

from harness import cli
from harness.analyse import record
from harness.stack.project import leftovers


def _run(tmp_path, matrix: str) -> tuple[dict, str]:
    path = tmp_path / "m.yaml"
    path.write_text(matrix)
    out = tmp_path / "results"
    assert cli.main(["--results-dir", str(out), "matrix", str(path)]) == 0
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    cells = list(record.cells(run_dir))
    assert all(c.status == "ok" for c in cells), [c.error for c in cells]
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}
    return {c.cell: c for c in cells}, (run_dir / "report.md").read_text()


def _held(report: str) -> int:
    """Rows of the field-note table that say the claim held."""
    return len(re.findall(r"\| held +\|", report))


def _tw_client(cell) -> int:
    return cell.metrics.census["client"].totals["TIME-WAIT"].peak


def _accepted(cell) -> int:
    return cell.metrics.haproxy_counters.info["CumConns"]


def test_requests_without_a_session_opens_a_connection_per_request_and_a_session_reuses(
    docker_engine, tmp_path
):
    cells, report = _run(tmp_path, """
name: requests-load
versions: [debian:bookworm]
load: {users: 4, duration_s: 3}
scenarios:
  - {name: keepalive-vs-close, load: {generator: requests, session: false}}
  - {name: keepalive-vs-close, load: {generator: requests, session: true}}
claims:
  - {note: "no Session: a TIME-WAIT per request", metric: time-wait-client-per-request,
     where: {session: false}, at_least: 0.9}
  - {note: "a Session: none per request", metric: time-wait-client-per-request,
     where: {session: true}, at_most: 0.01}
""")  # fmt: skip
    by = {c.load.session: c for c in cells.values()}
    for cell in by.values():
        load = cell.metrics.load
        assert load.generator == "requests" and load.failures == 0, load
        assert load.requests > 100, load  # 3 s of 4 threads
        assert load.latency_count == load.requests and 0 < load.p50_ms <= load.max_ms
        assert cell.metrics.client_status_codes == {"200": load.requests}
    plain, pooled = by[False].metrics.load, by[True].metrics.load
    # requests.get: a new Session, so a new connection (a new port), per request; the
    # client closes it, so the TIME-WAIT is the client's (60 s: all still there)
    assert plain.connections == plain.requests and plain.ports == plain.requests
    assert _tw_client(by[False]) >= 0.9 * plain.requests
    assert _accepted(by[False]) >= plain.requests
    # one Session per thread: one connection per thread for the whole load
    assert pooled.connections == pooled.ports == 4
    assert _tw_client(by[True]) <= 4 and _accepted(by[True]) <= 4 + 10  # + readiness checks
    assert "## Field note vs measured" in report
    assert _held(report) == 2, report
    assert "· requests, 4 users, session=False" in report


def test_requests_on_eventlet_green_threads_measures_as_the_threads_do(docker_engine, tmp_path):
    # seed 000's test_api_green_thread: the users as green threads of one GreenPool
    cells, report = _run(tmp_path, """
name: requests-eventlet
versions: [debian:bookworm]
load: {users: 4, duration_s: 2, generator: requests, concurrency: eventlet}
scenarios:
  - {name: keepalive-vs-close, load: {session: false}}
  - {name: keepalive-vs-close, load: {session: true}}
""")  # fmt: skip
    by = {c.load.session: c for c in cells.values()}
    for cell in by.values():
        assert cell.load.concurrency == "eventlet"
        load = cell.metrics.load
        assert load.generator == "requests" and load.failures == 0, load
        assert load.requests > 50, load  # 2 s of 4 green threads
        assert load.latency_count == load.requests and 0 < load.p50_ms <= load.max_ms
        assert cell.metrics.client_status_codes == {"200": load.requests}
    plain, pooled = by[False].metrics.load, by[True].metrics.load
    # as with threads: a connection, a port and a client TIME-WAIT per request ...
    assert plain.connections == plain.requests and plain.ports == plain.requests
    assert _tw_client(by[False]) >= 0.9 * plain.requests
    # ... and with a Session one connection per green thread for the whole load
    assert pooled.connections == pooled.ports == 4
    assert _tw_client(by[True]) <= 4
    assert "· requests, 4 users, session=False, concurrency=eventlet" in report


def test_node_agent_false_uses_a_port_per_request_and_a_keepalive_agent_max_sockets(
    docker_engine, tmp_path
):
    cells, report = _run(tmp_path, """
name: node-load
versions: [debian:bookworm]
load: {users: 5, duration_s: 10}
scenarios:
  - {name: keepalive-vs-close, load: {generator: node, agent: none, max_requests: 100}}
  - {name: keepalive-vs-close,
     load: {generator: node, agent: keepalive, max_sockets: 5, max_requests: 100}}
claims:
  - {note: "100 requests with agent:false use 100 ports", metric: ports-used,
     where: {agent: none}, at_least: 100}
  - {note: "a keep-alive agent reuses its maxSockets (5)", metric: ports-used,
     where: {agent: keepalive}, at_most: 5}
""")  # fmt: skip
    by = {c.load.agent: c for c in cells.values()}
    for cell in by.values():
        load = cell.metrics.load
        assert load.generator == "node" and load.requests == 100 and load.failures == 0, load
        assert cell.metrics.client_status_codes == {"200": 100}
        assert load.latency_count == 100
    assert by["none"].metrics.load.ports == 100 and by["none"].metrics.load.connections == 100
    assert _accepted(by["none"]) >= 100
    assert by["keepalive"].metrics.load.ports <= 5
    assert _accepted(by["keepalive"]) <= 5 + 10
    assert _held(report) == 2, report


def test_go_pool_smaller_than_per_host_churns_connections_and_a_matching_pool_does_not(
    docker_engine, tmp_path
):
    cells, report = _run(tmp_path, """
name: go-load
versions: [debian:bookworm]
load: {users: 40, duration_s: 3}
scenarios:
  - {name: keepalive-vs-close,
     load: {generator: go, max_idle_conns: 10, max_idle_conns_per_host: 40, pause_ms: 5}}
  - {name: keepalive-vs-close,
     load: {generator: go, max_idle_conns: 40, max_idle_conns_per_host: 40, pause_ms: 5}}
  - {name: keepalive-vs-close, load: {generator: go, disable_keepalives: true}}
claims:
  - {note: "MaxIdleConns under MaxIdleConnsPerHost: 10x the TIME-WAIT", metric: time-wait-client,
     where: {max_idle_conns: 10}, relative_to: {max_idle_conns: 40}, at_least: 10}
""")  # fmt: skip
    small, matched, off = sorted(
        cells.values(), key=lambda c: (c.load.disable_keepalives or False, c.load.max_idle_conns)
    )
    for cell in (small, matched, off):
        load = cell.metrics.load
        assert load.generator == "go" and load.failures == 0 and load.requests > 300, load
    # a pool of 40 for 40 goroutines: the connections stay (a few more when a dial
    # raced a connection coming back: 42 seen), closed only when the client exits
    assert matched.metrics.load.connections <= 50 and _tw_client(matched) <= 50
    # a pool of 10 in all: while the goroutines pause, more than 10 connections are
    # idle; Go closes the oldest (the client closes: the TIME-WAIT is the client's)
    # and dials new ones for the next requests
    assert _tw_client(small) >= 10 * max(_tw_client(matched), 1)
    assert small.metrics.load.connections >= 10 * matched.metrics.load.connections
    # DisableKeepAlives: a connection per request
    assert off.metrics.load.connections == off.metrics.load.requests
    assert _held(report) == 1, report
