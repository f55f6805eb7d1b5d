"""h2load's output and per-request log, as nghttp2 1.52's h2load writes them, read back
into the load record; anything else (a run folder from someone else) is a ValueError
naming the file. Also: the matrix's h2load settings, the HTTP/2 knob as rendered, and
h2load's command line."""

import json

import pytest

from harness.analyse import cell_metrics, h2load, latency
from harness.errors import SpecError
from harness.plan import spec
from harness.stack import render, workload
from harness.stack.render import Network

# A 3 s h2c run through HAProxy 2.6.12 (tests/integration/test_h2load.py), shortened
OUTPUT = """starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 3s of main duration for measurements.
Warm-up started for thread #0.
Main benchmark duration is started for thread #0.
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 3.00s, 2.00 req/s, 4.67MB/s
requests: 6 total, 8 started, 6 done, 4 succeeded, 2 failed, 1 errored, 0 timeout
status codes: 4 2xx, 0 3xx, 0 4xx, 1 5xx
traffic: 14.01MB (14694292) total, 5.77MB (6051848) headers (space savings 19.65%), 7.23MB (7576832) data
                     min         max         mean         sd        +/- sd
time for request:      186us     43.45ms      1.99ms      2.11ms    92.74%
"""  # noqa: E501
START = 1_795_995_930_000_000
ROWS = [(START, 200, 300), (START + 10, 200, 300), (START + 20, 200, 900),
        (START + 30, 503, 1200), (START + 40, -1, 5000), (START + 50, 200, 40_000)]  # fmt: skip


def _write(tmp_path, output=OUTPUT, rows=ROWS):
    (tmp_path / h2load.SUMMARY_FILE).write_text(output)
    text = "".join(f"{a}\t{b}\t{c}\n" for a, b, c in rows)
    (tmp_path / h2load.REQUESTS_FILE).write_text(text)
    (tmp_path / "timing.json").write_text(json.dumps({"load_start": START / 1e6 - 1,
                                                       "load_end": START / 1e6 + 3,
                                                       "drain_end": START / 1e6 + 4}))  # fmt: skip


def test_a_cell_folder_with_h2loads_files_has_its_load_latency_and_statuses(tmp_path):
    _write(tmp_path)
    metrics = cell_metrics.compute(tmp_path, "haproxy")  # through the typed record
    load = metrics.load
    assert load is not None and load.generator == "h2load" and load.threads == 1
    assert (load.requests, load.failures, load.rps) == (6, 2, 2.0)
    # the latency of the requests that got a status, one percentile definition
    assert load.latency_source == h2load.SOURCE_H2LOAD and load.latency_count == 5
    assert (load.p50_ms, load.p90_ms, load.max_ms) == (0.9, 40.0, 40.0)
    assert metrics.client_status_codes == {"200": 4, "503": 1, "none": 1}
    assert metrics.client_errors == {"failed": 2, "errored": 1}
    values, counts, _ = latency.histogram(tmp_path)
    assert values.tolist() == [0.3, 0.9, 1.2, 40.0] and counts.tolist() == [2, 1, 1, 1]
    # the load's window: the first request's start to the last response's end
    assert h2load.window(tmp_path / h2load.REQUESTS_FILE) == (START / 1e6, (START + 40050) / 1e6)


@pytest.mark.parametrize(
    "output",
    [
        "",
        OUTPUT.replace("finished in 3.00s", "finished in 3.00 s"),
        OUTPUT.replace("spawning thread #0", "spawning"),
        OUTPUT.replace("4 succeeded", "7 succeeded"),  # more than done
        OUTPUT.replace("6 done", "1" * 20 + " done"),
    ],
    ids=["empty", "unit", "threads", "succeeded", "huge"],
)
def test_an_output_that_is_not_h2loads_summary_is_refused_by_name(tmp_path, output):
    _write(tmp_path, output=output)
    with pytest.raises(ValueError, match=h2load.SUMMARY_FILE):
        cell_metrics.compute(tmp_path, "haproxy")


