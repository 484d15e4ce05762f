"""The daemon's local control socket: one JSON request per line, one JSON reply per line.

The socket lives in the node's state directory (``<state-dir>/nonstop.sock``, mode 0600), so
several nodes coexist on one machine and only root (or the daemon's user) can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# The client lives apart (no asyncio); it is also reached from here.
from nonstop.apiclient import REPLY_BY, SOCKET_NAME
from nonstop.apiclient import ApiError as ApiError
from nonstop.apiclient import request as request
from nonstop.errors import InvalidValue

log = logging.getLogger("nonstop.api")

MAX_REQUEST = 65536

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def socket_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


def parse_request(line: bytes) -> dict[str, Any]:
    """One request: a JSON object with a string ``cmd`` and only plain values (strings,
    numbers, booleans, null). Anything else, deep nesting included, is a ValueError."""
    try:
        req = json.loads(line)
    except RecursionError:
        raise InvalidValue("request nested too deeply") from None
    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
        raise InvalidValue("a request is a JSON object with a string 'cmd'")
    for key, value in req.items():
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidValue(f"request field {key!r}: only plain values are accepted")
    return req


def _reply_by(value: object) -> float:
    """A request's deadline (nonstop.apiclient), or none for a client that sets none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):
            if math.isfinite(deadline := float(value)):
                return deadline
    return math.inf


def peer_credentials(writer: asyncio.StreamWriter) -> str:
    """The requesting process, from the socket's SO_PEERCRED (the kernel's word, not the
    client's): ``uid 0 (root) pid 1234 (nonstop)``."""
    import pwd  # the server side only: `nonstop status` does not pay for these
    import socket
    import struct

    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
    except (OSError, AttributeError, struct.error):
        return "unknown"
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = "?"
    try:
        with open(f"/proc/{pid}/comm") as fh:
            comm = fh.read().strip()
    except OSError:
        comm = "?"
    return f"uid {uid} ({user}) pid {pid} ({comm})"


class ControlServer:
    """Serves requests ``{"cmd": ...}`` with a handler; a bad request gets an error reply."""

    def __init__(self, state_dir: Path, handler: Handler) -> None:
        self.path = socket_path(state_dir)
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            try:
                req = parse_request(line)
                req["peer"] = peer_credentials(writer)  # who asked (the history records it)
                late = time.monotonic() - _reply_by(req.pop(REPLY_BY, None))
                if late > 0:  # its command already said it failed: doing it now would surprise
                    log.warning("dropped a %r request from %s: read %.1f s after its command "
                                "gave up waiting; nothing was done", req["cmd"], req["peer"], late)
                    return
                reply = await self.handler(req)
            except (ValueError, KeyError) as e:
                reply = {"ok": False, "error": str(e)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError) as e:
            log.debug("control connection dropped: %s", e)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
