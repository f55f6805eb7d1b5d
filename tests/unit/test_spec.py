import json
import textwrap

import pytest

from harness.errors import SpecError
from harness.plan import scenarios, spec


def write(tmp_path, text):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_expands_versions_grid_and_repetitions(tmp_path):
    plan = spec.load(
        write(
            tmp_path,
            """
            name: t
            versions: [debian:bullseye, debian:trixie]
            repetitions: 2
            scenarios:
              - name: smoke
                params: {size: 1024}
                grid: {keepalive: [true, false]}
            """,
        ),
        "run1",
    )
    assert len(plan.cells) == 2 * 2 * 2
    assert [c.index for c in plan.cells] == list(range(1, 9))
    assert {c.total for c in plan.cells} == {8}
    first, second = plan.cells[:2]
    # versions innermost: neighbouring cells compare versions like for like
    assert (first.version.text, second.version.text) == ("debian:bullseye", "debian:trixie")
    assert first.params == second.params == {"size": 1024, "keepalive": True, "http_reuse": "safe"}
    assert len({c.id for c in plan.cells}) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            """
            name: t
            versions: [debian:bookworm]
            scenarios: [{name: smoke}]
            repetitons: 3
            """,
            r"repetitons \(line 5\): Extra inputs are not permitted.*"
            r"remove it or check its spelling",
        ),
        (
            """
            name: t
            versions: [debian:bookworm]
            load: {users: 0}
            scenarios: [{name: smoke}]
            """,
            r"load.users \(line 4\): Input should be greater than or equal to 1",
        ),
        (
            """
            name: t
            versions: [debian:bookworm]
            scenarios:
              - name: smoke
              - name: no-such-scenario
            """,
            r"\(line 6\): scenarios\[1\]: unknown scenario 'no-such-scenario'. Known: smoke",
        ),
        (
            """
            name: t
            versions: [debian:bookworm]
            scenarios: [{name: smoke, params: {size: big}}]
            """,
            r"params.size \(scenario 'smoke'\): Input should be a valid integer, got 'big'",
        ),
        (
            """
            name: t
            versions: [debian:bookworm]
            scenarios: [{name: smoke, params: {colour: red}}]
            """,
            r"scenario 'smoke' has no parameter 'colour'. It takes: body_bytes, chunked_upload, "
            "config, connection_mode, http_reuse, keepalive, size",
        ),
        (
            """
            name: t
            versions: [debian:bookworm, debian:buster]
            scenarios: [{name: smoke}]
            """,
            r"versions\[1\]: unknown Debian release 'buster'",
        ),
        (
            """
            name: t
            versions: [debian:bookworm]
            baseline: debian:trixie
            scenarios: [{name: smoke}]
            """,
            r"\(line 4\): baseline 'debian:trixie' is not one of versions",
        ),
        ("- just a list\n", "a matrix file is a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_name_file_key_line_and_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=message) as err:
        spec.load(path, "run1")
    assert str(path) in str(err.value)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read the matrix file"):
        spec.load(tmp_path / "nope.yaml", "run1")


def test_shipped_matrices_are_valid():
    from harness import ROOT

    for path in sorted((ROOT / "matrices").glob("*.yaml")):
        assert spec.load(path, "run1").cells, path


def test_entry_versions_restrict_cells_and_verdicts_are_read(tmp_path):
    plan = spec.load(
        write(
            tmp_path,
            """
            name: t
            versions: [debian:bullseye, debian:bookworm]
            verdicts: {alpha: 0.05, min_effect: 0.5}
            scenarios:
              - name: calibration
                versions: [debian:bookworm]
                grid: {fin_delay_ms: [0, 50]}
              - name: smoke
            """,
        ),
        "run1",
    )
    assert [(c.scenario, c.version.text) for c in plan.cells] == [
        ("calibration", "debian:bookworm"),
        ("calibration", "debian:bookworm"),
        ("smoke", "debian:bullseye"),
        ("smoke", "debian:bookworm"),
    ]
    assert (plan.matrix.verdicts.alpha, plan.matrix.verdicts.min_effect) == (0.05, 0.5)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: calibration, versions: [debian:trixie]}", r"not in the matrix's versions"),
        ("{name: half-close, params: {variant: tls-notify}}", r"needs TLS: set tls to"),
        (
            "{name: half-close, params: {tls: '2.0'}}",
            r"params.tls \(scenario 'half-close'\): Input should be 'off', '1.2' or '1.3'",
        ),
        ("{name: smoke, params: {size: 1}, grid: {size: [2]}}", r"size is in both params and grid"),
        ("{name: smoke, grid: {size: []}}", r"grid 'size' is empty"),
        (
            "{name: smoke, params: {size: -1}}",
            r"params.size \(scenario 'smoke'\): .* greater than or equal to 0, got -1",
        ),
        (
            "{name: half-close, params: {connections: 0}}",
            r"params.connections .* greater than or equal to 1, got 0",
        ),
        (
            "{name: chunked-stall, params: {chunk_min: 50, chunk_max: 40}}",
            r"chunk_min \(50\) is above chunk_max \(40\)",
        ),
        (
            "{name: fault, params: {at_s: 0}}",
            r"params.at_s \(scenario 'fault'\): Input should be greater than 0, got 0",
        ),
    ],
)
def test_bad_scenario_entries(tmp_path, entry, message):
    path = write(tmp_path, f"name: t\nversions: [debian:bookworm]\nscenarios: [{entry}]\n")
    with pytest.raises(SpecError, match=message):
        spec.load(path, "run1")


