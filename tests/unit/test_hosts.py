"""hosts: in a matrix file: typed, validated, and placed (no Docker)."""

import pytest

from harness.errors import SpecError
from harness.plan import spec
from harness.stack import hosts, render

BASE = """
name: m
versions: [debian:bookworm]
load: {duration_s: 2}
scenarios:
  - name: smoke
"""

THREE = """
hosts:
  client: {context: c1, address: 192.0.2.1}
  proxy: {context: c2, address: 192.0.2.2}
  backend: {context: c3, address: 192.0.2.3}
"""


def _plan(tmp_path, text: str) -> spec.Plan:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return spec.load(path, "20261129T000000Z-abcdef-m")


@pytest.fixture
def allowed():
    """The contexts allowed by --allow-context, reset around the test (process-wide)."""
    hosts.allow([])
    yield hosts.allow
    hosts.allow([])


def test_without_hosts_every_service_runs_on_the_local_engine(tmp_path):
    plan = _plan(tmp_path, BASE)
    cell = plan.cells[0]
    where = render.placement(cell, cell.knobs, plan.matrix.hosts)
    assert where.contexts == ("default",) and where.reach == {} and where.publish == {}


def test_three_hosts_split_services_with_their_observers_and_publish_what_crosses(tmp_path):
    plan = _plan(tmp_path, BASE + THREE)
    cell = plan.cells[0]
    where = render.placement(cell, cell.knobs, plan.matrix.hosts)
    assert where.engines == {
        "c3": ("backend", "census-backend"),
        "c2": ("haproxy", "census-haproxy", "capture"),
        "c1": ("client", "census-client"),
    }
    assert where.reach == {"client": None, "proxy": "192.0.2.2", "backend": "192.0.2.3"}
    assert where.publish == {"haproxy": (8080, 8443), "backend": (8080,)}
    net = render.Network.for_project("p")
    peers = render.routed(net, where)
    assert (peers.haproxy, peers.backend, peers.client) == ("192.0.2.2", "192.0.2.3", net.client)
    assert "server app 192.0.2.3:8080" in render.haproxy_cfg(cell, cell.knobs, peers)
    # run.json holds the matrix as JSON values: the address as text
    assert plan.matrix.model_dump()["hosts"]["proxy"] == {"context": "c2", "address": "192.0.2.2"}


def test_proxy_and_backend_on_one_host_talk_on_the_cell_network(tmp_path):
    text = THREE.replace("c3, address: 192.0.2.3", "c2, address: 192.0.2.2")
    plan = _plan(tmp_path, BASE + text)
    cell = plan.cells[0]
    where = render.placement(cell, cell.knobs, plan.matrix.hosts)
    assert set(where.engines) == {"c1", "c2"}
    assert where.reach["backend"] is None and "backend" not in where.publish


def test_a_directly_loaded_backend_cannot_share_the_proxys_published_port(tmp_path):
    text = BASE.replace("- name: smoke", "- name: keepalive-vs-close\n    params: {via: backend}")
    text += THREE.replace("c3, address: 192.0.2.3", "c2, address: 192.0.2.2")
    plan = _plan(tmp_path, text)
    cell = plan.cells[0]
    with pytest.raises(SpecError, match="both would publish port 8080"):
        render.placement(cell, cell.knobs, plan.matrix.hosts)


def test_a_backend_of_several_servers_stays_on_the_proxys_host(tmp_path, allowed):
    allowed(["c1", "c2", "c3"])
    entry = "- name: servers\n    params: {servers: 3, servers_down: 1}"
    plan = _plan(tmp_path, BASE.replace("- name: smoke", entry) + THREE)
    cell = plan.cells[0]
    with pytest.raises(SpecError, match="a backend of 3 servers must run on the proxy's host"):
        render.placement(cell, cell.knobs, plan.matrix.hosts)
    with pytest.raises(SpecError, match="servers must run on the proxy's host"):
        render.preflight(plan.cells, plan.matrix.hosts)
    # on the proxy's host it is placed, and nothing of the backend is published
    shared = THREE.replace("c3, address: 192.0.2.3", "c2, address: 192.0.2.2")
    plan = _plan(tmp_path, BASE.replace("- name: smoke", entry) + shared)
    where = render.placement(plan.cells[0], plan.cells[0].knobs, plan.matrix.hosts)
    assert "backend" not in where.publish


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("{context: 'c1 --tls', address: 192.0.2.1}", "context"),
        ("{context: '-H', address: 192.0.2.1}", "context"),
        ("{context: c1, address: 'example.org'}", "address"),
        ("{context: c1, address: 127.0.0.1}", "not reachable from another host"),
        ("{context: c1, address: 192.0.2.1, port: 22}", "port"),
        # no other host's engine is there: every address of each kind, at its edges
        *[
            (f"{{context: c1, address: {address}}}", "not reachable from another host")
            for address in (
                "127.0.0.1",
                "127.255.255.254",
                "0.0.0.0",
                "224.0.0.1",
                "239.255.255.255",
                "240.0.0.1",
                "255.255.255.255",
            )
        ],
        # an integer, a float, a bool, a list: not the text of an address
        *[
            (f"{{context: c1, address: {value}}}", "written as text")
            for value in ("3221225985", "1.5", "true", "[192.0.2.1]")
        ],
        ("{context: c1, address: 192.0.2.01}", "address"),
    ],
)
def test_a_host_is_a_context_name_and_an_ipv4_address_nothing_else(tmp_path, host, message):
    text = BASE + THREE.replace("{context: c1, address: 192.0.2.1}", host)
    with pytest.raises(SpecError, match=message):
        _plan(tmp_path, text)


