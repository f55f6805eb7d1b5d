"""The typed cell record and run manifest (harness/analyse/record.py): what the harness
wrote reads back unchanged; an older record is migrated; an edited or hostile one is
refused with a message naming the file and the key, never a traceback."""

import json
import os
import shutil
from pathlib import Path

import pytest

from harness import ROOT, cli, results
from harness.analyse import record
from harness.analyse.record import CellRecord, RecordError
from harness.plan import spec

DATA = Path(__file__).resolve().parents[1] / "data"
CELLS = sorted(DATA.glob("*/*/cell.json"))
STALL = DATA / "run-chunked-stall" / "009-chunked-stall-2.6.12-debian-bookworm-5d2a4b-r1"


@pytest.mark.parametrize("path", CELLS, ids=lambda p: p.parent.name)
def test_every_recorded_cell_reads_back_as_written(path):
    migrated = record.migrate(json.loads(path.read_text()))
    assert json.loads(record.dump(record.load_cell(path))) == migrated


def test_an_older_record_is_migrated_to_typed_sweep_points():
    old = json.loads((STALL / "cell.json").read_text())
    assert "schema_version" not in old and "chunk_size=32" in old["metrics"]["probe"]["by_sweep"]
    cell = record.load_cell(STALL / "cell.json")
    assert cell.schema_version == 1
    points = {p.value: p for p in cell.m.probe.sweep}
    assert points[32].name == "chunk_size" and isinstance(points[32].value, int)
    assert points[32].stalled == old["metrics"]["probe"]["by_sweep"]["chunk_size=32"]["stalled"]
    assert cell.m.probe_vs_wire.within_tolerance == old["metrics"]["probe_vs_wire"]["within_2ms"]


def test_written_records_round_trip(tmp_path):
    cell = record.load_cell(STALL / "cell.json")
    record.write_cell(tmp_path / "cell.json", cell)
    text = (tmp_path / "cell.json").read_text()
    assert json.loads(text)["schema_version"] == 1
    assert record.load_cell(tmp_path / "cell.json") == cell


def _edited(tmp_path: Path, edit) -> Path:
    data = record.migrate(json.loads((STALL / "cell.json").read_text()))
    edit(data)
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(data))
    return path


