"""Drive the load in the client container, always bounded in time.

Two kinds (``docker compose exec client ...``):
- ``HttpLoad``: with Locust headless, closed-loop users sending GETs, or
  (``load.mode: open``) one user sending at a fixed arrival rate
  (clients/locustfiles/http_load.py); with ``load.generator: wrk``, Debian's wrk sending
  the same GETs closed loop over ``users`` connections (clients/wrk/harness.lua); with
  ``load.generator: h2load``, Debian's h2load sending them over HTTP/2 (``streams`` per
  connection), to the frontend the cell's ``http2`` knob made speak it;
  ``requests`` / ``node`` / ``go``, the field notes' own clients (clients-native/);
- ``Probe``: the close-delay probe (clients/locustfiles/close_delay.py), one Locust
  user that runs every probe connection of the cell concurrently, fires one Locust
  request event per connection, and stops the run when the last one has ended.
The command line is written into the rendered compose file's comments, so a person
can repeat exactly this load by hand.
"""

from __future__ import annotations

import math

from harness.plan.ports import HTTP_PORT, HTTPS_PORT
from harness.plan.scenarios import HttpLoad, Knobs, Probe
from harness.plan.spec import NATIVE_GENERATORS, Cell
from harness.stack.project import Stack
from harness.stack.render import Network

# What the native clients write (harness.analyse.native.NATIVE_FILE reads it).
NATIVE_FILE = "client.json"
# Locust gets this long past its run time to stop its users and write its files.
GRACE_S = 60


