"""The daemon wires a Heartbeat peer's resource protocol (hbpeer.py) to its messages, the
engine and decide(): vpbx1-1 (the group's preferred node, nonstop) next to a Heartbeat
vpbx1-2, with recording agents and no sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nonstop.config.loader import load_config_dir
from nonstop.daemon import Daemon
from nonstop.heartbeat.codec import decode
from nonstop.heartbeat.envelope import Field, Identity
from nonstop.heartbeat.events import MessageView
from nonstop.heartbeat.media import MediaSet
from nonstop.heartbeat.protocol import HeartbeatProtocol
from nonstop.resources.recording import RecordingAgentFactory
from nonstop.talk import copy_talk


class Recorded(MediaSet):
    def __init__(self) -> None:
        super().__init__((), lambda data, link, addr: None)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return 1


class HeartbeatNode:
    """vpbx1-2's messages, numbered as Heartbeat numbers them (no nsv mark)."""

    def __init__(self) -> None:
        self.seq = 0

    def msg(self, *fields: Field) -> MessageView:
        self.seq += 1
        return MessageView([*fields, ("src", "vpbx1-2"), ("srcuuid", b"\x02" * 16),
                            ("seq", f"{self.seq:x}"), ("hg", "7"), ("ts", "6b062e8e"),
                            ("ttl", "3")])


def daemon(tmp_path: Path) -> tuple[Daemon, Recorded]:
    cfg = load_config_dir(str(copy_talk(tmp_path / "talk") / "ha.d"), "vpbx1-1")
    d = Daemon(cfg, "vpbx1-1", tmp_path / "state", agent_factory=RecordingAgentFactory())
    d.loop = asyncio.get_running_loop()
    d.protocol = HeartbeatProtocol(cfg.ha, Identity("vpbx1-1", b"\x01" * 16, 5), cfg.authkeys,
                                   d.loop.time(), wall_clock=lambda: 0,
                                   loadavg=lambda now: "n/a")
    d.media = media = Recorded()
    d.engine = d._make_engine()
    d.hb_peer = d._make_hb_peer()
    d._probed = True
    return d, media


def sent_resource_messages(d: Daemon, media: Recorded) -> list[dict[str, str]]:
    out = []
    for data in media.sent:
        m = decode(data, d.cfg.authkeys).message
        if m.get("t") in ("starting", "resource", "ask_resources"):
            out.append({n: str(v) for n, v in m.fields
                        if n in ("t", "rsc_hold", "isstable", "info", "nsv")})
    return out


def feed(d: Daemon, msg: MessageView) -> None:
    assert d.protocol is not None
    now = d._now()
    d._handle(d.protocol.receive_message(msg, "eth0", now), now)


async def test_cold_start_next_to_heartbeat_takes_our_group_once_it_said(
        tmp_path: Path) -> None:
    d, media = daemon(tmp_path)
    hb = HeartbeatNode()
    feed(d, hb.msg(("t", "status"), ("st", "active"), ("dt", "7d0"), ("protocol", "1")))
    await asyncio.sleep(0)  # the reconsider the news scheduled
    assert sent_resource_messages(d, media) == [{"t": "starting", "nsv": "1"}]
    (g,) = d.status()["groups"]
    assert g["action"] == "wait" and "until vpbx1-2 says what it holds" in g["reason"]
    assert g["waiting"]["on"] == ["vpbx1-2"]

    media.sent.clear()
    feed(d, hb.msg(("t", "starting")))
    assert sent_resource_messages(d, media) == [
        {"t": "resource", "rsc_hold": "none", "isstable": "1", "nsv": "1"}]
    feed(d, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                   ("isstable", "1")))
    await asyncio.sleep(0)
    (g,) = d.status()["groups"]
    assert g["action"] == "acquire" and "vpbx1-1 is its preferred node" in g["reason"]
    assert d.engine is not None and d.engine.groups[0].task is not None
    await d.engine.groups[0].task
    await asyncio.sleep(0)
    assert sent_resource_messages(d, media)[-1] == {"t": "resource", "rsc_hold": "local",
                                                    "isstable": "1", "nsv": "1"}


async def test_hb_takeover_from_heartbeat_starts_the_standby_exchange(tmp_path: Path) -> None:
    d, media = daemon(tmp_path)
    hb = HeartbeatNode()
    feed(d, hb.msg(("t", "status"), ("st", "active"), ("dt", "7d0"), ("protocol", "1")))
    feed(d, hb.msg(("t", "resource"), ("rsc_hold", "local"), ("rtype", "full"),
                   ("isstable", "1")))
    await asyncio.sleep(0)
    assert d.engine is not None and d.engine.groups[0].task is not None
    await d.engine.groups[0].task
    await asyncio.sleep(0)
    media.sent.clear()
    feed(d, hb.msg(("t", "hb_takeover"), ("rsc_hold", "foreign")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert {"t": "ask_resources", "rsc_hold": "local", "info": "me", "nsv": "1"} \
        in sent_resource_messages(d, media)
    (g,) = d.status()["groups"]
    assert g["action"] == "hand_over" and g["local_state"] == "held"
