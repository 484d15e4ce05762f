"""Authenticate before parsing: no field of a datagram is decoded until its signature checks.

Issue 9: a well-formed 64 KB datagram of 7,000 tiny fields cost 13 ms to parse before its
signature was looked at, and 150 of them a second froze the holder. These properties prove,
for any bytes, that an unauthentic datagram never reaches the field parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.config.model import AuthKey, AuthKeys, AuthMethod
from nonstop.heartbeat import codec
from nonstop.heartbeat.codec import BadPacket, Message, decode, encode

KEY = AuthKey(1, AuthMethod.SHA1, b"ThisIsTheAuthkeyForTheCluster")
MD5 = AuthKey(2, AuthMethod.MD5, b"md5secret")
KEYS = AuthKeys(1, {1: KEY, 2: MD5})
ATTACKER = AuthKey(1, AuthMethod.SHA1, b"a guess at the key")
STATUS = Message.of(
    [("t", "status"), ("st", "active"), ("src", "vpbx1-1"), ("seq", "6c"), ("hg", "6b06285d"),
     ("ts", "6b062ea0")]
)
# Reasons a datagram can be refused with before any field is parsed.
BEFORE_PARSING = {"framing", "no_auth", "auth_syntax", "unknown_key", "auth", "too_big"}
PROPS = settings(max_examples=300, deadline=None)


@contextmanager
def parser_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*_args: object) -> None:
        raise AssertionError("a field was parsed before the datagram was authenticated")

    with monkeypatch.context() as m:
        m.setattr(codec, "_parse_netstring_body", refuse)
        m.setattr(codec, "_parse_classic", refuse)
        m.setattr(codec, "_parse_classic_lines", refuse)
        yield


def many_fields(n: int) -> bytes:
    """The attack of issue 9: a well-formed netstring body of ``n`` tiny fields."""
    fields = b"".join(b"%d:(0)f%d=x," % (len(b"(0)f%d=x" % i), i) for i in range(n))
    return b"###\n" + fields + b"%%%\n"


def refused_unparsed(data: bytes, monkeypatch: pytest.MonkeyPatch) -> str:
    with parser_forbidden(monkeypatch), pytest.raises(BadPacket) as info:
        decode(data, KEYS)
    assert info.value.reason in BEFORE_PARSING
    return info.value.reason


@PROPS
@given(st.binary(max_size=2048), st.sampled_from([b"", b"###\n", b">>>\n"]))
def test_any_bytes_are_refused_without_parsing(data: bytes, prefix: bytes) -> None:
    with pytest.MonkeyPatch.context() as mp:
        refused_unparsed(prefix + data, mp)


@PROPS
@given(st.integers(1, 7000), st.sampled_from([b"2:1 ,", b"42:1 " + b"0" * 40 + b",",
                                                b"42:7 " + b"0" * 40 + b",", b""]))
def test_huge_well_formed_body_costs_one_digest(n: int, trailer: bytes) -> None:
    body = many_fields(n)
    with pytest.MonkeyPatch.context() as mp:
        refused_unparsed(body + trailer, mp)


@PROPS
@given(st.data(), st.sampled_from(["netstring", "classic"]))
def test_any_change_to_a_signed_datagram_is_refused(data: st.DataObject, fmt: str) -> None:
    packet = bytearray(encode(STATUS, KEY, "classic" if fmt == "classic" else "netstring"))
    last = len(packet) - (2 if fmt == "classic" else 1)  # the NUL or ',' ending the datagram
    i = data.draw(st.integers(4, last - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    packet[i] ^= flip
    try:
        got = decode(bytes(packet), KEYS)
    except BadPacket as e:
        assert e.reason in BEFORE_PARSING | {"bad_field"}
        return
    # Only a change that leaves the signed bytes equal can pass: the message is the same.
    assert got.message.without("auth") == STATUS


@PROPS
@given(st.sampled_from(["netstring", "classic"]), st.booleans())
def test_signed_with_another_key_is_refused_unparsed(fmt: str, unknown_index: bool) -> None:
    key = AuthKey(9, AuthMethod.SHA1, b"x") if unknown_index else ATTACKER
    packet = encode(STATUS, key, "classic" if fmt == "classic" else "netstring")
    with pytest.MonkeyPatch.context() as mp:
        assert refused_unparsed(packet, mp) == ("unknown_key" if unknown_index else "auth")


def test_the_issue_9_datagram_is_refused_by_its_trailer(monkeypatch: pytest.MonkeyPatch) -> None:
    attack = many_fields(4500) + b"42:1 " + b"0" * 40 + b","
    assert 60000 < len(attack) < 65507  # one UDP datagram
    assert refused_unparsed(attack, monkeypatch) == "auth"


def test_authentic_datagrams_still_decode() -> None:
    for fmt in ("netstring", "classic"):
        got = decode(encode(STATUS, MD5, fmt), KEYS)
        assert got.message.without("auth") == STATUS and got.key_index == 2
