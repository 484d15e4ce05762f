"""Marks made by hand (``-m``, ``-TI``) are dirty entries as csync2 keeps them: a check adds
dirty entries and never takes a mark back; the next update offers the marked file, and the
peer judges it as any other change (already equal: recorded; changed there: a conflict).

An exploratory test found every check throwing marks away: ``-m -r /etc/asterisk`` listed 43
entries, ``-x`` sent nothing and emptied ``-M``, and the wiped standby kept 0 files.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sync_harness import pair

from nonstop.sync.schema import SCHEMA_VERSION
from nonstop.sync.statedb import StateDB

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


def test_a_database_without_marks_gains_them_and_the_release_before_still_reads_it(
        tmp_path: Path) -> None:
    """A node rolled back to the release before marks must keep replicating: a schema it
    cannot read (a dirty table with a column more) disabled its replication, and it still
    took the group over with stale files (a rolling-upgrade trial)."""
    path = str(tmp_path / "n.db3")
    db = StateDB(path)
    db.close()
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("DROP TABLE marks")  # as the release before left it
    old.execute("INSERT INTO dirty VALUES('p', '/srv/b', 1), ('p', '/srv/c', 0)")
    old.close()
    db = StateDB(path)
    assert [(r.name, r.forced) for r in db.dirty("p")] == [("/srv/b", True), ("/srv/c", False)]
    db.mark_dirty("p", ["/srv/d"], by_hand=True)
    db.close()
    # What the release before reads and writes is unchanged: its version, its dirty table.
    old = sqlite3.connect(path, isolation_level=None)
    assert old.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert [r[1] for r in old.execute("PRAGMA table_info(dirty)")] == ["peer", "name", "forced"]
    old.execute("INSERT OR IGNORE INTO dirty VALUES('p', '/srv/e', 0)")
    old.execute("PRAGMA user_version=9")  # a newer release's database
    old.close()
    with pytest.raises(sqlite3.DatabaseError, match=r"written by a newer nonstop \(schema 9; "
                                                    r"this one reads 4 and older\)"):
        StateDB(path)
