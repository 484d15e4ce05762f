"""The sqlite state database: what each file looked like at the last sync, per peer.

Tables:
  local(name, state, ino, ctime_ns, checked_ns)  this node's last scan (a cache for hashing)
  synced(peer, name, state)                      what ``peer`` holds, as of the last sync with it
  dirty(peer, name, forced)                      names to send to ``peer`` (``-M`` lists them)
  forced(peer, path, recursive)                  ``-f`` scopes: make the peer equal to us there
  tmpfiles(path)                                 receive temp files that may exist (cleanup list)

Every public method is one transaction; callers batch many files into one call.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nonstop.sync.patterns import in_scope
from nonstop.sync.scan import Seen
from nonstop.sync.state import FileState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local(name TEXT PRIMARY KEY, state TEXT NOT NULL, ino INTEGER,
                                 ctime_ns INTEGER, checked_ns INTEGER);
CREATE TABLE IF NOT EXISTS synced(peer TEXT, name TEXT, state TEXT NOT NULL,
                                  PRIMARY KEY(peer, name));
CREATE TABLE IF NOT EXISTS dirty(peer TEXT, name TEXT, forced INTEGER NOT NULL DEFAULT 0,
                                 PRIMARY KEY(peer, name));
CREATE TABLE IF NOT EXISTS forced(peer TEXT, path TEXT, recursive INTEGER,
                                  PRIMARY KEY(peer, path));
CREATE TABLE IF NOT EXISTS tmpfiles(path TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
"""


def _enc(state: FileState) -> str:
    return json.dumps(state.to_wire(), separators=(",", ":"), ensure_ascii=False)


def _dec(text: str) -> FileState:
    return FileState.from_wire(json.loads(text))


@dataclass(frozen=True)
class DirtyRow:
    peer: str
    name: str
    forced: bool


def _like_prefix(path: str) -> str:
    esc = path.rstrip("/").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return esc + "/%"


