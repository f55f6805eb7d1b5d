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

import difflib
import functools
import hashlib
import itertools
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from harness import ROOT
from harness.errors import SpecError
from harness.plan import scenarios, versions
from harness.plan.versions import VersionSpec
from harness.quote import shown


class _Strict(BaseModel):
    # NaN passes every bound (nan > 0 and nan <= 600 are both False, so neither fails)
    # and infinity passes an upper-unbounded one: refuse both outright.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Locust runs each user as a greenlet of one Python process; wrk holds one socket per
# connection in an event loop per thread, so it goes much further.
MAX_LOCUST_USERS = 1000
MAX_WRK_CONNECTIONS = 20000


class Load(_Strict):
    """Load shape of the load scenarios (the close-delay probe scenarios drive their own
    probe client). ``closed``: ``users`` send back to back. ``open``: a fixed arrival
    rate, latency measured from the intended send time (Locust only).

    ``generator``: ``locust`` (scripted users, one Python process: about 100 µs of CPU
    per request, so it runs out before HAProxy does on a small host; ``workers: N`` runs
    them in N processes under a master, Locust's distributed mode) or ``wrk`` (Debian's
    wrk 4.1: ``users`` connections over ``threads`` event-loop threads, about 17 µs per
    request). wrk is closed loop only: its latency is measured from each request's actual
    send, so a stall delays the requests behind it instead of showing as their latency
    (coordinated omission, Tene 2013); the open loop's intended-time latency needs Locust.

    Raises pydantic's ValidationError (a SpecError where the matrix is read) for an open
    loop with wrk, more Locust users than one process holds, or threads with Locust.
    """

    # Strict, as scenario parameters are (harness.plan.params.Params): "2" or a YAML 1.1
    # boolean (yes, on) is refused where a number goes, not read as 2 or 1.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    generator: Literal["locust", "wrk"] = "locust"
    mode: Literal["closed", "open"] = "closed"
    users: int = Field(
        20, ge=1, le=MAX_WRK_CONNECTIONS,
        description=f"concurrent Locust users, or wrk connections (closed loop; Locust at "
        f"most {MAX_LOCUST_USERS})",
    )  # fmt: skip
    spawn_rate: float = Field(20, gt=0, le=1000, description="users started per second")
    rate: float = Field(200, gt=0, le=100000, description="requests per second (open loop)")
    duration_s: float = Field(10, gt=0, le=600, description="load duration per cell (seconds)")
    threads: int | None = Field(
        None, ge=1, le=64, description="wrk's threads, each an event loop on one core"
    )
    workers: int | None = Field(
        None, ge=1, le=16,
        description="Locust worker processes under one master (distributed mode), each "
        "able to use one core",
    )  # fmt: skip

    @model_validator(mode="after")
    def _fits_generator(self) -> Load:
        if self.generator == "wrk" and self.mode == "open":
            raise ValueError(
                "mode: open needs generator: locust (wrk sends closed loop; its latency "
                "would hide a stall behind coordinated omission)"
            )
        if self.generator == "locust" and self.users > MAX_LOCUST_USERS:
            raise ValueError(
                f"users: {self.users} is more than one Locust process holds (at most "
                f"{MAX_LOCUST_USERS}); use generator: wrk for more connections"
            )
        if self.generator == "locust" and self.threads is not None:
            raise ValueError("threads: applies to generator: wrk only")
        if self.generator == "wrk" and self.workers is not None:
            raise ValueError("workers: applies to generator: locust only (wrk has threads:)")
        if self.mode == "closed" and self.users < self.processes:
            raise ValueError(
                f"users: {self.users} is fewer than workers: {self.processes}; a worker "
                "without a user sends nothing"
            )
        return self

    @property
    def processes(self) -> int:
        """Locust processes that run users: the workers, or the one local process."""
        return self.workers or 1

    @property
    def wrk_threads(self) -> int:
        """wrk's -t: the threads asked for, never more than the connections."""
        return min(self.threads or 1, self.users)


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
    # An empty list would run it nowhere: refused, not silently dropped.
    versions: list[str] | None = Field(None, min_length=1)


