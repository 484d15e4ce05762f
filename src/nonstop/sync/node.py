"""One node's replication engine: check, force, update, compare, and the receiving server.

The CLI (``nonstop sync``) and the daemon's :class:`~nonstop.sync.replicator.Replicator` both
drive this class. Scans and database work run in a worker thread (``asyncio.to_thread``) so the
daemon's event loop, which also carries heartbeats, never waits on a disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial

from nonstop.config.csync2 import DEFAULT_PORT, Csync2Config, Group, load_key
from nonstop.config.errors import ConfigError, Location
from nonstop.logs import BAD_INPUT
from nonstop.sync import actions as act
from nonstop.sync import rdiff
from nonstop.sync.digest import Hasher, blocks_match, resume_point
from nonstop.sync.limits import Listener
from nonstop.sync.patterns import Matcher, PathMap, in_scope, valid_name
from nonstop.sync.plan import Op, batches, plan, plan_forced
from nonstop.sync.protocol import CHUNK, AuthError, Frame, Kind, ProtocolError, encode
from nonstop.sync.protocol import field as pfield
from nonstop.sync.receiver import Batch, Receiver, Result, cleanup_tmp
from nonstop.sync.scan import Seen, describe, scan, scan_loading
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB
from nonstop.sync.transport import (
    Channel,
    Peer,
    RemoteError,
    client_handshake,
    connect,
    server_context,
    server_handshake,
)

Scope = tuple[str, bool]
ALL: list[Scope] = [("/", True)]
Out = Callable[[int, str], None]
MAX_OPS_PER_OFFER = 10_000
WRITE_BACKLOG = 32 << 20  # received bytes the writer thread may lag behind the network
LIST_CHUNK = 2000
# A kept session unused for this long is closed instead of reused.
KEEP_IDLE_S = 30.0
# Below this size a file is sent whole: a signature round trip costs more than the bytes.
DELTA_MIN = 64 * 1024
REFUSED_RETRY_DELAY = 0.1


class SyncError(Exception):
    """A local problem that stops a run (not a per-file result)."""


@dataclass(frozen=True)
class Options:
    """How one node runs: identity, files, network."""

    config: Csync2Config
    me: str
    state_dir: str
    db_path: str | None = None
    root: str = "/"
    port: int = DEFAULT_PORT
    addresses: Mapping[str, str] = field(default_factory=dict)
    listen: str = "0.0.0.0"
    # A cluster peer on the LAN that does not accept a connection within 3 s is down; a
    # takeover must not sit in the master script waiting for it (forced scopes stay pending
    # and are pushed when it returns).
    connect_timeout: float = 3.0
    # How long a refused connection is retried: the CLI waits for a receiver started at the
    # same moment (csync2's test suite does that); the daemon fails at once and retries later.
    refused_retry: float = 0.0


@dataclass
class Report:
    """What one update run did; ``exit_code`` follows csync2 (0 ok, 1 any error or conflict)."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    sent_names: list[str] = field(default_factory=list)
    bytes_sent: int = 0  # frame bytes to the peers (before TLS)
    bytes_received: int = 0

    def count(self, status: str, n: int = 1) -> None:
        self.counts[status] = self.counts.get(status, 0) + n

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0


@dataclass
class _GroupCtx:
    group: Group
    matcher: Matcher
    paths: PathMap
    _key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_key(self.group)
        return self._key


def _quiet(_level: int, _msg: str) -> None:
    return None


_log = logging.getLogger("nonstop.sync")


def log_out(level: int, msg: str) -> None:
    """Output to the ``nonstop.sync`` logger: level 0 (conflicts, errors, overwritten changes)
    as warnings, 1 (progress) as info, 2 and up as debug."""
    if level <= 0:
        _log.warning("%s", msg)
    elif level == 1:
        _log.info("%s", msg)
    else:
        _log.debug("%s", msg)


