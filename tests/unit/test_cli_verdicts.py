"""The verdicts on the terminal: the one-line tally on stderr, and --fail-on's exit status
for CI (3: distinct from 1, failed cells, and 2, bad input). No Docker: the run is the
recorded one in tests/data, reported again (``report --fail-on``); the same decision
ends matrix and reproduce, whose real runs tests/integration/test_reproduce.py gates."""

import shutil
from pathlib import Path

import pytest

from harness import cli, results

RECORDED = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"


def _run(tmp_path: Path, alpha: float | None = None) -> Path:
    run_dir = tmp_path / "20261124T230400Z-default"
    shutil.copytree(RECORDED, run_dir)
    if alpha is not None:
        # 5/49 stalled against 0/49 is p=0.056: a regression at alpha 0.1, not at 0.01.
        run = results.read_json(run_dir / "run.json")
        run["matrix"]["verdicts"] = {**run["matrix"].get("verdicts", {}), "alpha": alpha}
        results.write_json(run_dir / "run.json", run)
    return run_dir


def _report(run_dir: Path, *extra: str) -> int:
    # The verdicts of a finished run, exactly as matrix and reproduce end theirs.
    return cli.main(["report", str(run_dir), *extra])


@pytest.mark.parametrize("fail_on", ["regression", "change"])
def test_fail_on_exits_3_when_a_verdict_matches(tmp_path, capsys, fail_on):
    run_dir = _run(tmp_path, alpha=0.1)
    assert _report(run_dir, "--fail-on", fail_on) == cli.EXIT_VERDICT == 3
    err = capsys.readouterr().err
    assert "verdicts: 1 regression, 0 improvements, 0 small changes, 3 no change" in err
    assert f"--fail-on {fail_on} matched 1 verdict(s): regression" in err


def test_without_fail_on_a_regression_exits_0_with_the_tally(tmp_path, capsys):
    assert _report(_run(tmp_path, alpha=0.1)) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "verdicts: 1 regression, 0 improvements, 0 small changes, 3 no change"


def test_fail_on_passes_when_nothing_changed(tmp_path, capsys):
    assert _report(_run(tmp_path), "--fail-on", "change") == 0
    assert "verdicts: 0 regressions, 0 improvements, 0 small changes, 4 no change" in (
        capsys.readouterr().err
    )


def test_report_prints_the_tally_last(tmp_path, capsys):
    assert cli.main(["report", str(_run(tmp_path))]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "verdicts: 0 regressions, 0 improvements, 0 small changes, 4 no change"


def test_fail_on_takes_only_its_two_values():
    parser = cli._parser()
    assert parser.parse_args(["reproduce", "--a", "x", "--b", "y", "--scenario", "smoke",
                              "--fail-on", "change"]).fail_on == "change"  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["matrix", "--fail-on", "anything"])
    assert exit_.value.code == 2
