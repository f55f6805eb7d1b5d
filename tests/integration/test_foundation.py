"""The foundation on a real engine: real images of real HAProxy versions, one cell each."""

import os
import subprocess
import sys

import pytest

from harness import ROOT
from harness.analyse import latency
from harness.stack.project import leftovers

SPECS = {
    "debian:bullseye": "2.2.9",
    "debian:bookworm": "2.6.12",
    "debian:trixie": "3.0.11",
    # Compiled from the pinned upstream tarball: haproxy.org is unreachable here, so
    # this also proves the fallback to Debian's pool and the sha256 check.
    "source:2.6.12": "2.6.12",
}


def test_images_report_the_promised_versions(harness):
    # Both forms: several specs after one --haproxy, and --haproxy repeated.
    specs = list(SPECS)
    proc = harness("images", "--haproxy", *specs[:3], "--haproxy", specs[3])
    assert proc.returncode == 0, proc.stderr
    for spec, version in SPECS.items():
        line = next(line for line in proc.stdout.splitlines() if line.startswith(spec + " "))
        assert line.endswith(f"HAProxy {version}"), line


@pytest.mark.parametrize("spec", list(SPECS))
def test_smoke_cell_measures_real_throughput(harness, spec):
    proc = harness("run", "--haproxy", spec, "--scenario", "smoke", "--duration", "5")
    assert proc.returncode == 0, proc.stderr
    [cell] = harness.cells(harness.newest_run())
    assert cell["status"] == "ok", cell.get("error")
    assert cell["version"]["reported"] == SPECS[spec]
    load = cell["metrics"]["load"]
    assert load["rps"] > 100, load
    assert load["requests"] > 500
    assert load["failures"] == 0
    assert set(cell["metrics"]["client_status_codes"]) == {"200"}
    hx = cell["metrics"]["haproxy"]
    assert set(hx["status_codes"]) == {"200"}
    assert set(hx["termination_states"]) == {"----"}
    # Every request has its log line: HAProxy drops a line only when two threads collide
    # on the log file (counted in DroppedLogs), never because a pipe is full. Measured on
    # 2.6.12 with 2 threads: 0 to 5 of about 5,200 lines per cell, once 10 of 5,646 (the
    # test_servers cell): up to about 2 in 1,000, so the bound is 1 in 100.
    dropped = cell["metrics"]["haproxy_counters"]["info"]["DroppedLogs"]
    assert dropped <= load["requests"] / 100
    # (HAProxy also logs the few requests still in flight when Locust stopped its users)
    assert load["requests"] <= hx["total"] + dropped <= load["requests"] + cell["load"]["users"]
    # Latency at µs resolution, one HDR sample per request Locust counted (closed loop:
    # Locust's unrounded request time; its own buckets would read whole ms).
    assert_us_latency(harness.newest_run() / cell["cell"], load)
    assert load["latency_count"] == load["requests"]
    # The host's CPU over the load window, from /proc/stat beside the containers' (issue
    # 11, point 4): recorded, plausible, and the flags read from it, not left unknown.
    limit = cell["metrics"]["client_limit"]
    online = limit["host_online_cpus"]
    assert 1 <= online <= os.cpu_count()
    assert 0 < limit["host_busy_cores"] <= online and 0 <= limit["host_idle_cores"] <= online
    assert limit["host_busy_cores"] + limit["host_idle_cores"] + limit["host_steal_cores"] == (
        pytest.approx(online, abs=0.01)
    )
    # the client ran on this host: its cores are part of the host's busy ones
    assert 0 < limit["client_cores"] <= limit["host_busy_cores"] + 0.05
    assert isinstance(cell["metrics"]["client_bound"], bool)
    assert isinstance(cell["metrics"]["host_saturated"], bool)
    # The table row is printed with the reported version.
    assert f"{SPECS[spec]} (" in proc.stdout and "req/s" in proc.stdout
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}


def test_a_parameter_from_the_command_line_reaches_the_cell(harness):
    proc = harness(
        "run", "--haproxy", "debian:bookworm", "--scenario", "half-close",
        "--param", "connections=3", "--param", "timeout_client=7s",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_dir = harness.newest_run()
    [cell] = harness.cells(run_dir)
    assert cell["status"] == "ok", cell.get("error")
    assert (cell["params"]["connections"], cell["params"]["timeout_client"]) == (3, "7s")
    assert cell["metrics"]["probe"]["connections"] == 3
    assert "timeout client 7s" in (run_dir / cell["cell"] / "haproxy.cfg").read_text()


def assert_us_latency(folder, load) -> None:
    """The cell's latency came from latency.hdr, with sub-ms resolution."""
    assert load["latency_source"] == latency.SOURCE_HDR, load
    values, counts = latency.read_hdr(folder / latency.HDR_FILE)
    # Nearly every request has a latency that is not a whole number of ms.
    assert counts[values % 1 != 0].sum() >= 0.9 * counts.sum(), (values, counts)
    assert 0 < load["p50_ms"] < 50 and load["p50_ms"] != int(load["p50_ms"]), load


def test_bad_version_spec_exits_2_and_starts_nothing(harness):
    proc = harness("run", "--haproxy", "debian:buster", "--scenario", "smoke")
    assert proc.returncode == 2
    assert "unknown Debian release 'buster'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}


def test_no_engine_exits_2_and_leaves_no_run_folder(tmp_path):
    env = {**os.environ, "HARNESS_RESULTS": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent"}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--haproxy", "debian:bookworm"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "no Docker engine answers" in proc.stderr and "make engine" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_wrong_local_tarball_is_refused(harness, tmp_path, monkeypatch):
    from harness.errors import ImageError
    from harness.stack import images

    monkeypatch.setattr(images, "TARBALL_DIR", tmp_path)
    (tmp_path / "haproxy-2.6.15.tar.gz").write_bytes(b"tampered")
    with pytest.raises(ImageError, match="catalogue pins 41f8e1695e92"):
        images.obtain_tarball("2.6.15")


def test_pip_secrets_leave_no_trace_in_the_client_image(docker_engine):
    image = docker_engine.images.get("harness-client:latest")
    history = " ".join(str(layer.get("CreatedBy", "")) for layer in image.history())
    assert "pip install" in history and "BEGIN CERTIFICATE" not in history
    out = docker_engine.containers.run(
        "harness-client:latest",
        entrypoint=["sh", "-c", "ls /etc/pip.conf /run/secrets 2>&1; true"],
        remove=True,
        labels={"harness": "1"},
        network_mode="none",
    ).decode()
    assert "No such file" in out and "pip.conf" in out  # the secrets were mounted, never stored


def test_open_loop_keeps_its_arrival_rate(harness):
    proc = harness("run", "--haproxy", "debian:bookworm", "--scenario", "smoke",
                   "--duration", "5", "--rate", "300")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [cell] = harness.cells(harness.newest_run())
    assert cell["load"]["mode"] == "open-loop"
    load = cell["metrics"]["load"]
    # a fixed arrival rate: the count is set by the schedule, not by the responses
    assert 0.9 * 300 * 5 <= load["requests"] <= 1.1 * 300 * 5, load
    assert load["failures"] == 0 and 0 < load["p50_ms"] < 50
    assert "open loop, 300 requests/s" in proc.stdout
    # Only the latencies from the intended send times, one per "intended" request; a
    # request still in flight at the stop may reach Locust's count after the last write.
    assert_us_latency(harness.newest_run() / cell["cell"], load)
    assert load["requests"] - 10 <= load["latency_count"] <= load["requests"], load