class Node:
    """The replication engine of one node (``me``) for every group that lists it."""

    def __init__(self, opts: Options, out: Out = _quiet) -> None:
        self.opts = opts
        self.me = opts.me
        self.out = out
        groups = opts.config.groups_for(opts.me)
        if not groups:
            raise ConfigError(Location(opts.config.path),
                              f"host '{opts.me}' is not a member of any group")
        self.groups = [
            _GroupCtx(g, Matcher(g.patterns), PathMap(opts.root, opts.config.prefixes, opts.me))
            for g in groups
        ]
        db_path = opts.db_path or os.path.join(opts.state_dir, f"{opts.me}.db3")
        self.db = StateDB(db_path, timeout=float(opts.config.lock_timeout))
        self.ignore = opts.config.ignore
        # The daemon keeps one session per peer open between runs (no TLS handshake per
        # change); a one-shot `nonstop sync` closes its sessions at the end of the run.
        self.keep_sessions = False
        self._kept: dict[tuple[str, str], tuple[Channel, float]] = {}
        self._closing: set[asyncio.Future[None]] = set()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------------- check (-c)
    def check(self, scopes: list[Scope] | None = None, force_new: bool = False) -> dict[str, int]:
        """Scan ``scopes`` and mark changes dirty for every peer; returns dirty counts per peer."""
        scopes = scopes or ALL
        counts: dict[str, int] = {}
        for g in self.groups:
            seen, cache = scan_loading(g.matcher, g.paths, scopes,
                                       partial(self.db.local_in, scopes), time.time_ns())
            peers = [h.name for h in g.group.peers(self.me)]
            dirty = self.db.record_check(scopes, seen, peers, force_new, old=cache,
                                         owns=self._owns(g))
            for peer, names in dirty.items():
                counts[peer] = counts.get(peer, 0) + len(names)
                for n in names:
                    self.out(2, f"dirty for {peer}: {n}")
        return counts

    def _owns(self, g: _GroupCtx) -> Callable[[str], bool] | None:
        """With several groups, which names are this group's (None: one group owns all)."""
        return g.matcher.included if len(self.groups) > 1 else None

    def _scan(self, g: _GroupCtx, scopes: list[Scope]) -> dict[str, Seen]:
        cache = self.db.local_in(scopes)
        return scan(g.matcher, g.paths, scopes, cache, time.time_ns())

    # ------------------------------------------------------------------------- force (-f)
    def force(self, scopes: list[Scope]) -> None:
        """Make the peers equal to this node within ``scopes`` at the next update.

        Unlike csync2 (which only flags entries already dirty), this checks the scopes now and
        records them, so the next update lists the peer's files there and overwrites or removes
        every difference, whether or not it was ever marked dirty.
        """
        self.check(scopes)
        for g in self.groups:
            peers = [h.name for h in g.group.peers(self.me)]
            for path, rec in scopes:
                self.db.add_forced(peers, path, rec)

    # ------------------------------------------------------------------------- update (-u)
    async def update(self, scopes: list[Scope] | None = None,
                     only: Iterable[str] | None = None) -> Report:
        """Send dirty and forced entries to every peer (or the ``only`` ones; csync2 ``-P``),
        one connection each."""
        report = Report()
        wanted = None if only is None else set(only)
        for g in self.groups:
            me_host = g.group.host(self.me)
            for host in g.group.peers(self.me):
                peer = host.name
                if wanted is not None and peer not in wanted:
                    continue
                forced = [
                    s for s in await asyncio.to_thread(self.db.forced, peer)
                    if scopes is None or any(_overlaps(s, t) for t in scopes)
                ]
                owns = self._owns(g)
                rows = [
                    r for r in await asyncio.to_thread(self.db.dirty, peer)
                    if (scopes is None or any(in_scope(r.name, p, rec) for p, rec in scopes))
                    and (owns is None or owns(r.name))
                ]
                if not forced and not rows:
                    continue
                if me_host is not None and me_host.slave:
                    report.problems.append(f"{self.me} is a slave in '{g.group.name}': not pushing")
                    continue
                await self._push(g, peer, forced, [(r.name, r.forced) for r in rows], report)
        return report

    def _address(self, g: _GroupCtx, peer: str) -> str:
        host = g.group.host(peer)
        via = host.connect_as if host else peer
        return self.opts.addresses.get(peer) or self.opts.addresses.get(via) or via

    async def _open(self, g: _GroupCtx, peer: str) -> Channel:
        addr = self._address(g, peer)
        try:
            # A refused connection is retried for opts.refused_retry seconds (see Options).
            retries = int(self.opts.refused_retry / REFUSED_RETRY_DELAY)
            for attempt in range(retries + 1):
                try:
                    chan = await connect(addr, self.opts.port, self.opts.connect_timeout)
                    break
                except ConnectionRefusedError:
                    if attempt == retries:
                        raise
                    await asyncio.sleep(REFUSED_RETRY_DELAY)
        except (OSError, TimeoutError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or "timeout")
            raise SyncError(f"connection to {peer} ({addr}:{self.opts.port}) failed: {why}") from e
        try:
            await client_handshake(chan, g.key, g.group.name, self.me, peer)
        except (AuthError, ProtocolError, ConnectionError, TimeoutError) as e:
            await chan.close()
            raise SyncError(f"{peer}: {e}") from e
        return chan

    def _reusable(self, g: _GroupCtx, peer: str) -> Channel | None:
        """The open session kept from an earlier run with ``peer``, if it is still alive."""
        kept = self._kept.pop((g.group.name, peer), None)
        if kept is None:
            return None
        chan, since = kept
        if (time.monotonic() - since > KEEP_IDLE_S or chan.reader.at_eof()
                or chan.writer.is_closing()):
            task = asyncio.ensure_future(chan.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            return None
        return chan

    async def close_sessions(self) -> None:
        """Close the sessions kept open between runs (``keep_sessions``)."""
        kept, self._kept = self._kept, {}
        for chan, _since in kept.values():
            with contextlib.suppress(Exception):
                chan.send_obj(Kind.BYE, {})
                await chan.drain()
            await chan.close()
        for t in list(self._closing):
            with contextlib.suppress(Exception):
                await t
        self._closing.clear()

    async def _push(
        self, g: _GroupCtx, peer: str, forced: list[Scope], rows: list[tuple[str, bool]],
        report: Report,
    ) -> None:
        chan = self._reusable(g, peer) if self.keep_sessions else None
        if chan is not None:
            # A kept session the peer dropped since (a restart) fails at once: then once more
            # on a new connection, before anything was recorded as sent.
            trial = Report()
            await self._push_on(chan, g, peer, forced, rows, trial, reused=True)
            if not trial.problems or trial.sent_names or trial.counts:
                _merge(report, trial)
                return
        try:
            chan = await self._open(g, peer)
        except SyncError as e:
            report.problems.append(str(e))
            self.out(0, f"ERROR: {e}")
            return
        self.out(1, f"Connected to {peer} (TLS, group {g.group.name})")
        await self._push_on(chan, g, peer, forced, rows, report)

    async def _push_on(
        self, chan: Channel, g: _GroupCtx, peer: str, forced: list[Scope],
        rows: list[tuple[str, bool]], report: Report, reused: bool = False,
    ) -> None:
        applied: list[str] = []
        keep = False
        try:
            if forced:
                seen = await asyncio.to_thread(self._check_scopes, g, forced)
                remote = await self._list(chan, forced)
                local = {n: s.state for n, s in seen.items()}
                synced = await asyncio.to_thread(self.db.synced_in, peer, forced)
                ops = plan_forced(local, remote, synced, self.ignore)
                equal = [(n, st) for n, st in local.items() if st.same(remote.get(n), self.ignore)]
                await asyncio.to_thread(self.db.record_sent, peer, equal)
                for op in ops:
                    self.out(1, f"forcing {op.kind} {op.name} on {peer}")
                ok = await self._send_ops(chan, g, peer, ops, report, applied)
                covered = [r for r in rows if any(in_scope(r[0], p, rec) for p, rec in forced)]
                await asyncio.to_thread(
                    self.db.record_sent, peer,
                    [(n, local.get(n)) for n, _ in covered if n not in remote and n not in local],
                )
                if ok:
                    await asyncio.to_thread(self.db.clear_forced, peer, forced)
                rows = [r for r in rows if r not in covered]
            if rows:
                ops, settled = await asyncio.to_thread(self._plan, peer, rows)
                if settled:
                    await asyncio.to_thread(self.db.record_sent, peer,
                                            [(n, None) for n in settled])
                await self._send_ops(chan, g, peer, ops, report, applied)
            # BYE ends this run; with keep the peer runs its actions and waits for the next.
            chan.send_obj(Kind.BYE, {"keep": True} if self.keep_sessions else {})
            await chan.drain()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(chan.expect(Kind.BYE), 30.0)
                keep = self.keep_sessions
        except (ProtocolError, ConnectionError, RemoteError, OSError, TimeoutError) as e:
            msg = f"session with {peer} failed: {e}"
            report.problems.append(msg)
            if not reused:
                self.out(0, f"ERROR: {msg}")
        finally:
            report.bytes_sent += chan.bytes_sent
            report.bytes_received += chan.bytes_received
            chan.bytes_sent = chan.bytes_received = 0
            if keep:
                self._kept[(g.group.name, peer)] = (chan, time.monotonic())
            else:
                await chan.close()
        report.sent_names.extend(applied)
        await self._run_actions(g, applied, receiving=False)

    def _check_scopes(self, g: _GroupCtx, scopes: list[Scope]) -> dict[str, Seen]:
        seen = self._scan(g, scopes)
        self.db.record_check(scopes, seen, [h.name for h in g.group.peers(self.me)],
                             owns=self._owns(g))
        return seen

    def _plan(self, peer: str, rows: list[tuple[str, bool]]) -> tuple[list[Op], list[str]]:
        names = [n for n, _ in rows]
        local = {n: s.state for n, s in self.db.local_many(names).items()}
        synced = self.db.synced_for(peer, names)
        pl = plan(rows, local, synced)
        return list(pl.ops), list(pl.settled)

    async def _list(self, chan: Channel, scopes: list[Scope]) -> dict[str, FileState]:
        chan.send_obj(Kind.LIST, {"scopes": [[p, r] for p, r in scopes]})
        await chan.drain()
        out: dict[str, FileState] = {}
        while True:
            obj = (await chan.expect(Kind.LISTING)).obj()
            for item in pfield(obj, "entries", list):
                if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
                    raise ProtocolError("bad listing entry")
                out[item[0]] = FileState.from_wire(item[1])
            if obj.get("end") is True:
                return out

    async def _send_ops(
        self, chan: Channel, g: _GroupCtx, peer: str, ops: list[Op], report: Report,
        applied: list[str],
    ) -> bool:
        """Send operations in pipelined batches.

        Per batch: OFFER, the peer's VERDICT (what it applied at once, which files it needs),
        the needed files back to back, COMMIT. The next batch is offered while the peer still
        installs the previous one; RESULTS come back whenever they are ready.
        """
        inflight: dict[int, tuple[list[Op], dict[int, Result], dict[int, FileState | None]]] = {}
        ok = [True]
        lost: list[str] = []

        async def take(f: Frame) -> None:
            await self._take_results(f.obj(), inflight, peer, report, applied, ok, lost)

        for bid, batch in enumerate(batches(ops)):
            chan.send_obj(Kind.OFFER, {"b": bid, "ops": [op.to_wire() for op in batch]})
            await chan.drain()
            while True:
                f = await chan.expect(Kind.VERDICT, Kind.RESULTS)
                if f.kind is Kind.RESULTS:
                    await take(f)
                    continue
                break
            verdict = f.obj()
            if verdict.get("b") != bid:
                raise ProtocolError("verdict for an unexpected batch")
            results = _results(pfield(verdict, "r", list), len(batch))
            need = pfield(verdict, "need", list)
            if any(type(i) is not int or not 0 <= i < len(batch) for i in need):
                raise ProtocolError("bad need list")
            have = _bases(verdict.get("have", {}), need)
            finals: dict[int, FileState | None] = {}
            for i in need:
                finals[i] = await self._stream(chan, g, batch[i], i, have.get(i), take)
            chan.send_obj(Kind.COMMIT, {"b": bid})
            await chan.drain()
            inflight[bid] = (batch, results, finals)
        while inflight:
            f = await chan.expect(Kind.RESULTS)
            await self._take_results(f.obj(), inflight, peer, report, applied, ok, lost)
        if lost and not await self._fetch(chan, g, peer, lost, report):
            ok[0] = False
        return ok[0]

    async def _fetch(
        self, chan: Channel, g: _GroupCtx, peer: str, names: list[str], report: Report
    ) -> bool:
        """Take the peer's version of ``names`` (conflicts ``auto`` resolved in its favour);
        ours are backed up. Unlike csync2, the losing side converges in the same run."""
        chan.send_obj(Kind.FETCH, {"names": names})
        await chan.drain()
        entries = pfield((await chan.expect(Kind.FILES)).obj(), "entries", list)
        if len(entries) != len(names):
            raise ProtocolError("file list does not match the request")
        ops: list[Op] = []
        for name, item in zip(names, entries, strict=True):
            if not isinstance(item, list) or len(item) != 2 or item[0] != name:
                raise ProtocolError("bad file list entry")
            state = None if item[1] is None else FileState.from_wire(item[1])
            ops.append(Op("put" if state else "del", name, None, state, True))
        rec = Receiver(self.db, g.matcher, g.paths, g.group, self.me, peer, self.ignore,
                       log=lambda m: self.out(1, m))
        try:
            results, need, batch = await asyncio.to_thread(rec.evaluate, ops)
            chan.send_obj(Kind.NEED, {"need": need})
            await chan.drain()
            for i in need:
                await self._receive_file(chan, rec, batch, i)
            await asyncio.to_thread(rec.wait_writes)
            done = await asyncio.to_thread(rec.commit, batch)
        finally:
            rec.close()
        all_ok = True
        for res in [r for r in results if r is not None] + done:
            name = ops[res.index].name
            if res.applied:
                report.count("pulled")
                self.out(0, f"{name}: now {peer}'s version"
                         + (f" ({res.message})" if res.message else ""))
            else:
                all_ok = False
                report.problems.append(f"{name}: could not take {peer}'s version: "
                                       f"{res.message or res.status}")
                self.out(0, report.problems[-1])
        if rec.changed:
            await self._run_actions(g, rec.changed, receiving=True)
        return all_ok

    async def _take_results(
        self, obj: dict[str, object],
        inflight: dict[int, tuple[list[Op], dict[int, Result], dict[int, FileState | None]]],
        peer: str, report: Report, applied: list[str], ok: list[bool], lost: list[str],
    ) -> None:
        bid = obj.get("b")
        if type(bid) is not int or bid not in inflight:
            raise ProtocolError("results for an unknown batch")
        batch, results, finals = inflight.pop(bid)
        results.update(_results(pfield(obj, "r", list), len(batch)))
        records: list[tuple[str, FileState | None]] = []
        for i, op in enumerate(batch):
            res = results.get(i)
            if res is None:
                res = Result(i, "error", f"{op.name}: no result from {peer}")
            report.count(res.status)
            if res.applied:
                records.append((op.name, finals.get(i, op.new) if i in finals else op.new))
                if op.kind == "mv":
                    records.append((op.src, None))
                    applied.append(op.src)
                applied.append(op.name)
                if res.status in ("forced", "auto"):
                    self.out(0, f"{peer}: {res.status}: {res.message}")
                else:
                    verb = {"put": "updated", "del": "deleted", "mv": f"renamed from {op.src}"}
                    self.out(1, f"{peer}: {op.name}: {verb[op.kind]} ({res.status})"
                             + (f": {res.message}" if res.message else ""))
            elif res.status == "lost" and op.kind != "mv":
                # `auto` chose the peer's version: fetched in this session, below.
                lost.append(op.name)
                self.out(0, f"{peer}: {res.message}; taking {peer}'s version")
            else:
                ok[0] = False
                report.problems.append(f"{peer}: {res.message or op.name}")
                self.out(0, f"{peer}: {res.status}: {res.message or op.name}")
        await asyncio.to_thread(self.db.record_sent, peer, records)

    async def _stream(
        self, chan: Channel, g: _GroupCtx, op: Op, index: int, have: Basis | None = None,
        take: Callable[[Frame], Awaitable[None]] | None = None,
    ) -> FileState | None:
        """Send one file's bytes; returns the state actually sent (None if it vanished).

        Never more than the size the scan saw: a file that keeps growing is sent as far as it
        was described, the rest is the next run's work. With ``have`` (the peer's copy of the
        file) only the new bytes go when the file grew by appending, and an rsync delta when it
        changed otherwise.
        """
        local = g.paths.local(op.name)
        try:
            fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            fd = -1
        final: FileState | None = None
        try:
            st = os.fstat(fd) if fd >= 0 else None
            if st is not None and stat.S_ISREG(st.st_mode):
                new = op.new
                limit = min(st.st_size, new.size) if new is not None else st.st_size
                final = await self._send_content(chan, g, op, index, fd, st, limit, have, take)
        except OSError:
            final = None
        finally:
            if fd >= 0:
                os.close(fd)
        chan.send_obj(Kind.EOF, {"i": index, "s": final.to_wire() if final else None})
        await chan.drain(1 << 20)
        return final

    async def _send_content(
        self, chan: Channel, g: _GroupCtx, op: Op, index: int, fd: int, st: os.stat_result,
        limit: int, have: Basis | None, take: Callable[[Frame], Awaitable[None]] | None,
    ) -> FileState | None:
        new = op.new
        h: Hasher | None = None
        start = 0
        delta: rdiff.Delta | None = None
        if have is not None and new is not None:
            seen = await asyncio.to_thread(self.db.local_get, op.name)
            blocks = (seen.blocks if seen is not None and seen.state.digest == new.digest
                      and blocks_match(seen.blocks, new.size, new.digest) else b"")
            if have.append and blocks and have.size <= limit:
                h = await asyncio.to_thread(_prefix_hasher, fd, blocks, have)
                if h is not None:
                    start = have.size
                    chan.send_obj(Kind.START, {"i": index, "m": "append", "at": start})
            if (h is None and rdiff.available() and have.size >= DELTA_MIN
                    and limit >= DELTA_MIN and take is not None):
                delta = await self._delta_start(chan, index, have, take)
        # A whole file unchanged since the scan hashed it is not hashed again: a write in the
        # same timestamp tick would still be caught, as the receiver checks the digest.
        unchanged = (h is None and delta is None and new is not None and new.digest != ""
                     and st.st_size == new.size and st.st_mtime_ns == new.mtime_ns)
        if h is None:
            h = Hasher()
        sent = start
        hasher = None if unchanged else h
        # A file of one chunk is read right here; a bigger one chunk by chunk in a worker thread,
        # so the event loop (the heartbeats) never waits on a long read from a cold disk.
        big = limit - start > CHUNK
        try:
            pos = start
            while pos < limit:
                n = min(CHUNK, limit - pos)
                chunk = (await asyncio.to_thread(_read_chunk, fd, n, pos, hasher) if big
                         else _read_chunk(fd, n, pos, hasher))
                if not chunk:
                    break
                pos += len(chunk)
                out = chunk if delta is None else await asyncio.to_thread(delta.feed, chunk)
                _send_data(chan, out)
                await chan.drain(1 << 20)
            if delta is not None:
                _send_data(chan, await asyncio.to_thread(delta.feed, b"", True))
            sent = pos
        finally:
            if delta is not None:
                delta.close()
        if unchanged:
            # Shorter now than at the scan: what went is unknown, so the file is not installed.
            return new if new is not None and sent == new.size else None
        digest = h.hexdigest()
        if new is not None and digest == new.digest and h.size == new.size:
            return new
        return replace(FileState.from_stat(st, digest), size=h.size)

    async def _delta_start(
        self, chan: Channel, index: int, have: Basis, take: Callable[[Frame], Awaitable[None]],
    ) -> rdiff.Delta | None:
        """Ask for the peer's signature of its copy; None if it has none to give (then the
        file goes whole)."""
        chan.send_obj(Kind.START, {"i": index, "m": "delta"})
        await chan.drain()
        cap = rdiff.max_signature_size(have.size)
        got = 0
        delta = rdiff.Delta()
        try:
            while True:
                f = await chan.expect(Kind.SIG, Kind.SIGEND, Kind.RESULTS)
                if f.kind is Kind.RESULTS:
                    await take(f)
                    continue
                if f.kind is Kind.SIG:
                    got += len(f.payload)
                    if got > cap:
                        raise ProtocolError("signature larger than the file allows")
                    await asyncio.to_thread(delta.signature, f.payload)
                    continue
                obj = f.obj()
                if obj.get("i") != index:
                    raise ProtocolError("signature for an unexpected file")
                if obj.get("ok") is not True:
                    delta.close()
                    return None
                await asyncio.to_thread(delta.signature, b"", True)
                return delta
        except rdiff.RdiffError as e:
            delta.close()
            raise ProtocolError(f"bad signature: {e}") from None
        except BaseException:
            delta.close()
            raise

    # ------------------------------------------------------------------------- compare (-T)
    async def compare(self, scopes: list[Scope] | None = None,
                      peer: str | None = None) -> tuple[list[str], list[str]]:
        """Compare disks (not databases) with each peer (or only ``peer``):
        ``X|L|R  me  peer  name`` lines."""
        scopes = scopes or ALL
        lines: list[str] = []
        problems: list[str] = []
        for g in self.groups:
            if peer is not None and g.group.host(peer) is None:
                continue
            scanned = await asyncio.to_thread(self._scan, g, scopes)
            local = {n: s.state for n, s in scanned.items()}
            for host in g.group.peers(self.me):
                if peer is not None and host.name != peer:
                    continue
                try:
                    chan = await self._open(g, host.name)
                except SyncError as e:
                    problems.append(str(e))
                    continue
                try:
                    remote = await self._list(chan, scopes)
                    chan.send_obj(Kind.BYE, {})
                    await chan.drain()
                finally:
                    await chan.close()
                for n in sorted(set(local) | set(remote)):
                    a, b = local.get(n), remote.get(n)
                    flag = "L" if b is None else "R" if a is None else "X"
                    if a is None or b is None or not a.same(b, self.ignore):
                        lines.append(f"{flag}\t{self.me}\t{host.name}\t{n}")
        return lines, problems

    # ------------------------------------------------------------------------- -I / -m / -L
    def check_init(self, scopes: list[Scope] | None = None) -> int:
        """``-cI``: scan and record this node's files without marking anything dirty.

        Dirty state is the difference from what each peer holds as of the last sync, so a later
        check still marks every file a peer was never synced with; returns the names recorded.
        """
        scopes = scopes or ALL
        n = 0
        for g in self.groups:
            cache = self.db.local_in(scopes)
            seen = scan(g.matcher, g.paths, scopes, cache, time.time_ns())
            self.db.record_check(scopes, seen, [], old=cache, owns=self._owns(g))
            n += len(seen)
        return n

    def mark(self, scopes: list[Scope]) -> list[str]:
        """``-m``: mark names (``-r``: and the recorded names below them) dirty for every peer."""
        marked: set[str] = set()
        for g in self.groups:
            names = {p for p, _ in scopes if g.matcher.included(p)}
            names |= {n for n in self.db.local_in(scopes) if g.matcher.included(n)}
            for h in g.group.peers(self.me):
                self.db.mark_dirty(h.name, sorted(names))
            marked |= names
        return sorted(marked)

    def mark_differences(self, lines: Iterable[str], removals: bool, straight: bool) -> None:
        """``-TI`` (``-X``, ``-U``): turn ``-T`` lines into pending work. ``X``/``L``: mark the
        name dirty; ``R`` with ``removals``: a forced scope for the name, so the next update
        deletes what only the peer has. For every peer of the name's groups, or (``straight``)
        only the compared one."""
        rows = [line.split("\t", 3) for line in lines]
        # -T scans the disk: record what it saw here, so the update has a state to send
        here = [(name, False) for flag, _me, _peer, name in rows if flag != "R"]
        if here:
            self.check_init(here)
        for flag, _me, peer, name in rows:
            targets = {peer} if straight else {
                h.name for g in self.groups if g.matcher.included(name)
                for h in g.group.peers(self.me)}
            if flag in ("X", "L"):
                for t in sorted(targets):
                    self.db.mark_dirty(t, [name])
            elif flag == "R" and removals:
                self.db.add_forced(sorted(targets), name, False)

    def compare_mode_names(self, scopes: list[Scope], only: Iterable[str] | None = None
                           ) -> list[str]:
        """``-o``: the names a check of ``scopes`` would look at in compare mode (the groups'
        ``compare`` patterns count as includes; ``only``: groups shared with these peers),
        without recording anything."""
        wanted = None if only is None else set(only)
        names: set[str] = set()
        for g in self.groups:
            if wanted is not None and not wanted & {h.name for h in g.group.peers(self.me)}:
                continue
            m = Matcher((*g.group.patterns, *g.group.compare))
            names |= set(scan(m, g.paths, scopes, self.db.local_in(scopes), time.time_ns()))
        return sorted(names)

    def relevant_dirs(self, scopes: list[Scope] | None = None) -> list[str]:
        """``-cW FD``: the local directories that hold (or are) included files under ``scopes``,
        deepest first, as csync2 writes them for an inotify helper."""
        dirs: set[str] = set()
        for g in self.groups:
            for name, seen in self.db.local_in(scopes or ALL).items():
                if not g.matcher.included(name):
                    continue
                parent = name.rsplit("/", 1)[0]
                if seen.state.kind == "dir":
                    dirs.add(g.paths.local(name))
                if parent and g.matcher.included(parent):
                    dirs.add(g.paths.local(parent))
        return sorted(dirs, reverse=True)

    def file_lines(self, peer: str | None = None) -> list[str]:
        """``-L`` (``-S me peer``): ``checktxt<TAB>name`` per recorded file that a group (shared
        with ``peer``) still includes, in csync2's checktxt form plus the content digest."""
        lines = []
        groups = [g for g in self.groups if peer is None or g.group.host(peer) is not None]
        for name, seen in sorted(self.db.local_all().items()):
            if not any(g.matcher.included(name) for g in groups):
                continue
            st = seen.state
            kind_bits = {"reg": 0o100000, "dir": 0o040000, "lnk": 0o120000, "fifo": 0o010000,
                         "chr": 0o020000, "blk": 0o060000}.get(st.kind, 0)
            txt = "v1"
            if st.kind != "dir":
                txt += f":mtime={st.mtime_ns // 1_000_000_000}"
            txt += f":mode={st.mode | kind_bits}:uid={st.uid}:gid={st.gid}:type={st.kind}"
            if st.kind == "reg":
                txt += f":size={st.size}:digest={st.digest}"
            elif st.kind == "lnk":
                txt += f":target={st.target}"
            elif st.kind in ("chr", "blk"):
                txt += f":dev={st.rdev}"
            lines.append(f"{txt}\t{name}")
        return lines

    def dry_run_lines(self, scopes: list[Scope] | None = None,
                      only: Iterable[str] | None = None) -> list[str]:
        """``-ud``: what an update would do, in csync2's dry-run form, without connecting:
        ``?M: peer name`` (would send), ``?D: peer name`` (would delete), ``!M: peer name``
        (forced)."""
        wanted = None if only is None else set(only)
        lines: list[str] = []
        for g in self.groups:
            for h in g.group.peers(self.me):
                if wanted is not None and h.name not in wanted:
                    continue
                rows = [(r.name, r.forced) for r in self.db.dirty(h.name)
                        if scopes is None or any(in_scope(r.name, p, rec) for p, rec in scopes)]
                ops, _settled = self._plan(h.name, rows)
                for op in ops:
                    if op.kind == "mv":
                        lines.append(f"?D: {h.name:<15} {op.src}")
                    tag = "!M" if op.forced else "?D" if op.kind == "del" else "?M"
                    lines.append(f"{tag}: {h.name:<15} {op.name}")
                for path, rec in self.db.forced(h.name):
                    if scopes is None or any(_overlaps((path, rec), t) for t in scopes):
                        lines.append(f"!M: {h.name:<15} {path}{'/' if rec else ''} "
                                     "(pending forced sync: the peer is made equal here)")
        return lines

    # ------------------------------------------------------------------------- -M / -R
    def dirty_lines(self) -> list[str]:
        """``-M``: ``force|chary  me  peer  name`` per dirty entry and forced scope."""
        lines = [
            f"{'force' if r.forced else 'chary'}\t{self.me}\t{r.peer}\t{r.name}"
            for r in self.db.dirty()
        ]
        for g in self.groups:
            for h in g.group.peers(self.me):
                for path, rec in self.db.forced(h.name):
                    lines.append(f"force\t{self.me}\t{h.name}\t{path}{'/' if rec else ''}"
                                 " (pending forced sync)")
        return lines

    def remove_stale(self) -> list[str]:
        """``-R``: forget database entries the configuration no longer matches."""
        stale = sorted(
            n for n in self.db.names() if not any(g.matcher.included(n) for g in self.groups)
        )
        self.db.remove_names(stale)
        return stale

    async def _run_actions(self, g: _GroupCtx, names: Iterable[str], receiving: bool) -> None:
        for item in act.due(g.group.actions, names, receiving=receiving):
            try:
                rc = await act.run(item)
            except OSError as e:
                self.out(0, f"action {item.command!r} failed to start: {e}")
                continue
            self.out(1, f"action {item.command!r} for {len(item.files)} file(s) exited {rc}")

    # ------------------------------------------------------------------------- server side
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     cert_fp: str, stats: dict[str, int]) -> None:
        """One incoming session."""
        chan = Channel(reader, writer)
        keys: dict[str, tuple[bytes, tuple[str, ...]]] = {}
        for g in self.groups:
            try:
                keys[g.group.name] = (g.key, g.group.host_names)
            except ConfigError as e:
                self.out(0, f"ERROR: {e}")
        try:
            peer = await server_handshake(chan, self.me, cert_fp, keys)
        except (AuthError, ProtocolError, ConnectionError, TimeoutError, OSError) as e:
            stats["refused"] = stats.get("refused", 0) + 1
            if BAD_INPUT.admit("sync_handshake", chan.peer_address, time.monotonic()):
                self.out(0, f"ERROR: {e}")  # remote fields in it are escaped (transport)
            await chan.close()
            return
        g = next(x for x in self.groups if x.group.name == peer.group)
        rec = Receiver(self.db, g.matcher, g.paths, g.group, self.me, peer.name, self.ignore,
                       log=lambda m: self.out(0, m))
        stats["sessions"] = stats.get("sessions", 0) + 1
        try:
            n = await asyncio.to_thread(rec.cleanup)
            if n:
                self.out(0, f"removed {n} temp file(s) left by an interrupted transfer")
            await self._serve(chan, g, peer, rec, stats)
        except (ProtocolError, ConnectionError, OSError, TimeoutError, RemoteError) as e:
            stats["errors"] = stats.get("errors", 0) + 1
            self.out(0, f"session from {peer.name} ended: {e}")
        except Exception as e:  # a bug must cost one session, never the server
            stats["errors"] = stats.get("errors", 0) + 1
            self.out(0, f"session from {peer.name} dropped: {type(e).__name__}: {e}")
        finally:
            # Synchronous on purpose: it must also run when the session task is cancelled.
            rec.close()
            stats["last_session_frames_sent"] = chan.frames_sent
            _account(stats, chan)
            await chan.close()
        if rec.changed:
            self.out(1, f"received {len(rec.changed)} change(s) from {peer.name}")
            await self._run_actions(g, rec.changed, receiving=True)

    async def _serve(self, chan: Channel, g: _GroupCtx, peer: Peer, rec: Receiver,
                     stats: dict[str, int]) -> None:
        committing: asyncio.Task[None] | None = None

        async def settle() -> None:
            nonlocal committing
            if committing is not None:
                task, committing = committing, None
                await task

        try:
            while True:
                f = await chan.expect(Kind.OFFER, Kind.LIST, Kind.BYE, Kind.FETCH)
                if f.kind is Kind.BYE:
                    await settle()
                    chan.send_obj(Kind.BYE, {})
                    await chan.drain()
                    if f.obj().get("keep") is not True:
                        return
                    _account(stats, chan)
                    # The end of one run in a kept session: its actions run now.
                    changed, rec.changed = rec.changed, []
                    if changed:
                        self.out(1, f"received {len(changed)} change(s) from {peer.name}")
                        await self._run_actions(g, changed, receiving=True)
                    continue
                if f.kind is Kind.LIST:
                    await settle()
                    await self._serve_list(chan, g, f.obj())
                    continue
                if f.kind is Kind.FETCH:
                    await settle()
                    await self._serve_fetch(chan, g, peer, f.obj())
                    continue
                obj = f.obj()
                bid = pfield(obj, "b", int)
                raw = pfield(obj, "ops", list)
                if len(raw) > MAX_OPS_PER_OFFER:
                    raise ProtocolError("too many operations in one offer")
                ops = [Op.from_wire(x) for x in raw]
                results, need, batch = await asyncio.to_thread(rec.evaluate, ops)
                have = {str(i): b for i in need if (b := rec.basis(batch, i)) is not None}
                chan.send_obj(Kind.VERDICT, {
                    "b": bid, "r": [r.to_wire() for r in results if r is not None], "need": need,
                    "have": have,
                })
                await chan.drain()
                for i in need:
                    await self._receive_file(chan, rec, batch, i)
                if (await chan.expect(Kind.COMMIT)).obj().get("b") != bid:
                    raise ProtocolError("commit for an unexpected batch")
                # One batch installs in the background while the next one arrives.
                await settle()
                committing = asyncio.create_task(self._commit(chan, rec, batch, bid))
        finally:
            if committing is not None:
                with contextlib.suppress(Exception):
                    await committing

    async def _receive_file(self, chan: Channel, rec: Receiver, batch: Batch, i: int) -> None:
        d = await chan.expect(Kind.START, Kind.DATA, Kind.EOF)
        if d.kind is Kind.START:
            await self._start_file(chan, rec, batch, i, d.obj())
            d = await chan.expect(Kind.DATA, Kind.EOF)
        else:
            rec.submit_open(batch, i)
        while d.kind is Kind.DATA:
            rec.submit_write(batch, i, d.payload)
            if rec.queued_bytes > WRITE_BACKLOG:
                await asyncio.to_thread(rec.wait_writes)
            d = await chan.expect(Kind.DATA, Kind.EOF)
        eof = d.obj()
        if eof.get("i") != i:
            raise ProtocolError("data for an unexpected file")
        raw_state = eof.get("s")
        if raw_state is None:
            rec.submit_end(batch, i, FileState("reg", 0, 0, 0, -1))
        else:
            rec.submit_end(batch, i, FileState.from_wire(raw_state))

    async def _start_file(self, chan: Channel, rec: Receiver, batch: Batch, i: int,
                          obj: dict[str, object]) -> None:
        """The sender says how the bytes of file ``i`` come: appended, or as a delta against
        our copy (for which it needs our signature first)."""
        if obj.get("i") != i:
            raise ProtocolError("start of an unexpected file")
        mode = obj.get("m")
        if mode == "append":
            rec.submit_open(batch, i, "append", pfield(obj, "at", int))
            return
        if mode != "delta":
            raise ProtocolError("unknown transfer mode")
        sig = await asyncio.to_thread(rec.signature, batch, i)
        for piece in sig or []:
            for at in range(0, len(piece), CHUNK):
                chan.send(encode(Kind.SIG, piece[at : at + CHUNK]))
            await chan.drain(1 << 20)
        chan.send_obj(Kind.SIGEND, {"i": i, "ok": sig is not None})
        await chan.drain()
        rec.submit_open(batch, i, "delta" if sig is not None else "full")

    async def _commit(self, chan: Channel, rec: Receiver, batch: Batch, bid: int) -> None:
        await asyncio.to_thread(rec.wait_writes)
        done = await asyncio.to_thread(rec.commit, batch)
        chan.send_obj(Kind.RESULTS, {"b": bid, "r": [r.to_wire() for r in done]})
        await chan.drain()

    async def _serve_fetch(self, chan: Channel, g: _GroupCtx, peer: Peer,
                           obj: dict[str, object]) -> None:
        """The peer takes our version of names whose conflict ``auto`` resolved for us."""
        names = pfield(obj, "names", list)
        if len(names) > MAX_OPS_PER_OFFER or not all(
            isinstance(n, str) and valid_name(n) and g.matcher.included(n) for n in names
        ):
            raise ProtocolError("bad fetch request")

        def states() -> list[FileState | None]:
            out: list[FileState | None] = []
            for n in names:
                seen = describe(g.paths.local(n), self.db.local_get(n), time.time_ns())
                out.append(seen.state if seen else None)
            return out

        found = await asyncio.to_thread(states)
        chan.send_obj(Kind.FILES, {"entries": [[n, s.to_wire() if s else None]
                                               for n, s in zip(names, found, strict=True)]})
        await chan.drain()
        need = pfield((await chan.expect(Kind.NEED)).obj(), "need", list)
        if any(type(i) is not int or not 0 <= i < len(names) or found[i] is None
               or found[i].kind != "reg" for i in need):  # type: ignore[union-attr]
            raise ProtocolError("bad need list")
        for i in need:
            await self._stream(chan, g, Op("put", names[i], None, found[i]), i)
        # The peer now holds our versions: nothing left to send it for these names.
        await asyncio.to_thread(self.db.record_sent, peer.name,
                                list(zip(names, found, strict=True)))

    async def _serve_list(self, chan: Channel, g: _GroupCtx, obj: dict[str, object]) -> None:
        scopes: list[Scope] = []
        for item in pfield(obj, "scopes", list):
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                    or not isinstance(item[1], bool) or not valid_name(item[0])):
                raise ProtocolError("bad scope")
            scopes.append((item[0], item[1]))
        seen = await asyncio.to_thread(self._scan, g, scopes)
        entries = [[n, s.state.to_wire()] for n, s in sorted(seen.items())]
        for start in range(0, max(len(entries), 1), LIST_CHUNK):
            chunk = entries[start : start + LIST_CHUNK]
            end = start + LIST_CHUNK >= len(entries)
            chan.send_obj(Kind.LISTING, {"entries": chunk, "end": end})
            await chan.drain(1 << 20)

    def cleanup_tmp(self) -> int:
        """Remove temp files an interrupted receive left behind."""
        return cleanup_tmp(self.db)


