"""The sync port before authentication: connection limits and the accept loop that keeps them.

Anyone on the segment can connect to the sync port. Until a client has proved the group key it
is a stranger, and strangers get a small, fixed share of the daemon: at most ``PER_SOURCE``
connections per address, at most ``MAX_UNAUTHENTICATED`` in all (a new one pushes the oldest
stranger out, so holding connections open cannot lock a real peer out), ``MAX_CONNECTIONS`` in
all, a TLS handshake deadline, and then the handshake's own deadline
(:data:`nonstop.sync.transport.PREAUTH_TIMEOUT`). When the process runs out of file
descriptors, accepting pauses for a second with one log line, never a traceback per attempt
(asyncio's own server logged one per refused accept: 86,000 in 45 s, issue 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from nonstop.logs import BAD_INPUT, escape

log = logging.getLogger("nonstop.sync")

PER_SOURCE = 8
MAX_UNAUTHENTICATED = 32
MAX_CONNECTIONS = 64
TLS_HANDSHAKE_TIMEOUT = 5.0
ACCEPT_PAUSE_S = 1.0
# A process short of descriptors often flaps (one accept works when a connection ends, the next
# fails again): the warning is said again only after this long, not at every flap.
ACCEPT_WARN_EVERY_S = 60.0
ACCEPT_BATCH = 32  # connections accepted per loop turn
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass(eq=False)
class Slot:
    """One admitted connection."""

    source: str
    authenticated: bool = False
    task: asyncio.Task[None] | None = None


_current: ContextVar[Slot | None] = ContextVar("nonstop_sync_slot", default=None)


def authenticated() -> None:
    """Called by the server handshake once the client proved the key: its connection is no
    longer a stranger's (it cannot be pushed out, and leaves room for another stranger)."""
    slot = _current.get()
    if slot is not None:
        slot.authenticated = True


class Limits:
    """Who may hold a connection (pure bookkeeping: no sockets, no clock)."""

    def __init__(self, per_source: int | None = None, max_unauthenticated: int | None = None,
                 max_connections: int | None = None) -> None:
        self.per_source = per_source or PER_SOURCE
        self.max_unauthenticated = max_unauthenticated or MAX_UNAUTHENTICATED
        self.max_connections = max_connections or MAX_CONNECTIONS
        self.slots: list[Slot] = []  # oldest first
        self.by_source: dict[str, int] = {}

    def admit(self, source: str) -> tuple[Slot | None, Slot | None, str]:
        """(the new connection's slot or None if refused, a stranger to push out or None,
        why it was refused)."""
        if self.by_source.get(source, 0) >= self.per_source:
            return None, None, f"more than {self.per_source} connections from one address"
        strangers = [s for s in self.slots if not s.authenticated]
        evict: Slot | None = None
        if len(strangers) >= self.max_unauthenticated:
            evict = strangers[0]
        elif len(self.slots) >= self.max_connections:
            if not strangers:
                return None, None, f"{self.max_connections} connections open"
            evict = strangers[0]
        if evict is not None:
            self.release(evict)
        slot = Slot(source)
        self.slots.append(slot)
        self.by_source[source] = self.by_source.get(source, 0) + 1
        return slot, evict, ""

    def release(self, slot: Slot) -> None:
        """Forget a closed (or pushed-out) connection; releasing twice is harmless."""
        if slot in self.slots:
            self.slots.remove(slot)
            left = self.by_source[slot.source] - 1
            if left:
                self.by_source[slot.source] = left
            else:
                del self.by_source[slot.source]


# What OpenSSL says of a peer that answered, but not in TLS (csync2 2.0 with `nossl`, an
# HTTP client or server, ...).
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST",
                      "HTTPS_PROXY_REQUEST", "PACKET_LENGTH_TOO_LONG"})


def not_tls(e: BaseException) -> bool:
    """Whether a handshake failed because the other end does not speak TLS at all."""
    return isinstance(e, ssl.SSLError) and getattr(e, "reason", None) in _NOT_TLS


