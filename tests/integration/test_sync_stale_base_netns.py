"""A push broken after the standby committed a batch, before the sender read its results.

The user trial: a log appended to on the active node went in one batch, a big voicemail in
the next; the standby's receiver was killed while the voicemail streamed. The standby had
committed the log (and recorded it as synced with vpbx1-1); the sender reads a batch's RESULTS
only at its next VERDICT or at the end of the run, so it still held the older log as the
standby's. Every later push was then a conflict ("changed on both") though nobody wrote on
the standby. The next push must simply go through.
"""

from __future__ import annotations

import glob
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from test_sync_netns import SYNC, SyncLab

from nonstop.lab import Lab, wait_for

pytestmark = pytest.mark.netns

LOG = "/var/log/asterisk/messages"
ATTEMPTS = 4  # the break must fall between the commit and the sender's read of its results


def _synced_size(slab: SyncLab, host: str, peer: str) -> int | None:
    db = glob.glob(str(slab.base / host / "state" / "*.db3"))[0]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT size FROM synced WHERE peer=? AND name=?",
                          (peer, LOG)).fetchone()
    finally:
        con.close()
    return None if row is None else int(row[0])


def _log_lines(log: Path, first: int, count: int) -> None:
    with log.open("ab") as fh:
        fh.write(b"".join(b"line %06d NOTICE chan_sip.c: registered\n" % n
                          for n in range(first, first + count)))


def test_the_push_after_one_broken_past_a_commit_is_no_conflict(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    slab = SyncLab(make_lab(("n1", "n2")))
    server = slab.serve("n2")
    r1, r2 = slab.root("n1"), slab.root("n2")
    log, spool2 = r1 / LOG.lstrip("/"), r2 / "var/spool/asterisk"
    _log_lines(log, 0, 2_000)
    code, out = slab.sync("n1", "-xv")
    assert code == 0, out

    def temp_file() -> Path | None:
        return next((p for p in spool2.iterdir() if p.name.startswith(".nonstop-tmp-")), None)

    lines, stale = 2_000, False
    for attempt in range(ATTEMPTS):
        _log_lines(log, lines, 40)
        lines += 40
        size = log.stat().st_size
        with (r1 / f"var/spool/asterisk/msg{attempt:04d}.wav").open("wb") as fh:
            for _ in range(80):  # more than a batch's 64 MB: a batch of its own, after the log
                fh.write(os.urandom(1 << 20))
        pusher = slab.lab.spawn("n1", [*SYNC, "-xv", *slab.args("n1")], name="sync-push")

        def committed_and_streaming(size: int = size) -> bool:
            return temp_file() is not None and _synced_size(slab, "n2", "vpbx1-1") == size

        wait_for(lambda: committed_and_streaming() or None, 60,
                 what="n2 committed the log and receives the voicemail", interval=0.005)
        server.kill()
        pusher.wait(60)
        server = slab.serve("n2")
        if _synced_size(slab, "n1", "vpbx1-2") != size:
            stale = True  # n1 never read the log's results
            break
    assert stale, f"in {ATTEMPTS} pushes n1 always read the log's results before the break"
    _log_lines(log, lines, 40)
    code, out = slab.sync("n1", "-xv", timeout=120)
    assert code == 0, out
    assert "conflict" not in out
    assert (r2 / LOG.lstrip("/")).read_bytes() == log.read_bytes()
    assert not list(spool2.glob(".nonstop-tmp-*"))
