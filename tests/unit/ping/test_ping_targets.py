"""Ping nodes' up/dead timing and log lines, on a simulated clock."""

from __future__ import annotations

import logging

import pytest

from nonstop.ping import PingChanged, PingLate, PingStatus, PingTarget, PingTracker
from nonstop.ping.targets import TRANSITIONS, IllegalPingTransition

ROUTER = "192.168.1.1"
GROUP = PingTarget.ping_group("uplinks", ["10.0.0.1", "10.0.0.2"])


def tracker(*targets: PingTarget, deadping_ms: int = 10_000,
            initdead_ms: int | None = None) -> PingTracker:
    return PingTracker(targets or (PingTarget.node(ROUTER),), deadping_ms=deadping_ms, now=0.0,
                       initdead_ms=initdead_ms)


def test_first_reply_brings_the_node_up_with_heartbeats_lines() -> None:
    t = tracker()
    (event,) = t.reply(ROUTER, 1.0)
    assert isinstance(event, PingChanged)
    assert (event.old, event.new) == (PingStatus.INIT, PingStatus.PING)
    assert event.lines == ((logging.INFO, "Link 192.168.1.1:192.168.1.1 up."),
                           (logging.INFO, "Status update for node 192.168.1.1: status ping"))
    assert t.reply(ROUTER, 2.0) == []  # already up: nothing new to say


def test_dead_after_deadping_of_silence_not_before() -> None:
    t = tracker()
    t.reply(ROUTER, 1.0)
    assert t.next_wakeup() == pytest.approx(11.0)
    assert t.tick(11.0) == []
    (event,) = t.tick(11.25)
    assert (event.old, event.new, event.silence_ms) == (PingStatus.PING, PingStatus.DEAD, 10250)
    assert event.lines == ((logging.WARNING, "node 192.168.1.1: is dead"),
                           (logging.INFO, "Link 192.168.1.1:192.168.1.1 dead."))
    assert t.tick(30.0) == []  # said once
    assert t.next_wakeup() == float("inf")
    (back,) = t.reply(ROUTER, 31.0)
    assert isinstance(back, PingChanged)
    assert (back.old, back.new) == (PingStatus.DEAD, PingStatus.PING)
    # As Heartbeat 3.0.6 logs a return (seen in the lab), without its spurious second death.
    assert back.lines == (
        (logging.INFO, "Link 192.168.1.1:192.168.1.1 up."),
        (logging.CRITICAL, "Late heartbeat: Node 192.168.1.1: interval 30000 ms (> deadtime)"),
        (logging.INFO, "Status update for node 192.168.1.1: status ping"))


def test_a_late_answer_is_warned_like_heartbeat_and_judged_against_deadtime() -> None:
    # Seen in the lab with Heartbeat 3.0.6: deadping 1 s, deadtime 2 s, warntime 500 ms.
    t = PingTracker([PingTarget.node(ROUTER)], deadping_ms=1000, deadtime_ms=2000,
                    warntime_ms=500, now=0.0)
    t.reply(ROUTER, 0.1)
    assert t.reply(ROUTER, 0.6) == []  # 500 ms: not late
    (late,) = t.reply(ROUTER, 1.6)  # up all along, 1000 ms gap
    assert late == PingLate(ROUTER, 1000, over_deadtime=False)
    assert late.lines == ((logging.WARNING, "Late heartbeat: Node 192.168.1.1: interval 1000 ms"),)
    assert [e.new for e in t.tick(2.7)] == [PingStatus.DEAD]
    (back,) = t.reply(ROUTER, 3.2)  # dead by deadping, but the gap is under deadtime: WARN
    assert isinstance(back, PingChanged)
    assert [line for _, line in back.lines] == [
        "Link 192.168.1.1:192.168.1.1 up.",
        "Late heartbeat: Node 192.168.1.1: interval 1600 ms",
        "Status update for node 192.168.1.1: status ping"]


