"""publish.rebuild on a run recorded from a real default-matrix run (chunked-stall, three
versions): every number in the outputs must trace back to the raw files beside them."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from harness.analyse import calibration, wire
from harness.plan.ports import FRONTEND_PORTS as PORTS
from harness.report import rebuild
from harness.report import tables as report
from tests import records

RECORDED = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    target = results / "20261124T230400Z-default"
    shutil.copytree(RECORDED, target)
    rebuild.rebuild(target)  # no Docker: the run folder alone
    return target


def _stalled_sizes(run_dir: Path, version: str) -> list[int]:
    [folder] = [p for p in run_dir.iterdir() if version in p.name]
    samples = [json.loads(line) for line in (folder / "probe.jsonl").read_text().splitlines()]
    # a stall: the response stopped, and the proxy ignored the client's FIN (>= 500 ms)
    return sorted(
        s["sweep"]["chunk_size"]
        for s in samples
        if s["stalled_at"] is not None and (s["delay_ms"] is None or s["delay_ms"] >= 500)
    )


def test_stalls_in_the_report_are_the_stalls_in_probe_jsonl(run_dir):
    text = (run_dir / "report.md").read_text()
    stalled = _stalled_sizes(run_dir, "2.6.12")
    assert (
        stalled and not _stalled_sizes(run_dir, "2.2.9") and not _stalled_sizes(run_dir, "3.0.11")
    )
    row = next(line for line in text.splitlines() if line.startswith("| 2.6.12 (debian:bookworm)"))
    assert f"| {len(stalled)}/49 " in row
    assert ", ".join(map(str, stalled)) in row
    assert text.count("STALL ") == len(stalled)  # one per stalled chunk size in the sweep table
    # Intended change: the sweep table counts stalled/total per size, and by default shows
    # only the sizes where the versions differ.
    for size in stalled:
        assert re.search(rf"^\|\s+{size} \| 0/1 +\| STALL 1/1: \d+ B, ", text, re.M)
    assert f"{49 - len(stalled)} of 49 chunk sizes left out" in text
    for other in ("2.2.9 (debian:bullseye)", "3.0.11 (debian:trixie)"):
        line = next(line for line in text.splitlines() if line.startswith(f"| {other}"))
        assert "| 0/49 " in line and "| none " in line


def test_verdict_words_carry_the_counts_and_the_test(run_dir):
    text = (run_dir / "report.md").read_text()
    stalled = len(_stalled_sizes(run_dir, "2.6.12"))
    line = next(line for line in text.splitlines() if line.startswith("- 2.6.12"))
    # Intended change (issue 11): only the parameters that vary between cells are named;
    # every chunked-stall cell here has the same parameters, so none is.
    assert line.startswith("- 2.6.12 (debian:bookworm) vs 2.2.9 (debian:bullseye): chunked-stall: ")
    assert "bufsize=" not in line
    assert f"{stalled}/49 connections stalled" in line and "vs 0/49" in line
    assert "Fisher exact p=" in line
    verdicts = json.loads((run_dir / "verdicts.json").read_text())
    # Intended change: how connections ended has its own verdict (all FIN here).
    assert sorted(v["metric"] for v in verdicts) == [
        "chunked-stall connections stalled", "chunked-stall connections stalled",
        "chunked-stall ends", "chunked-stall ends",
    ]  # fmt: skip
    assert {v["candidate_label"] for v in verdicts} == {
        "2.6.12 (debian:bookworm)",
        "3.0.11 (debian:trixie)",
    }


def test_flags_are_those_of_the_log_and_explained(run_dir):
    text = (run_dir / "report.md").read_text()
    log = (next(run_dir.glob("*2.6.12*")) / "haproxy.log").read_text()
    line = next(line for line in text.splitlines() if line.startswith("- `sD--`"))
    assert line.startswith(f"- `sD--` ({log.count(' sD-- ')}×): ")
    assert "server-side timeout" in line


def test_machine_readable_outputs_point_at_existing_raw_files(run_dir):
    rows = list(csv.DictReader((run_dir / "results.csv").open()))
    assert [r["version_label"] for r in rows] == [
        "2.2.9 (debian:bullseye)", "2.6.12 (debian:bookworm)", "3.0.11 (debian:trixie)",
    ]  # fmt: skip
    for record in json.loads((run_dir / "results.json").read_text()):
        assert "probe.jsonl" in " ".join(record["raw_files"])
        assert all((run_dir / f).exists() for f in record["raw_files"])
    assert "20261124T230400Z-default" in (run_dir.parent / "index.md").read_text()
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and "<script" not in html


def test_report_opens_with_the_verdicts(run_dir):
    # Issue 11 point 2: the tally and the verdicts come before any per-cell table.
    text = (run_dir / "report.md").read_text()
    lines = text.splitlines()
    assert lines[2] == (
        "**verdicts: 0 regressions, 0 improvements, 0 small changes, 4 no change** "
        "(against `debian:bullseye`)"
    )
    assert text.index("No significant change: 4 comparisons") < text.index("## chunked-stall")
    index = (run_dir.parent / "index.md").read_text()
    assert "verdicts: 0 regressions, 0 improvements, 0 small changes, 4 no change" in index


def _agreeing(folder: Path) -> tuple[int, int, float]:
    """From the raw files alone: (within tolerance, compared, worst |probe - wire| ms)."""
    samples = [json.loads(line) for line in (folder / "probe.jsonl").read_text().splitlines()]
    closes = {c.client_port: c for c in wire.close_delays(folder / "haproxy.pcap", PORTS)}
    diffs = [
        abs(s["delay_ms"] - closes[s["src_port"]].delay_ms)
        for s in samples
        if s["delay_ms"] is not None and closes[s["src_port"]].delay_ms is not None
    ]
    within = sum(d <= calibration.WIRE_TOLERANCE_MS for d in diffs)
    return within, len(diffs), max(diffs)


def test_each_probe_cell_says_how_many_delays_agree_with_the_wire(run_dir):
    text = (run_dir / "report.md").read_text()
    header = f"probe≈wire ≤{calibration.WIRE_TOLERANCE_MS:g} ms"
    assert header in text
    rows = {r["cell"]: r for r in csv.DictReader((run_dir / "results.csv").open())}
    seen = []
    for folder in sorted(p for p in run_dir.iterdir() if (p / "probe.jsonl").exists()):
        within, compared, worst = _agreeing(folder)
        seen.append((within, compared))
        # The recorded cells are the noisy case: 20 chunked readers at once, so the
        # count must be read, not assumed (each cell has misses, none is all misses).
        assert 0 < within < compared
        cell = json.loads((folder / "cell.json").read_text())["metrics"]["probe_vs_wire"]
        assert (cell["within_tolerance"], cell["compared"]) == (within, compared)
        assert f"| {within}/{compared} (max {report._ms(worst)}) |" in text
        row = rows[folder.name]
        assert int(row["probe_wire_within_tolerance"]) == within
        assert int(row["probe_wire_compared"]) == compared
        assert float(row["probe_wire_max_diff_ms"]) == pytest.approx(worst)
    assert seen == [(23, 49), (28, 49), (23, 49)]


def test_agreement_column_is_a_dash_when_nothing_was_timed_on_both_sides():
    # backend-closes-first: the proxy closes first, so the wire has no close delay
    record = records.make({"metrics": {"probe_vs_wire": {
        "compared": 0, "within_tolerance": 0, "abs_diff_ms": {"max": None}}}})  # fmt: skip
    assert report._probe_vs_wire(record) == "-"
    assert report._probe_vs_wire(records.make({"metrics": {}})) == "-"
    for scenario in ("half-close", "chunked-stall", "backend-closes-first"):
        assert report.CATALOGUE["agree"] in report.columns(scenario)


def test_config_lines_are_shown_under_their_parameters():
    config_lines = report.config_lines
    assert config_lines({"size": 128}) == []
    params = {"config": {"backend": ["option abortonclose", "retries 3"],
                         "global": ["nbthread 2"]}}  # fmt: skip
    text = "\n".join(config_lines(params))
    assert (
        "```\nglobal\n    nbthread 2\nbackend\n    option abortonclose\n    retries 3\n```" in text
    )


def test_connect_timeout_table_shows_the_queue_connect_and_total_timers():
    # A 503 after timeout connect: Tc never happened (-1 in the log, so no Tc sample),
    # and the retries' time is visible only in Ta (issue: Tc alone showed "-").
    timers = {"Tw": {"count": 3, "p50": 0}, "Ta": {"count": 3, "p50": 402}}
    record = records.make({
        "scenario": "connect-timeout", "status": "ok",
        "metrics": {"haproxy": {"total": 3, "termination_states": {"sC--": 3},
                                "timers": timers}},
    })  # fmt: skip
    cells = {name: fn(record) for name, fn in report.columns("connect-timeout")}
    assert cells["Tw p50"] == report._ms(0)
    assert cells["Tc p50"] == "-"
    assert cells["Ta p50"] == report._ms(402)
