"""Heartbeat v1 wire codec: messages to and from UDP payloads, signed and verified. Pure.

A Heartbeat message is an ordered list of named fields. Heartbeat 3.0.6 sends the *netstring*
form, signed twice::

    ###\\n
    11:(0)t=status,            one netstring per field: "(<type>)<name>=<value>"
    ...
    50:(0)auth=1 <hex>,        inner auth: digest of the classic text of the other fields
    %%%\\n
    42:1 <hex>,                trailer: digest of the bytes from "###\\n" through "%%%\\n"

and understands the older *classic* text form (``>>>\\n``, ``name=value\\n`` lines, ``<<<\\n``,
a trailing NUL), which carries the inner auth only. Field types: 0 string (``str``),
1 binary (``bytes``, base64 in classic text), 2 nested message (``Message``).

The membership core builds a status message in Heartbeat's field order and signs it::

    msg = Message.of([
        ("t", "status"), ("st", "active"), ("dt", f"{deadtime_ms:x}"), ("protocol", "1"),
        ("src", node), ("srcuuid", node_uuid.bytes), ("seq", f"{seq:x}"),
        ("hg", f"{generation:x}"), ("ts", f"{int(wall_clock):x}"), ("ld", loadavg), ("ttl", "3"),
    ])
    payload = encode(msg, keys.signing_key)          # netstring, as Heartbeat 3.0.6 sends

and reads what arrives::

    try:
        got = decode(payload, keys)                  # raises only BadPacket
        seq = got.message.get_hex("seq")             # None if absent, BadPacket if not hex
    except BadPacket as e:
        counters[e.reason] += 1                      # e.reason is one of REASONS

Bad remote input raises ``BadPacket`` and nothing else; local misuse (a field Heartbeat could
not carry) raises ``FieldError``, a ``ValueError``. Both, ``Message`` and the reasons are
defined in :mod:`nonstop.heartbeat.message` and importable from here.

Authenticate before parsing: the signature (trailer, or the classic ``auth`` line) and its key
index are checked on the raw datagram before any field is decoded, so a datagram without our
key costs one digest whatever its shape (a body of thousands of tiny fields included).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from nonstop.config.model import AuthKey, AuthKeys
from nonstop.errors import NonstopError
from nonstop.heartbeat import auth
from nonstop.heartbeat.message import (
    AUTH,
    AUTH_SYNTAX,
    BAD_FIELD,
    FIELD_NAME,
    FRAMING,
    NO_AUTH,
    REASONS,
    TOO_BIG,
    UNKNOWN_KEY,
    UNSUPPORTED,
    BadPacket,
    FieldError,
    Message,
    Value,
    clip,
    from_wire,
    to_wire,
)

# The message model lives in message.py; the codec is where callers find all of it.
__all__ = [
    "AUTH", "AUTH_SYNTAX", "BAD_FIELD", "FRAMING", "MAX_DEPTH", "MAX_MESSAGE", "NO_AUTH",
    "REASONS", "TOO_BIG", "UNKNOWN_KEY", "UNSUPPORTED", "BadPacket", "Decoded", "FieldError",
    "Head", "Message", "Value", "WireFormat", "authenticate_netstring", "decode", "encode",
    "encode_after", "signed_text",
]

WireFormat: TypeAlias = Literal["netstring", "classic"]

# Heartbeat's MAXMSG: the largest message it builds and its receive buffer.
MAX_MESSAGE = 256 * 1024
# Heartbeat's MAXDEPTH: nested messages deeper than this cannot be written as classic text.
MAX_DEPTH = 16
AUTH_FIELD = "auth"
# Heartbeat accepts key indexes 0..15 (MAXAUTH).
MAX_KEY_INDEX = 15

_NETSTRING_START = b"###\n"
_NETSTRING_END = b"%%%\n"
_CLASSIC_START = b">>>\n"
_CLASSIC_END = b"<<<\n"
# In classic text a newline inside a string value travels as byte 19, and the newlines of a
# nested message at depth d as _NESTED_SYMBOLS[d] (cluster-glue's SPECIAL_SYM(S)).
_NEWLINE_SYMBOL = 19
_NESTED_SYMBOLS = (20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 15, 16, 17, 18)
_TYPE_STRING, _TYPE_BINARY, _TYPE_NESTED = 0, 1, 2
# Types cluster-glue knows but Heartbeat v1 never sends: list, compressed, uncompressed.
_TYPES_UNSUPPORTED = frozenset({3, 4, 5})

_NETSTRING_LEN = re.compile(rb"(0|[1-9][0-9]{0,5}):")
# A string field's length, type and name in one match (FIELD_NAME's classes, which stop at
# the first "="): the common case of _parse_netstring_body, which checks the rest.
_STRING_FIELD = re.compile(rb"(0|[1-9][0-9]{0,5}):\(0\)([!-'\)-<>-~][!-<>-~]*)=")
_AUTH_VALUE = re.compile(r"([0-9]{1,2}) ([!-~]+)")
# The netstring trailer "<len>:<index> <digest>,": at most this many bytes after "%%%\n".
_TRAILER_SPAN = 128
_TRAILER = re.compile(rb"(0|[1-9][0-9]{0,2}):(.*),", re.DOTALL)
_EMPTY_LINES = re.compile(rb"\n\n+")


class _Unwritable(NonstopError):
    """A message that cannot be rendered as classic text (nesting symbol clash or depth)."""


@dataclass(frozen=True)
class Decoded:
    """An authenticated message as received: its fields (``auth`` included) and framing."""

    message: Message
    fmt: WireFormat
    key_index: int  # the authkeys index named by the inner auth field


# ---------------------------------------------------------------- rendering


def _classic_fields(msg: Message, depth: int, skip_auth: bool) -> bytes:
    """Heartbeat's ``msg2string_buf`` body: one ``name=value\\n`` line per field."""
    out = bytearray()
    for name, value in msg._fields:
        if skip_auth and name == AUTH_FIELD:
            continue
        if isinstance(value, str):
            out += b"%s=%s\n" % (name.encode(), to_wire(value).replace(b"\n", b"\x13"))
        elif isinstance(value, bytes):
            out += b"(1)%s=%s\n" % (name.encode(), binascii.b2a_base64(value, newline=False))
        else:
            out += b"(2)%s=%s\n" % (name.encode(), _classic_nested(value, depth))
    return bytes(out)


