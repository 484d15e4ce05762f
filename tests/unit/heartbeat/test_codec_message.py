"""The Message type and the classic text form."""

from __future__ import annotations

import pytest

from nonstop.config.model import AuthKey, AuthKeys, AuthMethod
from nonstop.heartbeat.codec import Message, WireFormat, decode, encode, signed_text

SHA1 = AuthKey(1, AuthMethod.SHA1, b"ThisIsTheAuthkeyForTheCluster")
MD5 = AuthKey(2, AuthMethod.MD5, b"md5secret")
CRC = AuthKey(3, AuthMethod.CRC, b"")
KEYS = AuthKeys(1, {1: SHA1, 2: MD5, 3: CRC})


def test_lookup_returns_the_first_field_of_a_name() -> None:
    msg = Message.of([("t", "status"), ("x", "1"), ("x", "2"), ("u", b"\x00\x01")])
    assert msg.get("x") == "1"
    assert msg.get_all("x") == ["1", "2"]
    assert msg.get("missing") is None
    assert msg.get_bytes("u") == b"\x00\x01"
    assert msg.get_bytes("t") is None
    assert msg.get_message("t") is None
    assert "x" in msg and "y" not in msg
    assert len(msg) == 4
    assert msg.names() == ["t", "x", "x", "u"]


def test_with_field_replaces_in_place_or_appends() -> None:
    msg = Message.of([("a", "1"), ("b", "2"), ("a", "3")])
    assert list(msg.with_field("a", "9")) == [("a", "9"), ("b", "2"), ("a", "3")]
    assert list(msg.with_field("c", "4")) == [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")]
    assert list(msg.append("b", "5"))[-1] == ("b", "5")
    assert list(msg.without("a")) == [("b", "2")]
    assert list(msg) == [("a", "1"), ("b", "2"), ("a", "3")]  # unchanged


def test_equality_is_by_ordered_fields_and_types() -> None:
    a = Message.of([("a", "1"), ("b", "2")])
    assert a == Message([("a", "1"), ("b", "2")])
    assert hash(a) == hash(Message([("a", "1"), ("b", "2")]))
    assert a != Message.of([("b", "2"), ("a", "1")])
    assert Message.of([("u", "x")]) != Message.of([("u", b"x")])
    assert a != [("a", "1"), ("b", "2")]


def test_encode_replaces_an_existing_auth_field_and_puts_it_last() -> None:
    msg = Message.of([("auth", "1 stale"), ("t", "status"), ("src", "n1")])
    got = decode(encode(msg, SHA1), KEYS).message
    assert got.names() == ["t", "src", "auth"]
    assert got.get("auth") != "1 stale"


def test_signed_text_is_the_classic_body_without_auth() -> None:
    msg = Message.of([("t", "status"), ("auth", "1 x"), ("u", b"\xff"), ("v", "a\nb")])
    assert signed_text(msg) == b"t=status\n(1)u=/w==\nv=a\x13b\n"


@pytest.mark.parametrize("key", [SHA1, MD5, CRC], ids=lambda k: k.method.value)
@pytest.mark.parametrize("fmt", ["netstring", "classic"])
def test_round_trip_with_every_method_and_format(key: AuthKey, fmt: WireFormat) -> None:
    msg = Message.of([("t", "resource"), ("rsc_hold", "none"), ("src", "n1"), ("u", b"\0" * 16)])
    data = encode(msg, key, fmt)
    got = decode(data, KEYS)
    assert got.fmt == fmt
    assert got.key_index == key.index
    assert got.message.without("auth") == msg
    assert encode(got.message, key, fmt) == data


def test_crc_auth_value_as_heartbeat_prints_it() -> None:
    msg = Message.of([("t", "status")])
    auth_value = decode(encode(msg, CRC), KEYS).message.get("auth")
    assert auth_value is not None
    index, crc_hex = auth_value.split(" ")
    assert index == "3"
    assert crc_hex == crc_hex.lower() and not crc_hex.startswith("0")


def test_classic_layout() -> None:
    msg = Message.of([("t", "NS_ackmsg"), ("dest", "n2"), ("ackseq", "7")])
    data = encode(msg, MD5, "classic")
    assert data.startswith(b">>>\nt=NS_ackmsg\ndest=n2\nackseq=7\nauth=2 ")
    assert data.endswith(b"\n<<<\n\0")
    assert len(data.split(b"auth=2 ")[1].split(b"\n")[0]) == 32


def test_classic_newlines_in_values_travel_as_byte_19() -> None:
    msg = Message.of([("info", "line one\nline two")])
    data = encode(msg, SHA1, "classic")
    assert b"info=line one\x13line two\n" in data
    assert decode(data, KEYS).message.get("info") == "line one\nline two"


def test_classic_decoder_skips_blank_lines_as_heartbeat_does() -> None:
    data = encode(Message.of([("t", "status"), ("src", "n1")]), SHA1, "classic")
    spaced = data.replace(b"\nsrc=", b"\n\n\nsrc=")
    assert decode(spaced, KEYS).message == decode(data, KEYS).message


def test_non_utf8_bytes_survive_decode_and_encode() -> None:
    msg = Message.of([("t", b"caf\xe9".decode("utf-8", "surrogateescape"))])
    data = encode(msg, SHA1)
    assert b"(0)t=caf\xe9," in data
    got = decode(data, KEYS).message
    assert encode(got, SHA1) == data


def test_nested_messages_in_both_formats() -> None:
    inner = Message.of([("name", "a\nb"), ("blob", b"\x01\x02")])
    msg = Message.of([("t", "x"), ("child", Message.of([("grand", inner), ("k", "v")]))])
    formats: tuple[WireFormat, ...] = ("netstring", "classic")
    for fmt in formats:
        data = encode(msg, SHA1, fmt)
        assert decode(data, KEYS).message.without("auth") == msg
    netstring = encode(msg, SHA1)
    assert b"(2)child=###\n" in netstring
    # In classic text the child's newlines become byte 20, the grandchild's byte 21.
    assert b"(2)child=>>>\x14(2)grand=>>>\x15name=a\x13b\x15" in encode(msg, SHA1, "classic")
