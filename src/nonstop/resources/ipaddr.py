"""IPaddr and IPaddr2, native: a virtual IPv4 address plus gratuitous ARP (spec §4.1).

IPaddr labels the address ``<nic>:<n>`` (first free n), as Heartbeat's ifconfig alias did, so
``ip addr`` and old ``ifconfig`` users see the same alias; IPaddr2 adds it without a label, or
with the one given as ``nic:label`` (IPaddr ignores such a label, as Heartbeat's does).
Unlike Heartbeat's IPaddr, status sees the address however it was added (label or not): an
unlabelled copy added by hand still means the address is held, and start must not add it twice.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import TypeVar

from nonstop.config.haresources import parse_ip_spec
from nonstop.config.model import IPSpec
from nonstop.errors import InvalidValue
from nonstop.resources import arp, dad, netlink
from nonstop.resources.base import Agent, AgentContext, ResourceError, ResourceState

T = TypeVar("T")
IFNAMSIZ = 15


def default_broadcast(ip: ipaddress.IPv4Address, cidr: int) -> ipaddress.IPv4Address | None:
    """The highest address of the subnet, as Heartbeat computes it; None for /31 and /32."""
    if cidr >= 31:
        return None
    return ipaddress.IPv4Network(f"{ip}/{cidr}", strict=False).broadcast_address


def split_label(iface: str) -> tuple[str, str | None]:
    """The interface field of an IP spec as (interface, label): ``eth0:web`` is the label
    ``eth0:web`` on ``eth0`` (IPaddr2's ``nic:label``), ``eth0`` has no label."""
    base, sep, rest = iface.partition(":")
    return base, (iface if sep and rest else None)


def free_alias_label(iface: str, labels_in_use: set[str]) -> str:
    """The first ``iface:n`` not in use; raises ValueError if none fits in IFNAMSIZ."""
    n = 0
    while True:
        label = f"{iface}:{n}"
        if len(label) > IFNAMSIZ:
            raise InvalidValue(f"no free alias label on {iface} within {IFNAMSIZ} characters")
        if label not in labels_in_use:
            return label
        n += 1


class IPAddrAgent(Agent):
    """A virtual address on an interface of the current network namespace."""

    def __init__(
        self,
        spec_text: str,
        ctx: AgentContext,
        *,
        kind: str = "IPaddr",
        arp_repeat: int = arp.DEFAULT_REPEAT,
        arp_interval_s: float = arp.DEFAULT_INTERVAL_S,
    ) -> None:
        try:
            self.spec: IPSpec = parse_ip_spec(spec_text)
        except ValueError as exc:
            raise ResourceError(f"{kind}::{spec_text}", "configure", str(exc)) from None
        self._ctx = ctx
        self._kind = kind
        self._label_alias = kind == "IPaddr"
        # The interface to use, without the label part of ``nic:label``.
        self._iface: str | None = None
        self._label: str | None = None
        if self.spec.iface is not None:
            self._iface, self._label = split_label(self.spec.iface)
        self._arp_repeat = arp_repeat
        self._arp_interval_s = arp_interval_s
        self._announcement: asyncio.Task[int] | None = None
        self.last_probe: dad.ProbeResult | None = None
        # Whether the next start probes the address (the engine says, per takeover); the
        # listening time is the context's address_probe_s (None: never).
        self._probe_next = True
        # The interface the address was last seen on here (start or status): what a conflict
        # watch listens on while the group is held.
        self.held_on: str | None = None

    def describe(self) -> str:
        return f"{self._kind}::{self.spec}"

    @property
    def address(self) -> ipaddress.IPv4Address:
        """The virtual address."""
        return self.spec.ip

    def probe_next_start(self, on: bool) -> None:
        """Whether the next start asks the link first (a takeover from a lost node) or not
        (a hand-off from a live node that released the address)."""
        self._probe_next = on

    async def probe_before_start(self) -> None:
        """Ask the link now, before the group's other resources start (ResourceError on a
        conflict); the start then does not ask again. Nothing to ask if the address is ours."""
        if self._ctx.address_probe_s is None or not self._probe_next:
            return
        addrs = await self._netlink("start", netlink.list_addresses)
        if self._where(addrs) is None:
            await self._probe((await self._target())[0])
        self._probe_next = False

    @property
    def announcement(self) -> asyncio.Task[int] | None:
        """The running (or finished) gratuitous ARP task of the last start, if any."""
        return self._announcement

    async def _netlink(self, action: str, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(fn, *args), self._ctx.timeouts.for_action(action)
            )
        except TimeoutError:
            raise ResourceError(self.describe(), action, "netlink request timed out") from None
        except netlink.NetlinkFailure as exc:
            raise ResourceError(self.describe(), action, str(exc)) from None

    def _where(self, addrs: list[netlink.AddrInfo]) -> netlink.AddrInfo | None:
        for a in addrs:
            if a.address == self.spec.ip:
                return a
        return None

    def _state_of(self, found: netlink.AddrInfo | None) -> ResourceState:
        if found is None:
            return ResourceState.STOPPED
        if self._iface is not None and found.ifname != self._iface:
            return ResourceState.FAILED
        return ResourceState.RUNNING

    async def status(self) -> ResourceState:
        try:
            addrs = await self._netlink("status", netlink.list_addresses)
        except ResourceError as exc:
            self._ctx.logger.error("%s", exc)
            return ResourceState.UNKNOWN
        found = self._where(addrs)
        self.held_on = found.ifname if found is not None else None
        return self._state_of(found)

    async def start(self) -> None:
        addrs = await self._netlink("start", netlink.list_addresses)
        found = self._where(addrs)
        state = self._state_of(found)
        if state is ResourceState.RUNNING:
            self._ctx.logger.info("%s already configured; nothing to do", self.describe())
            self.held_on = found.ifname if found is not None else None
            return
        if found is not None:
            raise ResourceError(
                self.describe(),
                "start",
                f"{self.spec.ip} is on {found.ifname} instead of the configured {self._iface}",
            )
        iface, prefixlen = await self._target()
        broadcast = self.spec.broadcast or default_broadcast(self.spec.ip, prefixlen)
        label = None if self._label_alias else self._label
        if self._label_alias:
            try:
                label = free_alias_label(iface, {a.label for a in addrs if a.ifname == iface})
            except ValueError as exc:
                raise ResourceError(self.describe(), "start", str(exc)) from None
        await self._probe(iface)
        await self._netlink(
            "start", netlink.add_address, iface, self.spec.ip, prefixlen, broadcast, label
        )
        self._ctx.logger.info(
            "%s: added %s/%d on %s%s",
            self.describe(),
            self.spec.ip,
            prefixlen,
            iface,
            f" as {label}" if label else "",
        )
        self.held_on = iface
        self._start_announcement(iface)

    async def _target(self) -> tuple[str, int]:
        """The interface and prefix length the address goes on."""
        iface, prefixlen = self._iface, self.spec.cidr
        if iface is None or prefixlen is None:
            route_iface, route_plen = await self._netlink(
                "start", netlink.covering_route, self.spec.ip, iface
            )
            iface = iface or route_iface
            prefixlen = route_plen if prefixlen is None else prefixlen
        return iface, prefixlen

    async def _probe(self, iface: str) -> None:
        """Refuse to add an address another host answers for (when the context asks for it)."""
        wait_s = self._ctx.address_probe_s
        if wait_s is None or not self._probe_next:
            return
        result = await dad.probe_address(iface, self.spec.ip, wait_s=wait_s,
                                         logger=self._ctx.logger)
        self.last_probe = result
        if result.conflict:
            raise ResourceError(self.describe(), "start", result.reason)
        if result.error is not None:
            # Not knowing is no reason to leave the service down: add it, and say so.
            self._ctx.logger.warning("%s: %s; adding it unprobed", self.describe(), result.reason)

    def _start_announcement(self, iface: str) -> None:
        self._cancel_announcement()
        self._announcement = asyncio.create_task(
            self._announce(iface), name=f"garp-{self.spec.ip}"
        )

    async def _announce(self, iface: str) -> int:
        # Runs after start returned: takeover continues while the neighbours are told.
        try:
            mac = arp.parse_mac(await asyncio.to_thread(netlink.link_mac, iface))
        except (netlink.NetlinkFailure, ValueError) as exc:
            self._ctx.logger.error("Could not send gratuitous arps for %s: %s", self.spec.ip, exc)
            return 0
        return await arp.announce(
            iface,
            mac,
            self.spec.ip,
            self._ctx.logger,
            repeat=self._arp_repeat,
            interval_s=self._arp_interval_s,
        )

    def reannounce(self) -> None:
        """Send the gratuitous ARPs again for an address we hold (the keeper of a group after a
        healed partition does this, so clients that followed the other node come back)."""
        self._cancel_announcement()
        self._announcement = asyncio.create_task(
            self._reannounce(), name=f"garp-again-{self.spec.ip}"
        )

    async def _reannounce(self) -> int:
        addrs = await self._netlink("status", netlink.list_addresses)
        found = self._where(addrs)
        if found is None:
            return 0
        return await self._announce(found.ifname)

    def _cancel_announcement(self) -> None:
        if self._announcement is not None and not self._announcement.done():
            self._announcement.cancel()

    async def stop(self) -> None:
        self._cancel_announcement()
        addrs = await self._netlink("stop", netlink.list_addresses)
        found = self._where(addrs)
        if found is None:
            self.held_on = None
            return
        await self._netlink(
            "stop", netlink.delete_address, found.ifname, found.address, found.prefixlen
        )
        self.held_on = None
        self._ctx.logger.info(
            "%s: removed %s from %s", self.describe(), found.address, found.ifname
        )
