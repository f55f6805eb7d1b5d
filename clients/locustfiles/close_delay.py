"""Close-delay probe as a Locust run: one user runs probe.run_probes once, then ends the run.

Run it as ``locust -f close_delay.py --headless -u 1 -r 1 --run-time <cap>``; the
run stops by itself when the probes are done (--run-time is only a safety cap).

Knobs (environment, set per cell by the harness; defaults as in probe.py):
  PROBE_HOST [haproxy]   PROBE_PORT [8080, or 8443 with TLS]   PROBE_TLS [off | 1.2 | 1.3]
  PROBE_VARIANT [fin]    PROBE_CONNECTIONS [1]    PROBE_CONCURRENCY [= connections]
  PROBE_REQUESTS [1]     PROBE_PATH [/]           PROBE_RCVBUF [0]
  PROBE_READ_PAUSE_MS [0]   PROBE_STALL_MS [0]    PROBE_DEADLINE_S [30]
  PROBE_CONNECT_TIMEOUT_S [5]   PROBE_BODY_BYTES [0]   PROBE_CHUNKED [off | on]
  PROBE_OUT [/out/probe.jsonl]
  PROBE_FAIL_ON [open,error]     end types reported to Locust as failures
  PROBE_SWEEP [none]   NAME=V1,V2,...: one backend query parameter swept across the
                       connections: PROBE_CONNECTIONS per value, PROBE_CONCURRENCY at
                       once over the whole sweep, the values interleaved; each sample
                       records its value under "sweep" (a single value is a sweep too)

Each connection becomes one Locust request event (type "close-delay", name = the
variant, response time = the close delay in ms, length = body bytes), so Locust's
own stats carry the distribution next to the probe's JSONL file.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import fields, replace
from typing import Any

import gevent
from locust import User, constant, events, task
from locust.exception import StopUser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # probe.py sits beside us

import probe

ENV_PREFIX = "PROBE_"
WHAT = {int: "an integer", float: "a number", bool: "on or off"}
NUMBERS: dict[str, type] = {
    "port": int,
    "connections": int,
    "concurrency": int,
    "requests": int,
    "rcvbuf": int,
    "body_bytes": int,
    "read_pause_ms": float,
    "stall_ms": float,
    "stagger_ms": float,
    "deadline_s": float,
    "connect_timeout_s": float,
    "chunked": bool,
}
ON_OFF = {"on": True, "off": False}


def _on_off(raw: str) -> bool:
    """PROBE_CHUNKED's value: exactly "on" or "off" (ValueError otherwise)."""
    if raw not in ON_OFF:
        raise ValueError(raw)
    return ON_OFF[raw]


