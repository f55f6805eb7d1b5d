"""The calibration verdict: the probe against d, the probe against the wire, a late target."""

from harness import calibration


def _record(d: float, pairs: list[tuple[float, float]]) -> dict:
    diffs = [abs(p - w) for p, w in pairs]
    return {
        "status": "ok",
        "scenario": "calibration",
        "params": {"fin_delay_ms": d, "connections": len(pairs)},
        "metrics": {
            "probe": {
                "ends": {"fin": len(pairs)},
                "delay_ms": {"count": len(pairs), "p50": d, "max": max(p for p, _ in pairs)},
            },
            "wire": {"delay_ms": {"p50": d, "max": max(w for _, w in pairs)}},
            "probe_vs_wire": {"compared": len(pairs), "abs_diff_ms": {"max": max(diffs)}},
            "calibration_pairs": [list(pair) for pair in pairs],
        },
    }


def _on_time(d: float, n: int = 20) -> list[tuple[float, float]]:
    return [(d + 0.3, d + 0.1)] * n


def test_on_time_passes():
    record = _record(1000, _on_time(1000))
    assert calibration.problems(record) == []
    assert calibration.target_late(record) == 0
    assert "ok" in calibration.table([record])


def test_probe_off_d_fails_even_when_it_matches_the_wire_of_a_punctual_target():
    pairs = [*_on_time(50, 19), (56.0, 54.5)]  # wire within 5 ms of d, probe 6 ms off
    [problem] = calibration.problems(_record(50, pairs))
    assert "probe off by up to 6.00 ms" in problem


def test_probe_far_from_the_wire_fails():
    pairs = [*_on_time(0, 19), (3.0, 0.5)]
    [problem] = calibration.problems(_record(0, pairs))
    assert "probe and wire differ by up to 2.50 ms" in problem


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
    record["metrics"]["probe_vs_wire"]["compared"] = 18
    [problem] = calibration.problems(record)
    assert "only 18 of 20 joined on the wire" in problem
