"""Typed scenario parameters: the only way a value from a matrix file reaches a cell.

Every scenario declares its parameters as a pydantic model built from the types here:
counts, sizes and durations with bounds, HAProxy time values and port ranges with a
grammar, booleans and choices. A value that does not fit is refused before anything is
rendered, so no text from a matrix file can add a line to ``haproxy.cfg`` or a key to
``compose.yaml``: a time value is digits and a unit, a port range two numbers.

Each type carries a description (the allowed form) and an example, which the spec's
error message quotes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)

# HAProxy's time format (configuration manual, section 2.5 "Time format"): an integer
# with an optional unit; without one, milliseconds.
_TIME = re.compile(r"([0-9]{1,9})(us|ms|s|m|h|d)?")
_UNIT_MS = {"us": 0.001, "ms": 1, "": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# Bounds a cell can live with: a timeout longer than an hour would outlast any load.
MAX_TIMEOUT_MS = 3_600_000


def time_ms(text: str) -> float:
    """Milliseconds of an HAProxy time value (``500ms`` -> 500, ``30s`` -> 30000).

    Raises ValueError when ``text`` is not ``<digits>[us|ms|s|m|h|d]``.
    """
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an HAProxy time value")
    return int(match.group(1)) * _UNIT_MS[match.group(2) or ""]


def _haproxy_time(off: bool) -> Any:
    """An HAProxy time value above 0 and at most an hour; with ``off``, also 'off'."""

    def check(value: str) -> str:
        if off and value == "off":
            return value
        try:
            ms = time_ms(value)
        except ValueError:
            raise ValueError(
                "not an HAProxy time value (digits and a unit: us, ms, s, m, h or d)"
            ) from None
        if not 0 < ms <= MAX_TIMEOUT_MS:
            raise ValueError(f"must be above 0 and at most 1h ({MAX_TIMEOUT_MS} ms)")
        return value

    form = "an HAProxy time value: digits and a unit (us, ms, s, m, h, d), above 0 and at most 1h"
    return Annotated[
        str,
        AfterValidator(check),
        Field(
            description=f"'off' or {form}" if off else form,
            examples=["off", "1s"] if off else ["500ms", "30s"],
        ),
    ]


# A timeout of haproxy.cfg; the same or "off" (the directive is left out of haproxy.cfg).
HaproxyTime = _haproxy_time(off=False)
HaproxyTimeOrOff = _haproxy_time(off=True)


def _port_range(value: str) -> str:
    if value == "":
        return value
    parts = value.split(" ")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 5 for p in parts):
        raise ValueError("not two port numbers separated by one space")
    low, high = (int(p) for p in parts)
    if not 1024 <= low < high <= 65535:
        raise ValueError("the ports must be 1024 <= low < high <= 65535")
    return f"{low} {high}"


# net.ipv4.ip_local_port_range: "low high", or "" for the kernel's default.
PortRange = Annotated[
    str,
    AfterValidator(_port_range),
    Field(description="'' (the kernel's default) or two ports 'low high', "
          "1024 <= low < high <= 65535", examples=["1024 65000"]),
]  # fmt: skip


def Count(low: int, high: int, what: str, example: int | None = None) -> Any:
    """An int in [low, high] (``what`` says what it counts, e.g. 'connections')."""
    return Annotated[
        int,
        Field(ge=low, le=high, description=f"{what}: an integer from {low} to {high}",
              examples=[low if example is None else example]),
    ]  # fmt: skip


def Seconds(high: float, what: str, example: float, above_zero: bool = False) -> Any:
    """A finite float of seconds in [0, high], or (0, high] when ``above_zero``."""
    low = {"gt": 0.0} if above_zero else {"ge": 0.0}
    span = f"above 0 and at most {high:g}" if above_zero else f"from 0 to {high:g}"
    form = f"{what}: seconds, {span}"
    return Annotated[float, Field(le=high, description=form, examples=[example], **low)]


Flag = Annotated[bool, Field(description="true or false (YAML booleans, not text)",
                             examples=[True])]  # fmt: skip

Bytes = Annotated[
    int,
    Field(ge=0, le=100_000_000, description="a size in bytes, 0 to 100000000",
          examples=[128]),
]  # fmt: skip


# --- Explicit HAProxy config lines, per section ------------------------------------------
#
# A matrix entry may add directives to haproxy.cfg's sections (``config: {backend: ["option
# abortonclose"]}``): the deliberate way to try a directive where a bug report had it. Only
# allow-listed keywords, each with typed arguments, in the sections where HAProxy's manual
# accepts them (configuration.txt 4.1 "Proxy keywords matrix", 3 "Global parameters").
# A line is words of [a-z0-9._-] separated by one space: no newline, comment, quote,
# variable, or conditional (.if) can be written, whatever the keyword.

SECTIONS = ("global", "defaults", "frontend", "backend")
_G, _D, _F, _B = ("global",), ("defaults",), ("frontend",), ("backend",)


def _count(low: int, high: int) -> tuple[str, int, int]:
    return ("count", low, high)


_TIME_ARG = ("time",)
_OPTIONS_DFB = (
    "http-server-close", "httpclose", "http-keep-alive", "nolinger", "http-buffer-request",
    "forwardfor", "splice-auto", "http-no-delay", "independent-streams",
)  # fmt: skip
CONFIG_DIRECTIVES: dict[str, tuple[tuple[str, ...], tuple[Any, ...]]] = {
    # keyword words -> (sections, argument kinds: ("time",), ("count", low, high), or a
    # tuple of choices)
    **{f"option {o}": (_D + _F + _B, ()) for o in _OPTIONS_DFB},
    **{f"no option {o}": (_D + _F + _B, ()) for o in _OPTIONS_DFB},
    **{
        f"{no}option {o}": (_D + _B, ())
        for o in ("abortonclose", "redispatch", "prefer-last-server", "tcp-smart-connect")
        for no in ("", "no ")
    },
    **{
        f"{no}option {o}": (_D + _F, ())
        for o in ("tcp-smart-accept", "dontlognull")
        for no in ("", "no ")
    },
    **{f"timeout {t}": (_D + _F, (_TIME_ARG,)) for t in ("client", "client-fin")},
    **{
        f"timeout {t}": (_D + _B, (_TIME_ARG,))
        for t in ("server", "server-fin", "connect", "tunnel")
    },
    **{
        f"timeout {t}": (_D + _F + _B, (_TIME_ARG,))
        for t in ("http-request", "http-keep-alive", "queue", "tarpit")
    },
    "retries": (_D + _B, (_count(0, 100),)),
    "maxconn": (_G + _D + _F, (_count(1, 1_000_000),)),
    "fullconn": (_D + _B, (_count(1, 1_000_000),)),
    "http-reuse": (_D + _B, (("never", "safe", "aggressive", "always"),)),
    "balance": (_D + _B, (("roundrobin", "static-rr", "leastconn", "first", "source"),)),
    "nbthread": (_G, (_count(1, 64),)),
    "hard-stop-after": (_G, (_TIME_ARG,)),
    "tune.bufsize": (_G, (_count(1024, 1_048_576),)),
    "tune.maxrewrite": (_G, (_count(0, 524_288),)),
    "tune.http.maxhdr": (_G, (_count(1, 32_767),)),
    **{
        f"tune.{b}.{side}": (_G, (_count(0, 16_777_216),))
        for b in ("sndbuf", "rcvbuf")
        for side in ("client", "server")
    },
}
_WORDS = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}( [a-z0-9][a-z0-9._-]{0,63}){0,7}")
MAX_CONFIG_LINES = 32  # per section


def _check_argument(kind: Any, word: str) -> str | None:
    """What is wrong with ``word`` as an argument of ``kind`` (None: nothing)."""
    if kind == _TIME_ARG:
        try:
            ms = time_ms(word)
        except ValueError:
            return f"{word!r} is not an HAProxy time value (digits and a unit: us, ms, s, m, h, d)"
        return None if 0 < ms <= MAX_TIMEOUT_MS else f"{word!r} must be above 0 and at most 1h"
    if kind[0] == "count":
        low, high = kind[1], kind[2]
        ok = word.isascii() and word.isdigit() and len(word) <= 9 and low <= int(word) <= high
        return None if ok else f"{word!r} is not an integer from {low} to {high}"
    return None if word in kind else f"{word!r} is not one of {', '.join(kind)}"


def check_directive(section: str, line: str) -> str:
    """``line`` if it is an allow-listed directive of ``section`` with well-typed
    arguments (CONFIG_DIRECTIVES); raises ValueError saying what is wrong and what would
    be accepted."""
    if not isinstance(line, str):
        raise ValueError(f"{section}: a line must be text, e.g. 'option abortonclose'")
    if not _WORDS.fullmatch(line):
        raise ValueError(
            f"{section}: {_short(line)} is not words of a-z 0-9 . _ - separated by one space "
            "(no newline, comment, quote, variable or .if can go into haproxy.cfg)"
        )
    words = line.split(" ")
    for n in range(len(words), 0, -1):
        keyword = " ".join(words[:n])
        if keyword in CONFIG_DIRECTIVES:
            sections, kinds = CONFIG_DIRECTIVES[keyword]
            break
    else:
        raise ValueError(
            f"{section}: {_short(line)} is not an allow-listed directive "
            "(python -m harness scenarios config lists them)"
        )
    if section not in sections:
        raise ValueError(
            f"{section}: {keyword!r} goes in {' or '.join(sections)}, not in {section}"
        )
    args = words[n:]
    if len(args) != len(kinds):
        raise ValueError(f"{section}: {keyword!r} takes {len(kinds)} argument(s), got {len(args)}")
    for kind, word in zip(kinds, args, strict=True):
        problem = _check_argument(kind, word)
        if problem:
            raise ValueError(f"{section}: {keyword!r}: {problem}")
    return line


def _short(text: str) -> str:
    """A line as quoted in a message: printable, at most 40 characters."""
    shown = text[:40].encode("unicode_escape").decode("ascii")
    return repr(shown) + ("..." if len(text) > 40 else "")


def describe_directives() -> str:
    """The allow-listed directives, one section per line (``python -m harness scenarios
    config``)."""
    lines = []
    for section in SECTIONS:
        names = [k for k, (where, _) in CONFIG_DIRECTIVES.items() if section in where]
        lines.append(f"  {section}: {', '.join(names)}")
    return "\n".join(lines)


class HaproxyConfig(BaseModel):
    """Explicit config lines per section of haproxy.cfg, each checked by
    ``check_directive``; rendered after the scenario's own lines in that section (so a
    repeated directive overrides the scenario's, as HAProxy takes the last one)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    global_: list[str] = Field(default_factory=list, alias="global", max_length=MAX_CONFIG_LINES)
    defaults: list[str] = Field(default_factory=list, max_length=MAX_CONFIG_LINES)
    frontend: list[str] = Field(default_factory=list, max_length=MAX_CONFIG_LINES)
    backend: list[str] = Field(default_factory=list, max_length=MAX_CONFIG_LINES)

    @model_validator(mode="after")
    def _allow_listed(self) -> HaproxyConfig:
        for section in SECTIONS:
            for line in self.section(section):
                check_directive(section, line)
        return self

    def section(self, name: str) -> tuple[str, ...]:
        """The lines of one section (``global``, ``defaults``, ``frontend``, ``backend``)."""
        return tuple(getattr(self, "global_" if name == "global" else name))

    def __bool__(self) -> bool:
        return any(self.section(s) for s in SECTIONS)


