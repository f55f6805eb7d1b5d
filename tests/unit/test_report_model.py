"""One report model, two renderers (issue 12, point 4): report.md and report.html are
Jinja2 templates over harness.report.model.Report; index.md comes from each run's
verdict data; plots.py draws SVG only."""

import contextlib
import json
import re
import shutil
import threading
from pathlib import Path

import pytest

from harness import cli
from harness.analyse.record import cells, load_run
from harness.report import model, render, tables

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def _reported(tmp_path: Path, run: str = "run-chunked-stall") -> Path:
    run_dir = tmp_path / "results" / "20261124T230400Z-golden"
    shutil.copytree(DATA / run, run_dir)
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    return run_dir


def test_both_reports_render_the_same_model(tmp_path):
    run_dir = _reported(tmp_path, "run-half-close-keepalive")
    report = model.build(
        run_dir, cells(run_dir), tables.read_verdicts(run_dir), load_run(run_dir / "run.json")
    )
    text = render.markdown_of(report)
    assert text == (run_dir / "report.md").read_text()
    page = render.html_of(report, run_dir, text)
    # every verdict sentence, scenario and flag of the model is on both
    for c in report.found:
        assert tables._one_line(c.words) in text
    for s in report.scenarios:
        assert f"## {s.name}" in text and f'id="s-{s.name}"' in page
    for f in report.flags:
        assert f"`{f.state}` ({f.count}×)" in text and f"<code>{f.state}</code>" in page
    assert page.count("<svg") >= len(report.scenarios)


def test_index_comes_from_the_verdicts_not_from_report_md(tmp_path):
    run_dir = _reported(tmp_path)
    index = run_dir.parent / "index.md"
    assert "**verdicts: 0 regressions, 0 improvements, 0 small changes, 4 no change**" in (
        index.read_text()
    )
    # a line in report.md that looks like a verdict is not one
    with (run_dir / "report.md").open("a") as out:
        out.write("- 9.9.9 vs 1.0.0: fake — regression\n")
    render.write_index(run_dir.parent)
    assert "fake" not in index.read_text()
    # verdicts.json that this harness did not write: said, not guessed from report.md
    (run_dir / "verdicts.json").write_text(json.dumps([{"surprise": 1}]))
    render.write_index(run_dir.parent)
    assert "verdicts.json unreadable" in index.read_text()


def test_html_is_autoescaped_and_markdown_escapes_table_cells(tmp_path):
    run_dir = _reported(tmp_path)
    report = model.build(run_dir, cells(run_dir), [], load_run(run_dir / "run.json"))
    evil = "<script>alert(1)</script> | `x`"
    images = model.Table(["image", "tag", "id", "HAProxy reported"], [[evil, evil, "-", "-"]])
    provenance = model.Provenance(**{**report.provenance.__dict__, "images": images})
    hostile = model.Report(
        **{**report.__dict__, "description": evil, "title": evil, "provenance": provenance}
    )
    page = render.html_of(hostile, run_dir, "")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    text = render.markdown_of(hostile)
    # the pipe cannot end the table cell it is in, nor the tag open raw HTML
    [row] = [line for line in text.splitlines() if line.startswith("| \\<script>")]
    assert len(re.split(r"(?<!\\)\|", row.strip().strip("|"))) == 4


def test_plots_draw_svg_only():
    source = (ROOT / "harness" / "report" / "plots.py").read_text()
    # the page is the template's: no HTML sections are built in the plotting module
    assert not re.search(r"<(h[1-6]|ul|li|nav|table|html|body|details)\b", source)
    assert "def html_report" not in source and "CSS" not in source


def test_a_run_without_a_matrix_file_says_so_instead_of_none(tmp_path):
    # `run` and `reproduce` plan from the command line: their run.json has no matrix file
    run_dir = tmp_path / "results" / "20261124T230400Z-single"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    manifest = json.loads((run_dir / "run.json").read_text())
    del manifest["matrix_file"], manifest["matrix_sha256"]
    (run_dir / "run.json").write_text(json.dumps(manifest))
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    md = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    for text, start in ((md, "- Matrix"), (html, "<li>Matrix")):
        [line] = [ln for ln in text.splitlines() if ln.startswith(start)]
        assert "None" not in line and "?" not in line, line
        assert "from the command line" in line, line


