"""`harness report` keeps each cell's analysis and each figure in the run's cache (issue
15: <= 5 s on the default run) and trusts an entry only when its key is what the raw
files give now and this user's harness wrote it: a run folder comes from other people,
so an edited, foreign, renamed or garbled entry is computed again, never shown."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.analyse import cell_metrics
from harness.analyse.record import Metrics
from harness.report import cache, plots

DATA = Path(__file__).parent.parent / "data" / "run-half-close-keepalive"


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return Path(shutil.copytree(DATA, tmp_path / DATA.name))


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The cells cell_metrics.compute ran on, in this process."""
    seen: list[str] = []
    real = cell_metrics.compute

    def counting(folder: Path, target: str = "haproxy", in_flight: int | None = None) -> Metrics:
        seen.append(folder.name)
        return real(folder, target, in_flight)

    monkeypatch.setattr(cell_metrics, "compute", counting)
    return seen


def _cell(run_dir: Path) -> Path:
    return next(p.parent for p in sorted(run_dir.glob("*/cell.json")))


def _analysed(folder: Path) -> Metrics:
    metrics, entry_key = cache.analysed(folder, "haproxy")
    assert entry_key == cache.analysis_key(folder, "haproxy")
    return metrics


def _entries(run_dir: Path, kind: str) -> list[Path]:
    return sorted((run_dir / cache.CACHE_DIR).glob(f"{kind}-*"))


def _fresh(folder: Path) -> Metrics:
    payload = cell_metrics.compute(folder, "haproxy").model_dump_json(exclude_unset=True)
    return Metrics.model_validate_json(payload)


def test_a_cell_is_analysed_once_while_its_raw_files_are_unchanged(run_dir, computed):
    folder = _cell(run_dir)
    first = _analysed(folder)
    assert computed == [folder.name]
    assert _analysed(folder) == first  # kept
    assert computed == [folder.name]
    assert first == _fresh(folder)  # and what a computation gives
    with (folder / "haproxy.log").open("a") as log:  # a raw file changes: computed again
        log.write("not a log line\n")
    changed = _analysed(folder)
    assert computed[-1] == folder.name and len(computed) == 3
    assert changed.haproxy_unparsed_lines == (first.haproxy_unparsed_lines or 0) + 1


def test_the_runner_s_analysis_is_kept_for_the_report(run_dir, computed):
    folder = _cell(run_dir)
    cache.remember(folder, "haproxy", cell_metrics.compute(folder, "haproxy"))
    truth = _fresh(folder)
    computed.clear()
    assert _analysed(folder) == truth
    assert computed == []


def _tampered(run_dir: Path, entry: Path) -> dict[str, bytes]:
    """Ways a run folder's cache entry can have been changed since this user wrote it."""
    data = entry.read_bytes()
    tag, payload = data.split(b"\n", 1)
    lie = payload.replace(b'"requests":', b'"requests":1', 1)  # a valid record, wrong numbers
    assert lie != payload
    return {
        "payload edited": tag + b"\n" + lie,
        "tag and payload garbled": b"0" * len(tag) + b"\n" + lie,
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "no tag": payload,
        "binary": bytes(range(256)) * 4,
        "oversized": tag + b"\n" + payload + b" " * cache.MAX_ENTRY_BYTES,
    }


def test_a_tampered_analysis_entry_is_computed_again_not_shown(run_dir, computed):
    folder = _cell(run_dir)
    truth = _analysed(folder)
    [entry] = _entries(run_dir, cache.ANALYSIS)
    for how, data in _tampered(run_dir, entry).items():
        entry.write_bytes(data)
        computed.clear()
        assert _analysed(folder) == truth, how
        assert computed == [folder.name], how
        assert cache.read(run_dir, cache.ANALYSIS, entry.name.split("-", 1)[1]) is not None


def test_an_entry_written_by_another_user_or_for_another_cell_is_not_used(
    run_dir, computed, tmp_path, monkeypatch
):
    first, second = sorted(p.parent for p in run_dir.glob("*/cell.json"))[:2]
    # another user's harness (another secret) analysed the second cell: a genuine entry,
    # with its HMAC, under the very key this user's harness computes
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "someone-else"))
    truth = _analysed(second)
    [theirs] = _entries(run_dir, cache.ANALYSIS)
    lie = theirs.read_bytes().split(b"\n", 1)[1].replace(b'"requests":', b'"requests":1', 1)
    cache.write(run_dir, cache.ANALYSIS, cache.analysis_key(second, "haproxy"), lie)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    computed.clear()
    assert _analysed(second) == truth
    assert computed == [second.name]
    # this user's own authentic entry for the first cell, copied to the second's key
    _analysed(first)
    [mine] = [p for p in _entries(run_dir, cache.ANALYSIS) if p != theirs]
    shutil.copy(mine, theirs)
    computed.clear()
    assert _analysed(second) == truth
    assert computed == [second.name]