def _classic_nested(child: Message, depth: int) -> bytes:
    if depth >= MAX_DEPTH:
        raise _Unwritable(f"nested deeper than {MAX_DEPTH}")
    text = _CLASSIC_START + _classic_fields(child, depth + 1, False) + _CLASSIC_END
    symbol = _NESTED_SYMBOLS[depth]
    if symbol in text:
        raise _Unwritable(f"nested message at depth {depth} contains byte {symbol}")
    return text.replace(b"\n", bytes((symbol,)))


def _netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


def _netstring_body(msg: Message, depth: int) -> bytes:
    """Heartbeat's ``msg2netstring_buf``: ``###\\n``, one netstring per field, ``%%%\\n``."""
    if depth > MAX_DEPTH:
        raise _Unwritable(f"nested deeper than {MAX_DEPTH}")
    parts = [_NETSTRING_START]
    for name, value in msg._fields:
        if isinstance(value, str):
            payload = b"(0)%s=%s" % (name.encode(), to_wire(value))
        elif isinstance(value, bytes):
            payload = b"(1)%s=%s" % (name.encode(), value)
        else:
            payload = b"(2)%s=%s" % (name.encode(), _netstring_body(value, depth + 1))
        parts.append(_netstring(payload))
    parts.append(_NETSTRING_END)
    return b"".join(parts)


def signed_text(msg: Message) -> bytes:
    """The bytes the inner ``auth`` field signs: the classic text of every other field.

    Raises FieldError if the message cannot be written as classic text.
    """
    try:
        return _classic_fields(msg, 0, True)
    except _Unwritable as e:
        raise FieldError(str(e)) from None


def _check_classic_strings(msg: Message) -> None:
    # Classic text turns byte 19 back into a newline, so a literal one would not survive.
    for name, value in msg._fields:
        if isinstance(value, str) and "\x13" in value:
            raise FieldError(f"field {name!r}: classic text cannot carry byte 19 in a value")
        if isinstance(value, Message):
            _check_classic_strings(value)


