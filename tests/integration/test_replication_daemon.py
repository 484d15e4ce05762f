"""Issue 4 point 7: the daemon of the node holding the group replicates continuously; the
standby only receives; after a takeover the new active pushes, also to the returning node."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from talkcluster import N1, N2, TalkCluster, replicating
from talkcluster import write_file as write

from nonstop.lab import Lab, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

VOICEMAIL = "var/spool/asterisk/voicemail/default/1000/INBOX"


@pytest.fixture
def cluster(make_lab: Callable[[Sequence[str]], Lab]) -> TalkCluster:
    return replicating(make_lab((N1, N2)))


def same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def test_a_write_on_the_active_node_reaches_the_standby_within_a_second(
        cluster: TalkCluster) -> None:
    c = cluster
    lags = []
    for i in range(5):
        data = os.urandom(200_000 + i)
        rel = f"{VOICEMAIL}/msg{i:04d}.wav"
        t0 = time.monotonic()
        write(c.sync_root(N1), rel, data)
        target = c.sync_root(N2) / rel

        def arrived(target: Path = target, data: bytes = data) -> bool:
            return same_bytes(target, data)

        wait_for(arrived, 10, what=f"{rel} on vpbx1-2", interval=0.01)
        lags.append(time.monotonic() - t0)
    print("write-to-replica latency (s):", " ".join(f"{x:.3f}" for x in lags))
    assert sorted(lags)[len(lags) // 2] < 1.0
    # the standby never pushes: a file written there stays there
    write(c.sync_root(N2), "etc/asterisk/standby-only.conf", b"local\n")
    time.sleep(2)
    assert not (c.sync_root(N1) / "etc/asterisk/standby-only.conf").exists()
    st = c.status(N2)["sync"]
    assert st["active"] is False


def test_after_a_takeover_the_new_active_replicates_to_the_returning_node(
        cluster: TalkCluster) -> None:
    c = cluster
    c.crash(N1)
    c.wait_vip_on(N2, 10)
    wait_for(lambda: (c.status(N2).get("sync") or {}).get("active"), 15,
             what="replication active on vpbx1-2")
    # The master script's `nonstop sync -xv` was told the crashed node is dead: it did not
    # wait 3 s on that box with the group not yet held (held 3.1 s after the crash, was 5.6).
    told = "dead to the daemon's heartbeats: vpbx1-1 (pushed to last, 0.5 s to connect)"
    wait_for(lambda: told in c.log(N2) or None, 15, what="the master script told of the dead peer")
    data = b"[general]\nwritten on the new active\n"
    write(c.sync_root(N2), "etc/asterisk/extensions.conf", data)
    c.revive(N1)
    c.start(N1)
    wait_for(lambda: same_bytes(c.sync_root(N1) / "etc/asterisk/extensions.conf", data), 30,
             what="the new active's edit on the returning node")


def test_a_node_back_from_a_crash_names_and_offers_what_it_never_sent(
        cluster: TalkCluster) -> None:
    """The active node records a voicemail and dies before pushing it; the other takes over.
    Back as standby, the old node kept the voicemail alone and said nothing of it (a standby
    neither scans nor pushes, its status said `dirty 0`). It now scans once before receiving,
    names it, and offers it: the holder takes a file it never had."""
    c = cluster
    rel = f"{VOICEMAIL}/msg0099.wav"
    data = os.urandom(50_000)
    write(c.sync_root(N1), rel, data)
    c.crash(N1)  # within a millisecond: before the push's 50 ms debounce has passed
    c.wait_vip_on(N2, 10)
    assert not (c.sync_root(N2) / rel).exists()
    c.revive(N1)
    c.start(N1)
    wait_for(lambda: "never reached its peers" in c.log(N1) or None, 20,
             what="the returning node naming what it never sent")
    line = next(x for x in c.log(N1).splitlines() if "never reached its peers" in x)
    assert "1 file(s)" in line and rel in line, line
    wait_for(lambda: same_bytes(c.sync_root(N2) / rel, data), 20,
             what="the voicemail taken by the holder")
    # auto_failback off: it stays standby (its view of the holder comes with N2's statuses)
    wait_for(lambda: c.holder(N1) == N2 or None, 10, what="vpbx1-2 seen holding from vpbx1-1")
    wait_for(lambda: (c.status(N1).get("sync") or {}).get("dirty") == 0 or None, 10,
             what="nothing left unsent on the returning node")
