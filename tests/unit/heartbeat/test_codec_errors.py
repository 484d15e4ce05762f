"""Bad remote input raises BadPacket with a stable reason; local misuse raises FieldError."""

from __future__ import annotations

import re

import pytest

from nonstop.config.model import AuthKey, AuthKeys, AuthMethod
from nonstop.heartbeat.auth import digest
from nonstop.heartbeat.codec import (
    MAX_MESSAGE,
    REASONS,
    BadPacket,
    FieldError,
    Message,
    decode,
    encode,
)

KEY = AuthKey(1, AuthMethod.SHA1, b"ThisIsTheAuthkeyForTheCluster")
KEYS = AuthKeys(1, {1: KEY})
STATUS = Message.of(
    [
        ("t", "status"),
        ("st", "active"),
        ("dt", "7d0"),
        ("protocol", "1"),
        ("src", "vpbx1-1"),
        ("srcuuid", bytes.fromhex("39ec54a81e124b958230ea3a061cf99f")),
        ("seq", "6c"),
        ("hg", "6b06285d"),
        ("ts", "6b062ea0"),
        ("ld", "1.94 1.85 1.52 1/253 684"),
        ("ttl", "3"),
    ]
)
PACKET = encode(STATUS, KEY)
CLASSIC = encode(STATUS, KEY, "classic")


def reason(data: bytes, keys: AuthKeys = KEYS) -> str:
    with pytest.raises(BadPacket) as info:
        decode(data, keys)
    assert info.value.reason in REASONS
    return info.value.reason


def resign_trailer(body_and_trailer: bytes, key: AuthKey = KEY) -> bytes:
    """Replace the trailer so that only the inner auth can catch a change."""
    body = body_and_trailer[: body_and_trailer.rindex(b"%%%\n") + 4]
    trailer = f"{key.index} {digest(key.method, key.secret, body)}".encode()
    return body + b"%d:%s," % (len(trailer), trailer)


def sign_classic(block: bytes, key: AuthKey = KEY) -> bytes:
    """A classic message around ``block`` whose auth line signs it (malformed or not), so that
    only the parser, which runs after authentication, can refuse it."""
    signed = b"\n".join(line for line in block.split(b"\n") if line) + b"\n"
    auth = f"auth={key.index} {digest(key.method, key.secret, signed)}\n".encode()
    return b">>>\n" + block + auth + b"<<<\n"


def test_wrong_secret_fails_auth() -> None:
    other = AuthKeys(1, {1: AuthKey(1, AuthMethod.SHA1, b"NotTheKey")})
    assert reason(PACKET, other) == "auth"
    assert reason(CLASSIC, other) == "auth"


def test_same_index_other_method_fails_auth() -> None:
    md5 = AuthKeys(1, {1: AuthKey(1, AuthMethod.MD5, KEY.secret)})
    assert reason(PACKET, md5) == "auth"


def test_unknown_key_index() -> None:
    only_two = AuthKeys(2, {2: AuthKey(2, AuthMethod.SHA1, KEY.secret)})
    assert reason(PACKET, only_two) == "unknown_key"
    assert reason(CLASSIC, only_two) == "unknown_key"


def test_key_rollover_verifies_with_the_index_the_packet_names() -> None:
    new = AuthKey(2, AuthMethod.MD5, b"NewSecret")
    both = AuthKeys(2, {1: KEY, 2: new})
    assert decode(PACKET, both).key_index == 1
    assert decode(encode(STATUS, new), both).key_index == 2


def test_index_out_of_heartbeat_range_is_unknown() -> None:
    weird = PACKET.replace(b"42:1 ", b"43:16 ")
    assert reason(weird, AuthKeys(16, {16: AuthKey(16, AuthMethod.SHA1, KEY.secret)})) == (
        "unknown_key"
    )


def test_tampered_trailer_digest() -> None:
    flipped = PACKET[:-2] + (b"0" if PACKET[-2:-1] != b"0" else b"1") + b","
    assert reason(flipped) == "auth"


def test_uppercase_digest_is_not_heartbeats_and_fails() -> None:
    head, _, digest_hex = PACKET[:-1].rpartition(b" ")
    assert reason(head + b" " + digest_hex.upper() + b",") == "auth"


