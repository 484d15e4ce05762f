"""Issue 12 with real daemons: built-in ipfail with the client host as the ping node.

The talk's cluster with the ipfail stack of a real Heartbeat v1 site added to ha.cf
(``ping``, ``respawn hacluster /usr/lib/heartbeat/ipfail``, ``apiauth ipfail ...``). The client
that probes SIP at the VIP is the ping node, so "reaches the ping node" is "reachable by the
clients". Margins are generous: the machine has two shared cores.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Iterator

import pytest
from nodes import talk_config
from talkcluster import N1, N2, TalkCluster

from nonstop.lab import CLIENT, CLIENT_IP, VIP, Lab, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

IPFAIL = {
    "ping": CLIENT_IP,
    "respawn": "hacluster /usr/lib/heartbeat/ipfail",
    "apiauth": "ipfail gid=haclient uid=hacluster",
}


@pytest.fixture
def cluster(make_lab: object) -> Iterator[TalkCluster]:
    """Both daemons up, vpbx1-1 holding the group, both reaching the ping node (settled)."""
    lab: Lab = make_lab((N1, N2))  # type: ignore[operator]
    c = TalkCluster(lab, directives=IPFAIL)
    c.start(N1)
    c.start(N2)
    c.wait_vip_on(N1, 20)
    def settled(node: str) -> bool:
        return bool((c.status(node).get("ipfail") or {}).get("settled") == 1)

    wait_for(lambda: settled(N1) and settled(N2), 20, what="both nodes to reach the ping node")
    wait_for(lambda: c.holder(N2) == N1, 10, what="vpbx1-2 to see vpbx1-1 holding")
    yield c


def test_the_active_nodes_uplink_cut_moves_the_group(cluster: TalkCluster) -> None:
    c = cluster
    c.start_prober()
    since = time.monotonic()
    wait_for(lambda: c.answered_by(N1, since), 10, what="SIP answers from vpbx1-1")
    # The heartbeat link stays; only vpbx1-1's path to the client (and ping node) is cut.
    c.lab.isolate(N1, CLIENT)
    cut = time.monotonic()
    c.wait_vip_on(N2, 30)
    wait_for(lambda: c.answered_by(N2, cut), 10, what="SIP answers from vpbx1-2")
    log = c.log(N1)
    assert (f"ipfail: I reach 0 of 1 ping nodes, {N2} reaches 1: giving my groups to {N2}"
            in log)
    assert f"node {CLIENT_IP}: is dead" in log
    st = c.status(N1)
    assert (st["ping_reachable"], st["ping_total"], st["ipfail"]["settled"]) == (0, 1, 0)
    assert c.status(N2)["nodes"][0]["status"] == "active"  # still heard over the heartbeat
    # vpbx1-1 reaches fewer: it does not take the group back while the cut lasts.
    time.sleep(3)
    assert c.vip_holders() == [N2]


def test_the_ping_node_lost_by_both_moves_nothing(cluster: TalkCluster) -> None:
    # The router itself dies: both nodes lose it, and the group must stay where it is (a
    # rule that gave the group away on any loss fails here). In this lab both nodes declare
    # the death within milliseconds of each other, so the race the hold of three keepalives
    # covers (one node a keepalive later) is tested with a clock in test_guard_services.
    c = cluster
    c.lab.link_down(CLIENT)
    def said_dead(node: str) -> bool:
        return f"node {CLIENT_IP}: is dead" in c.log(node)

    for node in (N1, N2):
        wait_for(functools.partial(said_dead, node), 20,
                 what=f"{node} to declare the ping node dead")
    deadline = time.monotonic() + 4  # well past the hold of three keepalives
    while time.monotonic() < deadline:
        assert c.vip_holders() == [N1], "the group moved although both lost the ping node"
        time.sleep(0.05)
    for node in (N1, N2):
        assert "giving my groups" not in c.log(node)
        assert c.status(node)["ipfail"]["settled"] == 0


def test_a_node_isolated_from_everything_does_not_take_over(cluster: TalkCluster) -> None:
    c = cluster
    # The standby loses its peer and its ping node at once, its own link still up (a pulled
    # cable, no carrier, is a block of its own: test_failover_talk.py).
    c.lab.isolate(N2, N1)
    c.lab.isolate(N2, CLIENT)
    wait_for(lambda: f"node {N1}: is dead" in c.log(N2), 20, what="vpbx1-2 to declare vpbx1-1 dead")
    deadline = time.monotonic() + 6  # well past deadtime + deadping
    while time.monotonic() < deadline:
        assert c.vip_holders() == [N1], "the isolated node took the VIP"
        time.sleep(0.05)
    reason = c.status(N2)["groups"][0]["reason"]
    assert (f"{N1} is dead but I reach none of the ping nodes: I am probably the one cut "
            "off; not taking over") in reason


def test_a_takeover_fences_the_dead_peer_first_with_the_lab_plugin(make_lab: object) -> None:
    # n1 fences with cluster-glue's stonith and the lab's external plugin; n2 runs in a box the
    # plugin's power switch can power off. n1 loses n2's heartbeats: it must power n2 off
    # before it takes n2's address.
    lab: Lab = make_lab(("n1", "n2"))  # type: ignore[operator]
    device = lab.stonith_device(["n2"])
    argv = {}
    for node in ("n1", "n2"):
        ha_d = talk_config(lab.host_dir(node) / "etc", haresources=f"n2 IPaddr::{VIP}/24/eth0\n",
                           directives={"node": "n1 n2", "stonith_host":
                                       f"n1 {device.plugin} {' '.join(device.named_params)}"})
        argv[node] = [sys.executable, "-m", "nonstop", "run", "--config-dir", str(ha_d),
                      "--state-dir", str(lab.host_dir(node) / "state"), "--node", node]
    n1 = lab.spawn("n1", argv["n1"], binds=device.binds, name="nonstop")
    box = lab.start_box("n2", argv["n2"])
    wait_for(lambda: lab.has_address("n2", VIP), 30, what="n2 to hold the address")
    lab.isolate("n1", "n2")
    wait_for(lambda: lab.has_address("n1", VIP), 30, what="n1 to take the address over")
    assert not box.running  # fenced before the takeover, not merely partitioned
    log = n1.read_log()
    reset = re.search(r"Resetting node n2 with \[external/nonstop-lab\]", log)
    done = re.search(r"node n2 now reset\.", log)
    taken = re.search(r"nobody alive holds group .*; taking it: .*\(STONITH reset of n2 "
                      r"with external/nonstop-lab succeeded", log)
    assert reset and done and taken, log[-3000:]
    assert reset.start() < done.start() < taken.start()
    status = lab.run("n1", [sys.executable, "-m", "nonstop", "status", "--json", "--state-dir",
                            str(lab.host_dir("n1") / "state")], check=True)
    fencing = json.loads(status.stdout)["fencing"]
    assert (fencing["last"]["node"], fencing["last"]["ok"]) == ("n2", True)
