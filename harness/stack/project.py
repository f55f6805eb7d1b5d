"""A cell's compose stack: up, health-checked, torn down no matter what.

``with Stack(...) as stack:`` brings the long-running services up (``up -d``, then a
wait on what ``ready`` checks, or ``up --wait`` on their health checks); leaving the
block (normally, on an error, on a timeout or on Ctrl-C) removes every container of the
project by force (SIGKILL), all at once, then its network and volumes, through the
Docker SDK, and checks that nothing labelled with the project is left. No graceful stop:
by the time a cell's stack goes down its raw files are collected, and a failed cell's
output was saved first; a `docker compose down` took 0.5-0.85 s a cell, mostly the CLI
and the stop's signalling, the SDK's removal in parallel about 0.2 s.

The steps around the load that used to be one ``docker compose`` CLI each (stopping the
observers, reading a service's log, the counters' ``exec``) go through the Docker SDK
too, in parallel where they are independent: each CLI start cost 0.1-0.2 s of a busy
core. Each is logged in commands.log as ``sdk <verb> ...`` with its duration.

Nothing interrupts a teardown: a Ctrl-C or SIGTERM that arrives meanwhile is announced,
held, and acted on once the stack is gone. When the engine itself stops answering, the
teardown waits for it to come back (``ENGINE_WAIT_S``) rather than leave the stack.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import docker
import requests

from harness.errors import EngineError
from harness.stack import lease
from harness.stack.compose import LOCAL, CommandLog, Compose, engine
from harness.stack.hosts import Placement

PROJECT_LABEL = "com.docker.compose.project"
ENGINE_WAIT_S = 90.0  # how long a teardown waits for an engine that stopped answering


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run tears down, records, and exits with 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stack:
    def __init__(
        self,
        project: str,
        compose_file: Path,
        log: CommandLog,
        ready: Callable[[], object] | None = None,
        placement: Placement | None = None,
        files: dict[str, Path] | None = None,
    ) -> None:
        """``ready``: waits until the started stack can take its load, raising CellError
        if it cannot (``harness.stack.ready``); the stack is then started with ``up -d``.
        Without it, ``up --wait`` waits on the services' Docker health checks.

        ``placement`` and ``files`` (context -> compose file): a stack that spans
        engines, one compose project of the same name on each (harness.stack.hosts);
        without them, ``compose_file`` on the local engine."""
        self.project = project
        self.ready = ready
        self.placement = placement
        self.parts = (
            {ctx: Compose(project, path, log, ctx) for ctx, path in files.items()}
            if files
            else {LOCAL: Compose(project, compose_file, log)}
        )
        self.compose = next(iter(self.parts.values()))
        self.log = log
        self.engine_lost_s: float | None = None  # the engine stopped answering this long
        self.up_at: float | None = None  # epoch seconds when `up --wait` returned

    def __enter__(self) -> Stack:
        try:
            if self.ready is None:
                self.compose.run("up", "-d", "--wait", "--wait-timeout", "90", timeout=180)
            else:
                self._each(lambda part: part.run("up", "-d", timeout=180))
                self.ready()
        except BaseException as exc:
            try:
                if not isinstance(exc, KeyboardInterrupt):
                    self.save_logs(self.compose.file.parent / "containers.log")
            finally:
                self.down()
            raise
        self.up_at = time.time()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Any exception at all (an OSError from a full disk included) ends in the teardown.
        try:
            if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
                self.save_logs(self.compose.file.parent / "containers.log")
        finally:
            self.down()

    @property
    def contexts(self) -> tuple[str, ...]:
        """The engines (Docker contexts) the stack runs on."""
        return tuple(self.parts)

    def _each(self, call: Callable[[Compose], object]) -> None:
        """``call`` on every engine's part, at once when there are several."""
        if len(self.parts) == 1:
            call(next(iter(self.parts.values())))
            return
        with ThreadPoolExecutor(max_workers=len(self.parts)) as pool:
            for future in [pool.submit(call, part) for part in self.parts.values()]:
                future.result()

    def part(self, service: str) -> Compose:
        """The compose project (on its engine) that runs ``service``."""
        if len(self.parts) == 1:
            return next(iter(self.parts.values()))
        assert self.placement is not None
        return self.parts[self.placement.context_of(service)]

    def save_logs(self, path: Path) -> None:
        """Every service's output, for a cell that failed or timed out (best effort)."""
        try:
            out = b""
            for part in self.parts.values():
                proc = part.run(
                    "logs", "--no-color", "--timestamps", timeout=30, check=False,
                    log_output=False,
                )  # fmt: skip
                out += proc.stdout + proc.stderr
            path.write_bytes(out)
        except Exception as exc:  # the failure being recorded matters more than its logs
            with suppress(OSError):  # e.g. the disk is full: the teardown comes first
                path.write_text(f"could not collect the containers' logs: {exc}\n")

    def exec(
        self, service: str, *args: str, timeout: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command in a running service (the load, a stats query); never raises on exit."""
        flags = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.part(service).run(
            "exec", "-T", *flags, service, *args, timeout=timeout, check=False
        )

    def inject(self, action: str, service: str) -> None:
        """A fault scenario's fault: SIGKILL a service, or restart it."""
        if action == "kill":
            self.part(service).run("kill", "-s", "KILL", service, timeout=60, check=False)
        else:
            self.part(service).run("restart", service, timeout=60, check=False)

    def containers(self, context: str | None = None) -> dict[str, Any]:
        """service name -> Docker SDK container of this project on one engine (every
        engine the stack spans when None), every state included (one listing per engine,
        no inspect per container)."""
        return {
            c.attrs.get("Labels", {}).get("com.docker.compose.service", c.id[:12]): c
            for ctx in ([context] if context else self.parts)
            for c in _containers(_label(self.project), ctx)
        }

    def _sdk(self, verb: str, service: str, call: Callable[[Any], Any]) -> Any:
        """``call(container)`` for one service's container, logged as ``sdk <verb> <service>``."""
        started = time.monotonic()
        container = self.containers(self.part(service).context).get(service)
        if container is None:
            self.log.entry(["sdk", verb, service], time.monotonic() - started, 1,
                           err=b"no such container")  # fmt: skip
            return None
        try:
            result = call(container)
        except docker.errors.APIError as exc:
            self.log.entry(["sdk", verb, service], time.monotonic() - started, 1,
                           err=str(exc).encode())  # fmt: skip
            raise
        self.log.entry(["sdk", verb, service], time.monotonic() - started, 0)
        return result

    def stop(self, *services: str) -> None:
        """Stop observers first, so their files are complete before anything is read: all
        at once, each SIGTERM then SIGKILL after 5 s (census.sh and tcpdump finish their
        write on TERM). A service already gone is not an error."""

        def stop_one(service: str) -> None:
            with suppress(docker.errors.APIError):  # gone, or stopping already
                self._sdk("stop", service, lambda c: c.stop(timeout=5))

        _at_once(*[lambda s=s: stop_one(s) for s in services])

    def logs(self, *services: str) -> list[str]:
        """Each service's output (stdout and stderr as Docker keeps them), in order; ""
        for a service that has none or is gone."""

        def logs_one(service: str) -> str:
            try:
                out = self._sdk("logs", service, lambda c: c.logs(stdout=True, stderr=True))
            except docker.errors.APIError:
                return ""
            return (out or b"").decode(errors="replace")

        return _at_once(*[lambda s=s: logs_one(s) for s in services])

    def exec_quick(self, service: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        """A short command in a running service through the Docker SDK (a stats query):
        no CLI process. Never raises on the command's failure; a container that is not
        running gives returncode 126 and the engine's message in stderr. Its output is
        logged in commands.log."""
        started = time.monotonic()
        argv = ["sdk", "exec", service, *args]
        container = self.containers(self.part(service).context).get(service)
        try:
            if container is None:
                raise docker.errors.NotFound(f"no container for {service}")
            code, (out, err) = container.exec_run(list(args), demux=True)
        except docker.errors.APIError as exc:
            code, out, err = 126, b"", str(exc).encode()
        self.log.entry(argv, time.monotonic() - started, code, out, err)
        return subprocess.CompletedProcess(argv, code, out or b"", err or b"")

    def down(self) -> None:
        # The cell's deadline (runner) must not fire inside the teardown.
        signal.setitimer(signal.ITIMER_REAL, 0)
        with signals_held(f"tearing down {self.project}"):
            self._each(self._down_part)

    def _down_part(self, part: Compose) -> None:
        """One engine's part down, and whatever carries its label removed there. An engine
        that stops answering is waited for (``ENGINE_WAIT_S`` in all), also when it goes
        in the middle of the removal: one that is shutting down still answers a ping."""
        deadline = time.monotonic() + ENGINE_WAIT_S
        attempts = 0
        while True:
            waited = wait_for_engine(max(deadline - time.monotonic(), 0.0), part.context)
            if waited is None:
                on = "" if part.context == LOCAL else f" (context {part.context})"
                raise EngineError(
                    f"the Docker engine{on} stopped answering and did not come back within "
                    f"{ENGINE_WAIT_S:.0f} s, so {self.project} may be left in Docker. Start "
                    "it ('make engine'), then run 'python -m harness clean'."
                )
            if waited > 0:
                self.engine_lost_s = (self.engine_lost_s or 0.0) + waited
            try:
                self._remove_part(part)
                return
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                # An engine shutting down may still answer a ping (on a pooled connection)
                # while new requests fail: wait for it again, a few times at most.
                attempts += 1
                if attempts >= 3 or time.monotonic() >= deadline:
                    raise
                time.sleep(1)

    def _remove_part(self, part: Compose) -> None:
        started = time.monotonic()
        where = [] if part.context == LOCAL else ["--context", part.context]
        try:
            removed = _remove(
                _labelled(self.project, None, part.context),
                lambda: _containers(_label(self.project), part.context),
            )
            self.log.entry(["sdk", "down", self.project, *where], time.monotonic() - started,
                           0, out=f"removed {removed}".encode())  # fmt: skip
        finally:  # checked again, whatever happened: nothing of the project is left
            remove_leftovers(self.project, self.log, context=part.context)


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Each call's result, in order; the calls run at once (independent engine requests,
    each mostly waiting on the engine). The first exception raised is re-raised."""
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


def engine_answers(context: str = LOCAL) -> bool:
    try:
        return bool(engine(context).ping())
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return False


def wait_for_engine(limit_s: float, context: str = LOCAL) -> float | None:
    """Seconds waited until the engine answered (0: at once), or None if it never did."""
    started = time.monotonic()
    if engine_answers(context):
        return 0.0
    print(
        f"the Docker engine stopped answering; waiting up to {limit_s:.0f} s for it to "
        "come back to tear down",
        file=sys.stderr,
        flush=True,
    )
    while time.monotonic() - started < limit_s:
        time.sleep(1)
        if engine_answers(context):
            return time.monotonic() - started
    return None


@contextmanager
def signals_held(doing: str) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while ``doing``: announce them, then raise once it is done."""
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if not held:
            print(
                f"{doing}: {signal.Signals(signum).name} held until it is done",
                file=sys.stderr,
                flush=True,
            )
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        raise Interrupted(held[0])


def _label(project: str | None, run: str | None = None) -> str:
    """The label of one harness project, one run, or any harness object (both None)."""
    if project:
        return f"{PROJECT_LABEL}={project}"
    return f"harness.run={run}" if run else "harness=1"


def _containers(label: str, context: str = LOCAL) -> list[Any]:
    # sparse: no inspect per container, which fails for one being removed meanwhile
    return engine(context).containers.list(all=True, filters={"label": label}, sparse=True)


def _labelled(
    project: str | None, run: str | None = None, context: str = LOCAL
) -> dict[str, list[Any]]:
    """Containers, networks and volumes of one harness project, one run, or any (both None),
    on one engine."""
    label = _label(project, run)
    dc = engine(context)
    return {
        "containers": _containers(label, context),
        "networks": dc.networks.list(filters={"label": label}),
        "volumes": dc.volumes.list(filters={"label": label}),
    }


def leftovers(project: str | None = None, context: str = LOCAL) -> dict[str, list[str]]:
    """Names of what a harness project (or any, when None) left in Docker (one engine)."""
    return {
        kind: [_name(o) for o in found] for kind, found in _labelled(project, None, context).items()
    }


def _name(obj: Any) -> str:
    """A Docker object's name; sparse container listings carry it in "Names" only."""
    return obj.name or (obj.attrs.get("Names") or [obj.id])[0].lstrip("/")


GONE_WITHIN_S = 15.0  # a container that `docker run --rm` is removing may linger this long


def remove_leftovers(
    project: str | None, log: CommandLog, run: str | None = None, context: str = LOCAL
) -> dict[str, list[str]]:
    """Remove by label (never anything else), on the engine of ``context``: containers
    first, then networks and volumes."""
    found = _labelled(project, run, context)
    names = _remove(found, lambda: _containers(_label(project, run), context))
    if any(names.values()):
        with log.path.open("a") as out:
            out.write(f"# removed leftovers of {project or run or 'harness'}: {names}\n")
    return names


def _remove(
    found: dict[str, list[Any]], remaining: Callable[[], list[Any]]
) -> dict[str, list[str]]:
    """Remove containers (by force: SIGKILL, all at once), then networks and volumes;
    returns the names of what was found."""

    def remove_container(container: Any) -> None:
        with suppress(docker.errors.NotFound, docker.errors.APIError):  # already going
            container.remove(force=True, v=True)

    _at_once(*[lambda c=c: remove_container(c) for c in found["containers"]])
    if found["containers"]:  # networks can go only once their containers have
        deadline = time.monotonic() + GONE_WITHIN_S
        while remaining() and time.monotonic() < deadline:
            time.sleep(0.05)
    for network in found["networks"]:
        with suppress(docker.errors.NotFound, docker.errors.APIError):
            network.remove()
    for volume in found["volumes"]:
        with suppress(docker.errors.NotFound, docker.errors.APIError):
            volume.remove(force=True)
    return {kind: [_name(o) for o in objs] for kind, objs in found.items()}


def remove_leftovers_settled(
    log: CommandLog, run: str, settle_s: float = 3.0
) -> dict[str, list[str]]:
    """:func:`remove_leftovers` of a run, repeated until nothing labelled with it has
    appeared for ``settle_s`` seconds. A signal can kill a `docker run` client after it
    asked the daemon to create a container but before the daemon did: the container then
    appears after a first sweep, in state "created", and `--rm` never applies to it."""
    removed: dict[str, list[str]] = {"containers": [], "networks": [], "volumes": []}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < settle_s:
        found = remove_leftovers(None, log, run=run)
        if any(found.values()):
            quiet_since = time.monotonic()
            for kind, names in found.items():
                removed[kind] += names
        time.sleep(0.25)
    return removed


def _run_of(obj: Any) -> str | None:
    labels = obj.attrs.get("Labels") or {}
    return labels.get("harness.run")


def _running(obj: Any) -> bool:
    # sparse listings carry "State"; a full one carries State.Status
    state = obj.attrs.get("State")
    return (state.get("Status") if isinstance(state, dict) else state) in ("running", "created")


NO_RUN = "(no run label)"


def partition(
    context: str = LOCAL,
) -> tuple[dict[str, dict[str, list[Any]]], dict[str, dict[str, list[Any]]]]:
    """Every harness object in Docker, grouped by run label into (stale, live).

    A run is live while a process on this host holds its lease (:mod:`harness.stack.lease`);
    a stale run's process died without tearing down (SIGKILL, OOM, a reboot, an engine
    restart). Objects without a run label are stale unless one of their containers is
    running (a ``harness images`` check in progress). Each value maps "containers",
    "networks", "volumes" to Docker SDK objects.
    """
    stale: dict[str, dict[str, list[Any]]] = {}
    live: dict[str, dict[str, list[Any]]] = {}
    found = _labelled(None, None, context)
    unlabelled_running = any(_run_of(c) is None and _running(c) for c in found["containers"])
    for kind, objs in found.items():
        for obj in objs:
            run = _run_of(obj)
            is_live = lease.alive(run) if run else unlabelled_running
            group = (live if is_live else stale).setdefault(
                run or NO_RUN, {"containers": [], "networks": [], "volumes": []}
            )
            group[kind].append(obj)
    return stale, live


def remove_stale(log: CommandLog, context: str = LOCAL) -> dict[str, dict[str, list[str]]]:
    """Remove what dead runs left in Docker (by label, never anything else) on one engine;
    a live run's objects stay. Returns run -> kind -> names of what was removed."""
    stale, _ = partition(context)
    removed: dict[str, dict[str, list[str]]] = {}
    for run, found in stale.items():
        if run == NO_RUN:
            ids = {c.id for c in found["containers"]}
            removed[run] = _remove(
                found,
                lambda ids=ids: [c for c in _containers("harness=1", context) if c.id in ids],
            )
        elif not lease.alive(run):  # asked again: a run may have started meanwhile
            removed[run] = remove_leftovers(None, log, run=run, context=context)
    return {run: names for run, names in removed.items() if any(names.values())}


def describe_removed(removed: dict[str, dict[str, list[str]]]) -> str:
    """One line per run, e.g. "run X (its process died): 7 containers, 1 network"."""
    lines = []
    for run, names in removed.items():
        counts = ", ".join(
            f"{len(v)} {k if len(v) != 1 else k.rstrip('s')}" for k, v in names.items() if v
        )
        lines.append(f"removed what run {run} left in Docker when its process died: {counts}")
    return "\n".join(lines)


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise Interrupted, so ``with Stack`` tears down on either."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
