"""No run may leave containers, networks or volumes behind: not on Ctrl-C, not on a kill."""

import os
import signal
import subprocess
import sys
import time

import pytest

from harness import ROOT
from harness.stack.project import leftovers


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_tears_everything_down(docker_engine, tmp_path, sig):
    env = {**os.environ, "HARNESS_RESULTS": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--haproxy", "debian:bookworm",
         "--scenario", "smoke", "--duration", "60"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # like a terminal: the signal goes to the whole group
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not leftovers(None)["containers"] and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(10)  # past `up --wait`: the load is running
        assert leftovers(None)["containers"], "the stack never came up"
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
    assert "Traceback" not in err
    assert leftovers(None) == {"containers": [], "networks": [], "volumes": []}
