"""Receiving is bounded per loop turn, and datagrams the kernel dropped are still counted."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from nonstop.config.model import Ucast
from nonstop.errors import MachineError
from nonstop.heartbeat.media import BATCH, SO_RXQ_OVFL, MediaSet, _Sender, drop_from


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    rx.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    yield rx, tx
    rx.close()
    tx.close()


def test_one_turn_reads_at_most_one_batch(pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for _ in range(3 * BATCH):
        tx.sendto(b"x" * 100, rx.getsockname())
    got: list[bytes] = []
    media = MediaSet((), lambda data, link, addr: got.append(data))
    media._readable(rx, "lo")
    assert len(got) == BATCH
    media._readable(rx, "lo")
    media._readable(rx, "lo")
    assert len(got) == 3 * BATCH and media.kernel_drops == 0


def test_kernel_drops_are_counted(pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # room for a few datagrams only
    for _ in range(200):
        tx.sendto(b"x" * 1000, rx.getsockname())
    got: list[bytes] = []
    media = MediaSet((), lambda data, link, addr: got.append(data))
    media._readable(rx, "lo")
    tx.sendto(b"after the flood", rx.getsockname())  # carries the drop count
    media._readable(rx, "lo")
    assert got[-1] == b"after the flood"
    assert len(got) - 1 + media.kernel_drops == 200


@pytest.fixture
def filtered() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """A receiver on 127.0.0.1 whose filter drops what comes from our own address 127.0.0.2
    (the ``own`` socket), and a peer's socket on 127.0.0.3."""
    rx, own, peer = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        own.bind(("127.0.0.2", 0))
        peer.bind(("127.0.0.3", 0))
        assert drop_from(rx, "127.0.0.2")
        yield rx, own, peer
    finally:
        for s in (rx, own, peer):
            s.close()


def test_own_broadcast_echoes_are_dropped_by_the_kernel(
        filtered: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    """The filter drops datagrams from our own address and lets every other source through."""
    rx, own, peer = filtered
    own.sendto(b"echo", rx.getsockname())
    peer.sendto(b"from the peer", rx.getsockname())
    own.sendto(b"echo again", rx.getsockname())
    got: list[tuple[bytes, str]] = []
    media = MediaSet((), lambda data, link, addr: got.append((data, addr[0])))
    media._readable(rx, "lo")
    assert got == [(b"from the peer", "127.0.0.3")]


def test_our_own_filtered_echoes_are_not_counted_as_kernel_drops(
        filtered: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    """The kernel counts a datagram its socket filter refused as a drop: an idle node's status
    said the kernel had dropped about as many datagrams as it had sent (86 of 86 in a user
    trial: every own broadcast's echo). A real drop in the same stream is still counted."""
    rx, own, peer = filtered  # own: our address, what we send comes back to rx, filtered
    rx.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    got: list[bytes] = []
    media = MediaSet((), lambda data, link, addr: got.append(data))
    media.senders.append(_Sender(Ucast("lo", "127.0.0.1", 694), own, rx.getsockname(),
                                 echo_fd=rx.fileno()))
    for _ in range(5):
        assert media.send(b"our heartbeat") == 1
    peer.sendto(b"the peer's heartbeat", rx.getsockname())  # carries the kernel's count
    media._readable(rx, "lo")
    assert got == [b"the peer's heartbeat"] and media.kernel_drops == 0
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # now a flood overflows it
    for _ in range(200):
        peer.sendto(b"x" * 1000, rx.getsockname())
    media.send(b"our heartbeat")
    media._readable(rx, "lo")
    peer.sendto(b"after the flood", rx.getsockname())
    media._readable(rx, "lo")
    assert got[-1] == b"after the flood"
    assert len(got) - 2 + media.kernel_drops == 200  # the flood's drops, not our echo


class _CountingSocket:
    """A socket that counts recvmsg calls and the BlockingIOErrors they raised."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls = 0
        self.would_block = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def recvmsg(self, size: int, anc: int) -> tuple[bytes, list[tuple[int, int, bytes]], int,
                                                    tuple[str, int]]:
        self.calls += 1
        try:
            return self.sock.recvmsg(size, anc)
        except BlockingIOError:
            self.would_block += 1
            raise


def test_a_lone_heartbeat_costs_one_recvmsg_and_no_exception(
        pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    counting = _CountingSocket(rx)
    got: list[bytes] = []
    media = MediaSet((), lambda data, link, addr: got.append(data))
    for i in range(5):
        tx.sendto(b"hb %d" % i, rx.getsockname())
        media._readable(counting, "lo")  # type: ignore[arg-type]
    assert got == [b"hb %d" % i for i in range(5)]
    assert (counting.calls, counting.would_block) == (5, 0)
    for _ in range(3):  # a burst is still read in one turn
        tx.sendto(b"burst", rx.getsockname())
    media._readable(counting, "lo")  # type: ignore[arg-type]
    assert got[5:] == [b"burst"] * 3 and counting.calls == 8


def test_empty_datagrams_are_read_on_the_next_turn(
        pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    for data in (b"a", b"", b"", b"b"):
        tx.sendto(data, rx.getsockname())
    got: list[bytes] = []
    media = MediaSet((), lambda data, link, addr: got.append(data))
    for _ in range(4):
        media._readable(rx, "lo")
    assert got == [b"a", b"", b"", b"b"]


def test_a_receiver_that_closes_the_socket_ends_the_batch(
        pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    for _ in range(3):
        tx.sendto(b"x", rx.getsockname())
    got: list[bytes] = []

    def receive(data: bytes, link: str, addr: tuple[str, int]) -> None:
        got.append(data)
        rx.close()  # a reload that closes the media from inside the receive path

    MediaSet((), receive)._readable(rx, "lo")
    assert got == [b"x"]


async def test_a_port_in_use_names_its_medium() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_REUSEADDR: exclusive
    taken.bind(("", 0))
    port = taken.getsockname()[1]
    media = MediaSet((Ucast("lo", "127.0.0.1", port),), lambda data, link, addr: None)
    try:
        with pytest.raises(MachineError, match=rf"^ucast lo \(UDP port {port}\): Address "
                                               r"already in use$"):
            await media.open()
    finally:
        media.close()
        taken.close()
