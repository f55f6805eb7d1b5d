"""Explicit HAProxy config lines on a real stack: a matrix entry's ``config`` reaches
the section it names, passes ``haproxy -c`` with the version's binary, changes what
HAProxy does, and is shown in the report.

connect-timeout against a refused backend sets ``retries 1`` in defaults; the entry adds
``retries 3`` to the backend section, which HAProxy takes over the default: every
request is logged with 3 retries instead of 1. Two short cells on 2.6.12.
"""

import re
import textwrap

MATRIX = textwrap.dedent(
    """
    name: config-lines
    versions: [debian:bookworm]
    load: {users: 2, spawn_rate: 2, duration_s: 3}
    scenarios:
      - name: connect-timeout
        params: {backend: refused, timeout_connect: 100ms}
      - name: connect-timeout
        params:
          backend: refused
          timeout_connect: 100ms
          config: {backend: [retries 3, option redispatch]}
    """
)


def test_a_backend_config_line_overrides_the_defaults(harness, tmp_path):
    matrix = tmp_path / "config-lines.yaml"
    matrix.write_text(MATRIX)
    proc = harness("matrix", str(matrix), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = harness.newest_run()
    cells = {bool(c["params"].get("config")): c for c in harness.cells(run_dir)}
    assert set(cells) == {False, True}
    assert all(c["status"] == "ok" for c in cells.values())

    plain, configured = cells[False], cells[True]
    assert "config" not in plain["params"]
    assert configured["params"]["config"] == {"backend": ["retries 3", "option redispatch"]}
    cfg = (run_dir / configured["cell"] / "haproxy.cfg").read_text()
    backend = cfg.split("\nbackend be_app\n")[1]
    assert re.search(r"^    retries 3$", backend, re.M)
    assert re.search(r"^    option redispatch$", backend, re.M)
    before = [line for line in cfg.split("\nbackend be_app\n")[0].splitlines()
              if not line.startswith("#")]  # fmt: skip
    assert "    retries 1" in before and "    retries 3" not in before  # nowhere else

    # What HAProxy did: every request refused (SC, 503) after its retries.
    for record, retries in ((plain, 1), (configured, 3)):
        haproxy = record["metrics"]["haproxy"]
        assert haproxy["total"] > 0
        assert set(haproxy["termination_states"]) == {"SC--"}, haproxy["termination_states"]
        assert haproxy["retries_total"] == retries * haproxy["total"], (retries, haproxy)

    report = (run_dir / "report.md").read_text()
    assert "HAProxy config lines of this entry (`config`)" in report
    assert "backend\n    retries 3\n    option redispatch\n" in report