def test_numeric_parameters_accept_ints_for_floats_and_negatives_where_they_mean_something(
    tmp_path,
):
    path = write(
        tmp_path,
        "name: t\nversions: [debian:bookworm]\nscenarios:\n"
        "  - {name: fault, params: {at_s: 2}}\n"
        "  - {name: server-pool, params: {pool_max_conn: -1}}\n",
    )
    cells = spec.load(path, "run1").cells
    assert cells[0].params["at_s"] == 2.0 and isinstance(cells[0].params["at_s"], float)
    assert cells[1].params["pool_max_conn"] == -1


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ("{generator: wrk, mode: open}", r"load \(line 3\): Value error, mode: open needs "
         r"generator: locust .*; change one of them"),
        ("{users: 2000}", r"users: 2000 is more than one process holds \(at most 1000 Locust "
         r"users per process\); add workers: or use generator: wrk"),
        ("{users: 2001, workers: 2}", r"users: 2001 is more than 2 processes hold"),
        ("{threads: 2}", r"threads: applies to generator: wrk or h2load only"),
        ("{generator: 'wrk; rm -rf /'}", r"load.generator \(line 3\): Input should be 'locust', "
         r"'wrk', 'h2load', 'requests', 'node' or 'go'"),
        ("{generator: h2load, mode: open}", r"mode: open needs generator: locust \(h2load"),
        ("{generator: wrk, streams: 10}", r"streams: applies to generator: h2load only"),
        ("{generator: h2load, streams: 1001}", r"load.streams \(line 3\): .*less than or equal "
         r"to 1000"),
        ("{generator: h2load, streams: '10 --h1'}", r"load.streams \(line 3\): Input should be "
         r"a valid integer"),
        ("{generator: requests, mode: open}", r"mode: open needs generator: locust \(requests"),
        ("{generator: wrk, session: true}", r"session: applies to generator: requests only"),
        ("{generator: node, max_idle_conns: 100}", r"max_idle_conns: applies to generator: go"),
        ("{generator: go, agent: keepalive}", r"agent: applies to generator: node only"),
        ("{generator: requests, pause_ms: 5}", r"pause_ms: applies to generator: go only"),
        ("{generator: node, concurrency: eventlet}",
         r"concurrency: applies to generator: requests only"),
        ("{generator: requests, concurrency: gevent}", r"concurrency"),
        ("{generator: go, pause_ms: -1}", r"load.pause_ms \(line 3\): .*greater than or equal"),
        ("{generator: node, agent: none, max_sockets: 5}",
         r"max_sockets: applies to agent: keepalive only"),
        ("{generator: node, agent: 'false; rm'}", r"load.agent \(line 3\): Input should be"),
        ("{generator: requests, users: 2001}", r"more than the native clients run at once"),
        ("{generator: requests, threads: 2}", r"threads: / workers: apply to wrk or h2load "
         r"/ locust"),
        ("{max_requests: 100}", r"max_requests: applies to generator: h2load / requests / "
         r"node / go"),
        ("{generator: go, max_requests: 0}", r"load.max_requests \(line 3\): .*greater than"),
        ("{generator: requests, session: 'yes'}", r"load.session \(line 3\): Input should be "
         r"a valid boolean"),
        ("{generator: wrk, threads: '2 --latency'}", r"load.threads \(line 3\): Input should be "
         r"a valid integer"),
        ("{generator: wrk, users: 20001}", r"load.users \(line 3\): .*less than or equal to 20000"),
        ("{generator: wrk, workers: 2}", r"workers: applies to generator: locust only"),
        ("{users: 2, workers: 3}", r"users: 2 is fewer than workers: 3"),
        ("{workers: 17}", r"load.workers \(line 3\): .*less than or equal to 16"),
        ("{workers: '2 & rm -rf /'}", r"load.workers \(line 3\): Input should be a valid integer"),
    ],
)  # fmt: skip
def test_a_load_the_generator_cannot_drive_is_refused_by_line(tmp_path, load, message):
    path = write(tmp_path, f"""
        name: t
        load: {load}
        versions: [debian:bookworm]
        scenarios: [{{name: smoke}}]
        """)  # fmt: skip
    with pytest.raises(SpecError, match=message):
        spec.load(path, "run1")


