"""SQLite databases in the replicated tree (Asterisk's astdb.sqlite3 under /var/lib/asterisk):
the replica only ever holds a committed state, never a journal; and a file rewritten larger
between the scan and the transfer is not installed as the first bytes of its new content.
Two real nodes over TLS on loopback; the database's writer is another process, as Asterisk."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sync_harness import pair, stop

from nonstop.sync import sqlitefile

DB = "/var/lib/asterisk/astdb.sqlite3"
JOURNAL = DB + "-journal"

# Asterisk's astdb under load, committed to every 2 ms by another process.
WRITER = Path(__file__).parents[2] / "fixtures" / "sqlite" / "astdb_writer.py"


def _integrity(path: Path, scratch: Path) -> str:
    """sqlite's verdict on a copy of ``path`` (the copy alone: no journal beside it)."""
    copy = scratch / "check.sqlite3"
    shutil.copyfile(path, copy)
    try:
        con = sqlite3.connect(copy)
        try:
            return str(con.execute("pragma integrity_check").fetchone()[0])
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        copy.unlink()


async def test_a_database_committed_to_throughout_arrives_only_as_committed(
        tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    async with pair(tmp_path) as (n1, n2):
        src = n1.path(DB)
        writer = subprocess.Popen([sys.executable, str(WRITER), str(src)],
                                  stdout=subprocess.PIPE)
        try:
            assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
            verdicts: dict[bytes, str] = {}  # each version the replica had
            for _ in range(15):
                problems = await n1.sync()
                # A copy grown past what the scan offered waits for the next run; nothing else.
                assert all("not sent: it changed" in p for p in problems), problems
                if n2.path(DB).exists() and (data := n2.path(DB).read_bytes()) not in verdicts:
                    verdicts[data] = _integrity(n2.path(DB), scratch)
                assert not n2.path(JOURNAL).exists()
            # Before the copy under sqlite's lock, every one of these was "malformed".
            assert len(verdicts) >= 8  # one push after another delivered a new version
            assert set(verdicts.values()) == {"ok"}, verdicts.values()
        finally:
            stop(writer)
        # Killed in a commit, it may have left a hot journal: nothing goes until sqlite rolls it
        # back, as Asterisk's next start would.
        problems = await n1.sync()
        assert all("not sent: it changed" in p for p in problems), problems
        sqlite3.connect(src).execute("select count(*) from astdb").fetchone()
        assert await n1.sync() == []
        assert n2.path(DB).read_bytes() == src.read_bytes()


async def test_a_journal_is_never_replicated_and_a_replicated_one_goes(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        # Before the database exists, a file of that name is just a file, and is replicated.
        n1.write(JOURNAL, b"not a journal yet\n")
        assert await n1.sync() == []
        assert n2.path(JOURNAL).exists()
        con = sqlite3.connect(n1.path(DB), isolation_level=None)
        try:
            con.execute("create table t(x)")  # (sqlite deleted that file: not its journal)
            # A transaction in flight: its journal is on disk beside the database.
            con.execute("begin immediate")
            con.execute("insert into t values (1)")
            con.execute("pragma cache_spill = 1")
            assert n1.path(JOURNAL).exists()
            assert await n1.sync() == []
            # The database as last committed (the table, no row), and no journal there.
            assert not n2.path(JOURNAL).exists()
            rows = sqlite3.connect(n2.path(DB)).execute("select count(*) from t").fetchone()
            assert rows == (0,)
            con.execute("commit")
        finally:
            con.close()
        assert await n1.sync() == []
        assert sqlite3.connect(n2.path(DB)).execute("select count(*) from t").fetchone() == (1,)


async def test_a_file_rewritten_larger_after_the_scan_is_not_sent_cut_short(
        tmp_path: Path) -> None:
    conf = "/etc/asterisk/extensions_custom.conf"
    old = b"[custom]\nexten => 100,1,Dial(SIP/100)\n"
    new = b"[custom]\n" + b"".join(b"exten => %d,1,Dial(SIP/%d)\n" % (i, i) for i in range(50))
    async with pair(tmp_path) as (n1, n2):
        n1.write(conf, old)
        assert await n1.sync() == []
        n1.write(conf, old.replace(b"100", b"200"))
        n1.node.check()
        # Rewritten in place, larger, between the scan and the transfer: its first bytes are no
        # version the file ever had, so the peer keeps the old one until the next run.
        with open(n1.path(conf), "r+b") as fh:
            fh.write(new)
        report = await n1.node.update()
        assert [p for p in report.problems if "not sent: it changed" in p], report.problems
        assert report.changing == report.problems  # the daemon's next run sends it: no failure
        assert n2.path(conf).read_bytes() == old
        assert await n1.sync() == []
        assert n2.path(conf).read_bytes() == new


def test_what_is_a_rollback_database() -> None:
    head = sqlitefile.MAGIC + b"\x10\x00\x01\x01"
    assert sqlitefile.is_rollback_database(head)
    assert not sqlitefile.is_rollback_database(sqlitefile.MAGIC + b"\x10\x00\x02\x02")  # WAL
    assert not sqlitefile.is_rollback_database(b"SQLite format 2\x00\x10\x00\x01\x01")
    assert not sqlitefile.is_rollback_database(sqlitefile.MAGIC)


def _database(path: Path) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("create table t(x)")
    con.execute("insert into t values (1)")
    con.close()


def test_no_copy_while_a_writer_holds_the_database_or_a_dead_ones_journal_waits(
        tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    _database(db)
    fd = os.open(db, os.O_RDONLY)
    try:
        copied = sqlitefile.committed_copy(fd, str(db))
        assert copied is not None
        os.close(copied[0])
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("begin exclusive")
        assert sqlitefile.committed_copy(fd, str(db)) is None
        con.execute("rollback")
        # A transaction holding only RESERVED has not touched the database file yet.
        con.execute("begin immediate")
        con.execute("insert into t values (2)")
        copied = sqlitefile.committed_copy(fd, str(db))
        assert copied is not None
        os.close(copied[0])
        con.execute("rollback")
        con.close()
        # A writer died in a commit: its journal is there and nobody holds RESERVED.
        (tmp_path / "a.sqlite3-journal").write_bytes(sqlitefile.JOURNAL_MAGIC + b"\0" * 504)
        assert sqlitefile.committed_copy(fd, str(db)) is None
        # A persisted journal (zeroed header) is no hot one.
        (tmp_path / "a.sqlite3-journal").write_bytes(b"\0" * 512)
        copied = sqlitefile.committed_copy(fd, str(db))
        assert copied is not None
        os.close(copied[0])
    finally:
        os.close(fd)


def test_our_read_lock_holds_a_writers_commit_back(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    _database(db)
    fd = os.open(db, os.O_RDONLY)
    con = sqlite3.connect(db, isolation_level=None, timeout=0)
    try:
        assert sqlitefile.shared(fd)
        con.execute("begin immediate")
        con.execute("insert into t values (2)")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            con.execute("commit")
        sqlitefile.release(fd)
        con.execute("commit")
    finally:
        con.close()
        os.close(fd)


def test_only_a_databases_journal_is_one(tmp_path: Path) -> None:
    _database(tmp_path / "a.sqlite3")
    (tmp_path / "a.sqlite3-journal").write_bytes(b"")
    (tmp_path / "notes-journal").write_bytes(b"x")
    (tmp_path / "notes").write_bytes(b"\0" * 1024)
    assert sqlitefile.is_journal(str(tmp_path / "a.sqlite3-journal"))
    assert not sqlitefile.is_journal(str(tmp_path / "notes-journal"))
    assert not sqlitefile.is_journal(str(tmp_path / "missing-journal"))


async def test_a_cancelled_copy_waits_for_its_thread_and_leaks_nothing() -> None:
    from nonstop.sync.sender import _close_copy
    from nonstop.tasks import in_thread_made

    made: list[int] = []

    def copy() -> tuple[int, os.stat_result]:
        time.sleep(0.2)  # the worker thread still copying when the task is cancelled
        fd = os.memfd_create("test-copy")
        made.append(fd)
        return fd, os.fstat(fd)

    task = asyncio.ensure_future(in_thread_made(_close_copy, copy))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # and again: a shutdown's time limit after a takeover's end of sessions
    with pytest.raises(asyncio.CancelledError):
        await task
    # The cancellation went on only once the thread was done, and its copy was closed.
    assert len(made) == 1
    with pytest.raises(OSError):
        os.fstat(made[0])


def test_a_file_system_without_locks_reads_the_database_as_any_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "a.sqlite3"
    _database(db)

    def no_locks(fd: int, cmd: int, arg: bytes = b"") -> bytes:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "fcntl", no_locks)
    fd = os.open(db, os.O_RDONLY)
    try:
        # Not taken for a committed copy: sqlite cannot lock there either.
        with pytest.raises(sqlitefile.NoLocks):
            sqlitefile.committed_copy(fd, str(db))
        # The scan hashes it as any file and does not fail.
        from nonstop.sync.scan import describe
        seen = describe(str(db), None, time.time_ns())
        assert seen is not None and seen.state.size == db.stat().st_size
    finally:
        os.close(fd)


async def test_a_replaced_database_takes_no_journal_of_the_old_one(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        _database(n1.path(DB))
        assert await n1.sync() == []
        # vpbx1-2 lost power in a commit of its own once: a hot journal of its old database.
        hot = sqlitefile.JOURNAL_MAGIC + bytes(range(256)) * 8
        n2.write(JOURNAL, hot)
        con = sqlite3.connect(n1.path(DB), isolation_level=None)
        con.execute("insert into t values (2)")
        con.close()
        assert await n1.sync() == []
        # The peer's committed copy replaced it; sqlite would have rolled it back with that
        # journal's pages, so the journal went with the old file.
        assert not n2.path(JOURNAL).exists()
        assert sqlite3.connect(n2.path(DB)).execute("select count(*) from t").fetchone() == (2,)
