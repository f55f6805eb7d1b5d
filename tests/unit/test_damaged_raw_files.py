"""A raw file of a run folder someone sent, edited or damaged: `report` names the cell's
folder and where the parser tripped (exit 2), never "run.json (or a file beside it)"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.analyse.record import load_cell
from harness.errors import HarnessError
from harness.report import rebuild

DATA = Path(__file__).resolve().parents[1] / "data"
CELLS = [
    DATA / "run-half-close-keepalive" / "001-half-close-2.2.9-debian-bullseye-fd300d-r1",
    DATA / "run-half-close-keepalive" / "003-keepalive-vs-close-2.2.9-debian-bullseye-17b307-r1",
]
# What a careless edit leaves: not JSON, JSON of the wrong shape, a line of another format.
GARBAGE = ["[", "{}", '{"port": 1e999}\n', "x,y\n1,2\n"]


@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize("source", CELLS, ids=lambda p: p.name[:20])
def test_every_damaged_raw_file_is_named_by_its_cell(tmp_path, source, garbage):
    for raw in sorted(p.name for p in source.iterdir() if p.name != "cell.json"):
        folder = Path(shutil.copytree(source, tmp_path / raw / source.name))
        (folder / raw).write_text(garbage)
        cell = load_cell(folder / "cell.json")
        try:
            rebuild._compute((cell, folder))
        except HarnessError as err:
            said = str(err)
            assert said.startswith(f"{folder}: a raw file of this cell"), (raw, said)
            assert " at harness/" in said, (raw, said)
        # anything else (a traceback) fails the test: a parser let it through


def test_report_exits_2_naming_the_cell(tmp_path, capsys):
    run_dir = Path(shutil.copytree(DATA / "run-half-close-keepalive", tmp_path / "run"))
    (run_dir / CELLS[0].name / "timing.json").write_text("[")
    assert cli.main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert str(run_dir / CELLS[0].name) in err and "reading timing.json" in err
    assert "beside it" not in err and "Traceback" not in err