def test_tampered_field_is_caught_by_the_trailer() -> None:
    assert reason(PACKET.replace(b"st=active", b"st=standb")) == "auth"


def test_tampered_field_with_a_trailer_of_another_key_is_caught_by_inner_auth() -> None:
    # The inner field names key 1, the trailer is made with key 2: a holder of key 2 alone
    # cannot forge what key 1 signed inside.
    other = AuthKey(2, AuthMethod.SHA1, b"SecondKey")
    forged = resign_trailer(PACKET.replace(b"st=active", b"st=standb"), other)
    with pytest.raises(BadPacket) as info:
        decode(forged, AuthKeys(1, {1: KEY, 2: other}))
    assert info.value.reason == "auth"
    assert "inner" in info.value.detail


def test_inner_digest_is_not_computed_again_under_a_trailer_of_the_same_key() -> None:
    # Whoever signs the trailer with the key the inner field names could sign the inner
    # field too: the trailer over the same bytes is the proof, so a stale inner digest under
    # a good trailer of that key passes (Heartbeat itself never sends one). Classic messages,
    # which have no trailer, still have theirs checked (test_tampered_classic_field).
    resigned = resign_trailer(PACKET.replace(b"st=active", b"st=standb"))
    assert decode(resigned, KEYS).message.get("st") == "standb"


def test_tampered_classic_field() -> None:
    assert reason(CLASSIC.replace(b"seq=6c", b"seq=6d")) == "auth"


def test_missing_inner_auth() -> None:
    body = PACKET[: PACKET.index(b"50:(0)auth=")] + b"%%%\n"
    assert reason(resign_trailer(body + b"2:1 ,")) == "no_auth"
    no_auth_classic = re.sub(rb"auth=[^\n]*\n", b"", CLASSIC)
    assert reason(no_auth_classic) == "no_auth"


def test_missing_trailer() -> None:
    assert reason(PACKET[: PACKET.index(b"%%%\n") + 4]) == "no_auth"


@pytest.mark.parametrize("value", [b"1", b"x 1234", b"1 ", b"1  ab", b" 1 ab", b"001 ab"])
def test_malformed_auth_values(value: bytes) -> None:
    body = PACKET[: PACKET.index(b"%%%\n") + 4]
    assert reason(body + b"%d:%s," % (len(value), value)) == "auth_syntax"
    classic = re.sub(rb"auth=[^\n]*\n", b"auth=" + value + b"\n", CLASSIC)
    if value.strip():  # an empty value is a framing error before auth is looked at
        assert reason(classic) in {"auth_syntax", "framing"}


def test_every_truncation_is_rejected() -> None:
    for packet in (PACKET, CLASSIC[:-1]):
        for cut in range(len(packet)):
            assert reason(packet[:cut]) in {"framing", "no_auth"}, cut


def test_trailing_bytes_are_rejected() -> None:
    assert reason(PACKET + b"\0") == "framing"
    assert reason(CLASSIC + b"\0") == "framing"
    assert decode(CLASSIC[:-1], KEYS).message == decode(CLASSIC, KEYS).message


@pytest.mark.parametrize(
    "prefix",
    [b"99999999999999999999:", b"262145:", b"999999:", b"-1:", b"01:", b":", b"1x:"],
)
def test_bad_and_huge_length_prefixes(prefix: bytes) -> None:
    data = b"###\n" + prefix + b"(0)t=status," + PACKET[4:]
    assert reason(resign_trailer(data)) == "framing"


def test_oversized_datagram() -> None:
    assert reason(b"###\n" + b"x" * MAX_MESSAGE) == "too_big"


@pytest.mark.parametrize(
    "field",
    [
        b"(7)t=status",
        b"(a)t=status",
        b"(0t=status",
        b"(0)=status",
        b"(0)t=",
        b"(1)u=",
        b"(0)t",
        b"t=status",
        b"(0)(1)t=x",
        b"(0)t t=x",
        b"(0)t=a\0b",
        b"(2)n=garbage",
        b"(2)n=###\n%%%\nextra",
    ],
)
def test_bad_netstring_fields(field: bytes) -> None:
    assert reason(b"###\n%d:%s,%%%%%%\n2:1 ," % (len(field), field)) == "auth_syntax"
    assert reason(resign_trailer(b"###\n%d:%s,%%%%%%\n" % (len(field), field))) == "framing"


