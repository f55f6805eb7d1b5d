"""Render a cell's haproxy.cfg and compose.yaml (Jinja2) into its folder.

The two files are all a person needs to repeat the cell by hand, so they are
self-describing: comments say which cell they belong to and how to run them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import itertools
import os
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import trustme

from harness import ROOT
from harness.errors import HarnessError, SpecError
from harness.plan import ports
from harness.plan.log_format import LOG_FORMATS
from harness.plan.scenarios import HaproxyKnobs, HttpLoad, Knobs, Probe
from harness.plan.spec import NATIVE_GENERATORS, Cell, Hosts
from harness.stack import compose_file
from harness.stack import hosts as hosts_
from harness.stack.compose import engine
from harness.stack.hosts import Placement
from harness.stack.images import SUPPORT_IMAGES, HaproxyImage, ImageSet

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader([ROOT / "haproxy", ROOT / "stacks"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)

# Cells get a /24 each out of this /16, picked by a hash of the project name: fixed per
# cell (reproducible) and unlikely to collide with a leftover of an interrupted run.
# HARNESS_SUBNET_POOL moves it where another network already owns these addresses.
SUBNET_POOL = ipaddress.ip_network("172.30.0.0/16")
POOL_HINT = "set HARNESS_SUBNET_POOL to a free IPv4 range of /24 or larger, e.g. 10.213.0.0/16"


def subnet_pool() -> ipaddress.IPv4Network:
    text = os.environ.get("HARNESS_SUBNET_POOL")
    if not text:
        return SUBNET_POOL
    try:
        pool = ipaddress.ip_network(text)
    except ValueError as exc:
        raise SpecError(f"HARNESS_SUBNET_POOL={text!r}: {exc}; {POOL_HINT}.") from None
    if not isinstance(pool, ipaddress.IPv4Network) or pool.prefixlen > 24:
        raise SpecError(f"HARNESS_SUBNET_POOL={text!r}: too small or not IPv4; {POOL_HINT}.")
    return pool


@dataclass(frozen=True)
class Network:
    subnet: str
    haproxy: str
    backend: str
    client: str
    nowhere: str  # in the subnet, but no container has it: SYNs to it go unanswered

    @classmethod
    def for_project(cls, project: str) -> Network:
        slots = list(itertools.islice(subnet_pool().subnets(new_prefix=24), 256))
        net = slots[int(hashlib.sha256(project.encode()).hexdigest(), 16) % len(slots)]
        host = net.network_address
        return cls(str(net), str(host + 10), str(host + 20), str(host + 30), str(host + 99))


def preflight(cells: list[Cell], hosts: Hosts | None = None, where: str = "the matrix") -> None:
    """What can be checked of every cell before any image is built or stack started:
    the user's consent to ``hosts``' contexts (``where``: what named them), templates,
    placements on ``hosts``, and subnets on every engine a cell uses.

    Raises SpecError for any of them."""
    hosts_.require_consent(hosts, where)
    check_templates(cells)
    contexts = {"default"}
    for cell in cells:
        contexts |= set(placement(cell, cell.knobs, hosts).contexts)
    check_subnets(cells, sorted(contexts))


def check_templates(cells: list[Cell]) -> dict[str, tuple[str, str]]:
    """Render each cell's files once with stand-in image names, so a broken template
    stops the run before minutes of image builds, not after. Returns cell id ->
    (haproxy.cfg, compose.yaml) as rendered (``--dry-run DIR`` writes them)."""
    support = {name: f"harness-{name}:latest" for name in SUPPORT_IMAGES}
    rendered = {}
    for cell in cells:
        knobs = cell.knobs
        project = project_name(cell)
        net = Network.for_project(project)
        hx = HaproxyImage(cell.version, "preflight", "", cell.version.expected or "", "")
        images = ImageSet({cell.version.text: hx}, support)
        rendered[cell.id] = (
            haproxy_cfg(cell, knobs, net),
            compose_yaml(cell, knobs, net, images, hx, project, []),
        )
    return rendered


def check_subnets(cells: Iterable[Cell], contexts: Iterable[str] = ("default",)) -> None:
    """Before anything starts: a cell whose subnet overlaps an existing Docker network
    would fail at 'compose up' ("Pool overlaps with other one on this address space"),
    on any of the engines (``contexts``) the cells use."""
    wanted = {
        c.id: ipaddress.ip_network(Network.for_project(project_name(c)).subnet) for c in cells
    }
    networks = [n for context in contexts for n in engine(context).networks.list()]
    for network in networks:
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                theirs = ipaddress.ip_network(config.get("Subnet") or "", strict=False)
            except ValueError:
                continue
            clash = [
                (cell, mine)
                for cell, mine in wanted.items()
                if mine.version == theirs.version and mine.overlaps(theirs)
            ]
            if not clash:
                continue
            cell, mine = clash[0]
            labels = network.attrs.get("Labels") or {}
            owner = (
                f"It was left by harness run {labels.get('harness.run', '?')}: if that run is "
                "over, 'python -m harness clean' removes it. Otherwise "
                if labels.get("harness") == "1"
                else f"If nothing uses it, remove it (docker network rm {network.name}); or "
            )
            raise SpecError(
                f"Docker network {network.name!r} has subnet {theirs}, which overlaps {mine}, "
                f"the subnet of cell {cell} ({len(clash)} of {len(wanted)} cell(s) collide): "
                f"its stack could not be created. {owner}{POOL_HINT}. Nothing has been started."
            )


def project_name(cell: Cell) -> str:
    """Compose project names must be lowercase [a-z0-9_-]; unique per run and cell."""
    raw = f"harness-{cell.run_id}-{cell.index:03d}".lower()
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in raw)


def _render(name: str, **context: Any) -> str:
    """Render one template; a broken template (a local edit, a harness bug) is an error
    naming the template file and line, not a traceback."""
    try:
        return _ENV.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        where, line, what = exc.filename or name, exc.lineno, exc.message
    except Exception as exc:
        # Jinja gives the template's own frames its file name and lines: an error raised
        # there (an undefined name, a bad expression) is the template's; others are not.
        frames = [
            (f.f_code.co_filename, n)
            for f, n in traceback.walk_tb(exc.__traceback__)
            if Path(f.f_code.co_filename).name == name
        ]
        if not frames and not isinstance(exc, jinja2.TemplateError):
            raise
        where, line = frames[-1] if frames else (name, None)
        what = str(exc) or type(exc).__name__
    at = f" line {line}" if line else ""
    raise HarnessError(
        f"{where}{at}: the template does not render: {what}. Fix the template there "
        "(git diff shows local edits); nothing has been started."
    ) from None


_ENV.filters["comment"] = compose_file.comment

# What a knob may put on a line of haproxy.cfg: words, numbers and units. Parameters are
# typed before they become knobs (harness/params.py); this is the last guard, so that a
# scenario's own bug can never let text end a line, start a comment or open a quote.
_CONFIG_WORDS = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:/-]*")


def check_knobs(knobs: HaproxyKnobs) -> None:
    """Raise HarnessError if a value of ``knobs`` holds more than config words."""
    for name, value in vars(knobs).items():
        for text in value if isinstance(value, tuple) else (value,):
            if isinstance(text, str) and text and not _CONFIG_WORDS.fullmatch(text):
                raise HarnessError(
                    f"haproxy knob {name}={text!r} holds characters that do not belong on "
                    "a line of haproxy.cfg; this is a harness bug (a scenario passed a "
                    "parameter through unchecked): please report it. Nothing has been started."
                )


def haproxy_cfg(cell: Cell, knobs: Knobs, net: Network) -> str:
    check_knobs(knobs.haproxy)
    service, port = knobs.server
    address = getattr(net, service)
    servers = [(ports.server_name(1), f"{address}:{port}")] + [
        (ports.server_name(i), f"{address}:{extra}")
        for i, extra in enumerate(knobs.extra_server_ports, start=2)
    ]
    return _render(
        "haproxy.cfg.j2",
        cell=cell,
        hx=knobs.haproxy,
        servers=servers,
        tls=knobs.tls,
        log_format=LOG_FORMATS[knobs.haproxy.mode],
        ports=ports,
    )


def compose_yaml(
    cell: Cell,
    knobs: Knobs,
    net: Network,
    images: ImageSet,
    haproxy_image: HaproxyImage,
    project: str,
    load_args: list[str],
) -> str:
    """The cell's compose.yaml (harness/compose_file.py builds it as data)."""
    return compose_file.dump(
        compose_file.StackSpec(
            cell_id=cell.id,
            run_id=cell.run_id,
            project=project,
            net=net,
            haproxy_image=haproxy_image.tag,
            backend_image=images.support["backend"],
            # the field notes' clients have an image of their own (clients-native/)
            client_image=images.support[
                "client-native"
                if cell.load.generator in NATIVE_GENERATORS and isinstance(knobs.load, HttpLoad)
                else "client"
            ],
            observer_image=images.support["observer"],
            target=knobs.target,
            tls=knobs.tls,
            fin_delay_ms=knobs.fin_delay_ms,
            sysctls={
                side: knobs.sysctls.get(side, {}) for side in ("client", "haproxy", "backend")
            },
            backend_env=knobs.backend_env,
            backend_ports=(ports.HTTP_PORT, *knobs.extra_server_ports),
            load_env=_load_env(cell, knobs, net),
            load_args=tuple(load_args),
            probe=isinstance(knobs.load, Probe),
        )
    )


