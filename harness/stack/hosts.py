"""A cell's services on several Docker engines: which engine runs what, how traffic
crosses between them, images shipped to them, and their clocks against this one.

One compose project per engine, with the same project name and labels: an engine runs
the services placed on it and the observers of those services (a census shares its
service's network namespace, so it must run on that service's engine; the capture runs
beside the proxy). Between engines, traffic goes to ports published on each host's
address (``Hosts``: the address other hosts reach it at); within one engine, to the
service's address on the cell's own network, as on a single engine.

Clock offsets follow Cristian's algorithm (Cristian, "Probabilistic clock
synchronization", Distributed Computing 3, 1989): read the engine's time (the Docker
API's ``/info`` ``SystemTime``, the daemon host's clock, ns resolution) between two
local readings t0 and t1; the engine's clock is ahead of this host's by
``remote - (t0 + t1) / 2``, within ``±(t1 - t0) / 2``. Of several tries, the one with
the shortest round trip is kept (the tightest bound).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker.errors

from harness.errors import CellError, SpecError
from harness.plan.ports import HTTP_PORT, HTTPS_PORT
from harness.plan.spec import ROLES, Hosts
from harness.stack.compose import LOCAL, CommandLog, docker_argv, engine

# The Docker contexts the person running the harness allowed (``--allow-context``): a
# matrix file or a run folder comes from other people, and its ``hosts:`` must not be
# able to start containers on, copy images to or publish ports on an engine of the
# user's (production, say) merely by naming its context.
_ALLOWED: set[str] = set()


def allow(contexts: list[str] | tuple[str, ...]) -> None:
    """Allow this command's runs to use ``contexts`` (names already validated by the
    command line) besides the local engine; replaces what an earlier command allowed."""
    _ALLOWED.clear()
    _ALLOWED.update(contexts)


def require_consent(hosts: Hosts | None, where: str) -> None:
    """Refuse ``hosts`` (read from ``where``: a matrix file, a run folder) when it places
    a service on a Docker context the user did not allow with ``--allow-context``.

    Raises SpecError naming the contexts and the flag that allows them.
    """
    if hosts is None:
        return
    wanted = dict.fromkeys(getattr(hosts, role).context for role in ROLES)
    missing = [c for c in wanted if c != LOCAL and c not in _ALLOWED]
    if missing:
        flags = " ".join(f"--allow-context {c}" for c in missing)
        raise SpecError(
            f"{where}: hosts: places services on the Docker context(s) {', '.join(missing)}, "
            "which this command did not allow: a matrix file or run folder can name any "
            "context you have configured. If you mean it, pass "
            f'`python -m harness {flags} ...` (before the verb; make: ALLOW_CONTEXTS="..."). '
            "Nothing has been started."
        )


@dataclass(frozen=True)
class Placement:
    """Where each service of one cell runs.

    ``engines``: context name -> the services it runs (in the order of the compose
    file); ``address``: role -> the address peers reach that role at (its host's
    address when a peer is on another engine, else ``None``: the cell network's own);
    ``publish``: service -> container ports published on its host's address.
    """

    engines: dict[str, tuple[str, ...]]
    reach: dict[str, str | None]
    publish: dict[str, tuple[int, ...]]

    @property
    def contexts(self) -> tuple[str, ...]:
        return tuple(self.engines)

    def context_of(self, service: str) -> str:
        """The context of the engine that runs ``service``; KeyError for an unknown one."""
        for context, services in self.engines.items():
            if service in services:
                return context
        raise KeyError(service)


def local(services: tuple[str, ...]) -> Placement:
    """Every service on the local engine, as a cell without ``hosts:`` runs."""
    return Placement({LOCAL: services}, {}, {})


def place(hosts: Hosts | None, services: tuple[str, ...], target: str, server: tuple[str, int],
          via_backend: bool, extra_server_ports: tuple[int, ...] = ()) -> Placement:  # fmt: skip
    """The placement of a cell's ``services`` (its compose file's, in order) on ``hosts``.

    ``target``: the proxy's service (haproxy or calibration); ``server``: where the
    proxy's server line points (service, port); ``via_backend``: the client loads the
    backend directly; ``extra_server_ports``: more servers of the backend (``servers``).
    Raises ValueError when two services would publish one port on one host (the proxy
    and a directly loaded backend sharing an engine), or when a backend of several
    servers would run on another host than the proxy (only one server port is published
    across hosts; a down server's refusal across hosts has not been measured).
    """
    if hosts is None or not hosts.spans:
        context = LOCAL if hosts is None else hosts.client.context
        return Placement({context: services}, {}, {})
    role_of = {"client": "client", target: "proxy", "backend": "backend",
               "capture": "proxy", "census-client": "client", f"census-{target}": "proxy",
               "census-backend": "backend"}  # fmt: skip
    engines: dict[str, list[str]] = {}
    for service in services:
        engines.setdefault(getattr(hosts, role_of[service]).context, []).append(service)
    ctx = {role: getattr(hosts, role).context for role in ROLES}
    reach: dict[str, str | None] = dict.fromkeys(ROLES)
    publish: dict[str, tuple[int, ...]] = {}
    if ctx["client"] != ctx["proxy"]:
        reach["proxy"] = str(hosts.proxy.address)
        publish[target] = (HTTP_PORT, HTTPS_PORT)
    backend_ports = set()
    service, port = server
    if service == "backend" and ctx["proxy"] != ctx["backend"]:
        if extra_server_ports:
            raise ValueError(
                f"a backend of {1 + len(extra_server_ports)} servers must run on the proxy's "
                "host (across hosts only one server's port is published): give backend the "
                "proxy's context and address, or use servers: 1"
            )
        backend_ports.add(port)
    if via_backend and ctx["client"] != ctx["backend"]:
        backend_ports.add(HTTP_PORT)
    if backend_ports:
        if ctx["backend"] == ctx["proxy"] and backend_ports & set(publish.get(target, ())):
            raise ValueError(
                "the backend and the proxy share a host and both would publish port "
                f"{HTTP_PORT}: load the backend directly only from the same host, or put it "
                "on a host of its own"
            )
        reach["backend"] = str(hosts.backend.address)
        publish["backend"] = tuple(sorted(backend_ports))
    return Placement({c: tuple(s) for c, s in engines.items()}, reach, publish)


def ship_images(tags: set[str], context: str, log: CommandLog) -> list[str]:
    """Copy each image in ``tags`` from the local engine to ``context``'s unless it holds
    the same image id already (``docker save | docker --context C load``: no registry).
    Returns the tags copied. Raises CellError when one cannot be copied."""
    if context == LOCAL:
        return []
    copied = []
    for tag in sorted(tags):
        local_id = engine().images.get(tag).id
        try:
            if engine(context).images.get(tag).id == local_id:
                continue
        except docker.errors.ImageNotFound:
            pass
        started = time.monotonic()
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        try:
            proc = subprocess.run([*docker_argv(context), "load"], stdin=save.stdout,
                                  capture_output=True, timeout=600)  # fmt: skip
        finally:
            assert save.stdout is not None
            save.stdout.close()
            saved = save.wait(timeout=600)
        took = time.monotonic() - started
        with log.path.open("a") as out:
            out.write(
                f"$ docker save {tag} | docker --context {context} load  # exit "
                f"{saved}/{proc.returncode} in {took:.1f} s\n"
            )
        if saved or proc.returncode:
            raise CellError(
                f"could not copy image {tag} to the engine of context {context}: "
                f"{proc.stderr.decode(errors='replace').strip()[-500:]}"
            )
        copied.append(tag)
    return copied


def clock_offset(context: str, tries: int = 5) -> dict[str, float]:
    """How far the clock of ``context``'s engine host is ahead of this host's:
    ``{"offset_s": s, "bound_s": ±s, "rtt_s": s}`` from the try with the shortest round
    trip (Cristian 1989, above). Raises EngineError when the engine does not answer."""
    best: dict[str, float] | None = None
    dc = engine(context)
    for _ in range(tries):
        t0 = time.time()
        text = dc.info()["SystemTime"]
        t1 = time.time()
        remote = datetime.fromisoformat(text).timestamp()
        rtt = t1 - t0
        if best is None or rtt < best["rtt_s"]:
            best = {"offset_s": remote - (t0 + t1) / 2, "bound_s": rtt / 2, "rtt_s": rtt}
    assert best is not None
    return best


def split_compose(doc: dict[str, Any], placement: Placement) -> dict[str, dict[str, Any]]:
    """One compose document per engine: its services (published ports added) and the
    cell network. ``doc`` is the whole cell's (harness.stack.compose_file.build)."""
    out = {}
    for context, services in placement.engines.items():
        part = {**doc, "services": {}}
        for name in services:
            service = dict(doc["services"][name])
            ports = placement.publish.get(name)
            if ports:
                address = _host_address(placement, name)
                service["ports"] = [f"{address}:{p}:{p}" for p in ports]
            part["services"][name] = service
        out[context] = part
    return out


def _host_address(placement: Placement, service: str) -> str:
    role = "backend" if service == "backend" else "proxy"
    address = placement.reach[role]
    assert address is not None  # published only where a peer reaches it from afar
    return address


def compose_name(context: str) -> str:
    """The compose file of one engine's part of a cell: ``compose.<context>.yaml``."""
    return f"compose.{context}.yaml"


def files(folder: Path, placement: Placement) -> dict[str, Path]:
    """Context -> its compose file in the cell's folder (one engine: compose.yaml)."""
    if len(placement.engines) == 1:
        return {next(iter(placement.engines)): folder / "compose.yaml"}
    return {c: folder / compose_name(c) for c in placement.engines}
