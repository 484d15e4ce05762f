"""Addresses, routes and MACs of the current network namespace, through rtnetlink.

Every function here is a blocking netlink round trip (well under a millisecond normally, but
the kernel's RTNL lock can be held by others), so agents call them with `asyncio.to_thread`.
Each call opens its own socket (nonstop.rtnetlink), so threads share nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass

from nonstop.errors import NonstopError
from nonstop.rtnetlink import RtnlError, addresses, change_address, links, routes

MAIN_TABLE = 254


class NetlinkFailure(NonstopError):
    """A netlink request failed or the namespace lacks what was asked for."""


@dataclass(frozen=True)
class AddrInfo:
    """One IPv4 address on an interface."""

    ifname: str
    address: ipaddress.IPv4Address
    prefixlen: int
    label: str


def _ifname(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        raise NetlinkFailure(f"no interface with index {index}") from None


def _index(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise NetlinkFailure(f"no interface {ifname!r}") from None


def list_addresses() -> list[AddrInfo]:
    """Every IPv4 address in this namespace."""
    try:
        names = {link.index: link.name for link in links()}
        return [
            AddrInfo(
                ifname=names.get(a.index, str(a.index)),
                address=ipaddress.IPv4Address(a.address),
                prefixlen=a.prefixlen,
                label=a.label or names.get(a.index, ""),
            )
            for a in addresses()
            if a.address is not None
        ]
    except RtnlError as exc:
        raise NetlinkFailure(f"listing addresses: {exc}") from exc


def covering_route(ip: ipaddress.IPv4Address, iface: str | None = None) -> tuple[str, int]:
    """(interface, prefix length) of the lowest-metric main-table route covering ``ip``.

    Heartbeat's findif rule: the virtual address inherits its subnet from a route that the
    administrator already set up. A default route says nothing about the subnet and is
    skipped; ties go to the first route listed.
    """
    want = _index(iface) if iface is not None else None
    try:
        found = routes()
    except RtnlError as exc:
        raise NetlinkFailure(f"looking up the route to {ip}: {exc}") from exc
    best: tuple[int, int, int] | None = None  # (metric, oif, prefixlen)
    for r in found:
        if r.table != MAIN_TABLE or r.dst_len == 0 or r.dst is None or r.oif is None:
            continue
        if want is not None and r.oif != want:
            continue
        if ip not in ipaddress.IPv4Network(f"{r.dst}/{r.dst_len}", strict=False):
            continue
        if best is None or r.priority < best[0]:
            best = (r.priority, r.oif, r.dst_len)
    if best is None:
        where = f" on {iface}" if iface else ""
        raise NetlinkFailure(f"no route{where} covers {ip}; give the netmask and interface")
    return _ifname(best[1]), best[2]


def link_mac(ifname: str) -> str:
    """The interface's hardware address as ``aa:bb:...``."""
    index = _index(ifname)
    try:
        for link in links():
            if link.index == index and link.mac:
                return link.mac
    except RtnlError as exc:
        raise NetlinkFailure(f"reading the MAC of {ifname}: {exc}") from exc
    raise NetlinkFailure(f"{ifname} has no hardware address")


def add_address(
    ifname: str,
    ip: ipaddress.IPv4Address,
    prefixlen: int,
    broadcast: ipaddress.IPv4Address | None,
    label: str | None,
) -> None:
    """Add ``ip/prefixlen`` to ``ifname``; an address already there is not an error."""
    try:
        change_address(True, _index(ifname), str(ip), prefixlen,
                       None if broadcast is None else str(broadcast), label)
    except RtnlError as exc:
        if exc.code == errno.EEXIST:  # someone (or an earlier start) already added it
            return
        raise NetlinkFailure(f"adding {ip}/{prefixlen} to {ifname}: {exc}") from exc


def delete_address(ifname: str, ip: ipaddress.IPv4Address, prefixlen: int) -> None:
    """Remove ``ip/prefixlen`` from ``ifname``; an address already gone is not an error."""
    try:
        change_address(False, _index(ifname), str(ip), prefixlen)
    except RtnlError as exc:
        if exc.code == errno.EADDRNOTAVAIL:  # already gone
            return
        raise NetlinkFailure(f"removing {ip}/{prefixlen} from {ifname}: {exc}") from exc
