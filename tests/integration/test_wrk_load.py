"""wrk as the load generator (load.generator: wrk): real requests through a real
HAProxy, counted the same way on both sides, with keep-alive on and off."""

from harness import cli
from harness.analyse import record
from harness.stack.project import leftovers

MATRIX = """
name: wrk-load
versions: [debian:bookworm]
load: {generator: wrk, users: 10, duration_s: 3}
scenarios:
  - name: smoke
    grid: {keepalive: [true, false]}
"""


def test_wrk_drives_a_load_cell_and_both_sides_count_the_same_requests(docker_engine, tmp_path):
    matrix = tmp_path / "wrk.yaml"
    matrix.write_text(MATRIX)
    out = tmp_path / "results"
    assert cli.main(["--results-dir", str(out), "matrix", str(matrix)]) == 0
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    cells = {c.params["keepalive"]: c for c in record.cells(run_dir)}
    assert {k: c.status for k, c in cells.items()} == {True: "ok", False: "ok"}
    for keepalive, cell in cells.items():
        m = cell.metrics
        assert m is not None and m.load is not None and m.haproxy is not None
        load = m.load
        assert load.generator == "wrk" and load.threads == 1
        assert load.requests > 300, load  # 3 s of 10 connections on a 2-core host
        assert load.failures == 0, load
        # wrk adds coordinated-omission samples: never fewer latencies than requests
        assert load.latency_count is not None and load.latency_count >= load.requests
        assert 0 < load.p50_ms <= load.p99_ms <= load.max_ms
        assert m.client_limit is not None and m.client_limit.client_ceiling_cores == 1.0
        # HAProxy logged every request wrk completed (or counted the line it had to
        # drop), and at most the ones in flight (one per connection) when wrk stopped
        assert m.haproxy_counters is not None
        dropped = m.haproxy_counters.info.get("DroppedLogs", 0)
        logged = sum(m.haproxy.termination_states.values()) + dropped
        assert load.requests <= logged <= load.requests + 10, (logged, load)
        accepted = m.haproxy_counters.info["CumConns"]
        if keepalive:  # the 10 connections, and the harness's own readiness checks
            assert accepted <= 30 < load.requests / 10, accepted
        else:  # Connection: close from the script: a connection per request
            assert accepted >= load.requests, (accepted, load.requests)
        assert (run_dir / cell.cell / "wrk.log").read_text().startswith("Running 3s test")
    report = (run_dir / "report.md").read_text()
    assert "Load: wrk closed loop, 10 connections over 1 thread" in report
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}
