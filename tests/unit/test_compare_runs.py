"""`python -m harness compare RUN_A RUN_B`: cells matched across two runs get the verdicts
one run gives a candidate against its baseline. No Docker: the runs are the recorded
chunked-stall run in tests/data (2.2.9 stalls 0/49, 2.6.12 5/49), copied and altered."""

import json
import shutil
from pathlib import Path

import pytest

from harness import cli, results
from harness.analyse.record import RecordError, cells
from harness.report import compare_runs
from harness.report import tables as report

RECORDED = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"
OLD = "008-chunked-stall-2.2.9-debian-bullseye-5d2a4b-r1"
NEW = "009-chunked-stall-2.6.12-debian-bookworm-5d2a4b-r1"


def _copy(tmp_path: Path, name: str, alpha: float = 0.1) -> Path:
    run_dir = tmp_path / name
    shutil.copytree(RECORDED, run_dir)
    # 5/49 stalled against 0/49 is p=0.056: a regression at alpha 0.1, not at 0.01.
    run = results.read_json(run_dir / "run.json")
    run["matrix"]["verdicts"] = {**run["matrix"].get("verdicts", {}), "alpha": alpha}
    results.write_json(run_dir / "run.json", run)
    return run_dir


def _with_raw_files_of(run_dir: Path, cell: str, source: str) -> None:
    """The cell keeps its record (version, scenario, parameters), measures what `source` did."""
    for path in (run_dir / source).iterdir():
        if path.name != "cell.json":
            shutil.copy(path, run_dir / cell / path.name)


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_a_run_against_a_copy_of_itself_changes_nothing(tmp_path):
    a, b = _copy(tmp_path, "20261124T230400Z-a"), _copy(tmp_path, "20261124T230500Z-b")
    outcome = compare_runs.compare(a, b)
    assert len(outcome.found) == 6  # 3 versions × (stalled connections, end types)
    assert {c.verdict for c in outcome.found} == {"no significant change"}
    assert outcome.only_a == outcome.only_b == outcome.notes == []


def test_the_same_verdict_as_inside_one_run(tmp_path):
    a, b = _copy(tmp_path, "20261124T230400Z-a"), _copy(tmp_path, "20261124T230500Z-b")
    # In B, 2.2.9's cell measured what 2.6.12 measured in A: run B's 2.2.9 regressed
    # against run A's exactly as 2.6.12 against 2.2.9 inside run A.
    _with_raw_files_of(b, OLD, NEW)
    before = _files(a) | {f"b/{k}": v for k, v in _files(b).items()}
    outcome = compare_runs.compare(a, b)
    after = _files(a) | {f"b/{k}": v for k, v in _files(b).items()}
    assert before == after  # both folders are read, never written

    stalled = [c for c in outcome.found if c.metric.endswith("connections stalled")]
    moved = next(c for c in stalled if c.candidate_label.startswith("2.2.9"))
    assert moved.verdict == "regression"
    assert moved.baseline_label == "2.2.9 (debian:bullseye) [A]"
    assert moved.candidate_label == "2.2.9 (debian:bullseye) [B]"
    assert {c.verdict for c in stalled if c is not moved} == {"no significant change"}

    records = [c for c in cells(a) if c.ok]
    inside = report.comparisons(a, records, "debian:bullseye", compare_runs.Thresholds(alpha=0.1))
    in_run = next(c for c in inside if c.metric.endswith("connections stalled")
                  and c.candidate_label.startswith("2.6.12"))  # fmt: skip
    assert (moved.p_value, moved.effect, moved.verdict) == (
        in_run.p_value,
        in_run.effect,
        in_run.verdict,
    )


def test_cells_in_only_one_run_are_listed_not_compared(tmp_path):
    a, b = _copy(tmp_path, "20261124T230400Z-a"), _copy(tmp_path, "20261124T230500Z-b")
    shutil.rmtree(b / NEW)
    record = results.read_json(a / OLD / "cell.json")
    record["params"] = {**record["params"], "per_size": 99}  # other parameters: no match
    results.write_json(a / OLD / "cell.json", record)
    outcome = compare_runs.compare(a, b)
    assert [c.candidate_label for c in outcome.found if c.metric.endswith("stalled")] == [
        "3.0.11 (debian:trixie) [B]"
    ]
    assert len(outcome.only_a) == 2 and len(outcome.only_b) == 1
    assert any("2.6.12" in c for c in outcome.only_a)
    assert any("2.2.9" in c and "per_size=99" in c for c in outcome.only_a)
    assert "2.2.9" in outcome.only_b[0] and "per_size=10" not in outcome.only_b[0]
    text = compare_runs.markdown(outcome)
    assert "### Only in run A (not compared)" in text and "### Only in run B" in text


