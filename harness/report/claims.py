"""Field note vs measured: each claim of a matrix's field note (``claims:``,
harness.plan.spec.Claim) next to the number measured and whether it held.

A claim names its cells by parameters, load settings and scenario name, and its
metric by one of ``spec.ClaimMetric``, read from the cell record as :data:`METRICS`
says. It is judged per HAProxy version (those it names, else every one): every cell's
value within the bound (or, with ``relative_to``, the ratio of the two groups' medians).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from harness.analyse.record import CellRecord
from harness.errors import SpecError
from harness.plan import versions as version_specs
from harness.plan.spec import Claim, ClaimMetric, claim_shared_cell, selects
from harness.report.tables import census_lasted_s, census_peak

HELD, NOT_HELD, UNMEASURED = "held", "did not hold", "not measured"
HEADERS = ["field note says", "HAProxy", "cells", "measured", "claim", "result"]


def _per_request(count: Callable[[CellRecord], float | None]) -> Callable[[CellRecord], Any]:
    def ratio(record: CellRecord) -> float | None:
        value, load = count(record), record.m.load
        return value / load.requests if value is not None and load and load.requests else None

    return ratio


def _load(name: str) -> Callable[[CellRecord], float | None]:
    return lambda r: getattr(r.m.load, name) if r.m.load else None


def _census_state(
    side: str, state: str, direction: str | None = None
) -> Callable[[CellRecord], float | None]:
    """The peak of one state (and direction: "out" from HAProxy's namespace is towards
    the backend, "in" from the client) in one namespace's census (tables.census_peak)."""
    return lambda r: census_peak(r, side, state, direction)


_time_wait_client = _census_state("client", "TIME-WAIT")


_CLOSE_WAIT_OUT = _census_state("haproxy", "CLOSE-WAIT", "out")
_FIN_WAIT_2_IN = _census_state("haproxy", "FIN-WAIT-2", "in")


def _pairing(record: CellRecord) -> float | None:
    """Seed 000's pairing: CLOSE-WAIT towards the backend per FIN-WAIT-2 towards the
    client, peak over peak (1: one to one); None when there was no FIN-WAIT-2."""
    close_wait, fin_wait_2 = _CLOSE_WAIT_OUT(record), _FIN_WAIT_2_IN(record)
    if close_wait is None or not fin_wait_2:
        return None
    return close_wait / fin_wait_2


def _sc_share(record: CellRecord) -> float | None:
    """The share of HAProxy's log lines whose termination state starts ``sC``: the
    server-side connect timeout struck (manual 8.5, "Session state at disconnection":
    s = server-side timeout, C = while waiting for the connection to establish)."""
    log = record.m.haproxy
    if log is None or not log.total:
        return None
    hits = sum(n for state, n in log.termination_states.items() if state.startswith("sC"))
    return hits / log.total


def _probe(read: Callable[[Any], float | None]) -> Callable[[CellRecord], float | None]:
    return lambda r: read(r.m.probe) if r.m.probe else None


METRICS: dict[str, Callable[[CellRecord], float | None]] = {
    "requests": _load("requests"),
    "failures": _load("failures"),
    "rps": _load("rps"),
    "ports-used": _load("ports"),
    "ports-per-request": _per_request(_load("ports")),
    "connections-per-request": _per_request(_load("connections")),
    "time-wait-client": _time_wait_client,
    "time-wait-client-per-request": _per_request(_time_wait_client),
    "close-wait-haproxy-backend": _CLOSE_WAIT_OUT,
    "close-wait-haproxy-backend-lasted-s": lambda r: census_lasted_s(
        r, "haproxy", "CLOSE-WAIT", "out"
    ),
    "fin-wait-2-haproxy-client": _FIN_WAIT_2_IN,
    "close-wait-per-fin-wait-2": _pairing,
    "sC-share": _sc_share,
    "stalled": _probe(lambda p: p.stalled),
    "stalled-share": _probe(lambda p: p.stalled / p.connections if p.connections else None),
    "close-delay-p50-ms": _probe(lambda p: p.delay_ms.p50),
    "close-delay-max-ms": _probe(lambda p: p.delay_ms.max),
}


@dataclass(frozen=True)
class ClaimRow:
    note: str
    version: str
    cells: int
    measured: str
    bound: str
    result: str

    def row(self) -> list[Any]:
        return [self.note, self.version, self.cells, self.measured, self.bound, self.result]


