"""Tables across cells (tabulate), built from the run folder alone: no Docker needed."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from harness import results


def _codes(counts: dict[str, int]) -> str:
    return " ".join(f"{code}×{n}" for code, n in sorted(counts.items())) or "-"


def cell_row(record: dict[str, Any]) -> list[Any]:
    version = record["version"]["label"]
    params = " ".join(f"{k}={v}" for k, v in sorted(record["params"].items()))
    if record.get("status") != "ok":
        return [version, params, "failed", "", "", "", record.get("error", "").splitlines()[0], ""]
    load = record["metrics"]["load"]
    hx = record["metrics"]["haproxy"]
    return [
        version,
        params,
        f"{load['rps']:.0f}",
        load["p50_ms"],
        load["p99_ms"],
        f"{load['failures']}/{load['requests']}",
        _codes(hx["status_codes"]),
        _codes(hx["termination_states"]),
    ]


HEADERS = [
    "HAProxy",
    "parameters",
    "req/s",
    "p50 ms",
    "p99 ms",
    "failures",
    "status (haproxy log)",
    "flags",
]


def tables(records: list[dict[str, Any]], fmt: str = "github") -> str:
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_scenario[record["scenario"]].append(record)
    parts = []
    for scenario, rows in by_scenario.items():
        load = rows[0]["load"]
        parts.append(
            f"### {scenario}\n\nLoad: {load['mode']}, {load['users']} users, "
            f"{load['duration_s']:g} s per cell (Locust).\n"
        )
        parts.append(tabulate([cell_row(r) for r in rows], HEADERS, tablefmt=fmt))
        parts.append("")
    return "\n".join(parts)


def write(run_dir: Path) -> str:
    """Rebuild report.md from the cell.json files; return its text."""
    records = results.cells(run_dir)
    text = f"# Run {run_dir.name}\n\n{tables(records)}"
    (run_dir / "report.md").write_text(text)
    return text