def open_node(
    config_path: str,
    me: str,
    state_dir: str,
    *,
    root: str = "/",
    port: int = DEFAULT_PORT,
    addresses: Mapping[str, str] | None = None,
    listen: str = "0.0.0.0",
    out: Out = log_out,
) -> Node:
    """Read csync2.cfg and open ``me``'s replication engine (ConfigError names file:line).

    Messages go to the ``nonstop.sync`` logger unless ``out`` is given.
    """
    from nonstop.config.csync2 import load_csync2

    cfg = load_csync2(config_path)
    for g in cfg.groups_for(me):
        load_key(g)  # a bad key is a config error now, not at the first connection
    return Node(Options(cfg, me, state_dir, None, root, port, dict(addresses or {}), listen), out)


def _account(stats: dict[str, int], chan: Channel) -> None:
    """Add a session's bytes so far to the server's counters."""
    stats["bytes_received"] = stats.get("bytes_received", 0) + chan.bytes_received
    stats["bytes_sent"] = stats.get("bytes_sent", 0) + chan.bytes_sent
    chan.bytes_received = chan.bytes_sent = 0


def _merge(into: Report, run: Report) -> None:
    for k, v in run.counts.items():
        into.count(k, v)
    into.problems += run.problems
    into.sent_names += run.sent_names
    into.bytes_sent += run.bytes_sent
    into.bytes_received += run.bytes_received


