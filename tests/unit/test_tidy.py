"""results.csv and connections.csv load in pandas as a notebook would: no string
splitting, numbers as numbers, one column per parameter and per metric. No Docker: the
recorded chunked-stall run in tests/data, rebuilt (2.6.12 stalls 5 of 49)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness import cli
from harness.report import tidy

RECORDED = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "20261124T230400Z-default"
    shutil.copytree(RECORDED, run_dir)
    assert cli.main(["report", str(run_dir)]) == 0
    return run_dir


def test_results_csv_has_a_column_per_parameter_and_metric(run_dir):
    cells = pd.read_csv(run_dir / "results.csv")
    assert len(cells) == 3
    assert set(tidy.CELL_COLUMNS) <= set(cells.columns)
    assert {"param_tls", "param_chunk_min", "param_chunk_max", "param_size"} <= set(cells.columns)
    assert "params" not in cells.columns and "flags" not in cells.columns
    assert cells["param_size"].dtype.kind == "i" and (cells["param_size"] == 50000).all()
    assert cells["stalled"].dtype.kind == "i"
    assert cells.set_index("version")["stalled"].to_dict() == {
        "debian:bullseye": 0,
        "debian:bookworm": 5,
        "debian:trixie": 0,
    }
    assert cells["close_delay_p50_ms"].dtype.kind == "f"
    flags = [c for c in cells.columns if c.startswith("flag_")]
    assert flags and all(cells[c].fillna(0).dtype.kind in "if" for c in flags)
    # the flag counts add up to the log lines of each cell
    assert (cells[flags].fillna(0).sum(axis=1) == cells["log_lines"]).all()


def test_connections_csv_is_one_row_per_probe_connection(run_dir):
    rows = pd.read_csv(run_dir / "connections.csv")
    samples = [
        json.loads(line)
        for path in sorted(run_dir.glob("*/probe.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert len(rows) == len(samples) == 147
    assert set(tidy.CONNECTION_COLUMNS) <= set(rows.columns)
    assert rows["stalled"].dtype == bool and rows["delay_ms"].dtype.kind == "f"
    assert rows["sweep_chunk_size"].dtype.kind == "i"
    stalled = rows[rows["stalled"]]
    assert set(stalled["version"]) == {"debian:bookworm"} and len(stalled) == 5
    # a notebook's question, answered without parsing a string: stalls per chunk size
    per_size = rows.groupby(["version", "sweep_chunk_size"])["stalled"].sum()
    assert per_size.loc["debian:bookworm"].sum() == 5
    assert rows["flag"].notna().all()  # every connection joined to its log line
