"""A Daemon wired for unit tests: the talk's config, no sockets, a clock from the test's loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nonstop.config.loader import load_config_dir
from nonstop.config.model import ClusterConfig
from nonstop.daemon import Daemon
from nonstop.failover.engine import AgentFactory
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.media import MediaSet
from nonstop.heartbeat.protocol import HeartbeatProtocol
from nonstop.logs import BAD_INPUT
from nonstop.resources.base import make_agent
from nonstop.talk import copy_talk


class RecordingMedia(MediaSet):
    """Media that keep what would have been sent instead of opening sockets."""

    def __init__(self) -> None:
        super().__init__((), lambda data, link, addr: None)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return 1


def talk_daemon(tmp_path: Path, *, haresources: str | None = "",
                agent_factory: AgentFactory = make_agent) -> tuple[Daemon, ClusterConfig]:
    """vpbx1-1's daemon with the talk's files (``haresources=None`` keeps the talk's group),
    recording media and a fresh heartbeat protocol, inside the running event loop."""
    BAD_INPUT.reset()  # the log budget is per process: tests must not spend it for each other
    ha_d = copy_talk(tmp_path / "talk") / "ha.d"
    if haresources is not None:
        (ha_d / "haresources").write_text(haresources)
    cfg = load_config_dir(str(ha_d), "vpbx1-1")
    daemon = Daemon(cfg, "vpbx1-1", tmp_path / "state", agent_factory=agent_factory)
    daemon.media = RecordingMedia()
    daemon.loop = asyncio.get_running_loop()
    daemon.protocol = HeartbeatProtocol(
        cfg.ha, Identity("vpbx1-1", b"\x01" * 16, 5), cfg.authkeys, daemon.loop.time(),
        wall_clock=lambda: 0x6B062E8E, loadavg=lambda now: "0.00 0.00 0.00 1/100 1",
    )
    return daemon, cfg
