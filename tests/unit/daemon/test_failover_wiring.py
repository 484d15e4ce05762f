"""The daemon only wires failover: snapshot -> decide() -> engine, and status shows the result.

Each group's last decision (action and reason) is in ``nonstop status``, also the waits the
daemon used to make silently (before the probe, while shutting down).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from nonstop.cli import render_status
from nonstop.config.loader import load_config_dir
from nonstop.daemon import DECIDE_AT_LEAST_EVERY_S, PERIODIC_RECONSIDER_S, Daemon
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.protocol import HeartbeatProtocol
from nonstop.resources.recording import RecordingAgentFactory
from nonstop.talk import copy_talk


def daemon(tmp_path: Path) -> Daemon:
    """vpbx1-1 with the talk's group, recording agents, no sockets; its peer never heard."""
    cfg = load_config_dir(str(copy_talk(tmp_path / "talk") / "ha.d"), "vpbx1-1")
    d = Daemon(cfg, "vpbx1-1", tmp_path / "state", agent_factory=RecordingAgentFactory())
    d.loop = asyncio.get_running_loop()
    d.protocol = HeartbeatProtocol(cfg.ha, Identity("vpbx1-1", b"\x01" * 16, 5), cfg.authkeys,
                                   d.loop.time(), wall_clock=lambda: 0,
                                   loadavg=lambda now: "n/a")
    d.engine = d._make_engine()
    return d


def _advertised(d: Daemon) -> bool:
    assert d.protocol is not None
    return bool(d.protocol.view(d._now()).node("vpbx1-1").fields)


def group(d: Daemon) -> dict[str, Any]:
    (g,) = d.status()["groups"]
    assert isinstance(g, dict)
    return g


async def test_status_shows_each_groups_last_decision(tmp_path: Path) -> None:
    d = daemon(tmp_path)
    g = group(d)
    assert (g["action"], g["reason"], g["holder"]) == (None, "", None)

    d._reconsider()  # the probe has not run: nothing is decided, and status says so
    g = group(d)
    assert g["action"] == "wait" and "start-up probe" in g["reason"]
    assert d.protocol is not None
    assert not _advertised(d)  # nothing advertised

    d._probed = True
    d._reconsider()
    g = group(d)
    assert g["action"] == "wait" and "initdead" in g["reason"]
    assert _advertised(d)  # holdings advertised once the probe is done
    assert "    why (wait): waiting for every node" in render_status(d.status())

    d._stop.set()
    d._reconsider()
    g = group(d)
    assert g["action"] == "wait" and "shutting down" in g["reason"]
    assert g["local_state"] == "none"


async def test_status_counts_initdead_down(tmp_path: Path) -> None:
    """The talk's initdead is 120 s: a node started alone says how long it still waits."""
    d = daemon(tmp_path)
    st = d.status()
    (peer,) = [n for n in st["nodes"] if not n["local"]]
    assert 119_000 < peer["dead_in_ms"] <= 120_000
    assert ("  waiting for vpbx1-2 (initdead 120 s): declared dead in 120 s unless heard"
            in render_status(st).splitlines())
    st["comm_up"] = True  # once comm is up, the deadtime left is in the JSON only
    assert "waiting for vpbx1-2" not in render_status(st)


async def test_time_alone_brings_a_decision_only_when_decide_again_at_says(
        tmp_path: Path, caplog: Any) -> None:
    """Once a second the daemon asks whether time alone changes a decision; otherwise it
    decides on changes, and at least every DECIDE_AT_LEAST_EVERY_S, saying so in the log if
    that decision differs (a change that reached it without an event)."""
    caplog.set_level(logging.WARNING, logger="nonstop")
    d = daemon(tmp_path)
    d._probed = True
    d._reconsider()
    t0, again, first = d._decided
    assert again == t0  # before comm up: every chance, as before
    now = d._now()

    def periodic_at(t: float) -> bool:
        d._last_periodic = t - PERIODIC_RECONSIDER_S
        d._reconsider_pending = False
        d._periodic(t)
        return d._reconsider_pending

    d._decided = (now, float("inf"), first)  # settled: nothing pending
    assert not periodic_at(now + 1) and not periodic_at(now + 9.5)
    assert periodic_at(now + DECIDE_AT_LEAST_EVERY_S) and d._unprompted
    d._reconsider()  # the same decisions: nothing said
    assert "no change reported" not in caplog.text and not d._unprompted

    d._decided = (now, now + 2.5, first)  # a failed stop's retry, say
    assert not periodic_at(now + 2) and periodic_at(now + 3) and not d._unprompted

    d._decided = (now, float("inf"), [])  # what decide() returns now differs from this
    assert periodic_at(now + DECIDE_AT_LEAST_EVERY_S)
    d._schedule_reconsider()  # a change reported in the same turn: not the safety net's
    d._reconsider()
    assert "no change reported" not in caplog.text
    d._decided = (now, float("inf"), [])
    assert periodic_at(now + DECIDE_AT_LEAST_EVERY_S)
    d._reconsider()
    assert "decisions changed with no change reported to the daemon" in caplog.text


async def test_a_standby_no_other_node_could_take_is_refused_and_changes_nothing(
        tmp_path: Path) -> None:
    """Kept, it moved the group by surprise when the peer came back hours later; Heartbeat
    cancels a standby request nobody answers within 10 s."""
    from nonstop.failover.state import GroupState

    d = daemon(tmp_path)
    assert d.engine is not None
    (rt,) = d.engine.groups
    reply = await d._api({"cmd": "standby", "which": "all"})  # not held: nothing to refuse
    assert reply["ok"] and reply["held"] == []
    d.engine.cancel_standby("all")
    rt.state = GroupState.HELD  # the peer has never been heard: alone
    reply = await d._api({"cmd": "standby", "which": "all"})
    assert reply == {"ok": False, "error": f"standby refused: no other node is up to take "
                                           f"{rt.group.key}; nothing changed"}
    assert d.engine.declines == set()
