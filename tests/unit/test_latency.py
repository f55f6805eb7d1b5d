"""Load latency at µs resolution (issue 11, point 4): the client's HDR histogram read on
the host, percentiles by the one nearest-rank definition, verdicts on µs samples, and
Locust's whole-ms buckets only as the marked fallback for runs recorded before."""

import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from harness import ROOT
from harness.analyse import cell_metrics, distribution, latency, locust_stats
from harness.analyse.compare import Thresholds
from harness.analyse.record import CellRecord
from harness.analyse.record import cells as load_cells
from harness.report import render, tidy
from harness.report import tables as report
from harness.stack import images
from tests import records

RECORDED = Path(__file__).resolve().parents[1] / "data" / "run-half-close-keepalive"
OLD_CELL = RECORDED / "003-keepalive-vs-close-2.2.9-debian-bullseye-17b307-r1"
OLD, NEW = ("debian:bullseye", "2.2.9"), ("debian:trixie", "3.0.11")


def _hdr(latencies_us: list[int]) -> str:
    """An encoded histogram of the shape the locustfile records."""
    histogram = HdrHistogram(latency.LOWEST_US, latency.HIGHEST_US, latency.SIGNIFICANT_DIGITS)
    for value in latencies_us:
        histogram.record_value(value)
    return histogram.encode().decode("ascii") + "\n"


def _locust_json(latencies_ms: list[float], name: str = "GET") -> list[dict[str, Any]]:
    """Locust's own entry for these requests: it rounds each time to whole ms below 100."""
    buckets: dict[str, int] = {}
    for ms in latencies_ms:
        buckets[str(round(ms))] = buckets.get(str(round(ms)), 0) + 1
    return [{
        "name": name, "num_requests": len(latencies_ms), "num_failures": 0,
        "start_time": 1000.0, "last_request_timestamp": 1010.0,
        "total_response_time": sum(latencies_ms), "max_response_time": max(latencies_ms),
        "response_times": buckets,
    }]  # fmt: skip


def _folder(path: Path, latencies_us: list[int], hdr: bool = True) -> Path:
    path.mkdir(parents=True)
    ms = [us / 1000 for us in latencies_us]
    (path / "locust.json").write_text(json.dumps(_locust_json(ms)))
    if hdr:
        (path / latency.HDR_FILE).write_text(_hdr(latencies_us))
    return path


# --- reading the histogram -------------------------------------------------------------------


def test_sub_ms_percentiles_come_from_the_hdr_file(tmp_path):
    folder = _folder(tmp_path / "cell", [250] * 100 + [12_345])
    values, counts = latency.read_hdr(folder / latency.HDR_FILE)
    assert values.tolist() == [0.25, 12.351] and counts.tolist() == [100, 1]
    load = cell_metrics.compute(folder).load
    assert load.p50_ms == 0.25 and load.p90_ms == 0.25 and load.p99_ms == 0.25
    # 12.345 ms lands in an 8 µs bucket, reported as its top: within 0.1 %
    assert load.max_ms == 12.351 and abs(load.max_ms - 12.345) / 12.345 < 1e-3
    assert load.mean_ms == round((100 * 0.25 + 12.351) / 101, 3)
    assert load.latency_count == 101 == load.requests
    assert load.latency_source == latency.SOURCE_HDR
    # Locust's own buckets of the same requests: 0.25 ms was rounded to 0
    assert locust_stats.aggregated(folder / "locust.json")["p50_ms"] == 0.0


def test_hdr_percentiles_are_the_one_nearest_rank_definition(tmp_path):
    rng = np.random.default_rng(7)
    us = rng.integers(50, 5000, size=2001).tolist()
    folder = _folder(tmp_path / "cell", us)
    values, counts = latency.read_hdr(folder / latency.HDR_FILE)
    expanded = np.repeat(values, counts)
    got = latency.summary(values, counts)
    for key, q in latency.PERCENTILES.items():
        assert got[key] == round(distribution.nearest_rank(expanded, q), 3)
        exact = distribution.nearest_rank([u / 1000 for u in us], q)
        assert abs(got[key] - exact) <= exact * 1e-3  # HDR-quantised: within 0.1 %
    assert got["count"] == 2001


def test_weighted_quantiles_equal_the_expanded_sample():
    values, counts = [0.2, 0.5, 3.0], [5, 1, 4]
    expanded = [0.2] * 5 + [0.5] + [3.0] * 4
    qs = [0.1, 0.5, 0.55, 0.6, 0.61, 0.9, 1.0]
    assert distribution.weighted_quantiles(values, counts, qs) == [
        distribution.nearest_rank(expanded, q) for q in qs
    ]
    with pytest.raises(ValueError, match="empty histogram"):
        distribution.weighted_quantiles([1.0], [0], [0.5])


def test_an_empty_hdr_file_has_no_latency(tmp_path):
    folder = _folder(tmp_path / "cell", [300])
    (folder / latency.HDR_FILE).write_text(_hdr([]))
    load = cell_metrics.compute(folder).load
    assert load.latency_count == 0 and load.p50_ms is None and load.max_ms is None


