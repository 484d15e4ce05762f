"""The daemon's wiring to a real Heartbeat peer (docs/HEARTBEAT-RESOURCES.md)."""

from __future__ import annotations

import logging

from nonstop.daemon_base import DaemonBase
from nonstop.failover.decide import Action, Decision
from nonstop.heartbeat.events import (
    ClusterMessage,
    CommUp,
    NodeDied,
    NodeReturned,
    Output,
    Send,
    StatusChanged,
)
from nonstop.heartbeat.hbpeer import (
    HbOutput,
    HeartbeatPeer,
    LocalHold,
    Note,
    StandbyCancelled,
    StandbyRequested,
)
from nonstop.heartbeat.hbresource import RscSet
from nonstop.heartbeat.states import NodeStatus
from nonstop.logs import escape

log = logging.getLogger("nonstop")


class HeartbeatPeerWiring(DaemonBase):
    """Heartbeat v1's resource messages to and from the other node."""

    def _make_hb_peer(self) -> HeartbeatPeer | None:
        """Heartbeat v1's resource protocol is between two nodes: the other one."""
        if len(self.cfg.ha.nodes) != 2:
            return None
        peer = next(n for n in self.cfg.ha.nodes if n != self.node)
        return HeartbeatPeer(self.node, peer, {g.key: g.node for g in self.cfg.groups})

    def _local_hold(self) -> LocalHold | None:
        """What we hold, for a Heartbeat peer; None before the probe (nothing is known)."""
        if self.engine is None or self.protocol is None or not self._probed:
            return None
        facts = self.engine.facts()
        keys = tuple(i.key for i in self.engine.infos())
        return LocalHold.of(facts.ad, facts.busy, keys, ready=self.protocol.comm_up)

    def _hb_sync(self, decisions: list[Decision]) -> None:
        """After each decision round: ask the Heartbeat peer to take what decide() hands it,
        and tell it what we hold when that changed."""
        hold = self._local_hold()
        if self.hb_peer is None or self.engine is None or hold is None or self._stop.is_set():
            return
        now = self._now()
        out: list[HbOutput] = []
        handover = {self.engine.infos()[d.group].preferred for d in decisions
                    if d.action is Action.HAND_OVER}
        if handover:
            rsc = RscSet.of(local=self.node in handover,
                            foreign=any(n != self.node for n in handover))
            out += self.hb_peer.ask_standby(rsc, now)
        out += self.hb_peer.sync(hold, now)
        self._hb_out(out, now)

    def _hb_out(self, out: list[HbOutput], now: float) -> None:
        assert self.protocol is not None
        for o in out:
            if isinstance(o, Send):
                self._handle(self.protocol.send(o, now), now)
            elif isinstance(o, Note):  # may quote the peer's fields: escaped, bounded
                log.log(o.level, "%s", escape(o.text, 300))
            elif self.engine is not None and isinstance(o, StandbyRequested):
                self.engine.standby(o.rsc.value)
            elif self.engine is not None and isinstance(o, StandbyCancelled):
                self.engine.cancel_standby(o.rsc.value)

    def _hb_react(self, ev: Output) -> None:
        hb = self.hb_peer
        if hb is None:
            return
        now = self._now()
        if isinstance(ev, ClusterMessage):
            self._hb_out(hb.receive(ev.node, ev.msg, now, self._local_hold()), now)
        elif isinstance(ev, CommUp):
            self._hb_out(hb.comm_up(), now)
        elif isinstance(ev, NodeDied) and ev.node == hb.peer:
            hb.peer_died()
        elif isinstance(ev, NodeReturned) and ev.node == hb.peer:
            # A partition return (same generation) is no restart: Heartbeat says nothing new
            # then, so what it held before still counts (it comes before the status change).
            if ev.kind == "partition":
                hb.peer_returned()
            else:
                hb.peer_restarted()
        elif isinstance(ev, StatusChanged) and ev.node == hb.peer and ev.old is NodeStatus.DEAD:
            hb.peer_back()
