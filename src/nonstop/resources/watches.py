"""One conflict watch per virtual address this node holds (the daemon's side of conflict.py).

While a group is held, each of its addresses is watched on the interface it is on: another
host that answers for it (a rogue that took it over, a peer cut off from our heartbeats) is
logged and shown in ``nonstop status`` (``address_conflicts``); when that host stops answering,
the address is announced again (gratuitous ARP), so clients that followed the other MAC come
back at once instead of after their ARP entries expire (issue 12 measured 9.9 s stranded).

:meth:`AddressWatches.sync` is called with the held address agents after every decision; it
starts the watches that are missing and cancels those of addresses no longer held. The watch
itself is a port (``make_watch``): the real one is :class:`~nonstop.resources.conflict.
ConflictWatch` on a packet socket, tests pass a recording one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from nonstop.resources import arp, conflict, netlink


@runtime_checkable
class WatchedAddress(Protocol):
    """What an address agent shows the watches: where the address is, and how to announce it."""

    @property
    def held_on(self) -> str | None: ...

    @property
    def address(self) -> ipaddress.IPv4Address: ...

    def reannounce(self) -> None: ...


Key = tuple[str, ipaddress.IPv4Address]  # (interface, address)
OnEvent = Callable[[conflict.ConflictEvent], None]
# (interface, address, on_end, on_event) -> a coroutine that watches until cancelled.
WatchFactory = Callable[[str, ipaddress.IPv4Address, Callable[[], None], OnEvent],
                        Awaitable[None]]


async def real_watch(iface: str, ip: ipaddress.IPv4Address, on_end: Callable[[], None],
                     on_event: OnEvent) -> None:
    """A :class:`ConflictWatch` on ``iface`` (the link's MAC read once, in a worker thread)."""
    mac = arp.parse_mac(await asyncio.to_thread(netlink.link_mac, iface))
    watch = conflict.ConflictWatch(iface, ip, mac, logger=logging.getLogger("nonstop.resources"),
                                   on_end=on_end, on_event=on_event)
    await watch.run()


class _Entry:
    def __init__(self, key: Key) -> None:
        self.key = key
        self.claimants: dict[str, str] = {}  # mac -> how (while in conflict)
        self.conflicts = 0  # how many conflicts started since the address was taken
        self.last: str = ""  # the last event's line
        self.error: str | None = None
        self.task: asyncio.Task[None] | None = None

    def event(self, ev: conflict.ConflictEvent) -> None:
        self.last = ev.line
        if isinstance(ev, conflict.ConflictStarted):
            if not self.claimants:
                self.conflicts += 1
            self.claimants[ev.claimant.mac] = ev.claimant.how
        else:
            self.claimants.clear()

    def as_dict(self) -> dict[str, Any]:
        return {"ip": str(self.key[1]), "iface": self.key[0], "conflict": bool(self.claimants),
                "claimants": [{"mac": m, "how": h} for m, h in sorted(self.claimants.items())],
                "conflicts": self.conflicts, "last_event": self.last or None,
                "error": self.error}


class AddressWatches:
    """The conflict watches of the addresses held here (see module doc)."""

    def __init__(self, *, on_change: Callable[[], None],
                 make_watch: WatchFactory = real_watch,
                 logger: logging.Logger | None = None) -> None:
        self._on_change = on_change
        self._make = make_watch
        self._log = logger or logging.getLogger("nonstop.resources")
        self._entries: dict[Key, _Entry] = {}

    def sync(self, held: Iterable[WatchedAddress]) -> None:
        """Watch exactly the addresses of ``held`` (agents of groups held here)."""
        wanted: dict[Key, WatchedAddress] = {}
        for agent in held:
            if agent.held_on is not None:
                wanted[(agent.held_on, agent.address)] = agent
        for key in [k for k in self._entries if k not in wanted]:
            entry = self._entries.pop(key)
            if entry.task is not None:
                entry.task.cancel()
        for key, agent in wanted.items():
            if key not in self._entries:
                self._start(key, agent)

    def _start(self, key: Key, agent: WatchedAddress) -> None:
        entry = _Entry(key)
        self._entries[key] = entry

        def on_event(ev: conflict.ConflictEvent) -> None:
            entry.event(ev)
            self._on_change()

        entry.task = asyncio.create_task(self._run(entry, agent.reannounce, on_event),
                                         name=f"conflict-watch-{key[1]}")

    async def _run(self, entry: _Entry, on_end: Callable[[], None], on_event: OnEvent) -> None:
        iface, ip = entry.key
        try:
            await self._make(iface, ip, on_end, on_event)
        except (OSError, ValueError, netlink.NetlinkFailure) as e:
            # Not watching is no reason to drop the address: say so once, keep serving.
            entry.error = str(e)
            self._log.error("cannot watch %s on %s for address conflicts: %s", ip, iface, e)

    def status(self) -> list[dict[str, Any]]:
        """``address_conflicts`` in ``nonstop status`` (docs/STATUS.md)."""
        return [e.as_dict() for _k, e in sorted(self._entries.items(), key=lambda kv: str(kv[0]))]

    async def stop(self) -> None:
        """Cancel every watch and wait for them."""
        entries, self._entries = list(self._entries.values()), {}
        for e in entries:
            if e.task is not None:
                e.task.cancel()
        for e in entries:
            if e.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await e.task