def test_a_file_that_is_no_histogram_is_refused_by_name(tmp_path):
    folder = _folder(tmp_path / "cell", [300])
    (folder / latency.HDR_FILE).write_text("HISTFAAAA-not-base64\n")
    with pytest.raises(ValueError, match=r"latency.hdr: not an encoded HdrHistogram"):
        cell_metrics.compute(folder)


def test_a_killed_client_still_gets_its_hdr_latency(tmp_path):
    # No locust.json (the client never quit), the periodic CSV and the last second's file.
    folder = tmp_path / "cell"
    folder.mkdir()
    shutil.copy(OLD_CELL / "locust_stats.csv", folder / "locust_stats.csv")
    (folder / latency.HDR_FILE).write_text(_hdr([400, 500, 600]))
    load = cell_metrics.compute(folder).load
    assert load.source.startswith("locust_stats.csv")
    assert load.p50_ms == 0.5 and load.latency_source == latency.SOURCE_HDR


def test_an_old_folder_with_only_locust_json_still_reports(tmp_path):
    # Recorded before latency.hdr: Locust's whole-ms buckets, and the record says so.
    assert not (OLD_CELL / latency.HDR_FILE).exists()
    load = cell_metrics.compute(OLD_CELL).load
    assert load.requests == 19517 and load.latency_source == latency.SOURCE_LOCUST
    assert load.p50_ms == 1.0 and float(load.p99_ms).is_integer()
    values, source = latency.samples(OLD_CELL)
    assert source == latency.SOURCE_LOCUST and len(values) == 19517


def test_open_loop_fallback_reads_only_the_intended_latencies(tmp_path):
    folder = tmp_path / "cell"
    folder.mkdir()
    entries = _locust_json([1.0] * 10) + _locust_json([40.0] * 10, name="intended")
    (folder / "locust.json").write_text(json.dumps(entries))
    values, source = latency.samples(folder)
    assert values == [40.0] * 10 and source == latency.SOURCE_LOCUST
    assert cell_metrics.compute(folder).load.p50_ms == 40.0


# --- verdicts on µs samples ------------------------------------------------------------------


def _record(
    run_dir: Path, n: int, version: tuple[str, str], us: list[int], hdr: bool
) -> CellRecord:
    name = f"{n:03d}-smoke-{version[0].replace(':', '-')}-r1"
    _folder(run_dir / name, us, hdr=hdr)
    return records.make({
        "cell": name, "status": "ok", "scenario": "smoke", "repetition": 1,
        "version": {"spec": version[0], "label": version[1]}, "params": {},
        "load": {"mode": "closed-loop", "users": 10, "duration_s": 5},
        "metrics": {"load": cell_metrics.compute(run_dir / name).load},
    })  # fmt: skip


def _verdict(tmp_path: Path, base_us: list[int], cand_us: list[int], hdr: bool):
    run_dir = tmp_path / ("hdr" if hdr else "buckets")
    cells = [_record(run_dir, 1, OLD, base_us, hdr), _record(run_dir, 2, NEW, cand_us, hdr)]
    [found] = report.comparisons(run_dir, cells, OLD[0], Thresholds())
    return found, render.markdown(
        run_dir, cells, [found], records.manifest({"baseline": OLD[0], "matrix": {"name": "x"}})
    )


def test_a_2x_sub_ms_latency_difference_is_seen_only_at_us_resolution(tmp_path):
    rng = np.random.default_rng(11)
    fast = (200 + rng.integers(-40, 40, size=400)).tolist()  # ~0.2 ms
    slow = (400 + rng.integers(-60, 60, size=400)).tolist()  # ~0.4 ms: 2x
    found, text = _verdict(tmp_path, fast, slow, hdr=True)
    # significant and fully separated; below the 1 ms floor every duration verdict has
    assert found.p_value < 1e-6 and found.effect == 1.0
    assert found.verdict == "small change", found.words
    assert "+0.2 ms in p50" in found.words and "Locust" not in found.words
    # The table shows the µs, not 0 ms.
    assert re.search(r"\| 0\.2\d\d ms +\|", text) and re.search(r"\| 0\.4\d\d ms +\|", text)
    # Locust's buckets of the very same requests: everything rounds to 0 ms, no difference.
    coarse, text = _verdict(tmp_path, fast, slow, hdr=False)
    assert coarse.verdict == "no significant change", coarse.words
    assert "latency from Locust's whole-ms buckets in 1 of 1 cells" in coarse.words
    assert "| 0.000 ms" in text


def test_whole_ms_buckets_turned_0_3_against_0_6_ms_into_a_1_ms_change(tmp_path):
    # Locust rounds 0.3 to 0 and 0.6 to 1: a 0.3 ms shift read as a whole millisecond
    # (a regression under the 1 ms floor, before a claim on one cell each needed 1 s).
    rng = np.random.default_rng(12)
    base = (300 + rng.integers(-30, 30, size=400)).tolist()
    cand = (600 + rng.integers(-60, 60, size=400)).tolist()
    coarse, fine = (_verdict(tmp_path, base, cand, hdr=h)[0] for h in (False, True))
    assert (coarse.delta, fine.delta) == ("+1.0 ms (p50)", "+0.3 ms (p50)")
    for found in (coarse, fine):
        assert found.verdict == "small change", found.words
        assert found.words.endswith("below the 1.0 s floor; one cell each; repeat with "
                                    "repetitions: 3 to confirm."), found.words  # fmt: skip


