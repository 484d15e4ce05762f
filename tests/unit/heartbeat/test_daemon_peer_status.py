"""A node that comes back after a crash must not take the group back (found by ``nonstop demo``).

* The daemon decides about resource groups only once every peer it hears has said what it
  holds. Any packet brings comm up (Heartbeat's rule), so a rebooted node may be "up with its
  peer" before the peer's first status arrives; deciding then treated the peer as dead and
  took the group the peer was still starting.
* HA_RSCTMP is wiped at start, as Heartbeat does: a MailTo "running" flag left there by the
  crashed run made the rebooted node believe it still held the group.
"""

from __future__ import annotations

from pathlib import Path

from daemon_harness import talk_daemon

from nonstop.config.loader import load_config_dir
from nonstop.config.model import ResourceSpec
from nonstop.daemon import Daemon
from nonstop.failover.state import GroupAd, GroupState, NodeAd, encode_ad
from nonstop.heartbeat.envelope import Field
from nonstop.heartbeat.membership import MessageView
from nonstop.resources.base import Agent, AgentContext, ResourceState, make_agent
from nonstop.resources.recording import RecordingAgentFactory
from nonstop.talk import copy_talk


def from_peer(seq: int, *fields: Field) -> MessageView:
    return MessageView([*fields, ("src", "vpbx1-2"), ("srcuuid", b"\x02" * 16),
                        ("seq", f"{seq:x}"), ("hg", "7"), ("ts", "6b062e8e"), ("ttl", "3")])


async def test_a_peer_heard_before_its_first_status_is_not_taken_for_dead(
        tmp_path: Path) -> None:
    world = RecordingAgentFactory()
    daemon, _ = talk_daemon(tmp_path, haresources=None, agent_factory=world)
    assert daemon.protocol is not None and daemon.loop is not None
    m = daemon.protocol
    engine = daemon.engine = daemon._make_engine()
    daemon._probed = True
    now = daemon.loop.time()

    # vpbx1-2's first packet after our (re)start is not a status: comm is up, its holdings
    # are unknown. vpbx1-1 is the group's preferred node, yet it must not take the group.
    ack = from_peer(1, ("t", "NS_ackmsg"), ("dest", "vpbx1-1"), ("ackseq", "1"))
    daemon._handle(m.receive_message(ack, "eth0", now), now)
    assert m.comm_up
    daemon._reconsider()
    assert engine.groups[0].state is GroupState.NONE
    assert not [c for c in world.calls if c.action == "start"]

    # Its status: it is starting the group (a takeover in progress). Still nothing to take.
    ad = encode_ad(NodeAd({0: GroupAd(GroupState.STARTING, 2)}, digest=engine.digest))
    status = from_peer(2, ("t", "status"), ("st", "active"), ("dt", "7d0"), ("protocol", "1"),
                       *ad)
    daemon._handle(m.receive_message(status, "eth0", now), now)
    daemon._reconsider()
    assert engine.groups[0].state is GroupState.NONE
    assert not [c for c in world.calls if c.action == "start"]
    assert "held by vpbx1-2" in engine.groups[0].last_reason


async def test_pseudo_resource_flags_of_a_crashed_run_are_gone_at_start(tmp_path: Path) -> None:
    ha_d = copy_talk(tmp_path / "talk") / "ha.d"
    cfg = load_config_dir(str(ha_d), "vpbx1-1")
    state = tmp_path / "state"
    world = RecordingAgentFactory()

    def agents(spec: ResourceSpec, ctx: AgentContext) -> Agent:
        # The real MailTo (its flag file is the point); the rest need not exist here.
        return make_agent(spec, ctx) if spec.name == "MailTo" else world(spec, ctx)

    first = Daemon(cfg, "vpbx1-1", state, agent_factory=agents)
    mailto = first._make_engine().groups[0].agents[0]
    # What start leaves behind, without sending the mail (no SMTP from a unit test).
    mailto._set_state(True)  # type: ignore[attr-defined]
    assert await mailto.status() is ResourceState.RUNNING
    assert list((state / "rsctmp").iterdir())
    # The node crashed (no stop ran) and boots again: its MailTo is not running.
    again = Daemon(cfg, "vpbx1-1", state, agent_factory=agents)
    assert await again._make_engine().groups[0].agents[0].status() is ResourceState.STOPPED
    assert not list((state / "rsctmp").iterdir())
