"""A run is alive exactly while a process holds its lease; the kernel ends it with the
process, however the process ends."""

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.stack import lease

HOLD = """
import sys, time
from harness.stack import lease
with lease.held(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_run_is_alive_while_its_process_holds_the_lease_and_dead_after_a_kill(tmp_path):
    run = f"20261129T000000Z-lease-test-{os.getpid()}"
    assert not lease.alive(run)  # never taken on this host
    child = subprocess.Popen([sys.executable, "-c", HOLD, run], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        assert lease.alive(run)
        assert lease.alive(run)  # asking does not take it away
        with lease.held(run):  # a rerun shares the lease of the run it repeats
            assert lease.alive(run)
        assert lease.alive(run)
        child.send_signal(signal.SIGKILL)  # no cleanup of any kind runs
        child.wait(timeout=10)
    finally:
        child.kill()
    deadline = time.monotonic() + 5
    while lease.alive(run) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lease.alive(run)


def test_this_process_sees_its_own_run_alive():
    run = f"20261129T000000Z-lease-self-{os.getpid()}"
    with lease.held(run):
        assert lease.alive(run)
    assert not lease.alive(run)


@pytest.mark.parametrize("label", ["../../etc/passwd", "", "a/b", ".hidden", "x" * 300])
def test_a_label_that_is_not_a_run_id_never_becomes_a_path(label):
    assert not lease.alive(label)
    with pytest.raises(ValueError), lease.held(label):
        pass
