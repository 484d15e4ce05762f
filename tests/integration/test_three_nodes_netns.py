"""Three nonstop nodes without etcd, the talk's group and replication to both standbys: the
faults a user trial of three nodes found, with real daemons in namespaces.

* A cut between the holder and one standby alone (the third node hears both): before, the
  standby took the group over and the address was up twice for the whole cut.
* A standby's box dies in the middle of replication: before, the push waited out the kernel's
  30 s on the dead box, and the other standby got nothing meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pytest
from talkcluster import N1, N2, TalkCluster, write_file

from nonstop.lab import Lab, wait_for
from nonstop.lab.holders import HolderWatch

pytestmark = [pytest.mark.netns, pytest.mark.slow]

N3 = "vpbx1-3"
NODES = (N1, N2, N3)
DEADTIME_S = 2.0  # the talk's


def _running(make_lab: Callable[[Sequence[str]], Lab]) -> TalkCluster:
    c = TalkCluster(make_lab(NODES), nodes=NODES, sync=True)
    for n in NODES:
        c.start(n)
    c.wait_vip_on(N1, 30)
    wait_for(lambda: all(c.holder(n) == N1 for n in NODES), 15,
             what="every node to see vpbx1-1 holding")
    wait_for(lambda: (c.status(N1).get("sync") or {}).get("active"), 15,
             what="replication active on vpbx1-1")
    return c


def _holds(path: Path, data: bytes) -> bool:
    return path.exists() and path.read_bytes() == data


def _reason(c: TalkCluster, node: str) -> str:
    groups = c.status(node).get("groups") or [{}]
    return str(groups[0].get("reason"))


def test_a_standby_cut_from_the_holder_alone_does_not_take_the_group(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    c = _running(make_lab)
    with HolderWatch(c.lab, NODES) as watch:
        c.lab.isolate(N1, N2)
        wait_for(lambda: "still sees it running" in _reason(c, N2), 4 * DEADTIME_S,
                 what="vpbx1-2 to wait on vpbx1-3's word")
        time.sleep(2 * DEADTIME_S)  # long enough for a takeover to have shown
        assert c.vip_holders() == [N1]
        c.lab.heal()
        wait_for(lambda: c.holder(N2) == N1, 4 * DEADTIME_S, what="vpbx1-2 to hear vpbx1-1")
    assert watch.most == 1, watch.history
    assert watch.holders_now() == (N1,)


def test_a_standby_dead_mid_replication_holds_up_the_other_for_deadtime_at_most(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    c = _running(make_lab)
    write_file(c.sync_root(N1), "etc/asterisk/first.conf", b"both standbys up\n")
    wait_for(lambda: all((c.sync_root(n) / "etc/asterisk/first.conf").exists()
                         for n in (N2, N3)), 10, what="the first write on both standbys")
    c.crash(N3)
    slowest = 0.0
    for i in range(8):  # 4 s of writes, across the 2 s before vpbx1-3 is declared dead
        data = f"write {i}\n".encode()
        t = time.monotonic()
        write_file(c.sync_root(N1), f"etc/asterisk/w{i}.conf", data)
        target = c.sync_root(N2) / f"etc/asterisk/w{i}.conf"
        wait_for(partial(_holds, target, data), 15, what=f"write {i} on vpbx1-2",
                 interval=0.01)
        slowest = max(slowest, time.monotonic() - t)
        time.sleep(0.5)
    # Before: 30 s (the kernel's TCP_USER_TIMEOUT on the dead box's session).
    assert slowest < DEADTIME_S + 3.0, slowest
    c.revive(N3)
    c.start(N3)
    wait_for(lambda: all((c.sync_root(N3) / f"etc/asterisk/w{i}.conf").exists()
                         for i in range(8)), 30, what="vpbx1-3 to catch up")