CONFIG_FORM = (
    "config lines per section (global, defaults, frontend, backend), each a list of "
    "allow-listed directives with typed arguments (python -m harness scenarios config "
    "lists them)"
)


class Params(BaseModel):
    """Base of every scenario's parameters: strict types (``'5'`` is not 5, ``1`` is not
    True), finite floats, no unknown key, immutable. Every scenario also takes ``config``:
    explicit HAProxy config lines per section (``HaproxyConfig``), left out of the dumped
    parameters when empty, so a cell without them records what it did before they existed."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, frozen=True, validate_default=True
    )

    config: HaproxyConfig = Field(
        default_factory=HaproxyConfig,
        description=CONFIG_FORM,
        examples=[{"backend": ["option abortonclose"]}],
    )

    # Parameters added after records existed: dumped only when not at their default, so a
    # cell that leaves them alone records (and is identified by) what it did before.
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key in self.OMITTED_AT_DEFAULT:
            if data.get(key) == type(self).model_fields[key].default:
                data.pop(key, None)
        if self.config:
            data["config"] = {
                s: list(self.config.section(s)) for s in SECTIONS if self.config.section(s)
            }
        else:
            data.pop("config", None)
        return data


# HAProxy's HTTP connection modes (manual 4 "Proxies", "option http-keep-alive",
# "option http-server-close", "option httpclose"): keep-alive on both sides (the default
# since 1.5), the server side closed after each response, or both sides closed.
ConnectionMode = Annotated[
    Literal["keep-alive", "http-server-close", "httpclose"],
    Field(description="HAProxy's HTTP connection mode: 'keep-alive' (the default), "
          "'http-server-close' (option http-server-close) or 'httpclose' (option httpclose)",
          examples=["http-server-close"]),
]  # fmt: skip


MAX_BODY_BYTES = 10_000_000


class HttpLoadParams(Params):
    """Base of the HTTP load scenarios' parameters: every one takes ``connection_mode``,
    rendered as the defaults section's ``option http-server-close`` / ``option httpclose``
    (nothing for keep-alive), and a request body for Locust's requests (``body_bytes``: a
    POST of that many bytes, ``chunked_upload``: sent chunked rather than with
    Content-Length); each left out of the dumped parameters at its default."""

    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = (
        "connection_mode", "body_bytes", "chunked_upload",
    )  # fmt: skip
    connection_mode: ConnectionMode = "keep-alive"
    body_bytes: Annotated[
        int,
        Field(ge=0, le=MAX_BODY_BYTES, examples=[10000],
              description=f"request body in bytes (0: GETs), 0 to {MAX_BODY_BYTES}"),
    ] = 0  # fmt: skip
    chunked_upload: Annotated[
        bool,
        Field(description="true: the body goes with Transfer-Encoding: chunked, false: with "
              "Content-Length (YAML booleans)", examples=[True]),
    ] = False  # fmt: skip

    @model_validator(mode="after")
    def _chunked_needs_a_body(self) -> HttpLoadParams:
        if self.chunked_upload and not self.body_bytes:
            raise ValueError("chunked_upload needs a body: set body_bytes above 0")
        return self


def allowed_form(model: type[BaseModel], key: str) -> str:
    """'Allowed: <form>, e.g. <example>' for one parameter, from its declaration."""
    info = model.model_fields[key]
    form = info.description or ""
    if not form:
        choices = get_args(info.annotation)
        form = "one of " + ", ".join(repr(c) for c in choices) if choices else ""
    examples = info.examples or []
    shown = [str(e).lower() if isinstance(e, bool) else repr(e) for e in examples]
    example = f", e.g. {shown[0]}" if shown else ""
    return f"Allowed: {form}{example}" if form else "See python -m harness scenarios"


__all__ = [
    "CONFIG_DIRECTIVES",
    "SECTIONS",
    "Bytes",
    "ConnectionMode",
    "Count",
    "Flag",
    "HaproxyConfig",
    "HaproxyTime",
    "HaproxyTimeOrOff",
    "HttpLoadParams",
    "Params",
    "PortRange",
    "Seconds",
    "ValidationError",
    "allowed_form",
    "check_directive",
    "describe_directives",
    "time_ms",
]
