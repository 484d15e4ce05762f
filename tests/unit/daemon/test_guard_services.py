"""The daemon's side of issue 12 (nonstop.guards): settled ping counts, the pn= field,
fencing tasks and their retry, the own-key verdict, and the status keys they add."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from nonstop.config.loader import load_config_dir
from nonstop.config.model import ClusterConfig
from nonstop.failover.decide import Action, Decision
from nonstop.guards import GuardServices, SettledCount
from nonstop.resources.stonith import FenceResult, RecordingFencer
from nonstop.talk import copy_talk

PEER_IP = "198.18.0.2"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def config(tmp_path: Path, extra: str) -> ClusterConfig:
    d = copy_talk(tmp_path / "talk") / "ha.d"
    hacf = d / "ha.cf"
    hacf.write_text(hacf.read_text() + extra)
    return load_config_dir(str(d), "vpbx1-1")


def test_a_count_settles_only_after_holding_for_the_hold_time() -> None:
    s = SettledCount(2.0)
    assert s.update(1, 0.0) is None
    assert s.update(1, 2.0) == 1
    assert s.update(0, 2.5) == 1  # one lost echo moves nothing...
    assert s.update(1, 3.0) == 1
    assert s.update(0, 3.5) == 1
    assert s.update(0, 5.5) == 0  # ...a loss that lasts deadping does


def test_ping_count_is_advertised_once_settled(tmp_path: Path) -> None:
    clock = Clock()
    cfg = config(tmp_path, "ping 192.0.2.1\ndeadping 1\nrespawn hacluster "
                 "/usr/lib/heartbeat/ipfail\n")
    g = GuardServices(cfg, "vpbx1-1", clock=clock, on_change=lambda: None)
    assert g.ipfail and g.status_fields(clock.now) == []
    assert g.tracker is not None
    g.tracker.reply("192.0.2.1", clock.now)
    assert g.status_fields(clock.now) == []  # not settled yet
    clock.now += 1.0
    assert g.status_fields(clock.now) == [("pn", "1")]
    inputs = g.inputs(clock.now, ["vpbx1-1", "vpbx1-2"])
    assert (inputs.ping_mine, inputs.ping_total, inputs.fencing) == (1, 1, None)
    assert inputs.ping_fresh == 0  # the reply is 1 s old: more than deadping/2
    g.tracker.reply("192.0.2.1", clock.now)
    assert g.inputs(clock.now, []).ping_fresh == 1
    st = g.status(clock.now)
    assert (st["ping_reachable"], st["ping_total"]) == (1, 1)
    assert st["ping_nodes"][0]["status"] == "ping"
    assert st["ipfail"] == {"on": True, "settled": 1}


def test_a_reload_applies_deadping(tmp_path: Path) -> None:
    clock = Clock()
    g = GuardServices(config(tmp_path / "a", "ping 192.0.2.1\n"), "vpbx1-1", clock=clock,
                      on_change=lambda: None)
    assert g.tracker is not None and g.tracker.deadping_ms == 2000  # the talk's deadtime
    g.reconfigure(config(tmp_path / "b", "ping 192.0.2.1\ndeadping 5\n").ha)
    assert (g.tracker.deadping_ms, g.settled.hold_s) == (5000, 0.6)  # 3 keepalives of 200 ms
    g.reconfigure(config(tmp_path / "c", "ping 192.0.2.1\ndeadping 500ms\n").ha)
    assert g.settled.hold_s == 0.5  # never more than deadping


def test_the_advertised_count_is_the_current_one_and_the_own_one_holds(tmp_path: Path) -> None:
    # The router dies: this node declares it dead first. Its own count (what ipfail compares)
    # holds for 3 keepalives; what it tells its peer changes at once, so the peer, which
    # declares the same death at most a keepalive later, sees equal counts before either acts.
    clock = Clock()
    cfg = config(tmp_path, "ping 192.0.2.1\ndeadping 1\nrespawn hacluster "
                 "/usr/lib/heartbeat/ipfail\n")
    g = GuardServices(cfg, "vpbx1-1", clock=clock, on_change=lambda: None)
    assert g.tracker is not None
    g.tracker.reply("192.0.2.1", clock.now)
    assert g.status_fields(clock.now) == []  # the daemon asks at every tick
    clock.now += 0.7
    assert g.status_fields(clock.now) == [("pn", "1")]
    clock.now += 0.4  # no reply for deadping (1.1 s): dead
    g.tracker.tick(clock.now)  # the prober's timer
    assert g.status_fields(clock.now) == [("pn", "0")]
    assert g.inputs(clock.now, ["vpbx1-1"]).ping_mine == 1  # not held long enough yet
    clock.now += 0.7
    assert g.inputs(clock.now, ["vpbx1-1"]).ping_mine == 0


def test_ping_nodes_without_ipfail_are_reported_not_advertised(tmp_path: Path) -> None:
    clock = Clock()
    g = GuardServices(config(tmp_path, "ping 192.0.2.1\n"), "vpbx1-1", clock=clock,
                      on_change=lambda: None)
    clock.now += 100
    assert g.status_fields(clock.now) == []
    assert g.inputs(clock.now, []).ping_total == 0  # decide() ignores ping counts
    assert g.status(clock.now)["ping_total"] == 1


async def test_fencing_runs_in_a_task_a_failure_is_retried_after_5_s(tmp_path: Path) -> None:
    clock = Clock()
    changes: list[int] = []
    fencer = RecordingFencer(results={"vpbx1-2": [False, True]})
    cfg = config(tmp_path, "stonith_host * external/lab box=vpbx1-2\n")
    g = GuardServices(cfg, "vpbx1-1", clock=clock, on_change=lambda: changes.append(1),
                      fencer=fencer)
    assert g.inputs(clock.now, ["vpbx1-1"]).fencing == {}
    fence = Decision(0, Action.FENCE, "fence it", target="vpbx1-2")
    g.act([fence, fence])  # two groups ask: fenced once
    assert g.inputs(clock.now, ["vpbx1-1"]).fencing == {"vpbx1-2": "pending"}
    await asyncio.sleep(0.01)
    (failed,) = (g.inputs(clock.now, ["vpbx1-1"]).fencing or {}).values()
    assert isinstance(failed, FenceResult) and not failed.ok and changes
    g.act([fence])  # still the failure: not retried before 5 s
    assert len(fencer.calls) == 1
    clock.now += 5.0
    assert g.inputs(clock.now, ["vpbx1-1"]).fencing == {}  # decide() asks again
    g.act([fence])
    await asyncio.sleep(0.01)
    (ok,) = (g.inputs(clock.now, ["vpbx1-1"]).fencing or {}).values()
    assert isinstance(ok, FenceResult) and ok.ok
    assert g.status(clock.now)["fencing"]["last"]["ok"] is True
    back = g.inputs(clock.now, ["vpbx1-1", "vpbx1-2"])  # the fenced peer came back
    assert back.fenced == {"vpbx1-2"} and back.fencing == {}
    await g.stop()


def test_auth_failures_from_a_peer_make_the_own_key_suspect(tmp_path: Path) -> None:
    clock = Clock()
    g = GuardServices(config(tmp_path, ""), "vpbx1-1", clock=clock, on_change=lambda: None,
                      peers=[PEER_IP])
    for _ in range(5):
        g.packet("203.0.113.9", False, clock.now)  # not a peer: not counted
    assert g.inputs(clock.now, []).own_key_suspect is None
    for _ in range(5):
        g.packet(PEER_IP, False, clock.now)
    reason = g.inputs(clock.now, []).own_key_suspect
    assert reason is not None and "either may be the wrong one" in reason  # two nodes
    assert g.status(clock.now)["own_key_suspect"] is True
    g.packet(PEER_IP, True, clock.now)  # one good packet: our key works
    assert g.inputs(clock.now, []).own_key_suspect is None


def test_a_suspect_own_key_is_said_again_while_it_lasts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    g = GuardServices(config(tmp_path, ""), "vpbx1-1", clock=clock, on_change=lambda: None,
                      peers=[PEER_IP])
    caplog.set_level(logging.INFO, logger="nonstop")
    for second in range(130):  # the peer's packets keep failing, 5 a second, for 130 s
        clock.now = float(second)
        for _ in range(5):
            g.packet(PEER_IP, False, clock.now)
        g.tick(clock.now)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "own key" in r.getMessage()]
    assert [lvl for lvl, _ in lines] == [logging.ERROR] * 3  # at 0 s, then at 60 s and 120 s
    assert lines[1][1].startswith("own key: still suspect: ")


async def test_status_text_and_json_show_the_guards(tmp_path: Path) -> None:
    from nonstop.daemon import Daemon
    from nonstop.heartbeat.envelope import Identity
    from nonstop.heartbeat.protocol import HeartbeatProtocol
    from nonstop.quick import render_status
    from nonstop.resources.recording import RecordingAgentFactory

    cfg = config(tmp_path, "ping 192.0.2.1\napiauth ipfail uid=hacluster\n"
                 "stonith_host * external/lab box=vpbx1-2\n")
    d = Daemon(cfg, "vpbx1-1", tmp_path / "state", agent_factory=RecordingAgentFactory())
    d.loop = asyncio.get_running_loop()
    d.protocol = HeartbeatProtocol(cfg.ha, Identity("vpbx1-1", b"\x01" * 16, 5), cfg.authkeys,
                                   d.loop.time(), wall_clock=lambda: 0,
                                   loadavg=lambda now: "n/a")
    d.guards = GuardServices(cfg, "vpbx1-1", clock=d._now, on_change=lambda: None,
                             peers=[PEER_IP])
    for _ in range(5):
        d.guards.packet(PEER_IP, False, d._now())
    st = d.status()
    assert (st["ping_total"], st["ping_reachable"], st["ipfail"]["on"]) == (1, 0, True)
    assert st["fencing"]["device"] == "external/lab" and st["respawn"] == []
    assert st["own_key_suspect"] is True
    text = render_status(st)
    assert "ping nodes: 0 of 1 answer (ipfail on, settled count None)" in text
    assert "    192.0.2.1            init  192.0.2.1" in text
    assert "fencing: external/lab; never used" in text
    assert "OWN KEY SUSPECT: 5 packets from peers" in text
    assert st["address_conflicts"] == []  # nothing held
    st["address_conflicts"] = [{"ip": "198.18.0.10", "iface": "eth0", "conflict": True,
                                "claimants": [{"mac": "02:00:00:00:00:09", "how": "reply"}],
                                "conflicts": 1, "last_event": "...", "error": None}]
    assert ("ADDRESS CONFLICT: 198.18.0.10 on eth0, which this node holds, is also claimed by "
            "02:00:00:00:00:09 (reply)") in render_status(st)


async def test_respawn_clients_start_at_comm_up_and_stop_first(tmp_path: Path) -> None:
    import getpass

    clock = Clock()
    cfg = config(tmp_path, f"respawn {getpass.getuser()} exec sleep 30\nenv WHO=lab\n")
    g = GuardServices(cfg, "vpbx1-1", clock=clock, on_change=lambda: None)
    assert g.status(clock.now)["respawn"] == []  # nothing before comm is up
    g.comm_up()
    g.comm_up()  # once only
    (r,) = g.respawners
    for _ in range(200):
        if r.pid is not None:
            break
        await asyncio.sleep(0.01)
    (st,) = g.status(clock.now)["respawn"]
    assert (st["command"], st["state"], st["starts"]) == ("exec sleep 30", "running", 1)
    await g.stop()
    assert r.state.value == "done"


async def test_peer_addresses_come_from_ucast_and_etc_hosts(tmp_path: Path) -> None:
    from nonstop import guards

    hosts = ("127.0.0.1 localhost\n198.18.0.2 vpbx1-2.example vpbx1-2 # peer\n"
             "::1 vpbx1-2\n#198.18.0.9 vpbx1-2\nbad-line\n")
    assert guards.hosts_addresses(hosts, ["VPBX1-2", "nowhere"]) == ["198.18.0.2"]
    cfg = config(tmp_path, "ucast eth0 198.18.0.3\n")
    g = GuardServices(cfg, "vpbx1-1", clock=Clock(), on_change=lambda: None)
    assert g.keycheck.peers == {"198.18.0.3"} and g._resolve == ["vpbx1-2"]
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(hosts)
    old, guards.HOSTS_FILE = guards.HOSTS_FILE, str(hosts_file)
    try:
        await g._learn_peers()
    finally:
        guards.HOSTS_FILE = old
    assert g.keycheck.peers == {"198.18.0.3", "198.18.0.2"}
