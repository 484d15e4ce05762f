"""Ongoing conflict detection for an address we hold (RFC 5227 §2.4), and its end.

While a node holds the virtual IP, another host may claim it too: a misconfigured node that
took it over, a peer cut off from our heartbeats. Its gratuitous ARPs (and ARP requests it sends
from the address) move clients to its MAC. The holder sees those broadcasts; once the other host
stops answering for the address, the holder must announce the address again, or clients stay on
the other MAC until their ARP entries expire (issue 12 measured 9.9 s stranded).

:class:`ConflictTracker` is the pure part: ARP packets and probe results in, events out.
:class:`ConflictWatch` listens on the interface and, while a conflict lasts, probes the address
every ``probe_interval_s``; the first probe nobody else answers ends the conflict and calls
``on_end`` (the address agent's ``reannounce``).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nonstop.errors import InvalidValue
from nonstop.resources import arp, dad

DEFAULT_PROBE_INTERVAL_S = 1.0


class ConflictState(enum.Enum):
    CLEAR = "clear"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class ConflictStarted:
    ip: ipaddress.IPv4Address
    claimant: dad.Claimant

    @property
    def line(self) -> str:
        if self.claimant.how == "probe":  # claims nothing yet: a host checking it is free
            return (f"address {self.ip}, which we hold, was probed by {self.claimant.mac} "
                    "(a host about to take it, e.g. a peer that cannot hear us): defending it")
        return (f"address conflict: {self.ip}, which we hold, is also claimed by "
                f"{self.claimant}")


@dataclass(frozen=True)
class ConflictEnded:
    ip: ipaddress.IPv4Address
    claimants: tuple[dad.Claimant, ...]

    @property
    def line(self) -> str:
        who = ", ".join(c.mac for c in self.claimants)
        if all(c.how == "probe" for c in self.claimants):
            return (f"address {self.ip}: no claim followed the probe by {who}; announcing the "
                    "address again")
        return (f"address conflict on {self.ip} ended: {who} no longer answers; "
                "announcing the address again")


ConflictEvent = ConflictStarted | ConflictEnded


class ConflictTracker:
    """Conflict state of one held address (pure)."""

    def __init__(self, ip: ipaddress.IPv4Address, our_mac: bytes) -> None:
        self.ip = ip
        self.our_mac = our_mac
        self.state = ConflictState.CLEAR
        self.claimants: dict[str, dad.Claimant] = {}

    def packet(self, packet: arp.ArpPacket) -> list[ConflictEvent]:
        """An ARP packet seen on the link."""
        who = dad.claimant(packet, self.ip, self.our_mac)
        if who is None:
            return []
        new = who.mac not in self.claimants
        self.claimants.setdefault(who.mac, who)
        if self.state is ConflictState.CLEAR:
            self.state = ConflictState.CONFLICT
            return [ConflictStarted(self.ip, who)]
        return [ConflictStarted(self.ip, who)] if new else []

    def probed(self, result: dad.ProbeResult) -> list[ConflictEvent]:
        """A probe of the address finished; nobody answering ends the conflict."""
        if self.state is ConflictState.CLEAR or result.error is not None:
            return []
        if result.conflict:
            for c in result.claimants:
                self.claimants.setdefault(c.mac, c)
            return []
        ended = ConflictEnded(self.ip, tuple(self.claimants.values()))
        self.state = ConflictState.CLEAR
        self.claimants = {}
        return [ended]


class ConflictWatch:
    """Watches a held address on ``iface`` until cancelled (see module doc)."""

    def __init__(self, iface: str, ip: ipaddress.IPv4Address, mac: bytes, *,
                 logger: logging.Logger, on_end: Callable[[], None],
                 on_event: Callable[[ConflictEvent], None] | None = None,
                 probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S,
                 probe_wait_s: float = dad.DEFAULT_WAIT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if probe_interval_s <= 0:
            raise InvalidValue("probe interval must be > 0")
        self.iface = iface
        self.tracker = ConflictTracker(ip, mac)
        self._logger = logger
        self._on_end = on_end
        self._on_event = on_event
        self._interval = probe_interval_s
        self._wait = probe_wait_s
        self._clock = clock

    def _emit(self, events: list[ConflictEvent]) -> None:
        for event in events:
            if isinstance(event, ConflictStarted) and event.claimant.how != "probe":
                self._logger.error("%s", event.line)
            else:
                self._logger.warning("%s", event.line)
            if self._on_event is not None:
                self._on_event(event)
            if isinstance(event, ConflictEnded):
                self._on_end()

    async def run(self) -> None:
        """Listen (and probe while in conflict) until cancelled; OSError if the interface
        cannot be listened on.

        It also ends if its task was asked to stop but the CancelledError got lost on the way
        (Python 3.11's ``asyncio.wait_for`` drops one that races with a result; a released
        node's watch once probed the address for ever): it checks before every wait and before
        it acts on a frame or on a probe's result."""
        sock = arp.packet_socket()
        try:
            sock.bind((self.iface, arp.ETH_P_ARP))
            sock.setblocking(False)
            next_probe = 0.0
            while True:
                _stop_if_cancelled()
                timeout = None
                if self.tracker.state is ConflictState.CONFLICT:
                    timeout = max(0.0, next_probe - self._clock())
                try:
                    packet = await arp.receive_arp(sock, timeout)
                except TimeoutError:
                    result = await dad.probe_address(self.iface, self.tracker.ip,
                                                     mac=self.tracker.our_mac, wait_s=self._wait)
                    _stop_if_cancelled()
                    next_probe = self._clock() + self._interval
                    self._emit(self.tracker.probed(result))
                    continue
                _stop_if_cancelled()
                if packet is None:
                    continue
                was_clear = self.tracker.state is ConflictState.CLEAR
                self._emit(self.tracker.packet(packet))
                if was_clear and self.tracker.state is ConflictState.CONFLICT:
                    next_probe = self._clock() + self._interval
        finally:
            arp.release_socket(sock)


def _stop_if_cancelled() -> None:
    """Raise CancelledError if the current task has a cancellation pending that nothing
    delivered (``Task.cancelling()`` counts requests not taken back with ``uncancel()``)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError
