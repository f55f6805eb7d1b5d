"""The command line's planning options, which need no Docker: --dry-run, part of a matrix
(--scenario, --version), --param, --results, and several specs after one --haproxy.
That a --param reaches a real cell is tests/integration/test_foundation.py's."""

from pathlib import Path

import pytest

from harness import ROOT, cli, results, runner
from harness.analyse.record import RunManifest, write_run
from harness.errors import SpecError
from harness.plan import spec

DEFAULT = ROOT / "matrices" / "default.yaml"


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    monkeypatch.setattr(results, "RESULTS_DIR", folder)
    return folder


def _made(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_dry_run_lists_the_cells_and_starts_and_writes_nothing(results_dir, capsys):
    assert cli.main(["matrix", str(DEFAULT), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    plan = spec.load(DEFAULT, "20261129T000000Z-x")
    assert f"{len(plan.cells)} cell(s) on 3 version(s)" in err
    for cell in plan.cells:  # every cell, by the id a real run would give it
        assert cell.id.split("-", 1)[1] in out
    assert "nothing was started" in err
    assert _made(results_dir) == []


def test_dry_run_of_run_and_reproduce(results_dir, capsys):
    assert cli.main(["run", "--haproxy", "debian:bookworm", "--scenario", "smoke",
                     "--dry-run"]) == 0  # fmt: skip
    assert "1 cell(s) on 1 version(s)" in capsys.readouterr().err
    args = ["reproduce", "--a", "debian:bullseye", "--b", "debian:bookworm"]
    assert cli.main([*args, "--scenario", "half-close", "--repetitions", "2", "--dry-run"]) == 0
    assert "4 cell(s) on 2 version(s)" in capsys.readouterr().err
    assert _made(results_dir) == []


def test_part_of_a_matrix_keeps_the_baseline_and_is_what_run_json_records(results_dir):
    only = spec.Only(scenarios=("chunked-stall",), versions=("debian:trixie",))
    plan = spec.load(DEFAULT, "20261129T000000Z-x", only)
    assert {c.scenario for c in plan.cells} == {"chunked-stall"}
    # the baseline stays: without it no verdict could be given
    assert {c.version.text for c in plan.cells} == {"debian:bullseye", "debian:trixie"}
    assert plan.matrix.versions == ["debian:bullseye", "debian:trixie"]
    assert "--scenario chunked-stall --version debian:trixie" in plan.matrix.description
    # What run.json records expands to the same cells: --resume finishes the same part.
    again = spec.expand(plan.matrix.model_dump(), plan.cells[0].run_id)
    assert [c.id for c in again.cells] == [c.id for c in plan.cells]


def test_an_entry_limited_to_other_versions_drops_out(results_dir):
    # The default matrix's calibration entry runs on debian:bookworm only.
    plan = spec.load(DEFAULT, "20261129T000000Z-x", spec.Only(versions=("debian:trixie",)))
    assert "calibration" not in {c.scenario for c in plan.cells}
    with pytest.raises(SpecError, match="no entry of the matrix runs scenario calibration"):
        spec.load(DEFAULT, "20261129T000000Z-x", spec.Only(("calibration",), ("debian:trixie",)))


@pytest.mark.parametrize(
    "option, message",
    [
        (["--scenario", "half-closed"], "--scenario 'half-closed': "),
        (["--version", "debian:buster"], "--version 'debian:buster': "),
    ],
)
def test_a_part_the_matrix_does_not_have_exits_2(results_dir, capsys, option, message):
    assert cli.main(["matrix", str(DEFAULT), "--dry-run", *option]) == 2  # never runs
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and "has no such" in err
    assert _made(results_dir) == []


def test_resume_takes_no_part_options(results_dir, capsys, tmp_path):
    assert cli.main(["matrix", "--resume", str(tmp_path), "--scenario", "smoke"]) == 2
    assert "--resume finishes the part" in capsys.readouterr().err


def test_params_from_the_command_line_are_typed_like_a_matrix_file():
    given = ["connections=3", "tls=1.3", "keepalive=false", "timeout_client=5s", "port_range="]
    assert spec.param_options(given) == {
        "connections": 3,
        "tls": 1.3,
        "keepalive": False,
        "timeout_client": "5s",
        "port_range": "",
    }
    plan = spec.single("debian:bookworm", "half-close", "20261129T000000Z-x",
                       params=spec.param_options(["connections=3"]))  # fmt: skip
    assert plan.cells[0].params["connections"] == 3


@pytest.mark.parametrize(
    "param, message",
    [
        ("connections", "expected KEY=VALUE"),
        ("Connections=3", "expected KEY=VALUE"),
        ("../x=3", "expected KEY=VALUE"),
        ("timeout_client=5s\n  server x 1.2.3.4:80", "not an HAProxy time value"),
        ("timeout_client=5s;x", "not an HAProxy time value"),
        ("connections=1000000", "connections"),
        ("connections=[1, 2", "not a value a matrix file could hold"),
        ("nope=1", "has no parameter 'nope'"),
        ("timeout_client=" + "9" * 2000, "at most 1000"),
    ],
)
def test_a_bad_param_exits_2_naming_it(results_dir, capsys, param, message):
    # --dry-run: a value wrongly let through would be listed (exit 0), never run.
    argv = ["run", "--haproxy", "debian:bookworm", "--scenario", "half-close", "--dry-run"]
    assert cli.main([*argv, "--param", param]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert _made(results_dir) == []


def test_a_param_given_twice_is_refused():
    with pytest.raises(SpecError, match="--param connections is given twice"):
        spec.param_options(["connections=3", "connections=4"])


def test_results_option_chooses_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results, "RESULTS_DIR", results.RESULTS_DIR)  # restored afterwards
    chosen = tmp_path / "elsewhere"
    argv = ["--results", str(chosen), "report", str(chosen / "20261129T000000Z-none")]
    assert cli.main(argv) == 2  # no such run; but the folder option took effect
    assert chosen.absolute() == results.RESULTS_DIR


def test_several_specs_after_one_haproxy_option():
    args = cli._parser().parse_args(
        ["images", "--haproxy", "debian:bullseye", "debian:bookworm", "--haproxy", "source:2.6.12"]
    )
    assert args.haproxy == ["debian:bullseye", "debian:bookworm", "source:2.6.12"]


def test_resume_plan_of_a_partial_run_is_the_part(results_dir):
    only = spec.Only(scenarios=("half-close",))
    run_id = results.new_run_id("part")
    plan = spec.load(DEFAULT, run_id, only)
    manifest = RunManifest.model_validate({
        "run": run_id, "matrix": plan.matrix.model_dump(), "matrix_file": str(DEFAULT),
        "baseline": plan.matrix.versions[0], "cells": len(plan.cells), "started": "",
    }, strict=False)  # fmt: skip
    write_run(results.RESULTS_DIR / run_id / "run.json", manifest)
    resumed = runner.resume_plan(results.RESULTS_DIR / run_id)
    assert [c.id for c in resumed.cells] == [c.id for c in plan.cells]


def test_only_selects_cells_by_parameter_and_is_recorded(results_dir):
    given = spec.param_options(["tls=1.3"], "--only", ("half-close", "chunked-stall"))
    assert given == {"tls": "1.3"}  # typed as the scenarios take it, not the float 1.3
    plan = spec.load(DEFAULT, "20261129T000000Z-x", spec.Only(params=given))
    assert {(c.scenario, c.params["tls"]) for c in plan.cells} == {
        ("half-close", "1.3"),
        ("chunked-stall", "1.3"),
    }  # scenarios without a tls parameter are left out
    assert plan.matrix.select == {"tls": "1.3"}
    again = spec.expand(plan.matrix.model_dump(), plan.cells[0].run_id)
    assert [c.id for c in again.cells] == [c.id for c in plan.cells]


@pytest.mark.parametrize(
    "only, message",
    [
        ("nope=3", "no scenario of the matrix"),
        ("tls=2", "select / --only tls"),
        ("keepalive=maybe", "select / --only keepalive"),
    ],
)
def test_only_with_a_parameter_no_cell_has_exits_2(results_dir, capsys, only, message):
    assert cli.main(["matrix", str(DEFAULT), "--dry-run", "--only", only]) == 2
    assert message in capsys.readouterr().err


def test_only_that_matches_no_cell_says_so(results_dir, capsys):
    argv = ["matrix", str(DEFAULT), "--dry-run", "--scenario", "half-close", "--only", "size=7"]
    assert cli.main(argv) == 2  # half-close runs with size 128 and 100000 only
    assert "no cell of the matrix has size=7 (select / --only)" in capsys.readouterr().err


def test_json_of_a_dry_run(results_dir, capsys):
    import json

    argv = ["matrix", str(DEFAULT), "--dry-run", "--json", "--scenario", "chunked-stall"]
    assert cli.main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["cells"]) == 6
    assert {c["params"]["tls"] for c in document["cells"]} == {"off", "1.3"}
    assert document["bound_s"] == sum(c["bound_s"] for c in document["cells"]) > 0


def test_json_of_report_and_compare(tmp_path, capsys):
    import json
    import shutil

    recorded = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"
    a, b = tmp_path / "20261124T230400Z-a", tmp_path / "20261124T230500Z-b"
    shutil.copytree(recorded, a)
    shutil.copytree(recorded, b)
    assert cli.main(["report", str(a), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["tally"].startswith("verdicts: 0 regressions")
    assert [c["status"] for c in document["cells"]] == ["ok"] * 3
    assert {v["verdict"] for v in document["verdicts"]} == {"no significant change"}
    assert cli.main(["compare", str(a), str(b), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["verdicts"]) == 6 and document["only_a"] == document["only_b"] == []


def test_progress_start_lines_name_only_what_differs_from_the_defaults():
    plan = spec.single("debian:bookworm", "half-close", "20261129T000000Z-x",
                       params={"connections": 3})  # fmt: skip
    assert plan.cells[0].changed_params_text == "connections=3"
    plan = spec.single("debian:bookworm", "half-close", "20261129T000000Z-x")
    assert plan.cells[0].changed_params_text == "defaults"


def test_eta_scales_each_kind_of_cell_by_how_its_finished_cells_did(monkeypatch):
    import io

    from harness import progress as progress_module

    plan = spec.load(DEFAULT, "20261129T000000Z-x", spec.Only(versions=("debian:bookworm",)))
    probe1, probe2, load1 = plan.cells[0], plan.cells[1], plan.cells[2]
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    shown = progress_module.Progress(io.StringIO())
    # A probe's bound is a deadline it seldom needs (60 s bound, 6 s taken); a Locust
    # cell's bound is what it takes. Not one ratio for all: the Locust cell left is
    # still 14 s, the probe left 6 s.
    shown.start(3, {probe1.id: ("Probe", 60.0), probe2.id: ("Probe", 60.0),
                    load1.id: ("HttpLoad", 14.0)})  # fmt: skip
    now[0] = 6.0
    shown.done = 1  # as cell_end counts it before asking
    assert shown.eta_s(probe1, 6.0) == pytest.approx(6.0 + 14.0)
    # without bounds: the average cell
    now[0] = 0.0
    plain = progress_module.Progress(io.StringIO())
    plain.start(3)
    now[0] = 6.0
    plain.done = 1
    assert plain.eta_s(probe1, 6.0) == pytest.approx(12.0)
