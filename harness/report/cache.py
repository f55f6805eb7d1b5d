"""What `harness report` derived before, kept in the run folder and trusted only when the
key matches what is read now and this user's harness wrote it.

`harness report` recomputes every cell from its raw files and draws every figure (issue
15: <= 5 s on the default matrix). Both are pure functions of their inputs, so a result
is kept under the sha256 of everything it is computed from (:func:`key`: the raw files'
bytes, the harness's own source, the libraries' versions) and reused while that is
unchanged. A run folder comes from other people, though, so an entry is also
authenticated: each file holds an HMAC-SHA256 (RFC 2104) over its key and payload made
with a secret that never leaves this user's cache directory
(``$XDG_CACHE_HOME/harness/cache-key``, else ``~/.cache/harness/cache-key``, mode 0600).
An entry written elsewhere, edited, truncated, renamed to another key, a symlink or
oversized is not used: the result is computed again (and the entry rewritten). Without a
usable secret (no writable cache directory) nothing is cached, and nothing is lost but
time.

Layout: ``<run>/.cache/<kind>-<key>``, each file ``<hex HMAC>\\n<payload>``. Kinds:
``analysis`` (a cell's metrics as cell.json holds them: :func:`analysed`, written by the
runner as each cell ends, :func:`remember`) and the report's figures
(harness.report.plots).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from contextlib import suppress
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

import harness
from harness.analyse.record import Metrics

CACHE_DIR = ".cache"
SECRET_BYTES = 32
# Larger than any entry the report writes (a cell's metrics: tens of kB; a figure's SVG:
# hundreds of kB); a bigger file is no entry of ours and is not read.
MAX_ENTRY_BYTES = 64 * 2**20
_TAG_CHARS = 2 * hashlib.sha256().digest_size
# The libraries whose behaviour a cached result depends on (parsing, numbers, drawing).
_LIBRARIES = ("dpkt", "hdrhistogram", "numpy", "pydantic", "matplotlib", "scipy")


def secret_path() -> Path:
    """Where this user's cache secret lives: ``$XDG_CACHE_HOME/harness/cache-key``, or
    ``~/.cache/harness/cache-key`` (XDG Base Directory Specification)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "harness" / "cache-key"


@functools.cache
def _secret_at(path: Path) -> bytes | None:
    # Written whole under a temporary name, then linked into place: the first link wins
    # and every process (the report's forked workers may all ask at once) reads the same
    # 32 bytes. Created in place, a reader between the create and the write got 0 bytes
    # and kept nothing for its cells.
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(SECRET_BYTES))
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
        finally:
            partial.unlink(missing_ok=True)
    except OSError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            value = f.read(SECRET_BYTES + 1)
    except OSError:
        return None
    # Another length is not a key this module wrote: no cache rather than a weak key.
    return value if len(value) == SECRET_BYTES else None


def secret() -> bytes | None:
    """This user's cache secret (32 random bytes, created on first use), or None when
    it cannot be created or read: then nothing is cached."""
    return _secret_at(secret_path())