def test_a_first_answer_later_than_warntime_after_start_is_late() -> None:
    t = tracker()  # deadping 10 s: warntime 5 s
    (event,) = t.reply(ROUTER, 6.0)
    assert [line for _, line in event.lines] == [
        "Link 192.168.1.1:192.168.1.1 up.",
        "Late heartbeat: Node 192.168.1.1: interval 6000 ms",
        "Status update for node 192.168.1.1: status ping"]


def test_replies_keep_it_up_indefinitely() -> None:
    t = tracker()
    for second in range(1, 100):
        t.reply(ROUTER, float(second))
        assert t.tick(second + 0.5) == []
    assert t.view(99.5).reachable == {ROUTER}


def test_never_answering_node_dies_after_initdead_when_longer() -> None:
    t = tracker(initdead_ms=30_000)
    assert t.tick(29.9) == []
    (event,) = t.tick(30.1)
    assert (event.old, event.new, event.silence_ms) == (PingStatus.INIT, PingStatus.DEAD, 30100)
    # After the first answer deadping applies again.
    t.reply(ROUTER, 31.0)
    assert [e.new for e in t.tick(41.5)] == [PingStatus.DEAD]


def test_group_is_up_while_any_member_answers() -> None:
    t = tracker(GROUP)
    (up,) = t.reply("10.0.0.1", 1.0)
    assert up.target == "uplinks"
    assert up.lines[0] == (logging.INFO, "Link uplinks:uplinks up.")
    # The first member goes silent, the second keeps answering: the group stays up.
    for second in range(2, 30):
        t.reply("10.0.0.2", float(second))
        assert t.tick(second + 0.5) == []
    view = t.view(29.5)
    (g,) = view.targets
    assert (g.kind, g.status, g.answering) == ("group", PingStatus.PING, ("10.0.0.2",))
    (dead,) = t.tick(39.5)
    assert dead.lines[0] == (logging.WARNING, "node uplinks: is dead")


def test_an_address_in_a_node_and_a_group_feeds_both() -> None:
    t = tracker(PingTarget.node("10.0.0.1"), GROUP)
    assert sorted(e.target for e in t.reply("10.0.0.1", 1.0)) == ["10.0.0.1", "uplinks"]
    assert t.addresses == tuple(GROUP.members)  # pinged once, not twice


def test_replies_from_strangers_and_garbage_are_ignored() -> None:
    t = tracker()
    assert t.reply("192.168.1.2", 1.0) == []
    assert t.reply("not-an-address", 1.0) == []
    assert t.view(1.0).count == 0


def test_status_keys() -> None:
    t = tracker(PingTarget.node(ROUTER), GROUP)
    t.reply(ROUTER, 2.0)
    assert t.view(2.5).as_dict() == {
        "ping_nodes": [
            {"name": ROUTER, "kind": "node", "members": [ROUTER], "status": "ping",
             "last_reply_s": 0.5, "answering": [ROUTER]},
            {"name": "uplinks", "kind": "group", "members": ["10.0.0.1", "10.0.0.2"],
             "status": "init", "last_reply_s": None, "answering": []},
        ],
        "ping_reachable": 1,
        "ping_total": 2,
    }


def test_configuration_errors() -> None:
    with pytest.raises(ValueError):
        PingTarget.node("192.168.1")
    with pytest.raises(ValueError, match="no members"):
        PingTarget.ping_group("g", [])
    with pytest.raises(ValueError, match="twice"):
        tracker(PingTarget.node(ROUTER), PingTarget.node(ROUTER))
    with pytest.raises(ValueError, match="deadping"):
        tracker(deadping_ms=0)


def test_transition_table_is_closed_and_enforced() -> None:
    assert PingStatus.INIT not in set().union(*TRANSITIONS.values())
    t = tracker()
    state = t._states[ROUTER]  # a bug driving it illegally must raise, not pass silently
    with pytest.raises(IllegalPingTransition):
        t._move(state, PingStatus.INIT, None)
