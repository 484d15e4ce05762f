"""The failover engine with the resource port's recording driver: order, failures, claims."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from nonstop.config.errors import Location
from nonstop.config.model import (
    AuthKey,
    AuthKeys,
    AuthMethod,
    AutoFailback,
    Bcast,
    ClusterConfig,
    HaConfig,
    ResourceGroup,
    ResourceSpec,
)
from nonstop.failover.decide import Action, ClusterView, Decision, decide
from nonstop.failover.engine import FailoverEngine
from nonstop.failover.state import GroupAd, GroupState, NodeAd, encode_ad
from nonstop.failover.view import build_view
from nonstop.heartbeat.membership import MembershipView, NodeView
from nonstop.heartbeat.states import NodeStatus
from nonstop.resources.base import AgentContext, ResourceError, ResourceState
from nonstop.resources.recording import RecordingAgent, RecordingAgentFactory

LINE = ("MailTo", "198.18.0.10/24/eth0", "asterisk", "master")


def config(tmp: Path) -> ClusterConfig:
    specs = tuple(ResourceSpec(r, (), r) for r in LINE)
    ha = HaConfig(path="ha.cf", nodes=("n1", "n2"), media=(Bcast("eth0"),))
    keys = AuthKeys(1, {1: AuthKey(1, AuthMethod.SHA1, b"k")})
    return ClusterConfig(str(tmp), ha, keys, (ResourceGroup("n1", specs, Location("h", 1)),))


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.world = RecordingAgentFactory()
        self.changes = 0
        self.now = 0.0
        self.engine = FailoverEngine(
            config(tmp), "n1", tmp, AgentContext(node="n1", config_dir=tmp),
            agent_factory=self.world, clock=lambda: self.now, on_change=self.changed,
            stop_retry_delay_s=0.0,
        )

    def view(self, peer: NodeAd | None = None) -> ClusterView:
        """The snapshot of this engine and an active peer n2 advertising ``peer``."""
        def node(name: str, fields: dict[str, str]) -> NodeView:
            return NodeView(name, NodeStatus.ACTIVE, name == "n1", 0, 2000, None,
                            {"eth0": True}, fields)

        n2 = dict(encode_ad(peer)) if peer is not None else {}
        members = MembershipView(self.now, "n1", True, (node("n1", {}), node("n2", n2)), {})
        return build_view(members, self.engine.facts(), now=self.now, order=("n1", "n2"),
                          groups=self.engine.infos(), auto_failback=AutoFailback.OFF,
                          probed=True, leaving=False)

    def changed(self) -> None:
        self.changes += 1

    async def run(self, action: Action, **kw: object) -> GroupState:
        self.engine.apply([Decision(0, action, "test", **kw)])  # type: ignore[arg-type]
        task = self.engine.groups[0].task
        assert task is not None
        await task
        return self.engine.groups[0].state

    def acted(self) -> list[tuple[str, str]]:
        return [(r, a) for r, a in self.world.actions() if a != "status"]


async def test_acquire_left_to_right_release_right_to_left(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert await h.run(Action.ACQUIRE, epoch=3) is GroupState.HELD
    assert h.acted() == [(r, "start") for r in LINE]
    assert h.engine.local_ad().groups[0].epoch == 3
    h.world.clear()
    assert await h.run(Action.RELEASE) is GroupState.NONE
    assert h.acted() == [(r, "stop") for r in reversed(LINE)]
    assert h.changes >= 4


async def test_running_resources_are_not_started_again(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.world.set_state("asterisk", ResourceState.RUNNING)
    await h.run(Action.ACQUIRE, epoch=1)
    assert ("asterisk", "start") not in h.acted()


async def test_a_failed_start_gives_the_whole_group_up(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.world.fail("asterisk", "start")
    assert await h.run(Action.ACQUIRE, epoch=1) is GroupState.START_FAILED
    assert h.acted() == [("MailTo", "start"), ("198.18.0.10/24/eth0", "start"),
                         ("asterisk", "start"), ("master", "stop"), ("asterisk", "stop"),
                         ("198.18.0.10/24/eth0", "stop"), ("MailTo", "stop")]
    assert "master" not in [r for r, a in h.acted() if a == "start"]


async def test_a_stop_that_fails_while_running_blocks_takeover(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    h.world.fail("asterisk", "stop")
    assert await h.run(Action.RELEASE) is GroupState.STOP_FAILED
    # every other resource was still stopped, the address included
    assert h.world.state("198.18.0.10/24/eth0") is ResourceState.STOPPED
    assert h.acted().count(("asterisk", "stop")) == 3
    d = decide(h.view(NodeAd({0: GroupAd(GroupState.NONE, 0)})))[-1]
    assert d.action is Action.WAIT and "retry" in d.reason  # retried later, not at once
    h.now += 5.0
    d = decide(h.view(NodeAd({0: GroupAd(GroupState.NONE, 0)})))[-1]
    assert d.action is Action.RELEASE and "retrying the failed stop" in d.reason


async def test_a_stop_failure_of_something_stopped_is_not_a_block(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    h.world.fail("asterisk", "stop")
    h.world.override_status("asterisk", ResourceState.STOPPED)
    assert await h.run(Action.RELEASE) is GroupState.NONE


async def test_a_conflict_release_drops_the_address_first(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    h.world.clear()
    await h.run(Action.RELEASE, conflict=True)
    # the recording driver is not an address agent, so plain right-to-left order remains
    assert h.acted()[0] == ("master", "stop")


async def test_probe_claims_a_group_still_running_with_its_saved_epoch(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=5)
    await h.engine.flush_state()
    again = Harness(tmp_path)  # the daemon restarts on the same box, resources still up
    again.world = h.world
    again.engine = FailoverEngine(
        config(tmp_path), "n1", tmp_path, AgentContext(node="n1", config_dir=tmp_path),
        agent_factory=h.world, clock=lambda: 0.0, on_change=again.changed,
    )
    await again.engine.probe()
    g = again.engine.local_ad().groups[0]
    assert (g.state, g.epoch) == (GroupState.HELD, 5)
    assert again.engine.seen_epochs[0] == 5


async def test_standby_and_takeover_set_one_shot_requests(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.engine.standby("local") == ["MailTo"]
    assert h.engine.local_ad().declines == {0}
    h.engine.apply(decide(h.view(NodeAd({0: GroupAd(GroupState.HELD, 1)}))))
    assert h.engine.local_ad().declines == frozenset()
    assert h.engine.groups[0].last_action is Action.WAIT  # the group's own decision comes last
    h.engine.takeover("all")
    assert h.engine.local_ad().wants == {0}
    await asyncio.sleep(0)


async def test_an_unexpected_error_gives_the_group_up_instead_of_sticking(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    real_start = h.world._perform

    async def broken(resource: str, action: str, node: str) -> ResourceState | None:
        if (resource, action) == ("asterisk", "start"):
            raise OSError(28, "No space left on device")
        return await real_start(resource, action, node)

    h.world._perform = broken  # type: ignore[method-assign]
    before = h.changes
    assert await h.run(Action.ACQUIRE, epoch=1) is GroupState.START_FAILED
    assert h.world.state("198.18.0.10/24/eth0") is ResourceState.STOPPED
    await asyncio.sleep(0)
    assert h.changes > before  # the daemon is told, so it decides again


async def test_stop_failed_groups_are_listed_for_the_shutdown_guard(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    h.world.fail("asterisk", "stop")
    await h.engine.release_all()
    assert h.engine.stop_failed() == ["MailTo"]


async def test_takeover_request_ends_once_the_group_is_held_here(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.engine.takeover("all")
    assert await h.run(Action.ACQUIRE, epoch=1) is GroupState.HELD
    h.engine.apply(decide(h.view(NodeAd({0: GroupAd(GroupState.NONE, 0)}))))
    assert h.engine.local_ad().wants == frozenset()


async def test_a_start_failure_is_forgotten_when_decided(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.world.fail("asterisk", "start")
    assert await h.run(Action.ACQUIRE, epoch=1) is GroupState.START_FAILED
    assert h.engine.facts().start_failed_at == {0: 0.0}
    free = NodeAd({0: GroupAd(GroupState.NONE, 0)})
    h.now = 29.0
    h.engine.apply(decide(h.view(free)))
    assert h.engine.local_ad().groups[0].state is GroupState.START_FAILED
    h.now = 30.0
    h.engine.apply(decide(h.view(free)))
    assert h.engine.local_ad().groups[0].state is GroupState.NONE
    assert h.engine.facts().start_failed_at == {}
    snap = h.engine.snapshot({})[0]
    assert (snap["action"], snap["reason"]) == (
        "forget_failure", "group MailTo: start failure is 30 s old; may be tried here again")


async def test_a_takeover_after_a_start_failure_tries_again_at_once(tmp_path: Path) -> None:
    """The admin woken by a failed start fixes the script and runs `nonstop takeover`: the
    group is tried again now (it said "asking for ..."), not after the 30 s hold, and while
    it is down its reason says both ways out."""
    h = Harness(tmp_path)
    h.world.fail("asterisk", "start")
    assert await h.run(Action.ACQUIRE, epoch=1) is GroupState.START_FAILED
    failed_too = NodeAd({0: GroupAd(GroupState.START_FAILED, 0)})  # nobody else can hold it
    (d,) = decide(h.view(failed_too))
    assert d.action is Action.WAIT and "stays down" in d.reason
    assert "30 s after it failed" in d.reason and "`nonstop takeover` on this node" in d.reason
    h.world.heal("asterisk", "start")
    h.now = 5.0
    h.engine.takeover("all")
    assert h.engine.local_ad().groups[0].state is GroupState.NONE
    (d,) = decide(h.view(failed_too))
    assert (d.action, d.reason) == (
        Action.ACQUIRE, "nobody alive holds group MailTo; taking it: n1 asked to take it over")
    h.engine.apply([d])
    task = h.engine.groups[0].task
    assert task is not None
    await task
    assert h.engine.groups[0].state is GroupState.HELD


async def test_the_highest_epoch_seen_is_remembered_across_restarts(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.engine.apply(decide(h.view(NodeAd({0: GroupAd(GroupState.HELD, 7)}))))
    assert h.engine.seen_epochs[0] == 7
    await h.engine.flush_state()
    again = FailoverEngine(
        config(tmp_path), "n1", tmp_path, AgentContext(node="n1", config_dir=tmp_path),
        agent_factory=h.world, clock=lambda: 0.0, on_change=lambda: None,
    )
    assert again.facts().seen_epochs == {0: 7}


async def test_a_group_found_partly_running_is_completed_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.world.set_state("198.18.0.10/24/eth0", ResourceState.RUNNING)
    await h.engine.probe()
    assert h.engine.facts().incomplete == {0}
    (d,) = decide(h.view(NodeAd({0: GroupAd(GroupState.NONE, 0)})))
    assert d.action is Action.ACQUIRE and "partly running" in d.reason
    h.engine.apply([d])
    task = h.engine.groups[0].task
    assert task is not None
    await task
    assert h.engine.facts().incomplete == frozenset()
    assert all(s == "running" for s in h.engine.groups[0].resource_states)
    (d,) = decide(h.view(NodeAd({0: GroupAd(GroupState.NONE, 0)})))
    assert d.action is Action.WAIT and "holding" in d.reason


async def test_the_monitor_does_not_complete_a_group_found_partly_running(
        tmp_path: Path) -> None:
    """decide() waits before completing it (a Heartbeat peer may have taken it over while this
    daemon was away); the monitor started the rest anyway at its first round."""
    h = Harness(tmp_path)
    h.world.set_state("198.18.0.10/24/eth0", ResourceState.RUNNING)
    await h.engine.probe()
    assert h.engine.groups[0].state is GroupState.HELD and h.engine.facts().incomplete == {0}
    h.engine.monitor_interval_s = 0.01
    h.engine.start_monitor()
    try:
        await asyncio.sleep(0.2)  # many monitor rounds
        assert ("asterisk", "start") not in h.acted()
        assert h.engine.facts().incomplete == {0}
    finally:
        await h.engine.set_monitor_interval(None)


async def test_nothing_is_started_for_a_busy_group(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    gate = h.world.gate("asterisk", "start")
    h.engine.apply([Decision(0, Action.ACQUIRE, "test", epoch=1)])
    assert h.engine.facts().busy == {0}
    await asyncio.sleep(0.01)  # the start has begun and waits at asterisk
    (d,) = decide(h.view(NodeAd({0: GroupAd(GroupState.NONE, 0)})))
    assert d.action is Action.WAIT and "start in progress" in d.reason
    task = h.engine.groups[0].task
    h.engine.apply([Decision(0, Action.ACQUIRE, "again", epoch=2)])  # ignored: one at a time
    assert h.engine.groups[0].task is task and task is not None
    gate.set()
    await task
    assert h.acted().count(("asterisk", "start")) == 1


async def test_acquire_checks_every_status_at_once_then_starts_in_order(tmp_path: Path) -> None:
    """The checks before the starts run side by side, and a start waits only for its own
    check (a hand-off waits for the slowest check, not for their sum); the starts still go
    left to right and skip what already runs."""
    h = Harness(tmp_path)
    h.world.set_state("asterisk", ResourceState.RUNNING)
    first = h.world.gate("MailTo", "status")
    last = h.world.gate("master", "status")
    h.engine.apply([Decision(0, Action.ACQUIRE, "test", epoch=1)])
    await asyncio.sleep(0.01)  # MailTo's and master's checks wait at their gates
    assert sorted(h.world.actions()) == sorted((r, "status") for r in LINE[1:3])
    first.set()
    await asyncio.sleep(0.01)  # everything up to master starts while master's check waits
    assert h.acted() == [("MailTo", "start"), (LINE[1], "start")]
    last.set()
    task = h.engine.groups[0].task
    assert task is not None
    await task
    assert h.acted() == [("MailTo", "start"), (LINE[1], "start"), ("master", "start")]
    assert h.engine.groups[0].state is GroupState.HELD


async def test_a_failed_start_stops_waiting_for_the_other_checks(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.world.fail("MailTo", "start")
    h.world.gate("master", "status")  # never answers: the give-up must not wait for it
    assert await asyncio.wait_for(h.run(Action.ACQUIRE, epoch=1), 2.0) is (
        GroupState.START_FAILED)


class _AddressAgent(RecordingAgent):
    """The recording agent of the address, with the address agent's probe switch: a start
    asked to probe while ``answered_by`` is set fails as IPaddr's does on a conflict."""

    def __init__(self, spec: ResourceSpec, ctx: AgentContext, world: RecordingAgentFactory) -> None:
        super().__init__(spec, ctx, world)
        self.probes: list[bool] = []
        self.answered_by: str | None = None
        self.held_on: str | None = None
        self.address = ipaddress.IPv4Address("198.18.0.10")

    def probe_next_start(self, on: bool) -> None:
        self.probes.append(on)

    async def probe_before_start(self) -> None:
        if self.probes[-1] and self.answered_by is not None:
            raise ResourceError(self.describe(), "start", f"address conflict: {self.address} "
                                f"on eth0 is in use by {self.answered_by} (reply)")

    def reannounce(self) -> None:
        pass

    async def start(self) -> None:
        await super().start()
        self.held_on = "eth0"


