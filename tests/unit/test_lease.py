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


ASK = """
import sys
from harness.stack import lease
print(lease.alive(sys.argv[1]), flush=True)
"""


def test_a_process_with_another_tmpdir_still_sees_the_run_alive(tmp_path):
    # Users share the engine but not their environment (pam_tmpdir gives each its own
    # TMPDIR): a `clean` run from another shell must not call a live run dead.
    run = f"20261129T000000Z-lease-env-{os.getpid()}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    holder_env = {**os.environ, "TMPDIR": str(tmp_path / "a")}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, run], stdout=subprocess.PIPE, text=True, env=holder_env
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        for tmpdir in (tmp_path / "b", tmp_path / "a"):
            asked = subprocess.run(
                [sys.executable, "-c", ASK, run], capture_output=True, text=True, timeout=30,
                env={**os.environ, "TMPDIR": str(tmpdir)}, check=True,
            )  # fmt: skip
            assert asked.stdout == "True\n", (tmpdir, asked.stdout, asked.stderr)
        assert lease.alive(run)
    finally:
        child.kill()
        child.wait(timeout=10)
        (lease.LEASE_DIR / f"{run}.lease").unlink(missing_ok=True)


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_a_lease_path_that_is_no_regular_file_is_refused_not_followed(tmp_path, kind):
    # Anyone can create names in the shared, sticky lease folder: a FIFO there would hang
    # `clean` on open(), a symlink would make held() create a file where it points.
    run = f"20261129T000000Z-lease-odd-{kind}-{os.getpid()}"
    path = lease.LEASE_DIR / f"{run}.lease"
    lease.LEASE_DIR.mkdir(exist_ok=True)
    target = tmp_path / "created-through-the-link"
    {"fifo": os.mkfifo, "directory": os.mkdir}.get(kind, lambda p: p.symlink_to(target))(path)
    try:
        assert not lease.alive(run)  # returns at once: no holder can hold a non-file
        with pytest.raises(lease.LeaseError, match="not a regular file"), lease.held(run):
            pass
        assert not target.exists()
    finally:
        path.rmdir() if kind == "directory" else path.unlink()


UMASK_HOLD = """
import os, sys, time
os.umask(0o077)  # a hardened login: new files are owner-only
from harness.stack import lease
with lease.held(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_lease_taken_under_a_strict_umask_is_readable_by_every_user(tmp_path):
    # another user's alive() opens the file to ask for its lock: owner-only, that open
    # failed with EACCES (a traceback in their `clean` or run start)
    run = f"20261129T000000Z-lease-umask-{os.getpid()}"
    child = subprocess.Popen(
        [sys.executable, "-c", UMASK_HOLD, run], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        assert (lease.LEASE_DIR / f"{run}.lease").stat().st_mode & 0o777 == 0o644
        assert lease.alive(run)
    finally:
        child.kill()
        child.wait(timeout=10)
        (lease.LEASE_DIR / f"{run}.lease").unlink(missing_ok=True)


def test_a_lease_this_user_cannot_open_counts_as_alive(monkeypatch):
    # Cannot tell, so leave it alone: a live run's stack is never touched. (Root opens any
    # file, and the test runs as root here: the open's EACCES is simulated.)
    run = f"20261129T000000Z-lease-unreadable-{os.getpid()}"
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith(f"{run}.lease"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(lease.os, "open", denied)
    assert lease.alive(run)
