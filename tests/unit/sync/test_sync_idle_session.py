"""A kept session the pusher lets go between runs (idle for KEEP_IDLE_S, closed when its next
push comes) ends without a word on the receiving node: it was a warning there, and status's
last_problem, each time a PBX got busy again after a quiet spell (a user trial)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sync_harness import pair

from nonstop.sync import client


async def test_an_idle_kept_session_closed_by_the_pusher_is_no_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.node.keep_sessions = True
        n1.write("/etc/asterisk/a.conf", "one\n")
        assert await n1.sync() == []
        assert n2.server is not None
        assert n2.server._tasks  # the session is kept open
        monkeypatch.setattr(client, "KEEP_IDLE_S", 0.0)  # idle long enough: let go, not reused
        n1.write("/etc/asterisk/a.conf", "two\n")
        assert await n1.sync() == []
        end = time.monotonic() + 5
        while len(n2.server._tasks) > 1:  # the first session's end seen by the server
            assert time.monotonic() < end
            await asyncio.sleep(0.01)
        assert n2.path("/etc/asterisk/a.conf").read_text() == "two\n"
        assert not [m for m in n2.log if "ended" in m], n2.log
        await n1.node.close_sessions()
