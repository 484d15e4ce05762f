"""The receiving side, a thin asyncio shell around :class:`~nonstop.sync.session.ServerSession`.

:class:`SyncServer` listens (csync2 ``-i``/``-ii``/``-iii``, or inside the daemon), authenticates
each peer and serves its session: offers are judged by a
:class:`~nonstop.sync.receiver.Receiver`, their files received and committed (one batch installs
in the background while the next arrives), listings and fetched files sent back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nonstop.config.errors import ConfigError
from nonstop.logs import BAD_INPUT
from nonstop.sync.context import GroupCtx, SyncError
from nonstop.sync.limits import Listener
from nonstop.sync.messages import (
    Bye,
    Commit,
    Data,
    Eof,
    Event,
    Fetch,
    ListRequest,
    Need,
    Offer,
    Start,
    Whole,
)
from nonstop.sync.plan import Op
from nonstop.sync.protocol import AuthError, Kind, PeerClosed, ProtocolError, RemoteError
from nonstop.sync.receiver import Batch, Receiver
from nonstop.sync.scan import describe
from nonstop.sync.sender import FileSender
from nonstop.sync.session import ClientSession, ServerSession
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB
from nonstop.sync.transport import Channel, Peer, next_event, server_context, server_handshake
from nonstop.sync.writes import ReceivingLock

if TYPE_CHECKING:
    from nonstop.sync.node import Node

WRITE_BACKLOG = 32 << 20  # received bytes the writer thread may lag behind the network
LIST_CHUNK = 2000
SMALL_FILE = 256 << 10  # a file this small is written by one job of the writer thread


async def receive_files(chan: Channel, session: ClientSession | ServerSession, rec: Receiver,
                        batch: Batch, need: list[int],
                        on_start: Callable[[Start], Awaitable[None]] | None = None) -> None:
    """Receive the ``need``ed files of ``batch`` into ``rec``, in order: WHOLE frames (several
    files, each exactly as offered: version 2) or one file at a time (:func:`receive_file`)."""
    k = 0
    while k < len(need):
        ev = await next_event(chan, session)
        if isinstance(ev, Whole):
            for i, data in ev.files:
                new = batch.pending[i].op.new
                assert new is not None  # a needed file is a regular file to install
                rec.submit_whole(batch, i, [data], new)
            k += len(ev.files)
            await _backlog(rec)
        else:
            await receive_file(chan, session, rec, batch, need[k], on_start, ev)
            k += 1
    rec.flush_writes()


async def _backlog(rec: Receiver) -> None:
    if rec.queued_bytes > WRITE_BACKLOG:
        rec.flush_writes()
        await asyncio.to_thread(rec.wait_writes)


async def receive_file(chan: Channel, session: ClientSession | ServerSession, rec: Receiver,
                       batch: Batch, i: int,
                       on_start: Callable[[Start], Awaitable[None]] | None = None,
                       first: Event | None = None) -> None:
    """Receive file ``i`` of ``batch`` into ``rec``: [START] DATA* EOF (``first``: its first
    event, already read).

    A whole file of up to SMALL_FILE bytes (most of a voicemail or config tree) is handed to
    the writer thread as one job when its EOF arrives, not as a job per frame: each job is a
    hand-off of the GIL between the event loop and the writer."""
    ev = first if first is not None else await next_event(chan, session)
    held: list[bytes] | None = None
    if isinstance(ev, Start) and on_start is not None:
        await on_start(ev)
        ev = await next_event(chan, session)
    else:
        held = []
    size = 0
    while isinstance(ev, Data):
        size += len(ev.payload)
        if held is not None and size <= SMALL_FILE:
            held.append(ev.payload)
        else:
            if held is not None:
                rec.submit_open(batch, i)
                for chunk in held:
                    rec.submit_write(batch, i, chunk)
                held = None
            rec.submit_write(batch, i, ev.payload)
            await _backlog(rec)
        ev = await next_event(chan, session)
    if not isinstance(ev, Eof):
        raise ProtocolError(f"unexpected {type(ev).__name__}")
    final = ev.state or FileState("reg", 0, 0, 0, -1)
    if held is None:
        rec.submit_end(batch, i, final)
        return
    rec.submit_whole(batch, i, held, final)
    await _backlog(rec)


class Serving:
    """One authenticated incoming session."""

    def __init__(self, node: Node, chan: Channel, g: GroupCtx, peer: Peer, rec: Receiver,
                 stats: dict[str, int]) -> None:
        self.node = node
        self.chan = chan
        self.session = ServerSession(chan.decoder.pending(), peer.version)
        self.g = g
        self.peer = peer
        self.rec = rec
        self.stats = stats
        self._committing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Serve requests until the peer says goodbye (without keep) or fails."""
        # After a kept run's BYE the pusher may let the session go unsaid: it closes one idle
        # for 30 s when its next push comes. That is no problem: it was a warning and the
        # status's last_problem here each time a PBX got busy again after a quiet spell.
        between = False
        try:
            while True:
                try:
                    ev = await next_event(self.chan, self.session)
                except PeerClosed:
                    if between:
                        return
                    raise
                between = False
                if isinstance(ev, Offer):
                    await self._offer(ev)
                    continue
                await self._settle()
                if isinstance(ev, ListRequest):
                    await self._list(ev)
                elif isinstance(ev, Fetch):
                    await self._fetch(ev)
                elif isinstance(ev, Bye):
                    if not await self._bye(ev):
                        return
                    between = True
                else:
                    raise ProtocolError(f"unexpected {type(ev).__name__}")
        finally:
            if self._committing is not None:
                with contextlib.suppress(Exception):
                    await self._committing

    async def _settle(self) -> None:
        if self._committing is not None:
            task, self._committing = self._committing, None
            await task

    async def _bye(self, ev: Bye) -> bool:
        """Answer a BYE; True if the session stays open for the next run."""
        # Before the answer: the pusher's run ends with it, and the history must already say
        # what its forced push overwrote here (a test saw the record come after the run).
        _told_overwritten(self.node, self.peer.name, self.rec)
        self.chan.send(self.session.bye())
        await self.chan.drain()
        if not ev.keep:
            return False
        account(self.stats, self.chan)
        # The end of one run in a kept session: its actions run now.
        changed, self.rec.changed = self.rec.changed, []
        if changed:
            self.stats["changes_received"] = self.stats.get("changes_received", 0) + len(changed)
            self.node.out(1, f"received {len(changed)} change(s) from {self.peer.name}")
            await self.node.run_actions(self.g, changed, receiving=True)
        return True

    async def _offer(self, ev: Offer) -> None:
        rec, chan = self.rec, self.chan
        # Judged per batch: a session may outlive a takeover.
        # Refused, a push still brings files this node never had (see Receiver.only_new).
        refusal = self.node.push_refusal(self.peer.name) if self.node.push_refusal else None
        rec.only_new = refusal
        results, need, batch = await asyncio.to_thread(rec.evaluate, ev.ops)
        have = {i: b for i in need if (b := rec.basis(batch, i)) is not None}
        chan.send(self.session.verdict(ev.b, [r for r in results if r is not None], need, have))
        await chan.drain()

        async def start(st: Start) -> None:
            await self._start(batch, st)

        await receive_files(chan, self.session, rec, batch, need, start)
        commit = await next_event(chan, self.session)
        if not isinstance(commit, Commit):
            raise ProtocolError(f"unexpected {type(commit).__name__}")
        # One batch installs in the background while the next one arrives.
        await self._settle()
        self._committing = asyncio.create_task(self._commit(batch, commit.b))

    async def _start(self, batch: Batch, st: Start) -> None:
        """The sender says how the bytes of a file come: appended, or as a delta against our
        copy (for which it needs our signature first)."""
        rec, chan = self.rec, self.chan
        if st.mode == "append":
            rec.submit_open(batch, st.i, "append", st.at)
            return
        sig = await asyncio.to_thread(rec.signature, batch, st.i)
        for piece in sig or []:
            chan.send_all(self.session.signature(piece))
            await chan.drain(1 << 20)
        chan.send(self.session.signature_end(sig is not None))
        await chan.drain()
        rec.submit_open(batch, st.i, "delta" if sig is not None else "full")

    async def _commit(self, batch: Batch, bid: int) -> None:
        await asyncio.to_thread(self.rec.wait_writes)
        done = await asyncio.to_thread(self.rec.commit, batch)
        self.chan.send(self.session.results(bid, done))
        await self.chan.drain()

    async def _fetch(self, ev: Fetch) -> None:
        """The peer takes our version of names whose conflict ``auto`` resolved for us."""
        g, db, names = self.g, self.node.db, ev.names
        if not all(g.matcher.included(n) for n in names):
            raise ProtocolError("bad fetch request")

        def states() -> list[FileState | None]:
            out: list[FileState | None] = []
            for n in names:
                seen = describe(g.paths.local(n), db.local_get(n), time.time_ns())
                out.append(seen.state if seen else None)
            return out

        found = await asyncio.to_thread(states)
        self.chan.send(self.session.files(found))
        await self.chan.drain()
        need = await next_event(self.chan, self.session)
        if not isinstance(need, Need):
            raise ProtocolError(f"unexpected {type(need).__name__}")
        sender = FileSender(self.chan, self.session, db, g.paths)
        for i in need.need:
            await sender.stream(Op("put", names[i], None, found[i]), i)
        # The peer now holds our versions: nothing left to send it for these names.
        await asyncio.to_thread(db.record_sent, self.peer.name,
                                list(zip(names, found, strict=True)))

    async def _list(self, ev: ListRequest) -> None:
        def listed() -> list[tuple[str, FileState]]:
            return sorted(self.node.states(self.g, ev.scopes).items())

        states = await asyncio.to_thread(listed)
        for start in range(0, max(len(states), 1), LIST_CHUNK):
            end = start + LIST_CHUNK >= len(states)
            entries = [[n, st.to_wire()] for n, st in states[start : start + LIST_CHUNK]]
            self.chan.send(self.session.listing(entries, end))
            await self.chan.drain(1 << 20)
            # A chunk is about 10 ms of work here: a turn of the loop that carries the
            # heartbeats after each, not 20,000 files' worth (95 ms) at once.
            await asyncio.sleep(0)


