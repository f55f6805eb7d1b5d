"""Which harness runs are alive, so that what a dead one left can go and a live one's
stack is never touched.

A process that creates Docker objects for a run holds that run's *lease* first: a shared
``flock`` on ``<tmp>/harness-leases/<run>.lease``, held until the process ends, however
it ends (the kernel drops the lock on exit, SIGKILL, OOM kill; a reboot drops them all).
Several processes may hold one run's lease (a ``rerun`` repeats a cell under its run's
label). A run is alive while anyone holds its lease: :func:`alive` asks for the lock
exclusively without waiting and fails exactly then.

The leases live on this host, in one folder for every user and environment
(:data:`LEASE_DIR`, not ``$TMPDIR``: pam_tmpdir and systemd give users TMPDIRs of their
own, and a ``clean`` that looked in another folder would call a live run dead). A run
driving a remote engine (``DOCKER_HOST``) from another host is alive there, not here, so
:func:`alive` calls it dead.

The folder is world-writable (sticky), so anyone may put a name there: a lease is only
ever a regular file, opened without following a symlink and without blocking (a FIFO
would block ``open``), so a planted name can neither hang :func:`alive` nor make
:func:`held` create a file elsewhere.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from harness.errors import HarnessError

# /tmp itself, whatever TMPDIR says: the FHS's one temporary folder every user shares.
LEASE_DIR = Path("/tmp/harness-leases")
# O_NOFOLLOW: a symlink fails (ELOOP); O_NONBLOCK: opening a FIFO returns at once.
_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK

# Run labels come back from Docker, where anyone can set them: only a plain file name
# becomes a path.
_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def _path(run: str) -> Path | None:
    return LEASE_DIR / f"{run}.lease" if _RUN.fullmatch(run) else None


class LeaseError(HarnessError):
    """A run's lease cannot be taken (exit 2): without it, other runs would see it dead."""


class NotALease(OSError):
    """A lease path that is not a regular file: planted, as the harness makes only files."""


def _open(path: Path, flags: int = 0) -> int:
    """A file descriptor on the lease file ``path``; OSError when it is anything but a
    regular file (:class:`NotALease`: a symlink, a FIFO, a directory, a device)."""
    try:
        fd = os.open(path, _OPEN | flags, 0o644)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR):
            raise NotALease(e.errno, "not a regular file") from e
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotALease(errno.EINVAL, "not a regular file")
    return fd


@contextmanager
def held(run: str) -> Iterator[None]:
    """Hold ``run``'s lease for the block (and no longer than this process lives).

    Raises ValueError for a run id that is not a plain file name (the harness's run ids
    always are; see ``results.RUN_ID``), :class:`LeaseError` (exit 2, before anything of
    the run exists in Docker) when the lease folder cannot be written or the lease path
    is not a regular file.
    """
    path = _path(run)
    if path is None:
        raise ValueError(f"not a run id: {run!r}")
    try:
        LEASE_DIR.mkdir(exist_ok=True)
        with suppress(PermissionError):  # another user made it: theirs to chmod
            LEASE_DIR.chmod(0o1777)  # shared by every user of the engine, like /tmp itself
        fd = _open(path, os.O_CREAT)
        # readable by every user whatever the umask: their alive() opens it to ask
        with suppress(PermissionError):  # another user's lease file: theirs to chmod
            os.fchmod(fd, 0o644)
    except OSError as e:
        raise LeaseError(
            f"cannot take run {run}'s lease {path}: {e.strerror or e}. A run holds it so "
            f"that other runs and `harness clean` leave its stack alone. {LEASE_DIR} must "
            "be a folder every user can write (mode 1777, like /tmp), and the lease a "
            "regular file or absent: remove what is there instead."
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # never waits long: holders only ever share it
        yield
    finally:
        os.close(fd)


def alive(run: str) -> bool:
    """True while a process holds ``run``'s lease; False when none does, when no lease
    was ever taken on this host, for a label that is not a run id, or where the lease path
    is no regular file (which :func:`held` refuses, so no process holds it). True, too,
    for a lease this user may not open: a run that cannot be told dead is left alone."""
    path = _path(run)
    if path is None:
        return False
    try:
        fd = _open(path)
    except (FileNotFoundError, NotALease):
        return False
    except PermissionError:  # another user's, unreadable: cannot tell, so leave it alone
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops the lock we may have taken
    return False
