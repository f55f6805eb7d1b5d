"""The run folder: where every file of a run lives, and the one writer of its JSON.

results/<run>/run.json            what was asked, where it ran (provenance)
results/<run>/<cell>/cell.json    everything measured in one cell (atomic write)
results/<run>/<cell>/...          the raw files cell.json was computed from
results/<run>/report.md           tables built from the cell.json files
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from harness import ROOT
from harness.errors import HarnessError, ResultsError

# Absolute: the path reaches `docker run --mount` and compose's bind mounts, which take
# no relative path (a relative one was read as a volume name).
RESULTS_DIR = Path(os.path.abspath(os.environ.get("HARNESS_RESULTS") or ROOT / "results"))

# What a bind mount's source cannot hold: compose passes a cell's mounts to Docker as
# "source:target:mode" ("invalid volume specification" with a ':' in the source).
UNMOUNTABLE = {":": "a colon", "\n": "a newline", "\r": "a carriage return"}
# What a run id looks like (a UTC time, then a name): checked where one is read back.
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9][A-Za-z0-9._-]{0,120}")

# Run ids handed out by this process, and whether their folder existed already then:
# a run that fails before its first cell leaves no folder of its own behind.
_ISSUED: dict[str, bool] = {}

LOCK_FILE = ".harness.lock"


def use_results_dir(path: Path) -> None:
    """``--results DIR``: run folders go to ``path`` (made absolute, as HARNESS_RESULTS is)."""
    global RESULTS_DIR
    RESULTS_DIR = Path(os.path.abspath(path))


def safe_name(name: str, limit: int = 40) -> str:
    """``name`` as [A-Za-z0-9._-] only (it reaches folder, project and mount names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:limit].strip("-._") or "run"


def stamp() -> str:
    """UTC time to the second plus a random suffix, e.g. ``20261129T140102Z-3f9a1c``:
    two runs started in the same second still differ."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def new_run_id(name: str) -> str:
    """A run id nobody else holds: ``<time>-<suffix>-<name>``; its folder is created here
    (an exclusive mkdir: a collision with another process picks another suffix).

    Raises ResultsError when the folder cannot be created.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for _ in range(100):  # 16M suffixes a second: a second collision is already rare
        time_part, suffix = stamp().split("-")
        run_id = f"{time_part}-{suffix}-{safe_name(name)}"
        try:
            (RESULTS_DIR / run_id).mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ResultsError.writing(RESULTS_DIR / run_id, exc) from exc
        _ISSUED[run_id] = False
        return run_id
    raise ResultsError(
        f"{RESULTS_DIR}: no free run folder name after 100 tries; is something creating "
        "folders there in a loop?",
        RESULTS_DIR,
    )


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run folder while this process writes it: an flock on a file inside it,
    released when the process ends, however it ends.

    Raises ResultsError when another harness process holds it.
    """
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ResultsError.writing(path, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResultsError(
                f"{run_dir}: another harness process is using this run folder (it holds "
                f"{path}). Wait for it to end, or stop it, then try again.",
                run_dir,
            ) from None
        yield
    finally:
        os.close(fd)


@contextmanager
def writing(where: Path) -> Iterator[None]:
    """An OSError met writing results under ``where`` becomes a ResultsError naming the
    file (or ``where``). The Docker SDK's errors are OSErrors too: they pass unchanged."""
    try:
        yield
    except requests.exceptions.RequestException:
        raise
    except OSError as exc:
        raise ResultsError.writing(where, exc) from exc


def check_mountable(path: Path, where: str) -> None:
    """A folder whose files are bind-mounted into containers: no character that
    compose's volumes cannot carry. ``where`` names its origin. Raises ResultsError."""
    bad = [what for char, what in UNMOUNTABLE.items() if char in str(path)]
    if bad:
        raise ResultsError(
            f"{where}: the path holds {' and '.join(bad)}, which Docker cannot bind-mount "
            "(cells mount their files from there into the containers). Use a folder "
            "whose path has none. Nothing has been started.",
            path,
        )


def check_writable() -> None:
    """Before anything starts: results can be written where they are going.

    Raises ResultsError naming HARNESS_RESULTS (or the default folder) and the cause.
    """
    where = (
        f"HARNESS_RESULTS={RESULTS_DIR}" if "HARNESS_RESULTS" in os.environ else str(RESULTS_DIR)
    )
    check_mountable(RESULTS_DIR, where)
    try:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=RESULTS_DIR, prefix=".harness-write-check-"):
            pass
    except OSError as exc:
        raise ResultsError(
            f"{where}: results cannot be written there ({exc.strerror or exc}). Point "
            f"HARNESS_RESULTS at a writable folder (or unset it: {ROOT / 'results'}). "
            "Nothing has been started.",
            RESULTS_DIR,
        ) from None


