"""ICMP echo codec: a reply is ours only with our token; anything else is NotOurReply."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nonstop.ping import icmp

TOKEN = b"12345678"


def as_reply(request: bytes) -> bytes:
    body = bytes([icmp.ECHO_REPLY, 0, 0, 0]) + request[4:]
    csum = icmp.checksum(body)
    return body[:2] + struct.pack("!H", csum) + body[4:]


def test_request_checksum_verifies() -> None:
    req = icmp.echo_request(0x1234, 7, TOKEN)
    assert req[0] == icmp.ECHO_REQUEST
    assert icmp.checksum(req) == 0


def test_reply_parses_with_and_without_ip_header() -> None:
    reply = as_reply(icmp.echo_request(0x1234, 7, TOKEN))
    assert icmp.parse_echo_reply(reply, TOKEN, ip_header=False) == icmp.EchoReply(0x1234, 7)
    ip = bytes([0x45]) + b"\x00" * 19
    assert icmp.parse_echo_reply(ip + reply, TOKEN, ip_header=True, ident=0x1234).seq == 7


@pytest.mark.parametrize("mangle,why", [
    (lambda r: r[:10], "too short"),
    (lambda r: bytes([icmp.ECHO_REQUEST]) + r[1:], "ICMP type 8"),
    (lambda r: r[:8] + b"x" * 8, "token"),
    (lambda r: r[:2] + b"\x00\x00" + r[4:], "checksum"),
])
def test_not_our_reply(mangle: object, why: str) -> None:
    reply = as_reply(icmp.echo_request(1, 1, TOKEN))
    assert callable(mangle)
    with pytest.raises(icmp.NotOurReply, match=why):
        icmp.parse_echo_reply(mangle(reply), TOKEN, ip_header=False)


def test_another_probers_identifier_is_not_ours() -> None:
    reply = bytes([0x45]) + b"\x00" * 19 + as_reply(icmp.echo_request(1, 1, TOKEN))
    with pytest.raises(icmp.NotOurReply, match="identifier"):
        icmp.parse_echo_reply(reply, TOKEN, ip_header=True, ident=2)


@given(st.binary(max_size=128), st.booleans())
def test_any_bytes_give_a_reply_or_not_our_reply(data: bytes, ip_header: bool) -> None:
    try:
        reply = icmp.parse_echo_reply(data, TOKEN, ip_header=ip_header, ident=5)
    except icmp.NotOurReply:
        return
    assert reply.ident == 5  # only a well-formed reply to us gets through
