"""Heartbeat's value syntaxes: times (``cl_get_msec``) and booleans (``cl_str_to_boolean``).

Both raise ValueError with a message meant for a human; the callers add ``file:line``.
"""

from __future__ import annotations

import re

from nonstop.errors import InvalidValue

# Digits, or a decimal with at least one digit after the point, then an optional unit.
_TIME_RE = re.compile(r"(?P<num>[0-9]+|[0-9]*\.[0-9]+)(?P<unit>[a-zA-Z]*)")

# Powers of ten from the written unit to microseconds. "msec" is accepted because Heartbeat's
# parser compares only the unit's first letters, so files using it work there. (Integers, not
# decimal.Decimal: that module costs every daemon ~0.2 MB for a few lines of its start.)
_UNITS: dict[str, int] = {"": 6, "ms": 3, "msec": 3, "us": 0, "usec": 0}

# People write seconds with a unit; the error then shows the plain number to use instead.
_SECONDS_WORDS = frozenset({"s", "sec", "secs", "second", "seconds"})

_TRUE = frozenset({"true", "on", "yes", "y", "1"})
_FALSE = frozenset({"false", "off", "no", "n", "0"})


def parse_msec(text: str) -> int:
    """Milliseconds from Heartbeat's time syntax.

    A bare number is seconds (``2`` = 2000, ``1.7`` = 1700); ``ms``/``msec`` means milliseconds,
    ``us``/``usec`` microseconds; units are case-insensitive; the result is rounded to the
    nearest millisecond, halves up (``499us`` = 0, ``500us`` = 1). Anything else is an error.
    """
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise InvalidValue(
            f"'{text}' is not a time: write seconds ('2', '1.5'), milliseconds ('200ms') "
            "or microseconds ('500us')"
        )
    unit = m["unit"].lower()
    if unit not in _UNITS:
        hint = f"write '{m['num']}'" if unit in _SECONDS_WORDS else "e.g. '2' or '2000ms'"
        raise InvalidValue(
            f"'{text}' has an unknown time unit '{m['unit']}': a bare number is seconds, "
            f"the only units are ms and us ({hint})"
        )
    whole, _, frac = m["num"].partition(".")
    # The exact number as an integer of 10**-len(frac) units; then the milliseconds it
    # holds, halves up: digits are appended (x 10**n) or the divisor grows.
    shift = _UNITS[unit] - len(frac)
    digits = whole + frac + "0" * max(shift, 0)
    divisor = int("1000" + "0" * max(-shift, 0))
    return (int(digits) + divisor // 2) // divisor


def parse_bool(text: str) -> bool:
    """A Heartbeat boolean: ``true on yes y 1`` or ``false off no n 0``, any case."""
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidValue(f"'{text}' is not a boolean: use yes/no, on/off, true/false, y/n or 1/0")


def format_msec(ms: int) -> str:
    """The string Heartbeat records for a computed time, e.g. ``15000ms``."""
    return f"{ms}ms"
