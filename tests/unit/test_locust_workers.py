"""Distributed Locust's counts come from the workers' own stats (locust.w<pid>.json),
not the master's locust.json, which can miss the workers' last reports: the parts add
up, rps is their count over their window, and the record says where it came from."""

import json
from pathlib import Path
from typing import Any

from harness.analyse import cell_metrics, locust_stats


def _entry(requests: int, failures: int, start: float, last: float) -> dict[str, Any]:
    return {
        "name": "GET", "method": "GET", "num_requests": requests, "num_failures": failures,
        "start_time": start, "last_request_timestamp": last,
        "total_response_time": 2.0 * requests, "max_response_time": 9.0,
        "response_times": {"2": requests},
    }  # fmt: skip


def _folder(tmp_path: Path) -> Path:
    # The master saw 700 (a worker's last report never reached it); the workers sent 1,000.
    (tmp_path / "locust.json").write_text(json.dumps([_entry(700, 1, 100.0, 103.0)]))
    (tmp_path / "locust.w12.json").write_text(json.dumps([_entry(600, 2, 100.0, 105.0)]))
    (tmp_path / "locust.w13.json").write_text(json.dumps([_entry(400, 1, 100.5, 104.0)]))
    header = "Method,Name,Error,Occurrences\n"
    (tmp_path / "locust_failures.csv").write_text(header + "GET,GET,x,1\n")
    (tmp_path / "locust_failures.w12.csv").write_text(header + "GET,GET,x,2\n")
    (tmp_path / "locust_failures.w13.csv").write_text(header + "GET,GET,x,1\n")
    return tmp_path


def test_the_workers_stats_are_the_cells_count(tmp_path):
    load = cell_metrics.compute(_folder(tmp_path)).load
    assert load is not None
    assert (load.requests, load.failures) == (1000, 3)
    # the same count over the parts' window: first start (100.0) to last request (105.0)
    assert load.rps == 1000 / 5.0
    assert load.source == locust_stats.SOURCE_WORKERS
    assert locust_stats.window(locust_stats.stats_files(tmp_path)) == (100.0, 105.0)
    assert cell_metrics.compute(tmp_path).client_errors == {"x": 3}


def test_without_worker_parts_the_one_locust_json_counts(tmp_path):
    _folder(tmp_path)
    for part in [*tmp_path.glob("locust.w*.json"), *tmp_path.glob("locust_failures.w*")]:
        part.unlink()
    load = cell_metrics.compute(tmp_path).load
    assert load is not None and (load.requests, load.failures) == (700, 1)
    assert load.source is None and load.rps == 700 / 3.0


def test_an_open_loops_errors_are_its_intended_rows_not_twice(tmp_path):
    # Each failed "GET" of the open loop fails its "intended" event with the same text:
    # counting both rows would give every failure twice.
    from harness.analyse import locust_stats

    header = "Method,Name,Error,Occurrences\n"
    both = tmp_path / "open.csv"
    both.write_text(header + "GET,GET,CatchResponseError('status 503'),40\n"
                    "GET,intended,CatchResponseError('status 503'),40\n"
                    "GET,intended,ConnectionRefusedError(111),2\n")  # fmt: skip
    assert locust_stats.errors(both) == {
        "CatchResponseError('status 503')": 40,
        "ConnectionRefusedError(111)": 2,
    }
    closed = tmp_path / "closed.csv"
    closed.write_text(header + "GET,GET,CatchResponseError('status 503'),7\n")
    assert locust_stats.errors(closed) == {"CatchResponseError('status 503')": 7}
