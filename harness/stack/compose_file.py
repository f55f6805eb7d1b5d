"""A cell's ``compose.yaml``, built as data and serialised with a YAML library.

The compose file is a Python structure whose keys are all written here; values from a
cell (typed parameters, image tags, addresses) are only ever values, and the YAML
serialiser quotes them. So no value, whatever text it holds, can add a key, a service
or an option to a stack. The comments at the top (how to repeat the cell by hand) are
made of checked, single-line text (``comment``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from harness.plan.ports import HTTP_PORT, HTTPS_PORT, STATS_PORT
from harness.stack import security

# What a comment line may hold: printable ASCII. Anything else (a newline above all)
# is replaced, so a comment can never end and let text become YAML.
_UNSAFE_IN_COMMENT = re.compile(r"[^\x20-\x7e]")


# The backend's health check: one HTTP/1.0 GET /health, healthy on a 200 status line
# ($$: Compose would interpolate a single $).
_HEALTH_GET = (
    "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 "
    "&& read -r status <&3 && [[ $$status == *' 200 '* ]]"
)


def comment(text: str) -> str:
    """``text`` as the body of one YAML comment line: printable ASCII only."""
    return _UNSAFE_IN_COMMENT.sub("?", text)


class Addresses(Protocol):
    """The cell's network: its /24 and each service's fixed address in it
    (``render.Network``)."""

    @property
    def subnet(self) -> str: ...
    @property
    def haproxy(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def client(self) -> str: ...


@dataclass(frozen=True)
class StackSpec:
    """Everything the compose file of one cell is built from.

    ``target`` is ``"haproxy"``, or ``"calibration"`` for the target with a known FIN
    delay that takes haproxy's place. ``sysctls`` maps a side (client, haproxy, backend)
    to its namespaced sysctls. ``probe``: the cell times closes (the client and the
    census get CPU priority, the census runs idle-class).
    """

    cell_id: str
    run_id: str
    project: str
    net: Addresses
    haproxy_image: str
    backend_image: str
    client_image: str
    observer_image: str
    target: str
    tls: bool
    fin_delay_ms: int
    sysctls: dict[str, dict[str, str]]
    backend_env: dict[str, str]
    load_env: dict[str, str]
    load_args: tuple[str, ...]
    probe: bool
    # The backend's listening ports (one per server of the cell's backend): the census
    # there counts connections to them as accepted ("in").
    backend_ports: tuple[int, ...] = (HTTP_PORT,)


# Every key a cell's compose file can hold, per level: what tests hold the output to.
TOP_KEYS = frozenset({"name", "services", "networks"})
SERVICE_KEYS = frozenset(
    {
        "image", "labels", "environment", "sysctls", "networks", "entrypoint", "init",
        "volumes", "healthcheck", "depends_on", "cpu_shares", "network_mode", "cap_drop",
        "cap_add", "command", "user", "security_opt", "read_only", "cgroup", "ports",
    }
)  # fmt: skip


def build(spec: StackSpec) -> dict[str, Any]:
    """The compose document of one cell, as data."""
    labels = {"harness": "1", "harness.run": spec.run_id, "harness.cell": spec.cell_id}
    services: dict[str, Any] = {"backend": _backend(spec, labels)}
    services[spec.target] = (
        _haproxy(spec, labels) if spec.target == "haproxy" else _calibration(spec, labels)
    )
    services["client"] = _client(spec, labels)
    # Census in every namespace; the ports say which sockets are accepted ("in") there.
    listen = {
        "client": "",
        spec.target: f"{HTTP_PORT} {HTTPS_PORT}",
        "backend": " ".join(map(str, spec.backend_ports)),
    }
    for side, ports in listen.items():
        services[f"census-{side}"] = _census(spec, labels, side, ports)
    services["capture"] = _capture(spec, labels)
    for name, service in services.items():
        # Least privilege: user, capabilities, no-new-privileges (harness/security.py).
        service.update(security.service_security(name))
    return {
        "name": spec.project,
        "services": services,
        "networks": {
            "lab": {"labels": dict(labels), "ipam": {"config": [{"subnet": spec.net.subnet}]}}
        },
    }


def dump(spec: StackSpec) -> str:
    """The compose file's text: comments saying how to repeat the cell, then the YAML."""
    header = [
        f"Rendered by the harness for cell {spec.cell_id}.",
        "Re-run by hand from this folder:",
        f"  docker compose -p {spec.project} up -d --wait",
        f"  docker compose -p {spec.project} exec -T client {' '.join(spec.load_args)}",
        f"  docker compose -p {spec.project} down -v --remove-orphans",
    ]
    body = yaml.safe_dump(build(spec), sort_keys=False, default_flow_style=False, width=1000)
    return "".join(f"# {comment(line)}\n" for line in header) + body


def dump_part(spec: StackSpec, doc: dict[str, Any], context: str) -> str:
    """One engine's part of a cell that spans engines (harness.stack.hosts.split_compose),
    with comments saying how to run it by hand on that engine."""
    ctx = f"docker --context {context}"
    header = [
        f"Rendered by the harness for cell {spec.cell_id}: the services on the engine of "
        f"Docker context {context}.",
        f"  {ctx} compose -p {spec.project} -f {comment(f'compose.{context}.yaml')} up -d",
        f"  {ctx} compose -p {spec.project} -f {comment(f'compose.{context}.yaml')} down -v",
    ]
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
    return "".join(f"# {comment(line)}\n" for line in header) + body


def _network(address: str) -> dict[str, Any]:
    return {"lab": {"ipv4_address": address}}


def _with_sysctls(service: dict[str, Any], sysctls: dict[str, str]) -> dict[str, Any]:
    if sysctls:
        service["sysctls"] = dict(sysctls)
    return service


