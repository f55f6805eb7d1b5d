"""Locust's distributed mode (load.workers): a master and N worker processes in the
client container. Every request is counted once, whichever worker sent it: the workers'
own stats (locust.w<pid>.json), their other files (status, latency histogram), and the
client's CPU ceiling (a core per worker).

Closed loop with 1,000 users (500 a worker) for 3 s: the master's stats missed the
workers' last reports (it waits 0.5 s for them; a worker with 500 users takes longer to
stop), so the cell counted 3,835 requests where the workers' histograms and HAProxy had
6,413 (client_vs_haproxy disagreed: 2,578 more than the 1,000 users could have had in
flight). The count is now the workers' own, which HAProxy's must agree with."""

import json

import pytest

from harness import cli
from harness.analyse import locust_stats, record
from harness.stack.project import leftovers


@pytest.mark.parametrize(
    "load",
    [["--users", "1000", "--duration", "3"], ["--users", "10", "--duration", "4", "--rate", "400"]],
    ids=["closed", "open"],
)
def test_two_workers_count_every_request_once(docker_engine, tmp_path, load):
    out = tmp_path / "results"
    argv = [
        "--results-dir",
        str(out),
        "run",
        "--haproxy",
        "debian:bookworm",
        "--scenario",
        "smoke",
        "--workers",
        "2",
        *load,
    ]
    loop = "--rate" in load
    assert cli.main(argv) == 0  # fmt: skip
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    [cell] = record.cells(run_dir)
    assert cell.status == "ok", cell.error
    folder = run_dir / cell.cell
    m = cell.metrics
    assert m is not None and m.load is not None and m.client_limit is not None
    load = m.load
    kinds = ("latency.w*.hdr", "client_status.w*.json", "client_failures.w*.jsonl")
    for kind in (*kinds, "locust.w*.json", "locust_failures.w*.csv"):
        assert len(list(folder.glob(kind))) == 2, kind  # one per worker, none from the master
    statuses = [json.loads(p.read_text()) for p in folder.glob("client_status.w*.json")]
    assert all(s.get("200", 0) > 0 for s in statuses)  # both workers sent requests
    # the workers' stats, histograms and statuses count the same requests
    assert load.latency_count == load.requests == sum(m.client_status_codes.values())
    assert load.source == locust_stats.SOURCE_WORKERS
    assert load.failures == 0
    # rps: that count over the workers' window (first start to last request)
    start, end = locust_stats.window(locust_stats.stats_files(folder))
    assert load.rps == pytest.approx(load.requests / (end - start)), load
    # and HAProxy received those, plus at most the requests in flight at the stop
    assert m.client_vs_haproxy is not None and m.client_vs_haproxy.agree, m.client_vs_haproxy
    assert m.client_limit.client_ceiling_cores == 2.0
    if loop:  # 400 requests/s in all, 200 per worker's user, for 4 s
        assert 0.85 * 1600 <= load.requests <= 1.05 * 1600, load
    report = (run_dir / "report.md").read_text()
    assert "Locust (2 worker processes)" in report
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}
