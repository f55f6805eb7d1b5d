"""Render a cell's haproxy.cfg and compose.yaml (Jinja2) into its folder.

The two files are all a person needs to repeat the cell by hand, so they are
self-describing: comments say which cell they belong to and how to run them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import jinja2
import trustme

from harness import ROOT
from harness.analyse.haproxy_log import HTTP_LOG_FORMAT
from harness.images import HaproxyImage, ImageSet
from harness.scenarios import HttpLoad, Knobs, Probe
from harness.spec import Cell

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader([ROOT / "haproxy", ROOT / "stacks"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)

# Cells get a /24 each out of this /16, picked by a hash of the project name: fixed per
# cell (reproducible) and unlikely to collide with a leftover of an interrupted run.
SUBNET_POOL = ipaddress.ip_network("172.30.0.0/16")


@dataclass(frozen=True)
class Network:
    subnet: str
    haproxy: str
    backend: str
    client: str
    nowhere: str  # in the subnet, but no container has it: SYNs to it go unanswered

    @classmethod
    def for_project(cls, project: str) -> Network:
        slot = int(hashlib.sha256(project.encode()).hexdigest(), 16) % 256
        net = list(SUBNET_POOL.subnets(new_prefix=24))[slot]
        host = net.network_address
        return cls(str(net), str(host + 10), str(host + 20), str(host + 30), str(host + 99))


def project_name(cell: Cell) -> str:
    """Compose project names must be lowercase [a-z0-9_-]; unique per run and cell."""
    raw = f"harness-{cell.run_id}-{cell.index:03d}".lower()
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in raw)


def haproxy_cfg(cell: Cell, knobs: Knobs, net: Network) -> str:
    service, port = knobs.server
    return _ENV.get_template("haproxy.cfg.j2").render(
        cell=cell,
        hx=knobs.haproxy,
        server=f"{getattr(net, service)}:{port}",
        tls=knobs.tls,
        log_format=HTTP_LOG_FORMAT,
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
    target = knobs.target
    # Census in every namespace; the ports say which sockets are accepted ("in") there.
    census = {"client": "", target: "8080 8443", "backend": "8080"}
    return _ENV.get_template("cell.yaml.j2").render(
        cell=cell,
        net=net,
        images=images,
        haproxy_image=haproxy_image,
        project=project,
        target=target,
        tls=knobs.tls,
        fin_delay_ms=knobs.fin_delay_ms,
        sysctls={side: knobs.sysctls.get(side, {}) for side in ("client", "haproxy", "backend")},
        census=census,
        backend_env=knobs.backend_env,
        load_env=_load_env(cell, knobs, net),
        load_args=load_args,
        probe=isinstance(knobs.load, Probe),
    )


def _load_env(cell: Cell, knobs: Knobs, net: Network) -> dict[str, str]:
    env = knobs.load.env(net.haproxy)
    if isinstance(knobs.load, HttpLoad):
        env["LOAD_RATE"] = f"{cell.load.rate:g}"  # used by the open loop only
    return env


def write_certs(folder: Path) -> None:
    """A throwaway CA and a server certificate for the TLS frontend (HAProxy's PEM: cert + key).

    trustme makes real X.509 certificates without hand-written ASN.1; the probe does not
    verify them (it measures closes, not trust), so a fresh CA per run is enough.
    """
    ca = trustme.CA()
    server = ca.issue_cert("haproxy", "localhost")
    certs = folder / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    server.private_key_and_cert_chain_pem.write_to_path(str(certs / "haproxy.pem"))
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path
