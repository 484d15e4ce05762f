"""The sqlite state database: what each file looked like at the last sync, per peer.

Tables:
  local(name, state, ino, ctime_ns, checked_ns, blocks, verified_ns, verify_pos, stepped_ns)
                                                 this node's last scan (a cache for hashing)
  synced(peer, name, state)                      what ``peer`` holds, as of the last sync with it
  dirty(peer, name, forced)                      names to send to ``peer`` (``-M`` lists them)
  marks(peer, name)                              of those, the ones marked by hand (-m, -TI)
  forced(peer, path, recursive)                  ``-f`` scopes: make the peer equal to us there
  tmpfiles(path)                                 receive temp files that may exist (cleanup list)
  appends(path, ino, size, mtime_ns)             files being appended to in place: their size and
                                                 mtime before, to cut them back after a crash

Every public method is one transaction; callers batch many files into one call.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Mapping
from typing import Any

from nonstop.records import record
from nonstop.sync.checkorder import FoundAfter
from nonstop.sync.patterns import Owner
from nonstop.sync.scan import Brief, Seen
from nonstop.sync.schema import SCHEMA, SCHEMA_VERSION
from nonstop.sync.state import FileState

_ORDERED = ("local", "synced", "dirty")
# A mark lives as long as its dirty entry (a later entry of the name is no mark).
_STALE_MARKS = "DELETE FROM marks WHERE (peer, name) NOT IN (SELECT peer, name FROM dirty)"

# States are stored as columns, in FileState's field order: rows compare and load as tuples.
_STATE = "kind, mode, uid, gid, size, mtime_ns, digest, target, rdev"
_LOCAL = (f"name, {_STATE}, ino, ctime_ns, checked_ns, blocks, verified_ns, verify_pos, "
          "stepped_ns")

# FileState.same() between our row and the peer's, as SQL (see FileState.key()).
_DIFFERING = """
SELECT l.name FROM local l LEFT JOIN synced s ON s.peer=? AND s.name=l.name
WHERE (s.name IS NULL OR l.kind IS NOT s.kind OR l.mode IS NOT s.mode OR l.uid IS NOT s.uid
       OR l.gid IS NOT s.gid OR l.digest IS NOT s.digest OR l.target IS NOT s.target
       OR l.rdev IS NOT s.rdev
       OR (l.kind='reg' AND l.size IS NOT s.size)
       OR (l.kind IN ('reg', 'fifo', 'chr', 'blk') AND l.mtime_ns IS NOT s.mtime_ns))"""

# Above this many names, reading a whole table beats a query per name (or per 500 names).
MANY_NAMES = 5000
BRIEF_PAGE = 500  # rows a check in name order reads at a time
# scan.Brief's columns, after the name (a row from before verified_ns existed reads as 0).
_BRIEF = ("name, kind, mode, uid, gid, size, mtime_ns, ino, ctime_ns, checked_ns, "
          "COALESCE(verified_ns, 0)")
_INSERT_LOCAL = "INSERT OR REPLACE INTO local VALUES(" + ",".join("?" * 17) + ")"


def _cols(state: FileState) -> tuple[object, ...]:
    return (state.kind, state.mode, state.uid, state.gid, state.size, state.mtime_ns,
            state.digest, state.target, state.rdev)


def _local_row(name: str, s: Seen) -> tuple[object, ...]:
    return (name, *s)


@record
class DirtyRow:
    """A name to send to a peer; ``forced`` wins the next conflict."""

    peer: str
    name: str
    forced: bool


def _scope_where(path: str, recursive: bool, col: str = "name") -> tuple[str, tuple[str, ...]]:
    """A WHERE clause for the names in a scope: the path itself and, recursive, every name
    below it, as a range of the primary key ("/a/" <= name < "/a0": "0" follows "/"), so
    sqlite reads only that part of its index."""
    if not recursive:
        return f"{col}=?", (path,)
    if path == "/":
        return "1", ()
    base = path.rstrip("/")
    return f"{col}=? OR ({col}>=? AND {col}<?)", (path, base + "/", base + "0")


class StateDB:
    """One node's state database (WAL, safe to share between the daemon and a cron run); the
    page cache of its connection holds at most ``cache_kib`` KiB (sqlite's default: 2000)."""

    def __init__(self, path: str, timeout: float = 12.0, cache_kib: int = 2000) -> None:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=timeout, check_same_thread=False,
                                   isolation_level=None)
        self._lock = threading.RLock()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"cache_size={-cache_kib:d}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            self._db.executescript(SCHEMA)
            return
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"written by a newer nonstop (schema {version}; this one reads {SCHEMA_VERSION} "
                f"and older): run that version, or move the database away to start afresh")
        with self._tx() as db:
            if version < 3:
                db.execute("DROP TABLE IF EXISTS local")
            old = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            moved = [t for t in _ORDERED if t in old]
            for t in moved:
                db.execute(f"ALTER TABLE {t} RENAME TO old_{t}")
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            for t in moved:
                cols = ", ".join(r[1] for r in db.execute(f"PRAGMA table_info(old_{t})"))
                db.execute(f"INSERT OR REPLACE INTO {t}({cols}) SELECT {cols} FROM old_{t}")
                db.execute(f"DROP TABLE old_{t}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self)

    # --- local scan cache
    def local_get(self, name: str) -> Seen | None:
        """The cached scan entry of one name."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_LOCAL} FROM local WHERE name=?", (name,)
            ).fetchone()
        return None if row is None else Seen.from_row(row[1:])

    def _rows_named(self, columns: str, names: list[str]) -> Iterator[tuple[Any, ...]]:
        """``columns`` (the name first) of the ``local`` rows of these names (queries of 500
        names, one pass over the table for very many). Hold ``_lock`` while iterating."""
        if len(names) > MANY_NAMES:
            wanted = set(names)
            yield from (r for r in self._db.execute(f"SELECT {columns} FROM local")
                        if r[0] in wanted)
            return
        for i in range(0, len(names), 500):  # sqlite's host-parameter limit is 999+
            part = names[i : i + 500]
            marks = ",".join("?" * len(part))
            yield from self._db.execute(
                f"SELECT {columns} FROM local WHERE name IN ({marks})", part)

    def _rows_in(self, columns: str, scopes: Iterable[tuple[str, bool]]
                 ) -> Iterator[tuple[Any, ...]]:
        """``columns`` (the name first) of the ``local`` rows under the scopes. Hold
        ``_lock`` while iterating."""
        for path, rec in scopes:
            where, args = _scope_where(path, rec)
            yield from self._db.execute(f"SELECT {columns} FROM local WHERE {where}", args)

    def local_many(self, names: list[str]) -> dict[str, Seen]:
        """Cached entries for these names (queries of 500 names, a table scan for very many)."""
        with self._lock:
            return {r[0]: Seen.from_row(r[1:]) for r in self._rows_named(_LOCAL, names)}

    def local_states(self, names: list[str]) -> dict[str, FileState]:
        """The recorded states of these names (only the FileState columns of their rows)."""
        with self._lock:
            return {r[0]: FileState(*r[1:]) for r in self._rows_named(f"name, {_STATE}", names)}

    def local_all(self) -> dict[str, Seen]:
        """Every cached scan entry."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_LOCAL} FROM local")
            return {r[0]: Seen.from_row(r[1:]) for r in rows}

    def local_in(self, scopes: Iterable[tuple[str, bool]]) -> dict[str, Seen]:
        """Cached entries under the scopes."""
        with self._lock:
            return {r[0]: Seen.from_row(r[1:]) for r in self._rows_in(_LOCAL, scopes)}

    def local_briefs_in(self, scopes: Iterable[tuple[str, bool]]) -> dict[str, Brief]:
        """The brief cache entries under the scopes (what a no-change check compares)."""
        new = tuple.__new__
        with self._lock:
            return {r[0]: new(Brief, r[1:]) for r in self._rows_in(_BRIEF, scopes)}

    def briefs_in_order(self, path: str, recursive: bool, states: bool = False,
                        ) -> Iterator[tuple[str, Brief, FileState | None]]:
        """(name, Brief, with ``states`` the FileState) of the ``local`` rows in one scope, in
        name order, read a page at a time (checkorder): nothing but a page is held, nor the
        lock between pages."""
        where, args = _scope_where(path, recursive)
        new = tuple.__new__
        last = ""
        cols = f"{_BRIEF}, digest, target, rdev" if states else _BRIEF
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {cols} FROM local WHERE ({where}) AND name>? ORDER BY name "
                    f"LIMIT {BRIEF_PAGE}", (*args, last)).fetchall()
            if not rows:
                return
            for r in rows:
                yield r[0], new(Brief, r[1:11]), (FileState(*r[1:7], *r[11:]) if states
                                                  else None)
            last = rows[-1][0]

    def _has_local(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM local WHERE name=?", (name,)).fetchone() is not None

    def local_states_in(self, scopes: Iterable[tuple[str, bool]],
                        keep: Callable[[str], bool]) -> dict[str, FileState]:
        """The recorded states under the scopes of the names ``keep`` says."""
        with self._lock:
            return {r[0]: FileState(*r[1:]) for r in self._rows_in(f"name, {_STATE}", scopes)
                    if keep(r[0])}

    # --- synced states
    def known_with(self, name: str, peers: Iterable[str]) -> bool:
        """Whether ``name`` has a record of a sync with, or a change pending for, any of
        ``peers`` (a deletion here that a dead peer has yet to get is such a change)."""
        with self._lock:
            return any(self._db.execute(
                f"SELECT 1 FROM {table} WHERE peer=? AND name=?", (peer, name)
            ).fetchone() is not None for table in ("synced", "dirty") for peer in peers)

    def synced_for(self, peer: str, names: Iterable[str] | None = None) -> dict[str, FileState]:
        """What ``peer`` holds per our records (all names, or only ``names``).

        Many names are read in one pass over the peer's rows, not a query each: a first
        sync of 20,000 files made 20,000 queries that found nothing (about 50 ms)."""
        with self._lock:
            if names is not None and not isinstance(names, list | tuple):
                names = list(names)
            if names is None or len(names) > MANY_NAMES:
                rows = self._db.execute(f"SELECT name, {_STATE} FROM synced WHERE peer=?", (peer,))
                if names is None:
                    return {r[0]: FileState(*r[1:]) for r in rows}
                wanted = set(names)
                return {r[0]: FileState(*r[1:]) for r in rows if r[0] in wanted}
            out: dict[str, FileState] = {}
            for n in names:
                row = self._db.execute(
                    f"SELECT {_STATE} FROM synced WHERE peer=? AND name=?", (peer, n)
                ).fetchone()
                if row is not None:
                    out[n] = FileState(*row)
            return out

    def _differing(self, peer: str, scopes: list[tuple[str, bool]]) -> list[str]:
        """Names in ``local`` under the scopes whose state differs from what ``peer`` holds
        (FileState.same() as SQL: directory and link mtimes, and sizes of anything but a
        regular file, do not count), or that ``peer`` lacks."""
        out: list[str] = []
        with self._lock:
            for path, rec in scopes:
                where, args = _scope_where(path, rec, "l.name")
                out += [r[0] for r in self._db.execute(_DIFFERING + f" AND ({where})",
                                                         (peer, *args))]
        return out

    def _peer_only(self, peer: str, scopes: list[tuple[str, bool]]) -> list[str]:
        """Names ``peer`` holds under the scopes that ``local`` does not have."""
        out: list[str] = []
        with self._lock:
            for path, rec in scopes:
                where, args = _scope_where(path, rec, "s.name")
                out += [r[0] for r in self._db.execute(
                    "SELECT s.name FROM synced s WHERE s.peer=? AND "
                    "NOT EXISTS (SELECT 1 FROM local l WHERE l.name=s.name)"
                    f" AND ({where})", (peer, *args))]
        return out

    def _dirty_derived(self, peer: str) -> set[str]:
        """The names dirty for ``peer`` only because a check found them different: neither
        forced nor marked by hand, so a check that finds them equal again takes them back."""
        with self._lock:
            return {r[0] for r in self._db.execute(
                "SELECT name FROM dirty d WHERE peer=? AND forced=0 AND NOT EXISTS (SELECT 1 FROM "
                "marks m WHERE m.peer=d.peer AND m.name=d.name)", (peer,))}

    def synced_in(self, peer: str, scopes: Iterable[tuple[str, bool]]) -> dict[str, FileState]:
        """What ``peer`` holds per our records, under the scopes (each a range of the primary
        key: a forced push of one directory does not load the peer's every row)."""
        out: dict[str, FileState] = {}
        with self._lock:
            for path, rec in scopes:
                where, args = _scope_where(path, rec)
                for r in self._db.execute(
                        f"SELECT name, {_STATE} FROM synced WHERE peer=? AND ({where})",
                        (peer, *args)):
                    out[r[0]] = FileState(*r[1:])
        return out

    # --- check: one transaction for a whole scan
    def record_check(
        self,
        scopes: list[tuple[str, bool]],
        seen: dict[str, Seen],
        peers: Iterable[str],
        force_new: bool = False,
        old: Mapping[str, Seen | Brief] | None = None,
        owns: Owner | None = None,
        unchanged: Collection[str] = (),
        unfound: list[str] | None = None,
    ) -> dict[str, list[str]]:
        """Store a scan of ``scopes`` and recompute which names are dirty for each peer.

        A name is dirty for a peer when our state differs from what that peer holds per the last
        sync (or it is gone here but the peer has it). Returns the dirty names per peer.
        ``old`` is the scan cache the caller already loaded for these scopes, if any. ``owns``
        limits what the scan speaks for to one group's names: with several groups in csync2.cfg,
        one group's scan must neither forget another's entries nor take them for deletions.
        The rows of names no group includes (``owns.kept``) are forgotten, and so are the
        dirty rows of such names for these peers, in any scope (a database from before this
        rule holds their deletions). ``unchanged`` are further names the scan found exactly
        as ``old`` records them (not in ``seen``, and not written again). With ``unfound``
        (the recorded names the scan did not find, checkorder) every other recorded name under
        the scopes was found, and ``old`` holds only the rows of the names in ``seen``.
        """
        result: dict[str, list[str]] = {}
        with self._tx() as db:
            db.execute(_STALE_MARKS)
            if old is None:
                old = self.local_in(scopes)
            present: Container[str] = seen.keys() | unchanged if unchanged else seen
            # Only names the scan did not see are tested against the patterns (the scan
            # includes what it sees): a no-change check of 20,000 files tests none.
            gone = unfound if unfound is not None else [n for n in old if n not in present]
            stale: list[str] = []
            if owns is not None:
                stale = [n for n in gone if not owns.kept(n)]
                gone = [n for n in gone if owns(n)]
            absent: set[str] | None = None  # the rows under the scopes not found and kept
            if unfound is not None:
                absent = set(unfound) - set(gone) - set(stale)
                present = FoundAfter(self._has_local, scopes, absent)
            self._forget(db, stale)
            db.executemany("DELETE FROM local WHERE name=?", ((n,) for n in gone))
            went = set(gone)
            db.executemany(
                _INSERT_LOCAL,
                (
                    _local_row(n, s)
                    for n, s in seen.items()
                    if (o := old.get(n)) is None or (o is not s and o != s)
                ),
            )
            for peer in peers:
                # Compared in sqlite, over the rows just written: a no-change check of 20,000
                # files builds no state objects for it.
                # Rows of local under the scopes, and names local lacks: with ``absent``
                # known, neither needs asking (a first check of 20,000 files: 20,000 queries).
                dirty = [n for n in self._differing(peer, scopes)
                         if (n not in absent if absent is not None else n in present)]
                theirs = [n for n in self._peer_only(peer, scopes)
                          if absent is not None or n not in present]
                if owns is not None:
                    self._forget(db, [n for n in theirs if not owns.kept(n)], peer)
                    self._forget(db, [n for n in self.dirty_names(peer) if not owns.kept(n)],
                                 peer)
                    theirs = [n for n in theirs if owns(n)]
                dirty += theirs
                dirty = list(dict.fromkeys(dirty))  # overlapping scopes name a file twice
                now_dirty = set(dirty)
                clean = [n for n in self._dirty_derived(peer)
                         if n not in now_dirty and (n in present or n in went)]
                db.executemany(
                    "DELETE FROM dirty WHERE peer=? AND name=? AND forced=0",
                    ((peer, n) for n in clean),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO dirty(peer, name, forced) VALUES(?,?,?)",
                    ((peer, n, int(force_new)) for n in dirty),
                )
                result[peer] = sorted(dirty)
        return result

    @staticmethod
    def _forget(db: sqlite3.Connection, names: list[str], peer: str | None = None) -> None:
        """Drop every row of these names (only ``peer``'s synced and dirty rows, if given)."""
        if peer is None:
            db.executemany("DELETE FROM local WHERE name=?", ((n,) for n in names))
            for table in ("synced", "dirty", "marks"):
                db.executemany(f"DELETE FROM {table} WHERE name=?", ((n,) for n in names))
            return
        for table in ("synced", "dirty", "marks"):
            db.executemany(f"DELETE FROM {table} WHERE peer=? AND name=?",
                           ((peer, n) for n in names))

    # --- dirty / forced
    def dirty(self, peer: str | None = None) -> list[DirtyRow]:
        """Dirty entries, for one peer or all, in name order."""
        with self._lock:
            if peer is None:
                rows = self._db.execute("SELECT peer, name, forced FROM dirty ORDER BY peer, name")
            else:
                rows = self._db.execute(
                    "SELECT peer, name, forced FROM dirty WHERE peer=? ORDER BY name", (peer,)
                )
            return [DirtyRow(r[0], r[1], bool(r[2])) for r in rows]

    def dirty_count(self) -> int:
        """How many dirty entries there are, for all peers (status's ``dirty``)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM dirty").fetchone()[0])

    def dirty_names(self, peer: str) -> list[str]:
        """The names dirty for ``peer``, in name order."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT name FROM dirty WHERE peer=? ORDER BY name", (peer,))]

    def add_forced(self, peers: Iterable[str], path: str, recursive: bool) -> None:
        """Record a ``-f`` scope for these peers (kept until the peer was made equal)."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO forced VALUES(?,?,?)",
                ((p, path, int(recursive)) for p in peers),
            )

    def forced(self, peer: str) -> list[tuple[str, bool]]:
        """Pending ``-f`` scopes for a peer."""
        with self._lock:
            rows = self._db.execute("SELECT path, recursive FROM forced WHERE peer=?", (peer,))
            return [(r[0], bool(r[1])) for r in rows]

    def clear_forced(self, peer: str, scopes: Iterable[tuple[str, bool]]) -> None:
        """The peer was made equal within these scopes."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM forced WHERE peer=? AND path=?", ((peer, p) for p, _ in scopes)
            )

    # --- results of a session
    def record_sent(
        self, peer: str, done: Iterable[tuple[str, FileState | None]], clear_dirty: bool = True
    ) -> None:
        """``peer`` now holds these states (None = the name is gone there)."""
        with self._tx() as db:
            for name, state in done:
                if state is None:
                    db.execute("DELETE FROM synced WHERE peer=? AND name=?", (peer, name))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO synced VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                        (peer, name, *_cols(state)),
                    )
                if clear_dirty:
                    db.execute("DELETE FROM dirty WHERE peer=? AND name=?", (peer, name))

    def record_received(
        self, peer: str, done: Iterable[tuple[str, FileState | None, Seen | None]]
    ) -> None:
        """We applied ``peer``'s states: both sides now hold them; refresh our scan cache."""
        done = list(done)
        if len({name for name, _, _ in done}) == len(done):
            # Each name once (a batch's records): a statement per kind of change for all
            # rows, not three per row from Python (20,000 rows on a first sync).
            put = [(n, st, seen) for n, st, seen in done if st is not None]
            gone = [(peer, n) for n, st, _ in done if st is None]
            with self._tx() as db:
                db.executemany("DELETE FROM synced WHERE peer=? AND name=?", gone)
                db.executemany("DELETE FROM local WHERE name=?", [(n,) for _, n in gone])
                db.executemany("INSERT OR REPLACE INTO synced VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                               [(peer, n, *_cols(st)) for n, st, _ in put])
                db.executemany(_INSERT_LOCAL,
                               [_local_row(n, seen) for n, _, seen in put if seen is not None])
                db.executemany("DELETE FROM dirty WHERE peer=? AND name=?",
                               [(peer, n) for n, _, _ in done])
            return
        with self._tx() as db:
            for name, state, seen in done:
                if state is None:
                    db.execute("DELETE FROM synced WHERE peer=? AND name=?", (peer, name))
                    db.execute("DELETE FROM local WHERE name=?", (name,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO synced VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                        (peer, name, *_cols(state)),
                    )
                    if seen is not None:
                        db.execute(
                            _INSERT_LOCAL,
                            _local_row(name, seen),
                        )
                db.execute("DELETE FROM dirty WHERE peer=? AND name=?", (peer, name))

    def mark_dirty(self, peer: str, names: Iterable[str], by_hand: bool = False) -> None:
        """Mark names to send to ``peer`` (an entry already dirty keeps its force flag).
        ``by_hand`` (``-m``, ``-TI``): no check takes it back (csync2's only add entries); the
        peer judges it by what it holds, and only its taking the name clears it."""
        rows = [(peer, n) for n in names]
        with self._tx() as db:
            db.execute(_STALE_MARKS)
            db.executemany("INSERT OR IGNORE INTO dirty VALUES(?,?,0)", rows)
            db.executemany("INSERT OR IGNORE INTO marks VALUES(?,?)", rows if by_hand else ())

    # --- temp files
    def add_tmp(self, paths: Iterable[str]) -> None:
        """Record receive temp files before they are created."""
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO tmpfiles VALUES(?)", ((p,) for p in paths))

    def drop_tmp(self, paths: Iterable[str]) -> None:
        """Forget temp files that were renamed into place or removed."""
        with self._tx() as db:
            db.executemany("DELETE FROM tmpfiles WHERE path=?", ((p,) for p in paths))

    def add_append(self, path: str, ino: int, size: int, mtime_ns: int) -> None:
        """Record a file about to be appended to in place, as it is now (before any write)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO appends VALUES(?,?,?,?)",
                       (path, ino, size, mtime_ns))

    def drop_appends(self, paths: Iterable[str]) -> None:
        """The appends to these files were committed or undone."""
        with self._tx() as db:
            db.executemany("DELETE FROM appends WHERE path=?", ((p,) for p in paths))

    def appends(self) -> list[tuple[str, int, int, int]]:
        """In-place appends an earlier session may have left half done."""
        with self._lock:
            return list(self._db.execute("SELECT path, ino, size, mtime_ns FROM appends"))

    def tmp_paths(self) -> list[str]:
        """Temp files an earlier session may have left behind."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT path FROM tmpfiles")]

    # --- stale entries (-R)
    def names(self) -> set[str]:
        """Every name the database knows (for ``-R``)."""
        with self._lock:
            out = {r[0] for r in self._db.execute("SELECT name FROM local")}
            out |= {r[0] for r in self._db.execute("SELECT name FROM synced")}
            out |= {r[0] for r in self._db.execute("SELECT name FROM dirty")}
            return out

    def remove_names(self, names: Iterable[str]) -> None:
        """Forget names entirely (``-R``)."""
        with self._tx() as db:
            for n in names:
                db.execute("DELETE FROM local WHERE name=?", (n,))
                db.execute("DELETE FROM synced WHERE name=?", (n,))
                db.execute("DELETE FROM dirty WHERE name=?", (n,))


class _Tx:
    """``with db._tx() as conn:`` one IMMEDIATE transaction under the object lock."""

    def __init__(self, owner: StateDB) -> None:
        self._owner = owner

    def __enter__(self) -> sqlite3.Connection:
        self._owner._lock.acquire()
        try:
            self._owner._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._owner._lock.release()
            raise
        return self._owner._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._owner._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._owner._lock.release()
