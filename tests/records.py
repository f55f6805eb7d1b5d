"""Cell records for unit tests: a test names the numbers it is about, as a partial
cell.json dict; ``make`` fills every other required field with an empty value and
validates the result as harness.analyse.record.CellRecord (lax, as the runner does)."""

from __future__ import annotations

import copy
from typing import Any

from harness.analyse.record import CellRecord, Metrics, RunManifest

EMPTY_DIST: dict[str, Any] = {"count": 0}
# What each part of the metrics needs besides what a test gives.
PART_DEFAULTS: dict[str, dict[str, Any]] = {
    "load": {"requests": 0, "failures": 0, "rps": 0.0},
    "probe": {
        "connections": 0, "delay_ms": EMPTY_DIST, "ends": {}, "complete": 0, "incomplete": 0,
        "stalled": 0, "bytes": EMPTY_DIST, "flags": {},
    },
    "wire": {"connections": 0, "end": {}, "first_closer": {}, "delay_ms": EMPTY_DIST},
    "probe_vs_wire": {
        "joined": 0, "probe_only": 0, "wire_only": 0, "compared": 0, "abs_diff_ms": EMPTY_DIST,
        "tolerance_ms": 2.0, "within_tolerance": 0, "end_mismatch": 0,
    },
    "haproxy": {
        "total": 0, "termination_states": {}, "status_codes": {}, "status_classes": {},
        "retries_total": 0, "redispatches": 0, "timers": {},
    },
    "haproxy_counters": {"info": {}, "servers": {}, "frontend_responses": {}},
    "client_failures": {"count": 0, "with_id": 0, "matched_in_log": 0},
    "backend": {"connections": 0, "requests": 0, "connections_per_s": 0.0},
    "client_limit": {
        "client_cores": 0.0, "client_ceiling_cores": 1.0, "bound_fraction": 0.8,
        "host_saturated_below_idle_cores": 0.1,
    },
}  # fmt: skip
CENSUS_SIDE: dict[str, Any] = {
    "samples": 0, "rate_hz": None, "max_gap_s": None, "captured_s": None, "states": {},
    "totals": {},
}  # fmt: skip
STATE: dict[str, Any] = {
    "baseline": 0, "peak": 0, "peak_at_s": None, "final": 0, "drain_s": None, "timeline": [],
}  # fmt: skip
TOTAL: dict[str, Any] = {"peak": 0, "peak_at_s": None, "final": 0}


def metrics(partial: dict[str, Any]) -> dict[str, Any]:
    """``partial`` metrics completed with empty values where a field is required."""
    out = copy.deepcopy(partial)
    for part, defaults in PART_DEFAULTS.items():
        if isinstance(out.get(part), dict):
            out[part] = {**defaults, **out[part]}
    for side, census in (out.get("census") or {}).items():
        census = out["census"][side] = {**CENSUS_SIDE, **census}
        census["states"] = {k: {**STATE, **v} for k, v in census["states"].items()}
        census["totals"] = {k: {**TOTAL, **v} for k, v in census["totals"].items()}
    return out


def make(partial: dict[str, Any]) -> CellRecord:
    """A CellRecord from a partial cell.json dict (see the module's docstring)."""
    data = copy.deepcopy(partial)
    version = data.get("version") or {}
    data["version"] = {
        "spec": "debian:bookworm", "label": version.get("spec", "2.6.12 (debian:bookworm)"),
        "origin": "", "custom": False, "reported": "", "image": "", "image_id": "", **version,
    }  # fmt: skip
    data.setdefault("cell", "001-cell")
    data.setdefault("index", 1)
    data.setdefault("run", "20261124T230400Z-test")
    data.setdefault("scenario", "smoke")
    data.setdefault("repetition", 1)
    data.setdefault("load", {"mode": "probe"})
    data.setdefault("started", "2026-11-24T23:04:20+00:00")
    data.setdefault("status", "ok")
    if isinstance(data.get("metrics"), dict):
        data["metrics"] = metrics(data["metrics"])
    return CellRecord.model_validate(data, strict=False)


def make_metrics(partial: dict[str, Any]) -> Metrics:
    """A Metrics from partial metrics (see :func:`metrics`)."""
    return Metrics.model_validate(metrics(partial), strict=False)


def manifest(partial: dict[str, Any]) -> RunManifest:
    """A RunManifest from a partial run.json dict: run, matrix, baseline, cells and
    started default to placeholders."""
    data = {
        "run": "20261124T230400Z-test", "matrix": {"name": "test"}, "baseline": "",
        "cells": 0, "started": "2026-11-24T23:04:20+00:00", **copy.deepcopy(partial),
    }  # fmt: skip
    return RunManifest.model_validate(data, strict=False)
