"""The TCP-state census: census.sh sampling a real namespace, the parser, the summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import ROOT
from harness.analyse.census import Census, analyse, downsample, parse, totals_by_state

CENSUS_SH = ROOT / "observers" / "census.sh"

# Runs census.sh while making loopback connections in the namespace it runs in: first the
# server closes first (TIME-WAIT on the accepted, "in" side), then the client does
# (TIME-WAIT on the connecting, "out" side). Prints the phase times and the stop latency.
TRAFFIC = r"""
import json, os, signal, socket, subprocess, sys, threading, time

census_sh, outfile, n_server_first, n_client_first, address = sys.argv[1:6]
srv = socket.socket()
srv.bind((address, 0))
srv.listen(128)
port = srv.getsockname()[1]
# Loopback connections (a cell's health checks, its stats socket): never counted.
machinery = socket.socket()
machinery.bind(("127.0.0.1", 0))
machinery.listen(128)
env = {**os.environ, "CENSUS_INTERVAL_S": "0.1", "CENSUS_LISTEN_PORTS": f"9 {port}"}
census = subprocess.Popen([census_sh, outfile], env=env)

def serve(n, server_first, listener):
    for _ in range(n):
        conn, _ = listener.accept()
        if not server_first:
            while conn.recv(1024):  # wait for the client's FIN
                pass
        conn.close()

def connect(n, server_first, listener=srv):
    server = threading.Thread(target=serve, args=(n, server_first, listener))
    server.start()
    for _ in range(n):
        c = socket.create_connection(listener.getsockname())
        if server_first:
            while c.recv(1024):  # wait for the server's FIN
                pass
        c.close()
    server.join()

