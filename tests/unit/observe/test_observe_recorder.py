"""The recorder turns what the daemon sees into records and metrics: membership events,
decisions (once per reason), group changes with the takeover's duration, resource actions,
commands with who asked."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from test_observe_notify import talk_config

from nonstop.config.model import ResourceSpec
from nonstop.failover.decide import Action, Decision, GroupInfo
from nonstop.heartbeat.membership import (
    CommUp,
    LateHeartbeat,
    LinkChanged,
    NodeDied,
    NodeReturned,
    Send,
    SilenceWarning,
    StatusChanged,
)
from nonstop.heartbeat.states import NodeStatus
from nonstop.observe.metrics import parse
from nonstop.observe.recorder import Recorder
from nonstop.observe.store import history_dir, read_records
from nonstop.resources.base import AgentContext, ResourceError, ResourceState
from nonstop.resources.recording import RecordingAgentFactory


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def started(tmp_path: Path, clock: Clock | None = None) -> Recorder:
    rec = Recorder(talk_config(tmp_path), "vpbx1-1", tmp_path / "state",
                   mono=clock or Clock(), metrics=True)
    await rec.start()
    return rec


def kinds(rec: Recorder) -> list[str]:
    return [r.kind for r in rec.recent]


async def test_membership_events_become_records(tmp_path: Path) -> None:
    rec = await started(tmp_path)
    rec.on_membership([
        Send((("t", "status"),)),
        StatusChanged("vpbx1-2", NodeStatus.INIT, NodeStatus.ACTIVE),
        CommUp(),
        LinkChanged("vpbx1-2", "eth0", False),
        NodeDied("vpbx1-2", "timeout", 2003, 2000),
        StatusChanged("vpbx1-2", NodeStatus.ACTIVE, NodeStatus.DEAD),
        NodeReturned("vpbx1-2", "restart"),
    ])
    assert kinds(rec)[1:] == ["node_up", "comm_up", "link_dead", "node_dead", "node_back"]
    dead = rec.recent[4]
    assert dead.node == "vpbx1-2"
    assert dead.reason == "vpbx1-2 is dead: no heartbeat for 2003 ms (deadtime 2000 ms)"
    # The other changes issue 14 names: late, silent, a link back, a node that left.
    rec.on_membership([
        LateHeartbeat("vpbx1-2", 650),
        SilenceWarning("vpbx1-2", 1001),
        LinkChanged("vpbx1-2", "eth0", True),
        NodeDied("vpbx1-2", "shutdown", 0, 2000),
    ])
    late, silent, link_up, left = list(rec.recent)[-4:]
    assert (late.kind, late.data["interval_ms"]) == ("node_late", 650)
    assert (silent.kind, silent.reason) == ("node_silent",
                                            "no heartbeat from vpbx1-2 for 1001 ms (warntime)")
    assert (link_up.kind, link_up.data["link"]) == ("link_up", "eth0")
    assert (left.kind, left.data["cause"]) == ("node_dead", "shutdown")
    assert left.reason == "vpbx1-2 left the cluster (shutdown notice)"
    await rec.close()
    on_disk = read_records(history_dir(tmp_path / "state"))
    assert [r.kind for r in on_disk] == [*kinds(rec)]
    assert on_disk[-1].kind == "daemon_stop"


async def test_a_decision_is_recorded_when_its_reason_changes(tmp_path: Path) -> None:
    rec = await started(tmp_path)
    groups = [GroupInfo(0, "IPaddr::198.18.0.10", "vpbx1-1")]
    wait = Decision(0, Action.WAIT, "group IPaddr::198.18.0.10 is held by vpbx1-2")
    rec.on_decisions([wait], groups)
    rec.on_decisions([wait], groups)
    take = Decision(0, Action.ACQUIRE, "nobody alive holds group ...; taking it", epoch=4)
    rec.on_decisions([take], groups)
    split = Decision(0, Action.RELEASE, "also held by vpbx1-2 ...", conflict=True)
    rec.on_decisions([split], groups)
    assert kinds(rec)[1:] == ["decision", "decision", "split_settled"]
    assert rec.recent[2].data["action"] == "acquire"
    assert rec.recent[2].data["epoch"] == 4
    assert rec.recent[2].group == "IPaddr::198.18.0.10"
    await rec.close()


def snap(state: str, holder: str | None, epoch: int = 3) -> list[dict[str, object]]:
    return [{"key": "g", "local_state": state, "holder": holder, "epoch": epoch,
             "resources": []}]


async def test_group_changes_and_the_takeover_duration(tmp_path: Path) -> None:
    clock = Clock()
    rec = await started(tmp_path, clock)
    rec.on_groups(snap("none", "vpbx1-2"))
    rec.on_groups(snap("none", "vpbx1-2"))  # nothing changed: nothing recorded
    rec.on_groups(snap("starting", "vpbx1-1"))
    clock.t += 1.25
    rec.on_groups(snap("held", "vpbx1-1"))
    rec.on_groups(snap("stopping", "vpbx1-1"))
    clock.t += 0.5
    rec.on_groups(snap("none", None))
    rec.on_groups(snap("start_failed", None))
    assert kinds(rec)[1:] == ["group_holder", "group_starting", "group_holder",
                              "group_acquired", "group_releasing", "group_released",
                              "group_holder", "group_failed"]
    acquired = rec.recent[4]
    assert acquired.data["duration_ms"] == 1250
    assert rec.recent[6].data["duration_ms"] == 500
    assert rec.metrics is not None
    text = rec.metrics.registry
    assert text.get_sample_value("nonstop_takeovers_total", {"group": "g"}) == 1
    assert text.get_sample_value("nonstop_takeover_duration_seconds_sum", {"group": "g"}) == 1.25
    assert text.get_sample_value("nonstop_takeover_duration_seconds_bucket",
                                 {"group": "g", "le": "2.0"}) == 1
    assert text.get_sample_value("nonstop_group_failures_total",
                                 {"group": "g", "action": "start"}) == 1
    await rec.close()


async def test_resource_actions_are_timed_and_a_monitor_change_is_recorded(
        tmp_path: Path) -> None:
    rec = await started(tmp_path)
    world = RecordingAgentFactory()
    make = rec.timed(world)
    cfg = rec.cfg
    spec: ResourceSpec = cfg.groups[0].resources[0]
    ctx = AgentContext(node="vpbx1-1", config_dir=tmp_path, state_dir=tmp_path,
                       environment={}, logger=logging.getLogger("t"))
    agent = make(spec, ctx)
    assert await agent.status() is ResourceState.STOPPED  # first look: not an event
    await agent.start()
    assert await agent.status() is ResourceState.RUNNING  # as expected: not an event
    world.set_state(spec.raw, ResourceState.STOPPED)  # the service died
    assert await agent.status() is ResourceState.STOPPED  # the monitor finds it down
    world.fail(spec.raw, "stop")
    with pytest.raises(ResourceError):
        await agent.stop()
    got = [(r.kind, r.data["result"]) for r in rec.recent if r.kind.startswith("resource_")]
    assert got[0] == ("resource_start", "ok")
    assert got[1] == ("resource_monitor", "stopped")
    assert got[2][0] == "resource_stop" and got[2][1] != "ok"
    assert all(r.group == cfg.groups[0].key for r in rec.recent if r.kind.startswith("res"))
    assert rec.metrics is not None and rec.metrics.registry.get_sample_value(
        "nonstop_resource_action_failures_total",
        {"resource": agent.describe(), "action": "stop"}) == 1
    await rec.close()


async def test_commands_say_who_asked(tmp_path: Path) -> None:
    rec = await started(tmp_path)
    rec.on_command("standby", {"cmd": "standby", "which": "all",
                               "peer": "uid 0 (root) pid 42 (nonstop)"})
    rec.on_reload({"ok": True, "applied": ["deadtime 2000 -> 3000 ms"], "deferred": []})
    command, reload = rec.recent[1], rec.recent[2]
    assert command.kind == "command" and command.reason == "standby all requested"
    assert command.data["who"] == "uid 0 (root) pid 42 (nonstop)"
    assert reload.kind == "reload" and "deadtime 2000 -> 3000 ms" in reload.reason
    await rec.close()


async def test_the_metrics_text_parses_and_counts_events(tmp_path: Path) -> None:
    rec = await started(tmp_path)
    rec.on_membership([NodeDied("vpbx1-2", "timeout", 2003, 2000)])
    assert rec.metrics is not None
    text = rec.metrics.registry
    assert text.get_sample_value("nonstop_events_total", {"kind": "node_dead"}) == 1
    await asyncio.sleep(0)
    families = set(parse(rec.metrics.render(SAMPLE_STATUS).decode())[0])
    assert {"nonstop_events", "nonstop_node_status", "process_resident_memory_bytes"} <= families
    await rec.close()


async def test_without_nonstop_metrics_the_client_library_is_not_used(tmp_path: Path) -> None:
    rec = Recorder(talk_config(tmp_path), "vpbx1-1", tmp_path / "state")
    assert rec.metrics is None  # no nonstop_metrics line: nothing counted, nothing loaded
    await rec.start()
    rec.on_groups(snap("starting", "vpbx1-1"))
    rec.on_groups(snap("held", "vpbx1-1"))
    assert kinds(rec)[-1] == "group_acquired"
    await rec.close()


SAMPLE_STATUS: dict[str, object] = {
    "version": 1, "node": "vpbx1-1", "cluster": "linux-ha", "status": "active",
    "comm_up": True, "pid": 1, "generation": 7, "uptime_s": 12.5,
    "timing": {"keepalive_ms": 200, "deadtime_ms": 2000, "warntime_ms": 1000,
               "initdead_ms": 10000},
    "nodes": [
        {"name": "vpbx1-1", "local": True, "status": "active", "last_heard_ms_ago": 0,
         "deadtime_ms": 2000, "generation": None, "links": {}},
        {"name": "vpbx1-2", "local": False, "status": "dead", "last_heard_ms_ago": 2500,
         "deadtime_ms": 2000, "generation": 3, "links": {"eth0": "dead", "eth1": "up"}},
    ],
    "groups": [{"key": "IPaddr::198.18.0.10", "preferred_node": "vpbx1-1",
                "holder": "vpbx1-1", "local_state": "held", "epoch": 4, "reason": "r",
                "resources": [{"resource": "IPaddr 198.18.0.10", "state": "running"}]}],
    "sync": {"active": True, "last_sync": 1800000000.5, "last_sync_ok": True,
             "last_error": None, "syncs": 9, "dirty": 2, "pending_hints": 1, "lag_s": 0.25,
             "bytes_sent": 4096, "server": {"sessions": 3, "changes_received": 5},
             "not_replicated": {"count": 2, "paths": ["/etc/asterisk/a\\xff",
                                                      "/etc/asterisk/b\\xfe"]}},
    "packets": {"sent": 100, "received": 210, "send_errors": 1, "kernel_dropped": 0,
                "rexmit": {"requests": 2, "resent": 1}, "dropped": {"bad_auth": 4}},
}


def test_a_node_without_nonstop_metrics_does_not_load_the_client_library() -> None:
    code = "import sys, nonstop.daemon; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "False"


class _Server:
    def __init__(self) -> None:
        self.stats: dict[str, int] = {"sessions": 1}


class _Node:
    on_overwritten: object = None


class _Replicator:
    """What the recorder uses of a Replicator: its server's counters, on_report and its
    node's on_overwritten."""

    def __init__(self) -> None:
        self.server = _Server()
        self.node = _Node()
        self.on_report: object = None


