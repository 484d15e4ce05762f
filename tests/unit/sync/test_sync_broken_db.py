"""A damaged state database is set aside and replaced: replication goes on (brokendb).

A user trial overwrote pages of the active node's database while the daemon ran: every later
run failed with "database disk image is malformed" (status `dirty 0`), nothing more reached
the standby, and a restart ran with replication disabled, until the file was removed by hand.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest
from sync_harness import replicating

from nonstop.sync import brokendb
from nonstop.sync.statedb import StateDB


def damage(path: str) -> None:
    """Every other page after the first overwritten, as a disk error or a stray write does."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        for off in range(4096, size, 8192):
            f.seek(off)
            f.write(b"\xa5" * 4096)


def filled(path: str) -> None:
    db = StateDB(path)
    db.mark_dirty("peer", [f"/etc/asterisk/f{i:04d}.conf" for i in range(2000)])
    db.close()


def test_only_a_damaged_file_counts_as_broken(tmp_path: Path) -> None:
    path = str(tmp_path / "n.db3")
    filled(path)
    damage(path)
    db = StateDB(path)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        db.dirty()
    assert brokendb.is_broken(caught.value)
    db.close()
    assert not brokendb.is_broken(sqlite3.OperationalError("database is locked"))
    assert not brokendb.is_broken(OSError(28, "No space left on device"))


def test_a_database_that_is_no_database_is_replaced_at_open(tmp_path: Path) -> None:
    path = str(tmp_path / "n.db3")
    Path(path).write_bytes(os.urandom(8192))
    db, said = brokendb.open_state(path, 1.0)
    assert db.dirty() == []
    db.close()
    assert said is not None and f"moved to {path}.broken" in said
    assert Path(path + ".broken").exists()


async def test_a_database_damaged_under_the_running_replicator_is_replaced(
        tmp_path: Path) -> None:
    n1, n2, r1, r2 = await replicating(tmp_path, retry_interval=1.0)

    async def arrived(name: str, data: bytes, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        target = n2.path(name)
        while not (target.exists() and target.read_bytes() == data):
            assert time.monotonic() < end, f"{name} did not arrive"
            await asyncio.sleep(0.02)

    try:
        r1.set_active(True)
        r2.set_active(False)
        for i in range(300):
            n1.write(f"/var/spool/asterisk/voicemail/default/100/INBOX/m{i:04d}.txt", "x" * i)
        n1.write("/etc/asterisk/sip.conf", b"one\n")
        await arrived("/etc/asterisk/sip.conf", b"one\n")
        # the active's database damaged while it runs
        damage(n1.node.db.path)
        n1.write("/etc/asterisk/sip.conf", b"two\n")
        await arrived("/etc/asterisk/sip.conf", b"two\n")
        assert any("is damaged" in m for m in n1.log), n1.log
        # the standby's too: its server replaces it, the active's retry gets through
        for i in range(300):
            n2.node.db.mark_dirty("vpbx1-1", [f"/etc/asterisk/pad{i:04d}"])
        damage(n2.node.db.path)
        n1.write("/etc/asterisk/sip.conf", b"three\n")
        await arrived("/etc/asterisk/sip.conf", b"three\n")
        assert any("is damaged" in m for m in n2.log), n2.log
        # Status may still hold the error of a run that ended as the standby's server set its
        # damaged database aside under an open session ("Cannot operate on a closed
        # database", seen once in CI, when the file had arrived): the retry must clear it.
        end = time.monotonic() + 10.0
        while r1.status()["last_error"] is not None:
            assert time.monotonic() < end, r1.status()["last_error"]
            await asyncio.sleep(0.05)
    finally:
        await r1.stop()
        await r2.stop()
        n1.node.close()
        n2.node.close()
