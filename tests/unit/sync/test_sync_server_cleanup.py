"""A receiver whose state database fills up mid-session: one line for the session, one for its
clean-up, never a traceback; the temp files it could not forget are forgotten next time.

The bug: on a nearly full disk a ``nonstop sync -iii`` receiver said ``session from vpbx1-1
dropped: OperationalError: database or disk is full`` and then printed ``Task exception was
never retrieved`` with a traceback: the clean-up (``Receiver.close`` -> ``_drop`` ->
``StateDB.drop_tmp``) failed the same way inside the session's task. Here the server's state
directory is a 1 MiB tmpfs that fills up once the first batch's offer is judged (its temp files
recorded): its commit, the next batch's offer and then the clean-up fail on a really full disk.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_harness import pair

from nonstop.sync import client, plan
from nonstop.sync.receiver import Receiver


class TinyDisk:
    """A 1 MiB tmpfs at ``path`` that :meth:`fill` fills up and :meth:`free` empties."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, bytes(65536))
        except OSError:
            pass
        try:
            while True:
                os.write(fd, b"x")
        except OSError:
            pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def server_disk(tmp_path: Path) -> Iterator[TinyDisk]:
    """vpbx1-2's state directory (see sync_harness.make_node) on a tiny tmpfs of its own."""
    state = tmp_path / "vpbx1-2-state"
    state.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs",
                           str(state)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield TinyDisk(state)
    finally:
        if subprocess.run(["umount", str(state)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(state)], check=True)


async def wait_until(check: Any, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


async def test_a_full_state_disk_costs_one_line_each_and_the_next_session_cleans_up(
        tmp_path: Path, server_disk: TinyDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unhandled.append(ctx))
    judge = Receiver.evaluate

    def judge_then_fill(self: Receiver, ops: Any) -> Any:
        out = judge(self, ops)  # the offer's temp files are recorded now
        server_disk.fill()
        return out

    monkeypatch.setattr(Receiver, "evaluate", judge_then_fill)
    # Two files a batch: the failed commit of the first shows at the second's offer.
    monkeypatch.setattr(client, "batches", lambda ops: plan.batches(ops, max_ops=2))
    async with pair(tmp_path) as (n1, n2):
        assert n2.server is not None
        stats = n2.server.stats
        for i in range(4):
            n1.write(f"/etc/asterisk/conf{i}.conf", f"[section{i}]\n" * 50)
        async with asyncio.timeout(20):
            problems = await n1.sync()
        await wait_until(lambda: stats.get("errors", 0) >= 1 and not n2.server._tasks,
                         "the session to fail and end")
        for _ in range(3):  # a task that ended with an exception reports it when collected
            gc.collect()
            await asyncio.sleep(0)
        assert unhandled == [], "an exception escaped the session's task"
        dropped = [m for m in n2.log if "dropped" in m or "ended" in m]
        why = f"state database {n2.node.db.path} on vpbx1-2: database or disk is full"
        assert dropped == [f"session from vpbx1-1 ended: {why}"]
        # The pushing side learns why (it said "connection closed by peer").
        assert any(why in p for p in problems), problems
        cleanup = [m for m in n2.log if "clean-up" in m]
        assert cleanup == ["session from vpbx1-1: could not record the clean-up of its temp "
                           "files in the state database (database or disk is full): the next "
                           "session's clean-up does"]
        recorded = n2.node.db.tmp_paths()
        assert recorded, "the temp files it could not forget stay recorded"
        assert not any(os.path.exists(p) for p in recorded), "the temp files themselves go"

        monkeypatch.setattr(Receiver, "evaluate", judge)
        server_disk.free()
        async with asyncio.timeout(20):
            assert await n1.sync() == []
        await wait_until(lambda: (n2.root / "etc/asterisk/conf3.conf").exists(),
                         "the files to arrive")
        assert n2.node.db.tmp_paths() == []
        assert unhandled == []
