"""The pushing side, a thin asyncio shell around :class:`~nonstop.sync.session.ClientSession`.

``push`` sends one peer its dirty and forced entries (pipelined batches, no round trip per
file), ``compare`` lists a peer's disk, ``fetch`` takes the peer's version of the names whose
conflict ``auto`` resolved for it. Sessions may be kept open between runs (the daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from nonstop.errors import MachineError
from nonstop.sync import rdiff
from nonstop.sync.context import GroupCtx, Report, SyncError
from nonstop.sync.limits import not_tls
from nonstop.sync.messages import (
    Basis,
    Bye,
    Event,
    Files,
    Listing,
    Result,
    Results,
    Scope,
    Signature,
    SignatureEnd,
    Verdict,
)
from nonstop.sync.plan import ForcedPush, Op, batches, plan_forced_push
from nonstop.sync.protocol import AuthError, ProtocolError, RemoteError
from nonstop.sync.receiver import Receiver
from nonstop.sync.sender import FileSender
from nonstop.sync.server import receive_files
from nonstop.sync.session import ClientSession
from nonstop.sync.state import FileState
from nonstop.sync.transport import Channel, client_handshake, connect, next_event
from nonstop.tasks import in_thread

if TYPE_CHECKING:
    from nonstop.sync.node import Node

# A kept session unused for this long is closed instead of reused.
KEEP_IDLE_S = 30.0
REFUSED_RETRY_DELAY = 0.1
# A connection not made in this long asks whether the route to the peer has a carrier: on a
# LAN it is made in a millisecond, and over a pulled cable it could only wait out its timeout.
CARRIER_CHECK_S = 0.2
# A peer the heartbeats declared dead gets this long to accept a connection instead of the
# usual 3 s: on a LAN one is made in a millisecond, and a takeover's master script pushed to
# the crashed node's box after its services started, the group waiting out the 3 s.
DEAD_PEER_CONNECT_S = 0.5
E = TypeVar("E", Verdict, Results, SignatureEnd, Listing, Files, Bye)


@dataclass
class Link:
    """One open session with a peer: the connection and the protocol state."""

    chan: Channel
    session: ClientSession


@dataclass
class _Run:
    """One push to one peer: batches awaiting results and what came of them."""

    peer: str
    report: Report
    applied: list[str]
    inflight: dict[int, tuple[list[Op], dict[int, Result], dict[int, FileState | None]]] = (
        field(default_factory=dict))
    ok: bool = True
    lost: list[str] = field(default_factory=list)
    # Appends the peer could not make, to be sent again whole, and the names so sent.
    retry: list[Op] = field(default_factory=list)
    whole: set[str] = field(default_factory=set)


class Client:
    """A node's sessions with its peers."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # The daemon keeps one session per peer open between runs (no TLS handshake per
        # change); a one-shot `nonstop sync` closes its sessions at the end of the run.
        self.kept: dict[tuple[str, str], tuple[Link, float]] = {}
        self._closing: set[asyncio.Future[None]] = set()
        # The sessions a push is using now, by peer: see abort_busy.
        self._busy: dict[str, list[Link]] = {}

    # --- connections
    def address(self, g: GroupCtx, peer: str) -> str:
        """The name or address a session with ``peer`` connects to."""
        host = g.group.host(peer)
        via = host.connect_as if host else peer
        opts = self.node.opts
        return opts.addresses.get(peer) or opts.addresses.get(via) or via

    async def open(self, g: GroupCtx, peer: str) -> Link:
        """A new authenticated session with ``peer`` (SyncError saying why not)."""
        addr, opts = self.address(g, peer), self.node.opts
        try:
            # A refused connection is retried for opts.refused_retry seconds (see Options).
            retries = int(opts.refused_retry / REFUSED_RETRY_DELAY)
            timeout = opts.connect_timeout
            if peer in self.node.dead_peers:
                timeout = min(timeout, DEAD_PEER_CONNECT_S)
            for attempt in range(retries + 1):
                try:
                    chan = await _connect(peer, addr, opts.port, timeout)
                    break
                except ConnectionRefusedError:
                    if attempt == retries:
                        raise
                    await asyncio.sleep(REFUSED_RETRY_DELAY)
        except (OSError, TimeoutError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or "timeout")
            if not_tls(e):  # a listener of csync2's own, left enabled there in a migration
                why = ("it answered, but not in TLS (csync2 2.0 still listening there? nonstop's "
                       "peers speak only TLS; docs/SYNC.md, Migrating from csync2)")
            raise SyncError(f"connection to {peer} ({addr}:{opts.port}) failed: {why}") from e
        try:
            version = await client_handshake(chan, g.key, g.group.name, self.node.me, peer)
        except (AuthError, ProtocolError, ConnectionError, TimeoutError) as e:
            await chan.close()
            raise SyncError(f"{peer}: {e}") from e
        return Link(chan, ClientSession(chan.decoder.pending(), version))

    def _reusable(self, g: GroupCtx, peer: str) -> Link | None:
        """The open session kept from an earlier run with ``peer``, if it is still alive."""
        kept = self.kept.pop((g.group.name, peer), None)
        if kept is None:
            return None
        link, since = kept
        chan = link.chan
        if (time.monotonic() - since > KEEP_IDLE_S or chan.reader.at_eof()
                or chan.writer.is_closing()):
            task = asyncio.ensure_future(chan.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            return None
        return link

    def abort_busy(self, peer: str, why: str) -> None:
        """End the sessions a push is using with ``peer`` now (its heartbeats declared it
        dead): a box that died mid-session answers nothing, and the push, with every change
        meant for the other peers behind it, waited out the kernel's 30 s (a three-node trial:
        vpbx1-3 crashed, vpbx1-2 got nothing for 31 s). The push fails for ``peer`` alone, its
        names stay dirty, and the retry's connection gets the dead peer's short timeout."""
        for link in self._busy.pop(peer, []):
            link.chan.reader.set_exception(ConnectionAbortedError(why))
            link.chan.writer.transport.abort()

    async def close_sessions(self) -> None:
        """Close the sessions kept open between runs."""
        kept, self.kept = self.kept, {}
        for link, _since in kept.values():
            with contextlib.suppress(Exception):
                link.chan.send(link.session.bye(False))
                await link.chan.drain()
            await link.chan.close()
        for t in list(self._closing):
            with contextlib.suppress(Exception):
                await t
        self._closing.clear()

    async def _until(self, link: Link, kind: type[E],
                     take: Callable[[Results], Awaitable[None]] | None = None) -> E:
        """The next event of ``kind``; RESULTS arriving first go to ``take``."""
        while True:
            ev = await next_event(link.chan, link.session)
            if isinstance(ev, kind):
                return ev
            if not isinstance(ev, Results) or take is None:
                raise ProtocolError(f"unexpected {type(ev).__name__}")
            await take(ev)

    # --- push
    async def push(self, g: GroupCtx, peer: str, forced: list[Scope],
                   rows: list[tuple[str, bool]], report: Report) -> None:
        """Send ``peer`` the dirty ``rows`` and make it equal in the ``forced`` scopes."""
        link = self._reusable(g, peer) if self.node.keep_sessions else None
        if link is not None:
            # A kept session the peer dropped since (a restart) fails at once: then once more
            # on a new connection, before anything was recorded as sent.
            trial = Report()
            await self._push_on(link, g, peer, forced, rows, trial, reused=True)
            if not trial.problems or trial.sent_names or trial.counts:
                report.merge(trial)
                return
        try:
            link = await self.open(g, peer)
        except SyncError as e:
            if isinstance(e.__cause__, (OSError, TimeoutError)):  # not reached at all
                self.node.unreachable[peer] = time.monotonic()
                report.unreached.append(peer)
            report.problems.append(str(e))
            self.node.out(0, f"ERROR: {e}")
            return
        self.node.unreachable.pop(peer, None)
        self.node.out(1, f"Connected to {peer} (TLS, group {g.group.name})")
        await self._push_on(link, g, peer, forced, rows, report)

    async def _push_on(
        self, link: Link, g: GroupCtx, peer: str, forced: list[Scope],
        rows: list[tuple[str, bool]], report: Report, reused: bool = False,
    ) -> None:
        run = _Run(peer, report, [])
        keep = False
        chan = link.chan
        self._busy.setdefault(peer, []).append(link)
        try:
            later: list[Op] = []
            forced_ok = True
            if forced:
                rows, later, forced_ok = await self._push_forced(link, g, run, forced, rows)
            if rows:
                ops, settled = await asyncio.to_thread(self.node.plan_for, peer, rows)
                if settled:
                    await asyncio.to_thread(self.node.db.record_sent, peer,
                                            [(n, None) for n in settled])
                await self._send_ops(link, g, run, ops)
            if later and await self._send_ops(link, g, run, later) and forced_ok:
                await asyncio.to_thread(self.node.db.clear_forced, peer, forced)
            # BYE ends this run; with keep the peer runs its actions and waits for the next.
            chan.send(link.session.bye(self.node.keep_sessions))
            await chan.drain()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30.0):  # not wait_for: see transport.Channel.close
                    await self._until(link, Bye)
                keep = self.node.keep_sessions
        except (ProtocolError, ConnectionError, RemoteError, OSError, TimeoutError) as e:
            msg = f"session with {peer} failed: {e}"
            report.problems.append(msg)
            if not reused:
                self.node.out(0, f"ERROR: {msg}")
        finally:
            report.bytes_sent += chan.bytes_sent
            report.bytes_received += chan.bytes_received
            chan.bytes_sent = chan.bytes_received = 0
            if others := [b for b in self._busy.pop(peer, []) if b is not link]:
                self._busy[peer] = others
            if keep:
                self.kept[(g.group.name, peer)] = (link, time.monotonic())
            else:
                await chan.close()
        report.sent_names.extend(run.applied)
        await self.node.run_actions(g, run.applied, receiving=False)

    async def _push_forced(self, link: Link, g: GroupCtx, run: _Run, forced: list[Scope],
                           rows: list[tuple[str, bool]],
                           ) -> tuple[list[tuple[str, bool]], list[Op], bool]:
        """Make the peer equal to us in ``forced``; returns the rows left to send, the forced
        deletions to send after them (of directories with a row left below: ``-f DIR`` of a
        deleted directory whose children are dirty, so deepest first overall), and whether
        all sent so far applied."""
        db, peer = self.node.db, run.peer
        local = await asyncio.to_thread(self.node.check_scopes, g, forced)
        listing = await self.listing(link, forced)
        synced = await asyncio.to_thread(db.synced_in, peer, forced)

        def work_out(local: dict[str, FileState], listing: dict[str, FileState],
                     synced: dict[str, FileState]) -> ForcedPush:
            # O(files), so off the loop that carries the heartbeats. What our csync2.cfg does
            # not include is not ours to delete there (a narrowed config).
            remote = {n: st for n, st in listing.items() if g.matcher.included(n)}
            return plan_forced_push(local, remote, synced, self.node.ignore, forced, rows)

        plan = await asyncio.to_thread(work_out, local, listing, synced)
        del local, listing, synced  # not held while the operations are sent
        await asyncio.to_thread(db.record_sent, peer, plan.equal)
        for op in plan.ops:
            self.node.out(1, f"forcing {op.kind} {op.name} on {peer}")
        ok = await self._send_ops(link, g, run, plan.first())
        await asyncio.to_thread(db.record_sent, peer, plan.gone)
        if ok and not plan.later:
            await asyncio.to_thread(db.clear_forced, peer, forced)
        return plan.left, plan.later, ok

    async def listing(self, link: Link, scopes: list[Scope]) -> dict[str, FileState]:
        """The peer's files in ``scopes``, as it scans them now."""
        link.chan.send(link.session.list_scopes(scopes))
        await link.chan.drain()
        out: dict[str, FileState] = {}
        while True:
            listing = await self._until(link, Listing)
            out.update(listing.entries)
            if listing.end:
                return out
            # Chunks already read are decoded without a turn of the loop in between: one
            # after each (about 15 ms of 2,000 entries), for the heartbeats.
            await asyncio.sleep(0)

    async def _send_ops(self, link: Link, g: GroupCtx, run: _Run, ops: list[Op]) -> bool:
        """Send operations in pipelined batches.

        Per batch: OFFER, the peer's VERDICT (what it applied at once, which files it needs),
        the needed files back to back, COMMIT. The next batch is offered while the peer still
        installs the previous one; RESULTS come back whenever they are ready.
        """
        chan, session = link.chan, link.session
        run.ok, run.lost = True, []
        if session.version < 4:
            # A receiver older than a rename's two-part result kept a source changed there and
            # answered "ok": a rename goes as a put from the source's bytes and a deletion,
            # which such a receiver judges as any deletion (a conflict where it was edited).
            ops = [x for o in ops for x in (
                (Op("put", o.name, o.base, o.new, o.forced, o.src, o.src_base),
                 Op("del", o.src, o.src_base, None, o.forced)) if o.kind == "mv" else (o,))]
        if session.version < 3:  # a receiver that copies nothing: every put is sent
            ops = [Op("put", o.name, o.base, o.new, o.forced) if o.kind == "put" else o
                   for o in ops]

        async def take(ev: Results) -> None:
            await self._take_results(ev, run)

        async def delta_start(index: int, have: Basis) -> rdiff.Delta | None:
            return await self._delta_start(link, index, have, take)

        sender = FileSender(chan, session, self.node.db, g.paths, delta_start, run.whole)
        bid = 0
        while ops:  # twice at most: the second time, what could not be appended (_refused)
            for batch in batches(ops):
                chan.send(session.offer(bid, batch))
                await chan.drain()
                verdict = await self._until(link, Verdict, take)
                finals = await sender.stream_needed(batch, verdict.need, verdict.have)
                chan.send(session.commit(bid))
                await chan.drain()
                run.inflight[bid] = (batch, verdict.results, finals)
                bid += 1
            while run.inflight:
                await self._take_results(await self._until(link, Results), run)
            ops, run.retry = run.retry, []
            run.whole.update(op.name for op in ops)
        if run.lost and not await self.fetch(link, g, run.peer, run.lost, run.report):
            run.ok = False
        return run.ok

    async def _take_results(self, ev: Results, run: _Run) -> None:
        batch, results, finals = run.inflight.pop(ev.b)
        results.update(ev.results)
        records: list[tuple[str, FileState | None]] = []
        for i, op in enumerate(batch):
            res = results.get(i) or Result(i, "error", f"{op.name}: no result from {run.peer}")
            if self._refused(res, op, run):
                continue
            run.report.count(res.status)
            if res.applied:
                records.append((op.name, finals.get(i, op.new) if i in finals else op.new))
                if op.kind == "mv" and not res.src_status:
                    records.append((op.src, None))
                    run.applied.append(op.src)
                run.applied.append(op.name)
            # (None: streamed without a content, as it changed or went while it was read)
            self._tell(res, op, run, unread=i in finals and finals[i] is None)
            if res.applied and res.src_status:
                # The peer kept the source (changed there since): as for a plain deletion,
                # a conflict stays dirty, a deletion lost to `auto` takes the peer's version.
                run.report.count(res.src_status)
                self._tell(Result(i, res.src_status, res.src_message),
                           Op("del", op.src, op.src_base, None, op.forced), run)
        await asyncio.to_thread(self.node.db.record_sent, run.peer, records)

    def _refused(self, res: Result, op: Op, run: _Run) -> bool:
        """Whether the peer could not append to its copy (a receiver before cd6f31e offers a
        file with other hard links as a basis, then refuses the append: "cannot append on
        NODE: it has other hard links"); then the file goes again, whole, in this run, once.
        Nothing of it was written there: the new offer is judged as any (conflicts, backups)."""
        if (res.status != "error" or op.kind != "put" or op.name in run.whole
                or not res.message.startswith(f"{op.name}: cannot append on ")):
            return False
        run.retry.append(op)
        self.node.out(1, f"{run.peer}: {op.name}: {run.peer} could not append to its copy "
                      f"({res.message[len(op.name) + 2:]}); replacing it instead")
        return True

    def _tell(self, res: Result, op: Op, run: _Run, unread: bool = False) -> None:
        """Say what came of one operation (and note what failed or was lost)."""
        out, peer = self.node.out, run.peer
        if res.applied:
            if res.status == "auto":
                out(0, f"{peer}: {res.message}")  # "auto MODE: NODE wins: ..."
            elif res.status == "forced":
                out(0, f"{peer}: {res.status}: {res.message}")
            else:
                verb = {"put": "updated", "del": "deleted",
                        "mv": f"renamed from {op.src}" + (f", which {peer} keeps (below)"
                                                          if res.src_status else "")}
                out(1, f"{peer}: {op.name}: {verb[op.kind]} ({res.status})"
                    + (f": {res.message}" if res.message else ""))
        elif res.status == "lost" and op.kind != "mv":
            # `auto` chose the peer's version: fetched in this session, below.
            run.lost.append(op.name)
            out(0, f"{peer}: {res.message}; taking {peer}'s version")
        else:
            run.ok = False
            run.report.problems.append(f"{peer}: {res.message or op.name}")
            if res.status == "conflict":
                run.report.conflicts.append(run.report.problems[-1])
            elif unread and res.status == "error":
                run.report.changing.append(run.report.problems[-1])
            elif res.status == "error":  # this file alone failed there (Report.file_errors)
                run.report.file_errors.append(run.report.problems[-1])
            out(0, f"{peer}: {res.status}: {res.message or op.name}")

    async def _delta_start(self, link: Link, index: int, have: Basis,
                           take: Callable[[Results], Awaitable[None]]) -> rdiff.Delta | None:
        """Ask for the peer's signature of its copy; None if it has none to give (then the
        file goes whole)."""
        link.chan.send(link.session.start_delta(index, rdiff.max_signature_size(have.size)))
        await link.chan.drain()
        delta = rdiff.Delta()
        try:
            while True:
                ev: Event = await next_event(link.chan, link.session)
                if isinstance(ev, Results):
                    await take(ev)
                elif isinstance(ev, Signature):
                    await in_thread(delta.signature, ev.piece)
                elif isinstance(ev, SignatureEnd):
                    break
                else:
                    raise ProtocolError(f"unexpected {type(ev).__name__}")
            if not ev.ok:
                delta.close()
                return None
            await in_thread(delta.signature, b"", True)
            return delta
        except rdiff.RdiffError as e:
            delta.close()
            raise ProtocolError(f"bad signature: {e}") from None
        except BaseException:
            delta.close()
            raise

    # --- fetch
    async def fetch(self, link: Link, g: GroupCtx, peer: str, names: list[str],
                    report: Report) -> bool:
        """Take the peer's version of ``names`` (conflicts ``auto`` resolved in its favour);
        ours are backed up. Unlike csync2, the losing side converges in the same run."""
        node, chan = self.node, link.chan
        chan.send(link.session.fetch(names))
        await chan.drain()
        files = await self._until(link, Files)
        # base: what both held at the last sync, so the reasons read "changed", not "created"
        base = await asyncio.to_thread(node.db.synced_for, peer, [n for n, _ in files.entries])
        ops = [Op("put" if state else "del", name, base.get(name), state, True)
               for name, state in files.entries]
        rec = Receiver(node.db, g.matcher, g.paths, g.group, node.me, peer, node.ignore,
                       log=lambda m: node.out(1, m))
        try:
            results, need, batch = await asyncio.to_thread(rec.evaluate, ops)
            chan.send(link.session.need(need))
            await chan.drain()
            await receive_files(chan, link.session, rec, batch, need)
            await asyncio.to_thread(rec.wait_writes)
            done = await asyncio.to_thread(rec.commit, batch)
        finally:
            # In a worker thread, shielded, as the server's: it waits for a commit still running
            # in its thread when this task is cancelled (see ReceiveData.abort).
            if (problem := await asyncio.shield(asyncio.to_thread(rec.close))) is not None:
                node.out(0, f"{peer}: {problem}")
        all_ok = True
        for res in [r for r in results if r is not None] + done:
            name = ops[res.index].name
            if res.applied:
                report.count("pulled")
                node.out(0, f"{name}: now {peer}'s version"
                         + (f" ({res.message})" if res.message else ""))
            else:
                all_ok = False
                report.problems.append(f"{name}: could not take {peer}'s version: "
                                       f"{res.message or res.status}")
                node.out(0, report.problems[-1])
        if rec.changed:
            await node.run_actions(g, rec.changed, receiving=True)
        return all_ok

    # --- compare
    async def compare(self, scopes: list[Scope], peer: str | None
                      ) -> tuple[list[str], list[str]]:
        """Compare disks (not databases) with each peer (or only ``peer``):
        ``X|L|R  me  peer  name`` lines, and the problems met."""
        node = self.node
        lines: list[str] = []
        problems: list[str] = []
        for g in node.groups:
            if peer is not None and g.group.host(peer) is None:
                continue
            local = await asyncio.to_thread(node.states, g, scopes)
            for host in g.group.peers(node.me):
                if peer is not None and host.name != peer:
                    continue
                try:
                    # What our csync2.cfg excludes is not ours to compare (nor, with -TIX,
                    # to delete there).
                    remote = {n: st for n, st in
                              (await self._listing_of(g, host.name, scopes)).items()
                              if g.matcher.included(n)}
                except SyncError as e:
                    problems.append(str(e))
                    continue
                for n in sorted(set(local) | set(remote)):
                    a, b = local.get(n), remote.get(n)
                    flag = "L" if b is None else "R" if a is None else "X"
                    if a is None or b is None or not a.same(b, node.ignore):
                        lines.append(f"{flag}\t{node.me}\t{host.name}\t{n}")
        return lines, problems

    async def _listing_of(self, g: GroupCtx, peer: str, scopes: list[Scope]
                          ) -> dict[str, FileState]:
        link = await self.open(g, peer)
        try:
            remote = await self.listing(link, scopes)
            link.chan.send(link.session.bye(False))
            await link.chan.drain()
        finally:
            await link.chan.close()
        return remote


async def _connect(peer: str, addr: str, port: int, timeout: float) -> Channel:
    """:func:`connect`, ended at once (OSError saying why) when it is not made within
    CARRIER_CHECK_S and the route to ``addr`` goes over an interface without carrier: a
    pulled cable made the master script's pushes wait out their timeout during a stop (a
    user trial: 3.6 s of an ipfail give-away's outage). A name /etc/hosts does not give is
    not looked up (no DNS query here): that connection waits as before."""
    task = asyncio.ensure_future(connect(addr, port, timeout))
    try:
        done, _ = await asyncio.wait({task}, timeout=min(CARRIER_CHECK_S, timeout))
        if not done:
            from nonstop.guards import peers_cut_off  # the slow path only: not at start-up

            # A netlink round trip (about a millisecond): off the loop, which serves the
            # daemon's heartbeats and the other peers' sessions meanwhile.
            cut = await asyncio.to_thread(peers_cut_off, {peer: [addr]})
            if cut is not None and not task.done():
                raise MachineError(errno.ENETUNREACH, cut)
        return await task
    finally:
        if not task.done():
            task.cancel()
            task.add_done_callback(_retrieved)


def _retrieved(task: asyncio.Future[Channel]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().writer.close()  # made just as we gave up on it
