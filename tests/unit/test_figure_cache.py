"""Census figures are kept in the run's cache under the sha256 of what they are drawn
from (issue 15: `harness report` in seconds); a change to any of it draws anew, and an
entry this user's harness did not write (harness.report.cache) is drawn anew too."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.analyse.record import cells
from harness.report import cache, plots, workers

DATA = Path(__file__).parent.parent / "data" / "run-half-close-keepalive"


def test_a_census_figure_is_drawn_once_and_redrawn_when_its_inputs_change(tmp_path: Path):
    run_dir = Path(shutil.copytree(DATA, tmp_path / DATA.name))
    record = next(r for r in cells(run_dir) if r.ok and r.m.census)
    labels = {record.cell: "2.2.9 keepalive"}
    fresh = plots.census_plot(run_dir, record, labels)
    assert plots._census_cached(run_dir, record, labels) == fresh
    [kept] = (run_dir / cache.CACHE_DIR).iterdir()
    entry_key = kept.name.split("-", 1)[1]
    cache.write(run_dir, plots.FIGURE, entry_key, b"<svg>kept</svg>")  # as this harness would
    assert plots._census_cached(run_dir, record, labels) == "<svg>kept</svg>"  # read, not drawn
    kept.write_bytes(kept.read_bytes().replace(b"kept", b"hers"))  # not this harness's
    assert plots._census_cached(run_dir, record, labels) == fresh
    relabelled = {record.cell: "2.2.9 keep-alive on"}
    assert plots._census_cached(run_dir, record, relabelled) == plots.census_plot(
        run_dir, record, relabelled
    )
    census = dict(record.m.census or {})
    side = next(iter(census))
    census[side] = census[side].model_copy(update={"samples": census[side].samples + 1})
    changed = record.model_copy(update={"metrics": record.m.model_copy(update={"census": census})})
    assert plots._census_cached(run_dir, changed, labels) == fresh  # same drawing...
    assert len(list((run_dir / cache.CACHE_DIR).iterdir())) == 3  # ...drawn anew


def test_the_pool_maps_in_order_as_the_serial_map_does() -> None:
    with workers.pool(5) as each:
        assert each(abs, [-3, 1, -2, 0, 5]) == workers.serial(abs, [-3, 1, -2, 0, 5])
