"""One conflict watch per virtual address this node holds (the daemon's side of conflict.py).

While a group is held, each of its addresses is watched on the interface it is on: another
host that answers for it (a rogue that took it over, a peer cut off from our heartbeats) is
logged and shown in ``nonstop status`` (``address_conflicts``); when that host stops answering,
the address is announced again (gratuitous ARP), so clients that followed the other MAC come
back at once instead of after their ARP entries expire (issue 12 measured 9.9 s stranded).

:meth:`AddressWatches.sync` is called with the held address agents after every decision; it
starts the watches that are missing and stops those of addresses no longer held. The watch
itself is a port (``make_watch``): the real one is :class:`~nonstop.resources.conflict.
ConflictWatch` on a packet socket, tests pass a recording one.

A watch that is stopped is cancelled and then waited for, a bounded number of times with a
bound each: a lost cancellation (Python 3.11's ``asyncio.wait_for`` drops one that races with a
frame) once left a released node probing the address for ever, and its peer, which held it,
took each probe for a conflict. Until it has ended, what a stopped watch reports goes nowhere:
it neither shows in status nor re-announces an address that is no longer ours.
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
# A cancelled watch ends at its next await; it is cancelled again after each wait of
# STOP_WAIT_S that it outlives, STOP_TRIES times in all, then given up with an error logged.
STOP_WAIT_S = 0.5
STOP_TRIES = 4


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
        self.wanted = True  # False once the address is no longer held here

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
        self._stopping: set[asyncio.Task[None]] = set()  # waits for stopped watches to end

    def sync(self, held: Iterable[WatchedAddress]) -> None:
        """Watch exactly the addresses of ``held`` (agents of groups held here)."""
        wanted: dict[Key, WatchedAddress] = {}
        for agent in held:
            if agent.held_on is not None:
                wanted[(agent.held_on, agent.address)] = agent
        for key in [k for k in self._entries if k not in wanted]:
            self._retire(self._entries.pop(key))
        for key, agent in wanted.items():
            if key not in self._entries:
                self._start(key, agent)

    def _start(self, key: Key, agent: WatchedAddress) -> None:
        entry = _Entry(key)
        self._entries[key] = entry

        def on_event(ev: conflict.ConflictEvent) -> None:
            if entry.wanted:
                entry.event(ev)
                self._on_change()

        def on_end() -> None:
            if entry.wanted:
                agent.reannounce()

        entry.task = asyncio.create_task(self._run(entry, on_end, on_event),
                                         name=f"conflict-watch-{key[1]}")

    def _retire(self, entry: _Entry) -> None:
        """Stop the watch of an address no longer held: cancel it, and make sure it ends."""
        entry.wanted = False
        task = entry.task
        if task is None or task.done():
            return
        task.cancel()
        waiter = asyncio.create_task(self._wait_stopped(entry, task),
                                     name=f"conflict-watch-stop-{entry.key[1]}")
        self._stopping.add(waiter)
        waiter.add_done_callback(self._stopping.discard)

    async def _wait_stopped(self, entry: _Entry, task: asyncio.Task[None]) -> None:
        if not await wait_cancelled(task, wait_s=STOP_WAIT_S, tries=STOP_TRIES):
            iface, ip = entry.key
            self._log.error("the conflict watch of %s on %s did not stop when cancelled %d "
                            "times", ip, iface, STOP_TRIES)

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
        """Stop every watch and wait for them (each at most STOP_TRIES × STOP_WAIT_S)."""
        entries, self._entries = list(self._entries.values()), {}
        for e in entries:
            self._retire(e)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)


async def wait_cancelled(task: asyncio.Task[Any], *, wait_s: float, tries: int) -> bool:
    """Wait until ``task``, already cancelled, has ended: at most ``tries`` waits of ``wait_s``,
    cancelling it again after each one it outlives. False if it still runs. Its outcome is
    consumed (a watch's errors were logged by the watch)."""
    for attempt in range(tries):
        if attempt:
            task.cancel()
        await asyncio.wait({task}, timeout=wait_s)
        if task.done():
            if not task.cancelled():
                with contextlib.suppress(Exception):
                    task.result()
            return True
    return False
