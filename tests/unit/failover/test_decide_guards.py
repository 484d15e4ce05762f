"""decide() with issue 12's inputs: ipfail's ping counts, fencing, a suspect own key.

Table-driven like test_decide.py: a hand-written snapshot, the decision and words of its reason.
vpbx1-1 is the group's preferred node; one ping node unless a row says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from nonstop.config.model import AutoFailback
from nonstop.failover.decide import Action, ClusterView, GroupInfo, decide
from nonstop.failover.state import GroupAd, GroupState, NodeAd
from nonstop.failover.view import Guards, LocalFacts, build_view
from nonstop.heartbeat.events import MembershipView, NodeView
from nonstop.heartbeat.states import NodeStatus
from nonstop.resources.stonith import FenceAction, FenceResult

N1, N2 = "vpbx1-1", "vpbx1-2"
G = GroupInfo(0, "IPaddr::10.0.10.10/24/eth0", N1)

OK = FenceResult(N2, FenceAction.RESET, True, f"STONITH reset of {N2} succeeded", 0)
FAILED = FenceResult(N2, FenceAction.RESET, False,
                     f"STONITH reset of {N2} failed (exit 1): device unreachable", 1)


def v(local: str, holder: str | None, *, dead: bool = False, counts: dict[str, int] | None = None,
      total: int = 1, **extra: Any) -> ClusterView:
    """``holder`` holds the group (None: nobody); ``dead``: vpbx1-2 died by silence."""
    ads: dict[str, NodeAd | None] = {
        n: NodeAd({0: GroupAd(GroupState.HELD, 1) if n == holder else GroupAd(GroupState.NONE,
                                                                               0)})
        for n in (N1, N2)}
    alive = frozenset({N1} if dead else {N1, N2})
    base = ClusterView(now=1000.0, local=local, order=(N1, N2), alive=alive, active=alive,
                       comm_up=True, ads=ads, groups=(G,), auto_failback=AutoFailback.OFF,
                       here=LocalFacts(ads[local] or NodeAd({})))
    return replace(base, lost=frozenset({N2}) if dead else frozenset(),
                   ping_counts=counts, ping_total=total if counts is not None else 0, **extra)


@dataclass(frozen=True)
class Row:
    name: str
    view: ClusterView
    action: Action
    words: str
    target: str = ""


ROWS = [
    # ---- ipfail between live nodes
    Row("fewer ping nodes than a live peer: give the group away",
        v(N1, N1, counts={N1: 0, N2: 1}), Action.RELEASE,
        "ipfail: I reach 0 of 1 ping nodes, vpbx1-2 reaches 1: giving my groups to vpbx1-2"),
    Row("the peer that reaches more takes the released group",
        v(N2, None, counts={N1: 0, N2: 1}), Action.ACQUIRE,
        "preferred node vpbx1-1 reaches fewer ping nodes"),
    Row("the node that reaches fewer does not take it back",
        v(N1, None, counts={N1: 0, N2: 1}), Action.WAIT, "goes to vpbx1-2"),
    Row("equal counts: nothing moves", v(N1, N1, counts={N1: 1, N2: 1}), Action.WAIT,
        "holding group"),
    Row("equal counts, both cut: nothing moves", v(N1, N1, counts={N1: 0, N2: 0}),
        Action.WAIT, "holding group"),
    Row("the peer's count unknown: nothing moves", v(N1, N1, counts={N1: 0}), Action.WAIT,
        "holding group"),
    Row("more than the peer: keep it", v(N1, N1, counts={N1: 2, N2: 1}, total=2), Action.WAIT,
        "holding group"),
    # ---- ipfail when the peer is dead
    Row("peer dead, I reach none, it reached one: probably cut off",
        v(N1, None, dead=True, counts={N1: 0, N2: 1}), Action.WAIT,
        "vpbx1-2 is dead but I reach none of the ping nodes: I am probably the one cut off; "
        "not taking over"),
    Row("peer dead and never told its count: probably cut off",
        v(N1, None, dead=True, counts={N1: 0}), Action.WAIT, "probably the one cut off"),
    Row("peer dead, both reached none: take over",
        v(N1, None, dead=True, counts={N1: 0, N2: 0}), Action.ACQUIRE, "taking it"),
    Row("peer dead, I reach the ping node: take over",
        v(N1, None, dead=True, counts={N1: 1, N2: 1}), Action.ACQUIRE, "taking it"),
    Row("peer dead at the moment my cut settles: the fresh count already says none",
        v(N1, None, dead=True, counts={N1: 1, N2: 1}, ping_fresh=0), Action.WAIT,
        "probably the one cut off"),
    Row("peer dead, my ping nodes answer lately: take over",
        v(N1, None, dead=True, counts={N1: 1, N2: 1}, ping_fresh=1), Action.ACQUIRE,
        "taking it"),
    Row("peer dead, my ping nodes not settled: wait",
        v(N1, None, dead=True, counts={N2: 1}), Action.WAIT, "have not settled yet"),
    Row("a held group stays when the peer dies and I reach none",
        v(N1, N1, dead=True, counts={N1: 0, N2: 1}), Action.WAIT, "holding group"),
    Row("ipfail off, the peer left cleanly: take over",
        v(N1, None, alive=frozenset({N1}), active=frozenset({N1})), Action.ACQUIRE,
        "taking it"),
    # ---- fencing
    Row("no device: take over with Heartbeat's line", v(N1, None, dead=True), Action.ACQUIRE,
        "(No STONITH device configured.)"),
    Row("device, not fenced yet: fence first", v(N1, None, dead=True, fencing={}),
        Action.FENCE, "vpbx1-2 is dead: fencing it before taking over", target=N2),
    Row("fencing running: wait", v(N1, None, dead=True, fencing={N2: "pending"}),
        Action.WAIT, "waiting for its fencing"),
    Row("fencing failed: no takeover, retry",
        v(N1, None, dead=True, fencing={N2: FAILED}), Action.WAIT,
        "STONITH reset of vpbx1-2 failed (exit 1): device unreachable; not taking over; "
        "retrying in 5 s"),
    Row("fenced: take over and say so", v(N1, None, dead=True, fencing={N2: OK}),
        Action.ACQUIRE, "(STONITH reset of vpbx1-2 succeeded)"),
    Row("a peer that left cleanly is not fenced",
        v(N1, None, alive=frozenset({N1}), active=frozenset({N1}), fencing={}),
        Action.ACQUIRE, "taking it"),
    Row("cut off beats fencing: nobody is powered off by the isolated node",
        v(N1, None, dead=True, counts={N1: 0, N2: 1}, fencing={}), Action.WAIT,
        "probably the one cut off"),
    # ---- own key
    Row("own key suspect: no takeover",
        v(N1, None, dead=True, own_key_suspect="my own key looks wrong"), Action.WAIT,
        "my own key looks wrong; not taking over"),
    Row("own key suspect: a held group is kept", v(N1, N1, own_key_suspect="wrong key"),
        Action.WAIT, "holding group"),
    # ---- own links (its cable pulled: it lost the peer, and the clients lost it)
    Row("own links down: no takeover",
        v(N1, None, dead=True, own_links_down="eth0 has no carrier"), Action.WAIT,
        "vpbx1-2 is dead but eth0 has no carrier: this node is (or was) the one cut off; "
        "not taking over"),
    Row("own links down: a held group is kept (its clients may be local)",
        v(N1, N1, dead=True, own_links_down="eth0 has no carrier"), Action.WAIT,
        "holding group"),
    Row("own links down with the peer alive: nothing to take over, nothing blocked",
        v(N2, None, own_links_down="eth0 has no carrier"), Action.WAIT, "goes to vpbx1-1"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_guard_rules(row: Row) -> None:
    (d,) = decide(row.view)
    assert (d.group, d.action) == (0, row.action), d.reason
    assert row.words in d.reason
    assert d.target == row.target


def test_a_fenced_peer_that_comes_back_gets_no_failback() -> None:
    base = replace(v(N2, N2), auto_failback=AutoFailback.ON,
                   here=replace(v(N2, N2).here, needs_failback=frozenset({0})))
    (d,) = decide(base)
    assert d.action is Action.RELEASE  # failback to its preferred node...
    (d,) = decide(replace(base, fenced=frozenset({N1})))
    assert (d.action, d.reason) == (Action.WAIT, f"holding group {G.key}")  # ...not after fencing


def _members(n2: NodeStatus, *, left: bool = False, pn: str | None = "1") -> MembershipView:
    fields = {} if pn is None else {"pn": pn}
    return MembershipView(0.0, N1, True, (
        NodeView(N1, NodeStatus.ACTIVE, True, 0, 30000, None, {}, {}),
        NodeView(N2, n2, False, 40000, 30000, 7, {"eth0": False}, fields, left=left),
    ), {})


def test_build_view_reads_lost_peers_and_ping_counts() -> None:
    here = LocalFacts(NodeAd({0: GroupAd(GroupState.NONE, 0)}))
    kw: dict[str, Any] = {"now": 0.0, "order": (N1, N2), "groups": (G,),
                          "auto_failback": v(N1, None).auto_failback, "probed": True,
                          "leaving": False}
    dead = build_view(_members(NodeStatus.DEAD), here, guards=Guards(0, 1), **kw)
    assert dead.lost == {N2}
    assert dead.ping_counts == {N1: 0, N2: 1}  # a dead peer's last advertised count
    gone = build_view(_members(NodeStatus.DEAD, left=True), here, **kw)
    assert gone.lost == frozenset() and gone.ping_counts is None  # ipfail off
    odd = build_view(_members(NodeStatus.ACTIVE, pn="x"), here, guards=Guards(None, 1), **kw)
    assert odd.ping_counts == {}  # neither settled here nor a number there


# ---- address probe (duplicate address detection) and a start refused by it

PROBE_ROWS = [
    ("takeover from a peer dead by silence probes the address", v(N1, None, dead=True), True),
    ("takeover from a peer that left cleanly does not",
     v(N1, None, alive=frozenset({N1}), active=frozenset({N1})), False),
    ("hand-off from a live peer that released it does not", v(N1, None), False),
    ("a group found partly running, its peer lost: the rest is probed",
     replace(v(N1, N1, dead=True), here=replace(v(N1, N1).here, incomplete=frozenset({0}))),
     True),
]


@pytest.mark.parametrize(("name", "view", "probe"), PROBE_ROWS, ids=[r[0] for r in PROBE_ROWS])
def test_takeover_probes_only_when_a_peer_was_lost(name: str, view: ClusterView,
                                                   probe: bool) -> None:
    (d,) = decide(view)
    assert d.action is Action.ACQUIRE, d.reason
    assert d.probe is probe
    assert ("probing its addresses first" in d.reason) is (probe and "partly" not in d.reason)
    (off,) = decide(replace(view, address_probe=False))  # nonstop_address_probe 0
    assert off.action is Action.ACQUIRE and off.probe is False
    assert "probing" not in off.reason


CONFLICT = ("IPaddr::10.0.10.10/24/eth0: start failed: address conflict: 10.0.10.10 on eth0 is "
            "in use by 02:00:00:00:00:09 (reply)")


def test_a_start_refused_by_an_address_conflict_is_a_failed_acquisition_with_its_reason() -> None:
    failed = NodeAd({0: GroupAd(GroupState.START_FAILED, 1)})
    here = LocalFacts(failed, start_failed_at={0: 995.0}, start_failure={0: CONFLICT})
    view = replace(v(N1, None, dead=True), here=here, ads={N1: failed})
    (d,) = decide(view)
    assert d.action is Action.WAIT
    # Not "stays down": its own probe found the address answered (a trial's operator read the
    # PBX as down while the frozen or unheard peer served it).
    assert d.reason == (f"group {G.key}: another host answers for its address (most likely a "
                        "node this one cannot hear, still serving it): not started here "
                        f"({CONFLICT}); trying again when the failure ages")
    # With a live peer available, the group goes there and the reason still says why.
    view = replace(v(N1, None), here=here, ads={N1: failed, N2: NodeAd({0: GroupAd(
        GroupState.NONE, 0)})})
    (d,) = decide(view)
    assert d.action is Action.WAIT and d.reason.startswith(f"group {G.key} goes to {N2}")
    assert d.reason.endswith(f"its start failed here: {CONFLICT}")
    # After the hold time the failure is forgotten: the next takeover probes again.
    (d,) = decide(replace(view, now=995.0 + 31))
    assert d.action is Action.FORGET_FAILURE


def test_own_links_down_is_looked_at_again_every_second() -> None:
    """A carrier coming back is no event the daemon hears of: while the block lasts it decides
    again at the next chance."""
    from nonstop.failover.decide import decide_again_at

    view = v(N1, None, dead=True, own_links_down="eth0 has no carrier")
    assert decide_again_at(view, decide(view)) == view.now
    quiet = v(N1, N1)
    assert decide_again_at(quiet, decide(quiet)) == float("inf")


def test_the_daemon_reads_the_carrier_only_while_a_peer_is_not_alive(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nonstop import guards as daemon_guards
    from nonstop import rtnetlink
    from nonstop.config.loader import load_config_dir
    from nonstop.talk import copy_talk

    cfg = load_config_dir(str(copy_talk(tmp_path) / "ha.d"), N1)  # bcast eth0
    calls: list[int] = []
    carrier = {"eth0": False}

    def links() -> list[rtnetlink.Link]:
        calls.append(1)
        return [rtnetlink.Link(1, "lo", None, True),
                *(rtnetlink.Link(2, n, "02:00:00:00:00:01", up) for n, up in carrier.items())]

    monkeypatch.setattr(rtnetlink, "links", links)
    g = daemon_guards.GuardServices(cfg, N1, clock=lambda: 0.0, on_change=lambda: None,
                                    peers=())
    assert g.own_links_down({N1, N2}, 0.0) is None and calls == []  # all alive: not read
    # The talk's address goes on eth0 (10.0.10.10/24/eth0): its cable pulled, no client
    # reaches this node.
    assert g.own_links_down({N1}, 0.0) == "eth0 (the virtual addresses' link) has no carrier"
    carrier["eth0"] = True
    # Back: for deadtime (2 s) a peer not heard yet may just not have been heard again (the
    # lab's first try took the group 0.1 s after the cable came back, before the holder's
    # next heartbeat, and its probe went out before the switch forwarded again).
    assert "got its carrier back 0.0 s ago" in str(g.own_links_down({N1}, 10.0))
    assert "listening for the peers" in str(g.own_links_down({N1}, 11.9))
    assert g.own_links_down({N1}, 12.0) is None
    # Cut and healed while the peer lives: heard again before the next decision read the
    # carrier. Its death later is an ordinary takeover, not "carrier just back" (a trial:
    # the flag stayed set and a real crash 6 s after the heal waited a deadtime more).
    carrier["eth0"] = False
    assert g.own_links_down({N1}, 12.5) is not None
    carrier["eth0"] = True
    assert g.own_links_down({N1, N2}, 12.6) is None  # heard again
    assert g.own_links_down({N1}, 12.7) is None  # then it dies: take over at once
    # A crossover heartbeat link loses its carrier when the peer's box loses power: the
    # survivor must take over, so only the addresses' link counts.
    carrier["eth1"] = False
    assert g.own_links_down({N1}, 13.0) is None
    del carrier["eth0"]  # an interface not found: cannot tell, so no block
    assert g.own_links_down({N1}, 14.0) is None
