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


def test_a_backend_of_several_servers_stays_on_the_proxys_host(tmp_path):
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
