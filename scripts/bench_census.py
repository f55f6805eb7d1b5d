"""The census's sampling rate with many connections held open (`make bench`, part "census").

Runs one cell per count (1,000 and 5,000 by default) of the backend-closes-first scenario
with its `hold` probe: every connection sends one request through HAProxy, reads the
response and stays open, idle, for ``hold_s``; the backend's and HAProxy's idle timeouts
are set above that, and HAProxy's maxconn above the count (its default of 4,096 would
queue the rest), so each count means that many client connections plus as many
HAProxy-to-backend ones in HAProxy's namespace. A bounded load: one request a
connection, between the cell's own containers only.

The rate is read from the census of HAProxy's namespace (census-haproxy.txt, written by
observers/census.sh, one ``ss`` + ``awk`` per sample): samples per second over the
samples that counted at least 95 % of the connections established, and the largest gap
between two of them. Exit 1 when the rate at the largest count is below ``--min-hz``
(the target: 5 Hz at 5,000), or when a count was never held (which is said, with the
peak reached).

    python scripts/bench_census.py [--counts 1000 5000] [--min-hz 5] [--version debian:bookworm]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.analyse import census  # noqa: E402

HELD_FRACTION = 0.95
HOLD_S = 8


def matrix(counts: list[int], version: str) -> str:
    """The bench's matrix file: one backend-closes-first cell per count."""
    entries = "".join(
        f"""  - name: backend-closes-first
    params:
      connections: {n}
      concurrency: {n}
      stagger_ms: 0
      hold_s: {HOLD_S}
      watch_s: 0.5
      backend_idle_ms: 120000
      haproxy_keepalive: 60s
      config: {{global: [maxconn {3 * n}], defaults: [maxconn {3 * n}]}}
"""
        for n in counts
    )
    return f"name: bench-census\nversions: [{version}]\nscenarios:\n{entries}"


def held_rate(path: Path, count: int) -> dict[str, object]:
    """Samples per second (and the largest gap, s) while ``count`` connections were held:
    over the samples whose ESTAB accepted by HAProxy was >= HELD_FRACTION of ``count``."""
    found = census.parse(path)
    estab = found.counts.get(("ESTAB", "in"), [0] * len(found.timestamps))
    peak = max(estab, default=0)
    held = [t for t, n in zip(found.timestamps, estab, strict=True) if n >= HELD_FRACTION * count]
    row: dict[str, object] = {"connections": count, "peak_estab_in": peak, "samples": len(held)}
    if len(held) >= 2:
        row["held_s"] = round(held[-1] - held[0], 2)
        row["rate_hz"] = round((len(held) - 1) / (held[-1] - held[0]), 2)
        row["max_gap_s"] = round(max(b - a for a, b in pairwise(held)), 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--min-hz", type=float, default=5.0)
    parser.add_argument("--version", default="debian:bookworm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench-census.yaml"
        spec.write_text(matrix(args.counts, args.version))
        cmd = [sys.executable, "-m", "harness", "--results-dir", tmp, "matrix", str(spec)]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        rows = []
        for cell_json in sorted(Path(tmp).glob("*/*/cell.json")):
            cell = json.loads(cell_json.read_text())
            row = held_rate(cell_json.parent / "census-haproxy.txt", cell["params"]["connections"])
            row["cell"] = cell["status"]
            rows.append(row)
    print(tabulate(rows, headers="keys"))
    failed = 0
    for row in rows:
        if row.get("rate_hz") is None:
            print(
                f"bench: {row['connections']} connections were never held "
                f"(HAProxy's census peaked at {row['peak_estab_in']} established)",
                file=sys.stderr,
            )
            failed = 1
    largest = max(rows, key=lambda r: r["connections"])  # type: ignore[arg-type, return-value]
    rate = largest.get("rate_hz")
    if rate is not None and rate < args.min_hz:  # type: ignore[operator]
        print(
            f"bench: census at {rate} Hz with {largest['connections']} connections, "
            f"below {args.min_hz:g} Hz",
            file=sys.stderr,
        )
        failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
