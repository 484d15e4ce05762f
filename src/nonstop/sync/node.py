"""One node's replication engine: check, force, update, compare, and what the CLI lists.

The CLI (``nonstop sync``) and the daemon's :class:`~nonstop.sync.replicator.Replicator` both
drive :class:`Node`. Scans and database work run in a worker thread (``asyncio.to_thread``) so the
daemon's event loop, which also carries heartbeats, never waits on a disk. The network is in
:mod:`~nonstop.sync.client` (pushing) and :mod:`~nonstop.sync.server` (receiving), both thin
shells around the sans-IO :mod:`~nonstop.sync.session`; the csync2-compatible listings and
markings are in :mod:`~nonstop.sync.listings`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from functools import partial

from nonstop.config.csync2 import DEFAULT_PORT, load_key
from nonstop.config.errors import ConfigError, Location
from nonstop.sync import brokendb, csync2db
from nonstop.sync.checkorder import OrderedScan
from nonstop.sync.context import (
    ALL,
    GroupCtx,
    Options,
    Out,
    Report,
    SyncError,
    log_out,
    overlaps,
    quiet,
)
from nonstop.sync.listings import CsyncListings
from nonstop.sync.patterns import Matcher, PathMap, Scope, in_scope
from nonstop.sync.scan import Brief, Seen, scan_changes, scan_loading
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB

# asyncio, TLS and the network code (client, server, session) are loaded when a node first
# talks to a peer: a `nonstop sync -x` from cron that finds nothing to send, or a `-c`, never
# needs them, and they are most of its start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

    from nonstop.sync.client import Client

__all__ = ["ALL", "Node", "Options", "Report", "Scope", "SyncError", "log_out", "open_node"]

# A peer the heartbeats declare dead and a connection did not reach is left out of pushes for
# this long, then tried again (after the live peers): each try can wait a connect timeout.
UNREACHABLE_RETRY_S = 300.0
# A check that finds a hard-linked file changed is made a full one at most this often.
LINKED_RESCAN_S = 5.0
# The daemon's page cache of its state database (issue 15: an idle node stays under 25 MB PSS).
# With sqlite's default (2000 KiB) the cache held the whole database and grew with it: ~12 KB a
# minute in a replicating soak of the talk's pair (a voicemail file every 2 s; ~0.4 KB of
# database per file, so 2 MB at ~5,000 files), and freed heap is never given back (mlockall).
# What a push reads (the b-trees' inner pages, a few leaves) fits in far less; a page past the
# bound is read again from the OS's cache. Measured on a 20,000-file database (7 MB): a lookup
# by name 30 us instead of 17, a full read and the join of a check no slower (sqlite's default
# cannot hold it either), one transaction writing all 20,000 rows (a takeover's first push)
# 0.35 s instead of 0.17 s. `nonstop sync` (over in seconds) keeps sqlite's default.
DAEMON_CACHE_KIB = 256


class Node(CsyncListings):
    """The replication engine of one node (``me``) for every group that lists it."""

    def __init__(self, opts: Options, out: Out = quiet) -> None:
        self.opts = opts
        self.me = opts.me
        self.out = out
        groups = opts.config.groups_for(opts.me)
        if not groups:
            raise ConfigError(Location(opts.config.path),
                              f"host '{opts.me}' is not a member of any group")
        self.groups = [
            GroupCtx(g, Matcher(g.patterns), PathMap(opts.root, opts.config.prefixes, opts.me))
            for g in groups
        ]
        db_path = opts.db_path or os.path.join(opts.state_dir, f"{opts.me}.db3")
        aside = csync2db.set_aside(db_path)
        if aside is not None:
            out(0, csync2db.notice(db_path, aside))
        self.db, broken = brokendb.open_state(db_path, float(opts.config.lock_timeout),
                                              opts.cache_kib)
        if broken is not None:
            out(0, broken)
        self._renewing = threading.Lock()
        # The daemon's checks of inotify's names: one that finds a hard-linked file changed is
        # made full (``check``; a command line's -c checks what it was told). The last such
        # check, and when the next one is owed.
        self.linked_full = False
        self._linked_at, self.linked_due_at = -math.inf, math.inf
        self.ignore = opts.config.ignore
        # The daemon keeps one session per peer open between runs (no TLS handshake per
        # change); a one-shot `nonstop sync` closes its sessions at the end of the run.
        self.keep_sessions = False
        # Set by the daemon: why a push from a peer (by name) is refused now, or None. While
        # this node holds a group, a peer that claims none (a split brain's loser releasing, a
        # push it planned before this node took over) must not overwrite its files.
        self.push_refusal: Callable[[str], str | None] | None = None
        # Told (peer, names) when a peer's forced push overwrote unsynced changes here.
        self.on_overwritten: Callable[[str, list[str]], None] | None = None
        # Set by the daemon: the peers its heartbeats declare dead. A push skips them (their
        # names stay dirty): each run waited on a dead peer first, 33 s for the next change to
        # reach a live one and 3 s for every later change. A `nonstop sync` tries every peer,
        # those the daemon that ran it names dead ($NONSTOP_SYNC_DEAD_PEERS) last and briefly.
        self.dead_peers: frozenset[str] = frozenset()
        # Peers the last connection attempt did not reach, and when. A peer dead to the
        # heartbeats is skipped only while it is here too (for UNREACHABLE_RETRY_S): a
        # heartbeat link cut while the LAN works (a crossover pulled) must not stop pushes
        # that still get through, and a dead peer is tried again now and then, after the rest.
        self.unreachable: dict[str, float] = {}
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """The pushing side of the network code, made (and imported) on first use."""
        if self._client is None:
            from nonstop.sync.client import Client

            self._client = Client(self)
        return self._client

    def close(self) -> None:
        self.db.close()

    def renew_db(self, db: StateDB, e: BaseException) -> bool:
        """After ``e`` from the state database ``db``: if it says the file is damaged, set it
        aside and go on with a new one (:mod:`~nonstop.sync.brokendb`); a session still
        holding the old one fails on it and is tried again. Whether ``db`` is replaced (by
        this call or an earlier one: the server and the pushes may both meet the damage)."""
        if not brokendb.is_broken(e):
            return False
        with self._renewing:
            if self.db is not db:
                return True
            db.close()
            aside = brokendb.set_aside(db.path)
            self.db = StateDB(db.path, timeout=float(self.opts.config.lock_timeout),
                              cache_kib=self.opts.cache_kib)
        self.out(0, brokendb.notice(db.path, aside, e))
        return True

    # ------------------------------------------------------------------------- check (-c)
    def check(self, scopes: list[Scope] | None = None, force_new: bool = False) -> dict[str, int]:
        """Scan ``scopes`` and mark changes dirty for every peer; returns dirty counts per peer."""
        scopes = scopes or ALL
        counts: dict[str, int] = {}
        for g in self.groups:
            for peer, names in self._check_group(g, scopes, force_new).items():
                counts[peer] = counts.get(peer, 0) + len(names)
        return counts

    def _check_group(self, g: GroupCtx, scopes: list[Scope],
                     force_new: bool = False) -> dict[str, list[str]]:
        sc = scopes
        seen, same, cache, unfound = self._check_scan(g, sc)
        if self.linked_full and sc is not ALL and _hard_linked(g, seen):
            # A write through one name of a hard-linked file changes its other names, of
            # which inotify says nothing: they waited for the minute's full scan (status
            # said dirty 0 meanwhile, a user trial). This check is made a full one, at
            # most every LINKED_RESCAN_S (a live log with a second name is appended to
            # all the time); a later one is owed meanwhile (``linked_due_at``).
            self.linked_due_at = min(self.linked_due_at, self._linked_at + LINKED_RESCAN_S)
            if time.monotonic() >= self.linked_due_at:
                sc, self._linked_at = ALL, time.monotonic()
                seen, same, cache, unfound = self._check_scan(g, sc)
        if sc is ALL:
            self.linked_due_at = math.inf
        peers = [h.name for h in g.group.peers(self.me)]
        dirty = self.db.record_check(sc, seen, peers, force_new, old=cache,
                                     owns=self.owns(g), unchanged=same, unfound=unfound)
        for peer, names in dirty.items():
            for n in names:
                self.out(2, f"dirty for {peer}: {n}")
        return dirty

    def _check_scan(self, g: GroupCtx, scopes: list[Scope]) -> tuple[
            dict[str, Seen], set[str], Mapping[str, Seen | Brief], list[str] | None]:
        """What is new or not as recorded (described), the names found as recorded, the
        recorded rows compared, and the recorded names not found (None: every recorded name
        not in the first two). Names found as recorded are only counted (their rows are
        neither loaded whole nor written): a no-change check of 20,000 files builds no Seen
        for them. A check of a single scope (the whole tree, every minute) holds one
        directory at a time (checkorder); several scopes (inotify's) go the old way."""
        now_ns = time.time_ns()
        if len(scopes) == 1:
            (path, rec), = scopes
            got = OrderedScan(g.matcher, g.paths, (path, rec), self.db.local_many,
                              now_ns).check(self.db.briefs_in_order(path, rec))
            if got is not None:
                seen, unfound, old = got
                return seen, set(), old, unfound
        seen, same, cache = scan_changes(g.matcher, g.paths, scopes,
                                         partial(self.db.local_briefs_in, scopes),
                                         self.db.local_many, now_ns)
        return seen, same, cache, None

    def states(self, g: GroupCtx, scopes: list[Scope]) -> dict[str, FileState]:
        """What the disk holds in ``scopes`` for group ``g`` now (nothing recorded): each
        scope walked in name order beside its recorded rows (checkorder), so only the files
        not as recorded are described; a scope that cannot be walked so, the old way."""
        now_ns = time.time_ns()
        out: dict[str, FileState] = {}
        for path, rec in scopes:
            got = OrderedScan(g.matcher, g.paths, (path, rec), self.db.local_many,
                              now_ns).states(self.db.briefs_in_order(path, rec, states=True))
            if got is None:
                got = {n: s.state for n, s in scan_loading(
                    g.matcher, g.paths, [(path, rec)], partial(self.db.local_in, [(path, rec)]),
                    now_ns)[0].items()}
            out.update(got)
        return out

    def check_scopes(self, g: GroupCtx, scopes: list[Scope]) -> dict[str, FileState]:
        """Check ``scopes`` for group ``g`` (recorded, dirty for its peers; each scope in name
        order) and return what the disk holds there: the states just recorded. A forced
        push of every include at takeover loaded whole rows and every lstat at once: 50 MB
        of Python objects for 20,000 files."""
        for scope in scopes:
            self._check_group(g, [scope])
        return self.db.local_states_in(scopes, g.matcher.included)

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
                # Only what the group replicates, or a directory holding some of it: a forced
                # scope with nothing of the group in it would be listed by -M and make each
                # -x contact the peers, where csync2 ignores such a path.
                if g.matcher.holds(path, rec):
                    self.db.add_forced(peers, path, rec)

    def addresses(self, among: Collection[str]) -> dict[str, list[str]]:
        """What the pushes to the peers ``among`` these connect to (a name or an address;
        one per csync2 group, which may name another address for the same peer)."""
        out: dict[str, list[str]] = {}
        for g in self.groups:
            for h in g.group.peers(self.me):
                if h.name in among:
                    where = self.client.address(g, h.name)
                    if where not in out.setdefault(h.name, []):
                        out[h.name].append(where)
        return out

    def ignored(self, scopes: list[Scope]) -> list[Scope]:
        """The command-line scopes that hold nothing any group replicates."""
        return [s for s in scopes if not any(g.matcher.holds(*s) for g in self.groups)]

    # ------------------------------------------------------------------------- update (-u)
    async def update(self, scopes: list[Scope] | None = None,
                     only: Iterable[str] | None = None, unforced: bool = False) -> Report:
        """Send dirty and forced entries to every peer (or the ``only`` ones; csync2 ``-P``),
        one connection each; the peers :attr:`dead_peers` names last, and none that is also
        :attr:`unreachable`. ``unforced``: the dirty entries alone, none of them forced (a
        standby's catch-up must not impose its version on a peer that may hold newer)."""
        import asyncio

        report = Report()
        wanted = None if only is None else set(only)
        for g in self.groups:
            me_host = g.group.host(self.me)
            for host in sorted(g.group.peers(self.me), key=lambda h: h.name in self.dead_peers):
                peer = host.name
                if (wanted is not None and peer not in wanted) or (
                        peer in self.dead_peers and time.monotonic()
                        < self.unreachable.get(peer, -UNREACHABLE_RETRY_S) + UNREACHABLE_RETRY_S):
                    continue
                forced, rows = await asyncio.to_thread(self._pending, g, peer, scopes)
                if unforced:
                    forced, rows = [], [(name, False) for name, _ in rows]
                if not forced and not rows:
                    continue
                if me_host is not None and me_host.slave:
                    report.problems.append(f"{self.me} is a slave in '{g.group.name}': not pushing")
                    continue
                await self.client.push(g, peer, forced, rows, report)
        return report

    def has_pending(self, scopes: list[Scope] | None = None,
                    only: Iterable[str] | None = None) -> bool:
        """Whether :meth:`update` with these arguments has anything to send to anyone (if not,
        it would contact no peer)."""
        wanted = None if only is None else set(only)
        for g in self.groups:
            sends = self._sends(g, scopes)
            for h in g.group.peers(self.me):
                if wanted is not None and h.name not in wanted:
                    continue
                # Only the names: a first sync has 20,000 dirty rows, and update() reads
                # them whole again.
                if self._forced_in(h.name, scopes) or any(map(sends, self.db.dirty_names(h.name))):
                    return True
        return False

    def _forced_in(self, peer: str, scopes: list[Scope] | None) -> list[Scope]:
        return [s for s in self.db.forced(peer)
                if scopes is None or any(overlaps(s, t) for t in scopes)]

    def _sends(self, g: GroupCtx, scopes: list[Scope] | None) -> Callable[[str], bool]:
        """Whether a dirty name is group ``g``'s to send within ``scopes`` (None: all)."""
        owns = self.owns(g)

        def sends(name: str) -> bool:
            return ((scopes is None or any(in_scope(name, p, rec) for p, rec in scopes))
                    and (owns is None or owns(name)))
        return sends

    def _pending(self, g: GroupCtx, peer: str, scopes: list[Scope] | None
                 ) -> tuple[list[Scope], list[tuple[str, bool]]]:
        """The forced scopes and dirty rows for ``peer`` within ``scopes`` (None: all)."""
        sends = self._sends(g, scopes)
        rows = [(r.name, r.forced) for r in self.db.dirty(peer) if sends(r.name)]
        return self._forced_in(peer, scopes), rows

    async def close_sessions(self) -> None:
        """Close the sessions kept open between runs (``keep_sessions``)."""
        await self.client.close_sessions()

    def drop_sessions(self, peer: str) -> None:
        """End the sessions a push is using with ``peer`` and close, in the background, those
        kept (declared dead: a session half-open to it must not be what this push, or the one
        after its return, waits on)."""
        import asyncio

        client = self._client
        if client is None:
            return
        client.abort_busy(peer, f"{peer} declared dead by the heartbeats")
        for key in [k for k in client.kept if k[1] == peer]:
            link, _since = client.kept.pop(key)
            # No BYE: nobody answers it. Closed the way the client closes a stale session.
            task = asyncio.ensure_future(link.chan.close())
            client._closing.add(task)
            task.add_done_callback(client._closing.discard)

    # ------------------------------------------------------------------------- compare (-T)
    async def compare(self, scopes: list[Scope] | None = None,
                      peer: str | None = None) -> tuple[list[str], list[str]]:
        """Compare disks (not databases) with each peer (or only ``peer``):
        ``X|L|R  me  peer  name`` lines."""
        return await self.client.compare(scopes or ALL, peer)

    async def run_actions(self, g: GroupCtx, names: Iterable[str], receiving: bool) -> None:
        """Run the group's actions for the changed ``names``."""
        from nonstop.sync import actions as act

        for item in act.due(g.group.actions, names, receiving=receiving):
            try:
                rc = await act.run(item)
            except OSError as e:
                self.out(0, f"action {item.command!r} failed to start: {e}")
                continue
            self.out(0 if rc else 1,  # a failed action is a warning in the daemon's log
                     f"action {item.command!r} for {len(item.files)} file(s) exited {rc}")


def _hard_linked(g: GroupCtx, seen: Mapping[str, Seen]) -> bool:
    """Whether a regular file among those a check found changed has other hard links."""
    for name, s in seen.items():
        if s.kind == "reg":
            try:
                if os.lstat(g.paths.local(name)).st_nlink > 1:
                    return True
            except (OSError, KeyError):  # gone since, or a name this host has no path for
                continue
    return False


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
    """Read csync2.cfg and open ``me``'s replication engine (ConfigError names file:line), as
    the daemon runs it: its state database's page cache is bounded (DAEMON_CACHE_KIB).

    Messages go to the ``nonstop.sync`` logger unless ``out`` is given.
    """
    from nonstop.config.csync2 import load_csync2

    cfg = load_csync2(config_path)
    for g in cfg.groups_for(me):
        load_key(g)  # a bad key is a config error now, not at the first connection
    return Node(Options(cfg, me, state_dir, None, root, port, dict(addresses or {}), listen,
                        cache_kib=DAEMON_CACHE_KIB), out)


