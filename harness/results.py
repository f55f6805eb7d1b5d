"""The run folder: where every file of a run lives, and the one writer of its JSON.

results/<run>/run.json            what was asked, where it ran (provenance)
results/<run>/<cell>/cell.json    everything measured in one cell (atomic write)
results/<run>/<cell>/...          the raw files cell.json was computed from
results/<run>/report.md           tables built from the cell.json files
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import ROOT

RESULTS_DIR = Path(os.environ.get("HARNESS_RESULTS", ROOT / "results"))


def new_run_id(name: str) -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{name}"


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def cells(run_dir: Path) -> list[dict[str, Any]]:
    """Every cell.json of a run, in cell order."""
    return [read_json(p) for p in sorted(run_dir.glob("*/cell.json"))]