async def handle(node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 cert_fp: str, stats: dict[str, int]) -> None:
    """One incoming connection: authenticate, serve, then run the actions of what changed."""
    chan = Channel(reader, writer)
    keys: dict[str, tuple[bytes, tuple[str, ...]]] = {}
    for g in node.groups:
        try:
            keys[g.group.name] = (g.key, g.group.host_names)
        except ConfigError as e:
            node.out(0, f"ERROR: {e}")
    try:
        peer = await server_handshake(chan, node.me, cert_fp, keys)
    except (AuthError, ProtocolError, ConnectionError, TimeoutError, OSError) as e:
        stats["refused"] = stats.get("refused", 0) + 1
        if BAD_INPUT.admit("sync_handshake", chan.peer_address, time.monotonic()):
            node.out(0, f"ERROR: {e}")  # remote fields in it are escaped (transport)
        await chan.close()
        return
    g = next(x for x in node.groups if x.group.name == peer.group)
    rec = Receiver(node.db, g.matcher, g.paths, g.group, node.me, peer.name, node.ignore,
                   log=lambda m: node.out(0, m))
    stats["sessions"] = stats.get("sessions", 0) + 1
    try:
        n = await asyncio.to_thread(rec.cleanup)
        if n:
            node.out(0, f"removed {n} temp file(s) left by an interrupted transfer")
        await Serving(node, chan, g, peer, rec, stats).run()
    except (ProtocolError, ConnectionError, OSError, TimeoutError, RemoteError) as e:
        stats["errors"] = stats.get("errors", 0) + 1
        node.out(0, f"session from {peer.name} ended: {e}")
    except sqlite3.Error as e:  # its disk full: the pusher saw only "connection closed by peer"
        stats["errors"] = stats.get("errors", 0) + 1
        why = f"state database {node.db.path} on {node.me}: {e}"
        node.out(0, f"session from {peer.name} ended: {why}")
        with contextlib.suppress(Exception):
            chan.send_obj(Kind.ERROR, {"error": why})
            await chan.drain()
        # damaged: set aside and replaced, so that the pusher's retry gets through
        await asyncio.to_thread(node.renew_db, rec.db, e)
    except Exception as e:  # a bug must cost one session, never the server
        stats["errors"] = stats.get("errors", 0) + 1
        node.out(0, f"session from {peer.name} dropped: {type(e).__name__}: {e}")
    finally:
        # In a worker thread, shielded: it also runs to its end when the session task is
        # cancelled (again), and the event loop (heartbeats) never waits on the writer's join
        # or the disk: sessions are ended at a takeover, the worst moment for a stall.
        try:
            problem = await asyncio.shield(asyncio.to_thread(rec.close))
            if problem is not None:
                node.out(0, f"session from {peer.name}: {problem}")
        finally:  # also when cancelled again meanwhile (the close runs on in its thread)
            stats["last_session_frames_sent"] = chan.frames_sent
            account(stats, chan)
            # what a run without BYE committed (a session ended at a takeover) is told too
            _told_overwritten(node, peer.name, rec)
            await chan.close()
    if rec.changed:
        stats["changes_received"] = stats.get("changes_received", 0) + len(rec.changed)
        node.out(1, f"received {len(rec.changed)} change(s) from {peer.name}")
        await node.run_actions(g, rec.changed, receiving=True)


def _cleanup_unless_receiving(db: StateDB) -> int:
    """What killed sessions left, unless another process is receiving into ``db`` now."""
    lock = ReceivingLock(db)
    try:
        return lock.enter()
    finally:
        lock.release()


def _told_overwritten(node: Node, peer: str, rec: Receiver) -> None:
    """Hand the node's hook the names a forced push overwrote in this run (once each)."""
    names, rec.overwritten = rec.overwritten, []
    if names and node.on_overwritten is not None:
        node.on_overwritten(peer, names)


def account(stats: dict[str, int], chan: Channel) -> None:
    """Add a session's bytes so far to the server's counters."""
    stats["bytes_received"] = stats.get("bytes_received", 0) + chan.bytes_received
    stats["bytes_sent"] = stats.get("bytes_sent", 0) + chan.bytes_sent
    chan.bytes_received = chan.bytes_sent = 0


def _port_holder(port: int) -> str | None:
    """The process listening on TCP ``port`` in this network namespace, as ``comm (pid N)``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:  # an fd may close between the listing and the look (the listing's own does)
                if os.readlink(f"/proc/{pid}/fd/{fd}") not in inodes:
                    continue
                with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
                    return f"{fh.read().strip()} (pid {pid})"
            except OSError:
                continue
    return None


def listen_error(host: str | None, port: int, e: OSError) -> str:
    """One line saying why the receiver cannot listen, and for a busy port who holds it."""
    where = f"{host or '*'}:{port}"
    if isinstance(e, socket.gaierror):
        return f"cannot listen on {where}: the name does not resolve ({e.strerror})"
    msg = f"cannot listen on {where}: {e.strerror or e}"
    if e.errno != errno.EADDRINUSE:
        return msg
    holder = _port_holder(port)
    comm = (holder or "").split(" ", 1)[0]
    if comm == "systemd":
        fix = ("Debian's csync2.socket holds it: systemctl disable --now csync2.socket")
    elif comm in ("xinetd", "inetd", "inetutils-inetd"):
        fix = (f"{comm}'s csync2 entry holds it: disable it (/etc/xinetd.d/csync2 or "
               "/etc/inetd.conf) and reload " + comm)
    elif holder:
        fix = f"held by {holder}: stop it, or use -p PORT"
    else:
        fix = ("usually Debian's csync2.socket (systemctl disable --now csync2.socket) or an "
               "xinetd csync2 entry; or use -p PORT")
    return f"{msg} ({fix})"



class SyncServer:
    """The listening side: accepts peers' sessions for this node.

    ``once`` (csync2 ``-iii``): stop listening at the first connection and set ``done`` when
    that session ends.
    """

    def __init__(self, node: Node, once: bool = False) -> None:
        self.node = node
        self.once = once
        self.done = asyncio.Event()
        self.stats: dict[str, int] = {}
        self._server: Listener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._fp = ""
        self._taken = False

    async def _prepare(self) -> ssl.SSLContext:
        ctx, self._fp = await asyncio.to_thread(server_context, self.node.opts.state_dir)
        n = await asyncio.to_thread(_cleanup_unless_receiving, self.node.db)
        if n:
            self.node.out(0, f"removed {n} temp file(s) left by an interrupted transfer")
        return ctx

    async def _on_conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self.once:
            if self._taken:
                w.close()
                return
            self._taken = True
            if self._server is not None:
                self._server.stop_accepting()  # like csync2 -iii: no second connection
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await handle(self.node, r, w, self._fp, self.stats)
        except asyncio.CancelledError:
            pass  # server shutdown; the session cleaned up after itself
        finally:
            if task is not None:
                self._tasks.discard(task)
            if self.once:
                self.done.set()

    async def start(self) -> None:
        """Listen (making the TLS certificate on first use) after removing old temp files.

        A port already in use or an address that does not resolve is a :class:`SyncError`
        with one line saying why (and who holds the port)."""
        host, port = self.node.opts.listen, self.node.opts.port
        try:
            sock = await self._bind(host, port)
        except OSError as e:
            raise SyncError(listen_error(host, port, e)) from e
        # Listening before the certificate and temp-file work: a peer that connects while this
        # receiver is still starting waits in the backlog instead of being refused.
        try:
            ctx = await self._prepare()
            # Our own accept loop: connection limits before authentication (sync/limits.py).
            self._server = Listener(sock, ctx, self._on_conn, self.stats)
        except BaseException:
            sock.close()
            raise

    @staticmethod
    async def _bind(host: str | None, port: int) -> socket.socket:
        """A listening socket on the first address of ``host`` that binds (as csync2 does)."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        err: OSError = OSError(errno.EADDRNOTAVAIL, "no address to listen on")
        for family, kind, proto, _name, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind(addr)
                sock.listen(128)
            except OSError as e:
                sock.close()
                err = e
                continue
            sock.setblocking(False)
            return sock
        raise err

    async def serve_socket(self, sock: socket.socket) -> None:
        """csync2 ``-i`` (inetd mode): serve the one connection already accepted on ``sock``."""
        ctx = await self._prepare()
        self.once = True
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.StreamReaderProtocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(), self._on_conn)

        await loop.connect_accepted_socket(factory, sock, ssl=ctx, ssl_handshake_timeout=20.0)
        await self.done.wait()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def end_sessions(self) -> int:
        """End the sessions in progress (this node took the group over: they are a dead or
        released peer's, possibly half-open after a crash, with an append that would stay
        half-done until their idle timeout); each undoes what it left uncommitted."""
        for t in list(self._tasks):
            t.cancel()
        return len(self._tasks)

    async def close(self) -> None:
        """Stop listening and end the sessions in progress."""
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