def test_an_authentic_entry_that_is_no_record_is_computed_again(run_dir, computed):
    folder = _cell(run_dir)
    truth = _analysed(folder)
    entry_key = cache.analysis_key(folder, "haproxy")
    for payload in (b"[]", b"{", b'{"load": "x"}', b"[" * 100_000):
        cache.write(run_dir, cache.ANALYSIS, entry_key, payload)
        assert _analysed(folder) == truth, payload[:10]


def test_without_a_usable_secret_nothing_is_kept_and_nothing_fails(
    run_dir, computed, tmp_path, monkeypatch
):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))  # no folder can be made
    folder = _cell(run_dir)
    assert cache.secret() is None
    assert _analysed(folder) == _analysed(folder)
    assert computed == [folder.name, folder.name]
    assert not (run_dir / cache.CACHE_DIR).exists()
    short = tmp_path / "short"
    (short / "harness").mkdir(parents=True)
    (short / "harness" / "cache-key").write_bytes(b"0123")  # not a key this harness made
    monkeypatch.setenv("XDG_CACHE_HOME", str(short))
    assert cache.secret() is None


def test_the_secret_is_the_user_s_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    secret = cache.secret()
    assert secret is not None and len(secret) == cache.SECRET_BYTES
    assert cache.secret_path().stat().st_mode & 0o777 == 0o600
    assert cache.secret() == secret


def test_a_report_made_again_reuses_everything_and_is_the_same(run_dir, computed):
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    outputs = ("report.md", "report.html", "results.json", "results.csv", "verdicts.json")
    first = {name: (run_dir / name).read_bytes() for name in outputs}
    assert _entries(run_dir, plots.FIGURE) and _entries(run_dir, cache.ANALYSIS)
    computed.clear()  # workers are forked: they count in their own copy, so by the cache
    mtimes = {p: p.stat().st_mtime_ns for p in (run_dir / cache.CACHE_DIR).iterdir()}
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    assert {name: (run_dir / name).read_bytes() for name in outputs} == first
    # nothing was drawn or computed again: no entry was written anew
    assert {p: p.stat().st_mtime_ns for p in (run_dir / cache.CACHE_DIR).iterdir()} == mtimes


def test_a_foreign_figure_never_reaches_report_html(run_dir):
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    clean = (run_dir / "report.html").read_text()
    figures = _entries(run_dir, plots.FIGURE)
    assert figures
    for entry in figures:  # each replaced by a script, as a hostile run folder would ship
        tag = entry.read_bytes().split(b"\n", 1)[0]
        entry.write_bytes(tag + b"\n<svg><script>alert(1)</script></svg>")
    assert cli.main(["report", str(run_dir)]) in (0, 3)
    page = (run_dir / "report.html").read_text()
    assert "<script>alert(1)" not in page
    assert page == clean


def test_the_in_flight_bound_is_part_of_an_analysis_key(run_dir, computed):
    """The client-vs-HAProxy check depends on the cell's load (cell.json, not hashed):
    another bound is another analysis, never the kept one."""
    folder = _cell(run_dir)
    keys = {cache.analysis_key(folder, "haproxy", bound) for bound in (None, 20, 21)}
    assert len(keys) == 3
    cache.analysed(folder, "haproxy", 20)
    cache.analysed(folder, "haproxy", 20)
    cache.analysed(folder, "haproxy", 21)
    assert computed == [folder.name, folder.name]


def _secret_in_child(path: str) -> bytes | None:
    return cache._secret_at(Path(path))


def test_processes_making_the_secret_at_once_all_get_the_same_one(tmp_path):
    """The report's forked workers may all ask for a secret not made yet: each gets the
    one that won, whole. (A worker that read it half-written kept nothing for its cells:
    test_a_report_made_again_reuses_everything_and_is_the_same failed on it now and then;
    the report now reads the secret before it forks.)"""
    import multiprocessing

    path = tmp_path / "harness" / "cache-key"
    cache._secret_at.cache_clear()
    for _ in range(5):
        if path.exists():
            path.unlink()
        with multiprocessing.get_context("fork").Pool(8) as pool:
            got = pool.map(_secret_in_child, [str(path)] * 32)
        assert None not in got and len(set(got)) == 1
        assert path.read_bytes() == got[0] and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["cache-key"]  # no partial left


def _worker_handlers(_: int) -> tuple[str, str]:
    import signal

    return str(signal.getsignal(signal.SIGTERM)), str(signal.getsignal(signal.SIGINT))


def test_report_workers_do_not_inherit_the_clis_raising_signal_handlers():
    """The CLI's handlers raise on SIGTERM/SIGINT; a forked worker interrupted inside
    multiprocessing's queue lock died holding it and its siblings hung for ever. The
    report's workers take SIGTERM's default back and leave SIGINT to the parent."""
    import signal

    from harness.report import workers
    from harness.stack.project import interrupt_on_signals

    assert len(os.sched_getaffinity(0)) > 1, "one core: the report forks no worker"
    interrupt_on_signals()  # what harness.cli.main does (the conftest restores them)
    with workers.pool(4) as map_:
        got = set(map_(_worker_handlers, range(8)))
    assert got == {(str(signal.SIG_DFL), str(signal.SIG_IGN))}
