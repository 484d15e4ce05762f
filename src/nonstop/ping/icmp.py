"""ICMP echo request and reply packets (RFC 792), pure.

The prober uses a ``SOCK_DGRAM``/``IPPROTO_ICMP`` socket where ``net.ipv4.ping_group_range``
allows it (the kernel then sets the identifier and strips the IP header of replies) and a raw
socket otherwise (root; replies arrive with their IP header and every other ICMP packet too).
Each request carries a per-prober token in its payload, so a reply is ours only if it echoes the
token back: other programs' pings on the same host are never counted as ours.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nonstop.errors import InvalidValue, RemoteInputError

ECHO_REPLY = 0
ECHO_REQUEST = 8
_HEADER = struct.Struct("!BBHHH")
TOKEN_LEN = 8


class NotOurReply(RemoteInputError, ValueError):
    """A received packet is not an echo reply to one of our requests."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, token: bytes) -> bytes:
    """An echo request whose payload is ``token``; ident and seq are taken modulo 2**16."""
    if len(token) != TOKEN_LEN:
        raise InvalidValue(f"token must be {TOKEN_LEN} bytes")
    header = _HEADER.pack(ECHO_REQUEST, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    csum = checksum(header + token)
    return _HEADER.pack(ECHO_REQUEST, 0, csum, ident & 0xFFFF, seq & 0xFFFF) + token


@dataclass(frozen=True)
class EchoReply:
    ident: int
    seq: int


def parse_echo_reply(packet: bytes, token: bytes, *, ip_header: bool,
                     ident: int | None = None) -> EchoReply:
    """Our echo reply in ``packet`` or :class:`NotOurReply`, whatever the bytes.

    ``ip_header``: raw sockets deliver the IPv4 header first. ``ident``: checked when given
    (raw sockets); a datagram socket's kernel already matched it.
    """
    if ip_header:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            raise NotOurReply("not an IPv4 packet")
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl:
            raise NotOurReply("bad IPv4 header length")
        packet = packet[ihl:]
    if len(packet) < _HEADER.size + TOKEN_LEN:
        raise NotOurReply("too short for an echo reply")
    kind, code, _csum, got_ident, seq = _HEADER.unpack_from(packet)
    if kind != ECHO_REPLY or code != 0:
        raise NotOurReply(f"ICMP type {kind} code {code}")
    if ident is not None and got_ident != ident & 0xFFFF:
        raise NotOurReply("another prober's identifier")
    if packet[_HEADER.size:_HEADER.size + TOKEN_LEN] != token:
        raise NotOurReply("not our token")
    if checksum(packet) != 0:
        raise NotOurReply("bad checksum")
    return EchoReply(got_ident, seq)
