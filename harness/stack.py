"""A cell's compose stack: up, health-checked, torn down no matter what.

``with Stack(...) as stack:`` brings the long-running services up with ``--wait`` on
their health checks; leaving the block (normally, on an error, on a timeout or on
Ctrl-C) runs ``down -v --remove-orphans`` and then checks, through the Docker SDK,
that no container, network or volume labelled with the project is left; any
straggler is removed by force and the fact is logged.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from harness.compose import CommandLog, Compose, client

PROJECT_LABEL = "com.docker.compose.project"


class Stack:
    def __init__(self, project: str, compose_file: Path, log: CommandLog) -> None:
        self.project = project
        self.compose = Compose(project, compose_file, log)
        self.log = log

    def __enter__(self) -> Stack:
        try:
            self.compose.run("up", "-d", "--wait", "--wait-timeout", "90", timeout=180)
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def exec(
        self, service: str, *args: str, timeout: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command in a running service (the load, a stats query); never raises on exit."""
        flags = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.compose.run("exec", "-T", *flags, service, *args, timeout=timeout, check=False)

    def stop(self, *services: str) -> None:
        """Stop observers first, so their files are complete before anything is read."""
        self.compose.run("stop", "--timeout", "5", *services, timeout=60, check=False)

    def logs(self, service: str) -> str:
        proc = self.compose.run(
            "logs", "--no-color", "--no-log-prefix", service,
            timeout=60, check=False, log_output=False,
        )  # fmt: skip
        return proc.stdout.decode(errors="replace")

    def down(self) -> None:
        # Ctrl-C during teardown must not leave things half-removed: ignore it until done.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.compose.run(
                "down", "-v", "--remove-orphans", "--timeout", "5", timeout=120, check=False
            )
            remove_leftovers(self.project, self.log)
        finally:
            signal.signal(signal.SIGINT, previous)


def _labelled(project: str | None) -> dict[str, list[Any]]:
    """Containers, networks and volumes of one harness project (or of any, when None)."""
    label = f"{PROJECT_LABEL}={project}" if project else "harness=1"
    dc = client()
    return {
        "containers": dc.containers.list(all=True, filters={"label": label}),
        "networks": dc.networks.list(filters={"label": label}),
        "volumes": dc.volumes.list(filters={"label": label}),
    }


def leftovers(project: str | None = None) -> dict[str, list[str]]:
    """Names of what a harness project (or any, when None) left in Docker."""
    return {kind: [o.name for o in found] for kind, found in _labelled(project).items()}


def remove_leftovers(project: str | None, log: CommandLog) -> dict[str, list[str]]:
    found = _labelled(project)
    for container in found["containers"]:
        container.remove(force=True, v=True)
    for network in found["networks"]:
        network.remove()
    for volume in found["volumes"]:
        volume.remove(force=True)
    names = {kind: [o.name for o in objs] for kind, objs in found.items()}
    if any(names.values()):
        with log.path.open("a") as out:
            out.write(f"# removed leftovers of {project or 'harness'}: {names}\n")
    return names


def terminate_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C, so ``with Stack`` tears down on a kill too."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
