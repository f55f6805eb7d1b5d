"""`python -m harness publish`: one static site over every run of a results folder. No
Docker: the runs are copies of the recorded chunked-stall run (2.6.12 stalls 5 of 49)."""

import json
import shutil
from pathlib import Path

from harness import cli, results
from harness.report import site

RECORDED = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"


def _runs(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    for name in ("20261124T230400Z-a", "20261125T230400Z-b"):
        shutil.copytree(RECORDED, folder / name)
    assert cli.main(["report", str(folder / "20261124T230400Z-a")]) == 0
    return folder


def test_the_site_lists_every_run_and_every_version_measured(tmp_path, capsys):
    folder = _runs(tmp_path)
    assert cli.main(["publish", str(folder)]) == 0
    assert "site: " in capsys.readouterr().out
    index = (folder / "site" / "index.html").read_text()
    # newest first, the reported run linked to its report, relative to the site
    assert index.index("20261125T230400Z-b") < index.index("20261124T230400Z-a")
    assert 'href="../20261124T230400Z-a/report.html"' in index
    assert "verdicts: 0 regressions, 0 improvements, 0 small changes, 4 no change" in index
    scenarios = (folder / "site" / "scenarios.html").read_text()
    assert scenarios.count("<svg") == 1  # one scenario and parameter set in these runs
    rows = {
        line.split("</td>")[0].removeprefix("<tr><td>"): line
        for line in scenarios.splitlines()
        if line.startswith("<tr><td>")
    }
    assert set(rows) == {
        "2.2.9 (debian:bullseye)",
        "2.6.12 (debian:bookworm)",
        "3.0.11 (debian:trixie)",
    }
    # 5 of 49 stalled, in both runs: 2 runs, 2 cells, median 10.2 %
    assert "<td>2</td><td>2</td><td>10.2</td>" in rows["2.6.12 (debian:bookworm)"]
    assert json.loads((folder / "site" / "runs.json").read_text())[1]["has_html"] is True


def test_strings_from_run_folders_are_escaped_and_odd_folders_skipped(tmp_path):
    folder = _runs(tmp_path)
    run_b = folder / "20261125T230400Z-b"
    run = results.read_json(run_b / "run.json")
    run["matrix"]["description"] = "<script>alert(1)</script>"
    results.write_json(run_b / "run.json", run)
    cell = next(run_b.glob("*2.6.12*/cell.json"))
    record = results.read_json(cell)
    record["version"]["label"] = '2.6.12 <img src=x onerror="alert(2)">'
    results.write_json(cell, record)
    (folder / "not-a-run").mkdir()  # a folder whose name is no run id: not listed
    shutil.copytree(RECORDED, folder / "20261126T000000Z-broken")
    (folder / "20261126T000000Z-broken" / "run.json").write_text("{not json")

    site.publish(folder)
    pages = "".join((folder / "site" / p).read_text() for p in ("index.html", "scenarios.html"))
    assert "<script>alert" not in pages and "<img" not in pages
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages
    assert "not-a-run" not in pages
    assert "20261126T000000Z-broken" in pages and "unreadable" in pages


def test_a_missing_folder_exits_2(tmp_path, capsys):
    assert cli.main(["publish", str(tmp_path / "nowhere")]) == 2
    assert "no such folder of runs" in capsys.readouterr().err
