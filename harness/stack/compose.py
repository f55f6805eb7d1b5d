"""The one place that runs the Docker CLI (``docker compose`` and the few plain ``docker`` verbs).

Every command is logged with its duration to a log file (the cell's ``commands.log``,
or the image build log), and its output is captured there too, so a failed step can be
read after the fact without re-running it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import docker
import docker.errors

from harness.errors import CellError, EngineError

ENGINE_HINT = "Run 'make engine' (or start Docker yourself so that 'docker info' works)."

# The userinfo of a URL (user:password@ or token@): index and mirror URLs may carry
# credentials, and command logs are kept in run folders that get published.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s?#]+)@")


def redact(text: str) -> str:
    """Credentials in URLs hidden as pip hides them: ``user:****@host``, ``****@host``."""

    def hide(m: re.Match[str]) -> str:
        user, colon, _ = m["userinfo"].partition(":")
        return f"{m['scheme']}{user}:****@" if colon else f"{m['scheme']}****@"

    return _URL_USERINFO.sub(hide, text)


@cache
def client() -> docker.DockerClient:
    """The Docker SDK client, for inspection: images, containers, stats."""
    try:
        dc = docker.from_env(timeout=120)
        dc.ping()
    except docker.errors.DockerException as exc:
        raise EngineError(f"no Docker engine answers ({exc}). {ENGINE_HINT}") from exc
    return dc


# The local engine: DOCKER_HOST, or the CLI's current context. Docker's name for it.
LOCAL = "default"


def docker_argv(context: str = LOCAL) -> list[str]:
    """The Docker CLI aimed at one engine: ``docker`` for the local one, else
    ``docker --context NAME``. ``context`` is a validated name (harness.plan.spec.Host)."""
    return ["docker"] if context == LOCAL else ["docker", "--context", context]


_engines: dict[str, docker.DockerClient] = {}
_engines_lock = threading.Lock()


def engine(context: str = LOCAL) -> docker.DockerClient:
    """The Docker SDK client of one engine, by its Docker context (the CLI's own store:
    ``docker context inspect NAME`` gives its endpoint; ssh:// endpoints go through the
    ssh binary, as the CLI's do). Raises EngineError when it does not answer."""
    if context == LOCAL:
        return client()
    with _engines_lock:
        if context in _engines:
            return _engines[context]
        try:
            proc = subprocess.run(
                ["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}",
                 context],
                capture_output=True, timeout=30, check=True,
            )  # fmt: skip
            host = proc.stdout.decode().strip()
            dc = docker.DockerClient(
                base_url=host, timeout=120, use_ssh_client=host.startswith("ssh://")
            )
            dc.ping()
        except (subprocess.SubprocessError, docker.errors.DockerException) as exc:
            raise EngineError(
                f"the Docker engine of context {context} does not answer ({exc}); "
                f"'docker --context {context} info' should work before a run uses it"
            ) from exc
        _engines[context] = dc
        return dc


class CommandLog:
    """Appends each command, its duration and its output to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # commands run at once log one whole entry each

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        stdin: bytes | None = None,
        check: bool = True,
        log_output: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run and log a command; ``log_output=False`` for output kept in a file of its own."""
        started = time.monotonic()
        try:
            proc = subprocess.run(
                list(argv), cwd=cwd, input=stdin, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            self._write(argv, time.monotonic() - started, None, exc.stdout, exc.stderr)
            raise CellError(f"timed out after {timeout:.0f} s: {redact(shlex.join(argv))}") from exc
        except FileNotFoundError as exc:
            raise EngineError(f"{argv[0]} is not installed. {ENGINE_HINT}") from exc
        out = proc.stdout if log_output else f"({len(proc.stdout)} bytes of output)".encode()
        self._write(argv, time.monotonic() - started, proc.returncode, out, proc.stderr)
        if check and proc.returncode != 0:
            text = redact((proc.stderr or proc.stdout or b"").decode(errors="replace").strip())
            last = text.splitlines()[-1] if text else "(no output)"
            verb = redact(" ".join(a for a in argv[:6] if not a.startswith("/")))
            raise CellError(
                f"{verb} ... exited with {proc.returncode}: {last}\n"
                f"(command and output: {self.path})\n{text[-2000:]}"
            )
        return proc

    def entry(
        self,
        argv: Sequence[str],
        seconds: float,
        code: int | None,
        out: bytes | None = None,
        err: bytes | None = None,
    ) -> None:
        """Log a step the harness did through the Docker SDK, as a command would be
        (``argv`` says what, e.g. ``["sdk", "stop", "capture"]``; ``code`` None: timed out)."""
        self._write(argv, seconds, code, out, err)

    def _write(
        self,
        argv: Sequence[str],
        seconds: float,
        code: int | None,
        out: bytes | None,
        err: bytes | None,
    ) -> None:
        status = "timeout" if code is None else f"exit {code}"
        with self._lock, self.path.open("a") as log:
            log.write(f"$ {redact(shlex.join(argv))}  # {status} in {seconds:.1f} s\n")
            for stream in (out, err):
                if stream:
                    log.write(redact(stream.decode(errors="replace").rstrip()) + "\n")


class Compose:
    """``docker compose`` for one project (one cell, or one image build)."""

    def __init__(self, project: str, file: Path, log: CommandLog, context: str = LOCAL) -> None:
        self.project = project
        self.file = file
        self.log = log
        self.context = context  # the engine it runs on (a Docker context)

    def run(
        self, *args: str, timeout: float, check: bool = True, log_output: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        argv = [
            *docker_argv(self.context),
            "compose",
            "-p",
            self.project,
            "-f",
            str(self.file),
            *args,
        ]
        return self.log.run(
            argv, timeout=timeout, cwd=self.file.parent, check=check, log_output=log_output
        )
