"""The client image's wrk script, both latency forms, read back by harness/analyse/wrk.py:
wrk against a small HTTP server on the container's own loopback (no network at all)."""

import json

import pytest

from harness.analyse import wrk
from harness.stack import images
from harness.stack.compose import CommandLog

RUN = (
    "python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & "
    "for i in $(seq 50); do python3 -c 'import socket; socket.create_connection("
    '("127.0.0.1", 8000))\' 2>/dev/null && break; sleep 0.1; done; '
    "WRK_OUT=/tmp/wrk.json wrk -t1 -c2 -d1s -s /wrk/harness.lua http://127.0.0.1:8000/ "
    ">/dev/null && cat /tmp/wrk.json"
)


@pytest.mark.parametrize("budget", [None, "1"], ids=["exact", "quantiles"])
def test_the_wrk_script_writes_what_the_host_reads(docker_engine, tmp_path, budget):
    environment = {"WRK_LATENCY_BUDGET": budget} if budget else {}
    client = images.support_images(CommandLog(tmp_path / "images.log"))["client"]
    out = docker_engine.containers.run(
        client, ["-c", RUN], entrypoint="sh", environment=environment,
        network_mode="none", labels={"harness": "1"}, remove=True,
    )  # fmt: skip
    path = tmp_path / wrk.WRK_FILE
    path.write_bytes(out)
    result = wrk.read(path)
    assert result.requests > 50 and result.errors.status == 0, json.loads(out)
    values, counts = wrk.histogram(path)
    if budget:  # forced to the quantile form: 101 values, one share of the requests each
        assert result.latency_us is None and len(result.latency_quantiles_us or []) == 101
        assert counts.sum() == result.requests
    else:
        assert result.latency_quantiles_us is None
        assert counts.sum() >= result.requests  # wrk's coordinated-omission samples on top
    assert values[0] > 0 and list(values) == sorted(values)
