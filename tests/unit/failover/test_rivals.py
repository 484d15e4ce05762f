"""Which peers ran a group held here and have stopped its services: the moment a healed split
brain's keeper forces its tree onto the loser again (nonstop.failover.rivals)."""

from __future__ import annotations

from nonstop.failover.rivals import Rivals
from nonstop.failover.state import GroupAd, GroupState, NodeAd

KEY = "MailTo::tech@webinmotion.ca::Asterisk"
HELD = {0: KEY}
S = GroupState


def ad(state: GroupState, epoch: int = 1) -> NodeAd:
    return NodeAd({0: GroupAd(state, epoch)})


def run(steps: list[tuple[dict[int, str], dict[str, NodeAd | None]]]) -> list[dict[str, str]]:
    rivals, out = Rivals(), []
    for held, ads in steps:
        rivals, stopped = rivals.after(held, ads)
        out.append(stopped)
    return out


def test_a_loser_that_held_then_stopped_is_named_once_with_its_reason() -> None:
    said = run([(HELD, {"vpbx1-1": ad(S.HELD)}), (HELD, {"vpbx1-1": ad(S.STOPPING)}),
                (HELD, {"vpbx1-1": ad(S.NONE)}), (HELD, {"vpbx1-1": ad(S.NONE)})])
    assert said[:2] == [{}, {}]  # still running its services: not yet
    assert said[2] == {"vpbx1-1": f"vpbx1-1 ran group {KEY} while this node held it and has "
                                  "stopped its services (now NONE)"}
    assert said[3] == {}  # once


def test_a_failed_stop_is_not_stopped_until_it_is() -> None:
    said = run([(HELD, {"p": ad(S.HELD)}), (HELD, {"p": ad(S.STOP_FAILED)}),
                (HELD, {"p": ad(S.STOPPING)}), (HELD, {"p": ad(S.START_FAILED)})])
    assert [bool(s) for s in said] == [False, False, False, True]
    assert "(now START_FAILED)" in said[3]["p"]


def test_a_planned_hand_off_to_this_node_forces_nothing_more() -> None:
    # The old holder stops before this node holds the group: never seen running beside it.
    said = run([({}, {"p": ad(S.HELD)}), ({}, {"p": ad(S.STOPPING)}), ({}, {"p": ad(S.NONE)}),
                (HELD, {"p": ad(S.NONE)})])
    assert said == [{}, {}, {}, {}]


def test_a_peer_that_never_ran_the_group_is_no_rival() -> None:
    assert run([(HELD, {"p": ad(S.NONE)}), (HELD, {"p": NodeAd({})}),
                (HELD, {"p": ad(S.NONE)})]) == [{}, {}, {}]


def test_a_rival_that_dies_or_a_group_given_up_is_forgotten() -> None:
    died = run([(HELD, {"p": ad(S.HELD)}), (HELD, {}), (HELD, {"p": ad(S.NONE)})])
    unheard = run([(HELD, {"p": ad(S.HELD)}), (HELD, {"p": None}), (HELD, {"p": ad(S.NONE)})])
    given_up = run([(HELD, {"p": ad(S.HELD)}), ({}, {"p": ad(S.HELD)}),
                    (HELD, {"p": ad(S.NONE)})])
    assert died == unheard == given_up == [{}, {}, {}]


def test_each_peer_and_group_is_judged_on_its_own() -> None:
    held = {0: KEY, 1: "other"}
    both = NodeAd({0: GroupAd(S.HELD, 1), 1: GroupAd(S.HELD, 1)})
    one_left = NodeAd({0: GroupAd(S.NONE, 1), 1: GroupAd(S.HELD, 1)})
    said = run([(held, {"a": both, "b": ad(S.STARTING)}),
                (held, {"a": one_left, "b": ad(S.NONE)})])
    assert set(said[1]) == {"a", "b"}
    assert f"group {KEY}" in said[1]["a"]
