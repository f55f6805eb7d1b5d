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
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

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


class Params(BaseModel):
    """Base of every scenario's parameters: strict types (``'5'`` is not 5, ``1`` is not
    True), finite floats, no unknown key, immutable."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, frozen=True, validate_default=True
    )


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
    "Bytes",
    "Count",
    "Flag",
    "HaproxyTime",
    "HaproxyTimeOrOff",
    "Params",
    "PortRange",
    "Seconds",
    "ValidationError",
    "allowed_form",
    "time_ms",
]
