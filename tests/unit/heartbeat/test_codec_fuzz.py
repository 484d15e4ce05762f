"""Property tests: decode raises only BadPacket on any input; encode/decode round-trips."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcapread import udp_datagrams

from nonstop.config.model import AuthKey, AuthKeys, AuthMethod
from nonstop.heartbeat.codec import (
    REASONS,
    BadPacket,
    FieldError,
    Head,
    Message,
    Value,
    WireFormat,
    _parse_classic,
    _parse_netstring_body,
    decode,
    encode,
    encode_after,
)

SHA1 = AuthKey(1, AuthMethod.SHA1, b"ThisIsTheAuthkeyForTheCluster")
MD5 = AuthKey(2, AuthMethod.MD5, b"md5secret")
CRC = AuthKey(3, AuthMethod.CRC, b"")
KEYS = AuthKeys(1, {1: SHA1, 2: MD5, 3: CRC})
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "heartbeat-wire"
CAPTURED = sorted({d.payload for d in udp_datagrams(FIXTURES / "hb-session.pcap")})[::12]

# NONSTOP_FUZZ_EXAMPLES raises the effort for a deep run; the default keeps the suite quick.
FUZZ = settings(
    deadline=None,
    max_examples=int(os.environ.get("NONSTOP_FUZZ_EXAMPLES", "250")),
    suppress_health_check=[HealthCheck.too_slow],
)

names = st.from_regex(r"[!-'\)-<>-~][!-<>-~]{0,8}", fullmatch=True)
binary = st.binary(min_size=1, max_size=24)
keys = st.sampled_from([SHA1, MD5, CRC])
formats: st.SearchStrategy[WireFormat] = st.sampled_from(("netstring", "classic"))


def texts(exclude: str) -> st.SearchStrategy[str]:
    chars = st.characters(exclude_characters=exclude, exclude_categories=["Cs"])
    return st.text(chars, min_size=1, max_size=24)


def messages(text: st.SearchStrategy[str], nested: bool) -> st.SearchStrategy[Message]:
    leaf: st.SearchStrategy[tuple[str, Value]] = st.tuples(names, st.one_of(text, binary))
    flat = st.lists(leaf, max_size=8).map(Message.of)
    if not nested:
        return flat
    return st.recursive(
        flat,
        lambda inner: st.lists(st.one_of(leaf, st.tuples(names, inner)), max_size=5).map(
            Message.of
        ),
        max_leaves=12,
    )


# Byte 19 stands for a newline in classic text; bytes 15-31 mark newlines of nested messages.
NESTING_SYMBOLS = "".join(map(chr, range(15, 32)))


def check_round_trip(msg: Message, key: AuthKey, fmt: WireFormat) -> None:
    data = encode(msg, key, fmt)
    got = decode(data, KEYS)
    assert got.fmt == fmt
    assert got.key_index == key.index
    assert got.message.without("auth") == msg.without("auth")
    assert got.message.names()[-1] == "auth"
    assert encode(got.message, key, fmt) == data


@FUZZ
@given(messages(texts("\0"), nested=False), keys)
def test_round_trip_netstring_any_text(msg: Message, key: AuthKey) -> None:
    check_round_trip(msg, key, "netstring")


@FUZZ
@given(messages(texts("\0\x13"), nested=False), keys, formats)
def test_round_trip_both_formats(msg: Message, key: AuthKey, fmt: WireFormat) -> None:
    check_round_trip(msg, key, fmt)


@FUZZ
@given(messages(texts("\0" + NESTING_SYMBOLS), nested=True), keys, formats)
def test_round_trip_nested(msg: Message, key: AuthKey, fmt: WireFormat) -> None:
    check_round_trip(msg, key, fmt)


@FUZZ
@given(messages(texts("\0" + NESTING_SYMBOLS), nested=True),
       st.lists(st.tuples(names, texts("\0")), max_size=6), keys, formats)
def test_encode_after_a_head_gives_the_same_bytes_as_encode(
    head: Message, tail: list[tuple[str, str]], key: AuthKey, fmt: WireFormat
) -> None:
    # The prerendered head (a status's repeated fields) must change nothing on the wire, and
    # fail where encode fails.
    def outcome(f: Callable[[], bytes]) -> bytes | str:
        try:
            return f()
        except FieldError as e:
            return type(e).__name__

    whole = outcome(lambda: encode(Message.of((*head.fields, *tail)), key, fmt))
    prepared = Head(head.fields) if "auth" not in head else None
    if prepared is not None:
        once = outcome(lambda: encode_after(prepared, tail, key, fmt))
        assert once == whole
        assert outcome(lambda: encode_after(prepared, tail, key, fmt)) == whole  # reused


@pytest.mark.parametrize("value", ["", "a\0b", "\ud800", "x\x13y", "two\nlines"])
@pytest.mark.parametrize("fmt", ["netstring", "classic"])
def test_a_tail_name_already_seen_still_has_its_value_checked(value: str, fmt: WireFormat) -> None:
    # encode_after checks a tail field's name once; its value must still fail (or pass) each
    # time exactly as encode's would.
    def outcome(f: Callable[[], bytes]) -> bytes | str:
        try:
            return f()
        except FieldError as e:
            return type(e).__name__

    head = Message.of((("t", "status"), ("st", "up"), ("src", "vpbx1-1")))
    good = (("seq", "1"), ("ld", "0.00 0.00 0.00 1/100 1"), ("ttl", "3"))
    assert outcome(lambda: encode_after(Head(head.fields), good, SHA1, fmt)) == outcome(
        lambda: encode(Message.of((*head.fields, *good)), SHA1, fmt))
    tail = (("seq", "2"), ("ld", value), ("ttl", "3"))
    whole = outcome(lambda: encode(Message.of((*head.fields, *tail)), SHA1, fmt))
    assert outcome(lambda: encode_after(Head(head.fields), tail, SHA1, fmt)) == whole
    if fmt == "netstring":  # (classic text cannot carry byte 19 at all)
        assert (whole == "FieldError") == (value in ("", "a\0b", "\ud800"))


def decode_only_bad_packet(data: bytes) -> None:
    try:
        decode(data, KEYS)
    except BadPacket as e:
        assert e.reason in REASONS


@FUZZ
@given(st.binary(max_size=2000))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    decode_only_bad_packet(data)


@FUZZ
@given(st.sampled_from([b"###\n", b">>>\n", b"###\n12:(0)", b">>>\n(1)"]), st.binary(max_size=600))
def test_decode_bytes_after_a_start_marker(prefix: bytes, data: bytes) -> None:
    decode_only_bad_packet(prefix + data)


@FUZZ
@given(st.integers(min_value=0, max_value=10**40), st.binary(max_size=64))
def test_decode_hostile_length_prefix(length: int, tail: bytes) -> None:
    decode_only_bad_packet(b"###\n%d:(0)t=%s" % (length, tail))
    decode_only_bad_packet(CAPTURED[0].split(b"%%%\n")[0] + b"%%%%%%\n%d:1 %s" % (length, tail))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid packet (captured, or classic) with a few random edits."""
    base = draw(st.sampled_from(CAPTURED))
    if draw(st.booleans()):
        base = encode(decode(base, KEYS).message, draw(keys), "classic")
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "digits", "dup"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del data[at:]
        elif op == "digits":
            data[at:at] = str(draw(st.integers(0, 10**12))).encode()
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