times = {}
time.sleep(0.35)
times["a_start"] = time.time()
connect(int(n_server_first), server_first=True)
times["a_end"] = time.time()
time.sleep(0.35)
times["b_start"] = time.time()
connect(int(n_client_first), server_first=False)
connect(10, server_first=True, listener=machinery)
connect(10, server_first=False, listener=machinery)
times["b_end"] = time.time()
time.sleep(0.35)
t = time.monotonic()
census.send_signal(signal.SIGTERM)
times["returncode"] = census.wait(timeout=5)
times["stop_s"] = time.monotonic() - t
print(json.dumps(times))
"""


# In the test's own namespace only: never a target outside it.
TEST_ADDRESS = "10.213.77.1"


def _isolated_namespace() -> list[str]:
    """A command prefix running in a new network namespace with only loopback, up, and
    an address outside 127/8 on it (TEST_ADDRESS: the census leaves out loopback peers,
    the stack's own machinery, and counts connections between other addresses).

    There, every socket is the test's own and counts are exact; where user namespaces
    are not allowed, the host's namespace is used and only the test's port is exact.

    tcp_rfc1337=1 keeps TIME-WAIT sockets from being killed by a RST. Without it, about
    one connection in a thousand loses its TIME-WAIT on this kernel: the peer's delayed
    ACK races its own FIN, the waiting side answers the duplicate, the peer has closed
    and resets. Real, but not what this test measures.
    """
    setup = (
        f"ip link set lo up && ip addr add {TEST_ADDRESS}/32 dev lo && "
        "echo 1 >/proc/sys/net/ipv4/tcp_rfc1337"
    )
    prefix = ["unshare", "-rn", "sh", "-c", f'{setup} && exec "$@"', "sh"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return prefix if ok else []


def test_census_sh_samples_a_real_namespace(tmp_path: Path) -> None:
    script = tmp_path / "traffic.py"
    script.write_text(TRAFFIC)
    out = tmp_path / "census.txt"
    prefix = _isolated_namespace()
    run = subprocess.run(
        [
            *prefix,
            sys.executable,
            str(script),
            str(CENSUS_SH),
            str(out),
            "20",
            "30",
            TEST_ADDRESS if prefix else "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    times = json.loads(run.stdout)
    assert times["returncode"] == 0
    assert times["stop_s"] < 1.0

    census = parse(out)
    assert out.read_text().endswith("\n")
    assert census.meta["interval_s"] == "0.1"
    result = analyse(census, times["a_start"], times["b_end"])
    assert result["rate_hz"] >= 5
    assert result["max_gap_s"] < 0.5  # no stall (a busy host may delay a sample or two)
    ts = census.timestamps
    assert ts[0] < times["a_start"] and ts[-1] > times["b_end"]

    def at(key: tuple[str, str], moment: float) -> int:
        """The count in the last sample well before ``moment``: a sample's timestamp is
        taken just before ss runs, so its snapshot is a few ms later."""
        i = max(i for i, t in enumerate(ts) if t < moment - 0.05)
        return census.counts.get(key, [0] * len(ts))[i]

    tw_in, tw_out = ("TIME-WAIT", "in"), ("TIME-WAIT", "out")
    # The server closed first in phase a: its accepted sockets wait, on the listen port.
    # Then the client closed first: its sockets wait, on ephemeral ports.
    if prefix:
        assert at(tw_in, times["a_start"]) == 0
        assert at(tw_in, times["b_start"]) == 20
        assert at(tw_in, float("inf")) == 20
        assert at(tw_out, times["b_start"]) == 0
        assert at(tw_out, float("inf")) == 30
        assert result["states"]["TIME-WAIT/in"]["peak"] == 20
        assert totals_by_state(result)["TIME-WAIT"] == 50
        # Listeners are counted wherever they listen: the test's and the loopback one.
        assert census.counts[("LISTEN", "in")] == [2] * len(ts)
    else:  # in the host's namespace the test can only use loopback, which is not counted
        assert at(tw_in, times["b_start"]) == at(tw_in, float("inf")) == 0
    assert result["states"]["TIME-WAIT/in"]["drain_s"] is None  # TIME-WAIT lasts 60 s


def _run_census(tmp_path: Path, env: dict[str, str], seconds: float) -> tuple[float, str]:
    """Run census.sh for ``seconds``, TERM it; the stop latency and its stderr."""
    proc = subprocess.Popen(
        [str(CENSUS_SH), str(tmp_path / "census.txt")],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(seconds)
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=5)
    assert proc.returncode == 0, stderr
    return time.monotonic() - t, stderr


def test_census_sh_stops_at_once_between_long_samples(tmp_path: Path) -> None:
    stop_s, _ = _run_census(tmp_path, {"CENSUS_INTERVAL_S": "5"}, 0.5)
    assert stop_s < 1.0
    assert len(parse(tmp_path / "census.txt").timestamps) == 1


FAKE_SS_ROWS = """\
LISTEN     0 4096 *:8080 *:*
LISTEN     0 4096 [::]:8443 [::]:*
ESTAB      0 0    [::ffff:172.18.0.3]:8080 [::ffff:172.18.0.2]:41234
ESTAB      0 0    172.18.0.3:8443 172.18.0.2:41236
TIME-WAIT  0 0    172.18.0.3:40000 172.18.0.4:8080
TIME-WAIT  0 0    [fe80::1]%eth0:51234 [fe80::2]:8080
CLOSE-WAIT 1 0    172.18.0.3:18080 172.18.0.9:51000
SYN-SENT   0 1    172.18.0.3:40002 172.18.0.4:8080
"""


def _fake_ss(tmp_path: Path, body: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ss").write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / "ss").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CENSUS_INTERVAL_S": "0.1"}


def test_census_sh_direction_is_the_local_port(tmp_path: Path) -> None:
    rows = tmp_path / "rows"
    rows.write_text(FAKE_SS_ROWS)
    env = _fake_ss(tmp_path, f"cat {rows}")
    _run_census(tmp_path, {**env, "CENSUS_LISTEN_PORTS": "8080 8443"}, 0.35)
    census = parse(tmp_path / "census.txt")
    assert census.meta == {"interval_s": "0.1", "listen_ports": "8080,8443"}
    assert len(census.timestamps) >= 3
    n = len(census.timestamps)
    assert census.counts == {
        ("CLOSE-WAIT", "out"): [1] * n,  # 18080 is not 8080
        ("ESTAB", "in"): [2] * n,
        ("LISTEN", "in"): [2] * n,
        ("SYN-SENT", "out"): [1] * n,
        ("TIME-WAIT", "out"): [2] * n,  # the peer's port does not count
    }


def test_census_sh_drops_a_sample_when_ss_fails(tmp_path: Path) -> None:
    env = _fake_ss(tmp_path, "echo 'Cannot open netlink socket: Permission denied' >&2; exit 1")
    _, stderr = _run_census(tmp_path, env, 0.25)
    assert "dropped, ss printed:" in stderr and "Permission denied" in stderr
    assert parse(tmp_path / "census.txt").timestamps == []  # a gap, not a sample of zeros


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CENSUS_INTERVAL_S": "0,1"}, "CENSUS_INTERVAL_S=0,1"),
        ({"CENSUS_INTERVAL_S": "0.0001"}, "below 1 ms"),
        ({"CENSUS_LISTEN_PORTS": "8080 http"}, "'http'"),
    ],
)
def test_census_sh_rejects_bad_settings(tmp_path: Path, env: dict[str, str], message: str) -> None:
    run = subprocess.run(
        [str(CENSUS_SH), str(tmp_path / "c.txt")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert run.returncode == 2 and message in run.stderr


# Load from t=102 to t=104.5; one sample a second. Per key, what the summary must say:
#   ESTAB/in      baseline 2, peak 8 at +1 s, back above baseline at 106: drains at 107
#   ESTAB/out     only during drain; in+out peaks at 8 (first at 103), not 8+6
#   TIME-WAIT/out baseline 2, peak 30, last above baseline at 107: drains at 108
#   CLOSE-WAIT/in never back to 0: did not drain
#   SYN-SENT/out  back to 0 at 103, before load ended: already drained
SYNTHETIC = """\
# census v1 interval_s=1 listen_ports=8080
S 100.0
ESTAB in 1
TIME-WAIT out 2
S 101.0
TIME-WAIT out 1
ESTAB in 2
S 102.0
ESTAB in 5
TIME-WAIT out 10
CLOSE-WAIT in 1
SYN-SENT out 4
S 103.0
ESTAB in 8
TIME-WAIT out 30
CLOSE-WAIT in 3
S 104.0
ESTAB in 8
TIME-WAIT out 25
CLOSE-WAIT in 3
S 105.0
ESTAB in 2
ESTAB out 6
TIME-WAIT out 20
CLOSE-WAIT in 3
S 106.0
ESTAB in 3
TIME-WAIT out 5
CLOSE-WAIT in 3
S 107.0
ESTAB in 1
TIME-WAIT out 3
CLOSE-WAIT in 3
S 108.0
ESTAB in 2
TIME-WAIT out 1
CLOSE-WAIT in 3
"""


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    path = tmp_path / "census.txt"
    path.write_text(SYNTHETIC)
    return path


def test_parse_fills_zeros(synthetic: Path) -> None:
    census = parse(synthetic)
    assert census.timestamps == [100.0 + i for i in range(9)]
    assert census.meta == {"interval_s": "1", "listen_ports": "8080"}
    assert census.counts == {
        ("CLOSE-WAIT", "in"): [0, 0, 1, 3, 3, 3, 3, 3, 3],
        ("ESTAB", "in"): [1, 2, 5, 8, 8, 2, 3, 1, 2],
        ("ESTAB", "out"): [0, 0, 0, 0, 0, 6, 0, 0, 0],
        ("SYN-SENT", "out"): [0, 0, 4, 0, 0, 0, 0, 0, 0],
        ("TIME-WAIT", "out"): [2, 1, 10, 30, 25, 20, 5, 3, 1],
    }


@pytest.mark.parametrize(
    "tail",
    [
        "S 109.0\nESTAB in 9",  # killed while writing a count: sample 109 dropped
        "S 109.0\nESTAB in",  # ... mid-line
        "S 109.0\nESTAB in 9\nTIME-W\n",  # a damaged last line
        "S 109",  # killed while writing a header
    ],
)
def test_parse_drops_a_truncated_last_sample(synthetic: Path, tail: str) -> None:
    synthetic.write_text(SYNTHETIC + tail)
    assert parse(synthetic) == parse_text(SYNTHETIC, synthetic.parent)


def test_parse_drops_the_sample_an_unfinished_line_belongs_to(tmp_path: Path) -> None:
    # "S" may be the start of "SYN-SENT out 1": sample 108 may have been cut short.
    census = parse_text(SYNTHETIC + "S", tmp_path)
    assert census.timestamps[-1] == 107.0


def test_parse_rejects_damage_before_the_last_sample(synthetic: Path) -> None:
    synthetic.write_text(SYNTHETIC.replace("ESTAB in 8\n", "ESTAB sideways 8\n", 1))
    with pytest.raises(ValueError, match=r"census.txt:14: not a census line: 'ESTAB sideways 8'"):
        parse(synthetic)


def parse_text(text: str, folder: Path) -> Census:
    path = folder / "other.txt"
    path.write_text(text)
    return parse(path)


def test_analyse_baseline_peak_drain(synthetic: Path) -> None:
    result = analyse(parse(synthetic), load_start=102.0, load_end=104.5)
    assert json.loads(json.dumps(result)) == result
    assert {k: result[k] for k in ("samples", "rate_hz", "max_gap_s", "captured_s")} == {
        "samples": 9,
        "rate_hz": 1.0,
        "max_gap_s": 1.0,
        "captured_s": [-2.0, 6.0],
    }
    states = result["states"]
    summary = {k: {f: v for f, v in s.items() if f != "timeline"} for k, s in states.items()}
    assert summary == {
        "CLOSE-WAIT/in": {
            "baseline": 0,
            "peak": 3,
            "peak_at_s": 1.0,
            "final": 3,
            "drain_s": None,
        },
        "ESTAB/in": {"baseline": 2, "peak": 8, "peak_at_s": 1.0, "final": 2, "drain_s": 2.5},
        "ESTAB/out": {"baseline": 0, "peak": 6, "peak_at_s": 3.0, "final": 0, "drain_s": 1.5},
        "SYN-SENT/out": {"baseline": 0, "peak": 4, "peak_at_s": 0.0, "final": 0, "drain_s": 0.0},
        "TIME-WAIT/out": {
            "baseline": 2,
            "peak": 30,
            "peak_at_s": 1.0,
            "final": 1,
            "drain_s": 3.5,
        },
    }
    # Runs of one value keep their two ends only.
    assert states["CLOSE-WAIT/in"]["timeline"] == [
        [-2.0, 0],
        [-1.0, 0],
        [0.0, 1],
        [1.0, 3],
        [6.0, 3],
    ]
    assert states["ESTAB/in"]["timeline"] == [
        [-2.0 + i, c] for i, c in enumerate([1, 2, 5, 8, 8, 2, 3, 1, 2])
    ]
    assert result["totals"]["ESTAB"] == {"peak": 8, "peak_at_s": 1.0, "final": 2}
    assert totals_by_state(result) == {"CLOSE-WAIT": 3, "ESTAB": 8, "SYN-SENT": 4, "TIME-WAIT": 30}


def test_analyse_deadline_cuts_the_drain_window(synthetic: Path) -> None:
    states = analyse(parse(synthetic), load_start=102.0, load_end=104.5, deadline=105.5)["states"]
    assert states["ESTAB/in"]["drain_s"] == 0.5  # 2 at 105; the rise at 106 is past the deadline
    assert states["TIME-WAIT/out"]["drain_s"] is None  # still 20 at the deadline
    assert states["SYN-SENT/out"]["drain_s"] == 0.0
    assert states["TIME-WAIT/out"]["final"] == 1  # final is the capture's, not the window's


def test_analyse_no_sample_after_load_end_is_not_drained(synthetic: Path) -> None:
    states = analyse(parse(synthetic), load_start=102.0, load_end=108.5)["states"]
    assert states["SYN-SENT/out"]["drain_s"] is None


def test_analyse_without_samples_before_load(synthetic: Path) -> None:
    states = analyse(parse(synthetic), load_start=99.0, load_end=104.5)["states"]
    assert states["TIME-WAIT/out"]["baseline"] == 0
    assert states["TIME-WAIT/out"]["drain_s"] is None  # 1 at the end, above 0
    assert states["ESTAB/in"]["peak_at_s"] == 4.0


def test_analyse_empty_census() -> None:
    result = analyse(Census(), 1.0, 2.0)
    assert result == {
        "samples": 0,
        "rate_hz": None,
        "max_gap_s": None,
        "captured_s": None,
        "states": {},
        "totals": {},
    }


def test_downsample_keeps_the_peak() -> None:
    # 1000 noisy samples at 10 Hz with one spike; its time is not a bucket boundary.
    points = [[round(i * 0.1, 3), 100 + (i * 7919) % 13] for i in range(1000)]
    points[637][1] = 500
    out = downsample(points)
    assert len(out) <= 200
    assert [63.7, 500] in out
    assert all(p in points for p in out)
    assert [p[0] for p in out] == sorted(p[0] for p in out)
    assert min(p[1] for p in out) == 100  # dips survive too


def test_downsample_keeps_the_first_of_equal_peaks() -> None:
    # Alternating counts, so that shrinking runs is not enough and buckets are used.
    points = [[float(i), 9 if i in (10, 11, 500, 501) else 1 + i % 2] for i in range(1000)]
    out = downsample(points)
    assert len(out) <= 200
    assert [10.0, 9] in out and [11.0, 9] not in out


def test_downsample_is_lossless_for_few_steps() -> None:
    points = [[float(i), 0 if i < 300 else 50 if i < 700 else 3] for i in range(1000)]
    assert downsample(points) == [
        [0.0, 0],
        [299.0, 0],
        [300.0, 50],
        [699.0, 50],
        [700.0, 3],
        [999.0, 3],
    ]


def test_analyse_timeline_keeps_the_peak_over_many_samples(tmp_path: Path) -> None:
    blocks = [
        f"S {1000 + i / 10:.6f}\nTIME-WAIT out {i % 17 + (900 if i == 1234 else 0)}\n"
        for i in range(3000)
    ]
    census = parse_text("".join(blocks), tmp_path)
    state = analyse(census, load_start=1000.0, load_end=1200.0)["states"]["TIME-WAIT/out"]
    assert state["peak"] == 1234 % 17 + 900 and state["peak_at_s"] == 123.4
    assert len(state["timeline"]) <= 200
    assert [123.4, state["peak"]] in state["timeline"]
