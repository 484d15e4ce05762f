"""A Heartbeat message: an ordered list of typed fields, and the codec's two error families.

Field types: 0 string (``str``), 1 binary (``bytes``), 2 nested message (``Message``); names may
repeat and lookups return the first, as Heartbeat does. Bad remote input raises ``BadPacket``
(with one of ``REASONS``) and nothing else; local misuse (a field Heartbeat could not carry)
raises ``FieldError``, a ``ValueError``. The wire forms are in :mod:`nonstop.heartbeat.codec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TypeAlias

from nonstop.errors import NonstopError, RemoteInputError

Value: TypeAlias = "str | bytes | Message"

# Stable reasons carried by BadPacket, for counters and log lines.
FRAMING = "framing"
TOO_BIG = "too_big"
NO_AUTH = "no_auth"
AUTH_SYNTAX = "auth_syntax"
UNKNOWN_KEY = "unknown_key"
AUTH = "auth"
UNSUPPORTED = "unsupported"
BAD_FIELD = "bad_field"
REASONS = frozenset(
    {FRAMING, TOO_BIG, NO_AUTH, AUTH_SYNTAX, UNKNOWN_KEY, AUTH, UNSUPPORTED, BAD_FIELD}
)

# Printable ASCII without "=" (it ends the name) and not starting with "(" (a type prefix).
FIELD_NAME = re.compile(rb"[!-'\)-<>-~][!-<>-~]*")
_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")
_DECIMAL = re.compile(rb"-?[0-9]{1,18}")


class BadPacket(RemoteInputError):
    """Bad remote input: the packet is dropped and counted under ``reason``.

    ``reason`` is one of ``REASONS`` (stable, short, for counters); ``detail`` is for logs.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def clip(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut short: details echo remote data and must not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FieldError(NonstopError, ValueError):
    """Local misuse: a field name or value that Heartbeat's framing cannot carry."""


def to_wire(text: str) -> bytes:
    # surrogateescape makes every received byte string survive decode -> str -> encode.
    return text.encode("utf-8", "surrogateescape")


def from_wire(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _check_field(name: str, value: Value) -> None:
    if not isinstance(name, str) or not name.isascii() or not FIELD_NAME.fullmatch(name.encode()):
        raise FieldError(
            f"field name {name!r}: use printable ASCII without '=' and not starting with '('"
        )
    if isinstance(value, str):
        if not value:
            raise FieldError(f"field {name!r}: Heartbeat cannot carry an empty value")
        if "\0" in value:
            raise FieldError(f"field {name!r}: a string value cannot contain NUL")
        try:
            to_wire(value)
        except UnicodeEncodeError as e:
            raise FieldError(f"field {name!r}: value is not encodable: {e}") from None
    elif isinstance(value, bytes):
        if not value:
            raise FieldError(f"field {name!r}: Heartbeat cannot carry an empty binary value")
    elif not isinstance(value, Message):
        raise FieldError(f"field {name!r}: value must be str, bytes or Message")


class Message:
    """An ordered list of ``(name, value)`` fields; names may repeat. Immutable.

    ``str`` values are type 0, ``bytes`` type 1 (e.g. ``srcuuid``), ``Message`` type 2.
    Lookups return the first field of that name, as Heartbeat does.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, Value]] = ()) -> None:
        checked = tuple((name, value) for name, value in fields)
        for name, value in checked:
            _check_field(name, value)
        self._fields = checked

    @classmethod
    def of(cls, fields: Iterable[tuple[str, Value]]) -> Message:
        """Build a message from ``(name, value)`` pairs in wire order."""
        return cls(fields)

    @classmethod
    def _trusted(cls, fields: tuple[tuple[str, Value], ...]) -> Message:
        # The decoder has already validated every field; skip the second pass.
        msg = cls.__new__(cls)
        msg._fields = fields
        return msg

    @property
    def fields(self) -> tuple[tuple[str, Value], ...]:
        """All fields in wire order."""
        return self._fields

    def _first(self, name: str) -> Value | None:
        for field_name, value in self._fields:
            if field_name == name:
                return value
        return None

    def get(self, name: str) -> str | None:
        """The first field ``name`` if it is a string, else None (absent or another type)."""
        value = self._first(name)
        return value if isinstance(value, str) else None

    def get_bytes(self, name: str) -> bytes | None:
        """The first field ``name`` if it is binary, else None."""
        value = self._first(name)
        return value if isinstance(value, bytes) else None

    def get_message(self, name: str) -> Message | None:
        """The first field ``name`` if it is a nested message, else None."""
        value = self._first(name)
        return value if isinstance(value, Message) else None

    def get_all(self, name: str) -> list[Value]:
        """Every value of the fields called ``name``, in order."""
        return [value for field_name, value in self._fields if field_name == name]

    def get_hex(self, name: str) -> int | None:
        """The string field ``name`` read as Heartbeat's hex number (seq, hg, ts, dt, ackseq).

        None if absent; ``BadPacket("bad_field")`` if present but not a hex number.
        """
        return self._number(name, _HEX, 16)

    def get_int(self, name: str) -> int | None:
        """The string field ``name`` read as a decimal number (protocol, ttl, firstseq).

        None if absent; ``BadPacket("bad_field")`` if present but not a decimal number.
        """
        return self._number(name, _DECIMAL, 10)

    def _number(self, name: str, pattern: re.Pattern[bytes], base: int) -> int | None:
        value = self._first(name)
        if value is None:
            return None
        if isinstance(value, str):
            raw = to_wire(value)
            if pattern.fullmatch(raw):
                return int(raw, base)
        raise BadPacket(
            BAD_FIELD, f"field {clip(name)} is not a base-{base} number: {clip(value)}"
        )

    def with_field(self, name: str, value: Value) -> Message:
        """A copy with the first field ``name`` set to ``value`` in place, or appended."""
        _check_field(name, value)
        for i, (field_name, _) in enumerate(self._fields):
            if field_name == name:
                fields = (*self._fields[:i], (name, value), *self._fields[i + 1 :])
                return Message._trusted(fields)
        return Message._trusted((*self._fields, (name, value)))

    def append(self, name: str, value: Value) -> Message:
        """A copy with ``(name, value)`` added at the end, even if ``name`` already exists."""
        _check_field(name, value)
        return Message._trusted((*self._fields, (name, value)))

    def without(self, name: str) -> Message:
        """A copy without any field called ``name``."""
        return Message._trusted(tuple(f for f in self._fields if f[0] != name))

    def names(self) -> list[str]:
        """The field names in order."""
        return [name for name, _ in self._fields]

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        return any(field_name == name for field_name, _ in self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return f"Message({list(self._fields)!r})"
