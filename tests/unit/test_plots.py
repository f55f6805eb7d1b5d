"""report.html from real recorded cells (tests/data/report): self-contained, escaped, robust.

The cells are real cell.json and probe.jsonl files: two chunked-stall cells (2.2.9 and
2.6.12, the latter stalling), a server-pool and a backend-closes-first cell with TCP-state
census, and a calibration cell that failed before it started.
"""

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from harness import results
from harness.analyse.compare import Thresholds
from harness.analyse.record import cells, load_run
from harness.report import render
from harness.report import tables as report

DATA = Path(__file__).parent.parent / "data" / "report"
VERDICTS = (
    "regression",
    "improvement",
    "changed",
    "small change",
    "no significant change",
    "inconclusive",
)
EVIL = "<script>alert(1)</script>"

RUN = {
    "run": "20261124T221017Z-plots",
    "cells": 5,
    "started": "2026-11-24T22:10:20+00:00",
    "baseline": "debian:bullseye",
    "matrix": {"name": "plots", "description": "", "verdicts": {}},
    "matrix_file": "/tmp/plots.yaml",
    "environment": {"kernel": "6.18", "cpu_count": 2, "tcp_sysctls": {"net.x": "1"}},
    "images": {"debian:bookworm": {"tag": "harness-haproxy:2.6.12-debian-bookworm"}},
}


def _run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / RUN["run"]
    shutil.copytree(DATA, run_dir)
    results.write_json(run_dir / "run.json", RUN)
    return run_dir


def _build(run_dir: Path, found=None) -> tuple[str, list]:
    run = load_run(run_dir / "run.json")
    records = cells(run_dir)
    if found is None:
        found = report.comparisons(run_dir, records, run.baseline, Thresholds())
    text = render.markdown(run_dir, records, found, run)
    return render.html(run_dir, records, found, run, text), found


@pytest.fixture
def page(tmp_path: Path) -> str:
    return _build(_run_dir(tmp_path))[0]


def test_self_contained(page: str) -> None:
    # Nothing the browser would fetch: no scripts, stylesheets, images, fonts or imports.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//|@import""", page, re.I)
    assert not re.search(r"<(?:script|link|img|iframe|object)\b", page, re.I)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page


def test_plots_inline(page: str) -> None:
    svgs = re.findall(r"<svg\b.*?</svg>", page, re.S)
    # chunked-stall: close delays + flags; server-pool: load + flags + census;
    # backend-closes-first: close delays + flags + census.
    assert len(svgs) == 8
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert "not drawn" not in page
    ids = re.findall(r'<svg[^>]* id="([^"]+)"', page)
    assert len(set(ids)) == len(ids) == len(svgs)  # one document: ids must not collide
    assert "close delay (log scale)" in page  # 0.1 ms closes next to a 2.6 s stall
    for state in ("TIME-WAIT/in", "FIN-WAIT-2/in", "ESTAB/out"):
        assert state in page


def test_tables_and_sections(page: str) -> None:
    for heading in ("chunked-stall", "server-pool", "backend-closes-first", "calibration"):
        assert f'<h2 id="s-{heading}">{heading}</h2>' in page
    assert '<td class="stall">STALL ' in page  # the per-chunk-size table
    assert "Field note:" in page
    assert "sD--: the server-side timeout expired" in page  # flags explained
    assert "<pre>HAProxy version 2.6.12-1+deb12u3" in page  # haproxy -vv head
    assert "services.backend.environment must be a mapping" in page  # the failed cell


