"""One node's daemon: wires the pure membership core to sockets, clock, logs and the API.

Single asyncio process. The heartbeat path (receive, decide, send) runs straight from the socket
callback and from a timer armed at ``Membership.next_wakeup()``; it never awaits anything.
Scripts, mail, disk and log writes run elsewhere (subprocesses, tasks, the log queue thread).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from nonstop import __version__
from nonstop.api import ControlServer
from nonstop.config.model import ClusterConfig
from nonstop.heartbeat.burst import BurstLimiter
from nonstop.heartbeat.codec import BadPacket, Message, decode, encode
from nonstop.heartbeat.envelope import Identity, is_unsequenced, stamp
from nonstop.heartbeat.identity import load_uuid, next_generation
from nonstop.heartbeat.media import MediaSet
from nonstop.heartbeat.membership import (
    ClusterMessage,
    CommUp,
    Dropped,
    Event,
    LateHeartbeat,
    LinkChanged,
    Membership,
    NodeDied,
    NodeReturned,
    RexmitRequested,
    Send,
    SilenceWarning,
    StatusChanged,
)

log = logging.getLogger("nonstop")

HISTORY = 500  # sequenced messages kept for retransmission, as Heartbeat's MAXMSGHIST


class LoadAvg:
    """``/proc/loadavg`` for the ``ld`` field, read at most once a second."""

    def __init__(self) -> None:
        self._value = "n/a"
        self._read_at = -1.0

    def get(self, now: float) -> str:
        if now - self._read_at >= 1.0:
            self._read_at = now
            try:
                with open("/proc/loadavg") as fh:
                    self._value = fh.read().strip() or "n/a"
            except OSError:
                self._value = "n/a"
        return self._value


class Daemon:
    """Runs one node until SIGTERM/SIGINT (graceful leave) or ``request_stop()``."""

    def __init__(self, cfg: ClusterConfig, node: str, state_dir: Path) -> None:
        self.cfg = cfg
        self.node = node
        self.state_dir = state_dir
        self.keys = cfg.authkeys
        self.loop: asyncio.AbstractEventLoop | None = None
        self.membership: Membership | None = None
        self.media = MediaSet(cfg.ha.media, self._on_datagram)
        self.identity: Identity | None = None
        self.seq = 0
        self.history: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.loadavg = LoadAvg()
        self.burst = BurstLimiter()
        self.started_wall = time.time()
        self.started = 0.0
        self.sent = 0
        self.received = 0
        self._timer: asyncio.TimerHandle | None = None
        self._stop = asyncio.Event()
        self.api = ControlServer(state_dir, self._api)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        uuid = load_uuid(self.state_dir)
        gen = next_generation(self.state_dir)
        ttl = self.cfg.ha.hopfudge + len(self.cfg.ha.nodes)
        self.identity = Identity(self.node, uuid, gen, ttl)
        log.info("Configuration validated. Starting nonstop %s on node %s", __version__, self.node)
        log.info("Heartbeat generation: %d", gen)
        self.started = self.loop.time()
        self.membership = Membership(self.cfg.ha, self.node, self.started)
        await self.media.open()
        log.info("Local status now set to: 'up'")
        await self.api.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        self._wake()
        try:
            await self._stop.wait()
            await self._leave()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.remove_signal_handler(sig)
            if self._timer is not None:
                self._timer.cancel()
            self.media.close()
            await self.api.close()
        log.info("%s nonstop shutdown complete.", self.node)
        return 0

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("nonstop shutdown in progress. (%d)", os.getpid())
            self._stop.set()

    async def _leave(self) -> None:
        assert self.membership is not None
        self._handle(self.membership.leave(), self._now())

    # ------------------------------------------------------------------ heartbeat path

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _wake(self) -> None:
        """Run the core's timers now and re-arm for its next deadline."""
        assert self.membership is not None and self.loop is not None
        now = self._now()
        self._handle(self.membership.tick(now), now)
        self._arm()

    def _arm(self) -> None:
        assert self.membership is not None and self.loop is not None
        when = self.membership.next_wakeup()
        if when == float("inf"):
            return
        if self._timer is not None:
            if abs(self._timer.when() - when) < 1e-6:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._wake)

    def _on_datagram(self, data: bytes, link: str, addr: tuple[str, int]) -> None:
        assert self.membership is not None
        now = self._now()
        self.received += 1
        try:
            decoded = decode(data, self.keys)
        except BadPacket as e:
            self.membership.count(f"bad_{e.reason}")
            self._log_bad(e.reason, addr[0], e.detail, now)
            return
        events = self.membership.receive(decoded.message, link, now)
        self._handle(events, now)
        self._arm()

    def _log_bad(self, reason: str, source: str, detail: str, now: float) -> None:
        if not self.cfg.ha.log_badpack:
            return
        say, suppressed = self.burst.should_log(reason, source, now)
        if say:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("dropped packet from %s: %s: %s%s", source, reason, detail, more)

    def _send(self, ev: Send) -> None:
        assert self.identity is not None and self.membership is not None
        mtype = str(dict(ev.fields).get("t", ""))
        seq: int | None = None
        if not is_unsequenced(mtype):
            self.seq += 1
            seq = self.seq
        dest_uuid = self.membership.peer_uuid(ev.dest) if ev.dest else None
        fields = stamp(
            ev.fields,
            self.identity,
            seq=seq,
            wall_time=int(time.time()),
            loadavg=self.loadavg.get(self._now()),
            dest_uuid=dest_uuid,
        )
        payload = encode(Message.of(fields), self.keys.signing_key, self._wire_format())
        if seq is not None:
            self.history[seq] = payload
            while len(self.history) > HISTORY:
                self.history.popitem(last=False)
        for _ in range(ev.copies):
            self.media.send(payload)
            self.sent += 1

    def _wire_format(self) -> Any:
        return "classic" if self.cfg.ha.msgfmt == "classic" else "netstring"

    def _handle(self, events: list[Event], now: float) -> None:
        for ev in events:
            if isinstance(ev, Send):
                self._send(ev)
            elif isinstance(ev, NodeDied):
                if ev.reason == "shutdown":
                    log.info("Received shutdown notice from '%s'.", ev.node)
                else:
                    log.warning("node %s: is dead", ev.node)
            elif isinstance(ev, StatusChanged):
                if ev.local:
                    log.info("Local status now set to: '%s'", ev.new.value)
                else:
                    log.info("Status update for node %s: status %s", ev.node, ev.new.value)
            elif isinstance(ev, LinkChanged):
                log.info("Link %s:%s %s.", ev.node, ev.link, "up" if ev.up else "dead")
            elif isinstance(ev, LateHeartbeat):
                log.warning("Late heartbeat: Node %s: interval %d ms", ev.node, ev.interval_ms)
            elif isinstance(ev, SilenceWarning):
                log.warning(
                    "No heartbeat from node %s for %d ms (warntime %d ms)",
                    ev.node,
                    ev.silence_ms,
                    self.cfg.ha.warntime_ms,
                )
            elif isinstance(ev, CommUp):
                log.info("Comm_now_up(): updating status to active")
            elif isinstance(ev, NodeReturned):
                if ev.kind == "partition":
                    log.critical("Cluster node %s returning after partition.", ev.node)
                else:
                    log.info("Heartbeat restart on node %s", ev.node)
            elif isinstance(ev, Dropped):
                self._log_bad(ev.reason, ev.src or "?", ev.detail, now)
            elif isinstance(ev, RexmitRequested):
                self._rexmit(ev)
            elif isinstance(ev, ClusterMessage):
                log.debug("cluster message %s from %s", ev.msg.get("t"), ev.node)

    def _rexmit(self, ev: RexmitRequested) -> None:
        for seq in range(ev.first, min(ev.last, ev.first + 50) + 1):
            payload = self.history.get(seq)
            if payload is not None:
                self.media.send(payload)
            else:
                reason = "seqno too low" if seq < self.seq else "seqno not found"
                self._send(
                    Send(
                        (("t", "NS_nak_rexmit"), ("dest", ev.node), ("firstseq", f"{seq:x}"),
                         ("info", reason)),
                        dest=ev.node,
                    )
                )

    # ------------------------------------------------------------------ API

    def status(self) -> dict[str, Any]:
        """The document ``nonstop status --json`` prints (keys documented in docs/STATUS.md)."""
        assert self.membership is not None and self.identity is not None
        now = self._now()
        view = self.membership.view(now)
        ha = self.cfg.ha
        return {
            "version": 1,
            "node": self.node,
            "cluster": ha.cluster,
            "status": self.membership.local_status.value,
            "comm_up": view.comm_up,
            "pid": os.getpid(),
            "generation": self.identity.generation,
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
                    "generation": n.generation,
                    "links": {k: ("up" if v else "dead") for k, v in n.links.items()},
                }
                for n in view.nodes
            ],
            "packets": {
                "sent": self.sent,
                "received": self.received,
                "send_errors": self.media.send_errors,
                "dropped": dict(sorted(view.counters.items())),
            },
        }

    async def _api(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req["cmd"]
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "stop":
            self.request_stop()
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


async def run_daemon(cfg: ClusterConfig, node: str, state_dir: Path) -> int:
    daemon = Daemon(cfg, node, state_dir)
    with contextlib.suppress(asyncio.CancelledError):
        return await daemon.run()
    return 0
