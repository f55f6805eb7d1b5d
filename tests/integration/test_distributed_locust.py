"""Locust's distributed mode (load.workers): a master and N worker processes in the
client container. Every request is counted once, whichever worker sent it: Locust's
stats (the master's), the workers' own files (status, latency histogram), and the
client's CPU ceiling (a core per worker)."""

import json

import pytest

from harness import cli
from harness.analyse import record
from harness.stack.project import leftovers


@pytest.mark.parametrize("loop", [[], ["--rate", "400"]], ids=["closed", "open"])
def test_two_workers_count_every_request_once(docker_engine, tmp_path, loop):
    out = tmp_path / "results"
    argv = [
        "--results-dir",
        str(out),
        "run",
        "--haproxy",
        "debian:bookworm",
        "--scenario",
        "smoke",
        "--users",
        "10",
        "--duration",
        "4",
        "--workers",
        "2",
        *loop,
    ]
    assert cli.main(argv) == 0  # fmt: skip
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    [cell] = record.cells(run_dir)
    assert cell.status == "ok", cell.error
    folder = run_dir / cell.cell
    m = cell.metrics
    assert m is not None and m.load is not None and m.client_limit is not None
    load = m.load
    for kind in ("latency.w*.hdr", "client_status.w*.json", "client_failures.w*.jsonl"):
        assert len(list(folder.glob(kind))) == 2, kind  # one per worker, none from the master
    statuses = [json.loads(p.read_text()) for p in folder.glob("client_status.w*.json")]
    assert all(s.get("200", 0) > 0 for s in statuses)  # both workers sent requests
    # the workers' histograms and statuses add up to the master's request count exactly
    assert load.latency_count == load.requests == sum(m.client_status_codes.values())
    assert load.failures == 0
    assert m.client_limit.client_ceiling_cores == 2.0
    if loop:  # 400 requests/s in all, 200 per worker's user, for 4 s
        assert 0.85 * 1600 <= load.requests <= 1.05 * 1600, load
    report = (run_dir / "report.md").read_text()
    assert "Locust (2 worker processes)" in report
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}
