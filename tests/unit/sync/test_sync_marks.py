"""Marks made by hand (``-m``, ``-TI``) are dirty entries as csync2 keeps them: a check adds
dirty entries and never takes a mark back; the next update offers the marked file, and the
peer judges it as any other change (already equal: recorded; changed there: a conflict).

An exploratory test found every check throwing marks away: ``-m -r /etc/asterisk`` listed 43
entries, ``-x`` sent nothing and emptied ``-M``, and the wiped standby kept 0 files.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sync_harness import pair

from nonstop.sync.statedb import SCHEMA_VERSION, StateDB

PEER = "vpbx1-2"
CONF = "/etc/asterisk"
NAMES = [f"{CONF}/a.conf", f"{CONF}/b.conf"]


def _dirty(db: StateDB) -> list[str]:
    return db.dirty_names(PEER)


async def test_marked_files_reach_a_peer_that_lost_them_despite_the_check(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        for name in NAMES:
            n1.write(name, name)
        assert await n1.sync() == []
        # The standby's files and its records of them are wiped: our records still say it
        # has them, so a plain -x sends nothing (as csync2's does)
        for name in NAMES:
            n2.path(name).unlink()
        n2.node.db.remove_names(NAMES)
        assert await n1.sync() == []
        assert not n2.path(NAMES[0]).exists()
        # -m -r, then -x: the check keeps the marks, the update sends them
        assert set(NAMES) <= set(n1.node.mark([(CONF, True)]))
        n1.node.check()
        assert set(NAMES) <= set(_dirty(n1.node.db))
        assert await n1.sync() == []
        for name in NAMES:
            assert n2.path(name).read_text() == name
        assert _dirty(n1.node.db) == []


async def test_a_mark_of_a_file_the_peer_changed_is_a_conflict_and_stays(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.write(NAMES[0], "ours")
        assert await n1.sync() == []
        n2.write(NAMES[0], "edited on the standby")
        n1.node.mark([(NAMES[0], False)])
        problems = await n1.sync()
        assert len(problems) == 1 and f"{NAMES[0]} changed on {PEER} since" in problems[0], problems
        assert n2.path(NAMES[0]).read_text() == "edited on the standby"
        assert _dirty(n1.node.db) == [NAMES[0]]  # csync2: "File stays in dirty state"


async def test_a_mark_of_a_file_the_peer_holds_is_recorded_and_cleared(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.write(NAMES[0], "same")
        assert await n1.sync() == []
        n1.node.mark([(NAMES[0], False)])
        assert await n1.sync() == []
        assert _dirty(n1.node.db) == []
        assert n2.path(NAMES[0]).read_text() == "same"


async def test_no_check_takes_back_a_mark_whatever_its_scope(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, _n2):
        for name in NAMES:
            n1.write(name, name)
        assert await n1.sync() == []
        n1.node.mark([(NAMES[0], False)])
        n1.node.check([(NAMES[1], False)])
        n1.node.check([(CONF, True)])
        n1.node.check()
        assert _dirty(n1.node.db) == [NAMES[0]]
        # -TI's marks too
        n1.node.mark_differences([f"X\tvpbx1-1\t{PEER}\t{NAMES[1]}"], False, False)
        n1.node.check()
        assert _dirty(n1.node.db) == NAMES
        # a change and its undo still cancel out for what a check marked
        n1.write(f"{CONF}/c.conf", "new")
        n1.node.check()
        assert f"{CONF}/c.conf" in _dirty(n1.node.db)
        n1.path(f"{CONF}/c.conf").unlink()
        n1.node.check()
        assert _dirty(n1.node.db) == NAMES


_V4_DIRTY = """CREATE TABLE dirty(peer TEXT, name TEXT, forced INTEGER NOT NULL DEFAULT 0,
                                  PRIMARY KEY(peer, name)) WITHOUT ROWID;"""


def test_a_version_4_database_keeps_its_dirty_rows_none_of_them_a_mark(tmp_path: Path) -> None:
    path = str(tmp_path / "n.db3")
    db = StateDB(path)
    db.close()
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("DROP TABLE dirty")
    old.execute(_V4_DIRTY)
    old.execute("INSERT INTO dirty VALUES('p', '/srv/b', 1), ('p', '/srv/c', 0)")
    old.execute("PRAGMA user_version=4")
    old.close()
    db = StateDB(path)
    assert [(r.name, r.forced) for r in db.dirty("p")] == [("/srv/b", True), ("/srv/c", False)]
    assert db._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db._db.execute("SELECT SUM(marked) FROM dirty").fetchone()[0] == 0
    db.close()
