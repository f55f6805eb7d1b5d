"""The load generators side by side (`make bench`, part "generators").

Runs the same keep-alive cell (keepalive-vs-close, 128 B, 20 connections, 5 s) with
Locust (one process, and distributed over 2 worker processes) and with wrk, through
HAProxy and straight to the backend, interleaved (Locust, Locust x2, wrk, Locust, ...)
so the host's noise falls on all alike, REPS times each. Prints
req/s per run and the medians' ratios: how much of HAProxy's pace Locust hides, and
whether wrk had headroom (client-bound per the cell's own CPU measurement).

    python scripts/bench_generators.py [--reps 3] [--version debian:bookworm]

Exit 1 when wrk's median through HAProxy is below MIN_RATIO times Locust's: the native
generator would not be lifting the client's limit it exists to lift. "client-bound" and
"host saturated" are the cells' own flags (harness/analyse/cell_metrics.py): on a
saturated 2-core host a generator starved of CPU is flagged client-bound too, however
little it used, so read them with its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
MIN_RATIO = 1.5
LOADS = {
    "locust": ["--generator", "locust"],
    "locust-2w": ["--generator", "locust", "--workers", "2"],
    "wrk": ["--generator", "wrk"],
}


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
            for via in ("haproxy", "backend"):
                for generator in LOADS:
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
    alone = {g: med[g, "backend"] for g in LOADS}
    print(f"median req/s to the backend alone: Locust {alone['locust']:.0f}, "
          f"Locust x2 {alone['locust-2w']:.0f}, wrk {alone['wrk']:.0f}")  # fmt: skip
    bound = sum(bool(g["client_bound"]) for g in by["wrk", "haproxy"])
    print(f"wrk through HAProxy flagged client-bound in {bound} of {args.reps} runs")
    ok = wrk >= MIN_RATIO * locust
    print(f"wrk/Locust through HAProxy {wrk / locust:.2f}x (target >= {MIN_RATIO}x): "
          f"{'ok' if ok else 'below'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