@functools.cache
def code_version() -> str:
    """sha256 over the harness's own source (every ``.py`` in the package, by relative
    path) and the versions of the libraries it computes and draws with: any change to
    either is a new key for every entry."""
    digest = hashlib.sha256()
    root = Path(harness.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(f"{path.relative_to(root)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name}={metadata.version(name)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none\0".encode())
    return digest.hexdigest()


def key(parts: Iterable[str | bytes]) -> str:
    """The sha256 (hex) of ``parts`` and :func:`code_version`, each part length-prefixed
    so that no two different lists of parts give one key."""
    digest = hashlib.sha256(code_version().encode())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def canonical(model: BaseModel) -> str:
    """A model's JSON with sorted keys, for a key: a record read from cell.json and the
    same record as just computed hold their mappings in different orders."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def file_digest(path: Path) -> bytes:
    """The sha256 of a file's bytes (``hashlib.file_digest``). Raises OSError."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def _tag(secret_key: bytes, kind: str, entry_key: str, payload: bytes) -> str:
    message = f"{kind}\0{entry_key}\0".encode() + payload
    return hmac.new(secret_key, message, hashlib.sha256).hexdigest()


def _path(run_dir: Path, kind: str, entry_key: str) -> Path:
    return run_dir / CACHE_DIR / f"{kind}-{entry_key}"


def read(run_dir: Path, kind: str, entry_key: str) -> bytes | None:
    """The payload kept for ``kind`` (a name of the report's, [a-z-]) and ``entry_key``
    (from :func:`key`), or None: no entry, no secret, or an entry that is not this
    user's harness's own for exactly this key (its HMAC does not verify). Never raises."""
    secret_key = secret()
    if secret_key is None:
        return None
    try:
        fd = os.open(_path(run_dir, kind, entry_key), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    tag, payload = data[:_TAG_CHARS], data[_TAG_CHARS + 1 :]
    if len(data) > MAX_ENTRY_BYTES or data[_TAG_CHARS : _TAG_CHARS + 1] != b"\n":
        return None
    expected = _tag(secret_key, kind, entry_key, payload).encode()
    return payload if hmac.compare_digest(tag, expected) else None


def write(run_dir: Path, kind: str, entry_key: str, payload: bytes) -> None:
    """Keep ``payload`` for ``kind`` and ``entry_key``, whole or not at all (a temporary
    file, then a rename: workers may write at once). A run folder that cannot be written
    (read-only, full) keeps nothing; never raises."""
    secret_key = secret()
    if secret_key is None or len(payload) + _TAG_CHARS + 1 > MAX_ENTRY_BYTES:
        return
    path = _path(run_dir, kind, entry_key)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(exist_ok=True)
        with partial.open("wb") as f:
            f.write(_tag(secret_key, kind, entry_key, payload).encode() + b"\n" + payload)
        partial.replace(path)
    except OSError:
        with suppress(OSError):
            partial.unlink(missing_ok=True)


# --- a cell's analysis -------------------------------------------------------------------

ANALYSIS = "analysis"


def analysis_key(folder: Path, target: str, in_flight: int | None = None) -> str:
    """The key of a cell's analysis: its target, its in-flight bound (from cell.json's
    load and parameters: :func:`harness.analyse.cell_metrics.in_flight_bound`) and every
    raw file in its folder by relative path and sha256 (cell.json, the analysis's
    output, aside). Raises OSError."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "cell.json")
    parts: list[str | bytes] = [target, f"in_flight={in_flight}"]
    for path in files:
        parts += [path.relative_to(folder).as_posix(), file_digest(path)]
    return key(parts)


def _payload(metrics: Metrics) -> bytes:
    return metrics.model_dump_json(exclude_unset=True).encode()  # the fields set, as cell.json


def analysed(folder: Path, target: str, in_flight: int | None = None) -> tuple[Metrics, str]:
    """:func:`harness.analyse.cell_metrics.compute` of a cell folder (``target``:
    "haproxy" or "calibration"), or its result kept in the run folder (``folder``'s
    parent) when every raw file and the harness are as they were then. Either way the
    metrics are those a cell.json holds (read back as :func:`harness.analyse.record`
    reads them), so a kept and a computed record are the same; and the entry's key
    (:func:`analysis_key`). Raises what ``compute`` raises."""
    run_dir, entry_key = folder.parent, analysis_key(folder, target, in_flight)
    kept = read(run_dir, ANALYSIS, entry_key)
    if kept is not None:
        try:
            return Metrics.model_validate(json.loads(kept)), entry_key
        except (ValueError, RecursionError):  # authentic, yet no record: computed again
            pass
    # dpkt, numpy, hdrhistogram: imported only when a cell is computed
    from harness.analyse import cell_metrics

    payload = _payload(cell_metrics.compute(folder, target, in_flight))
    write(run_dir, ANALYSIS, entry_key, payload)
    return Metrics.model_validate(json.loads(payload)), entry_key


def remember(folder: Path, target: str, metrics: Metrics, in_flight: int | None = None) -> None:
    """Keep ``metrics``, just computed from ``folder``'s raw files by this harness, for
    :func:`analysed` (the runner, as each cell ends: `harness report` after a run then
    parses nothing again). Never raises: a cell whose files cannot be hashed keeps
    nothing."""
    try:
        entry_key = analysis_key(folder, target, in_flight)
    except OSError:
        return
    write(folder.parent, ANALYSIS, entry_key, _payload(metrics))
