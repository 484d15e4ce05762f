"""A daemon stopped past deadtime and continued (SIGSTOP/SIGCONT, a paused VM, a long stall).

The thawed standby's poll returned with its timer due and no socket reported: it judged the
deadlines first, declared the active node dead, decided to take its group, and read that node's
queued statuses one millisecond later. With the address probe off (or any probe that misses)
it took the address, and the active node, holding the older epoch, gave its group up: a
failover nobody asked for. Now a timer turn reads what is queued before judging deadlines.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import VIP, Lab, wait_for

pytestmark = pytest.mark.netns

N1, N2 = "vpbx1-1", "vpbx1-2"


def test_a_standby_thawed_after_deadtime_does_not_take_over(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab((N1, N2))
    cfg = talk_config(lab.workdir / "cfg", initdead="3", haresources=f"{N1} {VIP}/24/eth0\n",
                      directives={"nonstop_address_probe": "0"})
    cluster = NonstopCluster(lab, cfg)
    cluster.start(N1)
    cluster.start(N2)
    wait_for(lambda: lab.has_address(N1, VIP), 20, what=f"{N1} to hold the VIP")
    cluster.wait_peer_status(N2, N1, "active", 15)
    pid = cluster.proc(N2).pid
    os.kill(pid, signal.SIGSTOP)
    try:
        cluster.wait_for_log(N1, rf"node {N2}: is dead", 10)  # deadtime passed while stopped
        time.sleep(0.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    cluster.wait_peer_status(N1, N2, "active", 10)
    time.sleep(1.0)  # past a takeover and its acquisition, had there been one
    log = cluster.log(N2)
    assert f"node {N1}: is dead" not in log, log[-2000:]
    assert "Acquiring resource group" not in log, log[-2000:]
    assert lab.has_address(N1, VIP) and not lab.has_address(N2, VIP)
