"""``nonstop_metrics ADDRESS:PORT``: ``/metrics``, the status page and its JSON documents.

A small HTTP/1.1 server on the event loop, read-only by construction: it answers GET and HEAD
on four paths and nothing else (no form, no action, no POST). Requests are bounded before they
are parsed (8 KiB of head, 5 s to send it, 32 connections at once), as every other input of
the daemon is. The status document is built on the loop (it is a snapshot of the daemon's
state, microseconds); the metrics text is rendered in a worker thread.

  /             the status page (docs/OBSERVE.md): no external assets, works offline
  /status.json  the document ``nonstop status --json`` prints (docs/STATUS.md)
  /history.json recent history records, ``?after=SEQ`` for those after SEQ
  /metrics      Prometheus text format (docs/METRICS.md)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, TypeVar

from nonstop.observe.events import Record
from nonstop.observe.metrics import CONTENT_TYPE, Metrics
from nonstop.observe.page import PAGE

log = logging.getLogger("nonstop.observe")

MAX_HEAD = 8192
HEAD_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 32


T = TypeVar("T")


class RecentSource(Protocol):
    def in_worker(self, run: Callable[[], T]) -> Awaitable[T]: ...

    def recent_after(self, after: int, limit: int = 200) -> list[Record]: ...


def listen_url(address: tuple[str, int]) -> str:
    host, port = address
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class WebServer:
    def __init__(self, address: tuple[str, int], source: RecentSource, metrics: Metrics,
                 status: Callable[[], dict[str, Any]]) -> None:
        self.address = address
        self.source = source
        self.metrics = metrics
        self.status = status
        self._server: asyncio.Server | None = None
        self._open = 0

    @property
    def url(self) -> str:
        """Where the page is (with the port the kernel chose when configured as 0)."""
        if self._server is not None and self._server.sockets:
            return listen_url((self.address[0], self._server.sockets[0].getsockname()[1]))
        return listen_url(self.address)

    async def start(self) -> None:
        host, port = self.address
        self._server = await asyncio.start_server(self._serve, host, port,
                                                  limit=MAX_HEAD, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > MAX_CONNECTIONS:
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError):
                return
            status, ctype, body, head_only = await self._answer(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                "Content-Security-Policy: default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'\r\n"
                "Connection: close\r\n\r\n".encode())
            if not head_only:
                writer.write(body)
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), 10)
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError, OSError):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _answer(self, head: bytes) -> tuple[str, str, bytes, bool]:
        try:
            method, target, _version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except ValueError:
            return "400 Bad Request", "text/plain", b"bad request\n", False
        if method not in ("GET", "HEAD"):
            return ("405 Method Not Allowed", "text/plain",
                    b"read-only: GET and HEAD only\n", False)
        head_only = method == "HEAD"
        url = urllib.parse.urlsplit(target)
        if url.path == "/":
            return "200 OK", "text/html; charset=utf-8", PAGE.encode(), head_only
        if url.path == "/status.json":
            return "200 OK", "application/json", _json(self.status()), head_only
        if url.path == "/history.json":
            query = urllib.parse.parse_qs(url.query)
            try:
                after = int(query.get("after", ["0"])[0])
            except ValueError:
                return "400 Bad Request", "text/plain", b"after: a sequence number\n", False
            records = self.source.recent_after(after)
            return ("200 OK", "application/json",
                    _json({"records": [r.to_json() for r in records]}), head_only)
        if url.path == "/metrics":
            st = self.status()
            text = await self.source.in_worker(partial(self.metrics.render, st))
            return "200 OK", CONTENT_TYPE, text, head_only
        return "404 Not Found", "text/plain", b"not found\n", head_only


def _json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()
