"""The kernel's dead-peer checks on sync connections, and how their ending reads.

A dead box answers nothing, not even TCP; tests/integration/test_sync_netns.py cuts a real
push in two and times both ends. These check the socket options and the error's wording."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from nonstop.sync.transport import (
    DEAD_PEER_IDLE,
    DEAD_PEER_TIMEOUT,
    Channel,
    PeerGone,
    PeerSilent,
    detect_dead_peer,
)


def _options(sock: socket.socket) -> tuple[int, int, int]:
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))


def test_both_ends_of_a_real_connection_get_the_checks() -> None:
    async def main() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        accepted: asyncio.Queue[Channel] = asyncio.Queue()

        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await accepted.put(Channel(r, w))

        server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        client = Channel(r, w)
        srv = await accepted.get()
        got = (_options(client.writer.get_extra_info("socket")),
               _options(srv.writer.get_extra_info("socket")))
        w.close()
        srv.writer.close()
        server.close()
        return got

    for opts in asyncio.run(main()):
        assert opts == (1, DEAD_PEER_IDLE, DEAD_PEER_TIMEOUT * 1000)


def test_a_socket_that_is_not_tcp_is_left_alone() -> None:
    a, b = socket.socketpair()
    with a, b:
        detect_dead_peer(a)  # an inetd-style pipe: no TCP options, no error
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    detect_dead_peer(None)


def _channel_failing_with(exc: Exception | None) -> Channel:
    reader = asyncio.StreamReader()
    if exc is not None:
        reader.set_exception(exc)

    class Writer:
        def get_extra_info(self, name: str) -> None:
            return None

    return Channel(reader, Writer())  # type: ignore[arg-type]


def test_the_kernels_timeout_reads_as_a_machine_gone_not_a_silent_peer() -> None:
    async def main() -> None:
        chan = _channel_failing_with(TimeoutError(errno.ETIMEDOUT, "Connection timed out"))
        chan.authenticated(600.0)
        with pytest.raises(PeerGone, match=f"acknowledged nothing for {DEAD_PEER_TIMEOUT} s"):
            await chan.read_some()

    asyncio.run(main())


def test_the_idle_timeout_still_reads_as_a_silent_peer() -> None:
    async def main() -> None:
        chan = _channel_failing_with(None)
        chan.authenticated(0.05)
        with pytest.raises(PeerSilent, match=r"sent nothing for 0\.05 s"):
            await chan.read_some()

    asyncio.run(main())
