"""keepalive-race: its parameters are validated before anything runs, its knobs render
the directives it names, and the idle pool's watch is read from two censuses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness import cli
from harness.analyse.census import Census, pool_watch
from harness.errors import SpecError
from harness.plan import scenarios
from harness.runner import wait_drained

RACE = scenarios.SCENARIOS["keepalive-race"]


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    monkeypatch.setenv("HARNESS_RESULTS", str(folder))
    return folder


@pytest.mark.parametrize(
    "param, message",
    [
        ("retry_on=502", "retry_on"),
        ("retry_on=empty-response,conn-failure", "retry_on"),
        ("http_reuse=sometimes", "http_reuse"),
        ("backend_idle_ms=-1", "backend_idle_ms"),
        ("backend_max_requests=10000001", "backend_max_requests"),
        ("watch_s=121", "watch_s"),
        ("watch_s=-1", "watch_s"),
        ("pool_purge_delay=1s\n  server x 1.2.3.4:80", "not an HAProxy time value"),
        ("timeout_server=0s", "above 0"),
        ("wait_ms=1.5", "wait_ms"),
    ],
)
def test_a_bad_value_exits_2_before_any_stack(results_dir, capsys, monkeypatch, param, message):
    def no_stack(*args, **kwargs):
        raise AssertionError("a cell was started")

    monkeypatch.setattr(cli.runner, "execute", no_stack)
    argv = ["run", "--haproxy", "debian:bookworm", "--scenario", "keepalive-race"]
    assert cli.main([*argv, "--param", param]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not results_dir.exists() or not any(results_dir.iterdir())


def test_the_error_names_the_allowed_keywords():
    with pytest.raises(SpecError) as caught:
        RACE.resolve({"retry_on": "404"}, "m.yaml")
    assert "'empty-response'" in str(caught.value) and "'all-retryable-errors'" in str(caught.value)


def test_knobs_render_reuse_retry_on_and_the_backends_timers():
    knobs = RACE.knobs(
        RACE.resolve(
            {"retry_on": "empty-response", "http_reuse": "aggressive", "pool_purge_delay": "1s",
             "backend_idle_ms": 75, "backend_max_requests": 5, "watch_s": 30.0},
            "m.yaml",
        )
    )  # fmt: skip
    assert knobs.haproxy.http_reuse == "aggressive"
    assert knobs.haproxy.backend_lines == ("retry-on empty-response",)
    assert knobs.haproxy.server_options == "pool-purge-delay 1s"
    assert knobs.backend_env["BACKEND_IDLE_TIMEOUT_MS"] == "75"
    assert knobs.backend_env["BACKEND_MAX_REQUESTS"] == "5"
    assert knobs.drain_s == 30.0 and knobs.watch_pool
    # the defaults: no retry-on line, HAProxy's own pool-purge-delay, client Connection: close
    default = RACE.knobs(RACE.resolve({}, "m.yaml"))
    assert default.haproxy.backend_lines == () and default.haproxy.server_options == ""
    assert default.load.keepalive is False and default.haproxy.http_reuse == "always"


def _census(samples: list[tuple[float, dict[tuple[str, str], int]]]) -> Census:
    keys = sorted({k for _, counts in samples for k in counts})
    return Census(
        timestamps=[t for t, _ in samples],
        counts={k: [counts.get(k, 0) for _, counts in samples] for k in keys},
    )


EST, TW_OUT, TW_IN, CW = (
    ("ESTAB", "out"),
    ("TIME-WAIT", "out"),
    ("TIME-WAIT", "in"),
    (
        "CLOSE-WAIT",
        "out",
    ),
)


def test_pool_watch_says_when_and_by_whom_the_idle_pool_was_closed():
    # load from 10 to 20; 1 ESTAB out before the load (not the pool: the baseline)
    proxy = _census([
        (9.0, {EST: 1}), (15.0, {EST: 21}), (19.9, {EST: 21, TW_OUT: 4}),
        (21.0, {EST: 21, TW_OUT: 4}), (23.0, {EST: 6, CW: 15, TW_OUT: 4}),
        (23.1, {EST: 6, TW_OUT: 4}), (24.0, {EST: 3, TW_OUT: 7}), (30.0, {EST: 3, TW_OUT: 7}),
    ])  # fmt: skip
    backend = _census([
        (9.0, {}), (19.9, {TW_IN: 100}), (23.0, {TW_IN: 115}), (24.0, {TW_IN: 110}),
        (30.0, {TW_IN: 110}),
    ])  # fmt: skip
    watch = pool_watch(proxy, backend, load_start=10.0, load_end=20.0)
    assert watch == {
        "at_load_end": 20,  # above the baseline of 1
        "left": 2,
        "watched_s": 10.0,
        "last_change_s": 4.0,
        "closed_by_backend": 15,  # the fall at 24.0 (TIME-WAITs expiring) is not a close
        "closed_by_proxy": 3,
        "closed_without_time_wait": 0,
        "close_wait_peak": 15,
        "fin_wait_2_peak": 0,
    }


def test_a_pool_gone_without_time_wait_was_reset():
    # HAProxy's purge of its idle connections: the pool falls, no TIME-WAIT on either side
    proxy = _census([(9.0, {}), (19.9, {EST: 21}), (21.0, {EST: 10}), (25.0, {})])
    backend = _census([(9.0, {}), (25.0, {})])
    watch = pool_watch(proxy, backend, load_start=10.0, load_end=20.0)
    assert watch["at_load_end"] == 21 and watch["left"] == 0
    assert watch["closed_by_backend"] == watch["closed_by_proxy"] == 0
    assert watch["closed_without_time_wait"] == 21
    assert watch["last_change_s"] == 5.0


def test_pool_watch_of_a_census_that_ended_with_the_load_is_unknown():
    proxy = _census([(9.0, {EST: 1}), (19.0, {EST: 5})])
    assert set(pool_watch(proxy, proxy, 10.0, 20.0).values()) == {None}


def _write(folder: Path, side: str, samples: list[tuple[float, str]]) -> None:
    lines = ["# census v1 interval_s=0.1 listen_ports=8080,8443"]
    for ts, body in samples:
        lines += [f"S {ts:.6f}", *([body] if body else [])]
    (folder / f"census-{side}.txt").write_text("\n".join(lines) + "\n")


def test_watch_pool_holds_the_drain_until_the_idle_pool_is_closed(tmp_path: Path) -> None:
    now = time.time()
    _write(tmp_path, "client", [(now - 3, ""), (now + 0.1, "TIME-WAIT out 50")])
    _write(tmp_path, "haproxy", [(now - 3, ""), (now + 0.1, "ESTAB out 20")])
    _write(tmp_path, "backend", [(now - 3, ""), (now + 0.1, "ESTAB in 20")])
    # without: the pool is HAProxy's by design, drained at once
    assert wait_drained(tmp_path, "haproxy", now - 2, now, bound_s=5.0)
    started = time.monotonic()
    assert not wait_drained(tmp_path, "haproxy", now - 2, now, 0.3, watch_pool=True)
    assert time.monotonic() - started >= 0.3
    _write(tmp_path, "haproxy", [(now - 3, ""), (now + 0.2, "TIME-WAIT out 20")])
    _write(tmp_path, "backend", [(now - 3, ""), (now + 0.2, "")])
    assert wait_drained(tmp_path, "haproxy", now - 2, now, 5.0, watch_pool=True)
