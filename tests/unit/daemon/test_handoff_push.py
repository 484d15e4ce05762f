"""The daemon's side of a hand-off's last push and of dead peers (daemon_sync.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nonstop.config.loader import load_config_dir
from nonstop.daemon_sync import ReplicationWiring
from nonstop.observe.recorder import Recorder
from nonstop.talk import copy_talk


class _Replicator:
    def __init__(self, problems: list[str], lacking: str = "vpbx1-2") -> None:
        self.problems = problems
        self.lacking = lacking  # the peer the names are dirty for
        self.pushes = 0
        self.dead: frozenset[str] = frozenset()
        self.connects_to: dict[str, str] = {}  # where the pushes go: unknown, push as before
        g = SimpleNamespace(group=SimpleNamespace(peers=lambda me: [
            SimpleNamespace(name=n) for n in ("vpbx1-2", "vpbx1-3", "backup") if n != me]))
        self.node = SimpleNamespace(groups=[g])

    async def push_pending(self, force: bool = True) -> Any:
        self.pushes += 1
        return SimpleNamespace(problems=self.problems, counts={"put": 1})

    def unsent(self, among: Any = None) -> list[str]:
        if not self.problems or (among is not None and self.lacking not in among):
            return []
        return ["/etc/asterisk/extensions.conf"]

    def live(self) -> list[str]:
        return ["vpbx1-2", "backup"]

    def addresses(self, among: Any) -> dict[str, list[str]]:
        return {n: [a] for n, a in self.connects_to.items() if n in among}

    def failing(self) -> str | None:
        return self.problems[-1] if self.problems else None

    def note_standby_refused(self, text: str) -> None:
        self.noted = text

    def set_dead(self, peers: frozenset[str]) -> None:
        self.dead = peers


class _Wiring(ReplicationWiring):
    def __init__(self, replicator: _Replicator) -> None:
        self.replicator = replicator  # type: ignore[assignment]
        self.protocol = None
        self.node = "vpbx1-1"
        self._sync_tasks = set()
        self._was_active = True
        self._stop = asyncio.Event()
        self._stop.set()  # no _replication_follows (no engine here)
        self.cfg = SimpleNamespace(ha=SimpleNamespace(  # type: ignore[assignment]
            nodes=("vpbx1-1", "vpbx1-2", "vpbx1-3")))
        # the history: a real Recorder where a test reads it
        self.observer = SimpleNamespace(record=lambda *a, **k: None)  # type: ignore[assignment]


def test_a_failed_push_before_the_stop_refuses_a_standby_only() -> None:
    async def scenario() -> None:
        w = _Wiring(_Replicator(["vpbx1-2: No space left on device"]))
        why = await w._before_release(False, True)
        assert why is not None and "No space left on device" in why
        assert "1 change(s) made here are not on vpbx1-2" in why
        assert "/etc/asterisk/extensions.conf" in why and w._handoffs == 0
        assert await w._before_release(False, False) is None  # shutdown, failback: no push
        assert w.replicator.pushes == 1 and w._handoffs == 1  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_a_standby_refused_after_its_push_failed_is_told_in_status_and_history(
        tmp_path: Path) -> None:
    """``nonstop standby`` has answered before the push that refuses it: the refusal was
    only in the log. Status (replication's last problem) and the history now say it."""
    async def scenario() -> None:
        cfg = load_config_dir(str(copy_talk(tmp_path) / "ha.d"), "vpbx1-1")
        rec = Recorder(cfg, "vpbx1-1", tmp_path / "state")
        await rec.start()
        try:
            w = _Wiring(_Replicator(["vpbx1-2: No space left on device"]))
            w.observer = rec
            why = await w._before_release(False, True)
            assert why is not None
            noted = w.replicator.noted  # type: ignore[union-attr]
            assert noted == why and "No space left on device" in noted
            (told,) = [r for r in rec.recent if "standby refused" in r.reason]
            assert told.kind == "standby_refused" and "No space left on device" in told.reason
        finally:
            await rec.close()

    asyncio.run(scenario())


def test_the_last_push_after_the_stop_says_loudly_what_it_could_not_send(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        w = _Wiring(_Replicator(["vpbx1-2: No space left on device"]))
        assert await w._before_release(False, False) is None
        assert await w._before_release(True, False) is None
        assert w._handoffs == 0

    caplog.set_level(logging.INFO, logger="nonstop")
    asyncio.run(scenario())
    crit = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(crit) == 1 and "/etc/asterisk/extensions.conf" in crit[0]


def test_pushes_skip_the_peers_heartbeats_declare_dead() -> None:
    from nonstop.heartbeat.states import NodeStatus

    w = _Wiring(_Replicator([]))
    nodes = [SimpleNamespace(name=n, status=st) for n, st in (
        ("vpbx1-1", NodeStatus.ACTIVE), ("vpbx1-2", NodeStatus.DEAD),
        ("vpbx1-3", NodeStatus.UP))]
    w.protocol = SimpleNamespace(view=lambda now: SimpleNamespace(nodes=nodes))  # type: ignore[assignment]
    w._now = lambda: 0.0  # type: ignore[method-assign]
    w._follow_membership(w.replicator)  # type: ignore[arg-type]
    # a csync2 host outside ha.cf is never judged dead
    assert w.replicator.dead == frozenset({"vpbx1-2"})  # type: ignore[union-attr]


def test_a_host_outside_ha_cf_that_lacks_changes_keeps_no_group_here() -> None:
    """csync2.cfg's `host backup;` (not an ha.cf node) is down: the nodes that can take the
    group have everything, so neither `nonstop standby` nor its last push is refused (a review
    found both refused it, saying the new holder would overwrite what it lacks)."""
    async def scenario() -> None:
        w = _Wiring(_Replicator(["connection to backup failed: refused"], lacking="backup"))
        assert w._standby_refusal() is None
        assert await w._before_release(False, True) is None
        w2 = _Wiring(_Replicator(["vpbx1-2: No space left on device"]))
        assert "is failing" in str(w2._standby_refusal())

    asyncio.run(scenario())


def test_a_hand_off_count_is_never_left_behind() -> None:
    """A review: a restart of replication between the two hooks, or a stop that raised, left
    the count at 1, and a later conflict release (a split brain's loser) or a failed start's
    give-up turned replication active and force-synced from a releasing node."""
    from nonstop.failover.state import GroupAd, GroupState, NodeAd

    async def scenario() -> None:
        w = _Wiring(_Replicator([]))
        assert await w._before_release(False, False) is None and w._handoffs == 1
        old, w.replicator, w._was_active = w.replicator, None, False  # a reload's restart
        assert await w._before_release(True, False) is None
        assert w._handoffs == 0
        # A stop that raised: the second hook never came; the group is stop-failed.
        w.replicator, w._was_active = old, True
        assert await w._before_release(False, False) is None and w._handoffs == 1
        w._stop.clear()
        w._cluster_view = lambda: SimpleNamespace(  # type: ignore[method-assign,assignment,return-value]
            alive=frozenset({"vpbx1-1", "vpbx1-2"}))
        old.set_active = lambda active: None  # type: ignore[method-assign,union-attr]
        states = [GroupState.STOP_FAILED]
        w.engine = SimpleNamespace(  # type: ignore[assignment]
            local_ad=lambda: NodeAd({0: GroupAd(states[0], 3)}))
        w._replication_follows()
        assert w._handoffs == 0 and not w._was_active
        states[0] = GroupState.STOPPING  # later: a conflict release (no hooks)
        w._replication_follows()
        assert not w._was_active

    asyncio.run(scenario())


def _links(monkeypatch: pytest.MonkeyPatch, carrier: dict[str, bool]) -> None:
    """This node's interfaces: eth0 the LAN (198.18.0.0/24), eth1 a crossover (198.18.1.0/24)."""
    import ipaddress

    from nonstop import rtnetlink
    from nonstop.resources import netlink

    def route(ip: ipaddress.IPv4Address, iface: str | None = None) -> tuple[str, int]:
        return ("eth1" if ip in ipaddress.IPv4Network("198.18.1.0/24") else "eth0"), 24

    def route_to(ip: str) -> rtnetlink.Route:  # the kernel's answer (`ip route get`)
        oif = 3 if ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("198.18.1.0/24") else 2
        return rtnetlink.Route(254, 24, None, oif, 0)

    monkeypatch.setattr(netlink, "covering_route", route)
    monkeypatch.setattr(rtnetlink, "route_to", route_to)
    monkeypatch.setattr(rtnetlink, "links", lambda: [
        rtnetlink.Link(1, "lo", None, True),
        *(rtnetlink.Link(2 + i, n, "02:00:00:00:00:01", up)
          for i, (n, up) in enumerate(carrier.items()))])
    monkeypatch.setattr("nonstop.guards._read_hosts", lambda: (
        "198.18.0.2 vpbx1-2\n198.18.1.2 vpbx1-2-x\n"))


@pytest.mark.parametrize("connects_to, pushes", [
    ("vpbx1-2", 0),  # the LAN, by name (/etc/hosts): no carrier, nothing can go
    ("198.18.0.2", 0),  # the same, by address
    ("vpbx1-2-x", 1),  # replication over the crossover: it still gets through
    ("vpbx1-2.example", 1),  # a name /etc/hosts does not give: cannot tell, push
])
def test_no_last_push_when_the_link_to_the_new_holder_has_no_carrier(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        connects_to: str, pushes: int) -> None:
    """A user trial: heartbeats on a crossover, the service and replication on the LAN, ipfail
    on. The active node's LAN cable pulled, ipfail gives the group away, and the last push
    after the stop waited out its 10 s bound on the dead LAN, the services down all along."""
    _links(monkeypatch, {"eth0": False, "eth1": True})

    async def scenario() -> _Replicator:
        r = _Replicator(["the push did not finish within 10 s"])
        r.connects_to = {"vpbx1-2": connects_to}
        w = _Wiring(r)
        assert await w._before_release(False, False) is None
        assert await w._before_release(True, False) is None
        assert w._handoffs == 0
        return r

    caplog.set_level(logging.INFO, logger="nonstop")
    assert asyncio.run(scenario()).pushes == pushes
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if pushes:
        assert len(said) == 1 and "the last push before handing over failed" in said[0]
    else:
        assert said == ["replication: no last push before handing over: the route to "
                        "vpbx1-2 (198.18.0.2) goes over eth0, which has no carrier; the new "
                        "holder's takeover force-sync replaces here what changed since the "
                        "last push (each replaced version kept in the group's backup "
                        "directory, if it has one)"]


def test_the_last_push_goes_ahead_while_the_link_has_its_carrier(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A standby, a shutdown or a failback with the cable in: pushed as before."""
    _links(monkeypatch, {"eth0": True, "eth1": True})

    async def scenario() -> _Replicator:
        r = _Replicator([])
        r.connects_to = {"vpbx1-2": "vpbx1-2", "vpbx1-3": "198.18.0.3"}
        w = _Wiring(r)
        assert await w._before_release(False, True) is None
        assert await w._before_release(True, False) is None
        return r

    assert asyncio.run(scenario()).pushes == 2


def test_the_replicator_names_where_its_pushes_connect(tmp_path: Path) -> None:
    """csync2.cfg's ``name@address-name``: the check reads the address the pushes use."""
    from nonstop.sync.node import open_node
    from nonstop.sync.replicator import Replicator

    key = tmp_path / "csync2.key"
    key.write_text("k" * 40 + "\n")
    cfg = tmp_path / "csync2.cfg"
    cfg.write_text(f"group g\n{{\n    host vpbx1-1 vpbx1-2@vpbx1-2-x vpbx1-3;\n    key {key};\n"
                   "    include /etc/asterisk;\n}\n"
                   # a second group reaches vpbx1-2 over the LAN: both are where pushes go
                   f"group h\n{{\n    host vpbx1-1 vpbx1-2;\n    key {key};\n"
                   "    include /var/spool/asterisk;\n}\n")
    node = open_node(str(cfg), "vpbx1-1", str(tmp_path / "state"))
    try:
        assert Replicator(node, watch=False, serve=False).addresses({"vpbx1-2", "vpbx1-3"}) == {
            "vpbx1-2": ["vpbx1-2-x", "vpbx1-2"], "vpbx1-3": ["vpbx1-3"]}
    finally:
        node.close()
