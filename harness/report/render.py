"""report.md and report.html: Jinja2 templates (templates/report.md.j2, report.html.j2)
over the one report model (harness.report.model.Report).

Markdown has no autoescape: its filters escape what data could break (a "|" ending a
table cell, a backtick closing a code span, a newline ending a list item). HTML is
autoescaped; the only markup that reaches the page unescaped is the plots' SVG (drawn
here by matplotlib from numbers and escaped labels) and tabulate's HTML tables (which
escape every cell).
"""

from __future__ import annotations

import re
import stat
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from tabulate import tabulate

from harness.analyse.compare import Comparison
from harness.analyse.record import CellRecord, RunManifest
from harness.report import model, plots, tables, workers

TEMPLATES = Path(__file__).with_name("templates")
# C0 and C1 control characters but tab and newline: an ESC or CSI from a run folder's
# free text (a failed cell's error, a raw file's line) would drive the terminal that
# `report` prints report.md to (ECMA-48); shown as a \xNN escape instead.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class _Verbatim(str):
    """Markdown a filter made with its data escaped for where it stands (a code span, a
    fence, a table whose cells :func:`tables._md_cell` escaped): printed as it is."""


def _visible(value: Any) -> Any:
    """Every value a Markdown template prints, with control characters made visible and,
    but in what a filter made (:class:`_Verbatim`), raw HTML kept from opening
    (:func:`tables.md_text`)."""
    if isinstance(value, str):
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
        return text if isinstance(value, _Verbatim) else tables.md_text(text)
    return value


# What opens a Markdown block when a line starts with it (CommonMark 0.31: ATX heading,
# block quote, list item, thematic break, setext underline, code fence, table row, HTML
# block): a backslash before it keeps a line of data a paragraph.
_BLOCK_START = re.compile(r"^(\d*)([#>*+=|<`~.)-])")


def _paragraph(value: Any) -> str:
    """One line of data as a Markdown paragraph: newlines folded, a leading block marker
    escaped (a matrix's description cannot open a "## Verdicts" of its own)."""
    # an ordered list's marker is digits then "." or ")": the backslash goes before those;
    # raw HTML is escaped first (a leading "<" it escaped no longer opens a block)
    text = tables.md_text(tables._one_line(value).strip())
    return _Verbatim(_BLOCK_START.sub(r"\1\\\2", text))


def _inline(text: str) -> Markup:
    """Escape first, then turn the sentence's own Markdown `code` and **bold** into tags."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text)))
    return Markup(re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out))


def _html_table(rows: list[list[Any]], headers: list[str], stall: bool = False) -> Markup:
    """tabulate's "html" format, which escapes every cell and header; ``stall``: cells
    that read "STALL ..." get their class."""
    text = tabulate(rows, headers, tablefmt="html")
    if stall:
        text = text.replace("<td>STALL ", '<td class="stall">STALL ')
    return Markup(f'<div class="scroll">{text}</div>')


@cache
def _environment(kind: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=kind == "html",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        finalize=_visible if kind == "md" else None,
    )
    env.globals["config_intro"] = tables.CONFIG_INTRO
    if kind == "md":
        env.filters.update(
            table=lambda rows, headers: _Verbatim(tables._md_table(rows, headers)),
            code=lambda value: _Verbatim(tables._code(value)),
            line=tables._one_line,
            paragraph=_paragraph,
            fenced=lambda lines: _Verbatim("\n".join(tables._fenced(lines))),
        )
    else:
        env.filters.update(
            inline=_inline,
            table=_html_table,
            slug=plots._slug,
            verdict_class=lambda verdict: "v-" + plots._slug(verdict),
        )
    return env


def markdown(
    run_dir: Path, records: list[CellRecord], found: list[Comparison], run: RunManifest
) -> str:
    """report.md of a run (see :func:`harness.report.model.build` for the arguments)."""
    return markdown_of(model.build(run_dir, records, found, run))


def markdown_of(report: model.Report) -> str:
    """report.md from its model: GitHub-flavoured, pasteable into an issue."""
    template = _environment("md").get_template("report.md.j2")
    return template.render(r=report, headers=model.VERDICT_HEADERS)


# The report's stylesheet, shared with the published site (harness.report.site).
CSS = (TEMPLATES / "report.css").read_text()


def html(
    run_dir: Path,
    records: list[CellRecord],
    found: list[Comparison],
    run: RunManifest,
    text: str | None = None,
) -> str:
    """report.html of a run: the same model as report.md, with plots, self-contained.
    ``text``: report.md's text, attached escaped for pasting (rendered when None)."""
    return html_of(model.build(run_dir, records, found, run), run_dir, text)


def html_of(
    report: model.Report,
    run_dir: Path,
    text: str | None = None,
    draw: workers.Map[str] = workers.serial,
) -> str:
    """report.html from its model; the plots are drawn from the model's records and
    the raw files in ``run_dir`` (the per-cell ones by ``draw``: a
    :func:`harness.report.workers.pool`'s map, or in this process)."""
    everything = [r for s in report.scenarios for r in s.records]
    palette = plots.Palette(everything)  # one colour per version across the page
    figures = {
        s.name: [Markup(f) for f in plots.figures(run_dir, s.name, s.records, palette, draw)]
        for s in report.scenarios
    }
    template = _environment("html").get_template("report.html.j2")
    return template.render(
        r=report,
        headers=model.VERDICT_HEADERS,
        rows=list(zip(report.found, report.verdict_rows, strict=True)),
        figures=figures,
        css=Markup(CSS),
        text=markdown_of(report) if text is None else text,
    )


# index.md's first line as the template writes it: an index.md that opens otherwise
# is someone's own file in the folder that holds the run, not the harness's.
INDEX_HEAD = "# Runs"


def _index_is_ours(path: Path) -> bool:
    """No index.md yet, or a regular file (not a link, FIFO or folder) that opens with
    :data:`INDEX_HEAD`."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return True
    if not stat.S_ISREG(mode):
        return False
    with path.open("rb") as text:
        return text.readline(len(INDEX_HEAD) + 2).rstrip(b"\r\n") == INDEX_HEAD.encode()


def write_index(results_dir: Path) -> bool:
    """results/index.md: every run with its verdicts (harness.report.model.index):
    regressions, improvements, changes and small changes in words, then how many
    comparisons show no significant change. A run folder may lie anywhere (a shared one
    unpacked in Downloads): an index.md there that is not the harness's is left as it is
    (False), never overwritten."""
    path = results_dir / "index.md"
    if not _index_is_ours(path):
        return False
    template = _environment("md").get_template("index.md.j2")
    path.write_text(template.render(entries=model.index(results_dir)))
    return True
