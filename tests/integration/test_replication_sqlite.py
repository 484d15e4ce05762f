"""Asterisk's astdb under load, replicated by the daemons in namespaces: every version of the
standby's copy is a database sqlite accepts, never with a journal beside it, and once the
writer stops the copy is the source's."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from talkcluster import N1, N2, TalkCluster, replicating

from nonstop.lab import Lab, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

DB = "var/lib/asterisk/astdb.sqlite3"
WRITER = Path(__file__).parents[1] / "fixtures" / "sqlite" / "astdb_writer.py"


@pytest.fixture
def cluster(make_lab: Callable[[Sequence[str]], Lab]) -> TalkCluster:
    return replicating(make_lab((N1, N2)))


def _verdict(data: bytes) -> str:
    """sqlite's integrity check of a database given as bytes (no journal beside it)."""
    con = sqlite3.connect(":memory:")
    try:
        con.deserialize(data)
        return str(con.execute("pragma integrity_check").fetchone()[0])
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        con.close()


def test_a_busy_astdb_reaches_the_standby_only_as_committed(cluster: TalkCluster) -> None:
    c = cluster
    src = c.sync_root(N1) / DB
    replica = c.sync_root(N2) / DB
    # A commit every 20 ms, each one pushed by the active daemon as inotify reports it.
    writer = subprocess.Popen([sys.executable, str(WRITER), str(src), "0.02"],
                              stdout=subprocess.PIPE)
    verdicts: dict[bytes, str] = {}
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        end = time.monotonic() + 12
        while time.monotonic() < end:
            try:
                data = replica.read_bytes()
            except FileNotFoundError:
                data = b""
            if data and data not in verdicts:
                verdicts[data] = _verdict(data)
            assert not replica.with_name(replica.name + "-journal").exists()
            time.sleep(0.02)
    finally:
        writer.terminate()
        writer.wait(10)
    bad = [v for v in verdicts.values() if v != "ok"]
    assert not bad, f"{len(bad)} of {len(verdicts)} versions malformed: {bad[:3]}"
    assert len(verdicts) >= 10, len(verdicts)  # it kept replicating under the writes
    # Killed in a commit the writer may leave a hot journal: sqlite rolls it back at the next
    # open, as Asterisk's next start would, and the standby then gets the same bytes.
    sqlite3.connect(src).execute("select count(*) from astdb").fetchone()
    wait_for(lambda: replica.exists() and replica.read_bytes() == src.read_bytes(), 30,
             what="the standby's astdb equal to the active's")
