"""A write through one name of a hard-linked file reaches the peers under its other names too.

inotify reports the name that was written; the other names of the inode changed all the same.
In a user trial the other name waited for the minute's full scan, status saying dirty 0."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sync_harness import pair, replicating

from nonstop.sync import node

HL = "/var/lib/asterisk/hl"


async def test_the_other_names_of_a_written_hard_linked_file_are_pushed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node, "LINKED_RESCAN_S", 1.0, raising=False)
    n1, n2, r1, r2 = await replicating(tmp_path)

    async def until(pred: Any, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < end, "not reached in time"
            await asyncio.sleep(0.02)

    def same(name: str) -> bool:
        a, b = n1.path(name), n2.path(name)
        return b.exists() and b.read_bytes() == a.read_bytes()

    try:
        r1.set_active(True)
        r2.set_active(False)
        await until(lambda: r1.status()["syncs"] >= 1)  # the first full scan
        n1.write(f"{HL}/a", b"A" * 10_000)
        os.makedirs(n1.path("/etc/asterisk/links"), exist_ok=True)
        os.link(n1.path(f"{HL}/a"), n1.path(f"{HL}/b"))  # same directory
        os.link(n1.path(f"{HL}/a"), n1.path("/etc/asterisk/links/c"))  # elsewhere in the tree
        old = time.time() - 600  # written long ago: recorded as settled, not re-checked soon
        os.utime(n1.path(f"{HL}/a"), (old, old))
        names = (f"{HL}/a", f"{HL}/b", "/etc/asterisk/links/c")
        await until(lambda: all(same(n) for n in names) and not r1.status()["pending_hints"])
        runs = r1.status()["syncs"]
        with open(n1.path(f"{HL}/a"), "ab") as f:
            f.write(b"more")
        await until(lambda: r1.status()["syncs"] > runs and same(f"{HL}/a"))
        await until(lambda: all(same(n) for n in names), timeout=3.0)  # not the hour's full scan
        # written again at once (a live log with a second name): a full check for it comes at
        # most every LINKED_RESCAN_S; one owed comes by itself then, with no other change
        runs = r1.status()["syncs"]
        with open(n1.path(f"{HL}/a"), "ab") as f:
            f.write(b"again")
        await until(lambda: r1.status()["syncs"] > runs and same(f"{HL}/a"))
        await until(lambda: all(same(n) for n in names), timeout=3.0)
        assert r1.status()["dirty"] == 0
    finally:
        await r1.stop()
        await r2.stop()
        n1.node.close()
        n2.node.close()


async def test_a_command_line_check_checks_only_the_names_it_is_given(tmp_path: Path) -> None:
    """``nonstop sync -c PATH`` is csync2's: it checks PATH alone; only the daemon's checks of
    inotify's names (``linked_full``) are made full for a hard-linked file."""
    async with pair(tmp_path) as (n1, _n2):
        n1.write(f"{HL}/a", b"A" * 1000)
        os.makedirs(n1.path("/etc/asterisk/links"), exist_ok=True)
        os.link(n1.path(f"{HL}/a"), n1.path("/etc/asterisk/links/c"))
        assert await n1.sync() == []
        with open(n1.path(f"{HL}/a"), "ab") as f:
            f.write(b"more")
        n1.node.check([(f"{HL}/a", False)])
        assert n1.node.db.dirty_names("vpbx1-2") == [f"{HL}/a"]
        n1.node.linked_full = True
        n1.node.check([(f"{HL}/a", False)])
        assert sorted(n1.node.db.dirty_names("vpbx1-2")) == ["/etc/asterisk/links/c", f"{HL}/a"]