@dataclass(frozen=True)
class Basis:
    """The receiver's copy of a file it needs: what a delta or an append can build on."""

    size: int
    digest: str
    append: bool


def _bases(raw: object, need: list[int]) -> dict[int, Basis]:
    """The ``have`` map of a verdict (bad input is ProtocolError)."""
    if not isinstance(raw, dict):
        raise ProtocolError("bad basis map")
    out: dict[int, Basis] = {}
    for key, item in raw.items():
        if not isinstance(key, str) or not key.isdigit() or int(key) not in need:
            raise ProtocolError("basis for a file not needed")
        if not isinstance(item, dict):
            raise ProtocolError("bad basis")
        out[int(key)] = Basis(pfield(item, "size", int), pfield(item, "digest", str),
                              pfield(item, "append", bool))
    return out


def _prefix_hasher(fd: int, blocks: bytes, have: Basis) -> Hasher | None:
    """A hasher over our file's first ``have.size`` bytes if they are what the peer holds
    (its digest matches): then only the bytes after them need to go. Reads at most one block;
    the digests of the blocks before it come from the scan."""
    keep, offset = resume_point(blocks, have.size)
    h = Hasher(keep, offset)
    if h.feed_fd(fd, offset, have.size) != have.size - offset:
        return None
    return h if h.hexdigest() == have.digest else None