def run_time_s(cell: Cell, knobs: Knobs) -> float:
    """The hard bound on the load: Locust stops by itself at this point."""
    if isinstance(knobs.load, Probe):
        probe = knobs.load
        waves = -(-probe.total_connections // probe.concurrency)
        # Each response may take its pause and its deadline: requests of them in a row.
        per_connection = probe.requests * (probe.read_pause_ms / 1000 + probe.deadline_s) + 30
        return waves * per_connection
    return cell.load.duration_s


# h2load's per-request log in the client container (--log-file), the cell folder's
# h2load-requests.tsv (harness/analyse/h2load.py reads it).
H2LOAD_LOG = "/out/h2load-requests.tsv"


def generator(cell: Cell, knobs: Knobs) -> str:
    """The program that drives this cell's load: the matrix's ``load.generator`` for a
    load scenario, "locust" for a probe scenario (the probe is a locustfile)."""
    return cell.load.generator if isinstance(knobs.load, HttpLoad) else "locust"


def load_args(cell: Cell, knobs: Knobs, net: Network) -> list[str]:
    """The load's command line, run in the client container."""
    match generator(cell, knobs):
        case "wrk":
            return wrk_args(cell, knobs, net)
        case "h2load":
            return h2load_args(cell, knobs, net)
        case chosen if chosen in NATIVE_GENERATORS:
            return native_args(cell, knobs, net)
    return locust_args(cell, knobs, net)


def h2load_args(cell: Cell, knobs: Knobs, net: Network) -> list[str]:
    """h2load (nghttp2 1.52), closed loop: ``users`` connections (-c) over ``threads``
    threads (-t), each keeping ``streams`` requests in flight (-m), for the load's
    duration (-D, whole seconds, at least 1) or ``max_requests`` in all (-n). Its per-request
    log goes to H2LOAD_LOG. On an http URI h2load speaks HTTP/2 with prior knowledge
    (h2c); on https it offers ALPN h2 only (--npn-list h2), so a frontend without h2
    fails the cell instead of falling back to HTTP/1.1 (h2load(1))."""
    assert isinstance(knobs.load, HttpLoad)
    load = cell.load
    if knobs.load.http2 == "h2":
        url, alpn = f"https://{net.haproxy}:{HTTPS_PORT}{knobs.load.path}", ["--npn-list", "h2"]
    else:
        url, alpn = f"http://{net.haproxy}:{HTTP_PORT}{knobs.load.path}", []
    span = (
        ["--requests", str(load.max_requests)]
        if load.max_requests is not None
        else ["--duration", str(max(1, math.ceil(load.duration_s)))]
    )
    return ["h2load", "--clients", str(load.users), "--threads", str(load.native_threads),
            "--max-concurrent-streams", str(load.streams or 1), *span, *alpn,
            "--log-file", H2LOAD_LOG, url]  # fmt: skip


def native_args(cell: Cell, knobs: Knobs, net: Network) -> list[str]:
    """One of the field notes' clients (clients-native/), closed loop: ``users`` at once
    until ``duration_s`` or ``max_requests``, writing /out/client.json. Every value is a
    typed field of the cell's load (harness.plan.spec.Load): numbers, on/off, a Literal."""
    assert isinstance(knobs.load, HttpLoad)
    load = cell.load
    target = net.backend if knobs.load.via == "backend" else net.haproxy
    common = ["--url", f"http://{target}:{HTTP_PORT}{knobs.load.path}",
              "--users", str(load.users), "--duration", f"{load.duration_s:g}",
              "--max-requests", str(load.max_requests or 0),
              "--out", f"/out/{NATIVE_FILE}"]  # fmt: skip
    if load.generator == "requests":
        session = "on" if load.session else "off"
        return ["python3", "/native/requests_load.py", *common, "--session", session,
                "--concurrency", load.concurrency or "threads"]  # fmt: skip
    if load.generator == "node":
        agent = ["--agent", load.agent or "none"]
        if load.max_sockets:
            agent += ["--max-sockets", str(load.max_sockets)]
        return ["node", "/native/node_load.js", *common, *agent]
    # Go's flag package: -name value; unset settings keep http.DefaultTransport's
    go = ["go-load", *(a.replace("--", "-", 1) if a.startswith("--") else a for a in common)]
    if load.max_idle_conns is not None:
        go += ["-max-idle-conns", str(load.max_idle_conns)]
    if load.max_idle_conns_per_host is not None:
        go += ["-max-idle-conns-per-host", str(load.max_idle_conns_per_host)]
    if load.disable_keepalives:
        go.append("-disable-keepalives")
    if load.pause_ms:
        go += ["-pause-ms", str(load.pause_ms)]
    return go


def wrk_args(cell: Cell, knobs: Knobs, net: Network) -> list[str]:
    """wrk, closed loop: ``users`` connections over ``threads`` threads for the load's
    duration (whole seconds, at least 1), the script writing /out/wrk.json. ``--timeout``
    (wrk's default is 2 s) is past the duration, so a stalled response counts as the
    latency it had when the load stopped rather than a timeout error."""
    assert isinstance(knobs.load, HttpLoad)
    target = net.backend if knobs.load.via == "backend" else net.haproxy
    seconds = max(1, math.ceil(cell.load.duration_s))
    return ["wrk", "--threads", str(cell.load.native_threads),
            "--connections", str(cell.load.users), "--duration", f"{seconds}s",
            "--timeout", f"{seconds + 5}s", "--script", "/wrk/harness.lua",
            f"http://{target}:{HTTP_PORT}"]  # fmt: skip


def locust_args(cell: Cell, knobs: Knobs, net: Network) -> list[str]:
    common = [
        "--headless",
        "--run-time", f"{math.ceil(run_time_s(cell, knobs))}s",
        "--stop-timeout", "5",
        "--only-summary",
        "--csv", "/out/locust",
        "--json-file", "/out/locust",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    if isinstance(knobs.load, Probe):
        host = f"{'https' if knobs.tls else 'http'}://{net.haproxy}:{knobs.load.port}"
        return ["locust", "-f", "/locustfiles/close_delay.py", "--host", host,
                "--users", "1", "--spawn-rate", "1", *common]  # fmt: skip
    load = cell.load
    target = net.backend if knobs.load.via == "backend" else net.haproxy
    host = ["--host", f"http://{target}:{HTTP_PORT}"]
    # With workers, Locust's distributed mode in the same container: the master takes
    # these options, the workers the users (clients/distributed.sh).
    locust = (
        ["locust-distributed", str(load.workers), "/locustfiles/http_load.py"]
        if load.workers
        else ["locust", "-f", "/locustfiles/http_load.py"]
    )
    if load.mode == "open":
        # One user per process schedules its share of the requests at the fixed rate
        # (LOAD_RATE / processes, set per run: harness/stack/render.py); its schedule
        # never ends by itself, so stop it at once when the time is up.
        common[common.index("--stop-timeout") + 1] = "0"
        users = str(load.processes)
        return [*locust, *host, "--users", users, "--spawn-rate", users, *common,
                "OpenLoop"]  # fmt: skip
    return [*locust, *host,
            "--users", str(load.users), "--spawn-rate", str(load.spawn_rate),
            *common, "HttpLoad"]  # fmt: skip


def drive(stack: Stack, cell: Cell, knobs: Knobs, args: list[str]) -> tuple[int, str]:
    """Run the load to its end; return the generator's exit code and its output."""
    proc = stack.exec("client", *args, timeout=run_time_s(cell, knobs) + GRACE_S)
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")
