"""A stack that spans machines, on three Docker engines of this one machine
(scripts/engines-multi.sh: each dockerd in a network namespace of its own, joined by veth
links): client, proxy and backend each on its own engine, traffic crossing between them
through published ports, observers beside their services, clock offsets recorded."""

import subprocess

import pytest

from harness import ROOT, cli
from harness.analyse import record
from harness.stack.project import leftovers

ENGINES = ("harness-e1", "harness-e2", "harness-e3")
NOTHING = {"containers": [], "networks": [], "volumes": []}

MATRIX = """
name: multi-engine
versions: [debian:bookworm]
load: {generator: wrk, users: 5, duration_s: 2}
hosts:
  client: {context: harness-e1, address: 10.231.0.11}
  proxy: {context: harness-e2, address: 10.231.0.12}
  backend: {context: harness-e3, address: 10.231.0.13}
scenarios:
  - name: smoke
"""


def _engines(verb: str) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "engines-multi.sh"), verb, "3"],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def engines(docker_engine):
    """Three extra engines for this module (their data, and so the images loaded into
    them, stay for the next session), stopped and their namespaces removed at its end:
    no other test shares the machine with engines it did not start."""
    _engines("up")
    yield ENGINES
    _engines("down")


def test_a_cell_spans_three_engines_and_measures_across_them(engines, tmp_path):
    matrix = tmp_path / "multi.yaml"
    matrix.write_text(MATRIX)
    out = tmp_path / "results"
    # A matrix file names contexts; only the person running it may let it use them.
    assert cli.main(["--results-dir", str(out), "matrix", str(matrix)]) == 2
    assert not out.exists() or not any(out.iterdir())
    allow = [a for n in (1, 2, 3) for a in ("--allow-context", f"harness-e{n}")]
    assert cli.main([*allow, "--results-dir", str(out), "matrix", str(matrix)]) == 0
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    [cell] = record.cells(run_dir)
    assert cell.status == "ok", cell.error
    folder = run_dir / cell.cell
    # one compose project per engine, each with its service and that service's observers
    for context, services in {
        "harness-e1": ("client:", "census-client:"),
        "harness-e2": ("haproxy:", "census-haproxy:", "capture:"),
        "harness-e3": ("backend:", "census-backend:"),
    }.items():
        text = (folder / f"compose.{context}.yaml").read_text()
        for service in services:
            assert f"\n  {service}\n" in text, (context, service)
    assert "server app 10.231.0.13:8080" in (folder / "haproxy.cfg").read_text()
    m = cell.metrics
    assert m is not None and m.load is not None and m.census is not None
    assert m.load.requests > 0 and m.load.failures == 0, m.load
    # requests crossed the proxy's engine: HAProxy logged them and its backend answered
    assert m.haproxy is not None and sum(m.haproxy.termination_states.values()) > 0
    assert m.backend is not None and abs(m.backend.requests - m.load.requests) <= 5, m.backend
    # the census in haproxy's namespace, on the proxy's engine, saw the 5 client
    # connections arrive; the client's census saw them leave
    assert m.census["haproxy"].states["ESTAB/in"].peak >= 5, m.census["haproxy"].states
    assert m.census["client"].states["ESTAB/out"].peak >= 5, m.census["client"].states
    assert m.census["backend"].states["ESTAB/in"].peak >= 1, m.census["backend"].states
    # each engine's clock against the harness's; here all share one kernel clock, so
    # every offset is within its bound (half the round trip) of zero
    assert cell.hosts is not None and cell.hosts["proxy"]["context"] == "harness-e2"
    assert cell.clocks is not None and set(cell.clocks) == set(ENGINES)
    for context, clock in cell.clocks.items():
        assert 0 < clock["bound_s"] < 0.5, (context, clock)
        assert abs(clock["offset_s"]) <= clock["bound_s"] + 0.001, (context, clock)
    for context in ENGINES:
        assert leftovers(None, context) == NOTHING, context
