"""The matrix spec: a YAML file validated with pydantic, expanded into cells.

    name: default
    versions: [debian:bullseye, debian:bookworm, debian:trixie]
    repetitions: 1
    load: {users: 20, spawn_rate: 20, duration_s: 10}
    scenarios:
      - name: smoke
        params: {size: 128}          # overrides of the scenario's defaults
        grid: {keepalive: [true, false]}   # cartesian product, one cell per combination

Cells = versions × scenarios × grid × repetitions. An error names the file, the key,
its line, what was expected, and how to fix it.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import scenarios, versions
from harness.errors import SpecError
from harness.versions import VersionSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Load(_Strict):
    """Load shape of the Locust scenarios. ``closed``: ``users`` send back to back.
    ``open``: a fixed arrival rate, latency measured from the intended send time."""

    mode: Literal["closed", "open"] = "closed"
    users: int = Field(20, ge=1, le=1000, description="concurrent Locust users (closed loop)")
    spawn_rate: float = Field(20, gt=0, le=1000, description="users started per second")
    rate: float = Field(200, gt=0, le=100000, description="requests per second (open loop)")
    duration_s: float = Field(10, gt=0, le=600, description="load duration per cell")


class Verdicts(_Strict):
    """Thresholds for version-against-version verdicts (harness/analyse/compare.py)."""

    alpha: float = Field(0.01, gt=0, lt=1, description="significance level")
    min_effect: float = Field(0.3, ge=0, le=1, description="minimum |Cliff's delta|")
    min_ratio: float = Field(1.2, ge=1, description="minimum ratio of medians")
    min_rate_diff: float = Field(0.05, ge=0, le=1, description="minimum difference in rates")


class ScenarioEntry(_Strict):
    name: str
    params: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    # Run this entry on these versions only (default: all); e.g. a calibration cell once.
    versions: list[str] | None = None


class Matrix(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    versions: list[str] = Field(min_length=1)
    baseline: str | None = None
    repetitions: int = Field(1, ge=1, le=100)
    load: Load = Load()
    verdicts: Verdicts = Verdicts()
    scenarios: list[ScenarioEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Cell:
    """One experiment: a version, a scenario with its parameters, one repetition."""

    run_id: str
    index: int  # 1-based position in the run
    total: int
    version: VersionSpec
    scenario: str
    params: dict[str, Any] = field(hash=False)
    repetition: int
    load: Load = field(hash=False)

    @property
    def params_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.params.items())) or "-"

    @property
    def id(self) -> str:
        version = re.sub(r"[^A-Za-z0-9.]+", "-", self.version.label).strip("-")
        digest = hashlib.sha256(self.params_text.encode()).hexdigest()[:6]
        return f"{self.index:03d}-{self.scenario}-{version}-{digest}-r{self.repetition}"


@dataclass(frozen=True)
class Plan:
    matrix: Matrix
    source: Path | None
    versions: list[VersionSpec]
    cells: list[Cell]


def load(path: Path, run_id: str) -> Plan:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the matrix file ({exc.strerror}).") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return expand(raw, run_id, source=path, text=text)


def expand(raw: Any, run_id: str, source: Path | None = None, text: str = "") -> Plan:
    where = str(source) if source else "matrix"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a matrix file is a mapping with versions: and scenarios:.")
    try:
        matrix = Matrix.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_explain(exc, where, text)) from None

    specs = [versions.parse(v, f"{where}: versions[{i}]") for i, v in enumerate(matrix.versions)]
    if matrix.baseline is not None and matrix.baseline not in matrix.versions:
        raise SpecError(
            f"{where}{_line(text, ['baseline'])}: baseline {matrix.baseline!r} is not one of "
            f"versions ({', '.join(matrix.versions)}). Name one of them, or drop baseline:."
        )
    combos: list[tuple[str, dict[str, Any], list[str] | None]] = []
    for i, entry in enumerate(matrix.scenarios):
        at = f"{where}{_line(text, ['scenarios', i])}: scenarios[{i}]"
        scenario = scenarios.get(entry.name, at)
        clash = sorted(set(entry.params) & set(entry.grid))
        if clash:
            raise SpecError(f"{at}: {', '.join(clash)} is in both params and grid; keep one.")
        for key, values in entry.grid.items():
            if not values:
                raise SpecError(f"{at}: grid {key!r} is empty; list at least one value.")
        for version in entry.versions or []:
            if version not in matrix.versions:
                raise SpecError(
                    f"{at}: versions lists {version!r}, which is not in the matrix's versions "
                    f"({', '.join(matrix.versions)})."
                )
        keys = list(entry.grid)
        for values in itertools.product(*(entry.grid[k] for k in keys)):
            overrides = {**entry.params, **dict(zip(keys, values, strict=True))}
            combos.append((entry.name, scenario.resolve(overrides, at), entry.versions))

    planned = [
        (spec, name, params, rep)
        for (name, params, only), rep in itertools.product(combos, range(1, matrix.repetitions + 1))
        # Versions innermost, so a half-finished run still compares versions like for like.
        for spec, text in zip(specs, matrix.versions, strict=True)
        if only is None or text in only
    ]
    cells = [
        Cell(run_id, i, len(planned), spec, name, params, rep, matrix.load)
        for i, (spec, name, params, rep) in enumerate(planned, start=1)
    ]
    return Plan(matrix, source, specs, cells)


def _explain(exc: ValidationError, where: str, text: str) -> str:
    lines = [f"{where}: the matrix is not valid:"]
    for err in exc.errors():
        path = list(err["loc"])
        key = ".".join(str(p) for p in path) or "(top level)"
        got = err.get("input")
        hint = {
            "extra_forbidden": "remove it or check its spelling",
            "missing": "add it",
        }.get(err["type"], "fix the value")
        lines.append(f"  {key}{_line(text, path)}: {err['msg']} (got {got!r}); {hint}.")
    return "\n".join(lines)


def _line(text: str, path: list[Any]) -> str:
    """' (line N)' for a key path in the YAML text, or '' when it cannot be located."""
    if not text:
        return ""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return ""
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == str(part)]
            if not match:
                return f" (line {node.start_mark.line + 1})"
            node = match[0]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
    return f" (line {node.start_mark.line + 1})" if node is not None else ""


def single(version: str, scenario: str, run_id: str, load: Load | None = None) -> Plan:
    """The plan for one cell, as ``python -m harness run`` asks for it."""
    return expand(
        {
            "name": "single",
            "versions": [version],
            "scenarios": [{"name": scenario}],
            "load": (load or Load()).model_dump(),
        },
        run_id,
    )
