"""What the daemon's parts share: the attributes and methods each wiring part uses.

``Daemon`` (daemon.py) is built from the wiring parts (replication, the Heartbeat peer, reload,
the control API) and this base; each part reads the daemon's state through the names declared
here, so the type checker sees one definition of each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nonstop.config.model import ClusterConfig
    from nonstop.coord.keeper import LeaseKeeper
    from nonstop.failover.engine import FailoverEngine
    from nonstop.failover.view import ClusterView
    from nonstop.guards import GuardServices
    from nonstop.heartbeat.codec import WireFormat
    from nonstop.heartbeat.events import Output
    from nonstop.heartbeat.hbpeer import HbOutput, HeartbeatPeer
    from nonstop.heartbeat.media import MediaSet
    from nonstop.heartbeat.protocol import HeartbeatProtocol
    from nonstop.observe.recorder import Recorder
    from nonstop.resources.watches import AddressWatches
    from nonstop.sync.replicator import Replicator
    from nonstop.systemd import SystemdNotifier


class DaemonBase:
    """Declarations only: ``Daemon.__init__`` sets every attribute, ``Daemon`` defines every
    method."""

    cfg: ClusterConfig
    node: str
    state_dir: Path
    sync_root: str
    engine: FailoverEngine | None
    replicator: Replicator | None
    observer: Recorder
    protocol: HeartbeatProtocol | None
    hb_peer: HeartbeatPeer | None
    guards: GuardServices | None
    keeper: LeaseKeeper | None
    media: MediaSet
    watches: AddressWatches
    started: float
    notifier: SystemdNotifier
    _probed: bool
    _stop: asyncio.Event
    _was_active: bool
    _replay_error: str
    _sync_error: str | None
    _sync_tasks: set[asyncio.Task[None]]
    _reload_lock: asyncio.Lock
    _reload_tasks: set[asyncio.Task[dict[str, Any]]]

    def _now(self) -> float:
        raise NotImplementedError

    def _arm(self) -> None:
        raise NotImplementedError

    def _send_status(self) -> None:
        raise NotImplementedError

    def _wire_format(self) -> WireFormat:
        raise NotImplementedError

    def _handle(self, out: list[Output], now: float) -> None:
        raise NotImplementedError

    async def _start_replication(self, config_path: str) -> None:
        raise NotImplementedError

    def request_stop(self) -> None:
        raise NotImplementedError

    async def reload(self) -> dict[str, Any]:
        raise NotImplementedError

    def _cluster_view(self) -> ClusterView:
        raise NotImplementedError

    def _hb_out(self, out: list[HbOutput], now: float) -> None:
        raise NotImplementedError
