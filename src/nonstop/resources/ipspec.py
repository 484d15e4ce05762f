"""The IPaddr argument ``IP[/cidr[/iface[/broadcast]]]`` (or ``IP/cidr/broadcast``), spec §2.1/§4.1.

A private parser until the config package offers one; agents only need the four fields.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class IPSpec:
    """One virtual address as written in haresources; missing fields are found from routes."""

    ip: ipaddress.IPv4Address
    cidr: int | None = None
    iface: str | None = None
    broadcast: ipaddress.IPv4Address | None = None

    def __str__(self) -> str:
        parts = [str(self.ip)]
        if self.cidr is not None:
            parts.append(str(self.cidr))
        if self.iface is not None:
            parts.append(self.iface)
        if self.broadcast is not None:
            parts.append(str(self.broadcast))
        return "/".join(parts)


def parse_ip_spec(text: str) -> IPSpec:
    """Parse an IPaddr argument; raises ValueError with a message naming the bad field."""
    fields = text.split("/")
    if len(fields) > 4:
        raise ValueError(f"too many '/' fields in IP spec {text!r}")
    try:
        ip = ipaddress.IPv4Address(fields[0])
    except ValueError:
        raise ValueError(f"not an IPv4 address: {fields[0]!r} in {text!r}") from None
    cidr: int | None = None
    iface: str | None = None
    bcast_text: str | None = None
    if len(fields) >= 2 and fields[1] != "":
        if not fields[1].isdigit() or not 0 <= int(fields[1]) <= 32:
            raise ValueError(f"netmask must be CIDR bits 0-32, got {fields[1]!r} in {text!r}")
        cidr = int(fields[1])
    if len(fields) >= 3 and fields[2] != "":
        # Heartbeat's rule: a third field starting with a digit is the broadcast address.
        if fields[2][0].isdigit():
            if len(fields) == 4:
                raise ValueError(f"broadcast given twice in IP spec {text!r}")
            bcast_text = fields[2]
        else:
            iface = fields[2]
    if len(fields) == 4 and fields[3] != "":
        bcast_text = fields[3]
    broadcast: ipaddress.IPv4Address | None = None
    if bcast_text is not None:
        try:
            broadcast = ipaddress.IPv4Address(bcast_text)
        except ValueError:
            raise ValueError(f"bad broadcast address {bcast_text!r} in {text!r}") from None
    if iface is not None and not 0 < len(iface) <= 15:
        raise ValueError(f"interface name {iface!r} is empty or longer than 15 characters")
    return IPSpec(ip=ip, cidr=cidr, iface=iface, broadcast=broadcast)


def default_broadcast(ip: ipaddress.IPv4Address, cidr: int) -> ipaddress.IPv4Address | None:
    """The highest address of the subnet, as Heartbeat computes it; None for /31 and /32."""
    if cidr >= 31:
        return None
    return ipaddress.IPv4Network(f"{ip}/{cidr}", strict=False).broadcast_address