async def test_replication_pushes_conflicts_and_receptions(tmp_path: Path) -> None:
    from nonstop.sync.node import Report

    rec = await started(tmp_path)
    now = [100.0]
    rec.mono = lambda: now[0]
    repl = _Replicator()
    rec.watch_sync(repl)
    assert repl.on_report == rec.on_sync_report
    rec.on_sync_report(Report())  # a full scan that found nothing: not an event
    a, c = "vpbx1-2: a: both changed", "vpbx1-2: c: both changed"
    rec.on_sync_report(Report(counts={"ok": 2, "conflict": 1}, problems=[a], conflicts=[a],
                              sent_names=["a", "b"], bytes_sent=900))
    rec.poll_sync()  # the daemon's once-a-second work: nothing received yet
    repl.server.stats["changes_received"] = 3
    rec.poll_sync()
    rec.poll_sync()  # counted once
    # A conflict is no failure (a notify hook paged "replication failed" for it).
    assert kinds(rec)[1:] == ["sync_conflict", "sync_pushed"]
    assert rec.recent[2].data == {"count": 2, "bytes": 900}
    # The retries every 5 s meet the same conflict: recorded once, while it stays open,
    # whatever other problem comes and goes beside it (that one fails, and recovers).
    refused = "vpbx1-2: connection refused"
    for problems in ([a], [a, refused], [refused, a], [a]):
        rec.on_sync_report(Report(counts={"conflict": 1}, problems=problems, conflicts=[a]))
    assert kinds(rec)[1:] == ["sync_conflict", "sync_pushed", "sync_failed", "sync_recovered"]
    assert rec.recent[3].reason == f"replication failed: {refused}"
    rec.on_sync_report(Report(counts={"conflict": 2}, problems=[a, c], conflicts=[a, c]))
    assert kinds(rec)[-1] == "sync_conflict" and rec.recent[-1].data == {"count": 1}
    assert c in rec.recent[-1].reason and a not in rec.recent[-1].reason
    # A busy minute: pushes and receptions summed, one record each when the minute is over.
    for i in range(240):  # 4 pushes and receptions a second for a minute
        now[0] += 0.25
        rec.on_sync_report(Report(counts={"ok": 1}, sent_names=[f"f{i}"], bytes_sent=10))
        repl.server.stats["changes_received"] += 1
        rec.poll_sync()
    assert kinds(rec)[-2:] == ["sync_pushed", "sync_received"]
    pushed, received = rec.recent[-2], rec.recent[-1]
    assert pushed.data == {"count": 240, "bytes": 2400}
    assert received.data == {"count": 3 + 239}  # the 3 held since the first push, and more
    assert pushed.reason == "pushed 240 change(s) to the peers in the last 60 s"
    assert kinds(rec).count("sync_pushed") == 2
    # A takeover's force-sync replaced what this node wrote in its last moments: one record
    # naming the peer, the count and the first names (a log line each said it before).
    assert repl.node.on_overwritten == rec.on_sync_overwritten
    rec.on_sync_overwritten("vpbx1-2", [f"/var/spool/asterisk/voicemail/m{i}" for i in range(7)])
    told = rec.recent[-1]
    assert (told.kind, told.node, told.data) == ("sync_overwritten", "vpbx1-2", {"count": 7})
    assert told.reason.startswith("vpbx1-2's forced push overwrote 7 change(s) made here")
    assert "/var/spool/asterisk/voicemail/m4 and 2 more" in told.reason
    await rec.close()
