"""Which harness runs are alive, so that what a dead one left can go and a live one's
stack is never touched.

A process that creates Docker objects for a run holds that run's *lease* first: a shared
``flock`` on ``<tmp>/harness-leases/<run>.lease``, held until the process ends, however
it ends (the kernel drops the lock on exit, SIGKILL, OOM kill; a reboot drops them all).
Several processes may hold one run's lease (a ``rerun`` repeats a cell under its run's
label). A run is alive while anyone holds its lease: :func:`alive` asks for the lock
exclusively without waiting and fails exactly then.

The leases live on this host: a run driving a remote engine (``DOCKER_HOST``) from
another host is alive there, not here, so :func:`alive` calls it dead.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

LEASE_DIR = Path(tempfile.gettempdir()) / "harness-leases"

# Run labels come back from Docker, where anyone can set them: only a plain file name
# becomes a path.
_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def _path(run: str) -> Path | None:
    return LEASE_DIR / f"{run}.lease" if _RUN.fullmatch(run) else None


@contextmanager
def held(run: str) -> Iterator[None]:
    """Hold ``run``'s lease for the block (and no longer than this process lives).

    Raises ValueError for a run id that is not a plain file name (the harness's run ids
    always are; see ``results.RUN_ID``), OSError when the lease folder cannot be written.
    """
    path = _path(run)
    if path is None:
        raise ValueError(f"not a run id: {run!r}")
    LEASE_DIR.mkdir(exist_ok=True)
    with suppress(PermissionError):  # another user made it: theirs to chmod
        LEASE_DIR.chmod(0o1777)  # shared by every user of the engine, like /tmp itself
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # never waits long: holders only ever share it
        yield
    finally:
        os.close(fd)


def alive(run: str) -> bool:
    """True while a process holds ``run``'s lease; False when none does, when no lease
    was ever taken on this host, or for a label that is not a run id."""
    path = _path(run)
    if path is None or not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops the lock we may have taken
    return False
