"""The native clients' client.json read back into the load record, their settings on
the command line (typed values only), and the field-note claims judged on records."""

import json
import typing

import pytest

from harness.analyse import cell_metrics, latency, native
from harness.plan import spec
from harness.report import claims, tables
from harness.stack import workload
from harness.stack.render import Network
from tests.records import make, manifest

GOOD = {
    "generator": "requests", "requests": 100, "duration_us": 2_000_000,
    "status": {"200": 97, "503": 3}, "errors": {"ConnectionError": 2},
    "latency_us": [[250, 60], [900, 40], [40_000, 2]], "connections": 102, "ports": 102,
}  # fmt: skip


def _write(tmp_path, **changes):
    (tmp_path / native.NATIVE_FILE).write_text(json.dumps({**GOOD, **changes}))
    return tmp_path / native.NATIVE_FILE


def test_client_json_gives_the_load_numbers_in_locusts_keys(tmp_path):
    _write(tmp_path)
    load = native.aggregated(tmp_path / native.NATIVE_FILE)
    assert load["requests"] == 102  # 100 responses and 2 requests without one
    assert load["failures"] == 5  # the 503s and the errors
    assert load["rps"] == 51.0
    assert (load["connections"], load["ports"]) == (102, 102)
    values, counts, source = latency.histogram(tmp_path)
    assert values.tolist() == [0.25, 0.9, 40.0] and counts.tolist() == [60, 40, 2]
    assert source == native.SOURCE_NATIVE
    m = cell_metrics.compute(tmp_path)
    assert m.load is not None and m.load.generator == "requests" and m.load.ports == 102
    assert m.load.p50_ms == 0.25 and m.load.latency_count == 102
    assert m.client_status_codes == {"200": 97, "503": 3}
    assert m.client_errors == {"ConnectionError": 2}


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"generator": "curl"}, "generator"),
        ({"status": {"200": 99, "503": 3}}, "status counts do not add up"),
        ({"status": {"200 | x": 97, "503": 3}}, "status.200 | x"),
        ({"errors": {"a\nb": 1}}, "errors.a\nb"),
        ({"ports": 103}, "more distinct ports than connections"),
        ({"latency_us": [[-1, 2]]}, "latency_us.0.0"),
        ({"requests": 10**16}, "requests"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_client_json_not_as_the_clients_write_it_is_refused_naming_it(tmp_path, changes, where):
    path = _write(tmp_path, **changes)
    with pytest.raises(ValueError, match=r"not the client\.json") as info:
        native.read(path)
    assert where in str(info.value) and str(path) in str(info.value)


def _cell(load):
    plan = spec.expand(
        {"name": "t", "versions": ["debian:bookworm"], "load": load,
         "scenarios": [{"name": "keepalive-vs-close"}]}, "run1",
    )  # fmt: skip
    return plan.cells[0]


NET = Network(subnet="172.30.9.0/24", client="172.30.9.2", haproxy="172.30.9.3",
              backend="172.30.9.4", nowhere="172.30.9.9")  # fmt: skip


@pytest.mark.parametrize(
    ("load", "tail"),
    [
        ({"generator": "requests", "session": True, "users": 3},
         ["python3", "/native/requests_load.py", "--url", "http://172.30.9.3:8080/",
          "--users", "3", "--duration", "10", "--max-requests", "0",
          "--out", "/out/client.json", "--session", "on", "--concurrency", "threads"]),
        ({"generator": "requests", "concurrency": "eventlet", "users": 3},
         ["python3", "/native/requests_load.py", "--url", "http://172.30.9.3:8080/",
          "--users", "3", "--duration", "10", "--max-requests", "0",
          "--out", "/out/client.json", "--session", "off", "--concurrency", "eventlet"]),
        ({"generator": "node", "agent": "keepalive", "max_sockets": 5, "max_requests": 100},
         ["node", "/native/node_load.js", "--url", "http://172.30.9.3:8080/",
          "--users", "20", "--duration", "10", "--max-requests", "100",
          "--out", "/out/client.json", "--agent", "keepalive", "--max-sockets", "5"]),
        ({"generator": "go", "max_idle_conns": 100, "max_idle_conns_per_host": 200,
          "duration_s": 2.5},
         ["go-load", "-url", "http://172.30.9.3:8080/", "-users", "20", "-duration", "2.5",
          "-max-requests", "0", "-out", "/out/client.json", "-max-idle-conns", "100",
          "-max-idle-conns-per-host", "200"]),
        ({"generator": "go", "disable_keepalives": True, "pause_ms": 5},
         ["go-load", "-url", "http://172.30.9.3:8080/", "-users", "20", "-duration", "10",
          "-max-requests", "0", "-out", "/out/client.json", "-disable-keepalives",
          "-pause-ms", "5"]),
    ],
)  # fmt: skip
def test_each_client_gets_its_typed_settings_on_its_command_line(load, tail):
    cell = _cell(load)
    assert workload.NATIVE_FILE == native.NATIVE_FILE
    assert workload.load_args(cell, cell.knobs, NET) == tail


def test_a_native_client_is_refused_where_its_load_would_ignore_the_scenarios():
    with pytest.raises(spec.SpecError, match="sends Connection: close, which generator: node"):
        spec.expand(
            {"name": "t", "versions": ["debian:bookworm"], "load": {"generator": "node"},
             "scenarios": [{"name": "keepalive-vs-close", "params": {"keepalive": False}}]},
            "run1",
        )  # fmt: skip
    with pytest.raises(spec.SpecError, match="paces requests"):
        spec.expand(
            {"name": "t", "versions": ["debian:bookworm"], "load": {"generator": "go"},
             "scenarios": [{"name": "connect-timeout"}]}, "run1",
        )  # fmt: skip


def _record(load, tw, requests, ports, label="2.6.12 (debian:bookworm)"):
    return make({
        "scenario": "keepalive-vs-close", "params": {"keepalive": True},
        "version": {"spec": label},
        "load": {"mode": "closed-loop", "users": 4, **load},
        "metrics": {
            "load": {"requests": requests, "failures": 0, "rps": 100.0, "ports": ports,
                     "connections": ports, "generator": load["generator"]},
            "census": {"client": {"totals": {"TIME-WAIT": {"peak": tw}}}},
        },
    })  # fmt: skip


def test_claims_are_judged_per_version_on_the_cells_they_name():
    records = [
        _record({"generator": "requests", "session": False}, tw=480, requests=500, ports=500),
        _record({"generator": "requests", "session": True}, tw=0, requests=900, ports=4),
        _record({"generator": "go", "max_idle_conns": 100}, tw=3000, requests=9000, ports=3000),
        _record({"generator": "go", "max_idle_conns": 200}, tw=12, requests=9000, ports=200),
    ]
    found = [
        spec.Claim(note="no Session: a TIME-WAIT per request",
                   metric="time-wait-client-per-request", where={"session": False},
                   at_least=0.9),
        spec.Claim(note="Session: none", metric="time-wait-client-per-request",
                   where={"session": True}, at_most=0.01),
        spec.Claim(note="Session: as many ports as threads", metric="ports-used",
                   where={"session": True}, at_most=3),
        spec.Claim(note="pool 100: 10x", metric="time-wait-client",
                   where={"max_idle_conns": 100}, relative_to={"max_idle_conns": 200},
                   at_least=10),
        spec.Claim(note="node", metric="ports-used", where={"generator": "node"}, at_least=1),
    ]  # fmt: skip
    rows = [r.row() for r in claims.evaluate(found, records)]
    assert [r[3:] for r in rows] == [
        ["0.96", "time-wait-client-per-request ≥ 0.9", "held"],
        ["0", "time-wait-client-per-request ≤ 0.01", "held"],
        ["4", "ports-used ≤ 3", "did not hold"],
        ["250× (3000 / 12)", "time-wait-client ratio ≥ 10", "held"],
        ["-", "ports-used ≥ 1", "not measured"],
    ]
    assert set(claims.claim_metric_names()) == set(claims.METRICS)


def test_a_claim_against_no_time_wait_at_all_is_infinitely_many_times_it():
    records = [
        _record({"generator": "go", "max_idle_conns": 100}, tw=30, requests=90, ports=30),
        _record({"generator": "go", "max_idle_conns": 200}, tw=0, requests=90, ports=20),
    ]
    claim = spec.Claim(note="x", metric="time-wait-client", where={"max_idle_conns": 100},
                       relative_to={"max_idle_conns": 200}, at_least=10)  # fmt: skip
    [row] = claims.evaluate([claim], records)
    assert (row.measured, row.result) == ("∞× (30 / 0)", "held")


def test_tables_name_the_client_settings_so_cells_that_differ_there_are_apart():
    a = _record({"generator": "requests", "session": False}, tw=1, requests=1, ports=1)
    b = _record({"generator": "requests", "session": True}, tw=1, requests=1, ports=1)
    assert tables._params(a) != tables._params(b)
    assert tables._params(b).endswith("· requests, 4 users, session=True")
    [(_, _, headers, _)] = tables.cell_tables(None, "keepalive-vs-close", [a])
    assert headers[-3:] == ["connections opened", "ports used", "client errors"]


def test_claims_in_run_json_are_validated_like_the_matrixs():
    with pytest.raises(ValueError, match=r"claims\.0\.metric"):
        manifest({"matrix": {"name": "t", "claims": [
            {"note": "x", "metric": "rm -rf", "where": {"a": 1}, "at_least": 1}]}})  # fmt: skip


def test_proxy_overhead_pairs_a_native_clients_cell_only_with_its_own_client():
    def cell(via, load):
        return make({
            "scenario": "keepalive-vs-close", "params": {"keepalive": True, "via": via},
            "load": {"mode": "closed-loop", "users": 4, **load},
            "metrics": {"load": {"requests": 100, "failures": 0, "rps": 100.0,
                                 "mean_ms": 1.0}},
        })  # fmt: skip

    locust_via, locust_direct = cell("haproxy", {}), cell("backend", {})
    go_via = cell("haproxy", {"generator": "go", "max_idle_conns": 100})
    # before: keyed by version and keep-alive alone, the go cell took the locust cell's
    # place and was measured against Locust's direct cell
    lines = tables._proxy_overhead([locust_via, locust_direct, go_via])
    assert len(lines) == 1 and "(go" not in lines[0], lines
    go_direct = cell("backend", {"generator": "go", "max_idle_conns": 100})
    lines = tables._proxy_overhead([locust_via, locust_direct, go_via, go_direct])
    assert len(lines) == 2 and "(go, 4 users, max_idle_conns=100): proxy overhead" in lines[1]


@pytest.mark.parametrize("generator", ["requests", "node", "go"])
def test_run_takes_each_native_client_with_its_defaults(generator, monkeypatch):
    """`run --generator G` plans the field notes' own clients as a matrix entry's load:
    would (every generator the matrix takes is one the command line takes)."""
    from harness import cli

    planned = []
    monkeypatch.setattr(cli, "_dry_run", lambda plan, *a: planned.append(plan) or 0)
    argv = ["run", "--haproxy", "debian:bookworm", "--scenario", "keepalive-vs-close",
            "--generator", generator, "--users", "5", "--requests", "100", "--dry-run"]  # fmt: skip
    assert cli.main(argv) == 0
    [cell] = planned[0].cells
    assert (cell.load.generator, cell.load.max_requests) == (generator, 100)
    # the command line offers exactly the generators a matrix file's load: takes
    run = next(a for a in cli._parser()._subparsers._group_actions[0].choices["run"]._actions
               if a.dest == "generator")  # fmt: skip
    assert tuple(run.choices) == typing.get_args(spec.Load.model_fields["generator"].annotation)


def _seed_record(spec_text, label, params, metrics):
    return make({
        "scenario": "backend-closes-first", "params": params,
        "version": {"spec": spec_text, "label": label}, "metrics": metrics,
    })  # fmt: skip


def _pair(close_wait, fin_wait_2):
    def series(peak):
        return {"baseline": 0, "peak": peak, "peak_at_s": 1.0, "final": 0, "drain_s": None,
                "timeline": [[0.0, 0], [1.0, peak], [3.5, peak], [3.6, 0]]}  # fmt: skip

    return {"census": {"haproxy": {
        "samples": 40, "rate_hz": 10.0, "max_gap_s": 0.1, "captured_s": [0.0, 4.0],
        "states": {"CLOSE-WAIT/out": series(close_wait), "FIN-WAIT-2/in": series(fin_wait_2)},
        "totals": {},
    }}}  # fmt: skip


def test_seed_claims_read_the_pair_the_flags_and_the_stalls_per_version():
    old, new = ("debian:bullseye", "2.2.9 (debian:bullseye)"), ("debian:bookworm", "2.6.12 (b)")
    records = [
        _seed_record(*old, {"mode": "tcp"}, _pair(20, 20)),
        _seed_record(*new, {"mode": "tcp"}, _pair(20, 19)),
        _seed_record(*old, {"mode": "http"}, _pair(0, 20)),
        _seed_record(*new, {"backend": "blackhole"}, {"haproxy": {
            "total": 40, "termination_states": {"sC--": 36, "CD--": 4}, "status_codes": {},
            "status_classes": {}, "retries_total": 0, "redispatches": 0, "timers": {}}}),
        _seed_record(*old, {"chunk": 1}, {"probe": {
            "connections": 40, "delay_ms": {"count": 40, "p50": 0.4, "max": 2.0}, "ends": {},
            "complete": 40, "incomplete": 0, "stalled": 0, "bytes": {}, "flags": {}}}),
        _seed_record(*new, {"chunk": 1}, {"probe": {
            "connections": 40, "delay_ms": {"count": 40, "p50": 9000.0, "max": 9100.0},
            "ends": {}, "complete": 20, "incomplete": 20, "stalled": 19, "bytes": {},
            "flags": {}}}),
    ]  # fmt: skip
    found = [
        spec.Claim(note="pair", metric="close-wait-per-fin-wait-2", where={"mode": "tcp"},
                   at_least=0.9, at_most=1.1),
        spec.Claim(note="L7: none", metric="close-wait-haproxy-backend",
                   where={"mode": "http"}, at_most=0),
        spec.Claim(note="lasts", metric="close-wait-haproxy-backend-lasted-s",
                   where={"mode": "tcp"}, at_least=2),
        spec.Claim(note="sC", metric="sC-share", where={"backend": "blackhole"}, at_least=0.9),
        spec.Claim(note="stalls on the affected release", metric="stalled-share",
                   where={"chunk": 1}, at_least=0.4, versions=["debian:bookworm"]),
        spec.Claim(note="closes at once elsewhere", metric="close-delay-max-ms",
                   where={"chunk": 1}, at_most=1000, versions=["debian:bullseye"]),
        spec.Claim(note="named, not run", metric="stalled", where={"chunk": 1}, at_most=0,
                   versions=["debian:trixie"]),
    ]  # fmt: skip
    rows = [r.row() for r in claims.evaluate(found, records)]
    assert [[r[0], r[1], *r[3:]] for r in rows] == [
        ["pair", "2.2.9 (debian:bullseye)", "1", "0.9 ≤ close-wait-per-fin-wait-2 ≤ 1.1", "held"],
        ["pair", "2.6.12 (b)", "1.05", "0.9 ≤ close-wait-per-fin-wait-2 ≤ 1.1", "held"],
        ["L7: none", "2.2.9 (debian:bullseye)", "0", "close-wait-haproxy-backend ≤ 0", "held"],
        ["L7: none", "2.6.12 (b)", "-", "close-wait-haproxy-backend ≤ 0", "not measured"],
        ["lasts", "2.2.9 (debian:bullseye)", "2.5", "close-wait-haproxy-backend-lasted-s ≥ 2",
         "held"],
        ["lasts", "2.6.12 (b)", "2.5", "close-wait-haproxy-backend-lasted-s ≥ 2", "held"],
        ["sC", "2.2.9 (debian:bullseye)", "-", "sC-share ≥ 0.9", "not measured"],
        ["sC", "2.6.12 (b)", "0.9", "sC-share ≥ 0.9", "held"],
        ["stalls on the affected release", "2.6.12 (b)", "0.475", "stalled-share ≥ 0.4", "held"],
        ["closes at once elsewhere", "2.2.9 (debian:bullseye)", "2",
         "close-delay-max-ms ≤ 1000", "held"],
        ["named, not run", "debian:trixie", "-", "stalled ≤ 0", "not measured"],
    ]  # fmt: skip
    # a range fails on either side, and a pair without FIN-WAIT-2 is not measured
    [low] = claims.evaluate([found[0].model_copy(update={"at_most": 1.0})], records[1:2])
    assert (low.measured, low.result) == ("1.05", "did not hold")
    assert claims.METRICS["close-wait-per-fin-wait-2"](_seed_record(*old, {}, _pair(3, 0))) is None


def test_a_run_folders_claim_naming_no_version_spec_is_refused_where_it_stands():
    # run.json comes from other people: its claims are validated again, versions too
    claim = {"note": "x", "metric": "stalled", "where": {"scenario": "chunked-stall"},
             "at_most": 0}  # fmt: skip
    with pytest.raises(ValueError, match=r"run.json matrix.claims.0.versions: .*not a version"):
        claims.read({"claims": [{**claim, "versions": ["nope; rm -rf /"]}]})
    with pytest.raises(ValueError, match=r"run.json matrix.claims.0.versions.0: .*at most 300"):
        claims.read({"claims": [{**claim, "versions": ["debian:" + "x" * 400]}]})
    assert claims.read({"claims": [{**claim, "versions": ["debian:bookworm"]}]})[0].versions


# The groups of tests/unit/test_spec.py's ratio test, as a run.json's claim: the plan
# refuses those that share a cell, and a run.json edited to hold one is refused too (its
# ratio, the same cells over themselves, read 1: "held" whatever was measured).
SHARING = [
    ({"session": False}, {"session": False}, True),
    ({"generator": "requests"}, {"session": True}, True),
    ({"session": True}, {"generator": "requests"}, True),
    ({"scenario": "keepalive-vs-close"}, {"generator": "go"}, True),
    ({"session": False}, {"session": True}, False),
    ({"generator": "go"}, {"generator": "requests"}, False),
]


@pytest.mark.parametrize(("where", "relative_to", "shared"), SHARING)
def test_a_run_jsons_ratio_claim_whose_groups_share_a_cell_is_refused(where, relative_to, shared):
    records = [
        _record({"generator": "requests", "session": False}, tw=480, requests=500, ports=500),
        _record({"generator": "requests", "session": True}, tw=0, requests=900, ports=4),
        _record({"generator": "go", "max_idle_conns": 100}, tw=3000, requests=9000, ports=3000),
    ]
    claim = {"note": "x", "metric": "ports-used", "where": where, "relative_to": relative_to,
             "at_most": 1, "at_least": 1}  # fmt: skip
    found = claims.read({"claims": [claim]})  # typed: the overlap needs the cells
    if shared:
        with pytest.raises(ValueError, match=r"run.json matrix.claims.0: .*both name the cell"):
            claims.evaluate(found, records)
    else:
        assert all(row.result != claims.HELD for row in claims.evaluate(found, records))


def test_report_on_a_run_json_with_such_a_claim_exits_2_and_writes_no_report(tmp_path, capsys):
    import shutil
    from pathlib import Path

    from harness import cli

    run_dir = tmp_path / "20261124T230400Z-claim"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall", run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    run["matrix"]["claims"] = [
        {"note": "2.6.12 stalls no more than 2.2.9", "metric": "stalled", "at_most": 1,
         "where": {"scenario": "chunked-stall"}, "relative_to": {"tls": "off"}}
    ]  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(run))
    assert cli.main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "matrix.claims.0" in err and "both name the cell" in err and "Traceback" not in err
    assert not (run_dir / "report.md").exists()


