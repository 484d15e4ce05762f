"""Continuous replication for the daemon: inotify hints, a periodic full scan, force-sync.

The node holding the resource group is *active*: a change seen by inotify is checked and sent
within ``debounce`` seconds; a full scan every ``full_scan_interval`` seconds catches what inotify
misses (queue overflow, changes while we were down). A standby keeps receiving but never pushes.
On takeover and release the daemon calls :meth:`Replicator.force_sync`, the equivalent of the
talk's master script (``csync2 -fr /var/log/asterisk/; csync2 -fr /etc/asterisk/; csync2 -xv``)
over the paths the configuration replicates (:func:`force_paths`); forced scopes stay recorded
until the peer has really been made equal, so they win even if it is down now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import select
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from nonstop.sync.context import QuietRepeats, as_logged
from nonstop.sync.inotify import Watcher
from nonstop.sync.node import ALL, Node, Report, Scope
from nonstop.sync.patterns import TMP_PREFIX, force_paths
from nonstop.sync.scanpace import full_scan_pause, thread_cpu
from nonstop.sync.server import SyncServer
from nonstop.sync.skipped import not_replicated, not_replicated_since
from nonstop.sync.state import is_utf8
from nonstop.tasks import cancel_and_wait

_log = logging.getLogger("nonstop.sync")

STATUS_PATHS = 10  # skipped paths named in status (all are counted)
CATCH_UP_TRIES = 12  # a returning node offers its never-sent changes at most this often
# A failing burst's first retry, each next one twice as late up to the retry interval (a
FIRST_RETRY_S = 0.5  # rebooted peer is heard before its replication listens: docs/SYNC.md)
SUMMARY_S = 60.0  # the log's line of what replication did, at most this often


class Replicator:
    """One node's replication service inside the daemon."""

    _unscanned = False  # the last run's check failed (``_sync``)
    _scan_cpu = 0.0  # CPU seconds of the last full check (scanpace)

    def __init__(self, node: Node, *, debounce: float = 0.05, max_delay: float = 0.25,
                 full_scan_interval: float = 60.0, retry_interval: float = 5.0,
                 serve: bool = True, watch: bool = True) -> None:
        self.node = node
        node.linked_full = True  # a hard-linked file's other names: Node.check
        # Retries meet the same conflicts and errors every retry_interval: each is said once
        # per 5 minutes, not every 5 s.
        self._quiet = QuietRepeats(node.out)
        node.out = self._noting(self._quiet)
        self.debounce, self.max_delay = debounce, max_delay
        self.full_scan_interval = full_scan_interval
        self.retry_interval = retry_interval
        self.server = SyncServer(node) if serve else None
        self.force_paths = force_paths([g.matcher for g in node.groups])
        # watch=False: periodic scans only (filesystems without inotify, e.g. NFS).
        self.watch = watch
        self._active = False
        self._hints: dict[str, bool] = {}
        self._first_hint: float | None = None
        # When the oldest change that has not reached the peers yet was seen (kept across
        # failed runs, so lag_s is the age of that change, not of the last retry).
        self._unsent_since: float | None = None
        self._failing = 0  # failed runs in a row (the first of a burst is logged)
        # The conflicts the last run met (`auto none`: left alone until resolved); unlike a
        # failing burst they hold no other change back (_standing).
        self._conflicts = 0
        self._recheck_at = math.inf  # the next try of the dirty names alone (no scan)
        # While failing, a change waits for the retry: each run sends the whole backlog again
        # (a read-only replica for 20 s took 128 runs and 67x the data).
        self._retry_at = 0.0
        # The log says what replication did once a minute; each file is a debug line.
        self._summary_at = time.monotonic()
        self._sent = self._received = 0
        self._full_due = True
        self._full_scan_at: float | None = None  # when the last full scan started
        self._catch_up_due = False  # scan_unsent found changes never sent: _catch_up
        self._catch_up_tries = 0
        self._catch_up_task: asyncio.Task[Report] | None = None
        # A standby's dirty count, refreshed off the loop (status must not wait on sqlite).
        self._dirty_refresh: asyncio.Task[None] | None = None
        self._dirty_read_at = -math.inf  # when refresh_dirty last read the count
        # Peers the heartbeats declare dead: no push waits on them (their changes stay dirty,
        # counted in status and lag); one that comes back is pushed to at once.
        self.dead: frozenset[str] = frozenset()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._watcher: Watcher | None = None
        self._roots: list[tuple[str, str]] = []
        # Told of every push's report (the daemon's history records pushes and conflicts).
        self.on_report: Callable[[Report], None] | None = None
        self._status: dict[str, Any] = {
            "active": False, "last_sync": None, "last_sync_ok": None, "last_error": None,
            "syncs": 0, "dirty": 0, "pending_hints": 0, "lag_s": 0.0, "last_problem": None,
            "watch_error": None, "standby_refused": None}

    def _noting(self, out: Callable[[int, str], None]) -> Callable[[int, str], None]:
        """``out``, noting the last warning (a push's or a receiving session's) for status:
        a standby whose replica is full said so only in its log."""
        def noted(level: int, msg: str) -> None:
            if level <= 0:
                self._note_problem(as_logged(msg))
            out(level, msg)
        return noted

    def _note_problem(self, text: str) -> None:
        """Status's ``last_problem``: the last warning of replication here, with its time."""
        self._status["last_problem"] = {"at": round(time.time(), 3), "text": text}

    def note_standby_refused(self, text: str) -> None:
        """Show in status that a ``nonstop standby`` was refused for replication (``text``:
        why; the command had answered). Kept until the next refusal; text form: an hour."""
        self._status["standby_refused"] = {"at": round(time.time(), 3), "text": text}

    # --- lifecycle
    async def start(self, scan_unsent: bool = False) -> None:
        """Start receiving, watching and (when active) pushing; with ``scan_unsent``, first
        :meth:`scan_unsent` (before receiving: a file a peer's push installs meanwhile would
        look like a change of ours)."""
        if scan_unsent:
            try:
                self._catch_up_due = bool(await self.scan_unsent())
            except Exception as e:  # a disk error: said; replication starts all the same
                _log.error("replication: cannot look for changes that never left: %s", e)
        if self.server is not None:
            await self.server.start()
        self.node.keep_sessions = True
        if self.watch:
            self._start_watcher()
        self._task = asyncio.create_task(self._run(), name="sync-replicator")

    async def stop(self) -> None:
        """Stop pushing, watching and receiving (the Node stays open)."""
        await cancel_and_wait(self._task)
        self._task = None
        await cancel_and_wait(self._dirty_refresh)
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        await self.node.close_sessions()
        if self.server is not None:
            await self.server.close()

    def set_active(self, active: bool) -> None:
        """Active nodes push; a standby only receives. Becoming active starts a full scan."""
        if active and not self._active:
            self._full_due = True
            if self._catch_up_task is not None:
                self._catch_up_task.cancel()  # its own full push sends all that, and more
        elif self._active and not active:
            # A release: what never left (a push failed as a split brain healed; hints not
            # scanned yet, kept) is offered unforced, as a returning node's: _catch_up.
            self._catch_up_due, self._catch_up_tries = True, 0
            if self._watcher is not None:
                self._drain_events()
        self._active = active
        self._status["active"] = active
        if not active:
            self._first_hint = None
            self._unsent_since = None
            self._conflicts, self._recheck_at, self._failing = 0, math.inf, 0
            # Its pushes are over: no error nor verdict on them left (last_problem keeps it).
            self._status.update(last_error=None, last_sync_ok=self._status["last_sync_ok"] or None)
        self._wake.set()

    def set_dead(self, peers: frozenset[str]) -> None:
        """The peers heartbeats declare dead now: pushes skip them and their kept sessions are
        closed; a peer back from the dead gets its backlog at once, not at the next full scan."""
        if peers == self.dead:
            return
        back = self.dead - peers
        for peer in sorted(peers - self.dead):
            self.node.drop_sessions(peer)
        self.dead = self.node.dead_peers = peers
        if back and self._active:
            _log.info("replication: %s alive again: pushing its backlog", ", ".join(sorted(back)))
            # At once, not at the retry of a failing burst: the peer's absence was the failure.
            self._retry_at = 0.0
            self._wake.set()  # woken with no change: the run pushes what is dirty, no scan
        elif back and self._catch_up_due:
            self._wake.set()  # a standby's catch-up that found no one: try it again

    def failing(self) -> str | None:
        """Why this node's pushes fail now (its last run failed or met conflicts), if so."""
        if not self._failing and not self._conflicts:
            return None
        return str(self._status["last_error"] or "the last push failed")

    async def push_pending(self, force: bool = True) -> Report | None:
        """A hand-off's last push: what changed and was not sent yet (read from inotify now,
        so what a stopped service wrote on its way out is in it), with the release's force-sync
        when ``force``; None, without a scan or a connection, when nothing is waiting."""
        if self._watcher is not None:
            self._drain_events()
        async with self._lock:
            waiting = bool(self._hints) or self._full_due or self._watcher is None
            if not waiting:
                waiting = await asyncio.to_thread(self.node.has_pending, None, self.live())
            if not waiting:
                return None
            hints, self._hints = self._hints, {}
            if self._first_hint is not None and self._unsent_since is None:
                self._unsent_since = self._first_hint
            self._first_hint = None
            if force:
                scopes: list[Scope] = [(os.path.normpath(p), True) for p in self.force_paths]
                await asyncio.to_thread(self.node.force, scopes)
            full, self._full_due = self._full_due or self._watcher is None, False
            return await self._sync(None if full else sorted(hints.items()))

    async def scan_unsent(self) -> list[str]:
        """Find what this node changed and never sent, though a standby neither scans nor
        pushes: called when its last run ended holding a group (killed, crashed, the machine
        lost power). Those names then count in status (``dirty``), ``nonstop sync -M`` lists
        them, and the log names them; they go out when this node holds a group again."""
        async with self._lock:
            if self._active:  # holding already: its own full scan pushes them
                return []
            await asyncio.to_thread(self.node.check, ALL)
            names, count = await asyncio.to_thread(self._unsent_files)
        self._status["dirty"] = count
        if names:
            shown = ", ".join(names[:STATUS_PATHS]) + (", ..." if len(names) > STATUS_PATHS
                                                       else "")
            _log.warning("replication: %d file(s) changed on this node never reached its "
                         "peers: %s. A standby does not push: those a holder's force-sync "
                         "does not replace here go out when this node holds the group again "
                         "(`nonstop sync -M` lists them, `nonstop sync -T` compares)",
                         len(names), shown)
        return names

    def _unsent_files(self) -> tuple[list[str], int]:
        """(In a worker thread.) The dirty files and empty directories, not each directory
        made for a new file; and the dirty rows, as status counts them."""
        rows = self.node.db.dirty()
        dirty = {r.name for r in rows}
        parents = {n[:i] for n in dirty for i in range(1, len(n)) if n[i] == "/"}
        return sorted(dirty - parents), len(rows)

    async def _catch_up(self) -> None:
        """Offer the peers, unforced, what :meth:`scan_unsent` found or a release left. A
        holder takes only files it never had (a crashed holder's last voicemail:
        Receiver.only_new); a peer holding nothing judges each change as any push. Tried
        again every ``retry_interval`` and when a peer comes back, up to CATCH_UP_TRIES times."""
        if not self._catch_up_due:
            return
        self._catch_up_tries += 1
        if self._catch_up_tries >= CATCH_UP_TRIES:
            self._catch_up_due = False
        async with self._lock:
            if self._active:  # holding now: its own pushes send everything
                self._catch_up_due = False
                return
            for peer in self.dead:  # tried all the same (briefly: Node.dead_peers)
                self.node.unreachable.pop(peer, None)
            hints, self._hints = self._hints, {}
            # A task of its own: a takeover (set_active) ends it rather than wait for a push
            # to a holder that died in the middle of it.
            task = self._catch_up_task = asyncio.create_task(self._offer(hints))
            try:
                await asyncio.wait({task})
                if task.cancelled():
                    return
                report = task.result()
            except Exception as e:  # a database error: said; the loop goes on
                _log.error("replication: offering what this node never sent failed: %s", e)
                return
            finally:
                self._catch_up_task = None
                if not task.done():  # stop() cancelled us while it pushed
                    task.cancel()
            await self.refresh_dirty()
        if not report.unreached:
            self._catch_up_due = False
        if report.sent_names or report.problems:
            _log.info("replication: offered the peers what this node never sent: %d taken, "
                      "%d refused or not reached (kept here, counted in dirty)",
                      len(report.sent_names), len(report.problems))

    async def _offer(self, hints: dict[str, bool]) -> Report:
        """The catch-up's push: what a release left unscanned checked, all dirty unforced."""
        if hints:
            await asyncio.to_thread(self.node.check, sorted(hints.items()))
        return await self.node.update(unforced=True)

    async def refresh_dirty(self, timeout: float | None = None) -> None:
        """A standby's dirty count read now (a busy or broken database, or ``timeout``: the last
        one). `nonstop status` awaits it: the previous ask's count said "changed here, never
        sent" of a file a holder's force-sync had settled since (a user trial)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                if not self._active:  # a holder's pushes keep its count
                    self._status["dirty"] = await asyncio.to_thread(self.node.db.dirty_count)
                    self._dirty_read_at = time.monotonic()

    def unsent(self, among: Collection[str] | None = None) -> list[str]:
        """The names still dirty for a live peer (what a failed last push left here), or for
        a live peer ``among`` these."""
        peers = set(self.live())
        if among is not None:
            peers &= set(among)
        return sorted({r.name for r in self.node.db.dirty() if r.peer in peers})

    def addresses(self, among: Collection[str]) -> dict[str, list[str]]:
        """What the pushes to the peers ``among`` these connect to (:meth:`Node.addresses`)."""
        return self.node.addresses(among)

    def live(self) -> list[str]:
        """The peers not declared dead."""
        return [p for g in self.node.groups for h in g.group.peers(self.node.me)
                if (p := h.name) not in self.dead]

    def _drain_events(self) -> None:
        """Take the inotify events already queued (a stop script that has exited wrote them)."""
        assert self._watcher is not None
        for _ in range(64):  # bounded: a writer still running is the next pass's work
            if not select.select([self._watcher.fd], [], [], 0)[0]:
                return
            self._watcher._read()

    async def force_sync(self, paths: Sequence[str] | None = None) -> Report:
        """Force this node's version of ``paths`` (recursively; by default
        :attr:`force_paths`) onto the peers, then sync all."""
        scopes: list[Scope] = [(os.path.normpath(p), True) for p in paths or self.force_paths]
        async with self._lock:
            await asyncio.to_thread(self.node.force, scopes)
            return await self._sync(None)

    def status(self) -> dict[str, Any]:
        """For ``nonstop status``: last sync time, lag, dirty count, last error."""
        st = dict(self._status)
        if (not self._active and time.monotonic() - self._dirty_read_at > 1.0
                and (self._dirty_refresh is None or self._dirty_refresh.done())):
            # A standby's pushes do not update its count (its last changes before a crash, less
            # what a holder replaced since): read off the loop for the next call, unless fresh.
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to refresh
                self._dirty_refresh = asyncio.get_running_loop().create_task(
                    self.refresh_dirty())
        st["pending_hints"] = len(self._hints)
        oldest = [t for t in (self._unsent_since, self._first_hint) if t is not None]
        st["lag_s"] = round(time.monotonic() - min(oldest), 3) if oldest else 0.0
        if self._full_scan_at is not None:
            skipped = not_replicated_since(self._full_scan_at)
            st["not_replicated"] = {"count": len(skipped), "paths": skipped[:STATUS_PATHS]}
        if self.server is not None:
            st["server"] = dict(self.server.stats)
        return st

    # --- inotify
    def _start_watcher(self) -> None:
        try:
            watcher = Watcher(self._on_event, self._descend_local)
        except OSError as e:
            self._status["watch_error"] = f"inotify unavailable ({e}); periodic scans only"
            return
        roots = [(g.paths.local(r), r) for g in self.node.groups for r in g.matcher.roots()
                 if g.paths.knows(r)]
        self._roots.extend(roots)
        if not watcher.watch_roots([local for local, _ in roots]):  # out of watches
            self._status["watch_error"] = f"{watcher.error}; the periodic scan finds the rest"
            _log.error("replication: %s", self._status["watch_error"])
        watcher.start()
        self._watcher = watcher

    def _name_of(self, local: str) -> str | None:
        for base, name in self._roots:
            if local == base or local.startswith(base.rstrip("/") + "/"):
                return name + local[len(base):]
        return None

    def _descend_local(self, local: str) -> bool:
        name = self._name_of(local)
        return name is not None and any(g.matcher.descend(name) for g in self.node.groups)

    def _on_event(self, local: str | None, is_dir: bool, new_dir: bool) -> None:
        if not self._active:
            return
        if local is None:
            self._full_due = True
            self._wake.set()
            return
        if os.path.basename(local).startswith(TMP_PREFIX):
            return
        name = self._name_of(local)
        if name is None:
            return
        if not is_utf8(name):  # skipped by the scan too, and named unless excluded
            if any(g.matcher.wanted(name, is_dir) for g in self.node.groups):
                not_replicated(local, "its name is not UTF-8")
            return
        # A directory event may stand for a whole subtree (mv of a tree emits no child events).
        self._hints[name] = self._hints.get(name, False) or is_dir or new_dir
        if self._first_hint is None:
            self._first_hint = time.monotonic()
        self._wake.set()

    # --- the loop
    async def _run(self) -> None:
        next_full = time.monotonic()
        while True:
            # a full check owed for a hard-linked file's other names (Node.check): active only
            owed = min(next_full, self.node.linked_due_at if self._active else math.inf)
            timeout = max(0.0, min(owed, self._recheck_at) - time.monotonic())
            # Not asyncio.wait_for: in Python 3.11 it drops a cancellation (stop()) that
            # arrives as the event is set (gh-86296), and this loop then ran on for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            self._summarize()
            if not self._active:
                await self._catch_up()  # if due: at start, then when a peer comes back
                next_full = time.monotonic() + (
                    self.retry_interval if self._catch_up_due else self.full_scan_interval)
                continue
            await self._hold(next_full)
            full = self._full_due or self._unscanned or time.monotonic() >= owed
            hints, self._hints = self._hints, {}
            if self._first_hint is not None and self._unsent_since is None:
                self._unsent_since = self._first_hint
            self._first_hint = None
            self._full_due = False
            scopes: list[Scope] | None = None if full else sorted(hints.items())
            async with self._lock:
                if not self._active:  # released meanwhile: the catch-up checks and offers them
                    for name, deep in hints.items():
                        self._hints[name] = self._hints.get(name, False) or deep
                    self._wake.set()
                    continue
                started = time.monotonic()
                await self._sync(scopes)
                if full:
                    self._full_scan_at = started
            if full:
                watched = self._watcher is not None and not self._watcher.error
                pause = full_scan_pause(self.full_scan_interval, self._scan_cpu, watched)
                next_full = time.monotonic() + pause
                self._status["full_scan_every_s"] = round(pause, 1)
            if self._failing:  # a scan that failed lost its hints: the retry scans it all
                next_full = min(next_full, time.monotonic() + self.retry_interval)

    async def _hold(self, next_full: float) -> None:
        """Before a run: in a failing burst a change waits for the retry (a peer back or a
        release ends it), then a burst of writes settles (debounce), never past max_delay."""
        now = time.monotonic()
        if self._failing and not self._full_due and now < self._retry_at:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._retry_at - now):
                    while self._active and time.monotonic() < self._retry_at:
                        self._wake.clear()
                        await self._wake.wait()
        if self._active and self._hints and not self._full_due and now < next_full:
            await asyncio.sleep(self.debounce)
            first = self._first_hint or now
            while self._wake.is_set() and time.monotonic() - first < self.max_delay:
                self._wake.clear()
                await asyncio.sleep(self.debounce)

    async def _sync(self, scopes: list[Scope] | None) -> Report:
        started, db = time.monotonic(), self.node.db
        # A check that fails records nothing dirty and its events are gone: until one is done,
        # each retry scans it all. A retry of the dirty names alone said "works again" (a
        # state disk full in a user trial: status "last sync ok, dirty 0", nothing sent).
        self._unscanned = scopes != []
        try:
            if scopes != []:  # [] (woken with no change: a peer back): only what is dirty
                cpu = await asyncio.to_thread(thread_cpu, self.node.check, scopes or ALL)
                self._scan_cpu = cpu if scopes is None else self._scan_cpu
                self._unscanned = False
            report = await self.node.update()
            dirty = await asyncio.to_thread(self.node.db.dirty_count)
        except Exception as e:  # keep the service alive; the reason goes to status and the log
            self._failed(f"{type(e).__name__}: {e}", started)
            report = Report(problems=[f"{type(e).__name__}: {e}"])
            if self.on_report is not None:
                self.on_report(report)  # the history records the failure too
            if await asyncio.to_thread(self.node.renew_db, db, e):
                self._full_due = True  # damaged, set aside: the new one is filled by a scan
            return report
        self._status["syncs"] += 1
        if self.on_report is not None:
            self.on_report(report)
        self._status["last_sync"] = time.time()
        ok = not report.problems  # after a release, no verdict (as set_active): it is over
        self._status["last_sync_ok"] = ok if self._active else ok or None
        self._status["dirty"] = dirty
        self._status["bytes_sent"] = self._status.get("bytes_sent", 0) + report.bytes_sent
        self._sent += sum(report.counts.values())
        # A file that changed (or went) while it was read is no failure: that change's own
        # event brings the next run. Counted as one, it held every other change back for the
        # retry interval (a config rewritten in place as it was pushed, in a trial).
        changing = set(report.changing)
        problems = [p for p in report.problems if p not in changing]
        others = report.failures()
        if others and (len(others) > len(report.unreached)
                       or not set(report.unreached) <= self.dead):
            self._failed(others[-1], started, len(problems))
            return report
        if self._failing and not others:
            _log.warning("replication works again after %d failed run(s)", self._failing)
            self._failing = 0
        self._standing(len(problems) - len(others) if self._active else 0)
        if problems:  # conflicts, or dead peers' boxes not reached: lag, not a failing burst
            if self._active:  # (a standby's pushes are over: no error left unresolved)
                self._status["last_error"] = problems[-1]  # (whose retries wait)
                self._unsent_since = self._unsent_since or started
            return report
        self._status["last_error"] = None  # over (last_problem keeps it, with its time)
        if dirty:
            # Sent what it could, but names stay dirty (changed again while sent, or kept for
            # a dead peer: its backlog is real lag).
            if self._active:
                self._unsent_since = self._unsent_since or started
        else:
            self._unsent_since = None
        return report

    def _standing(self, conflicts: int) -> None:
        """Note the conflicts and files the peer could not write that the last run met, saying
        when some begin to stand and when none is left (each file's own line is the push's, once
        per window). Counted as a failing burst, one line a standby wrote to the Asterisk log
        made every change wait 5 s, and so did one immutable file there (4.4 s, a trial)."""
        if conflicts and not self._conflicts:
            _log.warning("replication: %d file(s) in conflict or not written on the peer, each "
                         "left alone until it is resolved; other changes go on", conflicts)
        elif self._conflicts and not conflicts:
            _log.info("replication: no conflict or unwritten file left")
        self._conflicts = conflicts
        # Offered again (the dirty names alone, no scan) until resolved.
        self._recheck_at = time.monotonic() + self.retry_interval if conflicts else math.inf

    def _summarize(self) -> None:
        """Once a minute at most, one info line of what was sent and received."""
        self._quiet.flush()
        now = time.monotonic()
        if now - self._summary_at < SUMMARY_S:
            return
        received = self.server.stats.get("changes_received", 0) if self.server else 0
        sent, got = self._sent, received - self._received
        if sent or got:
            _log.info("replication: %d change(s) sent, %d received in the last %.0f s",
                      sent, got, now - self._summary_at)
        self._summary_at, self._sent, self._received = now, 0, received

    def _failed(self, error: str, started: float, count: int = 1) -> None:
        """A run that did not reach the peers: status, and the log once per burst."""
        if not self._active:
            # A push that ended after a release: nothing is retried, so it is no unresolved
            # error (status showed it as one for as long as the node stayed standby); the
            # problem and its time stay in last_problem. No verdict (docs/STATUS.md) either:
            self._status["last_sync_ok"] = None  # it said "with problems" for good (a trial)
            self._note_problem(error)
            _log.warning("replication failed: %s (this node is standby now: its changes go "
                         "out when it holds the group again)", error)
            return
        delay = min(self.retry_interval, FIRST_RETRY_S * 2 ** self._failing)
        self._retry_at = time.monotonic() + delay
        # Until the retry interval's full scan (a failed scan lost its hints), the dirty names.
        self._recheck_at = self._retry_at if delay < self.retry_interval else math.inf
        self._status.update(last_error=error, last_sync_ok=False)
        self._unsent_since = self._unsent_since or started
        if not self._failing:
            more = f" (and {count - 1} more problem(s))" if count > 1 else ""
            _log.warning("replication failed: %s%s; retrying in %.1f s, then up to every "
                         "%.0f s, changes kept", error, more, delay, self.retry_interval)
        self._failing += 1
