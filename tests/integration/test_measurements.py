"""Measurements on real stacks: calibrated close delays, census, flags joined by unique id.

One matrix (two versions × four scenarios) feeds most assertions, so the stacks are
brought up once; calibration has its own run (the `calibrate` verb).
"""

import json
import shutil
import textwrap

import pytest

from harness.stack.project import leftovers

MATRIX = textwrap.dedent(
    """
    name: measurements
    versions: [debian:bullseye, debian:bookworm]
    baseline: debian:bullseye
    load: {users: 10, spawn_rate: 10, duration_s: 4}
    scenarios:
      - name: half-close
        params: {tls: "off", variant: fin}
      - name: chunked-stall
        params: {chunk_sizes: [31, 32, 39, 40], per_size: 4}
      - name: keepalive-vs-close
        params: {keepalive: false}
      - name: connect-timeout
        params: {backend: refused}
    """
)


@pytest.fixture(scope="module")
def run(harness, tmp_path_factory):
    matrix = tmp_path_factory.mktemp("matrix") / "measurements.yaml"
    matrix.write_text(MATRIX)
    proc = harness("matrix", str(matrix), timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = harness.newest_run()
    cells = {(c["scenario"], c["version"]["reported"]): c for c in harness.cells(run_dir)}
    assert len(cells) == 8
    assert all(c["status"] == "ok" for c in cells.values()), [
        c.get("error") for c in cells.values()
    ]
    return run_dir, cells, proc.stdout


def test_calibration_probe_and_wire_agree_with_injected_delay(harness):
    proc = harness("calibrate", timeout=900)
    # The calibration refuses a cell whose target (a process too) sent more than 2 of
    # its 20 FINs over 3 ms late: the machine, not the probe, and it says to run again.
    # Here that happened once in 11 runs (3 of 20, 3.5-4.7 ms late): allowed, and the
    # probe is held to the wire on every connection below all the same.
    refused = [line for line in proc.stderr.splitlines() if line.startswith("out of tolerance")]
    assert all("the target itself sent its FIN late" in line for line in refused), refused
    assert proc.returncode == (1 if refused else 0), proc.stdout[-2000:] + proc.stderr[-2000:]
    records = harness.cells(harness.newest_run())
    # Each d under the gentle load (one start every 50 ms) and under the scenarios' own
    # (20 at once, 5 ms apart: what half-close and chunked-stall put on the probe).
    loads = sorted((r["params"]["fin_delay_ms"], r["params"]["stagger_ms"]) for r in records)
    assert loads == [(d, s) for d in (0, 50, 1000, 5000) for s in (5, 50)]
    assert all(r["params"]["concurrency"] == 20 for r in records)
    for record in records:
        d, at = record["params"]["fin_delay_ms"], (record["params"]["stagger_ms"], "ms apart")
        probe = record["metrics"]["probe"]
        assert probe["ends"] == {"fin": 20}, (d, at, probe["ends"])
        assert abs(probe["delay_ms"]["p50"] - d) <= 2, (d, at, probe["delay_ms"])
        joined = record["metrics"]["probe_vs_wire"]
        assert joined["compared"] == 20
        assert joined["abs_diff_ms"]["p50"] <= 0.5, (d, at, joined["abs_diff_ms"])
        # Per connection: probe and wire within 2 ms, and the probe within 5 ms of d
        # wherever the wire saw the target's FIN on time. A busy machine may spoil one
        # or two connections (the target, or the probe, scheduled a few ms late): the
        # calibration lists those, and allows at most 2 of 20 of either kind, at either load.
        pairs = record["metrics"]["calibration_pairs"]
        agree = [(p, w) for p, w in pairs if abs(p - w) <= 2]
        assert len(agree) >= 18, (d, at, pairs)
        assert joined["within_tolerance"] == len(agree)
        on_time = [p for p, w in agree if abs(w - d) <= 3]
        assert len(on_time) >= 16, (d, at, pairs)
        assert all(abs(p - d) <= 5 for p in on_time), (d, at, pairs)
    assert "injected ms" in proc.stdout
    assert proc.stdout.count("OUT OF TOLERANCE") == len(refused), proc.stdout
    assert "20 at once, 5 ms apart" in proc.stdout and "20 at once, 50 ms apart" in proc.stdout


@pytest.mark.parametrize("version", ["2.2.9", "2.6.12"])
def test_fin_over_plain_http_closes_at_once(run, version):
    _, cells, _ = run
    probe = cells[("half-close", version)]["metrics"]["probe"]
    assert probe["ends"] == {"fin": 20}
    assert probe["delay_ms"]["p50"] < 10
    # The wire saw the same closes; 20 connections at once in one gevent loop blur
    # the probe's clock by a few ms at worst (the calibration bounds it at 2 ms on
    # 18 or more of 20 connections, against a target that answers instantly).
    wire = cells[("half-close", version)]["metrics"]["probe_vs_wire"]
    assert wire["compared"] == 20
    assert wire["abs_diff_ms"]["p50"] <= 1 and wire["abs_diff_ms"]["max"] <= 10
    # the calibration's bound, at the calibration's "20 at once, 5 ms apart" load
    assert wire["within_tolerance"] >= 18, wire


def test_chunked_stall_shows_on_2_6_12_only(run):
    _, cells, stdout = run
    old, new = cells[("chunked-stall", "2.2.9")], cells[("chunked-stall", "2.6.12")]
    assert old["metrics"]["probe"]["stalled"] == 0
    stalled = new["metrics"]["probe"]["stalled"]
    assert stalled >= 1
    # a stalled connection waited for timeout server; HAProxy logged it as sD--
    stalls = [v for v in new["metrics"]["probe"]["sweep"] if v["stalled"]]
    assert {v["flag"] for v in stalls} == {"sD--"}
    assert all(v["delay_ms"] > 500 for v in stalls)
    assert new["metrics"]["haproxy"]["termination_states"]["sD--"] == stalled
    assert "STALL" in stdout
    # The heaviest load on the probe (chunked readers at once): 35-40 of 40 within 2 ms
    # in the default matrix's cells here, the misses as 20 readers woke at once; the cell
    # records how many, for the report's column.
    for cell in (old, new):
        joined = cell["metrics"]["probe_vs_wire"]
        assert joined["compared"] == 16
        assert joined["within_tolerance"] >= 12, joined


@pytest.mark.parametrize("version", ["2.2.9", "2.6.12"])
def test_connection_close_leaves_time_wait_where_the_close_began(run, version):
    _, cells, _ = run
    metrics = cells[("keepalive-vs-close", version)]["metrics"]
    closers = metrics["wire"]["first_closer"]
    assert metrics["wire"]["connections"] > 500
    # With Connection: close either side may close first (the client library closes
    # as soon as it has read the response, racing HAProxy's close). The wire says
    # which did, per connection; TIME-WAIT must sit on exactly that side: on
    # HAProxy's accepted connections ("in") or on the client's own ("out").
    census = metrics["census"]
    on_haproxy = census["haproxy"]["states"].get("TIME-WAIT/in", {}).get("peak", 0)
    on_client = census["client"]["states"].get("TIME-WAIT/out", {}).get("peak", 0)
    for seen, closed_first in (
        (on_haproxy, closers.get("proxy", 0)),
        (on_client, closers.get("client", 0)),
    ):
        # TIME-WAIT lasts 60 s, longer than the cell, so nearly every close is still
        # counted. Some are not: when HAProxy closed first, the client's port is free at
        # once and may be reused for a new connection whose SYN recycles HAProxy's
        # TIME-WAIT on that 4-tuple (about 1 in 10 here); a few more are reset by a
        # FIN/ACK race.
        assert 0.8 * closed_first <= seen <= 1.05 * closed_first + 20, (seen, closers)
    assert census["haproxy"]["rate_hz"] >= 5 and census["client"]["rate_hz"] >= 5


@pytest.mark.parametrize("version", ["2.2.9", "2.6.12"])
def test_refused_backend_gives_503_whose_flags_match_client_failures(run, version):
    _, cells, _ = run
    metrics = cells[("connect-timeout", version)]["metrics"]
    assert metrics["haproxy"]["status_codes"].get("503", 0) > 10
    assert all(flag[0] in "Ss" for flag in metrics["haproxy"]["termination_states"])
    failures = metrics["client_failures"]
    assert failures["count"] == metrics["load"]["failures"] > 10
    # every failure that got a response is found in HAProxy's log by its unique id
    # (only requests cut off when the load stopped have none), unless HAProxy counted
    # its line as dropped (two threads colliding on the log file)
    assert failures["with_id"] >= failures["count"] - 5
    dropped = metrics["haproxy_counters"]["info"]["DroppedLogs"]
    assert failures["with_id"] - dropped <= failures["matched_in_log"] <= failures["with_id"]
    assert all(flag[0] in "Ss" for flag in failures["flags"])


def test_report_outputs_exist_and_explain_flags(run):
    run_dir, _, _ = run
    report = (run_dir / "report.md").read_text()
    assert "## chunked-stall" in report and "## Provenance" in report
    assert "`sD--`" in report and "`SC--`" in report  # flags seen, with their meaning
    assert "haproxy -vv" not in report or "HAProxy version" in report
    for name in ("report.html", "results.csv", "results.json", "verdicts.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir.parent / "index.md").exists()


def test_rerun_repeats_a_cell_from_its_folder(harness, run):
    run_dir, cells, _ = run
    cell = cells[("half-close", "2.6.12")]
    # What the folder says about commands and images is not run: the cell is planned
    # again from its validated parameters (a shared folder must not reach the host).
    hostile = json.loads((run_dir / cell["cell"] / "cell.json").read_text())
    hostile["load_args"] = ["sh", "-c", "touch /out/pwned"]
    hostile["images"] = {"client": "alpine:latest"}
    (run_dir / cell["cell"] / "cell.json").write_text(json.dumps(hostile))
    proc = harness("rerun", str(run_dir / cell["cell"]), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "original" in proc.stdout and "re-run" in proc.stdout
    [again] = [p for p in run_dir.iterdir() if p.name.startswith(cell["cell"] + "-rerun-")]
    record = json.loads((again / "cell.json").read_text())
    assert record["status"] == "ok"
    assert record["metrics"]["probe"]["ends"] == {"fin": 20}
    assert record["project"] != cell["project"]
    assert record["load_args"][:3] == ["locust", "-f", "/locustfiles/close_delay.py"]
    assert record["images"]["client"].startswith("harness-client:")
    assert not (again / "pwned").exists()
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda cell: (cell / "compose.yaml").write_text(
                (cell / "compose.yaml").read_text() + "    privileged: true\n"
            ),
            "compose.yaml: edited since its run rendered it",
            id="compose-edited",
        ),
        pytest.param(
            lambda cell: (cell / "haproxy.cfg").write_text(
                (cell / "haproxy.cfg").read_text().replace("30s", "30s\nglobal", 1)
            ),
            "haproxy.cfg: edited since its run rendered it",
            id="haproxy-cfg-edited",
        ),
        pytest.param(
            # refused by the typed record already (a newline is no parameter text)
            lambda cell: _edit_record(cell, params={"timeout_client": "30s\nglobal"}),
            "not the cell.json the harness writes: at params.timeout_client",
            id="hostile-parameter",
        ),
        pytest.param(
            lambda cell: _edit_record(cell, run="x\nprivileged: true"),
            "at run, value error, a control character (0xa) in the text",
            id="hostile-run-id",
        ),
        pytest.param(
            lambda cell: _edit_record(cell, version={"spec": "image:--help"}),
            "'--help' is not an image reference Docker accepts",
            id="hostile-version",
        ),
    ],
)
def test_rerun_refuses_a_folder_it_cannot_trust(harness, run, tmp_path, edit, message):
    run_dir, cells, _ = run
    source = run_dir / cells[("half-close", "2.6.12")]["cell"]
    copy = tmp_path / "shared-run" / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*-rerun-*"))
    edit(copy)
    before = leftovers(None)
    proc = harness("rerun", str(copy), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no rerun folder
    assert leftovers(None) == before == {"containers": [], "networks": [], "volumes": []}


def _edit_record(cell, **changes):
    record = json.loads((cell / "cell.json").read_text())
    for key, value in changes.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    (cell / "cell.json").write_text(json.dumps(record))