class StateDB:
    """One node's state database (WAL, safe to share between the daemon and a cron run)."""

    def __init__(self, path: str, timeout: float = 12.0) -> None:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=timeout, check_same_thread=False,
                                   isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self)

    # --- local scan cache
    def local_get(self, name: str) -> Seen | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state, ino, ctime_ns, checked_ns FROM local WHERE name=?", (name,)
            ).fetchone()
        return None if row is None else Seen(_dec(row[0]), row[1], row[2], row[3])

    def local_all(self) -> dict[str, Seen]:
        with self._lock:
            rows = self._db.execute("SELECT name, state, ino, ctime_ns, checked_ns FROM local")
            return {r[0]: Seen(_dec(r[1]), r[2], r[3], r[4]) for r in rows}

    def local_in(self, scopes: Iterable[tuple[str, bool]]) -> dict[str, Seen]:
        """Cached entries under the scopes."""
        out: dict[str, Seen] = {}
        with self._lock:
            for path, rec in scopes:
                q = "SELECT name, state, ino, ctime_ns, checked_ns FROM local WHERE name=?"
                args: tuple[str, ...] = (path,)
                if rec:
                    if path == "/":
                        q = "SELECT name, state, ino, ctime_ns, checked_ns FROM local"
                        args = ()
                    else:
                        q += " OR name LIKE ? ESCAPE '\\'"
                        args = (path, _like_prefix(path))
                for r in self._db.execute(q, args):
                    out[r[0]] = Seen(_dec(r[1]), r[2], r[3], r[4])
        return out

    # --- synced states
    def synced_for(self, peer: str, names: Iterable[str] | None = None) -> dict[str, FileState]:
        """What ``peer`` holds per our records (all names, or only ``names``)."""
        with self._lock:
            if names is None:
                rows = self._db.execute("SELECT name, state FROM synced WHERE peer=?", (peer,))
                return {r[0]: _dec(r[1]) for r in rows}
            out: dict[str, FileState] = {}
            for n in names:
                row = self._db.execute(
                    "SELECT state FROM synced WHERE peer=? AND name=?", (peer, n)
                ).fetchone()
                if row is not None:
                    out[n] = _dec(row[0])
            return out

    def synced_in(self, peer: str, scopes: Iterable[tuple[str, bool]]) -> dict[str, FileState]:
        allrows = self.synced_for(peer)
        scopes = list(scopes)
        return {n: s for n, s in allrows.items() if any(in_scope(n, p, r) for p, r in scopes)}

    # --- check: one transaction for a whole scan
    def record_check(
        self,
        scopes: list[tuple[str, bool]],
        seen: dict[str, Seen],
        peers: Iterable[str],
        force_new: bool = False,
    ) -> dict[str, list[str]]:
        """Store a scan of ``scopes`` and recompute which names are dirty for each peer.

        A name is dirty for a peer when our state differs from what that peer holds per the last
        sync (or it is gone here but the peer has it). Returns the dirty names per peer.
        """
        result: dict[str, list[str]] = {}
        with self._tx() as db:
            old = self.local_in(scopes)
            gone = [n for n in old if n not in seen]
            db.executemany("DELETE FROM local WHERE name=?", ((n,) for n in gone))
            db.executemany(
                "INSERT OR REPLACE INTO local VALUES(?,?,?,?,?)",
                (
                    (n, _enc(s.state), s.ino, s.ctime_ns, s.checked_ns)
                    for n, s in seen.items()
                    if (o := old.get(n)) is None or o != s
                ),
            )
            for peer in peers:
                synced = self.synced_in(peer, scopes)
                dirty = [n for n, s in seen.items() if not s.state.same(synced.get(n))]
                dirty += [n for n in synced if n not in seen]
                clean = [n for n in synced if n in seen and seen[n].state.same(synced[n])]
                clean += [n for n in old if n not in seen and n not in synced]
                db.executemany(
                    "DELETE FROM dirty WHERE peer=? AND name=? AND forced=0",
                    ((peer, n) for n in clean),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO dirty VALUES(?,?,?)",
                    ((peer, n, int(force_new)) for n in dirty),
                )
                result[peer] = sorted(dirty)
        return result

    # --- dirty / forced
    def dirty(self, peer: str | None = None) -> list[DirtyRow]:
        with self._lock:
            if peer is None:
                rows = self._db.execute("SELECT peer, name, forced FROM dirty ORDER BY peer, name")
            else:
                rows = self._db.execute(
                    "SELECT peer, name, forced FROM dirty WHERE peer=? ORDER BY name", (peer,)
                )
            return [DirtyRow(r[0], r[1], bool(r[2])) for r in rows]

    def add_forced(self, peers: Iterable[str], path: str, recursive: bool) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO forced VALUES(?,?,?)",
                ((p, path, int(recursive)) for p in peers),
            )

    def forced(self, peer: str) -> list[tuple[str, bool]]:
        with self._lock:
            rows = self._db.execute("SELECT path, recursive FROM forced WHERE peer=?", (peer,))
            return [(r[0], bool(r[1])) for r in rows]

    def clear_forced(self, peer: str, scopes: Iterable[tuple[str, bool]]) -> None:
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
                        "INSERT OR REPLACE INTO synced VALUES(?,?,?)", (peer, name, _enc(state))
                    )
                if clear_dirty:
                    db.execute("DELETE FROM dirty WHERE peer=? AND name=?", (peer, name))

    def record_received(
        self, peer: str, done: Iterable[tuple[str, FileState | None, Seen | None]]
    ) -> None:
        """We applied ``peer``'s states: both sides now hold them; refresh our scan cache."""
        with self._tx() as db:
            for name, state, seen in done:
                if state is None:
                    db.execute("DELETE FROM synced WHERE peer=? AND name=?", (peer, name))
                    db.execute("DELETE FROM local WHERE name=?", (name,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO synced VALUES(?,?,?)", (peer, name, _enc(state))
                    )
                    if seen is not None:
                        db.execute(
                            "INSERT OR REPLACE INTO local VALUES(?,?,?,?,?)",
                            (name, _enc(seen.state), seen.ino, seen.ctime_ns, seen.checked_ns),
                        )
                db.execute("DELETE FROM dirty WHERE peer=? AND name=?", (peer, name))

    def mark_dirty(self, peer: str, names: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO dirty VALUES(?,?,0)", ((peer, n) for n in names))

    # --- temp files
    def add_tmp(self, paths: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO tmpfiles VALUES(?)", ((p,) for p in paths))

    def drop_tmp(self, paths: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM tmpfiles WHERE path=?", ((p,) for p in paths))

    def tmp_paths(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT path FROM tmpfiles")]

    # --- stale entries (-R)
    def names(self) -> set[str]:
        with self._lock:
            out = {r[0] for r in self._db.execute("SELECT name FROM local")}
            out |= {r[0] for r in self._db.execute("SELECT name FROM synced")}
            out |= {r[0] for r in self._db.execute("SELECT name FROM dirty")}
            return out

    def remove_names(self, names: Iterable[str]) -> None:
        with self._tx() as db:
            for n in names:
                db.execute("DELETE FROM local WHERE name=?", (n,))
                db.execute("DELETE FROM synced WHERE name=?", (n,))
                db.execute("DELETE FROM dirty WHERE name=?", (n,))

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES(?,?)", (key, value))


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


def iter_chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