def test_control_characters_in_free_text_never_reach_the_terminal(tmp_path, capsys):
    # a failed cell's error and a raw file's head are any text: ESC / CSI in them would
    # drive the terminal `report` prints report.md to
    run_dir = tmp_path / "results" / "20261124T230400Z-esc"
    shutil.copytree(DATA / "run-half-close-keepalive", run_dir)
    cell = run_dir / "003-keepalive-vs-close-2.2.9-debian-bullseye-17b307-r1"
    data = json.loads((cell / "cell.json").read_text())
    data.update(status="failed", error="boom \x1b]2;pwned\x07\x1b[31mred \x9b2J")
    (cell / "cell.json").write_text(json.dumps(data))
    vv = run_dir / "001-half-close-2.2.9-debian-bullseye-fd300d-r1" / "haproxy-vv.txt"
    vv.write_text("HAProxy \x1b[2J version\r\n" + vv.read_text())
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    out = capsys.readouterr().out
    md = (run_dir / "report.md").read_text()
    for text in (out, md):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)
    assert "boom \\x1b]2;pwned\\x07\\x1b[31mred \\x9b2J" in md  # shown, not dropped


# What may lie beside a run folder someone sent (unpacked in Downloads, in a notes
# folder): index.md is written there only when it is the harness's, and only run folders
# with regular report.md / verdicts.json are read.
NOT_OURS = {
    "a user's own index.md": lambda index: index.write_text("# my notes\nkeep these\n"),
    "a link named index.md": lambda index: index.symlink_to(index.parent / "target.txt"),
    "a folder named index.md": lambda index: index.mkdir(),
}


@pytest.mark.parametrize("plant", NOT_OURS, ids=list(NOT_OURS))
def test_report_leaves_an_index_md_that_is_not_the_harnesss_alone(tmp_path, plant):
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "target.txt").write_text("precious\n")
    NOT_OURS[plant](folder / "index.md")
    before = {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}
    run_dir = folder / "20261124T230400Z-sent"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    assert {p.name: p.read_text() for p in folder.iterdir() if p.is_file()} == before
    assert (run_dir / "report.md").is_file() and not render.write_index(folder)
    # where there was none, the harness writes its own, and rewrites it
    index = folder / "index.md"
    index.rmdir() if index.is_dir() else index.unlink()
    assert render.write_index(folder) and render.write_index(folder)
    assert "20261124T230400Z-sent" in index.read_text()


@pytest.mark.parametrize("name", ["20261124T230500Z-other", "notes"])
def test_the_index_reads_no_fifo_or_link_beside_a_run(tmp_path, name):
    import os

    folder = tmp_path / "results"
    run_dir = folder / "20261124T230400Z-sent"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    other = folder / name
    other.mkdir()
    (other / "report.md").write_text("x\n")
    fifo = other / "verdicts.json"
    os.mkfifo(fifo)  # opening it for reading blocked `report` for ever
    os.symlink(run_dir, folder / "20261124T230600Z-link")  # the same run again
    opened = threading.Event()

    def writer() -> None:  # answers a reader (so the test fails, not hangs), and says so
        with contextlib.suppress(BrokenPipeError), fifo.open("w") as out:
            opened.set()
            out.write("[]")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert cli.main(["report", str(run_dir)]) in (0, 3)
        runs = [e.run for e in model.index(folder)]
        read = opened.wait(0.5)
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer go
        thread.join(5)
    assert not read, "a FIFO beside the run was opened for reading"
    assert runs == ([name] if name != "notes" else []) + ["20261124T230400Z-sent"]
    if name != "notes":
        [entry] = [e for e in model.index(folder) if e.run == name]
        assert entry.tally is None  # said unreadable, not read
