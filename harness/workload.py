"""Drive the load: Locust, headless, in the client container, bounded in time.

The command line is part of the rendered compose file's comments, so a person can
repeat exactly this load by hand.
"""

from __future__ import annotations

from harness.spec import Cell
from harness.stack import Stack

LOCUSTFILE = "/locustfiles/http_load.py"
# Locust gets this long past its run time to stop its users and write its files.
GRACE_S = 60


def locust_args(cell: Cell, target: str) -> list[str]:
    load = cell.load
    return [
        "-f",
        LOCUSTFILE,
        "--headless",
        "--host",
        target,
        "--users",
        str(load.users),
        "--spawn-rate",
        str(load.spawn_rate),
        "--run-time",
        f"{load.duration_s:g}s",
        "--stop-timeout",
        "5",
        "--only-summary",
        "--csv",
        "/out/locust",
        "--json-file",
        "/out/locust",
        "--exit-code-on-error",
        "0",
    ]


def drive(stack: Stack, cell: Cell, args: list[str]) -> tuple[int, str]:
    """Run the load to its end; return Locust's exit code and its output."""
    proc = stack.run("client", *args, timeout=cell.load.duration_s + GRACE_S)
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")
