"""The calibration verdict: the probe against the wire and d, a late target, a stalled probe."""

from harness.analyse import calibration
from harness.analyse.record import CellRecord
from tests import records


def _record(d: float, pairs: list[tuple[float, float]]) -> CellRecord:
    diffs = sorted(abs(p - w) for p, w in pairs)
    return records.make({
        "status": "ok",
        "scenario": "calibration",
        "params": {"fin_delay_ms": d, "connections": len(pairs)},
        "metrics": {
            "probe": {
                "ends": {"fin": len(pairs)},
                "delay_ms": {"count": len(pairs), "p50": d, "max": max(p for p, _ in pairs)},
            },
            "wire": {"delay_ms": {"p50": d, "max": max(w for _, w in pairs)}},
            "probe_vs_wire": {
                "compared": len(pairs),
                "abs_diff_ms": {"p50": diffs[len(diffs) // 2], "max": diffs[-1]},
            },
            "calibration_pairs": [list(pair) for pair in pairs],
        },
    })  # fmt: skip


def _on_time(d: float, n: int = 20) -> list[tuple[float, float]]:
    return [(d + 0.3, d + 0.1)] * n


def test_on_time_passes():
    record = _record(1000, _on_time(1000))
    assert calibration.problems(record) == []
    assert calibration.target_late(record) == 0
    assert calibration.off_wire(record) == []
    assert "ok" in calibration.table([record])


def test_a_probe_that_agrees_with_an_on_time_wire_is_within_tolerance_of_d():
    # The judged connections' bound on |probe - d| follows from the two others.
    tol = calibration
    assert tol.ON_TIME_MS + tol.WIRE_TOLERANCE_MS == tol.PROBE_TOLERANCE_MS
    pairs = [*_on_time(50, 19), (54.9, 52.95)]  # wire 2.95 ms late, probe 1.95 ms past it
    assert calibration.problems(_record(50, pairs)) == []


def test_one_connection_off_the_wire_is_listed_and_passes():
    pairs = [*_on_time(0, 19), (3.0, 0.5)]
    record = _record(0, pairs)
    assert calibration.problems(record) == []
    assert calibration.off_wire(record) == [(3.0, 0.5)]
    assert calibration.off_wire_count(record) == "1 (up to 2.50 ms)"
    assert "1 (up to 2.50 ms)" in calibration.table([record])


def test_more_than_a_tenth_off_the_wire_fails_naming_each():
    pairs = [*_on_time(1000, 17), (1003.0, 1000.1), (1004.5, 1000.2), (1002.6, 1000.1)]
    [problem] = calibration.problems(_record(1000, pairs))
    assert "more than 2.0 ms on 3 of 20 connections" in problem
    assert "1003.00 vs 1000.10, 1004.50 vs 1000.20, 1002.60 vs 1000.10" in problem
    assert "OUT OF TOLERANCE" in calibration.table([_record(1000, pairs)])


def test_one_late_target_fin_is_not_the_probes_error():
    # The target sent one FIN 8.5 ms late (seen on the wire); the probe saw the same.
    pairs = [*_on_time(5000, 19), (5008.7, 5008.5)]
    record = _record(5000, pairs)
    assert calibration.problems(record) == []
    assert calibration.target_late(record) == 1
    assert "OUT OF TOLERANCE" not in calibration.table([record])


def test_a_mostly_late_target_makes_the_calibration_fail_as_inconclusive():
    pairs = [*_on_time(5000, 17), *[(5012.2, 5012.0)] * 3]
    [problem] = calibration.problems(_record(5000, pairs))
    assert "late on 3 of 20 connections (up to 12.0 ms" in problem
    assert "too busy" in problem


def test_missing_wire_samples_fail():
    record = _record(50, _on_time(50))
    record.m.probe_vs_wire.compared = 18
    [problem] = calibration.problems(record)
    assert "only 18 of 20 joined on the wire" in problem


def test_probe_ends_other_than_fin_fail():
    record = _record(50, _on_time(50))
    record.m.probe.ends = {"fin": 19, "open": 1}
    [problem] = calibration.problems(record)
    assert "expected 20 FIN" in problem


def test_each_row_and_problem_names_the_probe_load_it_ran_under():
    gentle = _record(50, _on_time(50))
    gentle.params.update(concurrency=20, stagger_ms=50)
    busy = _record(50, [*_on_time(50, 17), *[(53.5, 50.1)] * 3])
    busy.params.update(concurrency=20, stagger_ms=5)
    assert calibration.load(busy) == "20 at once, 5 ms apart"
    assert calibration.problems(gentle) == []
    [problem] = calibration.problems(busy)
    assert problem.startswith("d=50 ms, 20 at once, 5 ms apart: probe and wire differ")
    text = calibration.table([gentle, busy])
    assert "20 at once, 50 ms apart" in text and "20 at once, 5 ms apart" in text


def test_cells_recorded_before_the_load_was_a_parameter_ran_50_ms_apart():
    assert calibration.load(_record(0, _on_time(0))) == "20 at once, 50 ms apart"
