"""The few rtnetlink requests nonstop makes, over a plain ``AF_NETLINK`` socket.

Links, IPv4 addresses and routes of the current network namespace, and adding or removing an
address: what ``ip link/addr/route`` would do. pyroute2 did this before; importing it loaded
163 modules and 16 MB into every node, which an idle daemon paid for all day (see
docs/BENCHMARKS.md). The message layouts are the kernel's (linux/netlink.h, rtnetlink.h,
if_addr.h); decoding is pure and takes bytes, the socket part is a blocking round trip, so
callers in the event loop run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from nonstop.errors import NonstopError

NETLINK_ROUTE = 0
RTM_GETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR, RTM_GETROUTE = 18, 20, 21, 22, 26
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
IFLA_ADDRESS, IFLA_IFNAME = 1, 3
IFF_LOWER_UP = 0x10000
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST = 1, 2, 3, 4
RTA_DST, RTA_OIF, RTA_PRIORITY, RTA_TABLE = 1, 4, 6, 15

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type
_RTATTR = struct.Struct("=HH")  # length, type
_U32 = struct.Struct("=I")
_ERR = struct.Struct("=i")
_seq = itertools.count(1)


class RtnlError(NonstopError):
    """The kernel refused a request (``code`` is the errno) or sent what cannot be decoded."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (errno {code})" if code else message)
        self.code = code


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str | None
    carrier: bool = True  # IFF_LOWER_UP: a cable and a live port at its other end


@dataclass(frozen=True)
class Address:
    """One address of ``ifaddrmsg``; ``local`` is the address itself on point-to-point links
    too, ``address`` the peer's there (equal on broadcast links)."""

    index: int
    prefixlen: int
    address: str | None
    local: str | None
    label: str | None
    broadcast: str | None


@dataclass(frozen=True)
class Route:
    table: int
    dst_len: int
    dst: str | None
    oif: int | None
    priority: int


def _align(n: int) -> int:
    return (n + 3) & ~3


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The route attributes of a message body from ``offset`` on (the last of a type wins)."""
    out: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            raise RtnlError(0, "malformed netlink attribute")
        out[kind & 0x3FFF] = data[offset + _RTATTR.size:offset + length]
        offset += _align(length)
    return out


def messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """``(type, sequence, body)`` of each message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _port = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise RtnlError(0, "malformed netlink message")
        yield kind, seq, data[offset + _NLMSGHDR.size:offset + length]
        offset += _align(length)


def _attr(kind: int, value: bytes) -> bytes:
    raw = _RTATTR.pack(_RTATTR.size + len(value), kind) + value
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def _ipv4(raw: bytes | None) -> str | None:
    return socket.inet_ntoa(raw) if raw is not None and len(raw) == 4 else None


def _text(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def _u32(raw: bytes | None) -> int | None:
    return _U32.unpack(raw)[0] if raw is not None and len(raw) == 4 else None


def decode_link(body: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = attributes(body, _IFINFOMSG.size)
    mac = attrs.get(IFLA_ADDRESS)
    return Link(index, _text(attrs.get(IFLA_IFNAME)) or str(index),
                ":".join(f"{b:02x}" for b in mac) if mac else None,
                bool(flags & IFF_LOWER_UP))


def decode_address(body: bytes) -> Address:
    _family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(body)
    attrs = attributes(body, _IFADDRMSG.size)
    return Address(index, prefixlen, _ipv4(attrs.get(IFA_ADDRESS)), _ipv4(attrs.get(IFA_LOCAL)),
                   _text(attrs.get(IFA_LABEL)), _ipv4(attrs.get(IFA_BROADCAST)))


def decode_route(body: bytes) -> Route:
    fields = _RTMSG.unpack_from(body)
    attrs = attributes(body, _RTMSG.size)
    table = _u32(attrs.get(RTA_TABLE))
    return Route(fields[4] if table is None else table, fields[1], _ipv4(attrs.get(RTA_DST)),
                 _u32(attrs.get(RTA_OIF)), _u32(attrs.get(RTA_PRIORITY)) or 0)


def _request(kind: int, flags: int, body: bytes) -> list[bytes]:
    """One request, blocking; the bodies of the replies (a dump's, or none for an ack)."""
    seq = next(_seq) & 0xFFFFFFFF
    msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body
    out: list[bytes] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       NETLINK_ROUTE) as sock:
        sock.settimeout(10.0)
        sock.bind((0, 0))
        sock.sendto(msg, (0, 0))
        while True:
            data = sock.recv(1 << 16)
            if not data:
                raise RtnlError(0, "netlink socket closed")
            for rkind, rseq, rbody in messages(data):
                if rseq != seq:
                    continue
                if rkind == NLMSG_DONE:
                    return out
                if rkind == NLMSG_ERROR:
                    code = -_ERR.unpack_from(rbody)[0] if len(rbody) >= 4 else errno.EIO
                    if code:
                        raise RtnlError(code, os.strerror(code))
                    return out  # the ack of a request that is not a dump
                out.append(rbody)


def links() -> list[Link]:
    """Every network interface of this namespace."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return [decode_link(b) for b in _request(RTM_GETLINK, NLM_F_DUMP, body)]


def addresses() -> list[Address]:
    """Every IPv4 address of this namespace."""
    body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    return [decode_address(b) for b in _request(RTM_GETADDR, NLM_F_DUMP, body)]


def routes() -> list[Route]:
    """Every IPv4 route of this namespace, all tables."""
    body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    return [decode_route(b) for b in _request(RTM_GETROUTE, NLM_F_DUMP, body)]


def route_to(ip: str) -> Route:
    """The route the kernel takes to ``ip`` (``ip route get``): longest prefix, then metric,
    policy rules included. RtnlError when there is none (ENETUNREACH)."""
    body = _RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0)
    found = _request(RTM_GETROUTE, NLM_F_ACK, body + _attr(RTA_DST, socket.inet_aton(ip)))
    if not found:
        raise RtnlError(errno.ENETUNREACH, f"no route to {ip}")
    return decode_route(found[0])


def change_address(add: bool, index: int, ip: str, prefixlen: int,
                   broadcast: str | None = None, label: str | None = None) -> None:
    """``ip addr add|del IP/PREFIXLEN [broadcast B] [label L] dev INDEX``; RtnlError with
    EEXIST (add) or EADDRNOTAVAIL (del) when the address is already there or gone."""
    raw = socket.inet_aton(ip)
    body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, 0, index)
    body += _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
    if broadcast is not None:
        body += _attr(IFA_BROADCAST, socket.inet_aton(broadcast))
    if label is not None:
        body += _attr(IFA_LABEL, label.encode() + b"\0")
    if add:
        _request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
    else:
        _request(RTM_DELADDR, NLM_F_ACK, body)
