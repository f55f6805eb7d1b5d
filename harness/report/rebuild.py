"""Publish a run: recompute its cells from their raw files, then write every output.

The one place that writes both report.md (``tables``) and report.html (``plots``), so
neither of those imports the other the wrong way: rebuild -> plots -> tables.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness import results
from harness.analyse import cell_metrics
from harness.analyse.compare import Thresholds
from harness.report import plots, tables, tidy


def rebuild(run_dir: Path) -> str:
    """Recompute every cell from its raw files, then write every output; return report.md."""
    run = results.read_json(run_dir / "run.json")
    records = []
    for path in sorted(run_dir.glob("*/cell.json")):
        record = results.read_json(path)
        if record.get("status") == "ok":
            record["metrics"] = cell_metrics.compute(path.parent, record.get("target", "haproxy"))
            results.write_json(path, record)
        records.append(record)
    thresholds = Thresholds(**run.get("matrix", {}).get("verdicts", {}))
    found = tables.comparisons(run_dir, records, run.get("baseline") or "", thresholds)
    text = tables.markdown(run_dir, records, found, run)
    (run_dir / "report.md").write_text(text)
    results.write_json(run_dir / "verdicts.json", [dataclasses.asdict(c) for c in found])
    tidy.write(run_dir, tables.unique_labels(records))  # one version label per spec
    results.write_json(
        run_dir / "results.json",
        [{**r, "raw_files": tables.raw_files(run_dir, r)} for r in records],
    )
    (run_dir / "report.html").write_text(plots.html_report(run_dir, records, found, run, text))
    tables.write_index(run_dir.parent)
    return text
