"""Per-cell overhead of finished runs: what each cell spent outside its load (`make bench`).

Usage: python scripts/cell_overhead.py [--max-s S] RUN_DIR [RUN_DIR ...]

A cell's wall time is cell.json's ``started`` to ``finished`` (the stack's start, the
load, collection, teardown and the cell's analysis); its load is timing.json's
``load_start`` to ``load_end`` (the Locust exec, Locust's own start-up included). The
overhead is the difference; "drain" is the wait inside it for the census to show the
load's connections closed (at most the scenario's drain_s), kept for the measurement.
With ``--max-s``, exits 1 when the median overhead is above it.
Reads files only: no Docker.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import datetime
from pathlib import Path


def cell_overhead(cell_dir: Path) -> dict[str, float] | None:
    """{"wall", "load", "overhead", "drain"} in seconds for one ok cell; None otherwise."""
    try:
        record = json.loads((cell_dir / "cell.json").read_text())
        timing = json.loads((cell_dir / "timing.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") != "ok" or "finished" not in record:
        return None
    wall = (
        datetime.fromisoformat(record["finished"]) - datetime.fromisoformat(record["started"])
    ).total_seconds()
    load = timing["load_end"] - timing["load_start"]
    drain = record.get("phases", {}).get("drain")
    if drain is None:
        drain = timing["drain_end"] - timing["load_end"]  # before phases: drain + counters
    return {"wall": wall, "load": load, "overhead": wall - load, "drain": drain}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--max-s", type=float, default=None)
    args = ap.parse_args()
    rows = []
    for run_dir in args.run_dirs:
        for cell_dir in sorted(p.parent for p in run_dir.glob("*/cell.json")):
            row = cell_overhead(cell_dir)
            if row is not None:
                rows.append(row)
                phases = json.loads((cell_dir / "cell.json").read_text()).get("phases")
                detail = " ".join(f"{k}={v:.2f}" for k, v in (phases or {}).items())
                print(f"{cell_dir.name}: overhead {row['overhead']:.2f} s  {detail}")
    if not rows:
        print("no ok cell found", file=sys.stderr)
        return 1
    median = statistics.median(r["overhead"] for r in rows)
    median_drain = statistics.median(r["overhead"] - r["drain"] for r in rows)
    print(
        f"per-cell overhead: median {median:.2f} s over {len(rows)} cell(s) "
        f"({median_drain:.2f} s without the drain)"
    )
    if args.max_s is not None and median > args.max_s:
        print(f"bench: per-cell overhead {median:.2f} s is above {args.max_s:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
