"""Duplicate address detection before adding a virtual address (RFC 5227 style ARP probes).

Before a takeover adds the virtual IP, ask the link whether anyone holds it: ARP requests for the
address from sender IP 0.0.0.0 (a probe, which updates nobody's ARP cache). Another host that has
the address answers; so does a rogue or a "dead" peer that is only cut off from our heartbeats.
An answer means: do not add the address, report who answered.

RFC 5227 waits 1-2 s between three probes and 2 s more (ANNOUNCE_WAIT), which would more than
double a crash failover. A LAN answers an ARP request within a millisecond or two, so nonstop
sends :data:`DEFAULT_PROBES` probes :data:`DEFAULT_INTERVAL_S` apart and listens for
:data:`DEFAULT_WAIT_S` in all (100 ms) from the first: that is what the probe adds to a takeover
of a free address; a conflict ends the probe as soon as it is seen.

What counts as a conflict (RFC 5227 §2.1.1): any ARP packet whose sender IP is the address
(a reply, a request, an announcement), or another host's probe for the same address (it is about
to take it too). Our own frames are never counted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nonstop.errors import InvalidValue
from nonstop.resources import arp, netlink

DEFAULT_PROBES = 3
DEFAULT_INTERVAL_S = 0.02
DEFAULT_WAIT_S = 0.1
_ZERO_IP = ipaddress.IPv4Address(0)


@dataclass(frozen=True)
class Claimant:
    """A host that showed it has (or is taking) the address."""

    mac: str
    how: str  # "reply", "request", "announcement" or "probe"

    def __str__(self) -> str:
        return f"{self.mac} ({self.how})"


def claimant(packet: arp.ArpPacket, ip: ipaddress.IPv4Address, our_mac: bytes) -> Claimant | None:
    """Whether a received ARP packet shows another host holding or probing ``ip`` (pure)."""
    if packet.sender_mac == our_mac:
        return None
    mac = arp.format_mac(packet.sender_mac)
    if packet.sender_ip == ip:
        if packet.op == arp.ArpOp.REPLY:
            return Claimant(mac, "reply")
        return Claimant(mac, "announcement" if packet.target_ip == ip else "request")
    if packet.op == arp.ArpOp.REQUEST and packet.sender_ip == _ZERO_IP and packet.target_ip == ip:
        return Claimant(mac, "probe")
    return None


def probe_frame(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """An ARP probe: who has ``ip``? asked from 0.0.0.0 so that no cache learns anything."""
    return arp.arp_frame(arp.ArpOp.REQUEST, mac, _ZERO_IP.packed, arp.ZERO_MAC, ip.packed)


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of probing one address; ``reason`` is the sentence for the log and status."""

    ip: ipaddress.IPv4Address
    iface: str
    claimants: tuple[Claimant, ...]
    probes_sent: int
    duration_s: float
    error: str | None = None  # the probe could not be made (the address is then not known free)

    @property
    def conflict(self) -> bool:
        """Another host answered for the address."""
        return bool(self.claimants)

    @property
    def reason(self) -> str:
        if self.error is not None:
            return f"could not probe {self.ip} on {self.iface}: {self.error}"
        if self.conflict:
            who = ", ".join(str(c) for c in self.claimants)
            return f"address conflict: {self.ip} on {self.iface} is in use by {who}"
        return (f"{self.ip} is free on {self.iface} ({self.probes_sent} ARP probes, "
                f"{self.duration_s * 1000:.0f} ms)")

    def as_dict(self) -> dict[str, Any]:
        """Status keys: ip, iface, conflict, claimants (list of {mac, how}), duration_s, error."""
        return {"ip": str(self.ip), "iface": self.iface, "conflict": self.conflict,
                "claimants": [{"mac": c.mac, "how": c.how} for c in self.claimants],
                "duration_s": round(self.duration_s, 4), "error": self.error}


class _Probe:
    """One probe's state: what was sent, when the next goes, who answered."""

    def __init__(self, sock: socket.socket, frame: bytes, ip: ipaddress.IPv4Address,
                 mac: bytes, probes: int, interval_s: float, start: float) -> None:
        self.sock, self.frame, self.ip, self.mac = sock, frame, ip, mac
        self.probes, self.interval_s = probes, interval_s
        self.sent = 0
        self.next_send = start
        self.found: dict[str, Claimant] = {}

    async def send(self, iface: str, logger: logging.Logger | None) -> None:
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, self.frame)
        except OSError as exc:
            if logger is not None:
                logger.warning("ARP probe for %s on %s failed: %s", self.ip, iface, exc)
        self.sent += 1
        self.next_send += self.interval_s

    async def listen(self, timeout: float) -> None:
        try:
            packet = await arp.receive_arp(self.sock, max(0.0, timeout))
        except TimeoutError:
            return
        if packet is not None:
            who = claimant(packet, self.ip, self.mac)
            if who is not None:
                self.found.setdefault(who.mac, who)

    async def run(self, iface: str, deadline: float, clock: Callable[[], float],
                  logger: logging.Logger | None) -> None:
        while not self.found:
            now = clock()
            if self.sent < self.probes and now >= self.next_send:
                await self.send(iface, logger)
                continue
            if now >= deadline:
                return
            until = min(deadline, self.next_send) if self.sent < self.probes else deadline
            await self.listen(until - clock())


async def probe_address(iface: str, ip: ipaddress.IPv4Address, *, mac: bytes | None = None,
                        probes: int = DEFAULT_PROBES, interval_s: float = DEFAULT_INTERVAL_S,
                        wait_s: float = DEFAULT_WAIT_S,
                        logger: logging.Logger | None = None,
                        clock: Callable[[], float] = time.monotonic) -> ProbeResult:
    """Probe ``ip`` on ``iface``; returns as soon as a conflict is seen, else after ``wait_s``.

    Never raises for a network problem: the result's ``error`` says why no answer could be had.
    """
    if probes < 1 or interval_s < 0 or wait_s <= 0:
        raise InvalidValue("probes >= 1, interval >= 0 and wait > 0 are required")
    start = clock()
    probe: _Probe | None = None

    def result(error: str | None = None) -> ProbeResult:
        found = tuple(probe.found.values()) if probe is not None else ()
        sent = probe.sent if probe is not None else 0
        return ProbeResult(ip, iface, found, sent, clock() - start, error)

    try:
        if mac is None:
            mac = arp.parse_mac(await asyncio.to_thread(netlink.link_mac, iface))
        sock = arp.packet_socket()
    except (OSError, ValueError, netlink.NetlinkFailure) as exc:
        return result(str(exc))
    try:
        sock.bind((iface, arp.ETH_P_ARP))
        sock.setblocking(False)
        probe = _Probe(sock, probe_frame(mac, ip), ip, mac, probes, interval_s, start)
        await probe.run(iface, start + wait_s, clock, logger)
    except OSError as exc:
        return result(str(exc))
    finally:
        arp.release_socket(sock)
    outcome = result()
    if logger is not None:
        logger.log(logging.ERROR if outcome.conflict else logging.DEBUG, "%s", outcome.reason)
    return outcome
