"""The csync2-compatible local listings and markings behind ``nonstop sync`` (no network).

``-cI``, ``-m``, ``-TI``, ``-o``, ``-cW``, ``-L``, ``-ud``, ``-M``, ``-R``: each reads or marks this
node's state database; :class:`~nonstop.sync.node.Node` has them by inheriting
:class:`CsyncListings`.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable

from nonstop.sync.context import ALL, GroupCtx, overlaps
from nonstop.sync.digest import blocks_match, prefix_hasher
from nonstop.sync.patterns import Matcher, Owner, Scope, in_scope
from nonstop.sync.plan import COPY_MIN, Op, plan
from nonstop.sync.quickcli import dirty_listing, scope_shown
from nonstop.sync.scan import scan
from nonstop.sync.state import FileState
from nonstop.sync.statedb import StateDB

# Names checked per file for a grown copy (CsyncListings._grown_copies): a block read each.
GROWN_CANDIDATES = 8

_KIND_BITS = {"reg": 0o100000, "dir": 0o040000, "lnk": 0o120000, "fifo": 0o010000,
              "chr": 0o020000, "blk": 0o060000}


class CsyncListings:
    """The listings and markings of one node (mixed into its engine)."""

    me: str
    db: StateDB
    groups: list[GroupCtx]
    # csync2 -G: names the groups left out of this run include (their rows are kept).
    kept_beyond: Callable[[str], bool] | None = None

    def owns(self, g: GroupCtx) -> Owner:
        """Which names are group ``g``'s, and which are any group's: a name none includes
        is forgotten by a check, not taken for a deletion (nor pushed)."""
        beyond = self.kept_beyond
        if len(self.groups) == 1 and beyond is None:
            return Owner(g.matcher.included, g.matcher.included)
        groups = self.groups
        return Owner(g.matcher.included,
                     lambda n: any(h.matcher.included(n) for h in groups)
                     or (beyond is not None and beyond(n)))

    def plan_for(self, peer: str, rows: list[tuple[str, bool]]) -> tuple[list[Op], list[str]]:
        """The operations that bring ``peer`` up to date on dirty ``rows``, and the names
        already settled (nothing to send)."""
        names = [n for n, _ in rows]
        local = self.db.local_states(names)
        synced = self.db.synced_for(peer, names)
        pl = plan(rows, local, synced)
        return self._grown_copies(list(pl.ops)), list(pl.settled)

    def _grown_copies(self, ops: list[Op]) -> list[Op]:
        """Name a copy source for a file that starts with the bytes the peer holds under a
        name this plan deletes or replaces with something smaller, in the same directory: a
        log renamed by logrotate that its program wrote on until it reopened its log (``full``
        -> ``full.1``, then the last lines). The peer copies that prefix; the rest goes as an
        append. A name that starts the file's name is tried first (``full`` for ``full.1``),
        at most GROWN_CANDIDATES in all, each one block read here (the scan's block digests
        cover the rest). A log that only grows makes no candidate."""
        gone: dict[str, list[tuple[str, FileState]]] = {}
        for op in ops:
            old = op.base
            if (old is not None and old.kind == "reg" and old.size >= COPY_MIN
                    and (op.new is None or op.new.size < old.size)):
                gone.setdefault(os.path.dirname(op.name), []).append((op.name, old))
        if not gone:
            return ops
        out: list[Op] = []
        for op in ops:
            new = op.new
            if (op.kind == "put" and not op.src and not op.forced and new is not None
                    and new.kind == "reg"):
                here = [(n, o) for n, o in gone.get(os.path.dirname(op.name), [])
                        if n != op.name and o.size < new.size]
                here.sort(key=lambda c: not op.name.startswith(c[0]))
                for name, old in here[:GROWN_CANDIDATES]:
                    if self._starts_with(op.name, new, old):
                        op = Op("put", op.name, op.base, new, False, name, old)
                        break
            out.append(op)
        return out

    def _starts_with(self, name: str, new: FileState, old: FileState) -> bool:
        """Whether our file ``name`` (a regular file as scanned: ``new``) starts with
        ``old``'s bytes."""
        g = next((g for g in self.groups if g.matcher.included(name)), None)
        seen = self.db.local_get(name)
        if (g is None or seen is None or seen.state.digest != new.digest
                or not blocks_match(seen.blocks, new.size, new.digest)):
            return False
        try:
            fd = os.open(g.paths.local(name),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, KeyError):
            return False
        try:
            st = os.fstat(fd)
            return (stat.S_ISREG(st.st_mode) and st.st_size >= new.size
                    and prefix_hasher(fd, seen.blocks, old.size, old.digest) is not None)
        except OSError:
            return False
        finally:
            os.close(fd)

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
            self.db.record_check(scopes, seen, [], old=cache, owns=self.owns(g))
            n += len(seen)
        return n

    def mark(self, scopes: list[Scope]) -> list[str]:
        """``-m``: mark names (``-r``: and the recorded names below them) dirty for every peer."""
        marked: set[str] = set()
        for g in self.groups:
            names = {p for p, _ in scopes if g.matcher.included(p)}
            names |= {n for n in self.db.local_in(scopes) if g.matcher.included(n)}
            for h in g.group.peers(self.me):
                self.db.mark_dirty(h.name, sorted(names), by_hand=True)
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
                    self.db.mark_dirty(t, [name], by_hand=True)
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
            kind_bits = _KIND_BITS.get(st.kind, 0)
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
        for peer in self.peer_names():
            if wanted is not None and peer not in wanted:
                continue
            rows = [(r.name, r.forced) for r in self.db.dirty(peer)
                    if scopes is None or any(in_scope(r.name, p, rec) for p, rec in scopes)]
            ops, _settled = self.plan_for(peer, rows)
            for op in ops:
                if op.kind == "mv":
                    lines.append(f"?D: {peer:<15} {op.src}")
                tag = "!M" if op.forced else "?D" if op.kind == "del" else "?M"
                lines.append(f"{tag}: {peer:<15} {op.name}")
            for path, rec in self.db.forced(peer):
                if scopes is None or any(overlaps((path, rec), t) for t in scopes):
                    lines.append(f"!M: {peer:<15} {scope_shown(path, rec)} "
                                 "(pending forced sync: the peer is made equal here)")
        return lines

    def peer_names(self) -> list[str]:
        """This node's peers in the groups' order, each once (groups may share a peer)."""
        return list(dict.fromkeys(h.name for g in self.groups for h in g.group.peers(self.me)))

    # ------------------------------------------------------------------------- -M / -R
    def dirty_lines(self) -> list[str]:
        """``-M``: ``force|chary  me  peer  name`` per dirty entry and forced scope."""
        return dirty_listing(self.db, self.me, self.peer_names())

    def remove_stale(self) -> list[str]:
        """``-R``: forget database entries the configuration no longer matches."""
        stale = sorted(
            n for n in self.db.names() if not any(g.matcher.included(n) for g in self.groups)
        )
        self.db.remove_names(stale)
        return stale