def test_wrk_takes_the_connections_locust_cannot(tmp_path):
    path = write(tmp_path, """
        name: t
        load: {generator: wrk, users: 5000, threads: 2}
        versions: [debian:bookworm]
        scenarios: [{name: smoke}]
        """)  # fmt: skip
    [cell] = spec.load(path, "run1").cells
    assert (cell.load.users, cell.load.native_threads) == (5000, 2)


def test_workers_run_the_users_under_one_master_with_typed_arguments(tmp_path):
    from harness.stack import workload
    from harness.stack.render import Network

    path = write(tmp_path, """
        name: t
        load: {workers: 3, users: 30, mode: open, rate: 300}
        versions: [debian:bookworm]
        scenarios: [{name: smoke}]
        """)  # fmt: skip
    [cell] = spec.load(path, "run1").cells
    args = workload.load_args(cell, cell.knobs, Network.for_project("p"))
    assert args[:3] == ["locust-distributed", "3", "/locustfiles/http_load.py"]
    assert args[args.index("--users") + 1] == "3"  # one open-loop user per worker
    assert args[-1] == "OpenLoop"


def test_each_locust_worker_holds_as_many_users_as_one_process(tmp_path):
    # The cap is per process (each runs its users as greenlets): 2 workers hold 2,000,
    # and the master is told all of them, to spread over its workers.
    from harness.stack import workload
    from harness.stack.render import Network

    path = write(tmp_path, """
        name: t
        load: {workers: 2, users: 2000, spawn_rate: 1000}
        versions: [debian:bookworm]
        scenarios: [{name: smoke}]
        """)  # fmt: skip
    [cell] = spec.load(path, "run1").cells
    args = workload.load_args(cell, cell.knobs, Network.for_project("p"))
    assert args[:2] == ["locust-distributed", "2"]
    assert args[args.index("--users") + 1] == "2000"
    assert spec.Load(users=spec.MAX_LOCUST_USERS).users == 1000  # one process: still 1,000


