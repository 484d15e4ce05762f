"""The daemon's control API: the status document and the commands of ``nonstop``.

``status()`` is what ``nonstop status --json`` prints (docs/STATUS.md); ``_api`` answers the
requests of the local control socket (nonstop.api.ControlServer).
"""

from __future__ import annotations

import os
from typing import Any

from nonstop.daemon_base import DaemonBase
from nonstop.failover.view import holders
from nonstop.heartbeat.hbresource import TakeoverArg

# How long `nonstop status` waits for a standby's dirty count to be read (its database may
# be busy with a `nonstop sync`): past it, the count of the previous ask is shown.
STANDBY_DIRTY_WAIT_S = 0.5


class ApiWiring(DaemonBase):
    """Status and control over the local socket."""

    def status(self) -> dict[str, Any]:
        """The document ``nonstop status --json`` prints (keys documented in docs/STATUS.md)."""
        assert self.protocol is not None
        now = self._now()
        view = self.protocol.view(now)
        ha = self.cfg.ha
        return {
            "version": 1,
            "node": self.node,
            "cluster": ha.cluster,
            "status": self.protocol.local_status.value,
            "comm_up": view.comm_up,
            "pid": os.getpid(),
            "generation": self.protocol.identity.generation,
            "uptime_s": round(now - self.started, 3),
            "timing": {
                "keepalive_ms": ha.keepalive_ms,
                "deadtime_ms": ha.deadtime_ms,
                "warntime_ms": ha.warntime_ms,
                "initdead_ms": ha.initdead_ms,
            },
            "nodes": [
                {
                    "name": n.name,
                    "local": n.local,
                    "status": n.status.value,
                    "last_heard_ms_ago": n.last_heard_ago_ms,
                    "deadtime_ms": n.deadtime_ms,
                    "dead_in_ms": n.dead_in_ms,
                    "generation": n.generation,
                    "links": {k: ("up" if v else "dead") for k, v in n.links.items()},
                }
                for n in view.nodes
            ],
            "groups": self.engine.snapshot(holders(self._cluster_view())) if self.engine else [],
            "sync": self.replicator.status() if self.replicator else None,
            "sync_error": None if self.replicator else self._sync_error,
            "etcd": self.keeper.status(now) if self.keeper else None,
            **(self.guards.status(now) if self.guards is not None else {}),
            "address_conflicts": self.watches.status(),
            "packets": {
                "sent": self.protocol.sent,
                "received": self.protocol.received,
                "send_errors": self.media.send_errors,
                "kernel_dropped": self.media.kernel_drops,
                "rexmit": self.protocol.rexmit_counters(),
                "dropped": dict(sorted(view.counters.items())),
            },
        }

    async def _api(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req["cmd"]
        if cmd in ("stop", "reload", "standby", "takeover"):
            self.observer.on_command(cmd, req)
        if cmd == "status":
            if self.replicator is not None:
                await self.replicator.refresh_dirty(STANDBY_DIRTY_WAIT_S)
            return {"ok": True, "status": self.status()}
        if cmd == "stop":
            self.request_stop()
            return {"ok": True}
        if cmd == "reload":
            return await self.reload()
        if cmd in ("standby", "takeover"):
            if self.engine is None:
                return {"ok": False, "error": "no resource groups are configured (haresources)"}
            which = str(req.get("which", "all"))
            held = self._held(which)  # an unknown ``which`` raises ValueError: its reply
            if cmd == "standby" and held and not self._peer_alive():
                # Heartbeat cancels a standby nobody answers within 10 s; kept, this one would
                # move the group by surprise whenever a node came back, hours later.
                return {"ok": False, "error": f"standby refused: no other node is up to take "
                                              f"{', '.join(held)}; nothing changed"}
            try:
                keys = (self.engine.standby if cmd == "standby" else self.engine.takeover)(which)
            except ValueError as e:
                return {"ok": False, "error": str(e)}
            if cmd == "takeover" and self.hb_peer is not None:
                # A Heartbeat node gives a group only by going standby: ask it to.
                self._hb_out(self.hb_peer.takeover(TakeoverArg(which)), self._now())
            return {"ok": True, "groups": keys, "held": held}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _held(self, which: str) -> list[str]:
        """The selected groups this node holds (or is starting)."""
        assert self.engine is not None
        sel = self.engine.select(which)
        return [rt.group.key for rt in self.engine.groups
                if rt.info.index in sel and rt.state.claims]

    def _peer_alive(self) -> bool:
        return any(n != self.node for n in self._cluster_view().alive)