def test_deterministic(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    assert _build(run_dir)[0] == _build(run_dir)[0]


def test_every_verdict_shown_and_colour_coded(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    found = _build(run_dir)[1]
    assert found  # 2.6.12 against 2.2.9, stalled connections
    found = [
        dataclasses.replace(found[0], verdict=v, words=f"{found[0].words[:40]} — {v}.")
        for v in VERDICTS
    ]
    page = _build(run_dir, found)[0]
    for verdict in VERDICTS:
        css = "v-" + verdict.replace(" ", "-")
        # Comparisons without a significant change are counted, not listed, at the top.
        assert (f'<li class="v {css}">' in page) == (verdict != "no significant change")
        assert f'<span class="verdict {css}">{verdict}</span>' in page
        assert f".{css} {{" in page  # and the stylesheet colours it


def test_run_strings_escaped(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    failed = run_dir / "001-calibration-2.6.12-debian-bookworm-22fcec-r1" / "cell.json"
    record = results.read_json(failed)
    record["error"] = f"{EVIL}\nsecond line {EVIL}"
    record["params"]["note"] = "<NOSRV> $x$"
    results.write_json(failed, record)
    ok = run_dir / "002-chunked-stall-2.6.12-debian-bookworm-89380d-r1" / "cell.json"
    record = results.read_json(ok)
    record["metrics"]["haproxy"]["termination_states"]["<b>x"] = 1
    # Set on one of two cells, so it varies: in tables, plot labels and legends.
    record["params"]["evil"] = EVIL
    results.write_json(ok, record)
    vv = run_dir / "002-chunked-stall-2.6.12-debian-bookworm-89380d-r1" / "haproxy-vv.txt"
    vv.write_text(f"{EVIL}\n{vv.read_text()}")

    page = _build(run_dir)[0]
    assert "<script" not in page and "<NOSRV>" not in page and "<b>x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    svgs = "".join(re.findall(r"<svg\b.*?</svg>", page, re.S))
    assert "evil=&lt;script&gt;alert(1)&lt;/script&gt;" in svgs  # matplotlib escapes too
    assert "&lt;NOSRV&gt; $x$" in page
    assert "&lt;b&gt;x" in page
    assert "not drawn" not in page


def test_missing_data_skips_plots(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    for cell in run_dir.glob("*/cell.json"):
        record = results.read_json(cell)
        if record["status"] == "ok":
            record["metrics"] = {}  # no census, no flags, no load numbers
            results.write_json(cell, record)
    for probe in run_dir.glob("*/probe.jsonl"):
        probe.unlink()
    page = _build(run_dir)[0]
    assert "<svg" not in page and "not drawn" not in page
    assert '<h2 id="s-chunked-stall">' in page


def test_only_failed_cells(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    for cell in run_dir.glob("*/cell.json"):
        if results.read_json(cell)["status"] == "ok":
            shutil.rmtree(cell.parent)
    page = _build(run_dir)[0]
    assert "0/1 cells measured" in page and '<h2 id="failed">' in page


def test_odd_probe_lines_tolerated(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    probe = run_dir / "001-chunked-stall-2.2.9-debian-bullseye-89380d-r1" / "probe.jsonl"
    # A client killed mid-write, and a connection still open at the deadline.
    probe.write_text(probe.read_text() + '{"end": "open", "delay_ms": null}\n{"end": "fi')
    page = _build(run_dir)[0]
    assert "n=25, 1 without a close" in page


def test_verdicts_first_in_their_order(tmp_path: Path) -> None:
    # Issue 11 point 2: the page opens with regressions and improvements, then small
    # changes, then the count of comparisons without a change; per-cell detail after.
    run_dir = _run_dir(tmp_path)
    found = _build(run_dir)[1]
    found = [
        dataclasses.replace(found[0], verdict=v, words=f"{found[0].words[:40]} — {v} {i}.")
        for i, v in enumerate(["no significant change", "small change", "regression"] * 2)
    ]
    page = _build(run_dir, found)[0]
    tally = "verdicts: 2 regressions, 0 improvements, 2 small changes, 2 no change"
    first = [page.index(t) for t in (tally, "— regression", "— small change", "No significant "
             "change: 2 comparisons", '<h2 id="s-chunked-stall">')]  # fmt: skip
    assert first == sorted(first)
    assert page.index('<li class="v v-regression">') < page.index('<li class="v v-small-change">')