@pytest.mark.parametrize(
    "load",
    [
        "{generator: wrk, threads: '2'}",  # a string where a count goes
        "{generator: wrk, threads: true}",  # YAML 1.1: yes/on/true are booleans
        "{workers: yes}",
        "{users: on}",
        "{duration_s: '10'}",
        "{mode: open, rate: true}",
    ],
)
def test_a_load_value_of_the_wrong_type_is_refused_not_coerced(tmp_path, load):
    # as scenario parameters are (harness.plan.params.Params is strict): `workers: yes`
    # meant something, and it was not "1 worker"
    path = write(tmp_path, f"""
        name: t
        load: {load}
        versions: [debian:bookworm]
        scenarios: [{{name: smoke}}]
        """)  # fmt: skip
    with pytest.raises(SpecError, match=r"load\.\w+ \(line 3\): Input should be a valid"):
        spec.load(path, "run1")


@pytest.mark.parametrize(
    "load", [spec.Load(generator="wrk"), spec.Load(workers=2)], ids=["wrk", "workers"]
)
def test_run_refuses_a_load_generator_a_probe_scenario_would_ignore(load):
    with pytest.raises(SpecError, match=r"scenario 'half-close' drives its own close-delay"):
        spec.single("debian:bookworm", "half-close", "run1", load)
    assert spec.single("debian:bookworm", "smoke", "run1", load).cells[0].load == load


def test_an_entry_sets_its_own_load_and_claims_name_its_cells(tmp_path):
    path = write(tmp_path, """
        name: t
        versions: [debian:bookworm]
        load: {users: 4, duration_s: 3}
        scenarios:
          - {name: keepalive-vs-close, load: {generator: requests, session: false}}
          - {name: keepalive-vs-close, load: {generator: requests, session: true}}
          - name: keepalive-vs-close
            load: {generator: go, max_idle_conns: 100, max_idle_conns_per_host: 200}
        claims:
          - note: "no Session: a TIME-WAIT per request"
            metric: time-wait-client-per-request
            where: {session: false}
            at_least: 0.9
          - note: "pool 100 under 200 per host: 10x the TIME-WAIT"
            metric: time-wait-client
            where: {max_idle_conns: 100}
            relative_to: {session: true}
            at_least: 10
        """)  # fmt: skip
    plan = spec.load(path, "run1")
    loads = [c.load for c in plan.cells]
    assert [(x.generator, x.session, x.users) for x in loads] == [
        ("requests", False, 4),
        ("requests", True, 4),
        ("go", None, 4),
    ]
    assert loads[2].client_settings == {"max_idle_conns": 100, "max_idle_conns_per_host": 200}
    assert len(plan.matrix.claims) == 2 and plan.matrix.claims[1].relative_to == {"session": True}


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ("{note: x, metric: ports-used, where: {session: true}, at_least: 1}",
         r"claims\[0\].where \{'session': True\} matches no cell"),
        ("{note: x, metric: ports-used, where: {session: false}, at_least: 1, "
         "relative_to: {keepalive: false}}", r"claims\[0\].relative_to .* matches no cell"),
        ("{note: x, metric: 'ports; rm', where: {session: false}, at_least: 1}",
         r"claims.0.metric \(line \d+\): Input should be"),
        ("{note: x, metric: ports-used, where: {session: false}}",
         r"at_least:, at_most: or both"),
        ("{note: x, metric: ports-used, where: {session: false}, at_least: 2, at_most: 1}",
         r"at_least \(2\) is above at_most \(1\)"),
        ("{note: x, metric: ports-used, where: {session: false}, at_least: 1, "
         "versions: [debian:trixie]}", r"claims\[0\].versions lists 'debian:trixie', which "
         "is not in the matrix's versions"),
        ("{note: x, metric: ports-used, where: {session: false}, at_least: 1, "
         "versions: ['debian:bookworm; rm -rf /']}", r"claims\[0\].versions lists"),
        ("{note: \"a\\nb\", metric: ports-used, where: {session: false}, at_least: 1}",
         r"claims.0.note .*should match pattern"),
        ("{note: x, metric: ports-used, where: {}, at_least: 1}", r"claims.0.where .*at least 1"),
    ],
)  # fmt: skip
def test_a_claim_that_names_no_cell_or_no_bound_is_refused(tmp_path, claim, message):
    path = write(tmp_path, f"""
        name: t
        versions: [debian:bookworm]
        scenarios:
          - {{name: keepalive-vs-close, load: {{generator: requests, session: false}}}}
        claims: [{claim}]
        """)  # fmt: skip
    with pytest.raises(SpecError, match=message):
        spec.load(path, "run1")


