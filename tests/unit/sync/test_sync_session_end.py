"""A receiving session ended while its commit runs in a worker thread: the file and the state
database must still agree. A session cancelled once waits for its commit in flight; cancelled
again (a shutdown's time limit after a takeover ended the sessions), its clean-up undid the
batch beside the still-running commit, cutting back an append the commit then recorded as
received: a replica shorter than its record. Two real nodes over TLS on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest
from sync_harness import pair

from nonstop.sync import fsops
from nonstop.sync.digest import Hasher

LOG = "/var/log/asterisk/full"


def _digest(data: bytes) -> str:
    h = Hasher()
    h.update(data)
    return h.hexdigest()


async def test_a_session_ended_during_its_commit_leaves_file_and_record_agreeing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(tmp_path) as (n1, n2):
        old = b"[Dec  6 21:00:00] NOTICE first line\n" * 4000
        n1.write(LOG, old)
        assert await n1.sync() == []
        with open(n1.path(LOG), "ab") as fh:
            fh.write(b"[Dec  6 21:00:01] NOTICE appended\n" * 100)
        new = n1.path(LOG).read_bytes()

        entered, gate = threading.Event(), threading.Event()
        flush = fsops.flush

        def held_flush(paths: list[str]) -> None:  # the commit's first step, in its thread
            entered.set()
            gate.wait(10)
            flush(paths)

        monkeypatch.setattr(fsops, "flush", held_flush)  # the receiver calls fsops.flush
        n1.node.check()
        push = asyncio.ensure_future(n1.node.update())
        assert await asyncio.to_thread(entered.wait, 10)
        server = n2.server
        assert server is not None
        sessions = list(server._tasks)
        await server.close()  # the takeover's end of sessions: their tasks cancelled
        n2.server = None
        await asyncio.sleep(0.1)  # each session now waits for its commit in flight...
        for t in sessions:  # ...unless cancelled again (a shutdown's time limit)
            t.cancel()
        await asyncio.sleep(0.2)  # the session's clean-up has started beside the commit
        gate.set()
        await asyncio.gather(*sessions, return_exceptions=True)
        with contextlib.suppress(Exception):
            await push
        monkeypatch.undo()

        data = n2.path(LOG).read_bytes()
        assert data in (old, new)
        record = n2.node.db.synced_for("vpbx1-1", [LOG])[LOG]
        assert (record.size, record.digest) == (len(data), _digest(data))