def placement(cell: Cell, knobs: Knobs, hosts: Hosts | None) -> Placement:
    """Which engine runs each of the cell's services (every one the local engine's
    without ``hosts``). Raises SpecError for a placement that cannot work."""
    services = tuple(
        compose_file.build(_spec(cell, knobs, Network.for_project("x"), None, "x", "x", []))[
            "services"
        ]
    )
    via_backend = isinstance(knobs.load, HttpLoad) and knobs.load.via == "backend"
    try:
        return hosts_.place(
            hosts, services, knobs.target, knobs.server, via_backend, knobs.extra_server_ports
        )
    except ValueError as exc:
        raise SpecError(f"cell {cell.id}: hosts: {exc}. Nothing has been started.") from None


def routed(net: Network, where: Placement) -> Network:
    """The addresses the client and the proxy reach their peers at: a peer's host address
    where it runs on another engine (its ports published there), else its own."""
    return dataclasses.replace(
        net,
        haproxy=where.reach.get("proxy") or net.haproxy,
        backend=where.reach.get("backend") or net.backend,
    )


def compose_parts(
    cell: Cell,
    knobs: Knobs,
    net: Network,
    images: ImageSet,
    haproxy_image: HaproxyImage,
    project: str,
    load_args: list[str],
    where: Placement,
) -> dict[str, str]:
    """Context -> the compose file of the services that engine runs, for a cell that
    spans engines (empty for one engine: compose.yaml is the whole stack)."""
    if len(where.engines) == 1:
        return {}
    spec = _spec(cell, knobs, net, images, project, haproxy_image.tag, load_args, where)
    doc = compose_file.build(spec)
    return {
        context: compose_file.dump_part(spec, part, context)
        for context, part in hosts_.split_compose(doc, where).items()
    }