@FUZZ
@given(mutated())
def test_decode_mutated_valid_packets(data: bytes) -> None:
    decode_only_bad_packet(data)


def rebuild(msg: Message) -> Message:
    """Re-create a message through the public, validating constructor."""
    return Message.of(
        (name, rebuild(value) if isinstance(value, Message) else value) for name, value in msg
    )


@FUZZ
@given(mutated())
def test_parsers_only_produce_messages_the_constructor_accepts(data: bytes) -> None:
    # Mutations almost never pass authentication, so check the parsers behind it directly:
    # whatever they accept must be a message nonstop itself could build and send.
    parsed: Message | None = None
    fmt: WireFormat = "netstring"
    try:
        if data.startswith(b">>>\n"):
            fmt = "classic"
            parsed = _parse_classic(data[:-1] if data.endswith(b"\0") else data, 0)
        else:
            parsed = _parse_netstring_body(data, 0, len(data), 0)[0]
    except BadPacket:
        return
    assert rebuild(parsed) == parsed
    try:
        signed = encode(parsed, CRC, fmt)
    except FieldError:
        return  # e.g. a nested message whose text clashes with its newline symbol
    assert decode(signed, KEYS).message.without("auth") == parsed.without("auth")


# Mostly well-formed string fields, each part sometimes broken.
_field_bytes = st.tuples(
    st.sampled_from([b"(0)"] * 6 + [b"(1)", b"(2)", b"(0", b"(9)", b""]),
    st.one_of(names.map(str.encode), names.map(str.encode), st.binary(max_size=6)),
    st.sampled_from([b"=", b"=", b"=", b"", b"=="]),
    st.one_of(st.binary(max_size=8), st.sampled_from([b"", b"a\0b", b"\xff\xfe", b"x,y"])),
    st.sampled_from([0, 0, 0, 0, -2, -1, 1, 2]),  # how far the length prefix is off
    st.sampled_from([b",", b",", b",", b"", b";"]),
)


@FUZZ
@given(st.lists(_field_bytes, max_size=5), st.booleans())
def test_string_fast_path_parses_exactly_as_the_general_steps(
    fields: list[tuple[bytes, bytes, bytes, bytes, int, bytes]], end_marker: bool
) -> None:
    """The parser's fast path for string fields gives the same message, or the same error,
    as the field-by-field steps alone (the fast path turned off), on well-formed and broken
    fields alike."""
    import re

    import nonstop.heartbeat.codec as codec

    body = b"".join(
        b"%d:%s%s" % (max(0, len(t + n + eq + v) + off), t + n + eq + v, comma)
        for t, n, eq, v, off, comma in fields
    )
    data = b"###\n" + body + (b"%%%\n" if end_marker else b"")

    def parse() -> object:
        try:
            return _parse_netstring_body(data, 0, len(data), 0)
        except BadPacket as e:
            return (e.reason, str(e))

    fast = parse()
    saved = codec._STRING_FIELD
    codec._STRING_FIELD = re.compile(rb"(?!)")  # never matches: every field the slow way
    try:
        slow = parse()
    finally:
        codec._STRING_FIELD = saved
    assert fast == slow  # (Message, end) or (reason, detail)