def _read_chunk(fd: int, n: int, pos: int, h: Hasher | None) -> bytes:
    """``n`` bytes of an open file at ``pos``, added to ``h`` if given."""
    chunk = os.pread(fd, n, pos)
    if h is not None:
        h.update(chunk)
    return chunk


def _send_data(chan: Channel, data: bytes) -> None:
    for i in range(0, len(data), CHUNK):
        chan.send(encode(Kind.DATA, data[i : i + CHUNK]))


def _overlaps(a: Scope, b: Scope) -> bool:
    return in_scope(a[0], b[0], b[1]) or in_scope(b[0], a[0], a[1])


def _results(raw: list[object], n: int) -> dict[int, Result]:
    out: dict[int, Result] = {}
    for item in raw:
        if (not isinstance(item, list) or len(item) != 3 or type(item[0]) is not int
                or not isinstance(item[1], str) or not isinstance(item[2], str)
                or not 0 <= item[0] < n):
            raise ProtocolError("bad result")
        out[item[0]] = Result(item[0], item[1], item[2])
    return out


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
        n = await asyncio.to_thread(self.node.cleanup_tmp)
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
            await self.node.handle(r, w, self._fp, self.stats)
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

    async def close(self) -> None:
        """Stop listening and end the sessions in progress."""
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