def _ends_reset(folder: Path) -> None:
    """Every probe connection of the cell ended with a RST instead of its FIN."""
    lines = (folder / "probe.jsonl").read_text().splitlines()
    samples = [{**json.loads(line), "end": "rst"} for line in lines]
    (folder / "probe.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def test_each_run_is_read_from_its_own_cells(tmp_path):
    a, b = _copy(tmp_path, "20261124T230400Z-a"), _copy(tmp_path, "20261124T230500Z-b")
    _ends_reset(b / OLD)
    ends = [c for c in compare_runs.compare(a, b).found if c.metric.endswith("ends")]
    assert [c.verdict for c in ends if c.candidate_label.startswith("2.2.9")] == ["changed"]
    assert {c.verdict for c in ends if not c.candidate_label.startswith("2.2.9")} == {
        "no significant change"
    }


def test_a_record_naming_another_folder_is_refused(tmp_path):
    # it was read from its own folder; every verb now refuses it alike, as `report` must
    # (tests/unit/test_record.py: test_a_cell_json_naming_another_folder_is_refused)
    a, b = _copy(tmp_path, "20261124T230400Z-a"), _copy(tmp_path, "20261124T230500Z-b")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(RECORDED / OLD, elsewhere)
    _ends_reset(elsewhere)  # must not be what B's 2.2.9 shows
    record = results.read_json(b / OLD / "cell.json")
    record["cell"] = "../elsewhere"  # run_dir / cell = tmp_path/elsewhere
    results.write_json(b / OLD / "cell.json", record)
    with pytest.raises(RecordError, match="lies in the folder"):
        compare_runs.compare(a, b)


def test_differing_load_settings_are_said(tmp_path):
    a, b = _copy(tmp_path, "20261124T230400Z-a"), _copy(tmp_path, "20261124T230500Z-b")
    run = results.read_json(b / "run.json")
    run["matrix"]["load"] = {**(run["matrix"].get("load") or {}), "duration_s": 99}
    results.write_json(b / "run.json", run)
    assert any("load settings differ" in n for n in compare_runs.compare(a, b).notes)


def test_cli_fail_on_regression_exits_3(tmp_path, capsys):
    a, b = _copy(tmp_path, "20261124T230400Z-a"), _copy(tmp_path, "20261124T230500Z-b")
    _with_raw_files_of(b, OLD, NEW)
    assert cli.main(["compare", str(a), str(b), "--fail-on", "regression"]) == cli.EXIT_VERDICT
    out, err = capsys.readouterr()
    assert "### Regressions, improvements and changes" in out
    assert "2.2.9 (debian:bullseye) [B] vs 2.2.9 (debian:bullseye) [A]" in out
    assert err.splitlines()[-2].startswith("verdicts: 1 regression")
    assert cli.main(["compare", str(a), str(a), "--fail-on", "change"]) == 0


@pytest.mark.parametrize("damage", ["not a run", "broken cell"])
def test_bad_folders_exit_2_with_a_message(tmp_path, capsys, damage):
    a, b = _copy(tmp_path, "20261124T230400Z-a"), _copy(tmp_path, "20261124T230500Z-b")
    if damage == "not a run":
        (b / "run.json").unlink()
    else:
        (b / OLD / "cell.json").write_text(json.dumps({"status": "ok", "version": 3}))
    assert cli.main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_cells_measured_under_different_loads_are_listed_not_judged(tmp_path):
    # The same version, scenario and parameters, but run B drove its load cells with wrk:
    # a latency from wrk against one from Locust is no verdict about HAProxy. Probe cells
    # (their load is their probe) are still compared.
    mixed = Path(__file__).resolve().parents[1] / "data" / "run-half-close-keepalive"
    a, b = tmp_path / "20261124T230400Z-a", tmp_path / "20261124T230500Z-b"
    shutil.copytree(mixed, a)
    shutil.copytree(mixed, b)
    changed = 0
    for path in b.glob("*/cell.json"):
        cell = json.loads(path.read_text())
        if cell["load"]["mode"] != "probe":
            cell["load"] |= {"generator": "wrk", "threads": 1}
            path.write_text(json.dumps(cell))
            changed += 1
    assert changed
    outcome = compare_runs.compare(a, b)
    assert outcome.found and all(c.metric.startswith("half-close") for c in outcome.found)
    assert len(outcome.only_a) == len(outcome.only_b) == changed
    assert all("locust closed-loop" in cell for cell in outcome.only_a)
    assert all("wrk closed-loop" in cell for cell in outcome.only_b)


def test_h2load_cells_at_different_streams_per_connection_are_not_judged(tmp_path):
    # 10 requests in flight per connection is another load than 1: its latency no verdict
    mixed = Path(__file__).resolve().parents[1] / "data" / "run-half-close-keepalive"
    a, b = tmp_path / "20261124T230400Z-a", tmp_path / "20261124T230500Z-b"
    for run, streams in ((a, 1), (b, 10)):
        shutil.copytree(mixed, run)
        for path in run.glob("*/cell.json"):
            cell = json.loads(path.read_text())
            if cell["load"]["mode"] != "probe":
                cell["load"] |= {"generator": "h2load", "threads": 1, "streams": streams}
                path.write_text(json.dumps(cell))
    outcome = compare_runs.compare(a, b)
    assert outcome.only_a and all("h2load closed-loop" in c for c in outcome.only_a)
    assert all(", 1 streams" in c for c in outcome.only_a)
    assert all(", 10 streams" in c for c in outcome.only_b)
