"""The lease keeper on the recording driver: two nodes, one in-memory etcd, real event loop.

Short timings (TTL 1 s) keep these tests around a second; the store's leases expire on the
loop's clock, as etcd's would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nonstop.coord.keeper import LeaseKeeper
from nonstop.coord.lease import LeaseBook, LeaseTiming
from nonstop.coord.memory import MemoryCoordinator, MemoryStore

T = LeaseTiming(ttl_s=1, renew_s=0.25, rpc_timeout_s=0.25, margin_s=0.25, campaign_s=0.05)


class Node:
    def __init__(self, name: str, store: MemoryStore, timing: LeaseTiming = T) -> None:
        self.coord = MemoryCoordinator(store, name)
        self.changes = 0
        self.keeper = LeaseKeeper(self.coord, LeaseBook(name, timing, {0: "g0"}), "/nonstop/t",
                                  self._changed)

    def _changed(self) -> None:
        self.changes += 1

    def mine(self) -> bool:
        return self.keeper.states(asyncio.get_running_loop().time())[0].mine

    def holder(self) -> str | None:
        return self.keeper.states(asyncio.get_running_loop().time())[0].holder


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not cond():
        assert loop.time() - start < timeout, "condition not reached in time"
        await asyncio.sleep(0.01)
    return loop.time() - start


async def test_one_owner_through_a_partition_and_a_hand_over() -> None:
    store = MemoryStore(asyncio.get_running_loop().time)
    n1, n2 = Node("n1", store), Node("n2", store)
    n1.keeper.want({0})
    n1.keeper.start()
    await until(n1.mine)
    assert store.keys["/nonstop/t/groups/g0"].value == "n1"
    n2.keeper.want({0})
    n2.keeper.start()
    await until(lambda: n2.holder() == "n1")
    assert not n2.mine()

    # n1 cut off from etcd: it stops trusting its lease before n2 can get it
    n1.coord.reachable = False
    changes = n1.changes
    both = 0

    def watch() -> bool:
        nonlocal both
        both += n1.mine() and n2.mine()
        return n2.mine()

    waited = await until(watch)
    assert both == 0
    assert not n1.mine() and n1.changes > changes  # the deadline woke the daemon
    assert waited <= T.ttl_s + 2 * T.campaign_s + 0.3
    assert n1.keeper.failing is not None

    # healed: n1 asks again but n2 owns it; n2 gives it up and n1 gets it
    n1.coord.reachable = True
    await until(lambda: n1.keeper.failing is None and n1.holder() == "n2")
    assert not n1.mine()
    n2.keeper.want(())
    await until(n1.mine)
    assert not n2.mine()
    assert ("delete_if", ("/nonstop/t/groups/g0", "n2", 2)) in n2.coord.calls

    await n1.keeper.close()
    await n2.keeper.close()
    assert store.keys == {} and store.leases == {}


async def test_kept_keys_are_not_dropped_nor_asked_for() -> None:
    store = MemoryStore(asyncio.get_running_loop().time)
    n1 = Node("n1", store)
    n1.keeper.want({0})
    n1.keeper.start()
    await until(n1.mine)
    n1.keeper.want((), keep={0})  # stopping: the resource may still run
    await asyncio.sleep(3 * T.renew_s)
    assert n1.mine() and "/nonstop/t/groups/g0" in store.keys
    n1.keeper.want(())
    await until(lambda: "/nonstop/t/groups/g0" not in store.keys)
    await n1.keeper.close()


async def test_etcd_lost_and_back_gets_a_new_lease() -> None:
    store = MemoryStore(asyncio.get_running_loop().time)
    n1 = Node("n1", store)
    n1.keeper.want({0})
    n1.keeper.start()
    await until(n1.mine)
    store.down = True
    await until(lambda: not n1.mine())
    store.leases.clear()  # etcd came back without our lease (expired meanwhile)
    store.keys.clear()
    store.down = False
    await until(n1.mine)
    assert [c for c, _ in n1.coord.calls].count("grant") == 2
    await n1.keeper.close()


async def test_a_renewal_failed_in_an_election_is_retried_before_the_lease_runs_out() -> None:
    # etcd elects a leader (its leader's box cut off): requests fail for a while and no lease
    # expires meanwhile; the new leader renews every lease in full. The holder must ask again
    # soon after a failure, not a whole renewal period later, when its trust may be gone.
    loop = asyncio.get_running_loop()
    store = MemoryStore(loop.time)
    # trusted 0.7 s after a renewal is sent; renewals every 0.3 s
    t = LeaseTiming(ttl_s=1, renew_s=0.3, rpc_timeout_s=0.3, margin_s=0.3, campaign_s=0.02)
    n1 = Node("n1", store, t)
    n1.keeper.want({0})
    n1.keeper.start()
    await until(n1.mine)
    renewals = [c for c, _ in n1.coord.calls].count("keepalive")
    await until(lambda: [c for c, _ in n1.coord.calls].count("keepalive") > renewals)
    sent = loop.time()  # a renewal has just succeeded: trusted until sent + TTL - margin
    store.down = True
    lost = 0
    end = sent + 0.62  # the election ends 0.08 s before that trust would run out
    while loop.time() < end:
        lost += not n1.mine()
        await asyncio.sleep(0.01)
    for lid, (ttl, _until) in store.leases.items():
        store.leases[lid] = (ttl, loop.time() + ttl)
    store.down = False
    while loop.time() < sent + t.ttl_s:
        lost += not n1.mine()
        await asyncio.sleep(0.01)
    assert lost == 0 and n1.keeper.failing is None
    await n1.keeper.close()
