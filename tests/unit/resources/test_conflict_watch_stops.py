"""A stopped conflict watch stops: no more probes, no socket left open, nothing reported.

The bug: a node that released its address while its watch was in a conflict went on probing
the address every second for ever. Its watch waited for frames with ``asyncio.wait_for``, which
in Python 3.11 returns a frame that arrived together with the cancellation and drops the
CancelledError (gh-86296); in a conflict frames arrive all the time. Here the link is a fake
whose frames are always ready, so a cancellation lands at every point of the receive, and the
peer answers every probe, so a watch that was not stopped would probe on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nonstop.resources import arp, conflict, watches
from nonstop.resources.conflict import ConflictEvent, ConflictStarted, ConflictWatch
from nonstop.resources.dad import Claimant
from nonstop.resources.watches import AddressWatches

OURS = bytes.fromhex("02aabbccddee")
THEIRS = bytes.fromhex("02111111111a")
VIP = ipaddress.IPv4Address("198.18.0.10")
ROGUE = Claimant("02:11:11:11:11:1a", "announcement")
SPINS = range(12)  # loop passes between a frame arriving and the cancellation: every point
PACKET_BROADCAST = 1


def their_garp() -> bytes:
    return arp.gratuitous_arp_frame(arp.ArpOp.REQUEST, THEIRS, VIP)


def their_reply() -> bytes:
    return arp.arp_frame(arp.ArpOp.REPLY, THEIRS, VIP.packed, OURS, bytes(4))


class FakeLink(socket.socket):
    """A packet socket "bound to eth0": one end of a datagram socket pair; the test writes
    frames into the other end, and what the code sends is recorded by the :class:`FakeLan`."""

    def __init__(self, lan: FakeLan, fd: int, peer: socket.socket) -> None:
        super().__init__(socket.AF_UNIX, socket.SOCK_DGRAM, 0, fd)
        self.lan, self.peer = lan, peer

    def bind(self, address: Any) -> None:
        pass

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        return self.recv(bufsize, flags), ("eth0", arp.ETH_P_ARP, PACKET_BROADCAST, 1, THEIRS)

    def send(self, data: Any, flags: int = 0) -> int:
        frame = bytes(data)
        self.lan.sent.append(frame)
        packet = arp.parse_arp_frame(frame)
        if self.lan.answering and packet is not None and packet.target_ip == VIP:
            self.peer.send(their_reply())  # the peer holds the address: it answers probes
        return len(frame)


class FakeLan:
    """Every packet socket the code opens (the watch's, each probe's) is a :class:`FakeLink`."""

    def __init__(self) -> None:
        self.links: list[FakeLink] = []
        self.peers: list[socket.socket] = []
        self.sent: list[bytes] = []
        self.answering = True

    def packet_socket(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        link = FakeLink(self, ours.detach(), theirs)
        self.links.append(link)
        self.peers.append(theirs)
        return link

    def deliver(self, link: int, frame: bytes, count: int = 1) -> None:
        for _ in range(count):
            self.peers[link].send(frame)

    def close(self) -> None:
        for s in [*self.links, *self.peers]:
            s.close()


@pytest.fixture
def lan(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLan]:
    fake = FakeLan()
    monkeypatch.setattr(arp, "packet_socket", fake.packet_socket)
    yield fake
    fake.close()


async def finish(task: asyncio.Task[Any]) -> None:
    """Teardown: end a task that a failed test left running (bounded)."""
    for _ in range(10):
        if task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)
    assert check(), what


@pytest.mark.parametrize("spins", SPINS)
async def test_receive_arp_lets_a_cancellation_through_when_a_frame_is_waiting(
        lan: FakeLan, spins: int) -> None:
    sock = lan.packet_socket()
    sock.setblocking(False)
    lan.deliver(0, their_garp(), count=5)
    task = asyncio.create_task(arp.receive_arp(sock, 5.0))
    for _ in range(spins):
        await asyncio.sleep(0)
    if task.done():
        assert (await task) is not None  # it had its frame before the cancellation
        return
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_receive_arp_times_out() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.setblocking(False)
        with pytest.raises(TimeoutError):
            await arp.receive_arp(a, 0.01)
        b.send(b"x")
        with pytest.raises(TimeoutError):  # a due deadline wins over a waiting frame
            await arp.receive_arp(a, 0)


@pytest.mark.parametrize("spins", SPINS)
async def test_a_watch_cancelled_in_a_conflict_ends_probes_no_more_and_closes_its_sockets(
        lan: FakeLan, spins: int) -> None:
    events: list[ConflictEvent] = []
    watch = ConflictWatch("eth0", VIP, OURS, logger=logging.getLogger("test"),
                          on_end=lambda: None, on_event=events.append,
                          probe_interval_s=0.01, probe_wait_s=0.02)
    task = asyncio.create_task(watch.run())
    try:
        await wait_until(lambda: bool(lan.links), 2, "the watch to listen")
        lan.deliver(0, their_garp())
        await wait_until(lambda: bool(events) and len(lan.sent) >= 2, 2,
                         "a conflict, and its probes answered")
        assert watch.tracker.state is conflict.ConflictState.CONFLICT
        lan.deliver(0, their_garp(), count=20)  # the peer's announcements keep coming
        for _ in range(spins):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        assert task.done(), "the watch still runs after it was cancelled"
        assert task.cancelled()
        sent = len(lan.sent)
        await asyncio.sleep(0.1)  # ten probe intervals
        assert len(lan.sent) == sent, "probes after the watch was stopped"
        await wait_until(lambda: all(s.fileno() == -1 for s in lan.links), 2,
                         "every packet socket of the watch to be closed")
    finally:
        await finish(task)


class Held:
    def __init__(self) -> None:
        self.address = VIP
        self.held_on: str | None = "eth0"
        self.reannounced = 0

    def reannounce(self) -> None:
        self.reannounced += 1


class LosesCancellations:
    """A watch port that loses the first ``lost`` cancellations it gets (as ``wait_for`` lost
    one), each time reporting the frame it was reading."""

    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.task: asyncio.Task[Any] | None = None

    async def __call__(self, iface: str, ip: ipaddress.IPv4Address, on_end: Callable[[], None],
                       on_event: Callable[[ConflictEvent], None]) -> None:
        self.task = asyncio.current_task()
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self.lost == 0:
                    raise
                self.lost -= 1
                on_event(ConflictStarted(ip, ROGUE))
                on_end()


async def test_a_released_address_s_watch_that_lost_its_cancellation_still_stops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watches, "STOP_WAIT_S", 0.05)
    port, changes, held = LosesCancellations(lost=2), [], Held()
    w = AddressWatches(on_change=lambda: changes.append(1), make_watch=port)
    w.sync([held])
    await wait_until(lambda: port.task is not None, 2, "the watch to start")
    assert port.task is not None
    try:
        w.sync([])  # released
        await asyncio.wait({port.task}, timeout=1.0)
        assert port.task.done(), "the watch of a released address still runs"
        assert held.reannounced == 0 and changes == []  # nothing it saw after its stop counted
        assert w.status() == []
        await asyncio.wait_for(w.stop(), 2)
    finally:
        await finish(port.task)


async def test_stop_is_bounded_even_for_a_watch_that_never_ends(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(watches, "STOP_WAIT_S", 0.05)
    port = LosesCancellations(lost=1000)
    w = AddressWatches(on_change=lambda: None, make_watch=port)
    w.sync([Held()])
    await wait_until(lambda: port.task is not None, 2, "the watch to start")
    assert port.task is not None
    try:
        async with asyncio.timeout(3):
            await w.stop()
        assert "the conflict watch of 198.18.0.10 on eth0 did not stop" in caplog.text
    finally:
        port.lost = 0
        await finish(port.task)