def test_an_entry_load_the_generator_cannot_drive_names_the_entry(tmp_path):
    path = write(tmp_path, """
        name: t
        versions: [debian:bookworm]
        scenarios:
          - {name: smoke, load: {generator: wrk, session: true}}
        """)  # fmt: skip
    with pytest.raises(SpecError, match=r"scenarios\[0\].load: session: applies to generator"):
        spec.load(path, "run1")


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
@pytest.mark.parametrize("load", ["{users: 3}", "{generator: node}", "{duration_s: 2}"])
def test_an_entrys_own_load_on_a_probe_scenario_is_refused_not_ignored(tmp_path, name, load):
    # a probe scenario drives its own client: an entry's load: would change nothing
    text = f"name: m\nversions: [debian:bookworm]\nscenarios:\n  - {{name: {name}, load: {load}}}\n"
    probe = isinstance(
        spec.load(write(tmp_path, text.replace(f", load: {load}", "")), "run1").cells[0].knobs.load,
        scenarios.Probe,
    )
    if probe:
        with pytest.raises(SpecError, match=rf"line 4\): scenarios\[0\]\.load: .*{name}.*probe"):
            spec.load(write(tmp_path, text), "run1")
    else:  # planned, or refused for what the generator cannot do: never for the probe
        try:
            assert spec.load(write(tmp_path, text), "run1").cells
        except SpecError as err:
            assert "probe" not in str(err)


@pytest.mark.parametrize(
    ("where", "relative_to", "shared"),
    [
        ("{session: false}", "{session: false}", True),  # the same cells: a ratio of 1
        ("{generator: requests}", "{session: true}", True),  # a superset of the other
        ("{session: true}", "{generator: requests}", True),  # a subset of the other
        ("{generator: requests}", "{keepalive: true}", True),  # overlapping
        ("{session: false}", "{session: true}", False),
        ("{generator: go}", "{generator: requests}", False),
    ],
)
def test_a_ratio_claims_two_groups_share_no_cell(tmp_path, where, relative_to, shared):
    path = write(tmp_path, f"""
        name: t
        versions: [debian:bookworm]
        scenarios:
          - {{name: keepalive-vs-close, load: {{generator: requests, session: false}}}}
          - {{name: keepalive-vs-close, load: {{generator: requests, session: true}}}}
          - {{name: keepalive-vs-close, load: {{generator: go}}}}
        claims:
          - {{note: x, metric: ports-used, where: {where}, relative_to: {relative_to},
              at_least: 1}}
        """)  # fmt: skip
    if shared:
        with pytest.raises(SpecError, match=r"\(line 9\): claims\[0\] where .* both name"):
            spec.load(path, "run1")
    else:
        assert spec.load(path, "run1").matrix.claims


@pytest.mark.parametrize("code", [*range(0x20), *range(0x7F, 0xA0)], ids=hex)
def test_a_control_character_in_a_claims_note_is_refused(tmp_path, code):
    # every C0 and C1 control character (CSI 0x9b drives a terminal as ESC [ does)
    note = json.dumps(f"a{chr(code)}b")  # JSON is YAML: the character escaped
    path = write(tmp_path, f"""
        name: t
        versions: [debian:bookworm]
        scenarios:
          - {{name: keepalive-vs-close, load: {{generator: requests, session: false}}}}
        claims:
          - {{note: {note}, metric: ports-used, where: {{session: false}}, at_least: 1}}
        """)  # fmt: skip
    with pytest.raises(SpecError, match=r"claims.0.note .*should match pattern"):
        spec.load(path, "run1")
