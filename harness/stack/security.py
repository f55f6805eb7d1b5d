"""Least privilege, per service of a cell's stack: one table, applied to every cell.

Every service drops every capability (``cap_drop: [ALL]``) and gets back only what it
was seen to need; meanings as in capabilities(7). Each runs as a user that is not root
where its image has one, and under ``no-new-privileges`` (prctl(2) PR_SET_NO_NEW_PRIVS:
no execve can raise its privileges, through set-user-ID bits or file capabilities).

Found by experiment (a short cell of every scenario, numbers compared with root runs):
- haproxy listens on 8080/8443/9999 (above 1024: no NET_BIND_SERVICE), reads its config
  and certificate (made readable by the runner) and writes into haproxy-logs/ (mode 0777,
  prepared by the runner): it needs no capability. Its open-files limit comes from the
  engine (no SYS_RESOURCE to raise it beyond the hard limit).
- the backend and the calibration target (the same image) own no file and write none.
- the client (Locust and the probe) and the census write into the cell folder (``/out``):
  they run as the host user that runs the harness, who owns that folder, so they need
  no DAC_OVERRIDE and every file they write is that user's. The probe's timing rests on
  ``cpu_shares`` and the census's ``SCHED_IDLE`` (``chrt --idle``): lowering one's own
  priority needs no SYS_NICE (sched(7)), and the runtime applies ``cpu_shares``.
- the kernel-knobs scenario's sysctls are set by the runtime, before the process starts.
- the capture is tcpdump as the unprivileged ``tcpdump`` user, with NET_RAW (a packet
  socket) and NET_ADMIN (the capture's socket options) granted by file capabilities on
  /usr/bin/tcpdump (observers/Dockerfile). ``no-new-privileges`` would void those file
  capabilities ("You don't have permission to perform this capture"), so the capture
  alone runs without it; its bounding set is NET_RAW and NET_ADMIN, and the observer
  image has no set-user-ID or set-group-ID file, so there is nothing it would prevent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The user is the host user that runs the harness (``uid:gid``), resolved per render.
HOST_USER = "<host user>"
NO_NEW_PRIVILEGES = "no-new-privileges:true"


@dataclass(frozen=True)
class Policy:
    """What one service may do. ``user``: a name the image knows, or HOST_USER;
    ``cap_add``: capabilities(7) names without ``CAP_``, on top of an empty set;
    ``why``: one line per grant or exception, for the README and the reader."""

    user: str
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    read_only: bool = True  # the image's own files: no service writes them
    why: str = ""


POLICIES: dict[str, Policy] = {
    "haproxy": Policy(
        user="haproxy",  # Debian's package and the official images create it; ours too
        why="listens above 1024; reads its config and key, writes haproxy-logs/ (0777)",
    ),
    "backend": Policy(user="nobody", why="serves from memory: owns and writes no file"),
    "calibration": Policy(user="nobody", why="the backend's image, in haproxy's place"),
    "client": Policy(
        user=HOST_USER,
        why="writes Locust's and the probe's files into the cell folder, its user's own",
    ),
    "census": Policy(
        user=HOST_USER,
        why="writes its samples into the cell folder; ss uses netlink, chrt --idle lowers "
        "its own priority: no capability",
    ),
    "capture": Policy(
        user="tcpdump",
        cap_add=("NET_RAW", "NET_ADMIN"),
        no_new_privileges=False,
        why="NET_RAW opens the packet socket, NET_ADMIN sets the capture's socket options; "
        "both reach tcpdump through file capabilities, which no-new-privileges voids",
    ),
}


def policy(service: str) -> Policy:
    """The policy of a compose service: ``census-<side>`` share the census's."""
    role = "census" if service.startswith("census-") else service
    try:
        return POLICIES[role]
    except KeyError:
        raise KeyError(f"harness/security.py has no policy for service {service!r}") from None


def host_user() -> str:
    """``uid:gid`` of this process: the owner of the run folder it creates."""
    return f"{os.getuid()}:{os.getgid()}"


def user(service: str) -> str:
    """The user a service runs as, as compose and ``docker inspect`` (Config.User) say it."""
    declared = policy(service).user
    return host_user() if declared == HOST_USER else declared


def service_security(service: str) -> dict[str, object]:
    """The compose keys of a service's policy, e.g. for the capture
    ``{"user": "tcpdump", "cap_drop": ["ALL"], "cgroup": "private",
    "cap_add": ["NET_RAW", "NET_ADMIN"], "read_only": True}``; values are str, bool or
    list[str], so JSON and YAML alike."""
    p = policy(service)
    # cgroup: a namespace of its own, as on cgroup v2 hosts (v1 defaults to the host's)
    keys: dict[str, object] = {"user": user(service), "cap_drop": ["ALL"], "cgroup": "private"}
    if p.cap_add:
        keys["cap_add"] = list(p.cap_add)
    if p.no_new_privileges:
        keys["security_opt"] = [NO_NEW_PRIVILEGES]
    if p.read_only:
        keys["read_only"] = True
    return keys


def docker_run_flags(service: str) -> list[str]:
    """The same policy as ``docker run`` flags, for one-off containers of a service's
    image (``haproxy -vv``, ``haproxy -c``): they then see what the service will see."""
    p = policy(service)
    flags = ["--user", user(service), "--cap-drop", "ALL", "--cgroupns", "private"]
    flags += [f"--cap-add={cap}" for cap in p.cap_add]
    if p.no_new_privileges:
        flags += ["--security-opt", NO_NEW_PRIVILEGES]
    if p.read_only:
        flags.append("--read-only")
    return flags
