"""The CPU budget that says whether Locust's workers can beat one process on a host
(scripts/bench_generators.py, part 3; issue 15). No Docker."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_generators.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_generators", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(rps: float, client: float, cpus: int, other: float = 0.0) -> dict[str, float]:
    # HAProxy + backend 0.3 core and softirq 0.1 at `rps`: 50 µs a request beside Locust's
    return {"rps": rps, "client": client, "stack": 0.3, "softirq": 0.1, "observers": 0.2,
            "idle": 0.0, "other": other, "cpus": cpus}  # fmt: skip


def test_on_two_cores_the_budget_leaves_the_workers_little_and_on_eight_their_share():
    bench = _bench()
    two = bench.budget([_run(8000, 0.8, 2), _run(8000, 0.8, 2), _run(4000, 0.4, 2)])
    assert two["client_us"] == pytest.approx(100) and two["stack_us"] == pytest.approx(50)
    assert two["ceiling"] == pytest.approx((2 - 0.2) / 150e-6)  # 12,000 req/s for all
    assert two["one"] == pytest.approx(10_000)  # one process on its one core
    assert two["gain"] == pytest.approx(1.2)
    assert two["gain"] < bench.DIST_BUDGET_MIN  # reported, not held to the target
    eight = bench.budget([_run(8000, 0.8, 8)])
    # the CPUs would carry 52,000 req/s: the workers' own cores are the limit, 2x
    assert eight["gain"] == pytest.approx(bench.DIST_WORKERS)
    assert eight["gain"] >= bench.DIST_BUDGET_MIN


def test_cpu_that_other_work_took_is_not_in_the_budget():
    bench = _bench()
    busy = bench.budget([_run(8000, 0.8, 2, other=0.9)])
    assert busy["ceiling"] == pytest.approx((2 - 0.2 - 0.9) / 150e-6)  # 6,000 req/s
    assert busy["gain"] == pytest.approx(0.6)  # below one process's own ceiling
    assert bench.budget([_run(8000, 0.8, 2, other=5.0)])["ceiling"] == 0.0