@pytest.mark.parametrize("ftype", [b"3", b"4", b"5"])
def test_field_types_heartbeat_v1_never_sends(ftype: bytes) -> None:
    field = b"(" + ftype + b")x=3:abc,"
    assert reason(resign_trailer(b"###\n%d:%s,%%%%%%\n" % (len(field), field))) == "unsupported"


@pytest.mark.parametrize(
    "body",
    [
        b"t=status\nnovalue\n",
        b"t=\n",
        b"=x\n",
        b"(1)u=not base64!\n",
        b"(1)u=AB==\n",  # non-canonical: padding bits set
        b"(1)u=\n",
        b"(9)u=x\n",
        b"(2)n=garbage\n",
        b"t=a\0b\n",
    ],
)
def test_bad_classic_lines(body: bytes) -> None:
    assert reason(b">>>\n" + body + b"<<<\n") == "no_auth"
    assert reason(sign_classic(body)) == "framing"


def test_classic_without_end_marker() -> None:
    assert reason(b">>>\nt=status\n") == "framing"
    assert reason(b">>>\nt=status\n<<<\nmore") == "framing"


def test_not_a_heartbeat_packet() -> None:
    assert reason(b"") == "framing"
    assert reason(b"GET / HTTP/1.0\r\n\r\n") == "framing"


def test_bad_number_fields_raise_bad_packet() -> None:
    msg = Message.of([("seq", "zz"), ("ttl", "3x"), ("srcuuid", b"\x01")])
    for name, read in (("seq", msg.get_hex), ("ttl", msg.get_int), ("srcuuid", msg.get_hex)):
        with pytest.raises(BadPacket) as info:
            read(name)
        assert info.value.reason == "bad_field"
    assert msg.get_hex("absent") is None


# ------------------------------------------------------------------ local misuse


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("", "x"),
        ("a=b", "x"),
        ("(1)srcuuid", b"x"),
        ("new\nline", "x"),
        ("with space", "x"),
        ("naïve", "x"),
        ("t", ""),
        ("t", "a\0b"),
        ("u", b""),
        ("t", "\ud800"),  # a lone surrogate that is not an escaped byte
        ("t", 3),
    ],
)
def test_fields_heartbeat_cannot_carry(name: str, value: object) -> None:
    with pytest.raises(FieldError):
        Message.of([(name, value)])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        Message().append(name, value)  # type: ignore[arg-type]


def test_classic_cannot_carry_byte_19_but_netstring_can() -> None:
    msg = Message.of([("t", "a\x13b")])
    with pytest.raises(FieldError):
        encode(msg, KEY, "classic")
    assert decode(encode(msg, KEY), KEYS).message.get("t") == "a\x13b"


def test_nested_message_clashing_with_its_newline_symbol() -> None:
    msg = Message.of([("child", Message.of([("x", "a\x14b")]))])
    with pytest.raises(FieldError):
        encode(msg, KEY)


def test_too_deep_nesting_is_local_misuse() -> None:
    msg = Message.of([("x", "leaf")])
    for _ in range(17):
        msg = Message.of([("child", msg)])
    with pytest.raises(FieldError):
        encode(msg, KEY)


def test_oversized_message_is_local_misuse() -> None:
    with pytest.raises(FieldError):
        encode(Message.of([("big", "x" * MAX_MESSAGE)]), KEY)


def test_unknown_format_is_local_misuse() -> None:
    with pytest.raises(FieldError):
        encode(STATUS, KEY, "xml")  # type: ignore[arg-type]


def test_bad_packet_is_not_a_value_error() -> None:
    # The daemon catches BadPacket to count drops; a local bug must not be counted as one.
    assert not issubclass(BadPacket, ValueError)
    assert not issubclass(FieldError, BadPacket)


def test_details_echoing_remote_data_are_clipped() -> None:
    huge = "x" * 100_000
    other = AuthKey(2, AuthMethod.SHA1, b"SecondKey")  # so that the inner digest is checked
    forged = resign_trailer(encode(Message.of([("src", huge)]), KEY).replace(b"=xxx", b"=yyy", 1),
                            other)
    with pytest.raises(BadPacket) as info:
        decode(forged, AuthKeys(1, {1: KEY, 2: other}))
    assert info.value.reason == "auth"
    assert len(str(info.value)) < 200