def discard_unstarted(message: str) -> str:
    """After an error that stopped a run before its first cell: remove the run folders
    this process created (no run.json: they hold no result). A folder the message points
    into is kept for the files it names. Returns a note to append to the message."""
    notes = []
    for run_id, existed in _ISSUED.items():
        folder = RESULTS_DIR / run_id
        if existed or not folder.is_dir() or (folder / "run.json").exists():
            continue
        if str(folder) in message:
            notes.append(
                f"\nThe run folder {folder} is kept for the files named above; no cell ran "
                "in it (it has no run.json). Delete it when done."
            )
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return "".join(notes)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON, atomically and durably (see :func:`write_text`).

    Raises ResultsError (a full disk, ...) naming ``path``; TypeError / ValueError for a
    value JSON cannot encode, before any file is created.
    """
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text``, atomically and durably: a reader (or a crash, or a power cut) sees
    the old file or the new one, never half of one. Mode 0644, like every other results
    file. Nothing is left behind when it fails. Raises ResultsError naming ``path``.
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o644)  # mkstemp's 0600 would differ from the rest
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)  # the rename itself survives a crash
    except OSError as exc:
        raise ResultsError.writing(path, exc) from exc
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def require_run(path: Path) -> None:
    """``report RUN_DIR``: the folder of a run (it has run.json), holding only regular
    files and folders (:func:`require_plain`). Raises HarnessError otherwise."""
    if not (path / "run.json").is_file():
        inside = " (it is one cell of a run: give its parent folder)" if _is_cell(path) else ""
        raise HarnessError(
            f"{path}: not a run folder (no run.json in it){inside}. Give the folder a run "
            f"printed as 'results in ...', e.g. {RESULTS_DIR}/<run>."
        )
    require_plain(path)


def require_plain(folder: Path) -> None:
    """Everything in ``folder`` is a regular file or folder, as the harness
    writes them; raises HarnessError naming the first entry that is not (a symlink, a
    FIFO, a socket, a device).

    A run folder may come from someone else (a tarball): a symlink to /dev/zero would
    make a reader read until memory runs out, a FIFO would block it for ever, and a
    symlink elsewhere would copy another file into a report. Checked with lstat, so
    nothing is followed or opened.
    """
    kinds = {stat.S_IFLNK: "a symlink", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
             stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}  # fmt: skip
    # the folder itself may be a link (results/latest -> a run): what is in it may not
    pending = list(folder.iterdir())
    while pending:
        here = pending.pop()
        mode = here.lstat().st_mode
        if stat.S_ISDIR(mode):
            pending.extend(here.iterdir())
        elif not stat.S_ISREG(mode):
            raise HarnessError(
                f"{here}: {kinds.get(stat.S_IFMT(mode), 'not a file')}, in a run folder that "
                "the harness fills with regular files and folders only. It was put there "
                "since (a copied or unpacked run?) and is not read: remove it, or copy the "
                "run again without links (e.g. cp -rL, or tar without -h)."
            )


def require_cell(path: Path) -> None:
    """``rerun CELL_DIR``: one cell's folder (it has cell.json), holding only regular
    files and folders (:func:`require_plain`). Raises HarnessError otherwise."""
    if _is_cell(path):
        require_plain(path)
        return
    cells = sorted(p.parent.name for p in path.glob("*/cell.json"))
    hint = (
        f"It holds these cells, give one of them: {', '.join(cells[:5])}"
        + (", ..." if len(cells) > 5 else "")
        if cells
        else f"Give one cell's folder inside a run, e.g. {RESULTS_DIR}/<run>/001-smoke-...-r1"
    )
    raise HarnessError(f"{path}: not a cell folder (no cell.json in it). {hint}.")


def _is_cell(path: Path) -> bool:
    return (path / "cell.json").is_file()


# The most a record (run.json, cell.json, verdicts.json) can be: they hold summaries,
# each string bounded (record.TEXT_MAX, 1 MB, for an error's text), tens of kB here. A
# shared run folder's 4 GB cell.json (a sparse file costs its sender nothing) was read
# whole, until memory ran out.
RECORD_MAX = 64 * 1024 * 1024


# The most one raw file of a cell (a pcap, haproxy.log, a census, probe.jsonl) can be
# for `harness report` to analyse it: parsers read them whole. A default-matrix cell's
# largest is a few MB; a shared folder's multi-GB file (sparse: free to send) is refused.
RAW_FILE_MAX = 1024 * 1024 * 1024


def check_raw_sizes(folder: Path, limit: int = RAW_FILE_MAX) -> None:
    """Refuse a cell folder holding a file over ``limit`` bytes before any is parsed.
    Raises HarnessError naming the file, its size and the limit."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (size := path.stat().st_size) > limit:
            raise HarnessError(
                f"{path}: {size:,} bytes, more than the {limit // 1024 // 1024:,} MiB a raw "
                "file of a cell may be for the analysis (it reads each whole). It was edited "
                "or damaged since, or is not the harness's: restore it, or run that cell again."
            )


def read_json(path: Path, limit: int = RECORD_MAX) -> Any:
    """A JSON file of the harness (at most ``limit`` bytes, UTF-8); a damaged or oversized
    one is a HarnessError naming it, not a traceback, and nothing beyond ``limit + 1``
    bytes is read."""
    with path.open("rb") as source:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise HarnessError(
            f"{path}: more than {limit // 1024 // 1024} MiB, larger than any record the "
            "harness writes. It was edited or damaged since, or is not the harness's: "
            "it is not read. Restore it, or run that cell or matrix again."
        )
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise HarnessError(
            f"{path}: not UTF-8 (byte {exc.start}). The harness writes these files whole: "
            "this one was edited or damaged since. Restore it, or run that cell or matrix "
            "again."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(
            f"{path} (line {exc.lineno}, column {exc.colno}): not valid JSON ({exc.msg}). The "
            "harness writes these files whole: this one was edited or damaged since. Restore "
            "it, or run that cell or matrix again."
        ) from None
    except (ValueError, RecursionError) as exc:  # valid JSON beyond Python's limits
        why = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:100]
        raise HarnessError(
            f"{path}: not JSON the harness wrote ({why}). It was edited or damaged since. "
            "Restore it, or run that cell or matrix again."
        ) from None
