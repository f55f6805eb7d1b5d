"""A matrix's description opens its report: from a shared matrix file, or a run.json
someone sent, it must not write report.md's structure (a heading, a list of verdicts)
nor drive the terminal `report` prints to."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.errors import SpecError
from harness.plan import spec
from harness.report.render import _paragraph

DATA = Path(__file__).resolve().parents[1] / "data"
# Every C0 and C1 control character (Unicode category Cc), a newline among them.
CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
# What opens a Markdown block at the start of a line (CommonMark): each once.
BLOCKS = ["# Verdicts", "## x", "- a — regression", "* a", "+ a", "> q", "1. a", "12) a",
          "---", "===", "| a | b |", "<script>x</script>", "```", "~~~"]  # fmt: skip


@pytest.mark.parametrize("char", CONTROLS, ids=[hex(ord(c)) for c in CONTROLS])
def test_a_control_character_in_a_matrix_description_is_refused(tmp_path, char):
    path = tmp_path / "m.yaml"
    text = json.dumps(f"ok{char}## Verdicts")  # JSON is YAML: any character, escaped
    path.write_text(f"name: m\ndescription: {text}\nversions: [debian:bookworm]\n"
                    "scenarios: [{name: smoke}]\n")  # fmt: skip
    with pytest.raises(SpecError, match=r"description \(line 2\)"):
        spec.load(path, "run1")


@pytest.mark.parametrize("char", CONTROLS, ids=[hex(ord(c)) for c in CONTROLS])
def test_a_run_json_whose_description_has_a_control_character_is_refused(tmp_path, capsys, char):
    run_dir = tmp_path / "20261124T230400Z-edited"
    shutil.copytree(DATA / "run-half-close-keepalive", run_dir)
    data = json.loads((run_dir / "run.json").read_text())
    data["matrix"]["description"] = f"ok{char}\n## Verdicts\n\n- fake — regression"
    (run_dir / "run.json").write_text(json.dumps(data))
    assert cli.main(["report", str(run_dir)]) == 2
    assert "description" in capsys.readouterr().err
    assert not (run_dir / "report.md").exists()


@pytest.mark.parametrize("value", [["a"], {"a": 1}, 5, "x" * 501])
def test_a_run_json_whose_name_or_description_is_no_matrix_files_is_refused(tmp_path, value):
    for key in ("name", "description"):
        run_dir = tmp_path / key / "20261124T230400Z-edited"
        shutil.copytree(DATA / "run-half-close-keepalive", run_dir)
        data = json.loads((run_dir / "run.json").read_text())
        data["matrix"][key] = value
        (run_dir / "run.json").write_text(json.dumps(data))
        assert cli.main(["report", str(run_dir)]) == 2, key


@pytest.mark.parametrize("start", BLOCKS)
def test_a_description_stays_one_paragraph_of_report_md(tmp_path, start):
    run_dir = tmp_path / "20261124T230400Z-md"
    shutil.copytree(DATA / "run-half-close-keepalive", run_dir)
    data = json.loads((run_dir / "run.json").read_text())
    data["matrix"]["description"] = start
    (run_dir / "run.json").write_text(json.dumps(data))
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    lines = (run_dir / "report.md").read_text().splitlines()
    # the description is the paragraph just before "6/6 cells measured."
    [at] = [i for i, line in enumerate(lines) if line.startswith("6/6 cells measured")]
    shown = lines[at - 2]
    assert lines[at - 1] == lines[at - 3] == ""
    assert shown != start and shown.replace("\\", "") == start
    assert _paragraph("Every scenario on 2.2.9") == "Every scenario on 2.2.9"


# Raw HTML (CommonMark 6.6) and an autolink, after the data's own backslash too: each would
# write a heading, a list of verdicts or a remote image into report.md as rendered.
HTML = (
    r"x <h2>Verdicts</h2><ul><li>no regression</li></ul> \<b>b</b> "
    "<img src=https://e.example/t.png> <https://e.example>"
)


def test_no_string_of_a_run_folder_opens_raw_html_in_report_md(tmp_path):
    """Every place report.md prints a run folder's text (the description, a claim's note,
    a version label, the environment, the matrix file, a failed cell's error) is text to
    a CommonMark renderer: no HTML block, no inline HTML, no autolink."""
    from markdown_it import MarkdownIt

    run_dir = tmp_path / "20261124T230400Z-html"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    data = json.loads((run_dir / "run.json").read_text())
    data["matrix"]["description"] = HTML
    data["matrix"]["claims"] = [{"note": HTML, "metric": "stalled", "at_most": 0,
                                 "where": {"scenario": "chunked-stall"}}]  # fmt: skip
    data["environment"]["kernel"] = HTML
    data["matrix_file"] = HTML
    (run_dir / "run.json").write_text(json.dumps(data))
    cells = sorted(run_dir.glob("*/cell.json"))
    first = json.loads(cells[0].read_text())
    first["version"]["label"] = HTML
    cells[0].write_text(json.dumps(first))
    failed = json.loads(cells[1].read_text())
    failed.update(status="failed", error=HTML)
    cells[1].write_text(json.dumps(failed))
    assert cli.main(["report", str(run_dir)]) in (0, 1, 3)
    text = (run_dir / "report.md").read_text()
    assert text.count("<h2>Verdicts") >= 5  # each place shows it, as text
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    found = [t for t in tokens if t.type == "html_block"]
    for t in tokens:
        found += [c for c in t.children or [] if c.type in ("html_inline", "link_open")]
    assert found == [], [t.content or t.attrs for t in found][:5]
