"""The run folder: where every file of a run lives, and the one writer of its JSON.

results/<run>/run.json            what was asked, where it ran (provenance)
results/<run>/<cell>/cell.json    everything measured in one cell (atomic write)
results/<run>/<cell>/...          the raw files cell.json was computed from
results/<run>/report.md           tables built from the cell.json files
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import ROOT
from harness.errors import HarnessError, ResultsError

RESULTS_DIR = Path(os.environ.get("HARNESS_RESULTS", ROOT / "results"))

# Run ids handed out by this process, and whether their folder existed already then:
# a run that fails before its first cell leaves no folder of its own behind.
_ISSUED: dict[str, bool] = {}


def new_run_id(name: str) -> str:
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{name}"
    _ISSUED.setdefault(run_id, (RESULTS_DIR / run_id).exists())
    return run_id


def check_writable() -> None:
    """Before anything starts: results can be written where they are going."""
    where = (
        f"HARNESS_RESULTS={RESULTS_DIR}" if "HARNESS_RESULTS" in os.environ else str(RESULTS_DIR)
    )
    try:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=RESULTS_DIR, prefix=".harness-write-check-"):
            pass
    except OSError as exc:
        raise HarnessError(
            f"{where}: results cannot be written there ({exc.strerror or exc}). Point "
            f"HARNESS_RESULTS at a writable folder (or unset it: {ROOT / 'results'}). "
            "Nothing has been started."
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
    """Write ``data`` as JSON, atomically and durably: a reader (or a crash, or a power
    cut) sees the old file or the new one, never half of one. Mode 0644, like every other
    results file. Nothing is left behind when it fails.

    Raises ResultsError (a full disk, ...) naming ``path``; TypeError / ValueError for a
    value JSON cannot encode, before any file is created.
    """
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
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
    """``report RUN_DIR``: the folder of a run (it has run.json)."""
    if not (path / "run.json").is_file():
        inside = " (it is one cell of a run: give its parent folder)" if _is_cell(path) else ""
        raise HarnessError(
            f"{path}: not a run folder (no run.json in it){inside}. Give the folder a run "
            f"printed as 'results in ...', e.g. {RESULTS_DIR}/<run>."
        )


def require_cell(path: Path) -> None:
    """``rerun CELL_DIR``: one cell's folder (it has cell.json)."""
    if _is_cell(path):
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


def read_json(path: Path) -> Any:
    """A JSON file of the harness; a damaged one is an error naming it, not a traceback."""
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(
            f"{path} (line {exc.lineno}, column {exc.colno}): not valid JSON ({exc.msg}). The "
            "harness writes these files whole: this one was edited or damaged since. Restore "
            "it, or run that cell or matrix again."
        ) from None


def cells(run_dir: Path) -> list[dict[str, Any]]:
    """Every cell.json of a run, in cell order."""
    return [read_json(p) for p in sorted(run_dir.glob("*/cell.json"))]
