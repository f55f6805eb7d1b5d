"""wrk.json as the client's wrk script writes it, read back into the load record; a
file that is not that shape (a run folder from someone else) is a ValueError naming it."""

import json

import numpy as np
import pytest

from harness.analyse import cell_metrics, latency, wrk

BASE = {
    "requests": 1000, "duration_us": 2_000_000, "bytes": 280_000, "threads": 2,
    "errors": {"connect": 0, "read": 1, "write": 0, "status": 3, "timeout": 2},
}  # fmt: skip


def _write(tmp_path, **extra):
    path = tmp_path / wrk.WRK_FILE
    path.write_text(json.dumps({**BASE, **extra}))
    return path


def test_the_exact_histogram_gives_the_load_numbers_in_locusts_keys(tmp_path):
    _write(tmp_path, latency_us=[[250, 600], [900, 390], [40_000, 10]])
    load = wrk.aggregated(tmp_path / wrk.WRK_FILE)
    assert load["requests"] == 1000
    assert load["rps"] == 500.0
    assert load["failures"] == 6  # status > 399 + read + timeout
    values, counts = latency.histogram(tmp_path)[:2]
    assert values.tolist() == [0.25, 0.9, 40.0] and counts.tolist() == [600, 390, 10]
    summary = latency.summary(values, counts)
    assert (summary["p50_ms"], summary["p90_ms"], summary["p99_ms"]) == (0.25, 0.9, 0.9)
    assert wrk.status_counts(tmp_path / wrk.WRK_FILE) == {"<400": 997, ">=400": 3}


def test_quantiles_stand_for_equal_shares_of_the_requests(tmp_path):
    _write(tmp_path, latency_quantiles_us=[100 * (i + 1) for i in range(101)])
    values, counts = wrk.histogram(tmp_path / wrk.WRK_FILE)
    assert counts.sum() == 1000 and counts.min() >= 9 and counts.max() <= 10
    assert np.all(np.diff(values) > 0)
    assert latency.summary(values, counts)["p50_ms"] == pytest.approx(5.1, abs=0.1)


def test_a_cell_folder_with_wrk_json_has_its_load_latency_and_client_limit(tmp_path):
    _write(tmp_path, latency_us=[[300, 1000]])
    (tmp_path / "timing.json").write_text(json.dumps({"load_start": 10.0, "load_end": 12.0,
                                                       "drain_end": 13.0}))  # fmt: skip
    metrics = cell_metrics.compute(tmp_path, "haproxy")  # through the typed record
    assert metrics.load is not None and metrics.load.latency_source == wrk.SOURCE_WRK
    assert metrics.load.p99_ms == 0.3 and metrics.load.latency_count == 1000
    assert metrics.load.generator == "wrk" and metrics.load.threads == 2
    assert metrics.client_errors == {"read": 1, "timeout": 2}
    assert metrics.client_status_codes == {"<400": 997, ">=400": 3}


@pytest.mark.parametrize(
    "change",
    [
        {"requests": "1000"},  # a string where a count goes
        {"requests": -1},
        {"requests": 10**30},
        {"threads": 0},
        {"errors": {"connect": 0}},
        {"extra": 1},
        {"latency_us": [[1, 2]], "latency_quantiles_us": [1]},  # both forms
        {"latency_us": [["x", 2]]},
        {"latency_quantiles_us": []},
    ],
)
def test_a_wrk_json_that_is_not_the_scripts_is_refused_by_name(tmp_path, change):
    body = {**BASE, **change}
    if "latency_us" not in change and "latency_quantiles_us" not in change:
        body["latency_us"] = [[1, 1]]
    path = tmp_path / wrk.WRK_FILE
    path.write_text(json.dumps(body))
    with pytest.raises(ValueError, match=r"wrk\.json: not the wrk\.json"):
        wrk.read(path)


def test_a_wrk_json_without_a_latency_form_is_refused(tmp_path):
    path = _write(tmp_path)
    with pytest.raises(ValueError, match=r"not the wrk\.json"):
        wrk.read(path)


@pytest.mark.parametrize(
    "change",
    [
        {"latency_us": [[300, -5]]},  # a negative count
        {"latency_us": [[300, 10**20]]},  # beyond int64: an OverflowError in numpy
        {"latency_us": [[300, 2**62], [400, 2**62]]},  # each fits, their sum wraps around
        {"latency_us": [[-300, 1]]},  # a negative latency
        {"latency_us": [[10**20, 1]]},  # beyond any record's float
        {"latency_quantiles_us": [-5, 3]},
        {"latency_quantiles_us": [10**30]},
        {"errors": {"connect": 0, "read": 0, "write": 0, "status": 5000, "timeout": 0}},
        {"requests": 10**15, "duration_us": 1},  # 10^21 req/s: beyond any record's float
    ],
)
def test_a_wrk_json_the_analysis_cannot_hold_is_refused_by_name_not_a_traceback(tmp_path, change):
    # wrk's own bounds: counts and µs are non-negative, a status error is a completed
    # request (src/wrk.c counts it in response_complete), so errors.status <= requests.
    body = {**BASE, "latency_us": [[300, 1]], **change}
    if "latency_quantiles_us" in change:
        del body["latency_us"]
    (tmp_path / wrk.WRK_FILE).write_text(json.dumps(body))
    with pytest.raises(ValueError, match=r"wrk\.json: not the wrk\.json"):
        wrk.read(tmp_path / wrk.WRK_FILE)


def test_a_wrk_json_at_every_bound_still_makes_a_valid_record(tmp_path):
    # whatever wrk.read accepts, the typed cell record holds (no overflow, no refusal)
    top = wrk.MAX_LATENCY_US
    _write(
        tmp_path,
        requests=10**15, duration_us=10**15 * 10**6 // wrk.MAX_RPS,
        errors={"connect": 10**15, "read": 10**15, "write": 10**15, "status": 10**15,
                "timeout": 10**15},
        latency_us=[[0, wrk.MAX_SAMPLES - 1], [top, 1]],
    )  # fmt: skip
    (tmp_path / "timing.json").write_text(json.dumps({"load_start": 10.0, "load_end": 12.0,
                                                       "drain_end": 13.0}))  # fmt: skip
    metrics = cell_metrics.compute(tmp_path, "haproxy")
    assert metrics.load is not None and metrics.load.max_ms == top / 1000
    (tmp_path / wrk.WRK_FILE).write_text(json.dumps({**BASE, "latency_quantiles_us": [0, top]}))
    assert cell_metrics.compute(tmp_path, "haproxy").load.max_ms == top / 1000