def test_recorded_old_run_verdicts_name_the_coarse_source(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(RECORDED, run_dir)
    found = report.comparisons(run_dir, load_cells(run_dir), "debian:bullseye", Thresholds())
    latency_verdicts = [c for c in found if c.metric.endswith("latency")]
    assert latency_verdicts
    for c in latency_verdicts:
        assert "latency from Locust's whole-ms buckets in 1 of 1 cells" in c.words, c.words


def test_latency_column_and_csv_keep_the_us(tmp_path):
    record = _record(tmp_path, 1, OLD, [412] * 10 + [1500], hdr=True)
    assert report._latency(record.m.load.p50_ms) == "0.412 ms"
    assert report._latency(1500.25) == "1.500 s" and report._latency(None) == "-"
    [row] = tidy.cell_rows([record], tmp_path.name)
    assert row["latency_p50_ms"] == 0.412 and row["latency_p99_ms"] == 1.5
    assert any(f.endswith("latency.hdr") for f in report.raw_files(tmp_path, record))


# --- the client image and the host read the same histogram -----------------------------------


def test_client_and_host_pin_the_same_hdrhistogram():
    client = (ROOT / "clients" / "requirements.txt").read_text()
    [client_pin] = re.findall(r"^hdrhistogram==(\S+)", client, re.M)
    host = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"hdrhistogram=={client_pin}" in host
    assert f"hdrhistogram=={client_pin}" in (ROOT / "requirements.lock").read_text()
    # ... and the locustfile records the shape the host reads back.
    locustfile = (ROOT / "clients" / "locustfiles" / "http_load.py").read_text()
    assert f"HIGHEST_US = {latency.HIGHEST_US:_}" in locustfile
    assert (
        f"HdrHistogram({latency.LOWEST_US}, HIGHEST_US, {latency.SIGNIFICANT_DIGITS})" in locustfile
    )


def test_a_changed_client_requirements_file_rebuilds_the_image(tmp_path):
    context = tmp_path / "clients"
    shutil.copytree(images.SUPPORT_IMAGES["client"], context)
    before = images.inputs_hash(context, {"BASE_IMAGE": "b"})
    requirements = context / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("0.10.8", "0.10.7"))
    assert images.inputs_hash(context, {"BASE_IMAGE": "b"}) != before


def test_backend_totals_are_taken_as_the_backend_counted_them(tmp_path):
    """The backend leaves its own /_stats query out of /_stats (backends/server.py
    MACHINERY); subtracting it again made every cell's backend counts one short."""
    (tmp_path / "timing.json").write_text(
        json.dumps({"load_start": 100.0, "load_end": 110.0, "drain_end": 111.0})
    )
    by_header = {"close new": 3, "none reused": 7}
    (tmp_path / "backend-stats.json").write_text(
        json.dumps({"connections": 4, "requests": 10, "by_header": by_header,
                    "by_port": {"8080": 6, "8083": 4}})
    )  # fmt: skip
    backend = cell_metrics.compute(tmp_path).backend
    assert backend is not None
    assert (backend.connections, backend.requests, backend.connections_per_s) == (4, 10, 0.4)
    assert backend.requests_by_header == by_header
    assert backend.requests_by_port == {"8080": 6, "8083": 4}


def test_read_hdr_gives_what_hdrhs_recorded_iterator_gives(tmp_path: Path) -> None:
    # read_hdr reads the counts array itself (the iterator walked every bucket in Python):
    # the same (value, count) pairs, from 1 µs to an hour, merged parts included.
    rng = np.random.default_rng(15)
    hist = HdrHistogram(latency.LOWEST_US, latency.HIGHEST_US, latency.SIGNIFICANT_DIGITS)
    for value in [1, 2, 1023, 1024, 2047, 2048, 3_599_999_999, *rng.lognormal(7, 2, 5000)]:
        hist.record_value(max(1, min(int(value), latency.HIGHEST_US)))
    path = tmp_path / latency.HDR_FILE
    path.write_bytes(hist.encode())
    expected = [
        (i.value_iterated_to / latency.US_PER_MS, i.count_at_value_iterated_to)
        for i in HdrHistogram.decode(path.read_bytes()).get_recorded_iterator()
    ]
    values, counts = latency.read_hdr(path)
    assert list(zip(values.tolist(), counts.tolist(), strict=True)) == expected
    both_v, both_c = latency.merged([(values, counts), (values[:3], counts[:3])])
    assert both_v.tolist() == values.tolist()
    assert both_c.tolist() == [c * 2 if i < 3 else c for i, c in enumerate(counts.tolist())]
