"""A load generator's JSON output (wrk.json, client.json), validated against its model
once per version of the file: one cell's analysis asks several times (load summary,
latency histogram, statuses), and the file is parsed once per (path, size, mtime)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def read(model: type[M], path: Path, what: str) -> M:
    """``path`` validated as ``model``. Raises ValueError naming the file, the first key
    that failed and ``what`` the file should have been (e.g. "the wrk.json the
    harness's wrk script writes")."""
    info = path.stat()
    return _read(model, str(path), info.st_size, info.st_mtime_ns, what)


@functools.lru_cache(maxsize=16)
def _read(model: type[M], path: str, size: int, mtime_ns: int, what: str) -> M:
    try:
        return model.model_validate_json(Path(path).read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top level)"
        raise ValueError(
            f"{path}: not {what} ({where}: {first['msg']}). Re-measure the cell; an edited "
            "file is not read."
        ) from None
