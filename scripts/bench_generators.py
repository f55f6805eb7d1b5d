"""The load generators side by side (`make bench`, part "generators").

1. Runs the same keep-alive cell (keepalive-vs-close, 128 B, 20 connections, 5 s) with
   Locust (one process, and distributed over 2 worker processes), wrk and h2load (h2c,
   one stream per connection: HTTP/2 at the same concurrency), through HAProxy and
   (all but h2load) straight to the backend, interleaved (Locust, Locust x2, wrk, h2load,
   Locust, ...) so the host's noise falls on all alike, REPS times each. Prints req/s per
   run and the medians' ratios: how much of HAProxy's pace Locust hides, and whether
   each generator had headroom (client-bound per the cell's own CPU measurement).
2. Bare wrk against the harness's wrk, in one stack (one HAProxy, one backend, the
   observers running): the harness's wrk generator (its command line and Lua script,
   as a cell runs it) and the same wrk binary run by hand (``wrk -t1 -c20 -d5s URL``,
   no script), interleaved REPS times through HAProxy; then bare wrk to the backend
   alone with keep-alive, with Connection: close, and for 100 KB responses.

    python scripts/bench_generators.py [--reps 3] [--version debian:bookworm]

Exit 1 when wrk's median through HAProxy is below MIN_RATIO times Locust's (the native
generator would not be lifting the client's limit it exists to lift), or the harness's
wrk below MIN_BARE_RATIO of bare wrk through the same HAProxy (issue 15: the generator's
wrapper must not become the limit). "client-bound" and "host saturated" are the cells'
own flags (harness/analyse/cell_metrics.py): on a saturated 2-core host a generator
starved of CPU is flagged client-bound too, however little it used, so read them with
its cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import runner  # noqa: E402
from harness.analyse import wrk  # noqa: E402
from harness.plan import spec  # noqa: E402
from harness.plan.ports import HTTP_PORT  # noqa: E402
from harness.progress import Progress  # noqa: E402
from harness.stack import lease, ready, render  # noqa: E402
from harness.stack.compose import CommandLog  # noqa: E402
from harness.stack.project import Stack  # noqa: E402

MIN_RATIO = 1.5
MIN_BARE_RATIO = 0.9
LOADS = {
    "locust": ["--generator", "locust"],
    "locust-2w": ["--generator", "locust", "--workers", "2"],
    "wrk": ["--generator", "wrk"],
    "h2load": ["--generator", "h2load", "--param", "http2=h2c"],
}
# h2load speaks HTTP/2, which the backend does not: through HAProxy only.
VIAS = {"haproxy": list(LOADS), "backend": ["locust", "locust-2w", "wrk"]}
CONNECTIONS, SECONDS = 20, 5


def measure(results: Path, version: str, generator: str, via: str) -> dict[str, object]:
    """One cell; its req/s, p50 and whether the client set the pace."""
    cmd = [
        sys.executable, "-m", "harness", "--results-dir", str(results), "run",
        "--haproxy", version, "--scenario", "keepalive-vs-close", "--param", f"via={via}",
        "--users", "20", "--duration", "5", *LOADS[generator],
    ]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    newest = max(results.glob("*/*/cell.json"), key=os.path.getmtime)
    cell = json.loads(newest.read_text())
    load = cell["metrics"]["load"]
    return {
        "rps": load["rps"],
        "p50_ms": load["p50_ms"],
        "client_bound": cell["metrics"].get("client_bound"),
        "client_cores": cell["metrics"].get("client_limit", {}).get("client_cores"),
        "host_saturated": cell["metrics"].get("host_saturated"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--version", default="debian:bookworm")
    args = parser.parse_args()
    rows, by = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(1, args.reps + 1):
            for via, generators in VIAS.items():
                for generator in generators:
                    got = measure(Path(tmp), args.version, generator, via)
                    by.setdefault((generator, via), []).append(got)
                    rows.append([rep, generator, via, f"{got['rps']:.0f}", got["p50_ms"],
                                 got["client_cores"], got["client_bound"],
                                 got["host_saturated"]])  # fmt: skip
                    print(f"generators: rep {rep} {generator} via {via}: {got['rps']:.0f} req/s",
                          file=sys.stderr)  # fmt: skip
    print(tabulate(rows, ["rep", "generator", "via", "req/s", "p50 ms", "client cores",
                          "client-bound", "host saturated"]))  # fmt: skip
    med = {k: statistics.median(g["rps"] for g in v) for k, v in by.items()}
    print()
    locust, wrk = med["locust", "haproxy"], med["wrk", "haproxy"]
    print(f"median req/s through HAProxy: Locust {locust:.0f}, wrk {wrk:.0f} "
          f"(wrk/Locust {wrk / locust:.2f}x)")  # fmt: skip
    two = med["locust-2w", "haproxy"]
    print(f"median req/s through HAProxy, Locust with 2 workers: {two:.0f} "
          f"({two / locust:.2f}x one process)")  # fmt: skip
    h2 = med["h2load", "haproxy"]
    print(f"median req/s through HAProxy, h2load (h2c, 1 stream per connection): {h2:.0f} "
          f"({h2 / wrk:.2f}x wrk)")  # fmt: skip
    alone = {g: med[g, "backend"] for g in VIAS["backend"]}
    print(f"median req/s to the backend alone: Locust {alone['locust']:.0f}, "
          f"Locust x2 {alone['locust-2w']:.0f}, wrk {alone['wrk']:.0f}")  # fmt: skip
    bound = sum(bool(g["client_bound"]) for g in by["wrk", "haproxy"])
    print(f"wrk through HAProxy flagged client-bound in {bound} of {args.reps} runs")
    ok = wrk >= MIN_RATIO * locust
    print(f"wrk/Locust through HAProxy {wrk / locust:.2f}x (target >= {MIN_RATIO}x): "
          f"{'ok' if ok else 'below'}")  # fmt: skip
    print()
    bare_ok = against_bare_wrk(args.version, args.reps)
    return 0 if ok and bare_ok else 1


def against_bare_wrk(version: str, reps: int) -> bool:
    """Part 2 (the module's docstring): prints each run and the median ratio harness-wrk /
    bare-wrk; True when it is at least MIN_BARE_RATIO."""
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}-bench-wrk"
    load = spec.Load(generator="wrk", users=CONNECTIONS, duration_s=SECONDS)
    plan = spec.single(version, "keepalive-vs-close", run_id, load)
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp, lease.held(run_id):
        # the runner's own preparation: images, rendered and checked files
        _, [item] = runner.prepare(plan, Path(tmp) / run_id, Progress(io.StringIO()))
        net = render.Network.for_project(item.project)
        bare = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s"]
        haproxy, backend = (
            f"http://{net.haproxy}:{HTTP_PORT}/",
            f"http://{net.backend}:{HTTP_PORT}/",
        )
        stack = Stack(
            item.project, item.folder / "compose.yaml", CommandLog(item.folder / "commands.log"),
            ready=lambda: ready.wait(item.project, item.folder, "haproxy"),
        )  # fmt: skip
        with stack:
            for rep in range(1, reps + 1):
                rows.append([rep, "harness wrk", "haproxy", _harness_wrk(stack, item)])
                rows.append([rep, "bare wrk", "haproxy", _bare_wrk(stack, [*bare, haproxy])])
            for what, args in (
                ("backend, keep-alive", [*bare, backend]),
                ("backend, Connection: close", [*bare, "-H", "Connection: close", backend]),
                ("backend, 100 KB", [*bare, f"{backend}?size=102400"]),
            ):
                for rep in range(1, reps + 1):
                    rows.append([rep, "bare wrk", what, _bare_wrk(stack, args)])
    print(f"bare wrk (wrk -t1 -c{CONNECTIONS} -d{SECONDS}s URL, no script) and the harness's "
          "wrk, one stack, interleaved:")  # fmt: skip
    print(tabulate([[*r[:3], f"{r[3]:.0f}"] for r in rows], ["rep", "load", "to", "req/s"]))
    med = {
        (load, to): statistics.median(r[3] for r in rows if (r[1], r[2]) == (load, to))
        for load, to in {(r[1], r[2]) for r in rows}
    }
    ratio = med["harness wrk", "haproxy"] / med["bare wrk", "haproxy"]
    print(f"median req/s through HAProxy: harness wrk {med['harness wrk', 'haproxy']:.0f}, "
          f"bare wrk {med['bare wrk', 'haproxy']:.0f}")  # fmt: skip
    alone = ", ".join(f"{to.removeprefix('backend, ')} {v:.0f}" for (load, to), v in
                      sorted(med.items()) if to.startswith("backend"))  # fmt: skip
    print(f"median req/s of bare wrk to the backend alone: {alone}")
    ok = ratio >= MIN_BARE_RATIO
    print(f"harness wrk / bare wrk through HAProxy {ratio * 100:.0f} % "
          f"(target >= {MIN_BARE_RATIO * 100:.0f} %): {'ok' if ok else 'below'}")  # fmt: skip
    return ok


def _harness_wrk(stack: Stack, item: runner.Prepared) -> float:
    """req/s of the harness's wrk generator: its command line as the cell runs it, its
    script's wrk.json read as a cell's is."""
    proc = stack.exec("client", *item.load_args, timeout=SECONDS + 60)
    if proc.returncode != 0:
        raise SystemExit(f"the harness's wrk exited {proc.returncode}: {proc.stderr.decode()}")
    return float(wrk.aggregated(item.folder / wrk.WRK_FILE)["rps"])


def _bare_wrk(stack: Stack, args: list[str]) -> float:
    """req/s that wrk printed ("Requests/sec: N") for ``args``, run in the client."""
    proc = stack.exec("client", *args, timeout=SECONDS + 60)
    out = proc.stdout.decode(errors="replace")
    found = re.search(r"^Requests/sec:\s+([0-9.]+)$", out, re.MULTILINE)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"bare {' '.join(args)} exited {proc.returncode}: {out[-2000:]}")
    return float(found.group(1))


if __name__ == "__main__":
    sys.exit(main())
