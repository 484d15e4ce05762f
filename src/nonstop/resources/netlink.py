"""Addresses, routes and MACs of the current network namespace, through pyroute2's IPRoute.

Every function here is a blocking netlink round trip (well under a millisecond normally, but
the kernel's RTNL lock can be held by others), so agents call them with `asyncio.to_thread`.
Each call opens its own socket: IPRoute objects are not shared between threads.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nonstop.errors import NonstopError

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


def _ifname(ipr: Any, index: int) -> str:
    for link in ipr.get_links(index):
        return str(link.get("ifname"))
    raise NetlinkFailure(f"no interface with index {index}")


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NetlinkFailure(f"no interface {ifname!r}")
    return int(found[0])


def list_addresses() -> list[AddrInfo]:
    """Every IPv4 address in this namespace."""
    try:
        with IPRoute() as ipr:
            names = {int(link["index"]): str(link.get("ifname")) for link in ipr.get_links()}
            out = []
            for msg in ipr.get_addr(family=socket.AF_INET):
                idx = int(msg["index"])
                out.append(
                    AddrInfo(
                        ifname=names.get(idx, str(idx)),
                        address=ipaddress.IPv4Address(msg.get("address")),
                        prefixlen=int(msg["prefixlen"]),
                        label=str(msg.get("label") or names.get(idx, "")),
                    )
                )
            return out
    except NetlinkError as exc:
        raise NetlinkFailure(f"listing addresses: {exc}") from exc


def covering_route(ip: ipaddress.IPv4Address, iface: str | None = None) -> tuple[str, int]:
    """(interface, prefix length) of the lowest-metric main-table route covering ``ip``.

    Heartbeat's findif rule: the virtual address inherits its subnet from a route that the
    administrator already set up. A default route says nothing about the subnet and is
    skipped; ties go to the first route listed.
    """
    try:
        with IPRoute() as ipr:
            want = _index(ipr, iface) if iface is not None else None
            best: tuple[int, int, int] | None = None  # (metric, oif, prefixlen)
            for msg in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
                plen = int(msg["dst_len"])
                dst = msg.get("dst")
                oif = msg.get("oif")
                if plen == 0 or dst is None or oif is None:
                    continue
                if want is not None and int(oif) != want:
                    continue
                if ip not in ipaddress.IPv4Network(f"{dst}/{plen}", strict=False):
                    continue
                metric = int(msg.get("priority") or 0)
                if best is None or metric < best[0]:
                    best = (metric, int(oif), plen)
            if best is None:
                where = f" on {iface}" if iface else ""
                raise NetlinkFailure(f"no route{where} covers {ip}; give the netmask and interface")
            return _ifname(ipr, best[1]), best[2]
    except NetlinkError as exc:
        raise NetlinkFailure(f"looking up the route to {ip}: {exc}") from exc


def link_mac(ifname: str) -> str:
    """The interface's hardware address as ``aa:bb:...``."""
    try:
        with IPRoute() as ipr:
            for link in ipr.get_links(_index(ipr, ifname)):
                mac = link.get("address")
                if mac:
                    return str(mac)
    except NetlinkError as exc:
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
    kwargs: dict[str, Any] = {"index": 0, "address": str(ip), "prefixlen": prefixlen}
    if broadcast is not None:
        kwargs["broadcast"] = str(broadcast)
    if label is not None:
        kwargs["label"] = label
    try:
        with IPRoute() as ipr:
            kwargs["index"] = _index(ipr, ifname)
            ipr.addr("add", **kwargs)
    except NetlinkError as exc:
        if exc.code == 17:  # EEXIST: someone (or an earlier start) already added it
            return
        raise NetlinkFailure(f"adding {ip}/{prefixlen} to {ifname}: {exc}") from exc


def delete_address(ifname: str, ip: ipaddress.IPv4Address, prefixlen: int) -> None:
    """Remove ``ip/prefixlen`` from ``ifname``; an address already gone is not an error."""
    try:
        with IPRoute() as ipr:
            ipr.addr("del", index=_index(ipr, ifname), address=str(ip), prefixlen=prefixlen)
    except NetlinkError as exc:
        if exc.code == 99:  # EADDRNOTAVAIL: already gone
            return
        raise NetlinkFailure(f"removing {ip}/{prefixlen} from {ifname}: {exc}") from exc