def handshake_failure(e: BaseException) -> str:
    """Why a TLS handshake failed, in words: a bare TimeoutError has no text, and the log said
    'TLS handshake with X failed: ' and nothing more (seen on a lossy link). A client that
    speaks no TLS is most likely csync2 itself, on a node whose cron line or master script
    still calls it in the middle of a migration: OpenSSL's "wrong version number" said none
    of that."""
    if not_tls(e):
        return ("it speaks no TLS (csync2 2.0 still pushing from there? nonstop's peers speak "
                "only TLS; docs/SYNC.md, Migrating from csync2)")
    if str(e):
        return escape(e)
    if isinstance(e, TimeoutError):
        return f"no handshake within {TLS_HANDSHAKE_TIMEOUT:g} s"
    return type(e).__name__


class Listener:
    """Accepts TLS connections on ``sock`` within :class:`Limits` and hands each to
    ``handler`` (reader, writer); stands in for the ``asyncio.Server`` it replaces."""

    def __init__(self, sock: socket.socket, ssl_ctx: ssl.SSLContext, handler: Handler,
                 stats: dict[str, int], limits: Limits | None = None) -> None:
        self.sockets = [sock]
        self._sock = sock
        self._ssl = ssl_ctx
        self._handler = handler
        self._stats = stats
        self.limits = limits or Limits()
        self._loop = asyncio.get_running_loop()
        self._paused: asyncio.TimerHandle | None = None
        self._pause_refusals = 0
        self._pause_warned_at: float | None = None
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _count(self, what: str) -> None:
        self._stats[what] = self._stats.get(what, 0) + 1

    def _say(self, reason: str, source: str, text: str) -> None:
        now = self._loop.time()
        if BAD_INPUT.admit(reason, source, now):
            log.warning("%s", text)
        summary = BAD_INPUT.summary(now)
        if summary:
            log.warning("%s", summary)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    self._pause(e)
                else:
                    log.debug("sync: accept failed: %s", e)
                return
            if self._pause_refusals:
                log.info("sync: accepting connections again (%d attempt(s) failed)",
                         self._pause_refusals)
                self._pause_refusals = 0
            source = str(addr[0])
            slot, evict, why = self.limits.admit(source)
            if slot is None:
                conn.close()
                self._count("refused_limit")
                self._say("connection_limit", source, f"sync: refused a connection from "
                          f"{escape(source)}: {why}")
                continue
            if evict is not None and evict.task is not None:
                self._count("evicted_unauthenticated")
                evict.task.cancel()
            slot.task = self._loop.create_task(self._serve(conn, slot))

    def _pause(self, e: OSError) -> None:
        """Out of file descriptors (or memory): stop accepting for a moment, say so once."""
        self._count("accept_paused")
        now = self._loop.time()
        if not self._pause_refusals and (self._pause_warned_at is None
                                         or now - self._pause_warned_at >= ACCEPT_WARN_EVERY_S):
            self._pause_warned_at = now
            log.warning("sync: cannot accept connections: %s; retrying every %.0f s",
                        e.strerror, ACCEPT_PAUSE_S)
        self._pause_refusals += 1
        self._loop.remove_reader(self._sock.fileno())
        self._paused = self._loop.call_later(ACCEPT_PAUSE_S, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _serve(self, conn: socket.socket, slot: Slot) -> None:
        _current.set(slot)
        writer: asyncio.StreamWriter | None = None
        try:
            conn.setblocking(False)
            reader = asyncio.StreamReader(limit=1 << 16)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await self._loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self._ssl,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
        except asyncio.CancelledError:
            conn.close()
            self.limits.release(slot)
            return
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as e:
            conn.close()
            self.limits.release(slot)
            self._count("tls_failed")
            self._say("tls", slot.source, f"sync: TLS handshake with {escape(slot.source)} "
                      f"failed: {handshake_failure(e)}")
            return
        try:
            await self._handler(reader, writer)
        except asyncio.CancelledError:
            pass  # pushed out as the oldest stranger, or the server is closing
        finally:
            self.limits.release(slot)
            with contextlib.suppress(Exception):
                writer.close()

    def stop_accepting(self) -> None:
        """Close the listening socket; the connections in progress go on."""
        if self._closed:
            return
        self._closed = True
        if self._paused is not None:
            self._paused.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def close(self) -> None:
        """Stop accepting and end every connection."""
        self.stop_accepting()
        for slot in list(self.limits.slots):
            if slot.task is not None:
                slot.task.cancel()

    async def wait_closed(self) -> None:
        tasks = [s.task for s in list(self.limits.slots) if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket (with SO_REUSEADDR, as asyncio's server had), IPv6 if ``host``
    is an IPv6 address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)