def encode(msg: Message, key: AuthKey, fmt: WireFormat = "netstring") -> bytes:
    """Sign ``msg`` with ``key`` and frame it as Heartbeat 3.0.6 does.

    Any ``auth`` field is dropped and a fresh one appended last; the netstring form also gets
    the trailer digest. Raises FieldError if the message cannot be carried in ``fmt`` or the
    result exceeds MAX_MESSAGE.
    """
    if fmt not in ("netstring", "classic"):
        raise FieldError(f"unknown wire format {fmt!r}")
    body = msg.without(AUTH_FIELD)
    inner = f"{key.index} {auth.digest(key.method, key.secret, signed_text(body))}"
    signed = body.append(AUTH_FIELD, inner)
    try:
        if fmt == "netstring":
            framed = _netstring_body(signed, 0)
            trailer = f"{key.index} {auth.digest(key.method, key.secret, framed)}"
            data = framed + _netstring(trailer.encode())
        else:
            _check_classic_strings(signed)
            data = _CLASSIC_START + _classic_fields(signed, 0, False) + _CLASSIC_END + b"\0"
    except _Unwritable as e:
        raise FieldError(str(e)) from None
    if len(data) > MAX_MESSAGE:
        raise FieldError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


class Head:
    """The leading fields of messages sent again and again with only their last fields
    changing (a node's status: everything before ``seq``), checked and rendered once.

    A heartbeat is sent every keepalive by a process that sleeps in between, so its cost is
    mostly code and objects coming back into the caches: checking and rendering 13 fields
    twice (netstring, and the classic text the inner ``auth`` signs) for every status was
    most of a send. Raises FieldError as ``encode`` would for these fields.
    """

    __slots__ = ("_classic", "_netstrings", "fields")

    def __init__(self, fields: Sequence[tuple[str, Value]]) -> None:
        msg = Message.of(fields)
        if AUTH_FIELD in msg:
            raise FieldError("a head cannot carry the auth field")
        self.fields = msg.fields
        try:
            self._classic = _classic_fields(msg, 0, True)
            self._netstrings = _netstring_body(msg, 0)[len(_NETSTRING_START) : -len(_NETSTRING_END)]
        except _Unwritable as e:
            raise FieldError(str(e)) from None


def encode_after(head: Head, tail: Sequence[tuple[str, str]], key: AuthKey,
                 fmt: WireFormat = "netstring") -> bytes:
    """``encode`` of the message ``head`` + ``tail`` (string fields), the head not checked
    or rendered again: the same bytes (tests compare both for arbitrary messages).

    Every keepalive comes through here, so the tail (a status's ``seq``, ``hg``, ``ts``,
    ``ld``, ``ttl``) is checked and framed in one pass: a name is checked once and then
    found in ``_TAIL_NAMES``, a value only for what ``encode`` refuses in it."""
    if fmt != "netstring":
        return encode(Message.of((*head.fields, *tail)), key, fmt)
    classic = head._classic
    framed = [_NETSTRING_START, head._netstrings]
    for name, value in tail:
        name_bytes = _TAIL_NAMES.get(name)
        if name_bytes is None or not value or "\0" in value or "\x13" in value:
            if name == AUTH_FIELD or "\x13" in value:
                return encode(Message.of((*head.fields, *tail)), key, fmt)
            Message.of(((name, value),))  # FieldError for what encode refuses
            name_bytes = _tail_name(name)
        try:
            line = b"%s=%s" % (name_bytes, to_wire(value))
        except UnicodeEncodeError:
            Message.of(((name, value),))  # raises FieldError, as encode would
            raise
        classic += line.replace(b"\n", b"\x13") + b"\n"
        framed.append(_netstring(b"(0)" + line))
    inner = b"%d %s" % (key.index, auth.digest(key.method, key.secret, classic).encode())
    framed += (_netstring(b"(0)auth=" + inner), _NETSTRING_END)
    body = b"".join(framed)
    trailer = b"%d %s" % (key.index, auth.digest(key.method, key.secret, body).encode())
    data = body + _netstring(trailer)
    if len(data) > MAX_MESSAGE:
        raise FieldError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


# Tail field names already checked (a status's five, a few more): name -> its bytes.
_TAIL_NAMES: dict[str, bytes] = {}
_TAIL_NAMES_MAX = 64


def _tail_name(name: str) -> bytes:
    if len(_TAIL_NAMES) >= _TAIL_NAMES_MAX:
        _TAIL_NAMES.clear()
    _TAIL_NAMES[name] = name_bytes = name.encode()
    return name_bytes


