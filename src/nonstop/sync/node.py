"""One node's replication engine: check, force, update, compare, and the receiving server.

The CLI (``nonstop sync``) and the daemon's :class:`~nonstop.sync.replicator.Replicator` both
drive this class. Scans and database work run in a worker thread (``asyncio.to_thread``) so the
daemon's event loop, which also carries heartbeats, never waits on a disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from nonstop.config.csync2 import DEFAULT_PORT, Csync2Config, Group, load_key
from nonstop.config.errors import ConfigError, Location
from nonstop.logs import BAD_INPUT
from nonstop.sync import actions as act
from nonstop.sync.limits import Listener, listen
from nonstop.sync.patterns import Matcher, PathMap, in_scope, valid_name
from nonstop.sync.plan import Op, batches, plan, plan_forced
from nonstop.sync.protocol import CHUNK, AuthError, Kind, ProtocolError, encode
from nonstop.sync.protocol import field as pfield
from nonstop.sync.receiver import Batch, Receiver, Result, cleanup_tmp
from nonstop.sync.scan import Seen, describe, scan
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


@dataclass
class Report:
    """What one update run did; ``exit_code`` follows csync2 (0 ok, 1 any error or conflict)."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    sent_names: list[str] = field(default_factory=list)

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

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------------- check (-c)
    def check(self, scopes: list[Scope] | None = None, force_new: bool = False) -> dict[str, int]:
        """Scan ``scopes`` and mark changes dirty for every peer; returns dirty counts per peer."""
        scopes = scopes or ALL
        counts: dict[str, int] = {}
        for g in self.groups:
            cache = self.db.local_in(scopes)
            seen = scan(g.matcher, g.paths, scopes, cache, time.time_ns())
            peers = [h.name for h in g.group.peers(self.me)]
            dirty = self.db.record_check(scopes, seen, peers, force_new, old=cache)
            for peer, names in dirty.items():
                counts[peer] = counts.get(peer, 0) + len(names)
                for n in names:
                    self.out(2, f"dirty for {peer}: {n}")
        return counts

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
    async def update(self, scopes: list[Scope] | None = None) -> Report:
        """Send dirty and forced entries to every peer (one connection each)."""
        report = Report()
        for g in self.groups:
            me_host = g.group.host(self.me)
            for host in g.group.peers(self.me):
                peer = host.name
                forced = [
                    s for s in await asyncio.to_thread(self.db.forced, peer)
                    if scopes is None or any(_overlaps(s, t) for t in scopes)
                ]
                rows = [
                    r for r in await asyncio.to_thread(self.db.dirty, peer)
                    if scopes is None or any(in_scope(r.name, p, rec) for p, rec in scopes)
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
            chan = await connect(addr, self.opts.port, self.opts.connect_timeout)
        except (OSError, TimeoutError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or "timeout")
            raise SyncError(f"connection to {peer} ({addr}:{self.opts.port}) failed: {why}") from e
        try:
            await client_handshake(chan, g.key, g.group.name, self.me, peer)
        except (AuthError, ProtocolError, ConnectionError, TimeoutError) as e:
            await chan.close()
            raise SyncError(f"{peer}: {e}") from e
        return chan

    async def _push(
        self, g: _GroupCtx, peer: str, forced: list[Scope], rows: list[tuple[str, bool]],
        report: Report,
    ) -> None:
        try:
            chan = await self._open(g, peer)
        except SyncError as e:
            report.problems.append(str(e))
            self.out(0, f"ERROR: {e}")
            return
        applied: list[str] = []
        try:
            self.out(1, f"Connected to {peer} (TLS, group {g.group.name})")
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
            chan.send_obj(Kind.BYE, {})
            await chan.drain()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(chan.expect(Kind.BYE), 30.0)
        except (ProtocolError, ConnectionError, RemoteError, OSError, TimeoutError) as e:
            msg = f"session with {peer} failed: {e}"
            report.problems.append(msg)
            self.out(0, f"ERROR: {msg}")
        finally:
            await chan.close()
        report.sent_names.extend(applied)
        await self._run_actions(g, applied, receiving=False)

    def _check_scopes(self, g: _GroupCtx, scopes: list[Scope]) -> dict[str, Seen]:
        seen = self._scan(g, scopes)
        self.db.record_check(scopes, seen, [h.name for h in g.group.peers(self.me)])
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
        for bid, batch in enumerate(batches(ops)):
            chan.send_obj(Kind.OFFER, {"b": bid, "ops": [op.to_wire() for op in batch]})
            await chan.drain()
            while True:
                f = await chan.expect(Kind.VERDICT, Kind.RESULTS)
                if f.kind is Kind.RESULTS:
                    await self._take_results(f.obj(), inflight, peer, report, applied, ok, lost)
                    continue
                break
            verdict = f.obj()
            if verdict.get("b") != bid:
                raise ProtocolError("verdict for an unexpected batch")
            results = _results(pfield(verdict, "r", list), len(batch))
            need = pfield(verdict, "need", list)
            if any(type(i) is not int or not 0 <= i < len(batch) for i in need):
                raise ProtocolError("bad need list")
            finals: dict[int, FileState | None] = {}
            for i in need:
                finals[i] = await self._stream(chan, g, batch[i], i)
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

    async def _stream(self, chan: Channel, g: _GroupCtx, op: Op, index: int) -> FileState | None:
        """Send one file's bytes; returns the state actually sent (None if it vanished)."""
        local = g.paths.local(op.name)
        final: FileState | None = None
        try:
            with open(local, "rb", buffering=0) as fh:
                st = os.fstat(fh.fileno())
                new = op.new
                # Unchanged since the scan hashed it: no second hash here. A write in the same
                # timestamp tick would still be caught: the receiver checks the digest.
                unchanged = (new is not None and new.digest != "" and st.st_size == new.size
                             and st.st_mtime_ns == new.mtime_ns)
                h = None if unchanged else hashlib.blake2b(digest_size=20)
                while chunk := fh.read(CHUNK):
                    if h is not None:
                        h.update(chunk)
                    chan.send(encode(Kind.DATA, chunk))
                    await chan.drain(1 << 20)
                st = os.fstat(fh.fileno())
                digest = h.hexdigest() if h is not None else new.digest if new else ""
                final = FileState.from_stat(st, digest)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            final = None
        chan.send_obj(Kind.EOF, {"i": index, "s": final.to_wire() if final else None})
        await chan.drain(1 << 20)
        return final

    # ------------------------------------------------------------------------- compare (-T)
    async def compare(self, scopes: list[Scope] | None = None) -> tuple[list[str], list[str]]:
        """Compare disks (not databases) with each peer: ``X|L|R  me  peer  name`` lines."""
        scopes = scopes or ALL
        lines: list[str] = []
        problems: list[str] = []
        for g in self.groups:
            scanned = await asyncio.to_thread(self._scan, g, scopes)
            local = {n: s.state for n, s in scanned.items()}
            for host in g.group.peers(self.me):
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
            await self._serve(chan, g, peer, rec)
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
            await chan.close()
        if rec.changed:
            self.out(1, f"received {len(rec.changed)} change(s) from {peer.name}")
            await self._run_actions(g, rec.changed, receiving=True)

    async def _serve(self, chan: Channel, g: _GroupCtx, peer: Peer, rec: Receiver) -> None:
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
                    return
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
                chan.send_obj(Kind.VERDICT, {
                    "b": bid, "r": [r.to_wire() for r in results if r is not None], "need": need,
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
        rec.submit_open(batch, i)
        while True:
            d = await chan.expect(Kind.DATA, Kind.EOF)
            if d.kind is Kind.DATA:
                rec.submit_write(batch, i, d.payload)
                if rec.queued_bytes > WRITE_BACKLOG:
                    await asyncio.to_thread(rec.wait_writes)
                continue
            eof = d.obj()
            if eof.get("i") != i:
                raise ProtocolError("data for an unexpected file")
            raw_state = eof.get("s")
            if raw_state is None:
                rec.submit_end(batch, i, FileState("reg", 0, 0, 0, -1))
            else:
                rec.submit_end(batch, i, FileState.from_wire(raw_state))
            return

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


class SyncServer:
    """The listening side: accepts peers' sessions for this node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.stats: dict[str, int] = {}
        self._server: Listener | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (making the TLS certificate on first use) after removing old temp files."""
        ctx, fp = await asyncio.to_thread(server_context, self.node.opts.state_dir)
        n = await asyncio.to_thread(self.node.cleanup_tmp)
        if n:
            self.node.out(0, f"removed {n} temp file(s) left by an interrupted transfer")

        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await self.node.handle(r, w, fp, self.stats)
            except asyncio.CancelledError:
                pass  # server shutdown; the session cleaned up after itself
            finally:
                if task is not None:
                    self._tasks.discard(task)

        # Our own accept loop: connection limits before authentication (sync/limits.py).
        sock = listen(self.node.opts.listen, self.node.opts.port)
        self._server = Listener(sock, ctx, on_conn, self.stats)

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
