"""Every scenario's stack, up on the real engine, holds to harness/stack/security.py.

The unit tests check the rendered compose files; this checks what Docker made of them:
``docker inspect`` of every service's container (Docker SDK), and each container's own
processes (/proc/<pid>/status inside it). One cell per scenario, plus a TLS cell (haproxy
must read its key as its own user), prepared by the runner as a run would be, each stack
up (health-checked), inspected, and down: no load. Capability bits as in capabilities(7)
and <linux/capability.h>.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import docker

from harness import runner
from harness.plan import spec
from harness.plan.scenarios import SCENARIOS
from harness.progress import Progress
from harness.stack import security
from harness.stack.compose import CommandLog
from harness.stack.project import PROJECT_LABEL, Stack, leftovers

SERVICE_LABEL = "com.docker.compose.service"
# <linux/capability.h>: the bit of each capability security.py may grant.
CAP_BITS = {"NET_ADMIN": 12, "NET_RAW": 13}
HOST_MODES = ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode")
PROC_FIELDS = ("Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs")


def _plan(run_id: str) -> spec.Plan:
    cells: list[dict[str, Any]] = [{"name": name} for name in SCENARIOS]
    cells.append({"name": "half-close", "params": {"tls": "1.3", "variant": "tls-fin-no-notify"}})
    raw = {"name": "least-privilege", "versions": ["debian:bookworm"], "scenarios": cells}
    return spec.expand(raw, run_id)


def _allowed_mask(service: str) -> int:
    return sum(1 << CAP_BITS[cap] for cap in security.policy(service).cap_add)


def _processes(container: Any) -> dict[str, dict[str, str]]:
    """PID -> the PROC_FIELDS of /proc/<pid>/status, for every process in the container
    (its own PID namespace), read by grep run as the service's user. The census's
    short-lived ss and awk may be gone before grep reads them: -s, no exit check, and a
    process read only in part is left out."""
    pattern = "^(" + "|".join(PROC_FIELDS) + "):"
    _, out = container.exec_run(["sh", "-c", f"grep -sE '{pattern}' /proc/[0-9]*/status"])
    found: dict[str, dict[str, str]] = {}
    for line in out.decode().splitlines():
        path, key, value = line.split(":", 2)
        found.setdefault(path.split("/")[2], {})[key] = value.split()[0]  # real uid/gid
    # A short-lived process (a health check's shell, the census's ss) can end while grep
    # reads it: part of its fields, then nothing. It cannot be checked; the rest must be.
    complete = {pid: f for pid, f in found.items() if len(f) == len(PROC_FIELDS)}
    assert "1" in complete, out
    return complete


def _uid_gid(container: Any) -> tuple[str, str]:
    code, out = container.exec_run(["sh", "-c", "id -u; id -g"])
    assert code == 0, out
    uid, gid = out.decode().split()
    return uid, gid


def _problems(service: str, container: Any, folder: Path, project_ids: set[str]) -> list[str]:
    """What in this container breaks the policy; [] when it holds."""
    attrs = container.attrs
    host = attrs["HostConfig"]
    p = security.policy(service)
    problems = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(f"{service}: {what}")

    check(host["Privileged"] is False, "privileged")
    check(not host.get("Devices"), f"devices {host.get('Devices')}")
    mode = host["NetworkMode"]
    check(
        mode != "host" and (not mode.startswith("container:") or mode[10:] in project_ids),
        f"NetworkMode {mode} (only the cell's network or a service's namespace)",
    )
    for key in HOST_MODES:
        check(host.get(key) != "host", f"{key} host")
    for mount in attrs["Mounts"]:
        source = Path(mount.get("Source", ""))
        inside = mount["Type"] == "bind" and source.resolve().is_relative_to(folder.resolve())
        check(inside and "docker.sock" not in str(source), f"mount {mount} (not the cell folder)")
    cap_add = {cap.removeprefix("CAP_") for cap in host.get("CapAdd") or []}  # CAP_NET_RAW
    check(cap_add <= set(p.cap_add), f"CapAdd {host.get('CapAdd')}")
    check("ALL" in (host.get("CapDrop") or []), f"CapDrop {host.get('CapDrop')}")
    nnp = security.NO_NEW_PRIVILEGES in (host.get("SecurityOpt") or [])
    check(nnp == p.no_new_privileges, f"SecurityOpt {host.get('SecurityOpt')}")
    check(attrs["Config"]["User"] == security.user(service), f"User {attrs['Config']['User']!r}")
    check(host["ReadonlyRootfs"] == p.read_only, f"ReadonlyRootfs {host['ReadonlyRootfs']}")

    # What the kernel says of each process: the user, and no capability beyond the grant.
    uid, gid = _uid_gid(container)
    if p.user != security.HOST_USER:
        check(uid != "0", f"runs as root (declared {p.user})")
    allowed = _allowed_mask(service)
    for pid, status in _processes(container).items():
        check((status["Uid"], status["Gid"]) == (uid, gid), f"pid {pid}: {status}")
        for key in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            check(int(status[key], 16) & ~allowed == 0, f"pid {pid} {key} {status[key]}")
        check(status["NoNewPrivs"] == str(int(p.no_new_privileges)), f"pid {pid} {status}")
    if not p.no_new_privileges:
        # Then nothing the service's user can reach may raise a privilege on exec: no
        # set-user/group-ID file (tcpdump is listed too, so the search did run).
        find = r"find / -xdev -type f \( -perm /6000 -o -name tcpdump \) 2>/dev/null"
        _, out = container.exec_run(["sh", "-c", find])
        check(out.decode().split() == ["/usr/bin/tcpdump"], f"found {out.decode()!r}")
    return problems


def test_every_scenario_stack_runs_with_least_privilege(
    docker_engine: docker.DockerClient, tmp_path: Path
) -> None:
    started = time.monotonic()
    run_id = f"least-privilege-{os.getpid()}"
    plan = _plan(run_id)
    assert {c.scenario for c in plan.cells} == set(SCENARIOS)
    _, prepared = runner.prepare(plan, tmp_path / run_id, Progress(io.StringIO()))
    problems: list[str] = []
    seen: set[str] = set()
    for item in prepared:
        log = CommandLog(item.folder / "commands.log")
        with Stack(item.project, item.folder / "compose.yaml", log):
            containers = docker_engine.containers.list(
                filters={"label": f"{PROJECT_LABEL}={item.project}"}
            )
            ids = {c.id for c in containers}
            services = {c.labels[SERVICE_LABEL]: c for c in containers}
            expected = {"backend", "client", "capture", item.knobs.target}
            assert expected <= set(services), (item.cell.id, sorted(services))
            for service, container in sorted(services.items()):
                problems += [
                    f"{item.cell.id}: {p}" for p in _problems(service, container, item.folder, ids)
                ]
                seen.add(service)
        assert not any(leftovers(item.project).values()), item.cell.id
    assert problems == [], "\n".join(problems)
    # every kind of service was looked at, the capture's exception included
    assert {"haproxy", "calibration", "backend", "client", "capture"} <= seen
    assert {s for s in seen if s.startswith("census-")} >= {"census-client", "census-haproxy"}
    print(f"{len(prepared)} stacks in {time.monotonic() - started:.0f} s")


def test_the_check_sees_each_breach(docker_engine: docker.DockerClient, tmp_path: Path) -> None:
    # The backend's image as Docker runs it by default (root, default capabilities), plus
    # a capability, the host's IPC namespace and a host path: each must be reported.
    container = docker_engine.containers.run(
        "harness-backend:latest",
        ["sleep", "60"],
        detach=True,
        labels={"harness": "1"},
        network_mode="none",
        cap_add=["SYS_ADMIN"],
        ipc_mode="host",
        volumes={"/etc": {"bind": "/host-etc", "mode": "ro"}},
    )
    try:
        container.reload()
        problems = "\n".join(_problems("backend", container, tmp_path, set()))
    finally:
        container.remove(force=True)
    for expected in (
        "backend: CapAdd ['SYS_ADMIN']",
        "backend: CapDrop",
        "backend: SecurityOpt",
        "backend: User ''",
        "backend: ReadonlyRootfs False",
        "backend: IpcMode host",
        "/host-etc",
        "backend: runs as root",
        "CapEff",
        "NoNewPrivs",
    ):
        assert expected in problems, (expected, problems)
