"""error-fate and half-close's request bodies (issue 13, point 4): parameter validation,
knobs, and each client connection's fate joined to its log line by client port."""

import json
from pathlib import Path

import pytest

from harness.analyse import probe_samples
from harness.analyse.haproxy_log import parse_line
from harness.analyse.probe_samples import Fate, fate_of, fates
from harness.analyse.record import ProbeMetrics, load_cell
from harness.errors import SpecError
from harness.plan import scenarios
from harness.report import tables


def _line(port: int, status: int, state: str) -> str:
    return (
        f"172.18.0.5:{port} [24/Nov/2026:21:30:29.001] fe be/app -1/0/-1/-1/200 {status} "
        f'217 {state} 1/1/0/0/0 0/0 - "GET / HTTP/1.1"'
    )


def _sample(port: int | None, statuses: list[int], end: str, delay: float | None) -> dict:
    return {"src_port": port, "statuses": statuses, "end": end, "delay_ms": delay}


def test_fates_join_by_client_port_and_count_closed_and_kept():
    entries = [
        parse_line(_line(40001, 503, "sC--")),
        parse_line(_line(40002, 503, "sC--")),
        parse_line(_line(40003, 503, "sC--")),
        parse_line(_line(40004, 200, "----")),
        # a port's earlier request: its last line is the one that counts
        parse_line(_line(40005, 200, "----")),
        parse_line(_line(40005, 504, "sH--")),
    ]
    assert all(entries)
    samples = [
        _sample(40001, [503], "fin", 1.0),
        _sample(40002, [503], "fin", 3.0),
        _sample(40003, [503], "rst", 2.0),
        _sample(40004, [200], "open", None),
        _sample(40005, [200, 504], "fin", 0.5),
        _sample(49999, [503], "open", None),  # no log line
        _sample(None, [], "error", None),  # never connected: left out
    ]
    joined = fate_of(samples, entries)
    assert len(joined) == 6
    assert joined[4] == Fate(504, "sH--", "fin", 0.5)
    assert joined[5] == Fate(503, "not logged", "open", None)
    rows = fates(joined)
    assert rows[0] == {
        "status": 503, "state": "sC--", "connections": 3, "closed": 3, "reset": 1, "kept": 0,
        "delay_p50_ms": 2.0,
    }  # fmt: skip
    by_key = {(r["status"], r["state"]): r for r in rows}
    assert by_key[(200, "----")] == {
        "status": 200, "state": "----", "connections": 1, "closed": 0, "reset": 0, "kept": 1,
        "delay_p50_ms": None,
    }  # fmt: skip
    assert by_key[(504, "sH--")]["closed"] == 1
    assert by_key[(503, "not logged")]["kept"] == 1
    # what the record holds validates against its model
    summary = probe_samples.summarise(samples)
    summary["fates"] = rows
    assert ProbeMetrics.model_validate(summary, strict=False).fates[0].reset == 1


def test_a_connection_without_a_response_has_no_status():
    rows = fates(fate_of([_sample(40001, [], "fin", 5.0)], []))
    assert rows == [{"status": None, "state": "not logged", "connections": 1, "closed": 1,
                     "reset": 0, "kept": 0, "delay_p50_ms": 5.0}]  # fmt: skip


def _resolve(name: str, **params):
    scenario = scenarios.SCENARIOS[name]
    return scenario.knobs(scenario.resolve(params, "m.yaml"))


@pytest.mark.parametrize(
    ("error", "server", "timeout_server", "server_options", "delay"),
    [
        ("none", ("backend", 8080), "30s", "", "0"),
        ("refused", ("backend", 8081), "30s", "", "0"),
        ("connect-timeout", ("nowhere", 8080), "30s", "", "0"),
        ("server-timeout", ("backend", 8080), "200ms", "", "1000"),
        ("queue", ("backend", 8080), "30s", "maxconn 1", "1000"),
    ],
)
def test_error_fate_knobs(error, server, timeout_server, server_options, delay):
    knobs = _resolve("error-fate", error=error)
    assert knobs.server == server
    assert knobs.haproxy.timeout_server == timeout_server
    assert knobs.haproxy.server_options == server_options
    assert knobs.haproxy.defaults_lines == ("retries 0", "timeout queue 200ms")
    assert knobs.backend_env["BACKEND_DELAY_MS"] == delay
    assert isinstance(knobs.load, scenarios.Probe)
    assert knobs.load.variant == "hold" and knobs.load.deadline_s == 2.0


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("error-fate", {"error": "bad-gateway"}, "error"),
        # the bound stays below HAProxy's timeout http-keep-alive (10 s)
        ("error-fate", {"deadline_s": 10.0}, "deadline_s"),
        ("error-fate", {"connections": 201}, "connections"),
        ("half-close", {"chunked_upload": True}, "chunked_upload needs a body"),
        ("half-close", {"body_bytes": 10_000_001}, "body_bytes"),
        ("half-close", {"body_bytes": "100"}, "body_bytes"),
    ],
)
def test_bad_parameters_are_refused(name, params, message):
    with pytest.raises(SpecError, match=message):
        scenarios.SCENARIOS[name].resolve(params, "m.yaml")


def test_half_close_body_reaches_the_probe_and_is_left_out_at_its_default():
    half_close = scenarios.SCENARIOS["half-close"]
    assert "body_bytes" not in half_close.resolve({}, "m.yaml")
    assert "chunked_upload" not in half_close.resolve({}, "m.yaml")
    knobs = _resolve("half-close", variant="fin-with-request", body_bytes=5000,
                     chunked_upload=True)  # fmt: skip
    env = knobs.load.env("haproxy")
    assert (env["PROBE_BODY_BYTES"], env["PROBE_CHUNKED"]) == ("5000", "on")
    env = _resolve("half-close").load.env("haproxy")
    assert (env["PROBE_BODY_BYTES"], env["PROBE_CHUNKED"]) == ("0", "off")


def test_the_report_table_pools_a_cells_connections_by_status_and_state(tmp_path):
    recorded = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"
    base = load_cell(next(recorded.glob("*2.6.12*/cell.json")))
    record = base.model_copy(
        update={"scenario": "error-fate", "params": {"error": "queue"}, "cell": "c1"}
    )
    folder = tmp_path / "c1"
    folder.mkdir()
    lines = [_line(40001, 503, "sQ--"), _line(40002, 503, "sQ--"), _line(40003, 200, "----")]
    (folder / "haproxy.log").write_text("\n".join(lines) + "\n")
    samples = [
        _sample(40001, [503], "open", None),
        _sample(40002, [503], "fin", 0.25),
        _sample(40003, [200], "open", None),
    ]
    (folder / "probe.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    rows = tables.fate_rows([record], tmp_path)
    assert [r[2:] for r in rows] == [
        ["503", "`sQ--`", "2", "1", "0", "1", "0.2 ms"],
        ["200", "`----`", "1", "0", "0", "1", "-"],
    ]
    assert len(tables.FATE_HEADERS) == len(rows[0])
