"""A run whose check failed is not over until a check succeeds: its changes were never recorded.

A user trial filled the active node's state file system: each check failed ("database or disk
is full"), the retry 0.5 s later offered the dirty names alone (none: the check had recorded
nothing), and said "replication works again"; status showed "last sync ok, dirty 0, lag 0.00"
while 381 changed files stayed off the standby, and the log said "works again" every 5 s."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from sync_harness import replicating


async def test_a_failed_check_is_retried_whole_and_status_stays_failing(tmp_path: Path) -> None:
    n1, n2, r1, r2 = await replicating(tmp_path, retry_interval=30)
    full = {"on": False}
    check = n1.node.check
    scopes_seen: list[object] = []

    def failing_check(scopes: Any = None, force_new: bool = False) -> dict[str, int]:
        scopes_seen.append(scopes)
        if full["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        return check(scopes, force_new)

    n1.node.check = failing_check  # type: ignore[method-assign]

    async def until(pred: Any, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < end, "not reached in time"
            await asyncio.sleep(0.02)

    try:
        r1.set_active(True)
        r2.set_active(False)
        await until(lambda: r1.status()["syncs"] >= 1)
        full["on"] = True
        n1.write("/etc/asterisk/sip.conf", b"changed while the state disk is full\n")
        await until(lambda: r1.status()["last_sync_ok"] is False)
        # the retries at 0.5, 1 and 2 s: each scans again, each fails; none says "ok"
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            st = r1.status()
            assert st["last_sync_ok"] is False and st["last_error"], st
            await asyncio.sleep(0.02)
        assert len(scopes_seen) >= 4
        full["on"] = False
        target = n2.path("/etc/asterisk/sip.conf")
        await until(lambda: target.exists())  # by the next retry's scan (not in 30 s)
        await until(lambda: r1.status()["last_sync_ok"] is True)
    finally:
        await r1.stop()
        await r2.stop()
        n1.node.close()
        n2.node.close()
