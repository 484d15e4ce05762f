"""The daemon's conflict watches: one per held address, events to status, the end re-announces."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

from nonstop.resources.conflict import ConflictEnded, ConflictEvent, ConflictStarted
from nonstop.resources.dad import Claimant
from nonstop.resources.watches import AddressWatches

VIP = ipaddress.IPv4Address("198.18.0.10")
VIP2 = ipaddress.IPv4Address("198.18.0.11")
ROGUE = Claimant("02:11:11:11:11:1a", "announcement")


class Held:
    def __init__(self, ip: ipaddress.IPv4Address, iface: str | None = "eth0") -> None:
        self.address = ip
        self.held_on = iface
        self.reannounced = 0

    def reannounce(self) -> None:
        self.reannounced += 1


class Watches:
    """The recording watch port: each running watch's callbacks, by address."""

    def __init__(self) -> None:
        self.running: dict[ipaddress.IPv4Address, tuple[Callable[[], None],
                                                        Callable[[ConflictEvent], None]]] = {}
        self.fail: str | None = None

    async def __call__(self, iface: str, ip: ipaddress.IPv4Address, on_end: Callable[[], None],
                       on_event: Callable[[ConflictEvent], None]) -> None:
        if self.fail is not None:
            raise OSError(self.fail)
        self.running[ip] = (on_end, on_event)
        try:
            await asyncio.Event().wait()
        finally:
            del self.running[ip]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_watch_per_held_address_and_conflicts_in_status() -> None:
    port, changes = Watches(), []
    w = AddressWatches(on_change=lambda: changes.append(1), make_watch=port)
    a, b = Held(VIP), Held(VIP2, iface=None)  # b: not on an interface here (not held)
    w.sync([a, b])
    await settle()
    assert set(port.running) == {VIP}
    on_end, on_event = port.running[VIP]
    on_event(ConflictStarted(VIP, ROGUE))
    (st,) = w.status()
    assert st["conflict"] is True and st["conflicts"] == 1
    assert st["claimants"] == [{"mac": ROGUE.mac, "how": "announcement"}]
    assert "also claimed by 02:11:11:11:11:1a" in st["last_event"] and changes
    on_event(ConflictEnded(VIP, (ROGUE,)))
    on_end()  # the real watch calls the agent's reannounce when the conflict ends
    assert a.reannounced == 1
    (st,) = w.status()
    assert st["conflict"] is False and st["claimants"] == [] and st["conflicts"] == 1

    w.sync([])  # released: the watch goes
    await settle()
    assert port.running == {} and w.status() == []
    await w.stop()


async def test_a_watch_that_cannot_listen_is_reported_and_the_address_kept() -> None:
    port = Watches()
    port.fail = "Operation not permitted"
    w = AddressWatches(on_change=lambda: None, make_watch=port)
    w.sync([Held(VIP)])
    await settle()
    (st,) = w.status()
    assert st["error"] == "Operation not permitted" and st["conflict"] is False
    await w.stop()
    assert w.status() == []