def _tarball(folder):
    import tarfile

    tree = folder / "haproxy-2.6.15"
    tree.mkdir()
    (tree / "Makefile").write_text("all:\n")
    path = folder / "haproxy-2.6.15-patched.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return path


def test_a_plan_records_its_claims_versions_as_its_cells_spell_them(tmp_path, monkeypatch):
    """run.json's claims name versions as the records do (a tarball's absolute path),
    and a resume of that run.json takes them."""
    _tarball(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(
        "name: t\nversions: [debian:bookworm, tarball:./haproxy-2.6.15-patched.tar.gz@2.6.15]\n"
        "scenarios: [{name: smoke}]\n"
        "claims:\n  - {note: x, metric: failures, where: {scenario: smoke}, at_most: 0,\n"
        "     versions: [tarball:./haproxy-2.6.15-patched.tar.gz@2.6.15]}\n"
    )
    plan = spec.load(tmp_path / "m.yaml", "run1")
    custom = next(c.version.text for c in plan.cells if c.version.custom)
    assert custom == f"tarball:{tmp_path / 'haproxy-2.6.15-patched.tar.gz'}@2.6.15"
    assert plan.matrix.claims[0].versions == [custom]
    again = spec.expand(plan.matrix.model_dump(), "run1", None)  # --resume
    assert again.matrix.claims[0].versions == [custom]


# One of each kind of spec, as a shared run.json's claim may name it: a path relative to
# wherever the report runs, a checkout there (git would run in it), a host file.
RECORDED_SPECS = [
    "git:{tmp}/repo@HEAD",
    "tarball:./haproxy-2.6.15-patched.tar.gz@2.6.15",
    "tarball:{tmp}/haproxy-2.6.15-patched.tar.gz@2.6.15",
    "image:haproxy:2.6.15",
    "source:9.9.9",
    "debian:nope",
]


@pytest.mark.parametrize("version", RECORDED_SPECS)
def test_report_resolves_no_version_a_run_jsons_claim_names(tmp_path, monkeypatch, version):
    import shutil
    import subprocess
    from pathlib import Path

    from harness import cli
    from harness.plan import versions

    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    _tarball(tmp_path)
    monkeypatch.chdir(tmp_path)

    def resolved(*args, **kwargs):
        raise AssertionError(f"the report resolved a run folder's version spec: {args}")

    for name in ("parse", "git", "file_sha256", "_check_source_tarball"):
        monkeypatch.setattr(versions, name, resolved)
    run_dir = tmp_path / "20261124T230400Z-claim"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall", run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    text = version.format(tmp=tmp_path)
    run["matrix"]["claims"] = [
        {"note": "x", "metric": "stalled", "at_most": 0, "where": {"scenario": "chunked-stall"},
         "versions": [text, "debian:bookworm"]}
    ]  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(run))
    assert cli.main(["report", str(run_dir)]) == 0
    lines = (run_dir / "report.md").read_text().splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("| x ")]  # fmt: skip
    # matched as text: bookworm's cell is judged, the other named version was not run
    assert rows == [
        ["x", text, "0", "-", "stalled ≤ 0", "not measured"],
        ["x", "2.6.12 (debian:bookworm)", "1", "5", "stalled ≤ 0", "did not hold"],
    ]


def test_each_version_a_claim_names_without_a_cell_is_a_row_not_measured():
    """A claim about two releases, one of them never run (left out, or its cells taken
    out of a shared run folder): the report says so, not only the other's "held"."""
    records = [
        _seed_record("debian:bullseye", "2.2.9 (debian:bullseye)", {"mode": "http"}, _pair(0, 20))
    ]
    claim = spec.Claim(
        note="none at L7",
        metric="close-wait-haproxy-backend",
        where={"mode": "http"},
        at_most=0,
        versions=["debian:bullseye", "debian:bookworm", "debian:trixie"],
    )
    rows = [[r[1], r[3], r[5]] for r in (row.row() for row in claims.evaluate([claim], records))]
    assert sorted(rows) == sorted([
        ["2.2.9 (debian:bullseye)", "0", "held"],
        ["debian:bookworm", "-", "not measured"],
        ["debian:trixie", "-", "not measured"],
    ])  # fmt: skip