def config_from_env(env: Mapping[str, str]) -> probe.ProbeConfig:
    """ProbeConfig from PROBE_* variables; ValueError names the bad variable."""
    values: dict[str, Any] = {"host": "haproxy"}
    for f in fields(probe.ProbeConfig):
        name = ENV_PREFIX + f.name.upper()
        raw = env.get(name, "").strip()
        if not raw:
            continue
        convert = NUMBERS.get(f.name, str)
        try:
            values[f.name] = _on_off(raw) if convert is bool else convert(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not {WHAT[convert]}") from None
    cfg = probe.ProbeConfig(**values)
    try:
        cfg.validate()
    except ValueError as exc:  # the message names CLI flags: name the variables instead
        text = str(exc)
        for f in fields(probe.ProbeConfig):
            flag = "--" + f.name.replace("_", "-")
            text = text.replace(flag, ENV_PREFIX + f.name.upper())
        raise ValueError(text) from None
    return cfg


def _fail_on(env: Mapping[str, str]) -> frozenset[str]:
    raw = env.get(ENV_PREFIX + "FAIL_ON", "open,error")
    ends = frozenset(e.strip() for e in raw.split(",") if e.strip())
    unknown = ends - set(probe.ENDS)
    if unknown:
        raise ValueError(
            f"{ENV_PREFIX}FAIL_ON: unknown end type(s) {', '.join(sorted(unknown))} "
            f"(expected {', '.join(probe.ENDS)})"
        )
    return ends


# Read at import so that a bad setting stops locust before anything runs, with exit code 2.
try:
    CONFIG = config_from_env(os.environ)
    FAIL_ON = _fail_on(os.environ)
except ValueError as _exc:
    print(f"close_delay: {_exc}", file=sys.stderr)
    sys.exit(2)
OUT = os.environ.get(ENV_PREFIX + "OUT", "/out/probe.jsonl")


def sweep_configs(
    cfg: probe.ProbeConfig, raw: str
) -> list[tuple[dict[str, int], probe.ProbeConfig]]:
    """One config per swept value (the value appended to the path's query), or just cfg."""
    if not raw:
        return [({}, cfg)]
    name, _, values = raw.partition("=")
    joiner = "&" if "?" in cfg.path else "?"
    return [
        ({name: int(v)}, replace(cfg, path=f"{cfg.path}{joiner}{name}={int(v)}"))
        for v in values.split(",")
    ]


def sweep_jobs(
    sweep: list[tuple[dict[str, int], probe.ProbeConfig]],
) -> list[tuple[dict[str, int], probe.ProbeConfig]]:
    """Every connection of a sweep, round-robin over the values (a, b, c, a, b, c, ...):
    whatever the concurrency, each value meets the same neighbours and the same load."""
    rounds = max((cfg.connections for _, cfg in sweep), default=0)
    return [(value, cfg) for i in range(rounds) for value, cfg in sweep if i < cfg.connections]


def run_sweep(
    sweep: list[tuple[dict[str, int], probe.ProbeConfig]],
    concurrency: int,
    stagger_ms: float,
    record: Callable[[dict[str, int], dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Run sweep_jobs(sweep), at most `concurrency` connections at once (threads, or
    greenlets under gevent); record(value, sample) as each ends, in the caller's thread.
    The first wave starts stagger_ms apart; later connections start as slots free up."""
    jobs = sweep_jobs(sweep)

    def one(index: int, cfg: probe.ProbeConfig) -> dict[str, Any]:
        if stagger_ms and index < concurrency:
            time.sleep(index * stagger_ms / 1000.0)
        return probe.probe_once(cfg)

    samples: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(one, i, cfg): value for i, (value, cfg) in enumerate(jobs)}
        for future in as_completed(futures):
            sample = future.result()
            sample["sweep"] = futures[future]
            samples.append(sample)
            record(futures[future], sample)
    return samples


SWEEP_RAW = os.environ.get(ENV_PREFIX + "SWEEP", "").strip()
try:
    SWEEP = sweep_configs(CONFIG, SWEEP_RAW)
except ValueError as _exc:
    print(f"close_delay: PROBE_SWEEP: {_exc}", file=sys.stderr)
    sys.exit(2)


class ProbeEndError(Exception):
    """How a connection ended, when that end type counts as a failure (PROBE_FAIL_ON)."""


def quiet_gc() -> None:
    """No garbage-collector pause while connections are being timed.

    A full collection walks every object Locust and gevent keep alive and stops the
    event loop while it does: 12-28 ms here, once or twice per probe run, and a close
    that lands in it is timed that much late. What exists now is frozen out of the
    collector's reach and collection is off for the rest of the run: a probe run is
    bounded, and the few cycles it makes (exception tracebacks) go with the process.
    """
    gc.collect()
    gc.freeze()
    gc.disable()


class CloseDelayUser(User):
    wait_time = constant(0)
    _claimed = False  # class-wide: with -u > 1 only the first user probes

    @task
    def probe_all(self) -> None:
        if CloseDelayUser._claimed:
            raise StopUser()
        CloseDelayUser._claimed = True
        quiet_gc()
        try:
            # A sweep of one value is still a sweep: its value must reach the backend.
            if not SWEEP_RAW:
                probe.run_to_files(CONFIG, OUT, None, self._report)
            else:
                self._sweep()
        finally:
            # quit() kills every user greenlet, this one included: run it from its own
            # greenlet and leave this task cleanly. Locust then writes its stats and exits.
            gevent.spawn(self.environment.runner.quit)
        raise StopUser()

    def _sweep(self) -> None:
        """Every swept value's connections, CONFIG's concurrency at once, in one JSONL file."""
        with open(OUT, "w") as out:

            def record(value: dict[str, int], sample: dict[str, Any]) -> None:
                out.write(json.dumps(sample) + "\n")
                out.flush()
                self._report(sample)

            run_sweep(SWEEP, CONFIG.effective_concurrency, CONFIG.stagger_ms, record)

    def _report(self, sample: dict[str, Any]) -> None:
        end = sample["end"]
        exception = None
        if end in FAIL_ON:
            detail = f": {sample['error']}" if sample.get("error") else ""
            exception = ProbeEndError(f"end {end}{detail}")
        self.environment.events.request.fire(
            request_type="close-delay",
            name=sample["variant"],
            # Locust's histogram cannot take a negative time (the peer closed first).
            response_time=max(sample["delay_ms"] or 0.0, 0.0),
            response_length=sample["bytes"],
            exception=exception,
            context=sample,
        )


@events.test_start.add_listener
def _announce(environment: Any, **_kwargs: Any) -> None:
    logging.getLogger(__name__).info("close-delay probe: %s -> %s", probe.config_dict(CONFIG), OUT)
