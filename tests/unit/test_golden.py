"""The golden comparison: `python -m harness report` on the recorded runs in tests/data
gives exactly the numbers recorded in tests/data/golden (results.csv, connections.csv,
verdicts.json, and every cell's metrics in results.json). A refactor must not change one
of them (issue 12). A change that is meant to change numbers regenerates them with
HARNESS_REGEN_GOLDEN=1 and says why in its commit."""

import json
import os
import shutil
from pathlib import Path

import pytest

from harness import cli

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = DATA / "golden"
RUNS = ["run-chunked-stall", "run-half-close-keepalive"]
FILES = ["results.csv", "connections.csv", "verdicts.json"]


def _metrics(run_dir: Path) -> dict[str, object]:
    return {r["cell"]: r.get("metrics") for r in json.loads((run_dir / "results.json").read_text())}


@pytest.mark.parametrize("run", RUNS)
def test_report_numbers_match_the_golden_ones(tmp_path, run):
    run_dir = tmp_path / "20261124T230400Z-golden"
    shutil.copytree(DATA / run, run_dir)
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    golden = GOLDEN / run
    if os.environ.get("HARNESS_REGEN_GOLDEN") == "1":
        golden.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, golden / name)
        (golden / "metrics.json").write_text(
            json.dumps(_metrics(run_dir), indent=1, sort_keys=True) + "\n"
        )
    for _ in ("computed", "kept"):  # a second report reuses the cached analysis and figures
        for name in FILES:
            assert (run_dir / name).read_text() == (golden / name).read_text(), name
        assert _metrics(run_dir) == json.loads((golden / "metrics.json").read_text())
        assert cli.main(["report", str(run_dir)]) in (0, 3)
