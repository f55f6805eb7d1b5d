"""h2load as the load generator (load.generator: h2load) through a real HAProxy whose
frontend speaks HTTP/2 (the keepalive-vs-close scenario's http2 knob): cleartext with
prior knowledge (bind ... proto h2) and over TLS with ALPN h2."""

from harness import cli
from harness.analyse import h2load, haproxy_log, record
from harness.stack.project import leftovers

CONNECTIONS, STREAMS = 4, 10
MATRIX = f"""
name: h2load-load
versions: [debian:bookworm]
load: {{generator: h2load, users: {CONNECTIONS}, streams: {STREAMS}, duration_s: 3}}
scenarios:
  - name: keepalive-vs-close
    grid: {{http2: [h2c, h2]}}
"""


def test_h2load_drives_http2_through_haproxy_over_few_connections(docker_engine, tmp_path):
    matrix = tmp_path / "h2load.yaml"
    matrix.write_text(MATRIX)
    out = tmp_path / "results"
    assert cli.main(["--results-dir", str(out), "matrix", str(matrix)]) == 0
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    cells = {c.params["http2"]: c for c in record.cells(run_dir)}
    assert {k: c.status for k, c in cells.items()} == {"h2c": "ok", "h2": "ok"}
    for http2, cell in cells.items():
        folder = run_dir / cell.cell
        cfg = (folder / "haproxy.cfg").read_text()
        if http2 == "h2c":
            assert "bind :8080 proto h2\n" in cfg
        else:
            assert "ssl crt /etc/harness/certs/haproxy.pem alpn h2,http/1.1\n" in cfg
        m = cell.metrics
        assert m is not None and m.load is not None and m.haproxy is not None
        load = m.load
        assert load.generator == "h2load" and load.threads == 1
        assert load.requests > 300, load  # 3 s of 40 streams on a 2-core host
        assert load.failures == 0, load
        # the per-request log has every response h2load counted, with its status
        assert m.client_status_codes == {"200": load.requests}, m.client_status_codes
        assert load.latency_count == load.requests
        assert 0 < load.p50_ms <= load.p99_ms <= load.max_ms
        assert m.client_limit is not None and m.client_limit.client_ceiling_cores == 1.0
        # HAProxy saw HTTP/2 requests, every one h2load completed, over the h2load's
        # connections alone: streams share a connection, not one connection per request
        entries, unparsed = haproxy_log.parse_log((folder / "haproxy.log").read_text().splitlines())
        assert unparsed == []
        assert entries and all(e.request.endswith(" HTTP/2.0") for e in entries), entries[:1]
        assert m.haproxy_counters is not None
        dropped = m.haproxy_counters.info.get("DroppedLogs", 0)
        assert load.requests <= len(entries) + dropped <= load.requests + CONNECTIONS * STREAMS
        assert len({e.client_port for e in entries}) == CONNECTIONS
        # the census saw h2load's connections established on both ends, never one per
        # stream; HAProxy opened server connections for the streams in flight (HTTP/1.1;
        # 40 seen: how many idle ones http-reuse safe keeps besides is HAProxy's choice)
        assert m.census is not None
        assert m.census["client"].states["ESTAB/out"].peak == CONNECTIONS
        assert m.census["haproxy"].states["ESTAB/in"].peak == CONNECTIONS
        assert m.census["haproxy"].states["ESTAB/out"].peak > CONNECTIONS
        assert h2load.summary(folder / h2load.SUMMARY_FILE)["done"] == load.requests
    report = (run_dir / "report.md").read_text()
    assert f"{CONNECTIONS} connections of {STREAMS} concurrent streams over 1 thread" in report
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}
