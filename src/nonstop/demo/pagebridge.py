"""Lets a browser on this machine reach a demo node's status page.

Each demo node serves its page on its own localhost (``nonstop_metrics``'s default), inside its
network namespace, which nothing outside can reach. Two relays join it to this machine's
localhost through a Unix socket (a file, visible from both sides):

  node side:  python -m nonstop.demo.pagebridge node UNIX_PATH PORT   (in the node)
  host side:  python -m nonstop.demo.pagebridge host UNIX_PATH PORT   (on this machine)

Both relay bytes only; the page stays read-only. Loopback only on both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


def relay(upstream: Opener) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                        Awaitable[None]]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(upstream(), 5)
        except (OSError, TimeoutError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                         b"Connection: close\r\n\r\nthis demo node is powered off or its "
                         b"daemon is not running\n")
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return serve


async def main(side: str, unix_path: str, port: int) -> None:
    if side == "node":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unix_path)
        server = await asyncio.start_unix_server(
            relay(lambda: asyncio.open_connection("127.0.0.1", port)), unix_path)
    else:
        server = await asyncio.start_server(
            relay(lambda: asyncio.open_unix_connection(unix_path)), "127.0.0.1", port,
            reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("node", "host") or not sys.argv[3].isdigit():
        sys.exit("usage: python -m nonstop.demo.pagebridge node|host UNIX_PATH PORT")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
