"""decide(): every failover rule as a snapshot in, a decision and its reason out."""

from __future__ import annotations

from nonstop.config.model import AutoFailback
from nonstop.failover.decide import Action, ClusterView, Decision, GroupInfo, decide
from nonstop.failover.state import (
    GroupAd,
    GroupState,
    NodeAd,
    decode_ad,
    encode_ad,
)

N1, N2 = "vpbx1-1", "vpbx1-2"
G = GroupInfo(0, "MailTo::tech@webinmotion.ca::Asterisk", N1)
H, N, S, B, F = (GroupState.HELD, GroupState.NONE, GroupState.STARTING,
                 GroupState.STOP_FAILED, GroupState.START_FAILED)


def ad(state: GroupState = N, epoch: int = 0, *, declines: bool = False,
       wants: bool = False) -> NodeAd:
    return NodeAd({0: GroupAd(state, epoch)}, frozenset({0}) if declines else frozenset(),
                  frozenset({0}) if wants else frozenset())


def view(local: str, ads: dict[str, NodeAd | None], *, alive: set[str] | None = None,
         auto: AutoFailback = AutoFailback.OFF, comm_up: bool = True,
         failback: bool = True) -> ClusterView:
    alive_set = frozenset(alive if alive is not None else ads.keys())
    return ClusterView(local=local, order=(N1, N2), alive=alive_set, active=alive_set,
                       comm_up=comm_up, ads=ads, groups=(G,), auto_failback=auto,
                       needs_failback=frozenset({0}) if failback else frozenset())


def one(v: ClusterView) -> Decision:
    (d,) = decide(v)
    return d


def test_nothing_before_comm_up() -> None:
    d = one(view(N1, {N1: ad()}, comm_up=False))
    assert d.action is Action.WAIT and "initdead" in d.reason


def test_both_start_together_only_the_preferred_node_acquires() -> None:
    ads: dict[str, NodeAd | None] = {N1: ad(), N2: ad()}
    d1, d2 = one(view(N1, ads)), one(view(N2, ads))
    assert d1.action is Action.ACQUIRE and d1.epoch == 1
    assert "preferred node" in d1.reason
    assert d2.action is Action.WAIT and "goes to vpbx1-1" in d2.reason


def test_no_decision_while_a_peer_has_not_said_what_it_holds() -> None:
    d = one(view(N1, {N1: ad(), N2: None}))
    assert d.action is Action.WAIT and "until vpbx1-2 says" in d.reason


def test_standby_takes_over_when_the_holder_dies() -> None:
    d = one(view(N2, {N2: ad(N, 3)}))
    assert d.action is Action.ACQUIRE and d.needs_failback
    assert "preferred node vpbx1-1 is dead" in d.reason
    # the epoch continues from the highest this node has seen (its own ad carries it)
    assert one(view(N2, {N2: ad(N, 3)})).epoch == 4


def test_holder_keeps_it_when_the_old_node_returns_with_auto_failback_off() -> None:
    ads: dict[str, NodeAd | None] = {N1: ad(N, 1), N2: ad(H, 2)}
    assert one(view(N2, ads)).action is Action.WAIT
    d = one(view(N1, ads))
    assert d.action is Action.WAIT and "held by vpbx1-2" in d.reason


def test_auto_failback_on_hands_the_group_back_to_the_preferred_node() -> None:
    ads: dict[str, NodeAd | None] = {N1: ad(N, 1), N2: ad(H, 2)}
    d = one(view(N2, ads, auto=AutoFailback.ON))
    assert d.action is Action.RELEASE and "auto_failback on" in d.reason
    # legacy fails back too; and once released, the preferred node takes it
    assert one(view(N2, ads, auto=AutoFailback.LEGACY)).action is Action.RELEASE
    d = one(view(N1, {N1: ad(N, 1), N2: ad(N, 2)}, auto=AutoFailback.ON))
    assert d.action is Action.ACQUIRE and d.epoch == 3 and not d.needs_failback


def test_a_group_moved_by_standby_does_not_fail_back() -> None:
    ads: dict[str, NodeAd | None] = {N1: ad(N, 1), N2: ad(H, 2)}
    d = one(view(N2, ads, auto=AutoFailback.ON, failback=False))
    assert d.action is Action.WAIT and "holding" in d.reason