def _backend(spec: StackSpec, labels: dict[str, str]) -> dict[str, Any]:
    service = {
        "image": spec.backend_image,
        "labels": dict(labels),
        "environment": dict(spec.backend_env),
        # For `up --wait` by hand (the harness waits on the census instead): bash's
        # /dev/tcp, not a python3 per check as the image's own HEALTHCHECK. A GET /health,
        # not a bare connect: only a connection that asks for /health is not counted as
        # traffic by the backend (backends/server.py).
        "healthcheck": _healthcheck(_HEALTH_GET.format(port=HTTP_PORT)),
    }
    _with_sysctls(service, spec.sysctls.get("backend", {}))
    service["networks"] = _network(spec.net.backend)
    return service


def _healthcheck(script: str) -> dict[str, Any]:
    """A bash health check, every second, for a by-hand `up --wait`: the harness itself
    waits on the census files (harness/stack/ready.py)."""
    return {"test": ["CMD", "bash", "-c", script], "interval": "1s", "timeout": "2s",
            "retries": 30}  # fmt: skip


def _haproxy(spec: StackSpec, labels: dict[str, str]) -> dict[str, Any]:
    volumes = ["./haproxy.cfg:/etc/harness/haproxy.cfg:ro", "./haproxy-logs:/var/log/harness"]
    if spec.tls:
        volumes.append("./certs:/etc/harness/certs:ro")
    service: dict[str, Any] = {
        "image": spec.haproxy_image,
        "labels": dict(labels),
        # HAProxy writes its log lines to stdout without blocking and drops those a full
        # pipe refuses (DroppedLogs): Docker's log pipe fills on a busy machine. A regular
        # file never refuses a write. HAProxy clears O_APPEND on its stdout, so each start
        # (a restart in the fault scenario) gets a file of its own: 0.log, 1.log, ...
        "entrypoint": [
            "sh",
            "-c",
            "n=$$(ls /var/log/harness | wc -l); "
            "exec haproxy -db -f /etc/harness/haproxy.cfg >/var/log/harness/$$n.log",
        ],
        # As PID 1, haproxy would ignore SIGTERM and every teardown would wait for the kill.
        "init": True,
        "volumes": volumes,
        # On the stats socket, not the frontend: a check every second that connects to
        # the frontend while HAProxy is at its maxconn takes one of the listener's
        # accept-queue slots from the clients (tests/integration/test_maxconn.py).
        "healthcheck": _healthcheck(f"exec 3<>/dev/tcp/127.0.0.1/{STATS_PORT}"),
        # No depends_on the backend: the server line has a fixed address and no `check`,
        # so both start at once; the harness waits until both listen (harness/stack/ready.py).
    }
    _with_sysctls(service, spec.sysctls.get("haproxy", {}))
    service["networks"] = _network(spec.net.haproxy)
    return service


def _calibration(spec: StackSpec, labels: dict[str, str]) -> dict[str, Any]:
    # In haproxy's place: answers, reads the client's FIN, waits an injected delay, then
    # sends its own FIN. Same probe, same capture, known truth.
    return {
        "image": spec.backend_image,
        "labels": dict(labels),
        "cpu_shares": 262144,
        "environment": {
            "BACKEND_MODE": "fin-delay",
            "BACKEND_FIN_DELAY_MS": str(spec.fin_delay_ms),
        },
        "networks": _network(spec.net.haproxy),
    }


def _client(spec: StackSpec, labels: dict[str, str]) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": spec.client_image,
        "labels": dict(labels),
        # Idles until the harness execs the load in it, so observers can share its
        # namespace.
        "entrypoint": ["sleep", "infinity"],
        "init": True,
    }
    if spec.probe:
        service["cpu_shares"] = 262144
    service["environment"] = dict(spec.load_env)
    _with_sysctls(service, spec.sysctls.get("client", {}))
    service["volumes"] = ["./:/out"]
    service["networks"] = _network(spec.net.client)
    return service


def _census(spec: StackSpec, labels: dict[str, str], side: str, ports: str) -> dict[str, Any]:
    # TCP-state census in the side's network namespace (observers/census.sh).
    environment = {"CENSUS_LISTEN_PORTS": ports}
    if spec.probe:
        environment["CENSUS_SCHED_IDLE"] = "1"  # never in the way of the probe's timing
    return {
        "image": spec.observer_image,
        "labels": dict(labels),
        "network_mode": f"service:{side}",
        "init": True,
        "command": ["census.sh", f"/out/census-{side}.txt"],
        "environment": environment,
        "volumes": ["./:/out"],
        "depends_on": [side],
    }


def _capture(spec: StackSpec, labels: dict[str, str]) -> dict[str, Any]:
    # Packet capture in the target's namespace: only SYN/FIN/RST of the frontend's
    # connections, enough to time every close on the wire. It runs as tcpdump (the
    # harness pre-creates the pcap file, writable for it) with only the capabilities
    # tcpdump needs (harness/security.py).
    ip = spec.net.haproxy
    frontend = (
        "(tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0) and "
        f"((dst host {ip} and (dst port {HTTP_PORT} or dst port {HTTPS_PORT})) or "
        f"(src host {ip} and (src port {HTTP_PORT} or src port {HTTPS_PORT})))"
    )
    return {
        "image": spec.observer_image,
        "labels": dict(labels),
        "network_mode": f"service:{spec.target}",
        "init": True,
        # --immediate-mode: else packets of the last second can be lost at stop.
        "command": [
            "tcpdump",
            "-i",
            "any",
            "-s",
            "128",
            "-U",
            "--immediate-mode",
            "-w",
            f"/out/{spec.target}.pcap",
            frontend,
        ],
        "volumes": ["./:/out"],
        "depends_on": [spec.target],
    }
