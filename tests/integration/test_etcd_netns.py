"""Issue 16's scenarios: three nonstop nodes beside a real three-member etcd (Debian's
etcd-server), one member in each node's namespace, the talk's group on vpbx1-1.

One cluster for the whole module (it takes ~15 s to build); the tests run in file order and
each leaves it as it found it (vpbx1-1 holding, every member and link up) except the last,
which moves the group. A thread samples every node's addresses throughout each fault: two
holders at one instant fails the test. The client probes SIP at the VIP every 20 ms.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from talkcluster import N1, N2, TalkCluster

from nonstop.lab import Lab, wait_for
from nonstop.lab.etcd import EtcdCluster, have_etcd
from nonstop.lab.holders import HolderWatch
from nonstop.lab.outage import client_outage

pytestmark = [pytest.mark.netns, pytest.mark.slow]

N3 = "vpbx1-3"
NODES = (N1, N2, N3)
TTL_S = 2  # the talk's deadtime 2 s -> lease TTL 2 s


@dataclass
class Env:
    lab: Lab
    etcd: EtcdCluster
    c: TalkCluster


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "unshare")):
        pytest.skip("labs need root, iproute2, nftables and unshare")
    if not have_etcd():
        pytest.skip("needs etcd-server and etcd-client (scripts/setup.sh installs them)")
    lab = Lab(NODES).start()
    try:
        etcd = EtcdCluster(lab, NODES).start()
        endpoints = ",".join(etcd.endpoints)
        c = TalkCluster(lab, nodes=NODES,
                        directives={"nonstop_etcd": f"{endpoints} prefix=/nonstop/lab"})
        for n in NODES:
            c.start(n)
        c.wait_vip_on(N1, 30)
        c.start_prober()
        since = time.monotonic()
        wait_for(lambda: c.answered_by(N1, since), 10, what="SIP answers from vpbx1-1")
        wait_for(lambda: all(c.holder(n) == N1 for n in NODES), 10,
                 what="every node to see vpbx1-1 holding")
        yield Env(lab, etcd, c)
    finally:
        lab.close()


def etcd_status(c: TalkCluster, node: str) -> dict[str, object]:
    return c.status(node).get("etcd") or {}


def owns(c: TalkCluster, node: str) -> bool:
    st = etcd_status(c, node)
    return bool(st.get("owned")) and not st.get("error")


def steady(e: Env, holder: str, seconds: float, watch: HolderWatch, context: str = "") -> None:
    """For ``seconds``: the VIP on ``holder`` alone, at every sample (``context``: for the
    report, what the test did)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        holders = e.c.vip_holders()
        assert holders == [holder], context + why_moved(e, holder, holders)
        time.sleep(0.1)
    assert watch.most == 1 and watch.holders_now() == (holder,), watch.history


def why_moved(e: Env, holder: str, holders: list[str]) -> str:
    """What every node says when the VIP is not where it should be: its view of etcd, the
    group's holder and reason, and the end of its log. (Under a busy machine a minority cut
    once left no holder at all for a sample, and the report said nothing more.)"""
    lines = [f"the VIP on {holders}, expected on {holder} alone"]
    for n in NODES:
        st = e.c.status(n)
        groups = [(g.get("holder"), g.get("reason")) for g in st.get("groups") or []]
        lines.append(f"{n}: etcd {st.get('etcd')}; groups {groups}")
        lines += [f"    {line}" for line in e.c.log(n).splitlines()[-12:]]
    return "\n".join(lines)


def test_the_lease_is_held_by_the_holder(env: Env) -> None:
    assert owns(env.c, N1) and not owns(env.c, N2) and not owns(env.c, N3)
    keys = env.etcd.get_prefix("/nonstop/lab/groups/")
    assert list(keys.values()) == [N1], keys


def test_a_minority_node_cut_off_moves_nothing(env: Env) -> None:
    e = env
    with HolderWatch(e.lab, NODES) as watch:
        # Cutting the etcd leader's node means an election while the holder renews: the
        # hard case, made certain (it was chance, and failed 2 of 4 times when it came).
        e.etcd.move_leader(N3)
        context = f"etcd leader before the cut: {e.etcd.leader()}\n"
        since = time.monotonic()
        e.lab.link_down(N3)
        steady(e, N1, 2 * TTL_S + 1, watch, context)
        e.lab.link_up(N3)
    assert e.c.longest_silence(since) < 0.5
    wait_for(lambda: e.c.holder(N3) == N1, 15, what="vpbx1-3 back, seeing vpbx1-1 hold")
    e.etcd.wait_healthy(15)


def test_killing_the_etcd_leader_moves_nothing(env: Env) -> None:
    e = env
    leader = e.etcd.leader()
    assert leader is not None
    with HolderWatch(e.lab, NODES) as watch:
        since = time.monotonic()
        e.etcd.kill_member(leader)
        steady(e, N1, 2 * TTL_S + 1, watch)
    assert e.c.longest_silence(since) < 0.5
    wait_for(lambda: owns(e.c, N1), 10, what="vpbx1-1 renewing through the new leader")
    e.etcd.start_member(leader)
    e.etcd.wait_healthy(15)


def test_losing_all_of_etcd_keeps_the_holder_while_its_peers_are_heard(env: Env) -> None:
    e = env
    with HolderWatch(e.lab, NODES) as watch:
        since = time.monotonic()
        for n in NODES:
            e.etcd.kill_member(n)
        wait_for(lambda: etcd_status(e.c, N1).get("error"), 10, what="vpbx1-1 to see etcd gone")
        steady(e, N1, 2 * TTL_S + 1, watch)
        (g,) = e.c.status(N1)["groups"]
        assert "kept while every peer is heard" in g["reason"]
        for n in NODES:
            e.etcd.start_member(n)
        e.etcd.wait_healthy(20)
        wait_for(lambda: owns(e.c, N1), 15, what="vpbx1-1 to own its lease again")
        steady(e, N1, 0.5, watch)
    assert e.c.longest_silence(since) < 0.5


def test_the_holder_cut_off_from_the_majority_releases_then_heals_without_outage(
        env: Env) -> None:
    e = env
    with HolderWatch(e.lab, NODES) as watch:
        fault = time.monotonic()
        e.lab.link_down(N1)
        wait_for(lambda: not e.lab.has_address(N1, "198.18.0.10"), 2 * TTL_S + 2,
                 what="vpbx1-1 to release the VIP", interval=0.02)
        released = time.monotonic() - fault
        e.c.wait_vip_on(N2, 10)
        wait_for(lambda: e.c.answered_by(N2, fault), 10, what="SIP answers from vpbx1-2")
        outage = client_outage(e.c.probes(), fault, answered_by=N2)
        heal = time.monotonic()
        e.lab.link_up(N1)
        wait_for(lambda: e.c.holder(N1) == N2, 10, what="vpbx1-1 to see vpbx1-2 holding")
        steady(e, N2, 2.0, watch)
    print(f"etcd partition: holder released after {released:.3f} s, client outage "
          f"{outage.seconds:.3f} s, longest two-holder moment {watch.dual_s:.3f} s "
          f"({watch.samples} samples)")
    assert released < TTL_S + 0.5  # within the TTL (+ a loaded machine's slack)
    assert watch.most == 1, watch.history  # never two holders, sampled throughout
    assert e.c.longest_silence(heal) < 0.5  # the heal costs the client nothing
    assert "lost the etcd lease" in e.c.log(N1)
    wait_for(lambda: owns(e.c, N2), 10, what="vpbx1-2 owning the lease, etcd answering")
