"""Quoting user input in error messages: short and safe, whatever the input."""

from __future__ import annotations

import reprlib


class _Shown(reprlib.Repr):
    """reprlib with a guard on integers: ``repr`` of an int beyond 4,300 digits raises
    ValueError, and below that a hostile one still costs a page of digits."""

    def repr_int(self, x: int, level: int) -> str:
        if abs(x).bit_length() > 200:  # ~60 digits
            digits = int(abs(x).bit_length() * 0.30103) + 1
            return f"<a number of about {digits:,} digits>"
        return super().repr_int(x, level)


_SHOWN = _Shown()  # keyword arguments only from Python 3.12
_SHOWN.maxlevel = 3
_SHOWN.maxtuple = _SHOWN.maxlist = _SHOWN.maxdict = _SHOWN.maxset = 4
_SHOWN.maxstring = _SHOWN.maxother = 50


def shown(value: object, limit: int = 60) -> str:
    """A short, safe repr of user input for an error message: at most ``limit``
    characters, whatever the size or nesting of ``value`` (huge ints included)."""
    try:
        text = _SHOWN.repr(value)
    except (ValueError, RecursionError):  # a nested huge int, a self-containing list
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
