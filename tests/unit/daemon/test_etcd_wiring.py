"""The daemon wires nonstop_etcd: the lease keeper's states go into the snapshot, decide()'s
wants go back to the keeper, and a lease that is not renewed in time releases the group even
though nothing changed in the heartbeats (recording agents, in-memory etcd, no sockets)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nonstop.config.etcd import EtcdSettings
from nonstop.config.loader import load_config_dir
from nonstop.coord.memory import MemoryCoordinator, MemoryStore
from nonstop.daemon import Daemon
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.protocol import HeartbeatProtocol
from nonstop.resources.recording import RecordingAgentFactory
from nonstop.talk import copy_talk


def daemon(tmp_path: Path, coord: MemoryCoordinator) -> Daemon:
    """vpbx1-1 with the talk's group (deadtime 2 s: TTL 2 s), its peer long dead."""
    cfg = load_config_dir(str(copy_talk(tmp_path / "talk") / "ha.d"), "vpbx1-1")
    cfg = replace(cfg, ha=replace(cfg.ha, etcd=EtcdSettings(("http://198.18.0.1:2379",))))
    d = Daemon(cfg, "vpbx1-1", tmp_path / "state", agent_factory=RecordingAgentFactory(),
               coordinator=coord)
    d.loop = asyncio.get_running_loop()
    start = d.loop.time() - 1000.0
    d.protocol = HeartbeatProtocol(cfg.ha, Identity("vpbx1-1", b"\x01" * 16, 5), cfg.authkeys,
                                   start, wall_clock=lambda: 0, loadavg=lambda now: "n/a")
    d.protocol.tick(d.loop.time())  # initdead is long over: the peer is dead, comm is up
    d.engine = d._make_engine()
    d.keeper = d._make_keeper()
    d._probed = True
    return d


def group(d: Daemon) -> dict[str, Any]:
    (g,) = d.status()["groups"]
    assert isinstance(g, dict)
    return g


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_group_starts_under_its_lease_and_goes_when_it_lapses(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    store = MemoryStore(asyncio.get_running_loop().time)
    coord = MemoryCoordinator(store, "vpbx1-1")
    d = daemon(tmp_path, coord)
    assert d.keeper is not None and d.protocol is not None
    assert d.status()["etcd"]["ttl_s"] == 2

    d._reconsider()  # the rules choose this node (its peer is dead), but it has no lease
    g = group(d)
    assert g["action"] == "campaign" and "waiting for the etcd lease" in g["reason"]
    assert g["local_state"] == "none" and d.keeper.wanted == {0}

    d.keeper.start()  # the keeper gets the key, which makes the daemon decide again
    await until(lambda: group(d)["local_state"] == "held")
    assert d.status()["etcd"]["owned"] == [group(d)["key"]]
    assert [k for k in store.keys] == [f"/nonstop/linux-ha/groups/{group(d)['key']}"]

    store.down = True  # etcd gone, and the only peer unheard: release within the TTL
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await until(lambda: group(d)["local_state"] == "none")
    assert loop.time() - t0 < 2.0
    assert any("decision: lost the etcd lease of group" in r.getMessage() and
               "vpbx1-2 not heard: releasing the group, address first" in r.getMessage()
               for r in caplog.records)
    assert group(d)["action"] == "campaign"  # and it asks for the lease again
    assert d.status()["etcd"]["error"]
    await d.keeper.close()


async def test_without_the_directive_there_is_no_keeper(tmp_path: Path) -> None:
    cfg = load_config_dir(str(copy_talk(tmp_path / "talk") / "ha.d"), "vpbx1-1")
    d = Daemon(cfg, "vpbx1-1", tmp_path / "state", agent_factory=RecordingAgentFactory())
    assert cfg.ha.etcd is None and d.keeper is None