# ---------------------------------------------------------------- parsing


def _field_name(raw: bytes) -> str:
    if not FIELD_NAME.fullmatch(raw):
        raise BadPacket(FRAMING, f"bad field name {clip(raw)}")
    return raw.decode("ascii")


def _field_type(raw: bytes) -> int:
    if len(raw) != 3 or raw[0:1] != b"(" or raw[2:3] != b")" or not raw[1:2].isdigit():
        raise BadPacket(FRAMING, f"bad type prefix {raw!r}")
    ftype = raw[1] - 0x30
    if ftype in _TYPES_UNSUPPORTED:
        raise BadPacket(UNSUPPORTED, f"field type {ftype}")
    if ftype > _TYPE_NESTED:
        raise BadPacket(FRAMING, f"unknown field type {ftype}")
    return ftype


def _string_value(raw: bytes) -> str:
    if not raw or b"\0" in raw:
        raise BadPacket(FRAMING, "empty string value or NUL in value")
    return from_wire(raw)


def _peel(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Bounds of the next netstring's payload in ``data[pos:end]``, and where it ends."""
    m = _NETSTRING_LEN.match(data, pos, end)
    if m is None:
        raise BadPacket(FRAMING, f"bad netstring length at offset {pos}")
    start = m.end()
    stop = start + int(m.group(1))
    if stop >= end or data[stop] != 0x2C:  # ","
        raise BadPacket(FRAMING, f"netstring at offset {pos} overruns or lacks ','")
    return start, stop


def _parse_netstring_body(data: bytes, pos: int, end: int, depth: int) -> tuple[Message, int]:
    """Parse ``###\\n`` fields ``%%%\\n`` starting at ``pos``; return the message and the end."""
    if not data.startswith(_NETSTRING_START, pos, end):
        raise BadPacket(FRAMING, "no ### start marker")
    pos += len(_NETSTRING_START)
    fields: list[tuple[str, Value]] = []
    while not data.startswith(_NETSTRING_END, pos, end):
        # Fast path for a well-formed string field (a heartbeat is nothing else): what it
        # accepts, the general steps below accept the same way; anything else goes to them.
        m = _STRING_FIELD.match(data, pos, end)
        if m is not None:
            equals = m.end() - 1
            stop = m.end(1) + 1 + int(m.group(1))
            if equals < stop < end and data[stop] == 0x2C and equals + 1 < stop:
                raw = data[equals + 1 : stop]
                if b"\0" not in raw:
                    fields.append((m.group(2).decode("ascii"), from_wire(raw)))
                    pos = stop + 1
                    continue
        start, stop = _peel(data, pos, end)
        pos = stop + 1
        equals = data.find(b"=", start + 3, stop)
        if equals < 0:
            raise BadPacket(FRAMING, "field without '='")
        ftype = _field_type(data[start : start + 3])
        name = _field_name(data[start + 3 : equals])
        if ftype == _TYPE_STRING:
            fields.append((name, _string_value(data[equals + 1 : stop])))
        elif ftype == _TYPE_BINARY:
            if equals + 1 == stop:
                raise BadPacket(FRAMING, f"empty binary field {clip(name)}")
            fields.append((name, data[equals + 1 : stop]))
        else:
            if depth >= MAX_DEPTH:
                raise BadPacket(FRAMING, f"nested deeper than {MAX_DEPTH}")
            child, child_end = _parse_netstring_body(data, equals + 1, stop, depth + 1)
            if child_end != stop:
                raise BadPacket(FRAMING, f"bytes after nested message {clip(name)}")
            fields.append((name, child))
    return Message._trusted(tuple(fields)), pos + len(_NETSTRING_END)


def _base64_value(raw: bytes) -> bytes:
    try:
        value = binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error as e:
        raise BadPacket(FRAMING, f"bad base64: {e}") from None
    # Only the canonical spelling is accepted, so that re-encoding gives the same bytes.
    if not value or binascii.b2a_base64(value, newline=False) != raw:
        raise BadPacket(FRAMING, "empty or non-canonical base64")
    return value


def _parse_classic_lines(block: bytes, depth: int) -> Message:
    """Parse the ``name=value\\n`` lines between ``>>>\\n`` and ``<<<\\n``."""
    fields: list[tuple[str, Value]] = []
    for line in block.split(b"\n")[:-1]:
        if not line:
            continue  # Heartbeat skips empty lines between fields
        ftype = _TYPE_STRING
        if line.startswith(b"("):
            ftype = _field_type(line[:3])
            line = line[3:]
        equals = line.find(b"=")
        if equals < 0:
            raise BadPacket(FRAMING, "line without '='")
        name = _field_name(line[:equals])
        raw = line[equals + 1 :]
        if ftype == _TYPE_STRING:
            fields.append((name, _string_value(raw.replace(b"\x13", b"\n"))))
        elif ftype == _TYPE_BINARY:
            fields.append((name, _base64_value(raw)))
        else:
            if depth >= MAX_DEPTH:
                raise BadPacket(FRAMING, f"nested deeper than {MAX_DEPTH}")
            child = raw.replace(bytes((_NESTED_SYMBOLS[depth],)), b"\n")
            fields.append((name, _parse_classic(child, depth + 1)))
    return Message._trusted(tuple(fields))


def _parse_classic(text: bytes, depth: int) -> Message:
    """Parse a whole classic message, ``>>>\\n`` through ``<<<\\n``, nothing after."""
    if not text.startswith(_CLASSIC_START):
        raise BadPacket(FRAMING, "no >>> start marker")
    # Search from the newline of ">>>\n" so an empty message is found too.
    end = text.find(b"\n" + _CLASSIC_END, len(_CLASSIC_START) - 1)
    if end < 0:
        raise BadPacket(FRAMING, "no <<< end marker")
    if end + 1 + len(_CLASSIC_END) != len(text):
        raise BadPacket(FRAMING, "bytes after <<< end marker")
    block = text[len(_CLASSIC_START) : end + 1]
    if b"\0" in block:
        raise BadPacket(FRAMING, "NUL inside classic message")
    return _parse_classic_lines(block, depth)


def _key_for(auth_value: str, keys: AuthKeys) -> tuple[AuthKey, str]:
    m = _AUTH_VALUE.fullmatch(auth_value)
    if m is None:
        raise BadPacket(AUTH_SYNTAX, f"auth value {clip(auth_value, 80)}")
    index = int(m.group(1))
    key = keys.keys.get(index) if index <= MAX_KEY_INDEX else None
    if key is None:
        raise BadPacket(UNKNOWN_KEY, f"key index {index} is not in authkeys")
    return key, m.group(2)


def _verify_inner(msg: Message, keys: AuthKeys, verified_with: int | None = None) -> int:
    """Check the inner ``auth`` field; return the key index it names.

    ``verified_with``: the key index whose trailer digest already verified the netstring
    bytes this message was parsed from. Those bytes include the inner ``auth`` field, so whoever
    made that trailer holds the key and could as well have made the inner digest: when the
    inner field names the same key, its digest (the classic text rendered again and hashed,
    a third of a received heartbeat's cost) proves nothing more and is not computed. It is
    for another key, or for the classic form, which has no trailer.
    """
    value = msg._first(AUTH_FIELD)
    if value is None:
        raise BadPacket(NO_AUTH, "no auth field")
    if not isinstance(value, str):
        raise BadPacket(AUTH_SYNTAX, "auth field is not a string")
    key, claimed = _key_for(value, keys)
    if key.index == verified_with:
        return key.index
    try:
        text = _classic_fields(msg, 0, True)
    except _Unwritable as e:
        raise BadPacket(FRAMING, str(e)) from None
    if not auth.verify(key.method, key.secret, text, claimed):
        src = msg.get("src")
        raise BadPacket(AUTH, f"inner auth failed (src={clip(src)}, key {key.index})")
    return key.index


def _authenticate_netstring(data: bytes, keys: AuthKeys) -> tuple[int, int]:
    """Check the trailer digest on the raw bytes; return where the signed body ends and the
    index of the key that signed it.

    Nothing of the body is decoded: the trailer is the last netstring, right after the last
    ``%%%\n`` within its few bytes from the end, so a datagram that is not signed with one of
    our keys costs one digest, whatever its shape.
    """
    body_end = data.rfind(_NETSTRING_END, max(0, len(data) - _TRAILER_SPAN))
    if body_end < 0:
        raise BadPacket(FRAMING, "no %%% end marker before a trailer")
    body_end += len(_NETSTRING_END)
    if body_end == len(data):
        raise BadPacket(NO_AUTH, "no trailer auth after %%%")
    m = _TRAILER.fullmatch(data, body_end)
    if m is None or int(m.group(1)) != len(m.group(2)):
        raise BadPacket(FRAMING, "bad trailer netstring after %%%")
    try:
        trailer = m.group(2).decode("ascii")
    except UnicodeDecodeError:
        raise BadPacket(AUTH_SYNTAX, "trailer auth is not ASCII") from None
    key, claimed = _key_for(trailer, keys)
    if not auth.verify(key.method, key.secret, data[:body_end], claimed):
        raise BadPacket(AUTH, f"trailer auth failed (key {key.index})")
    return body_end, key.index


def _authenticate_classic(text: bytes, keys: AuthKeys) -> None:
    """Check the ``auth`` line of a classic message on the raw bytes, before any parsing.

    The signed text is every other top-level line, empty lines left out, which is what the
    sender rendered (the parser then checks that the fields render to the same bytes).
    """
    end = text.find(b"\n" + _CLASSIC_END, len(_CLASSIC_START) - 1)
    if end < 0 or end + 1 + len(_CLASSIC_END) != len(text):
        raise BadPacket(FRAMING, "no <<< end marker at the end")
    block = text[len(_CLASSIC_START) : end + 1]
    start = 0 if block.startswith(b"auth=") else block.find(b"\nauth=") + 1
    if start == 0 and not block.startswith(b"auth="):
        raise BadPacket(NO_AUTH, "no auth field")
    stop = block.index(b"\n", start)
    try:
        value = block[start + len(b"auth=") : stop].decode("ascii")
    except UnicodeDecodeError:
        raise BadPacket(AUTH_SYNTAX, "auth value is not ASCII") from None
    key, claimed = _key_for(value, keys)
    signed = _EMPTY_LINES.sub(b"\n", block[:start] + block[stop + 1 :])
    if signed.startswith(b"\n"):
        signed = signed[1:]
    if not auth.verify(key.method, key.secret, signed, claimed):
        raise BadPacket(AUTH, f"inner auth failed (key {key.index})")


def authenticate_netstring(data: bytes, keys: AuthKeys) -> tuple[int, int] | None:
    """``decode``'s checks before any field is read: the size, then for the netstring form the
    trailer digest. Returns where the signed body ends and the trailer's key index (pass them
    to ``decode`` as ``trailer``), or None for a datagram that is not a netstring. Raises
    BadPacket as ``decode`` would."""
    if len(data) > MAX_MESSAGE:
        raise BadPacket(TOO_BIG, f"{len(data)} bytes, limit {MAX_MESSAGE}")
    if not data.startswith(_NETSTRING_START):
        return None
    return _authenticate_netstring(data, keys)


def decode(data: bytes, keys: AuthKeys, trailer: tuple[int, int] | None = None) -> Decoded:
    """Authenticate one datagram on its raw bytes, then parse it, in either wire form.

    Netstring: the trailer digest is checked before any field is decoded, then (after
    parsing) the inner ``auth`` field, whose digest only when it names another key than the
    trailer (see ``_verify_inner``); classic: the ``auth`` line, before and after parsing.
    Each names its authkeys index, which must be configured. Raises BadPacket, and nothing
    else, for any input that is not an authentic Heartbeat message. ``trailer``: what
    ``authenticate_netstring`` returned for these bytes, whose checks are then not repeated.
    """
    data = bytes(data)
    if trailer is None:
        trailer = authenticate_netstring(data, keys)
    if trailer is not None:
        body_end, trailer_key = trailer
        msg, parsed_end = _parse_netstring_body(data, 0, body_end, 0)
        if parsed_end != body_end:
            raise BadPacket(FRAMING, "bytes after %%% end marker")
        return Decoded(msg, "netstring", _verify_inner(msg, keys, trailer_key))
    if data.startswith(_CLASSIC_START):
        # Heartbeat sends the C string's terminating NUL as well.
        text = data[:-1] if data.endswith(b"\0") else data
        _authenticate_classic(text, keys)
        msg = _parse_classic(text, 0)
        return Decoded(msg, "classic", _verify_inner(msg, keys))
    raise BadPacket(FRAMING, f"no start marker: {clip(data[:8])}")
