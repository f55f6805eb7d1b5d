"""Census figures are kept in the run folder under the sha256 of what they are drawn
from (issue 15: `harness report` in seconds); a change to any of it draws anew."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.analyse.record import cells
from harness.report import plots, workers

DATA = Path(__file__).parent.parent / "data" / "run-half-close-keepalive"


def test_a_census_figure_is_drawn_once_and_redrawn_when_its_inputs_change(tmp_path: Path):
    run_dir = Path(shutil.copytree(DATA, tmp_path / DATA.name))
    record = next(r for r in cells(run_dir) if r.ok and r.m.census)
    labels = {record.cell: "2.2.9 keepalive"}
    fresh = plots.census_plot(run_dir, record, labels)
    assert plots._census_cached(run_dir, record, labels) == fresh
    [kept] = (run_dir / plots.FIGURE_CACHE).iterdir()
    kept.write_text("<svg>kept</svg>")  # what a second report reads, not redraws
    assert plots._census_cached(run_dir, record, labels) == "<svg>kept</svg>"
    relabelled = {record.cell: "2.2.9 keep-alive on"}
    assert plots._census_cached(run_dir, record, relabelled) == plots.census_plot(
        run_dir, record, relabelled
    )
    census = dict(record.m.census or {})
    side = next(iter(census))
    census[side] = census[side].model_copy(update={"samples": census[side].samples + 1})
    changed = record.model_copy(update={"metrics": record.m.model_copy(update={"census": census})})
    assert plots._census_cached(run_dir, changed, labels) == fresh  # same drawing...
    assert len(list((run_dir / plots.FIGURE_CACHE).iterdir())) == 3  # ...drawn anew


def test_the_pool_maps_in_order_as_the_serial_map_does() -> None:
    with workers.pool(5) as each:
        assert each(abs, [-3, 1, -2, 0, 5]) == workers.serial(abs, [-3, 1, -2, 0, 5])


def test_a_figure_planted_in_a_run_folder_someone_sent_never_reaches_the_page(
    tmp_path: Path, monkeypatch
):
    # The page embeds a cached SVG as it is. The sender drew (and then edited) every
    # figure under their own key; under the reader's key none of those names exists.
    run_dir = Path(shutil.copytree(DATA, tmp_path / DATA.name))
    evil = "<svg><script>alert(document.domain)</script></svg>"
    records = [r for r in cells(run_dir) if r.ok and r.m.census]
    labels = {r.cell: r.cell for r in records}
    for home in ("sender", "reader"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / home))
        plots.cache_key.cache_clear()
        if home == "sender":
            for record in records:
                plots._census_cached(run_dir, record, labels)
            for planted in (run_dir / plots.FIGURE_CACHE).iterdir():
                planted.write_text(evil)
    for record in records:
        assert "<script>" not in plots._census_cached(run_dir, record, labels), record.cell
    # the reader's own entries are read back: drawn once, kept
    kept = {p.name for p in (run_dir / plots.FIGURE_CACHE).iterdir()}
    assert len(kept) == 2 * len(records)
    key = tmp_path / "reader" / "harness" / plots.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600
    plots.cache_key.cache_clear()
    assert plots.cache_key() == bytes.fromhex(key.read_text())


def test_without_a_writable_cache_home_a_figure_is_drawn_not_read(tmp_path: Path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # not a folder: no key file
    plots.cache_key.cache_clear()
    assert len(plots.cache_key()) == 32
    plots.cache_key.cache_clear()