HOSTILE = {
    "string for a number": (
        lambda d: d["metrics"]["probe"].update(stalled="5"),
        "metrics.probe.stalled",
    ),
    "bool for a count": (
        lambda d: d["metrics"]["probe"].update(connections=True),
        "metrics.probe.connections",
    ),
    "extra key": (lambda d: d["metrics"].update(surprise=1), "metrics.surprise"),
    "extra top-level key": (lambda d: d.update(exploit="x"), "exploit"),
    "huge integer": (
        lambda d: d["metrics"]["probe"].update(stalled=10**400),
        "metrics.probe.stalled",
    ),
    "huge float": (lambda d: d["metrics"]["load"].update(rps=1e300), "metrics.load.rps"),
    "negative count": (lambda d: d["metrics"]["probe"].update(stalled=-1), "metrics.probe.stalled"),
    "list for a mapping": (lambda d: d["metrics"].update(probe=[1, 2]), "metrics.probe"),
    "wrong status": (lambda d: d.update(status="pwned"), "status"),
    "missing version": (lambda d: d.pop("version"), "version"),
    "newer schema": (lambda d: d.update(schema_version=2), "schema_version 2"),
    "sweep point without value": (
        lambda d: d["metrics"]["probe"]["sweep"][0].pop("value"),
        "metrics.probe.sweep.0.value",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_cell_json_is_refused_naming_file_and_key(tmp_path, case):
    edit, where = HOSTILE[case]
    path = _edited(tmp_path, edit)
    with pytest.raises(RecordError) as caught:
        record.load_cell(path)
    message = str(caught.value)
    assert str(path) in message and where in message
    assert len(message) < 1000  # a huge value is not echoed back


def test_nan_and_infinity_are_refused(tmp_path):
    for value in ("NaN", "Infinity", "1e400"):
        text = (
            (STALL / "cell.json")
            .read_text()
            .replace('"rps": 16.077323515924476', f'"rps": {value}')
        )
        assert value in text
        path = tmp_path / "cell.json"
        path.write_text(text)
        with pytest.raises(RecordError, match=r"metrics\.load\.rps"):
            record.load_cell(path)


def test_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(RecordError, match="not a mapping"):
        record.load_cell(path)


def test_a_hostile_run_json_is_refused(tmp_path):
    data = json.loads((DATA / "run-chunked-stall" / "run.json").read_text())
    data["cells"] = "three"
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"run.json.*at cells"):
        record.load_run(path)


@pytest.mark.parametrize("verb", ["report", "compare", "rerun"])
def test_the_cli_exits_2_with_a_message_on_an_edited_cell_json(tmp_path, capsys, verb):
    run_dir = tmp_path / "20261124T230400Z-edited"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    path = run_dir / STALL.name / "cell.json"
    data = json.loads(path.read_text())
    data["repetition"] = "1; rm -rf /"
    path.write_text(json.dumps(data))
    argv = {
        "report": ["report", str(run_dir)],
        "compare": ["compare", str(run_dir), str(run_dir)],
        "rerun": ["rerun", str(path.parent)],  # refused before anything is started
    }[verb]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "repetition" in err and "Traceback" not in err


def test_resume_of_an_edited_run_json_exits_2_before_anything_starts(tmp_path, capsys):
    run_dir = tmp_path / "20261124T230400Z-edited"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    data = json.loads((run_dir / "run.json").read_text())
    data["cells"] = 1e300
    (run_dir / "run.json").write_text(json.dumps(data))
    assert cli.main(["matrix", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert str(run_dir / "run.json") in err and "cells" in err and "Traceback" not in err


def test_publish_lists_a_run_with_an_edited_cell_json_as_unreadable(tmp_path):
    results_dir = tmp_path / "results"
    run_dir = results_dir / "20261124T230400Z-edited"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    path = run_dir / STALL.name / "cell.json"
    data = json.loads(path.read_text())
    data["metrics"]["probe"]["stalled"] = "5"
    path.write_text(json.dumps(data))
    assert cli.main(["publish", str(results_dir), "--out", str(tmp_path / "site")]) == 0
    index = (tmp_path / "site" / "index.html").read_text()
    assert "unreadable: RecordError" in index


# Parameters and loads that no shipped matrix has: config lines by section, wrk with
# threads, Locust workers.
EXTRA_MATRIX = """
name: extra
versions: [debian:bookworm]
load: {generator: wrk, users: 5000, threads: 2}
scenarios:
  - name: backend-closes-first
    params: {mode: tcp, config: {backend: [retries 3], defaults: [option abortonclose]}}
  - name: smoke
"""


@pytest.mark.parametrize(
    "source", [*sorted((ROOT / "matrices").glob("*.yaml")), "extra", "workers"],
    ids=lambda s: getattr(s, "stem", s),
)  # fmt: skip
def test_every_cell_a_matrix_can_plan_makes_a_valid_record(source, tmp_path):
    # The runner's record of each cell's parameters (None for an unset chunk_min, a list
    # for chunk_sizes, config lines by section, ...) and load validates and reads back:
    # a cell cannot be measured and then fail to be recorded. Every shipped matrix, and
    # what none of them uses yet.
    if isinstance(source, str):
        text = EXTRA_MATRIX
        if source == "workers":
            text = text.replace("{generator: wrk, users: 5000, threads: 2}", "{workers: 3}")
        source = tmp_path / f"{source}.yaml"
        source.write_text(text)
    plan = spec.load(source, "20261124T230400Z-default")
    for cell in plan.cells:
        data = {
            "cell": cell.id, "index": cell.index, "run": cell.run_id,
            "version": {"spec": cell.version.text, "label": cell.version.label,
                        "origin": cell.version.origin, "custom": cell.version.custom,
                        "reported": "", "image": "", "image_id": ""},
            "scenario": cell.scenario, "params": cell.params, "repetition": cell.repetition,
            "load": {**cell.load.model_dump(), "mode": "probe"}, "started": "", "status": "ok",
        }  # fmt: skip
        written = CellRecord.model_validate(data, strict=False)
        back = record.parse_cell(json.loads(record.dump(written)), Path("cell.json"))
        assert back == written, cell.id


@pytest.mark.parametrize("alpha", [5, -1, "NaN"])
def test_verdict_thresholds_of_a_run_json_are_bounded_as_in_a_matrix_file(tmp_path, alpha):
    data = json.loads((DATA / "run-chunked-stall" / "run.json").read_text())
    data["matrix"]["verdicts"]["alpha"] = float(alpha) if alpha == "NaN" else alpha
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"at matrix.*verdicts\..*alpha"):
        record.load_run(path)


def test_thresholds_are_the_matrix_files_with_defaults():
    run = record.load_run(DATA / "run-chunked-stall" / "run.json")
    assert run.thresholds() == {
        "alpha": 0.01, "min_effect": 0.3, "min_ratio": 1.2, "min_rate_diff": 0.05
    }  # fmt: skip


def test_an_error_longer_than_a_record_holds_is_cut_not_lost(tmp_path):
    from harness import runner

    data = record.migrate(json.loads((STALL / "cell.json").read_text()))
    data.update(status="failed", error="x" * (record.TEXT_MAX + 10))
    written = runner._write_record(tmp_path, data)
    assert written.error is not None and written.error.endswith("(cut; see commands.log)")
    assert record.load_cell(tmp_path / "cell.json") == written


# Every short string a record names (cell, scenario, spec, label, baseline, a parameter)
# reaches report.md, the terminal `report` prints to and the tables: a control
# character there is an edit, and ESC would drive the reader's terminal.
CONTROL = {
    "ESC in the scenario": (lambda d: d.update(scenario="x\x1b]2;pwned\x07"), "scenario"),
    "newline in the spec": (lambda d: d["version"].update(spec="debian:bookworm\n# x"), "spec"),
    "C1 CSI in the label": (lambda d: d["version"].update(label="2.6.12\x9b2J"), "label"),
    "ESC in a parameter": (lambda d: d["params"].update(tls="\x1b[31moff"), "params.tls"),
    "ESC in a parameter's name": (lambda d: d["params"].update({"\x1b[2J": 1}), "params"),
    "config line not allow-listed": (
        lambda d: d["params"].update(config={"backend": ["retries 3", "bind :80"]}),
        "params",
    ),
    "config line with a newline": (
        lambda d: d["params"].update(config={"backend": ["retries 3\nlisten x"]}),
        "params",
    ),
    "config section unknown": (
        lambda d: d["params"].update(config={"listen": ["retries 3"]}),
        "params",
    ),
}


@pytest.mark.parametrize("case", CONTROL, ids=list(CONTROL))
def test_control_characters_and_unlisted_config_lines_in_a_cell_json_are_refused(tmp_path, case):
    edit, where = CONTROL[case]
    path = _edited(tmp_path, edit)
    with pytest.raises(RecordError) as caught:
        record.load_cell(path)
    message = str(caught.value)
    assert str(path) in message and where in message
    assert "\x1b" not in message and "\x9b" not in message  # not echoed to the terminal


def test_an_allow_listed_config_line_in_a_cell_json_reads_back(tmp_path):
    config = {"global": ["nbthread 2"], "backend": ["retries 3", "option redispatch"]}
    path = _edited(tmp_path, lambda d: d["params"].update(config=config))
    assert record.load_cell(path).params["config"] == config


def test_a_run_json_with_a_control_character_in_its_baseline_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "20261124T230400Z-edited"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    data = json.loads((run_dir / "run.json").read_text())
    data["baseline"] = "debian:bullseye\x1b[2J"
    (run_dir / "run.json").write_text(json.dumps(data))
    assert cli.main(["report", str(run_dir)]) == 2
    out = capsys.readouterr()
    assert "baseline" in out.err and "\x1b" not in out.out + out.err
    assert not (run_dir / "report.md").exists() or "\x1b" not in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("version", ["1", 1.5, True, 0, -3, None])
def test_a_schema_version_that_is_no_version_number_is_called_damaged_not_newer(tmp_path, version):
    path = _edited(tmp_path, lambda d: d.update(schema_version=version))
    if version is None:  # written before schema_version: migrated... unless it says null
        path.write_text(path.read_text().replace('"schema_version": null', '"schema_version": "x"'))
    with pytest.raises(RecordError) as caught:
        record.load_cell(path)
    assert "is not a schema version" in str(caught.value)
    assert "newer harness" not in str(caught.value)


def test_a_deeply_nested_location_is_cut_in_the_message(tmp_path):
    data = json.loads((DATA / "run-chunked-stall" / "run.json").read_text())
    deep: object = 1
    for _ in range(500):
        deep = [deep]
    data["matrix"] = {"a": deep}
    data["baseline"] = 5
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as caught:
        record.load_run(path)
    assert len(str(caught.value)) < 1000


# Raw files of a cell (locust.json here) edited so that the analysis overflows or a
# number lands outside what a record holds: `report` and `compare` say which run, in one
# line, exit 2; never a traceback or a pydantic error dump.
RAW_EDITS = {
    "count beyond int64": lambda entry: entry["response_times"].update({"1": 10**30}),
    "count beyond a record": lambda entry: entry.update(num_requests=10**30),
    "NaN latency": lambda entry: entry["response_times"].update({"nan": 5}),
}


@pytest.mark.parametrize("verb", ["report", "compare"])
@pytest.mark.parametrize("case", RAW_EDITS, ids=list(RAW_EDITS))
def test_raw_numbers_no_record_holds_exit_2_in_one_line(tmp_path, capsys, verb, case):
    run_dir = tmp_path / "20261124T230400Z-edited"
    shutil.copytree(DATA / "run-half-close-keepalive", run_dir)
    cell = run_dir / "003-keepalive-vs-close-2.2.9-debian-bullseye-17b307-r1"
    entries = json.loads((cell / "locust.json").read_text())
    for entry in entries:
        RAW_EDITS[case](entry)
    (cell / "locust.json").write_text(json.dumps(entries))
    argv = {"report": ["report", str(run_dir)], "compare": ["compare", str(run_dir), str(run_dir)]}
    try:
        code = cli.main(argv[verb])
    except Exception as exc:  # the failure this test exists for
        pytest.fail(f"{type(exc).__name__} escaped: {exc}"[:300])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "pydantic" not in err, err


# An old record (no schema_version) is migrated before it is validated: whatever its
# content, the migration must leave the refusal to validation, naming file and key.
OLD_EDITS = {
    "superscript digit": {"chunk_size=²": {"stalled": 1}},
    "two minus signs": {"chunk_size=--5": {"stalled": 1}},
    "5000 digits": {"chunk_size=" + "9" * 5000: {"stalled": 1}},
    "point not a mapping": {"chunk_size=3": 5},
    "point a list": {"chunk_size=3": [1, 2]},
}


@pytest.mark.parametrize("case", OLD_EDITS, ids=list(OLD_EDITS))
def test_an_edited_old_record_is_refused_naming_file_and_key(tmp_path, case):
    old = json.loads((STALL / "cell.json").read_text())
    assert "schema_version" not in old
    old["metrics"]["probe"]["by_sweep"] = OLD_EDITS[case]
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(old))
    with pytest.raises(RecordError) as caught:
        record.load_cell(path)
    assert str(path) in str(caught.value) and "metrics.probe.sweep" in str(caught.value)
    assert len(str(caught.value)) < 1000


# A shared run folder (a tarball unpacked) may hold what the harness never writes: a
# symlink to /dev/zero made `report` read until memory ran out, a FIFO blocks a read for
# ever, a symlink elsewhere reads another user's file into a report.
PLANTED = {
    "vv to /dev/zero": lambda cell: _replace(cell / "haproxy-vv.txt", "/dev/zero"),
    "cell.json to a file elsewhere": lambda cell: _replace(cell / "cell.json", "/etc/hostname"),
    "a FIFO for locust.json": lambda cell: (
        (cell / "locust.json").unlink(),
        os.mkfifo(cell / "locust.json"),
    ),
    "a cell folder that is a link": lambda cell: (
        shutil.move(cell, cell.with_name("elsewhere")),
        cell.symlink_to(cell.with_name("elsewhere")),
    ),
}


def _replace(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("verb", ["report", "compare", "publish"])
@pytest.mark.parametrize("case", PLANTED, ids=list(PLANTED))
def test_a_run_folder_holding_anything_but_files_and_folders_is_refused(
    tmp_path, capsys, verb, case
):
    run_dir = tmp_path / "results" / "20261124T230400Z-planted"
    shutil.copytree(DATA / "run-half-close-keepalive", run_dir)
    PLANTED[case](run_dir / "003-keepalive-vs-close-2.2.9-debian-bullseye-17b307-r1")
    argv = {
        "report": ["report", str(run_dir)],
        "compare": ["compare", str(DATA / "run-half-close-keepalive"), str(run_dir)],
        "publish": ["publish", str(run_dir.parent), "--out", str(tmp_path / "site")],
    }[verb]
    code = cli.main(argv)
    err = capsys.readouterr().err
    if verb == "publish":  # the site goes on; the run is listed as unreadable
        assert code == 0
        assert "unreadable" in (tmp_path / "site" / "index.html").read_text()
    else:
        assert code == 2 and "003-keepalive" in err and "regular files" in err, err


def test_a_run_folder_reached_through_a_link_is_read(tmp_path):
    # results/latest -> <run>: the link is the user's own way in, not inside the run
    run_dir = tmp_path / "results" / "20261124T230400Z-linked"
    shutil.copytree(DATA / "run-half-close-keepalive", run_dir)
    (tmp_path / "results" / "latest").symlink_to(run_dir)
    assert cli.main(["report", str(tmp_path / "results" / "latest")]) in (0, 3)


def test_a_matrix_file_named_with_any_character_is_recorded_and_shown_escaped(tmp_path):
    # A file name may hold a newline or an ESC: the run must record the path it was
    # given (a run died after its images on 'same matrix: twice\nat once.yaml'), and the
    # report must show it without driving the terminal or breaking its line.
    from harness.report import render
    from tests import records

    name = str(tmp_path / "same matrix: twice\nat once\x1b[2J.yaml")
    run = records.manifest({"matrix_file": name})
    assert record.parse_run(json.loads(record.dump(run)), Path("run.json")) == run
    text = render.markdown(tmp_path, [], [], run)
    assert "twice\\nat once\\x1b[2J.yaml" in text and "\x1b" not in text


def _oversized(path: Path) -> None:
    # a sparse file: as large as a sender likes, costing neither of them a byte of disk
    with path.open("r+b") as out:
        out.truncate(results.RECORD_MAX + 1)


def _refused(verb: str, run_dir: Path, tmp_path: Path, capsys) -> str | None:
    """Run ``verb`` on the chunked-stall copy at ``run_dir``: ``publish`` (over its results
    folder) must go on and list the run as unreadable (None); every other verb must exit 2
    (its stderr returned)."""
    argv = {
        "report": ["report", str(run_dir)],
        "compare": ["compare", str(run_dir), str(run_dir)],
        "rerun": ["rerun", str(run_dir / STALL.name)],
        "resume": ["matrix", "--resume", str(run_dir)],
        "publish": ["publish", str(run_dir.parent), "--out", str(tmp_path / "site")],
    }[verb]
    code = cli.main(argv)
    err = capsys.readouterr().err
    if verb == "publish":
        assert code == 0
        assert "unreadable" in (tmp_path / "site" / "index.html").read_text()
        return None
    assert code == 2, err
    return err


# Each verb and the records it reads (a verb not listed with a record does not read it;
# a resume that passed its checks would start cells, so it gets only what it refuses).
READS = [
    *[(verb, which) for verb in ("report", "compare", "resume") for which in ("run.json",
                                                                              "cell.json")],
    ("rerun", "cell.json"),
    *[("publish", which) for which in ("run.json", "cell.json", "verdicts.json")],
]  # fmt: skip


@pytest.mark.parametrize(("verb", "which"), READS)
def test_an_oversized_record_is_refused_not_read(tmp_path, capsys, verb, which):
    run_dir = tmp_path / "results" / "20261124T230400Z-huge"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    path = run_dir / (STALL.name + "/cell.json" if which == "cell.json" else which)
    path.touch()
    _oversized(path)
    err = _refused(verb, run_dir, tmp_path, capsys)
    if err is not None:
        assert str(path) in err and "64 MiB" in err and "Traceback" not in err


def test_an_oversized_raw_file_is_refused_before_it_is_read(tmp_path, capsys):
    """Every raw file of a cell the analysis parses whole: each one over the limit (a
    sparse file, free to send) stops `report` with its name, before hashing or parsing."""
    run_dir = tmp_path / "20261124T230400Z-huge"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    raw = sorted(p for p in (run_dir / STALL.name).iterdir() if p.is_file())
    raw = [p for p in raw if p.name != "cell.json"]
    assert len(raw) >= 5
    for path in raw:
        size = path.stat().st_size
        with path.open("r+b") as out:
            out.truncate(results.RAW_FILE_MAX + 1)
        code = cli.main(["report", str(run_dir)])
        err = capsys.readouterr().err
        assert code == 2, (path.name, err)
        assert str(path) in err and "1,024 MiB" in err and "Traceback" not in err
        with path.open("r+b") as out:
            out.truncate(size)


def test_a_parameter_a_record_leaves_out_reads_as_its_default_in_the_report():
    """A parameter added later is recorded only off its default (older cells keep their
    ids): in labels and in "which parameters vary" it is its default, never None."""
    from harness.report import tables

    cell = record.load_cell(STALL / "cell.json")
    assert "requests" not in cell.params  # recorded before chunked-stall had it (default 2)
    explicit = cell.model_copy(update={"params": {**cell.params, "requests": 2}})
    assert tables.varying([cell, explicit]) == []
    assert tables._short_params(cell, ["requests"]) == "requests=2"
    changed = cell.model_copy(update={"params": {**cell.params, "requests": 1}})
    assert tables.varying([cell, changed]) == ["requests"]


# What a cell.json's `cell` may name instead of its own folder: every reader of a run
# joins run_dir / record.cell, so each would have the report read another folder's files.
ELSEWHERE = {
    "a sibling cell": lambda run_dir, tmp: "010-chunked-stall-3.0.11-debian-trixie-5d2a4b-r1",
    "a parent path": lambda run_dir, tmp: "../elsewhere",
    "an absolute path": lambda run_dir, tmp: str(tmp / "elsewhere"),
}


@pytest.mark.parametrize("verb", ["report", "compare", "resume", "publish"])
@pytest.mark.parametrize("elsewhere", ELSEWHERE, ids=list(ELSEWHERE))
def test_a_cell_json_naming_another_folder_is_refused(tmp_path, capsys, verb, elsewhere):
    results_dir = tmp_path / "results"
    run_dir = results_dir / "20261124T230400Z-moved"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    # a folder outside the run holding another cell's raw files (a FIFO there hung report)
    shutil.copytree(run_dir / STALL.name, tmp_path / "elsewhere")
    shutil.copytree(run_dir / STALL.name, results_dir / "elsewhere")
    path = run_dir / STALL.name / "cell.json"
    data = json.loads(path.read_text())
    data["cell"] = ELSEWHERE[elsewhere](run_dir, tmp_path)
    path.write_text(json.dumps(data))
    before = path.read_text()
    err = _refused(verb, run_dir, tmp_path, capsys)
    if err is not None:
        assert str(path) in err and "lies in the folder" in err and "Traceback" not in err
        assert not (run_dir / "report.md").exists()
    assert path.read_text() == before


def test_a_rerun_folder_beside_a_cell_is_not_one_of_the_runs_cells(tmp_path):
    run_dir = tmp_path / "20261124T230400Z-rerun"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    # `harness rerun` writes <cell>-rerun-<stamp>, whose record names its one-cell plan
    rerun = run_dir / f"{STALL.name}-rerun-20261125t101010z-a1b2c3"
    shutil.copytree(run_dir / STALL.name, rerun)
    data = json.loads((rerun / "cell.json").read_text())
    data["cell"] = "001-chunked-stall-2.6.12-debian-bookworm-5d2a4b-r1"
    (rerun / "cell.json").write_text(json.dumps(data))
    assert [r.cell for r in record.cells(run_dir)] == sorted(
        p.name for p in (DATA / "run-chunked-stall").iterdir() if p.is_dir()
    )
    assert record.load_run_cell(rerun / "cell.json").cell == data["cell"]  # rerun reads it
    assert cli.main(["report", str(run_dir)]) == 0