def test_one_context_has_one_address(tmp_path):
    text = BASE + THREE.replace("c2, address: 192.0.2.2", "c1, address: 192.0.2.9")
    with pytest.raises(SpecError, match="one engine runs on one host"):
        _plan(tmp_path, text)


def test_split_compose_files_hold_only_their_engines_services(tmp_path):
    plan = _plan(tmp_path, BASE + THREE)
    cell = plan.cells[0]
    where = render.placement(cell, cell.knobs, plan.matrix.hosts)
    doc = {"name": "p", "services": {s: {"image": s} for e in where.engines.values() for s in e}}
    parts = hosts.split_compose(doc, where)
    assert parts["c2"]["services"]["haproxy"]["ports"] == [
        "192.0.2.2:8080:8080",
        "192.0.2.2:8443:8443",
    ]
    assert set(parts["c1"]["services"]) == {"client", "census-client"}
    assert "ports" not in parts["c1"]["services"]["client"]


@pytest.mark.parametrize("name", ["-Hx", "a b", "ctx;rm", ""])
def test_clean_takes_only_context_names(name, capsys):
    from harness import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["clean", f"--context={name}"])
    assert exited.value.code == 2
    assert "not a Docker context name" in capsys.readouterr().err


def test_hosts_names_only_contexts_the_user_allowed(tmp_path, allowed, capsys):
    """A matrix file (someone else's) may not reach an engine of the user's by naming
    its context: refused before any engine is asked anything, no run folder made."""
    from harness import cli

    path = tmp_path / "m.yaml"
    path.write_text(BASE + THREE)
    out = tmp_path / "results"
    code = cli.main(["--results-dir", str(out), "matrix", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "c1, c2, c3, which this command did not allow" in err
    assert "--allow-context c1 --allow-context c2 --allow-context c3" in err
    assert not out.exists() or not any(out.iterdir())
    # partly allowed: the rest is named
    code = cli.main(["--allow-context", "c2", "--results-dir", str(out), "matrix", str(path)])
    assert code == 2 and "context(s) c1, c3," in capsys.readouterr().err
    # the same from a run folder's record (rerun, --resume): preflight refuses too
    plan = _plan(tmp_path, BASE + THREE)
    with pytest.raises(SpecError, match=r"cell\.json: hosts: places services"):
        render.preflight(plan.cells, plan.matrix.hosts, "x/cell.json")
    # default is the local engine: it needs no consent
    local = THREE.replace("c1,", "default,").replace("c2,", "default,").replace("c3,", "default,")
    local = local.replace("192.0.2.2", "192.0.2.1").replace("192.0.2.3", "192.0.2.1")
    plan = _plan(tmp_path, BASE + local)
    hosts.require_consent(plan.matrix.hosts, "m.yaml")
    allowed(["c1", "c2", "c3"])
    hosts.require_consent(_plan(tmp_path, BASE + THREE).matrix.hosts, "m.yaml")


def test_dry_run_shows_where_each_role_runs_and_whether_it_is_allowed(tmp_path, allowed, capsys):
    from harness import cli

    path = tmp_path / "m.yaml"
    path.write_text(BASE + THREE)
    assert cli.main(["matrix", str(path), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "hosts: client on c1 (192.0.2.1), proxy on c2 (192.0.2.2), backend on c3" in err
    assert "NOT allowed: pass `python -m harness --allow-context c1" in err
    flags = ["--allow-context", "c1", "--allow-context", "c2", "--allow-context", "c3"]
    assert cli.main([*flags, "matrix", str(path), "--dry-run"]) == 0
    assert "backend on c3 (192.0.2.3); allowed" in capsys.readouterr().err
