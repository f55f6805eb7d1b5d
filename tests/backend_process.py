"""Start backends/server.py on loopback for a test, the way every test that needs it does."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "backends" / "server.py"
TIMEOUT = 5.0


def start(env: dict[str, str], python: str = sys.executable) -> tuple[subprocess.Popen[bytes], int]:
    """The server with BACKEND_* from ``env``, and the port it listens on, accepting."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    # Port 0 and reading the bound port from the startup line avoids the race
    # of picking a "free" port first.
    full_env.update({"BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": "0", **env})
    proc = subprocess.Popen(
        [python, "-u", str(SERVER)], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
    line = proc.stdout.readline().decode() if ready else ""
    match = re.search(r"listening on 127\.0\.0\.1:(\d+) ", line)
    if not match:
        proc.kill()
        _, err = proc.communicate(timeout=TIMEOUT)
        raise AssertionError(f"server did not start: {line!r} {err.decode()!r}")
    port = int(match.group(1))
    deadline = time.monotonic() + TIMEOUT
    while True:  # wait until the port accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.01)