def test_standby_releases_to_the_peer_which_then_acquires() -> None:
    d = one(view(N1, {N1: ad(H, 1, declines=True), N2: ad()}))
    assert d.action is Action.RELEASE and "standby: handing" in d.reason
    d = one(view(N2, {N1: ad(N, 1, declines=True), N2: ad()}))
    assert d.action is Action.ACQUIRE and "standby" in d.reason


def test_standby_with_no_peer_keeps_the_group() -> None:
    d = one(view(N1, {N1: ad(H, 1, declines=True)}))
    assert d.action is Action.WAIT and "no other node" in d.reason


def test_takeover_request_moves_the_group() -> None:
    ads: dict[str, NodeAd | None] = {N1: ad(H, 1), N2: ad(wants=True)}
    d = one(view(N1, ads))
    assert d.action is Action.RELEASE and "asked to take over" in d.reason
    ads = {N1: ad(N, 1), N2: ad(wants=True)}
    assert one(view(N2, ads)).action is Action.ACQUIRE
    assert one(view(N1, ads)).action is Action.WAIT


def test_healed_partition_newer_epoch_keeps_older_releases() -> None:
    ads: dict[str, NodeAd | None] = {N1: ad(H, 1), N2: ad(H, 2)}
    d1, d2 = one(view(N1, ads)), one(view(N2, ads))
    assert d1.action is Action.RELEASE and "newer claim" in d1.reason and d1.conflict
    assert d2.action is Action.REANNOUNCE and "keeping it" in d2.reason


def test_equal_epochs_go_to_the_preferred_node() -> None:
    ads: dict[str, NodeAd | None] = {N1: ad(H, 4), N2: ad(H, 4)}
    assert one(view(N1, ads)).action is Action.REANNOUNCE
    assert one(view(N2, ads)).action is Action.RELEASE


def test_no_takeover_while_a_live_node_failed_to_stop() -> None:
    d = one(view(N2, {N1: ad(B, 1), N2: ad()}))
    assert d.action is Action.WAIT and "failed to stop" in d.reason
    assert one(view(N1, {N1: ad(B, 1), N2: ad()})).action is Action.RELEASE


def test_a_start_failure_sends_the_group_to_the_other_node() -> None:
    ads: dict[str, NodeAd | None] = {N1: ad(F, 1), N2: ad()}
    d = one(view(N2, ads))
    assert d.action is Action.ACQUIRE and "failed to start on preferred node" in d.reason
    assert one(view(N1, ads)).action is Action.WAIT


def test_busy_groups_are_skipped() -> None:
    v = view(N1, {N1: ad(S, 1), N2: ad()})
    v2 = ClusterView(**{**v.__dict__, "busy": frozenset({0})})
    assert decide(v2) == []


def test_ads_round_trip_through_status_fields() -> None:
    a = NodeAd({0: GroupAd(H, 5), 3: GroupAd(N, 2)}, frozenset({3}), frozenset({0}), "abcd1234")
    fields = dict(encode_ad(a))
    assert fields == {"nsg": "0:H:5 3:N:2", "nsdecl": "3", "nswant": "0", "nsres": "abcd1234"}
    assert decode_ad(fields) == a
    assert decode_ad({}) is None
    assert decode_ad({"nsg": "0:Q:1"}) is None
    assert decode_ad({"nsg": "-"}) == NodeAd({})


def test_a_takeover_outranks_the_claim_of_the_dead_node_it_replaces() -> None:
    # vpbx1-1 held the group at epoch 1 and died; vpbx1-2 saw that epoch before it died.
    v = view(N2, {N2: ad(N, 0)})
    v = ClusterView(**{**v.__dict__, "seen_epochs": {0: 1}})
    d = one(v)
    assert d.action is Action.ACQUIRE and d.epoch == 2
    # vpbx1-1's daemon restarts on a box that kept the address: it claims epoch 1 again and
    # loses to the takeover, whatever the preferred-node tie-break says.
    ads: dict[str, NodeAd | None] = {N1: ad(H, 1), N2: ad(H, 2)}
    assert one(view(N1, ads)).action is Action.RELEASE
    assert one(view(N2, ads)).action is Action.REANNOUNCE


def test_a_peer_still_starting_is_waited_for_not_skipped() -> None:
    # vpbx1-2 is up first and hears vpbx1-1, which is alive but not yet active (its status is
    # still "up"): vpbx1-2 must not take the group away from the preferred node.
    v = view(N2, {N1: ad(), N2: ad()})
    v = ClusterView(**{**v.__dict__, "active": frozenset({N2})})
    d = one(v)
    assert d.action is Action.WAIT and "until vpbx1-1 is active" in d.reason