async def test_the_takeover_says_whether_to_probe_and_a_conflict_fails_the_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(tmp_path)
    made: list[_AddressAgent] = []

    def factory(spec: ResourceSpec, ctx: AgentContext) -> RecordingAgent:
        if spec.raw != LINE[1]:
            return h.world(spec, ctx)
        made.append(_AddressAgent(spec, ctx, h.world))
        return made[-1]

    h.engine = FailoverEngine(config(tmp_path), "n1", tmp_path,
                              AgentContext(node="n1", config_dir=tmp_path), agent_factory=factory,
                              clock=lambda: h.now, on_change=h.changed, stop_retry_delay_s=0.0)
    (addr,) = made
    addr.answered_by = "02:00:00:00:00:09"
    assert await h.run(Action.ACQUIRE, epoch=1, probe=True) is GroupState.START_FAILED
    assert addr.probes == [True]
    assert h.engine.facts().start_failure == {0: (
        f"recording {LINE[1]}: start failed: address conflict: 198.18.0.10 on eth0 is in use "
        "by 02:00:00:00:00:09 (reply)")}
    # Nothing started at all: the talk's MailTo, left of the address, mailed 'Takeover in
    # progress' and then 'Migrating resource away' for a peer that was only frozen.
    assert not [a for a in h.acted() if a[1] == "start"]
    assert not [a for a in h.acted() if a[1] == "stop"]  # nor stopped ('Migrating ... away')
    assert "unexpected error" not in caplog.text
    assert h.engine.held_addresses() == []

    h.engine.apply([Decision(0, Action.FORGET_FAILURE, "test")])
    assert await h.run(Action.ACQUIRE, epoch=2, probe=False) is GroupState.HELD  # a hand-off
    assert addr.probes == [True, False]
    assert h.engine.facts().start_failure == {}
    assert h.engine.held_addresses() == [addr]