def read(matrix: dict[str, Any]) -> list[Claim]:
    """The claims of a run's matrix (run.json: untrusted, so validated again). Raises
    ValueError when they are not what the plan takes."""
    try:
        found = TypeAdapter(list[Claim]).validate_python(matrix.get("claims") or [])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ValueError(f"run.json matrix.claims.{where}: {first['msg']}") from None
    for i, claim in enumerate(found):
        try:  # by form only: nothing of a run folder is resolved on the reader's host
            for version in claim.versions or []:
                version_specs.check_recorded(version, "claims.versions")
        except SpecError as exc:
            raise ValueError(f"run.json matrix.claims.{i}.versions: {exc}") from None
    return found


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}"


def _within(value: float, claim: Claim) -> bool:
    if claim.at_least is not None and not value >= claim.at_least:
        return False
    return claim.at_most is None or value <= claim.at_most


def _bound(claim: Claim) -> str:
    what = claim.metric + (" ratio" if claim.relative_to else "")
    if claim.at_least is not None and claim.at_most is not None:
        return f"{_number(claim.at_least)} ≤ {what} ≤ {_number(claim.at_most)}"
    if claim.at_least is not None:
        return f"{what} ≥ {_number(claim.at_least)}"
    return f"{what} ≤ {_number(claim.at_most or 0)}"


def _values(claim: Claim, selector: dict[str, Any], rows: list[CellRecord]) -> list[float]:
    metric = METRICS[claim.metric]
    picked = [
        r for r in rows if r.ok and selects(selector, r.scenario, r.params, r.load.model_dump())
    ]
    return [v for v in map(metric, picked) if v is not None]


def evaluate(claims: list[Claim], records: list[CellRecord]) -> list[ClaimRow]:
    """One row per claim and version it is judged on (its ``versions``, else every
    version; in the records' order). A version named by a claim but with no cell is a
    row "not measured" (a version is matched as text, never resolved). Raises
    ValueError for a ratio claim whose two groups share a cell (the plan refuses it: a
    run.json edited to hold one would make its ratio 1, "held", whatever was measured).
    """
    out = []
    for i, claim in enumerate(claims):
        shared = claim_shared_cell(
            claim, ((r.cell, r.scenario, r.params, r.load.model_dump()) for r in records)
        )
        if shared is not None:
            raise ValueError(
                f"run.json matrix.claims.{i}: where and relative_to both name the cell "
                f"{shared}; a ratio of a group to cells of its own says nothing, and no "
                "matrix file the harness takes holds such a claim"
            )
        # as the plan recorded them: the cells' spec text (spec._resolved_claims)
        wanted = set(claim.versions) if claim.versions is not None else None
        judged = [r for r in records if wanted is None or r.version.spec in wanted]
        versions = list(dict.fromkeys(r.version.label for r in judged))
        # each version the claim names that no cell ran: a row of its own, so a claim
        # about two releases never reads as judged when one of them was not measured
        ran = {r.version.spec for r in judged}
        missing = [v for v in claim.versions or [] if v not in ran]
        if not versions and not missing:
            out.append(ClaimRow(claim.note, "", 0, "-", _bound(claim), UNMEASURED))
        for version in missing:
            out.append(ClaimRow(claim.note, version, 0, "-", _bound(claim), UNMEASURED))
        for version in versions:
            rows = [r for r in judged if r.version.label == version]
            values = _values(claim, claim.where, rows)
            if claim.relative_to is None:
                if not values:
                    out.append(ClaimRow(claim.note, version, 0, "-", _bound(claim), UNMEASURED))
                    continue
                low, high = min(values), max(values)
                text = _number(low) if low == high else f"{_number(low)}-{_number(high)}"
                held = all(_within(v, claim) for v in values)
                out.append(ClaimRow(claim.note, version, len(values), text, _bound(claim),
                                    HELD if held else NOT_HELD))  # fmt: skip
                continue
            base = _values(claim, claim.relative_to, rows)
            if not values or not base:
                out.append(ClaimRow(claim.note, version, len(values) + len(base), "-",
                                    _bound(claim), UNMEASURED))  # fmt: skip
                continue
            top, bottom = statistics.median(values), statistics.median(base)
            ratio = top / bottom if bottom else (math.inf if top > 0 else 1.0)
            shown = "∞" if math.isinf(ratio) else f"{ratio:.3g}"
            text = f"{shown}× ({_number(top)} / {_number(bottom)})"
            result = HELD if _within(ratio, claim) else NOT_HELD
            cells = len(values) + len(base)
            out.append(ClaimRow(claim.note, version, cells, text, _bound(claim), result))
    return out


def claim_metric_names() -> tuple[str, ...]:
    """Every metric a claim may name (the plan's ClaimMetric), for the test that each
    has a reader in :data:`METRICS`."""
    return ClaimMetric.__args__  # type: ignore[attr-defined]