def _spec(
    cell: Cell,
    knobs: Knobs,
    net: Network,
    images: ImageSet | None,
    project: str,
    haproxy_tag: str,
    load_args: list[str],
    where: Placement | None = None,
) -> compose_file.StackSpec:
    support = images.support if images else dict.fromkeys(("backend", "client", "observer"), "x")
    peers = routed(net, where) if where else net
    return compose_file.StackSpec(
        cell_id=cell.id,
        run_id=cell.run_id,
        project=project,
        net=net,
        haproxy_image=haproxy_tag,
        backend_image=support["backend"],
        client_image=support["client"],
        observer_image=support["observer"],
        target=knobs.target,
        tls=knobs.tls,
        fin_delay_ms=knobs.fin_delay_ms,
        sysctls={side: knobs.sysctls.get(side, {}) for side in ("client", "haproxy", "backend")},
        backend_env=knobs.backend_env,
        load_env=_load_env(cell, knobs, peers),
        load_args=tuple(load_args),
        probe=isinstance(knobs.load, Probe),
    )


def _load_env(cell: Cell, knobs: Knobs, net: Network) -> dict[str, str]:
    env = knobs.load.env(net.haproxy)
    if isinstance(knobs.load, HttpLoad):
        # the open loop's rate, per user: one user per Locust process
        env["LOAD_RATE"] = f"{cell.load.rate / cell.load.processes:g}"
        env["LOAD_MODE"] = cell.load.mode  # "open" or "closed": a typed Literal
    return env


def write_certs(folder: Path) -> None:
    """A throwaway CA and a server certificate for the TLS frontend (HAProxy's PEM: cert + key).

    trustme makes real X.509 certificates without hand-written ASN.1; the probe does not
    verify them (it measures closes, not trust), so a fresh CA per run is enough.
    HAProxy reads the key as its own user (harness/security.py), not as the host user who
    wrote it: the files are made readable by all, whatever the umask. The key protects
    nothing but this run's TLS frontend, which no one trusts.
    """
    ca = trustme.CA()
    server = ca.issue_cert("haproxy", "localhost")
    certs = folder / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    certs.chmod(0o755)
    server.private_key_and_cert_chain_pem.write_to_path(str(certs / "haproxy.pem"))
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    for pem in ("haproxy.pem", "ca.pem"):
        (certs / pem).chmod(0o644)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path
