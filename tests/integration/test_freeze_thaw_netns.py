"""A released address is no longer watched: no probes for it after the hand-off.

A user trial: the holder is frozen (SIGSTOP) until its peer has taken the virtual IP over, then
thawed. It finds the peer's heartbeats and gratuitous ARPs waiting, its watch of the address
enters a conflict, and it releases the address at once. Its conflict watch must stop with the
release: before the fix, the watch's cancellation was lost (``asyncio.wait_for`` in Python 3.11
returns a frame that arrived together with the cancellation and drops the CancelledError), and
the released node probed the address every second for ever; the peer, which holds the address,
saw each probe as a conflict and announced the address again every few seconds.

And a standby frozen past deadtime, then thawed, takes nothing over: its poll returned with
its timer due and no socket reported, so it declared the active node dead, decided to take its
group, and read that node's queued statuses a millisecond later; with the probe off it took the
address and the active node, holding the older epoch, released its group.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Sequence

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import CLIENT, VIP, Lab, wait_for

pytestmark = pytest.mark.netns

N1, N2 = "vpbx1-1", "vpbx1-2"
GROUP = f"{N1} {VIP}/24/eth0\n"
FROZEN_S = 5.0  # as the trial: the peer takes over after deadtime (2 s) and is still announcing
QUIET_S = 4.0  # the leaked watch probed every ~1.1 s

# Runs in the client's namespace: counts the ARP frames about the address that one MAC sends
# for ``limit`` seconds, then prints the count.
COUNT_ARP = r"""
import select, socket, sys, time
mac, vip, limit = bytes.fromhex(sys.argv[1].replace(":", "")), socket.inet_aton(sys.argv[2]), \
    float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0x0806))
print("ready", flush=True)
count, end = 0, time.monotonic() + limit
while (left := end - time.monotonic()) > 0:
    if select.select([s], [], [], left)[0]:
        data = s.recv(2048)
        if data[22:28] == mac and vip in (data[28:32], data[38:42]):
            count += 1
print("count", count, flush=True)
"""


def mac_of(lab: Lab, host: str) -> str:
    return lab.run(host, ["cat", "/sys/class/net/eth0/address"], check=True).stdout.strip()


def conflicts_seen(cluster: NonstopCluster, host: str) -> int:
    """How many conflicts ``host`` saw on the addresses it holds (``address_conflicts``)."""
    st = cluster.query(host) or {}
    return sum(int(e.get("conflicts", 0)) for e in st.get("address_conflicts", []))


def _pair_without_probe(make_lab: Callable[[Sequence[str]], Lab]) -> tuple[Lab, NonstopCluster]:
    """Two nodes, vpbx1-1 holding the VIP, the address probe off (a takeover adds it at
    once, so only the daemons' own logic stands in the way of a double holder)."""
    lab = make_lab((N1, N2))
    cfg = talk_config(lab.workdir / "cfg", initdead="3", haresources=GROUP,
                      directives={"nonstop_address_probe": "0"})
    cluster = NonstopCluster(lab, cfg)
    cluster.start(N1)
    cluster.start(N2)
    wait_for(lambda: lab.has_address(N1, VIP), 20, what=f"{N1} to hold the VIP")
    cluster.wait_peer_status(N2, N1, "active", 15)
    return lab, cluster


def test_a_standby_thawed_after_deadtime_does_not_take_over(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab, cluster = _pair_without_probe(make_lab)
    standby = cluster.proc(N2)
    standby.signal(signal.SIGSTOP)
    try:
        cluster.wait_for_log(N1, rf"node {N2}: is dead", 10)  # deadtime passed while stopped
        time.sleep(0.5)
    finally:
        standby.signal(signal.SIGCONT)
    cluster.wait_peer_status(N1, N2, "active", 10)
    time.sleep(1.0)  # past a takeover and its acquisition, had there been one
    log = cluster.log(N2)
    assert f"node {N1}: is dead" not in log, log[-2000:]
    assert "Acquiring resource group" not in log, log[-2000:]
    assert lab.has_address(N1, VIP) and not lab.has_address(N2, VIP)


def test_a_node_thawed_after_the_takeover_stops_watching_the_address_it_released(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab, cluster = _pair_without_probe(make_lab)
    n1_mac = mac_of(lab, N1)

    holder = cluster.proc(N1)
    frozen_at = time.monotonic()
    holder.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: lab.has_address(N2, VIP), 15, what=f"{N2} to take the VIP over")
        time.sleep(max(0.0, frozen_at + FROZEN_S - time.monotonic()))  # pacing, as the trial
    finally:
        holder.signal(signal.SIGCONT)
    wait_for(lambda: not lab.has_address(N1, VIP), 10, what=f"{N1} to release the VIP")
    wait_for(lambda: not (cluster.query(N1) or {}).get("address_conflicts"), 10,
             what=f"{N1} to list no watched address")
    time.sleep(0.5)  # pacing: a probe already on the wire at the release is not a leak

    before = conflicts_seen(cluster, N2)
    counter = lab.spawn(CLIENT, [sys.executable, "-u", "-c", COUNT_ARP, n1_mac, VIP,
                                 str(QUIET_S)])
    counter.wait_for_log("^ready", 10)
    sent = int(counter.wait_for_log(r"^count (\d+)", QUIET_S + 10).group(1))
    assert sent == 0, (f"{N1} sent {sent} ARP frames about {VIP} in {QUIET_S} s after it "
                       f"released it:\n{cluster.log(N1)[-3000:]}")
    assert conflicts_seen(cluster, N2) == before, cluster.log(N2)[-3000:]
    assert lab.has_address(N2, VIP) and not lab.has_address(N1, VIP)
    st = cluster.query(N2) or {}
    assert [e["conflict"] for e in st.get("address_conflicts", [])] == [False], json.dumps(st)