class Matrix(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    versions: list[str] = Field(min_length=1)
    baseline: str | None = None
    repetitions: int = Field(1, ge=1, le=100, description="cells per version and parameter set")
    load: Load = Load()
    verdicts: Verdicts = Verdicts()
    scenarios: list[ScenarioEntry] = Field(min_length=1)
    # A cell still running after this is killed, recorded as failed, and the run goes on.
    # Default: twice the cell's own load bound plus 5 minutes (runner.timeout_s).
    cell_timeout_s: float | None = Field(None, gt=0, le=86400)
    # Only the cells whose parameters have these values (``matrix --only KEY=VALUE``
    # writes it; run.json records it, so --resume finishes the same part). Each key must
    # be a parameter of one of the matrix's scenarios; a scenario without it is left out.
    select: dict[str, Any] = {}


def params_text(params: dict[str, Any], keys: list[str] | None = None) -> str:
    """Parameters as "key=value" words, sorted by key (or in the order of ``keys``, a
    missing one shown as None): the one text form of a cell's parameters."""
    keys = sorted(params) if keys is None else keys
    return " ".join(f"{k}={params.get(k)}" for k in keys)


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
        return params_text(self.params) or "-"

    @functools.cached_property
    def knobs(self) -> scenarios.Knobs:
        """What the scenario makes of the parameters (built once per cell: the render,
        the runner and the load's time bound all read it)."""
        knobs = scenarios.get(self.scenario, self.id).knobs(self.params)
        return scenarios.with_common(knobs, self.params)

    @property
    def changed_params_text(self) -> str:
        """The parameters that differ from the scenario's defaults ("defaults" if none):
        what sets this cell apart, without the dozen defaults beside it."""
        defaults = scenarios.get(self.scenario, self.scenario).defaults
        changed = {k: v for k, v in self.params.items() if defaults.get(k) != v}
        return params_text(changed) or "defaults"

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


# Limits on a matrix file: far above any real one (the shipped ones are a few KB, a
# few levels deep, a few hundred values), far below what hurts.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000
MAX_CELLS = 10_000
# Every number a matrix takes fits in 64 bits; the digits are capped before conversion
# (Python refuses int <-> str beyond 4,300 digits, and a long one is slow to convert).
MAX_INT = 2**63 - 1
_MAX_NUMBER_CHARS = 40


def load(path: Path, run_id: str, only: Only | None = None) -> Plan:
    """Read, parse and expand a matrix file (or the part ``only`` names). Raises SpecError
    naming the file (and the line, key and fix) for anything it refuses; never starts
    anything."""
    text = _read(path)
    try:
        raw = yaml.load(text, Loader=_MatrixLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        raise SpecError(_yaml_problem(path, exc)) from None
    return expand(raw, run_id, source=path, text=text, only=only)


_PARAM_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")


def param_options(
    given: list[str] | None, option: str = "--param", for_scenarios: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``--param KEY=VALUE`` options (or ``--only``'s, named by ``option``) as parameter values.

    VALUE is read as one YAML scalar or flow value, as in a matrix file (``20``,
    ``true``, ``5s``, ``"1024 65000"``), with the matrix file's limits; the scenario's
    typed model then validates it (spec.expand). On a command line nobody quotes for
    YAML: where a value read as a number or boolean is refused by every scenario of
    ``for_scenarios`` that takes KEY, but its text is accepted (``tls=1.3`` is the
    text '1.3'), the text is used. Raises SpecError naming the option.
    """
    out: dict[str, Any] = {}
    for item in given or []:
        key, sep, text = item.partition("=")
        if not sep or not _PARAM_KEY.fullmatch(key):
            raise SpecError(
                f"{option} {shown(item)}: expected KEY=VALUE with a parameter name "
                f"(lower case, digits, _), e.g. {option} timeout_client=5s. "
                "python -m harness scenarios NAME lists a scenario's parameters."
            )
        if key in out:
            raise SpecError(f"{option} {key} is given twice; give each parameter once.")
        if len(text) > 1000:
            raise SpecError(f"{option} {key}: a value of {len(text):,} characters; at most 1000.")
        try:
            out[key] = yaml.load(text, Loader=_MatrixLoader) if text else ""
            if not isinstance(out[key], str) and _only_text_fits(key, out[key], text,
                                                               for_scenarios):  # fmt: skip
                out[key] = text
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise SpecError(
                f"{option} {key}={shown(text)}: not a value a matrix file could hold "
                f"({problem}). Quote it for the shell and YAML, e.g. {option} '{key}=\"...\"'."
            ) from None
    return out


def _only_text_fits(key: str, value: Any, text: str, names: tuple[str, ...]) -> bool:
    def fits(name: str, candidate: Any) -> bool:
        try:
            scenarios.SCENARIOS[name].resolve({key: candidate}, "")
        except SpecError:
            return False
        return True

    known = [n for n in dict.fromkeys(names) if n in scenarios.SCENARIOS]  # else: said later
    takers = [n for n in known if key in scenarios.SCENARIOS[n].params.model_fields]
    return (
        bool(takers)
        and not any(fits(n, value) for n in takers)
        and any(fits(n, text) for n in takers)
    )


def _read(path: Path) -> str:
    """The text of a matrix file: a regular file of at most MAX_BYTES of UTF-8.

    Checked with stat before it is opened: opening a FIFO blocks until a writer comes,
    and /dev/zero never ends."""
    shipped = ", ".join(sorted(p.name for p in (ROOT / "matrices").glob("*.yaml")))
    fix = f"Give the path of a YAML matrix file, e.g. one of {ROOT / 'matrices'}/: {shipped}."
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(
                f"{path}: {_file_kind(info.st_mode)}, not a regular file: it is not read. {fix}"
            )
        if info.st_size > MAX_BYTES:
            raise SpecError(_too_large(path, info.st_size))
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still
        # returns; the read is capped whatever the stat said.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8 text"
        raise SpecError(f"{path}: cannot read the matrix file ({why}). {fix}") from exc
    if len(data) > MAX_BYTES:  # it grew since the stat
        raise SpecError(_too_large(path, len(data)))
    return text


def _too_large(path: Path, size: int) -> str:
    return (
        f"{path}: {size:,} bytes, more than a matrix file may hold ({MAX_BYTES // 1024} KiB), "
        "so it is not read. A matrix file is a few KB: check this is the file you meant."
    )


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML the harness still refuses; ``fix`` says what to write instead."""

    fix = ""

    def __init__(self, problem: str, mark: yaml.Mark, fix: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.fix = fix


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


_MERGE = "tag:yaml.org,2002:merge"


class _MatrixLoader(yaml.SafeLoader):
    """A SafeLoader with limits, for files from anyone:

    - a key given twice in one mapping is refused: PyYAML would keep the last silently,
      so a matrix with two ``load:`` would run with half of what it says. Merge keys
      (``<<: *base``) are YAML's own, not duplicates: SafeLoader flattens them, the
      mapping's explicit keys winning;
    - nesting deeper than MAX_DEPTH is refused (the composer recurses per level:
      20,000 ``[`` were a RecursionError);
    - a document whose aliases expand to more than MAX_VALUES values is refused before
      it is built ("billion laughs": 9 levels of 9 aliases in 400 bytes are 387 million);
    - integers with more than _MAX_NUMBER_CHARS characters, or beyond 64 bits, are
      refused before anything prints them.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    f"lists and mappings are nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                    "A matrix needs a few levels; close the brackets that were opened "
                    "(a '[' or '{' needs its ']' or '}').",
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                continue
            if key in seen:
                raise _DuplicateKey(
                    None,
                    None,
                    f"{shown(key)} is given twice in one mapping (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = len(str(node.value).lstrip("+-").replace("_", ""))
        value = None if digits > _MAX_NUMBER_CHARS else super().construct_yaml_int(node)
        if value is None or abs(value) > MAX_INT:
            raise _Refused(
                f"the number {shown(str(node.value), 24)} ({digits:,} digits) is too large",
                node.start_mark,
                f"No key of a matrix takes a number beyond 64 bits ({MAX_INT:,}); write "
                "the number it means.",
            )
        return value  # type: ignore[no-any-return]


_MatrixLoader.add_constructor("tag:yaml.org,2002:int", _MatrixLoader.construct_yaml_int)

# Floats as YAML 1.2 reads them: PyYAML follows YAML 1.1, where "1e3" and "1.0e9" (no
# sign after the e) are strings, so `duration_s: 1.0e9` reached the model as text and was
# refused as "not a valid number" instead of "must be <= 600". The resolver lists are
# copied first: add_implicit_resolver would append to SafeLoader's own.
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MatrixLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_MatrixLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the document's values as if every alias were written out (memoised per
    node, so this costs one pass over the composed graph); refuse above MAX_VALUES or
    when an alias sits inside the node it names (a loop: ``&a [*a]``)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_:
            raise _Refused(
                "an alias (*name) sits inside the node its anchor (&name) names: a loop",
                node.start_mark,
                "Anchors and aliases may repeat a value, not contain themselves; write the "
                "value out.",
            )
        open_.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                raise _Refused(
                    f"with its anchors and aliases (&name, *name) expanded, this holds more "
                    f"than {MAX_VALUES:,} values",
                    node.start_mark,
                    "A matrix needs a few hundred; use fewer aliases, or aliases of "
                    "aliases, and write the values out.",
                )
        open_.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root)


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """'file (line L, column C): what, with the line and a caret' instead of PyYAML's
    '<unicode string>' report. Everything quoted from the file is clipped: a hostile
    file's line can be a megabyte long."""
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        return f"{path}: not valid YAML: {_clip(str(exc))}. Fix the file's syntax."
    context = (
        f" ({_clip(exc.context)}, line {exc.context_mark.line + 1})" if exc.context_mark else ""
    )
    lines = (mark.buffer or "").splitlines()
    shown_line = ""
    if mark.line < len(lines):
        line, column = lines[mark.line], mark.column
        start = max(0, column - 50)
        lead = "..." if start else ""
        tail = "..." if len(line) > start + 100 else ""
        caret = " " * (len(lead) + column - start)
        shown_line = f"\n    {lead}{line[start : start + 100]}{tail}\n    {caret}^"
    if isinstance(exc, _Refused):
        return (
            f"{path} (line {mark.line + 1}, column {mark.column + 1}): {exc.problem}."
            f"{shown_line}\n{exc.fix}"
        )
    fix = (
        "Keep one of them (merge their contents if both matter)."
        if isinstance(exc, _DuplicateKey)
        else "Fix the syntax there (lists are [a, b] or one '- item' per line; indent with "
        "spaces, not tabs)."
    )
    return (
        f"{path} (line {mark.line + 1}, column {mark.column + 1}): not valid YAML: "
        f"{_clip(exc.problem or '')}{context}.{shown_line}\n{fix}"
    )


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Only:
    """Part of a matrix (``matrix --scenario NAME --version SPEC --only KEY=VALUE``): its
    entries for these scenarios, on these versions plus the baseline (the verdicts need
    it), the cells whose parameters have these values. Empty: all."""

    scenarios: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


def _narrowed(matrix: Matrix, only: Only, where: str) -> Matrix:
    """The matrix cut down to ``only``; what run.json records, so --resume finishes the
    same part. Raises SpecError naming the option when a name is not in the matrix."""
    for option, asked, known in (
        ("--scenario", only.scenarios, [e.name for e in matrix.scenarios]),
        ("--version", only.versions, matrix.versions),
    ):
        for name in asked:
            if name not in known:
                raise SpecError(
                    f"{option} {shown(name)}: {where} has no such {option[2:]}; it has "
                    f"{', '.join(dict.fromkeys(known))}. Name one of those (spelled the same)."
                )
    kept = [v for v in matrix.versions if not only.versions or v in only.versions
            or v == matrix.baseline]  # fmt: skip
    entries = []
    for entry in matrix.scenarios:
        if only.scenarios and entry.name not in only.scenarios:
            continue
        if entry.versions is not None:
            narrowed = [v for v in entry.versions if v in kept]
            if not narrowed:
                continue
            entry = entry.model_copy(update={"versions": narrowed})
        entries.append(entry)
    if not entries:
        raise SpecError(
            f"{where}: no entry of the matrix runs scenario {', '.join(only.scenarios)} on "
            f"version {', '.join(only.versions)}. Pick a version that entry lists."
        )
    asked = " ".join([*(f"--scenario {n}" for n in only.scenarios),
                      *(f"--version {v}" for v in only.versions),
                      *(f"--only {k}={v}" for k, v in only.params.items())])  # fmt: skip
    note = f"part of the matrix: {asked}"
    description = f"{matrix.description} ({note})" if matrix.description else note
    return matrix.model_copy(
        update={
            "versions": kept,
            "scenarios": entries,
            "description": description,
            "select": {**matrix.select, **only.params},
        }
    )


_ABSENT = object()  # a parameter the cell does not have
_NEVER = object()  # selected by a parameter the scenario does not have: no cell matches


def _selection(matrix: Matrix, where: str) -> dict[str, dict[str, Any]]:
    """``select:`` per scenario of the matrix, each value typed by that scenario's model
    (``tls=1.3`` is the float 1.3, ``timeout_client=5s`` the time value). A scenario
    without a selected parameter gets a selection no cell meets. Raises SpecError for a
    key no scenario of the matrix takes, or a value none would accept."""
    out: dict[str, dict[str, Any]] = {}
    names = list(dict.fromkeys(e.name for e in matrix.scenarios))
    for key, value in matrix.select.items():
        takers = [n for n in names if key in scenarios.get(n, where).params.model_fields]
        if not takers:
            raise SpecError(
                f"{where}: select / --only {key}={shown(value)}: no scenario of the matrix "
                f"({', '.join(names)}) has a parameter {key!r}. "
                "python -m harness scenarios NAME lists a scenario's parameters."
            )
        for name in names:
            if name not in takers:
                out.setdefault(name, {})[key] = _NEVER
                continue
            at = f"{where}: select / --only {key}"
            typed = scenarios.get(name, at).resolve({key: value}, at, lambda k, at=at: at)
            out.setdefault(name, {})[key] = typed[key]
    return out


def expand(
    raw: Any,
    run_id: str,
    source: Path | None = None,
    text: str = "",
    where: str = "",
    only: Only | None = None,
) -> Plan:
    """The cells of a matrix (as parsed from ``text``, or built by the CLI), or of the
    part of it ``only`` names. ``where`` names it in errors (default: the source file).
    Raises SpecError for anything invalid, including a matrix that expands to no cell."""
    where = where or (str(source) if source else "matrix")
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise SpecError(
            f"{where}: a matrix file is a mapping with versions: and scenarios:, but this is "
            f"{got}. Start from {ROOT / 'matrices' / 'default.yaml'}, e.g.\n"
            "    name: mine\n    versions: [debian:bookworm]\n    scenarios: [{name: smoke}]"
        )
    try:
        matrix = Matrix.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_explain(exc, where, text)) from None
    if only and (only.scenarios or only.versions or only.params):
        matrix = _narrowed(matrix, only, where)
    selected = _selection(matrix, where)

    specs = [
        versions.parse(v, f"{where}{_line(text, ['versions', i])}: versions[{i}]")
        for i, v in enumerate(matrix.versions)
    ]
    twice = sorted({v for v in matrix.versions if matrix.versions.count(v) > 1})
    if twice:
        # Cells, images and verdicts are keyed by the spec: a copy would be one version.
        raise SpecError(
            f"{where}{_line(text, ['versions'])}: versions lists {twice[0]!r} more than once. "
            "List each version once; for more cells per version, raise repetitions:."
        )
    if matrix.baseline is not None and matrix.baseline not in matrix.versions:
        raise SpecError(
            f"{where}{_line(text, ['baseline'])}: baseline {matrix.baseline!r} is not one of "
            f"versions ({', '.join(matrix.versions)}). Name one of them, or drop baseline:."
        )
    # Counted before anything is expanded: a few grid keys of a hundred values each
    # would otherwise be millions of cells, each resolved in memory, before any error.
    count = matrix.repetitions * sum(
        math.prod(len(values) for values in entry.grid.values())
        * len(entry.versions or matrix.versions)
        for entry in matrix.scenarios
    )
    if count > MAX_CELLS:
        raise SpecError(
            f"{where}: the matrix expands to {count:,} cells, more than {MAX_CELLS:,} (each "
            "cell is a stack started, measured and torn down: days of running). Shorten "
            "its grids, versions or repetitions, or split it into several matrices."
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
                    f"({', '.join(matrix.versions)}). Add it to the matrix's versions:, or "
                    "list only those here (spelled the same)."
                )

        def locate(key: str, i: int = i, entry: ScenarioEntry = entry) -> str:
            part = "grid" if key in entry.grid else "params"
            line = _line(text, ["scenarios", i, part, key])
            return f"{where}{line}: scenarios[{i}].{part}.{key}"

        keys = list(entry.grid)
        for values in itertools.product(*(entry.grid[k] for k in keys)):
            overrides = {**entry.params, **dict(zip(keys, values, strict=True))}
            params = scenario.resolve(overrides, at, locate)
            if all(params.get(k, _ABSENT) == v for k, v in selected.get(entry.name, {}).items()):
                combos.append((entry.name, params, entry.versions))

    planned = [
        (spec, name, params, rep)
        for (name, params, only), rep in itertools.product(combos, range(1, matrix.repetitions + 1))
        # Versions innermost, so a half-finished run still compares versions like for like.
        for spec, text in zip(specs, matrix.versions, strict=True)
        if only is None or text in only
    ]
    if not planned and matrix.select:
        asked = " ".join(f"{k}={v}" for k, v in matrix.select.items())
        raise SpecError(
            f"{where}: no cell of the matrix has {asked} (select / --only). "
            "python -m harness matrix FILE --dry-run lists the cells and their parameters."
        )
    if not planned:  # every entry limited to no version: nothing would run, nothing report
        raise SpecError(
            f"{where}: the matrix expands to no cell. Give each scenario entry at least one "
            "of the matrix's versions (or drop its versions: to run it on all)."
        )
    cells = [
        Cell(run_id, i, len(planned), spec, name, params, rep, matrix.load)
        for i, (spec, name, params, rep) in enumerate(planned, start=1)
    ]
    bodies = [c for c in cells if c.params.get("body_bytes")]
    if bodies and matrix.load.generator == "wrk":
        # wrk's script sends GETs: the body would be dropped without a word.
        raise SpecError(
            f"{where}: {bodies[0].id} asks for a request body (body_bytes), which only "
            "generator: locust sends; use Locust for those cells, or drop body_bytes."
        )
    return Plan(matrix, source, specs, cells)


class _RunFile(BaseModel):
    """What ``matrix --resume`` needs from run.json: the matrix the run was asked for,
    and the file it came from (run.json holds more: provenance, images, how it ended)."""

    model_config = ConfigDict(extra="allow")
    matrix: dict[str, Any]
    matrix_file: str | None = None


def recorded(data: Any, path: Path) -> tuple[dict[str, Any], Path | None]:
    """The matrix (as a dict, for ``expand``) and its source file recorded in a run's
    run.json at ``path``, as read by ``results.read_json``. Raises SpecError naming the
    file when it is not the shape the harness writes (edited, damaged, or not a run's)."""
    try:
        run = _RunFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["loc"]:
            what = f"its {'.'.join(map(str, first['loc']))}: {first['msg']}"
        else:
            what = f"it holds a {type(data).__name__}, not a mapping"
        raise SpecError(
            f"{path}: not the run.json the harness writes ({what}; got "
            f"{shown(first.get('input'))}). Resuming needs the mapping the run wrote, with "
            "its matrix: mapping. Restore the file, or start the matrix again "
            "(python -m harness matrix FILE)."
        ) from None
    return run.matrix, Path(run.matrix_file) if run.matrix_file else None


# What to write for a required key that is missing.
_EXAMPLES = {
    "name": "name: my-matrix",
    "versions": "versions: [debian:bookworm]",
    "scenarios": "scenarios: [{name: smoke}]",
}


def _explain(exc: ValidationError, where: str, text: str) -> str:
    lines = [f"{where}: the matrix is not valid:"]
    for err in exc.errors():
        path = list(err["loc"])
        key = ".".join(str(p) for p in path) or "(top level)"
        info, known = _field(path)
        kind = err["type"]
        if kind == "missing":
            example = _EXAMPLES.get(str(path[-1]))
            lines.append(
                f"  {key}{_line(text, path)}: required but missing; add it"
                + (f", e.g. {example}." if example else ".")
            )
            continue
        if kind == "extra_forbidden":
            close = difflib.get_close_matches(str(path[-1]), known, n=1)
            hint = "remove it or check its spelling" + (
                f" (did you mean {close[0]!r}?)" if close else ""
            )
            hint += f"; known keys here: {', '.join(known)}"
        elif kind == "list_type":
            hint = "write a list, e.g. [a, b] (or [a] for one value)"
        elif kind == "too_short" and path[-1] == "versions" and len(path) > 1:
            hint = "list at least one of the matrix's versions, or drop versions: to run it on all"
        elif kind == "too_short":
            hint = "list at least one"
        elif kind == "value_error":  # a rule across fields: its message says which
            hint = "change one of them"
        elif kind == "finite_number":
            hint = "write a finite number (.nan and .inf are refused)"
        elif kind == "string_type":
            hint = "write it as text, in quotes"
        elif info is not None and _bounds(info):
            hint = f"{info.description or path[-1]} must be {_bounds(info)}"
        elif info is not None and info.description:
            hint = f"expected: {info.description}"
        else:
            hint = "fix the value"
        got = shown(err.get("input"))  # never a raw repr: a hostile input can be huge
        lines.append(f"  {key}{_line(text, path)}: {err['msg']} (got {got}); {hint}.")
    return "\n".join(lines)


def _field(path: list[Any]) -> tuple[FieldInfo | None, list[str]]:
    """The model field a validation error's path points at, and the keys allowed beside it."""
    model: Any = Matrix
    info: FieldInfo | None = None
    known: list[str] = []
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None, []
        known = list(model.model_fields)
        info = model.model_fields.get(str(part))
        if info is None:
            return None, known
        # list[Entry], Entry | None -> Entry: the model one level down, if any
        inner = [a for a in get_args(info.annotation) if isinstance(a, type)]
        model = next((a for a in inner if issubclass(a, BaseModel)), info.annotation)
    return info, known


def _bounds(info: FieldInfo) -> str:
    """'> 0 and <= 600' from a field's constraints."""
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = [
        f"{sign} {getattr(m, name):g}"
        for m in info.metadata
        for name, sign in signs.items()
        if getattr(m, name, None) is not None
    ]
    return " and ".join(parts)


def _line(text: str, path: list[Any]) -> str:
    """' (line N)' for a key path in the YAML text, or '' when it cannot be located."""
    node = _composed(text) if text else None
    if node is None:
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


@functools.lru_cache(maxsize=2)
def _composed(text: str) -> yaml.Node | None:
    """The node graph of a matrix text, composed once: _line is asked once per entry and
    per version, and composing a large file each time made a long matrix quadratic."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def single(
    version: str,
    scenario: str,
    run_id: str,
    load: Load | None = None,
    params: dict[str, Any] | None = None,
) -> Plan:
    """The plan for one cell, as ``python -m harness run`` asks for it (``params``: the
    ``--param`` overrides, validated by the scenario's model)."""
    # Checked here first, so an error names the option the user typed.
    versions.parse(version, "--haproxy")
    scenarios.get(scenario, "--scenario")
    plan = expand(
        {
            "name": "single",
            "versions": [version],
            "scenarios": [{"name": scenario, "params": params or {}}],
            "load": (load or Load()).model_dump(),
        },
        run_id,
        where="the command line (--param)",
    )
    load = plan.cells[0].load
    asked = "--generator wrk" if load.generator == "wrk" else "--workers" if load.workers else ""
    if asked and isinstance(plan.cells[0].knobs.load, scenarios.Probe):
        # In a matrix the load setting is the load scenarios'; asked for one probe
        # scenario, it would be ignored without a word.
        raise SpecError(
            f"{asked}: scenario {scenario!r} drives its own close-delay probe (one "
            "connection per sample), not a load generator. Leave the option out, or pick a "
            "load scenario (python -m harness scenarios lists them)."
        )
    return plan


# The option of ``python -m harness run`` behind each Load field.
_OPTIONS = {
    "users": "--users",
    "spawn_rate": "--users",
    "rate": "--rate",
    "duration_s": "--duration",
    "threads": "--threads",
    "workers": "--workers",
}
_RULE_WORDS = {
    "mode: open": "--rate (the open loop)",
    "generator: ": "--generator ",
    "users: ": "--users ",
    "threads: ": "--threads ",
    "workers: ": "--workers ",
}


def load_options(
    users: int,
    rate: float | None,
    duration: float,
    generator: str = "locust",
    threads: int | None = None,
    workers: int | None = None,
) -> Load:
    """The load of ``run --users N --duration S [--rate R] [--generator G --threads T]
    [--workers W]``;
    a value out of range is a SpecError naming the option, its bounds and its default."""
    values: dict[str, Any] = {
        "users": users, "spawn_rate": min(users, 1000), "duration_s": duration,
        "generator": generator, "threads": threads, "workers": workers,
    }  # fmt: skip
    try:
        if rate is None:
            return Load(mode="closed", **values)
        return Load(mode="open", rate=rate, **values)
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:  # a rule across options, said in the options' words
            text = error["msg"].removeprefix("Value error, ")
            for key, option in _RULE_WORDS.items():
                text = text.replace(key, option)
            raise SpecError(f"{text}.") from None
        field = str(error["loc"][0])
        info = Load.model_fields[field]
        option = _OPTIONS[field]
        given = {
            "--users": users, "--rate": rate, "--duration": duration, "--threads": threads,
            "--workers": workers,
        }[option]  # fmt: skip
        raise SpecError(
            f"{option} {given:g}: {info.description} must be {_bounds(info)} "
            f"(default {option} {1 if info.default is None else info.default:g})."
        ) from None