@pytest.mark.parametrize(
    "text",
    [
        "1\t200\n",  # two columns
        "1\t200\t3\t4\n",  # four
        "1\t200\tx\n",
        "1\t200\t" + "9" * 30 + "\n",  # beyond int64
        "1\t200\t-5\n",
        "1\t42\t5\n",  # not a status
        "1\t-2\t5\n",
        "1\t200\t10000000000000\n",  # above the record's latency bound
    ],
)
def test_a_request_log_that_is_not_h2loads_is_refused_by_name(tmp_path, text):
    _write(tmp_path)
    (tmp_path / h2load.REQUESTS_FILE).write_text(text)
    with pytest.raises(ValueError, match=h2load.REQUESTS_FILE):
        cell_metrics.compute(tmp_path, "haproxy")


def _cell(tmp_path, load, grid="{http2: [h2c, h2]}", scenario="keepalive-vs-close"):
    path = tmp_path / "m.yaml"
    path.write_text(f"name: t\nversions: [debian:bookworm]\nload: {load}\nscenarios:\n"
                    f"  - {{name: {scenario}, grid: {grid}}}\n")  # fmt: skip
    return spec.load(path, "run1").cells


def test_http2_renders_into_the_frontend_and_h2load_speaks_it(tmp_path):
    h2c, h2 = _cell(tmp_path, "{generator: h2load, users: 8, threads: 2, streams: 10}")
    net = Network.for_project("p")
    cfg = render.haproxy_cfg(h2c, h2c.knobs, net)
    assert "    bind :8080 proto h2\n" in cfg and ":8443" not in cfg
    args = workload.load_args(h2c, h2c.knobs, net)
    assert args == ["h2load", "--clients", "8", "--threads", "2", "--max-concurrent-streams",
                    "10", "--duration", "10", "--log-file", workload.H2LOAD_LOG,
                    f"http://{net.haproxy}:8080/"]  # fmt: skip
    cfg = render.haproxy_cfg(h2, h2.knobs, net)
    assert "    bind :8080\n" in cfg
    assert "bind :8443 ssl crt /etc/harness/certs/haproxy.pem alpn h2,http/1.1\n" in cfg
    args = workload.load_args(h2, h2.knobs, net)
    assert args[-5:] == ["--npn-list", "h2", "--log-file", workload.H2LOAD_LOG,
                         f"https://{net.haproxy}:8443/"]  # fmt: skip
    [cell] = _cell(tmp_path, "{generator: h2load, max_requests: 5000}", "{http2: [h2c]}")
    args = workload.load_args(cell, cell.knobs, net)
    assert "--requests" in args and "--duration" not in args


@pytest.mark.parametrize(
    ("load", "grid", "message"),
    [
        ("{generator: wrk}", "{http2: [h2c]}", r"http2=h2c needs load generator: h2load; wrk"),
        ("{}", "{http2: [h2]}", r"http2=h2 needs load generator: h2load; locust"),
        ("{generator: h2load}", "{keepalive: [true]}", r"h2load speaks HTTP/2, but scenario "
         r"'keepalive-vs-close' \(defaults\) leaves .*keepalive-vs-close\)"),
        ("{generator: h2load}", "{http2: [h2c], via: [backend]}", r"needs mode: http and via"),
        ("{generator: h2load}", "{http2: [h2c], mode: [tcp]}", r"needs mode: http and via"),
        ("{generator: h2load}", "{http2: [h2], keepalive: [false]}", r"needs keepalive: true"),
        ("{generator: h2load}", "{http2: ['h2 --h1']}", r"http2.*Input should be 'off', 'h2c'"),
    ],
)  # fmt: skip
def test_a_cell_whose_generator_cannot_speak_its_frontends_http_is_refused(
    tmp_path, load, grid, message
):
    with pytest.raises(SpecError, match=message):
        _cell(tmp_path, load, grid)