async def test_a_node_that_never_held_the_group_shows_the_holder_s_epoch(tmp_path: Path) -> None:
    """A migration trial read "held by vpbx1-2 ... epoch 0" on one node and epoch 5 on the
    holder: a standby's status showed its own counter, not the group's."""
    h = Harness(tmp_path)
    h.engine.apply(decide(h.view(NodeAd({0: GroupAd(GroupState.HELD, 5)}))))
    assert h.engine.local_ad().groups[0].state is GroupState.NONE
    assert h.engine.snapshot({0: "n2"})[0]["epoch"] == 5


async def test_a_wait_that_leaves_the_group_down_is_logged_at_info(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong authkeys on one of two nodes: the log said "Resources being acquired from
    vpbx1-2." and then nothing at info level, no acquisition and no reason (the refusal was a
    wait, logged at debug), while the PBX was down (a user trial). A wait that leaves the group
    down says why at info; a wait while another node holds it stays at debug."""
    import dataclasses
    import logging

    h = Harness(tmp_path)
    v = dataclasses.replace(h.view(None), ads={"n1": h.engine.local_ad()},
                            alive=frozenset({"n1"}), lost=frozenset({"n2"}),
                            own_key_suspect="5 packets ... failed authentication")
    (d,) = decide(v)
    assert d.action is Action.WAIT and d.down and "failed authentication" in d.reason
    held = decide(h.view(NodeAd({0: GroupAd(GroupState.HELD, 1)})))[-1]
    assert held.action is Action.WAIT and not held.down
    with caplog.at_level(logging.DEBUG, logger="nonstop.failover"):
        h.engine.apply([held])
        h.engine.apply([d])
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels[f"decision: {d.reason}"] == logging.INFO
    assert levels[f"decision: {held.reason}"] == logging.DEBUG
