"""Writing on a sync connection the peer has closed: an error at once, no log flood.

A user trial reloaded the standby while the active pushed a 60 MB file: the receiver closed
its connection cleanly (TLS close_notify) and the pusher wrote on until its next drain.
asyncio drops such writes and, past the fifth, logs "SSL connection is closed" for each:
37 warning lines for one push. Here over real TLS on the loopback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from nonstop.sync.protocol import PeerClosed
from nonstop.sync.transport import Channel, PeerGone, client_context, server_context


async def _closed_by_server(certs: Path) -> tuple[Channel, asyncio.Server]:
    ctx, _fingerprint = server_context(str(certs))
    closed = asyncio.Event()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(100)
        w.close()  # a clean TLS close, as a receiver's end of session
        await w.wait_closed()
        closed.set()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_context())
    chan = Channel(r, w)
    chan.send(b"hello")
    await chan.drain()
    await closed.wait()
    for _ in range(100):  # until the close reached this end (bounded)
        if w.is_closing():
            break
        await asyncio.sleep(0.01)
    return chan, server


def test_a_write_after_the_peer_closed_raises_and_logs_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[int, BaseException | None]:
        chan, server = await _closed_by_server(tmp_path)
        sent, error = 0, None
        try:
            for _ in range(40):  # small frames, under drain()'s threshold, as a push sends
                chan.send(b"y" * 1000)
                sent += 1
                await chan.drain(1 << 20)
        except PeerClosed as e:
            error = e
        chan.writer.close()
        server.close()
        await server.wait_closed()
        return sent, error

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        sent, error = asyncio.run(main())
    assert error is not None and sent == 0
    assert not [r for r in caplog.records if "connection is closed" in r.getMessage()]


@pytest.mark.parametrize(("why", "raised", "text"), [
    # Client.abort_busy ends a dead peer's session with its reason
    (ConnectionAbortedError("vpbx1-2 was declared dead"), ConnectionAbortedError,
     "declared dead"),
    # the kernel's TCP_USER_TIMEOUT: worded as drain() and read_some() word it
    (TimeoutError(110, "Connection timed out"), PeerGone, "acknowledged nothing"),
])
def test_an_ended_connection_raises_why_it_ended(
        tmp_path: Path, why: Exception, raised: type[Exception], text: str) -> None:
    async def main() -> BaseException | None:
        ctx, _fingerprint = server_context(str(tmp_path))

        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.read()

        server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_context())
        chan = Channel(r, w)
        r.set_exception(why)
        w.transport.abort()
        try:
            chan.send(b"y")
        except raised as e:
            return e
        finally:
            server.close()
            await server.wait_closed()
        return None

    got = asyncio.run(main())
    assert got is not None and text in str(got)
