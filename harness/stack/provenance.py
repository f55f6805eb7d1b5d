"""Where a run ran: kernel, TCP sysctls, CPU, Docker and Compose, the harness's commit.

Deliberately absent: pip's index URLs and CA bundle (they describe the build host's
network, not the measurement, and may carry credentials).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from harness import ROOT
from harness.plan.versions import file_sha256
from harness.stack.compose import client, redact

TCP_SYSCTLS = (
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_max_tw_buckets",
    "net.core.somaxconn",
    "net.ipv4.tcp_keepalive_time",
)


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip().replace("\t", " ")
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _command(*argv: str) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def sha256(path: Path) -> str:
    """A file's sha256 (hex): the one file hash of the harness (plan.versions')."""
    return file_sha256(path)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def collect() -> dict[str, Any]:
    """Recorded in run.json; any URL credentials in it (a git remote, ...) are hidden."""
    version = client().version()
    found = {
        "kernel": platform.release(),
        "tcp_sysctls": {name: _sysctl(name) for name in TCP_SYSCTLS},
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "docker": version.get("Version"),
        "compose": _command("docker", "compose", "version", "--short"),
        "harness_commit": _command("git", "rev-parse", "HEAD"),
        "harness_dirty": bool(_command("git", "status", "--porcelain")),
        "python": platform.python_version(),
    }
    return _redacted(found)
