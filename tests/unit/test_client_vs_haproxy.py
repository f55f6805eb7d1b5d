"""The client's request count held against HAProxy's (cell_metrics.client_vs_haproxy).

Found in a connect-timeout run: HAProxy logged 90 requests where Locust counted 36,
half of them timed at twice the 503's Ta, because geventhttpclient sent a request again
when HAProxy closed a keep-alive connection without a response (its answer to a connect
timeout on a connection's second request). Every Locust cell through HAProxy now carries
the check, and a report says which cells disagree.
"""

import shutil
from pathlib import Path

from harness import cli
from harness.analyse import cell_metrics
from harness.analyse.record import LoadRecord, load_cell

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "tests" / "data" / "run-half-close-keepalive"
CELL = "003-keepalive-vs-close-2.2.9-debian-bullseye-17b307-r1"  # Locust, 10 users
CLIENT_REQUESTS = 19517  # its locust.json


def test_counts_agree_up_to_the_requests_in_flight_at_the_stop():
    agree = cell_metrics.client_vs_haproxy
    # HAProxy's count: what its frontend received, from its counters
    assert agree(100, 100, 0, 100, 10)["agree"]
    assert agree(100, 110, 0, 110, 10)["agree"]  # ten cut off by the stop: not counted
    assert not agree(100, 111, 0, 111, 10)["agree"]
    # a killed backend: 10 keep-alive requests closed unanswered and never logged
    assert agree(450, 440, 0, 450, 10)["agree"]
    # the connect-timeout cell: each Locust request was two of HAProxy's
    assert agree(36, 90, 0, 92, 20) == {
        "client": 36, "haproxy": 92, "received": 92, "logged": 90, "dropped": 0,
        "in_flight_bound": 20, "agree": False,
    }  # fmt: skip
    # a client counting a request that never reached HAProxy
    assert not agree(101, 100, 0, 100, 10)["agree"]
    # without counters, the log: its lines and those HAProxy dropped are its requests
    assert agree(100, 95, 5, None, 10)["agree"]
    assert not agree(100, 95, 4, None, 10)["agree"]


def _load(**fields) -> LoadRecord:
    return LoadRecord.model_validate({"mode": "closed-loop", "users": 20, **fields})


def test_the_check_applies_to_locusts_http_load_through_haproxy_only():
    bound = cell_metrics.in_flight_bound
    assert bound(_load(), {}) == 20
    assert bound(_load(), {"fault": "backend-killed"}) == 20  # HAProxy still logs them
    # open loop: each process stops at once with up to its pool in flight
    assert bound(_load(mode="open-loop", users=1), {}) == cell_metrics.OPEN_LOOP_POOL
    assert bound(_load(mode="open-loop", workers=2), {}) == 2 * cell_metrics.OPEN_LOOP_POOL
    assert bound(_load(mode="probe"), {}) is None
    assert bound(_load(generator="wrk", threads=2), {}) is None
    assert bound(_load(), {"via": "backend"}) is None  # no HAProxy in the path
    assert bound(_load(), {"mode": "tcp"}) is None  # a log line per connection
    assert bound(_load(), {"fault": "haproxy-restarted"}) is None
    assert bound(_load(), {"fault": "client-killed"}) is None


def _log(lines: int) -> str:
    # the harness's HTTP log format (harness.plan.log_format), as 2.2.9 writes it
    return "".join(
        f"172.30.1.30:{40000 + i % 20000} [24/Nov/2026:23:04:01.{i % 1000:03d}] fe_http "
        f"be_app/app 0/0/0/1/1 200 290 ---- 10/10/0/1/0 0/0 id-{i} "
        '"GET / HTTP/1.1"\n'
        for i in range(lines)
    )


def test_a_report_warns_of_a_cell_whose_counts_disagree(tmp_path):
    run_dir = tmp_path / "results" / "20261124T230400Z-counts"
    shutil.copytree(RUN, run_dir)
    log, stat = run_dir / CELL / "haproxy.log", run_dir / CELL / "haproxy-stat.csv"

    # its frontend received req_tot 19522 less ereq 5: the client's 19517
    log.write_text(_log(CLIENT_REQUESTS))
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    check = load_cell(run_dir / CELL / "cell.json").m.client_vs_haproxy
    assert check is not None and check.agree
    assert check.haproxy == check.received == check.logged == CLIENT_REQUESTS
    assert "request counts disagree" not in (run_dir / "report.md").read_text()

    # every request twice on the wire, as the client's retry made it
    twice = 2 * CLIENT_REQUESTS
    log.write_text(_log(twice))
    stat.write_text(stat.read_text().replace(",19522,", f",{twice + 5},"))
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    check = load_cell(run_dir / CELL / "cell.json").m.client_vs_haproxy
    assert check is not None and not check.agree
    text = (run_dir / "report.md").read_text()
    assert "**Warning: request counts disagree.**" in text
    assert (
        f"- {CELL} (2.2.9 (debian:bullseye), keepalive-vs-close): the client counted "
        f"{CLIENT_REQUESTS} requests, HAProxy {twice} ({twice} received; {twice} logged + 0 "
        "dropped); at most 10 were in flight when the load stopped"
    ) in text
    page = (run_dir / "report.html").read_text()
    assert "Warning: request counts disagree." in page and CELL in page
