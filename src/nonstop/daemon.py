"""One node's daemon: wires the pure heartbeat protocol to sockets, clock, logs and the API.

Single asyncio process. The heartbeat path (receive, decide, send) runs straight from the socket
callback and from a timer armed at ``HeartbeatProtocol.next_wakeup()``; it never awaits anything.
Scripts, mail, disk and log writes run elsewhere (subprocesses, tasks, the log queue thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from nonstop import __version__
from nonstop.api import ControlServer
from nonstop.config.model import ClusterConfig, MsgFmt
from nonstop.coord.keeper import LeaseKeeper
from nonstop.coord.port import Coordinator
from nonstop.daemon_api import ApiWiring
from nonstop.daemon_badinput import BadInputWiring
from nonstop.daemon_hbpeer import HeartbeatPeerWiring
from nonstop.daemon_reload import ReloadWiring
from nonstop.daemon_sync import ReplicationWiring
from nonstop.errors import MachineError
from nonstop.failover.decide import Decision, decide, decide_again_at, lease_wants
from nonstop.failover.engine import STOP_FAILED_RETRY_S, AgentFactory, FailoverEngine
from nonstop.failover.state import encode_ad
from nonstop.failover.view import ClusterView, Guards, build_view, foreign_digests, holders
from nonstop.failover.witness import witness_fields
from nonstop.guards import GuardServices
from nonstop.heartbeat import replaystate
from nonstop.heartbeat.burst import BurstLimiter
from nonstop.heartbeat.claims import claimed_sender
from nonstop.heartbeat.codec import AUTH, UNKNOWN_KEY, WireFormat
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.eventlog import describe
from nonstop.heartbeat.events import (
    FAILOVER_NEWS,
    CommUp,
    Dropped,
    NodeDied,
    Output,
    OwnStatusHeard,
    Transmit,
)
from nonstop.heartbeat.hbpeer import (
    HeartbeatPeer,
)
from nonstop.heartbeat.identity import load_uuid, next_generation
from nonstop.heartbeat.media import MediaSet
from nonstop.heartbeat.protocol import HeartbeatProtocol
from nonstop.logs import BadInputBudget
from nonstop.observe.recorder import Recorder
from nonstop.process import LoadAvg, _normal_priority, apply_process_settings
from nonstop.resources.base import AgentContext, heartbeat_environment, make_agent
from nonstop.resources.mailto import mail_transport
from nonstop.resources.watches import AddressWatches
from nonstop.sync.replicator import Replicator
from nonstop.systemd import SystemdNotifier
from nonstop.watchdog import Watchdog

AUTH_BAD = (AUTH, UNKNOWN_KEY)  # a packet that failed authentication, key unknown or wrong
log = logging.getLogger("nonstop")

PERIODIC_RECONSIDER_S = 1.0
# decide() runs on every change the daemon hears of, and again when decide_again_at() says
# time alone changes its answer; besides, at least this often: should a change ever reach
# decide() without its event, it costs this long at most, and the log names it.
DECIDE_AT_LEAST_EVERY_S = 10.0
# What the log says when that decision differs from the last one (namespace tests fail on it).
MISSED_CHANGE = "decisions changed with no change reported to the daemon"
# MailTo composes its mail this long after the event, once the group's other resources
# have started or stopped (a hand-off takes 30-60 ms): see AgentContext.mail_defer_s.
MAIL_DEFER_S = 0.2
MAIL_FLUSH_S = 3.0  # at exit, mails still queued get this long (one attempt each)
# A stop request this soon after the first is the same one sent twice (`timeout` signals the
SAME_STOP_S = 1.0  # daemon and its process group), not an admin's "leave anyway"
REPLAY_SAVE_S = 5.0  # peers' sequence numbers are recorded this often (generations at once)


class Daemon(ReplicationWiring, HeartbeatPeerWiring, ReloadWiring, ApiWiring, BadInputWiring):
    """Runs one node until SIGTERM/SIGINT (graceful leave) or ``request_stop()``."""

    def __init__(self, cfg: ClusterConfig, node: str, state_dir: Path, *,
                 agent_factory: AgentFactory = make_agent, sync_root: str = "/",
                 coordinator: Coordinator | None = None) -> None:
        self.cfg = cfg
        self.sync_root = sync_root
        self.node = node
        self.state_dir = state_dir
        self.loop: asyncio.AbstractEventLoop | None = None
        self.protocol: HeartbeatProtocol | None = None
        self.media = MediaSet(cfg.ha.media, self._on_datagram)
        self.loadavg = LoadAvg()
        self.burst = BurstLimiter()
        # Status messages that claim a configured node's name and fail authentication: said
        # whatever log_badpack says, once per burst per (node, source), within their own
        # budget; the rest is in the summaries (nonstop.heartbeat.claims).
        self.forged = BurstLimiter(quiet=10.0, max_sources=64)
        self.forged_budget = BadInputBudget(rate=1.0, burst=10, period=10.0)
        self.started_wall = time.time()
        self.started = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stop = asyncio.Event()
        self._stop_at = 0.0  # when the first stop request came (the daemon's clock)
        self._force_stop = asyncio.Event()
        self._last_periodic = 0.0
        self._decided: tuple[float, float, list[Decision]] = (0.0, 0.0, [])  # at, again, what
        self._testimony: tuple[tuple[str, str], ...] = ()  # failover/witness.py
        self._unprompted = False  # the next decision is only the DECIDE_AT_LEAST_EVERY_S one
        self.api = ControlServer(state_dir, self._api)
        self.agent_factory = agent_factory
        self.engine: FailoverEngine | None = None
        # Heartbeat v1's resource protocol with the other node of a two-node cluster, used
        # once that node turns out to be a real Heartbeat (docs/HEARTBEAT-RESOURCES.md).
        self.hb_peer: HeartbeatPeer | None = None
        self._probed = False
        self._reconsider_pending = False
        self._peer_digest_warned: set[str] = set()
        self.watchdog = Watchdog(cfg.ha.watchdog, cfg.ha.deadtime_ms) if cfg.ha.watchdog else None
        self.replicator: Replicator | None = None
        self._was_active = False
        self._sync_tasks: set[asyncio.Task[None]] = set()
        self._replay_saved: replaystate.State = {}
        self._replay_saved_at, self._replay_saving, self._replay_error = 0.0, False, ""
        self.notifier = SystemdNotifier()
        self._reload_lock = asyncio.Lock()
        self._reload_tasks: set[asyncio.Task[dict[str, Any]]] = set()
        self.observer = Recorder(cfg, node, state_dir, thread_init=_normal_priority)
        self._coordinator = coordinator  # nonstop_etcd's store (None: the etcd gateway)
        self.keeper: LeaseKeeper | None = None
        # Ping nodes, respawn clients, fencing, own-key check (issue 12); made in run().
        self.guards: GuardServices | None = None
        # One conflict watch per virtual address held here (issue 12).
        self.watches = AddressWatches(on_change=self._schedule_reconsider)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ha = self.cfg.ha
        uuid = load_uuid(self.state_dir, ha.uuidfrom, self.node)
        gen = next_generation(self.state_dir)
        apply_process_settings(ha, self.loop)
        ttl = self.cfg.ha.hopfudge + len(self.cfg.ha.nodes)
        log.info("Configuration validated. Starting nonstop %s on node %s", __version__, self.node)
        log.info("Heartbeat generation: %d", gen)
        self.started = self.loop.time()
        self._replay_saved = replaystate.load(self.state_dir)
        self.protocol = HeartbeatProtocol(
            ha, Identity(self.node, uuid, gen, ttl), self.cfg.authkeys, self.started,
            wall_clock=time.time, loadavg=self.loadavg.get, wire_format=self._wire_format(),
            known=self._replay_saved,
        )
        if self.cfg.groups:
            # No holdings are advertised until the probe has looked at what this box runs:
            # peers wait for a node that has not said, but would act on a premature "none".
            self.engine = self._make_engine()
            self.hb_peer = self._make_hb_peer()
            if ha.etcd is not None:
                self.keeper = self._make_keeper()
                self.keeper.start()
        self.guards = GuardServices(self.cfg, self.node, clock=self._now,
                                    on_change=self._schedule_reconsider)
        self.guards.start()
        await self.observer.start(self.status)  # before the first packet: it records from it
        await self.media.open()
        if self.watchdog is not None:
            self.watchdog.open()
        log.info("Local status now set to: 'up'")
        await self.api.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        if self.protocol.comm_up:
            self.notifier.ready(f"up: {self.node} alone in the cluster")
        else:
            self.notifier.extend_start(ha.initdead_ms / 1000.0 + 30,
                                       "waiting for the peers (initdead)")
        self._wake()
        try:
            await self._serve_until_stopped()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self.loop.remove_signal_handler(sig)
            if self._timer is not None:
                self._timer.cancel()
            self.media.close()
            await self.api.close()
            await self.observer.close()
            with contextlib.suppress(OSError):
                replaystate.save(self.state_dir, self.protocol.replay_state())
        log.info("%s nonstop shutdown complete.", self.node)
        return 0

    async def _serve_until_stopped(self) -> None:
        """Probe, start replication, run until asked to stop, then leave in Heartbeat's order:
        respawned clients, the resources, the etcd lease, the cluster, replication."""
        if self.engine is not None:
            await self.engine.probe()
            self._probed = True
            self.engine.start_monitor()
            self._schedule_reconsider()
        if self.cfg.ha.sync_config:
            await self._start_replication(self.cfg.ha.sync_config)
        await self._stop.wait()
        if self.guards is not None:
            await self.guards.stop()  # respawn clients first, as Heartbeat's shutdown does
        await self.watches.stop()  # the addresses go now: nothing to watch
        if self.engine is not None:
            if self.hb_peer is not None:
                self._hb_out(self.hb_peer.shutdown(), self._now())
            await self._release_for_shutdown()
            await self.engine.flush_notices(MAIL_FLUSH_S)
        if self.keeper is not None:
            await self.keeper.close()
        await self._leave()
        if self.replicator is not None:
            await self.replicator.stop()
        if self.watchdog is not None:
            self.watchdog.close()

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("nonstop shutdown in progress. (%d)", os.getpid())
            self.notifier.stopping("releasing resources and leaving the cluster")
            self._stop.set()
            self._stop_at = self._now()
            self._schedule_reconsider()  # every decision says so at once (status shows it)
        elif not self._force_stop.is_set() and self._now() - self._stop_at >= SAME_STOP_S:
            log.critical("second stop request: leaving even though a resource may still run")
            self._force_stop.set()

    async def _release_for_shutdown(self) -> None:
        """Release every group; never leave while a stop failed, because the peer would take
        over an address this box may still have (Heartbeat reboots the box then). Retry until
        the stops succeed or a second SIGTERM forces the exit."""
        assert self.engine is not None
        await self.engine.release_all()
        while self.engine.stop_failed() and not self._force_stop.is_set():
            log.critical(
                "Resource STOP failure of group(s) %s: not leaving the cluster while they may "
                "still run; retrying in %d s (send SIGTERM again to leave anyway)",
                ", ".join(self.engine.stop_failed()), STOP_FAILED_RETRY_S,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._force_stop.wait(), STOP_FAILED_RETRY_S)
            if not self._force_stop.is_set():
                await self.engine.release_all()

    def _make_engine(self) -> FailoverEngine:
        ha = self.cfg.ha
        config_dir = Path(self.cfg.directory)
        rsctmp = self.state_dir / "rsctmp"
        # Heartbeat wipes HA_RSCTMP at every start (spec 5.2): pseudo-resources such as MailTo
        # keep their "running" flag there, and a flag left by a crashed run made this node
        # claim the group at start-up although nothing of it ran (the demo's crash round).
        shutil.rmtree(rsctmp, ignore_errors=True)
        rsctmp.mkdir(parents=True, exist_ok=True)
        env = heartbeat_environment(
            self.node,
            config_dir,
            logfile=ha.logfile,
            debugfile=ha.debugfile,
            logfacility=ha.logfacility,
            use_logd=ha.use_logd,
            nice_failback=ha.auto_failback.value != "legacy",
            debug=ha.debug,
            rsctmp=rsctmp,
        )
        if ha.sync_config:
            # The master script's `nonstop sync` then shares the daemon's database, key
            # material and file root instead of keeping a second state for the same files.
            env.update({
                "NONSTOP_SYNC_CONFIG": ha.sync_config,
                "NONSTOP_SYNC_STATE_DIR": str(self.state_dir / "sync"),
                "NONSTOP_SYNC_ROOT": self.sync_root,
                "NONSTOP_SYNC_NODE": self.node,
            })
        ctx = AgentContext(
            node=self.node,
            config_dir=config_dir,
            state_dir=rsctmp,
            environment=env,
            news=self._script_news if ha.sync_config else None,
            logger=logging.getLogger("nonstop.resources"),
            address_probe_s=ha.address_probe_ms / 1000 if ha.address_probe_ms else None,
            mail_defer_s=MAIL_DEFER_S,
            **mail_transport(ha),
        )
        interval = ha.monitor_interval_ms / 1000.0 if ha.monitor_interval_ms else None
        return FailoverEngine(
            self.cfg,
            self.node,
            self.state_dir,
            ctx,
            agent_factory=self.observer.timed(self.agent_factory),
            clock=self._now,
            on_change=self._schedule_reconsider,
            monitor_interval_s=interval,
            before_release=self._before_release,
        )

    def _make_keeper(self) -> LeaseKeeper:
        """nonstop_etcd: the lease keeper task (docs/ETCD.md), outside the heartbeat path."""
        from nonstop.coord.lease import LeaseBook, LeaseTiming

        assert self.engine is not None and self.cfg.ha.etcd is not None
        timing = LeaseTiming.from_deadtime(self.cfg.ha.deadtime_ms)
        coord = self._coordinator
        if coord is None:
            try:
                from nonstop.coord.etcd import EtcdGateway
            except ImportError as e:  # reported as a machine problem, in one line
                raise MachineError(f"nonstop_etcd needs the httpx package (pip install "
                                   f"'nonstop[etcd]' or apt-get install python3-httpx): "
                                   f"{e}") from None
            coord = EtcdGateway(self.cfg.ha.etcd, timing.rpc_timeout_s)
        book = LeaseBook(self.node, timing, {i.index: i.key for i in self.engine.infos()})
        prefix = self.cfg.ha.etcd.key_prefix(self.cfg.ha.cluster)
        log.info("etcd: leases under %s, TTL %d s", prefix, timing.ttl_s)
        return LeaseKeeper(coord, book, prefix, self._schedule_reconsider)

    # ------------------------------------------------------------------ failover

    def _schedule_reconsider(self) -> None:
        self._unprompted = False  # a change was reported (the periodic call sets it after)
        if not self._reconsider_pending and self.loop is not None:
            self._reconsider_pending = True
            self.loop.call_soon(self._reconsider)

    def _cluster_view(self) -> ClusterView:
        """This instant's snapshot for decide() and status."""
        assert self.protocol is not None and self.engine is not None
        now = self._now()
        infos = self.engine.infos()
        hb = self.hb_peer if self.hb_peer is not None and self.hb_peer.is_heartbeat else None
        return build_view(
            self.protocol.view(now),
            self.engine.facts(),
            now=now,
            order=self.cfg.ha.nodes,
            groups=infos,
            auto_failback=self.cfg.ha.auto_failback,
            probed=self._probed,
            leaving=self._stop.is_set(),
            address_probe=self.cfg.ha.address_probe_ms is not None,
            lease=self.keeper.states(now) if self.keeper is not None else None,
            fresh_ms=self.keeper.fresh_ms(self.cfg.ha) if self.keeper is not None else 0,
            heartbeat_ads={hb.peer: hb.ad(tuple(i.key for i in infos))} if hb else None,
            handover_agreed=frozenset(i.index for i in infos
                                      if hb is not None and i.key in hb.agreed()),
            guards=self._guard_inputs(now),
        )

    def _guard_inputs(self, now: float) -> Guards:
        assert self.protocol is not None
        if self.guards is None:
            return Guards()
        alive = (n.name for n in self.protocol.view(now).nodes if n.status.value != "dead")
        return self.guards.inputs(now, alive)

    def _reconsider(self) -> None:
        """Build the cluster snapshot, decide, apply, and advertise the result at once."""
        self._reconsider_pending = False
        if self.engine is not None and self.protocol is not None:
            view = self._cluster_view()
            self._warn_foreign_haresources(view)
            decisions = decide(view)
            if self._unprompted and decisions != self._decided[2]:
                log.warning("%s (decided again within %.0f s): %s", MISSED_CHANGE,
                            DECIDE_AT_LEAST_EVERY_S, "; ".join(d.reason for d in decisions))
            self._decided = (view.now, decide_again_at(view, decisions), decisions)
            self._testimony = witness_fields(view)
            self._unprompted = False
            self.observer.on_decisions(decisions, self.engine.infos())
            self.engine.apply(decisions)
            if not self._stop.is_set():
                self.watches.sync(self.engine.held_addresses())
            self._hb_sync(decisions)
            if self.guards is not None:
                self.guards.act(decisions)
            self.observer.on_groups(self.engine.snapshot(holders(view)))
            if self.keeper is not None:
                self.keeper.want(*lease_wants(view, decisions))
        self._advertise()
        if not self._stop.is_set():
            self._replication_follows()

    def _warn_foreign_haresources(self, view: ClusterView) -> None:
        for name, digest in foreign_digests(view).items():
            if name not in self._peer_digest_warned:
                self._peer_digest_warned.add(name)
                log.error("node %s has a different haresources file (digest %s, ours %s): "
                          "haresources must be identical on all nodes", name, digest,
                          view.here.ad.digest)

    def _advertise(self) -> None:
        """Put our holdings in every heartbeat; when they change, send a status at once."""
        if self.engine is None or self.protocol is None or not self._probed:
            return
        fields = encode_ad(self.engine.local_ad()) + self._testimony
        if self.guards is not None:
            fields += tuple(self.guards.status_fields(self._now()))
        if self.protocol.set_status_fields(fields) and self.loop is not None:
            self._send_status()

    async def _leave(self) -> None:
        assert self.protocol is not None
        now = self._now()
        self._handle(self.protocol.leave(now), now)

    # ------------------------------------------------------------------ heartbeat path

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _wake(self) -> None:
        """Run the core's timers now and re-arm for its next deadline (whatever happens: a
        bug here must not stop the heartbeats)."""
        assert self.protocol is not None and self.loop is not None
        self._timer = None
        try:
            self.media.read_queued()  # before any deadline is judged (media.read_queued)
            now = self._now()
            self._handle(self.protocol.tick(now), now)
            self._periodic(now)
        except Exception:
            log.exception("error in the heartbeat timer (heartbeats continue)")
        finally:
            self._arm()

    def _periodic(self, now: float) -> None:
        """The once-a-second work, from whichever heartbeat callback runs first after it is
        due. Not from the timer alone: a node that answers its peer's status in the same turn
        (membership's early send) keeps pushing its own keepalive back, so its timer never
        fires while the peer is heard, and this work would never run there."""
        if now - self._last_periodic < PERIODIC_RECONSIDER_S:
            return
        # Time alone changes a decision only when decide_again_at() says (a failed stop is
        # retried, a start failure ages, a lease or a ping count ages: then every second).
        self._last_periodic = now
        decided_at, again_at, _ = self._decided
        if now >= again_at or now - decided_at >= DECIDE_AT_LEAST_EVERY_S:
            prompted = self._reconsider_pending
            self._schedule_reconsider()
            self._unprompted = not prompted and now < again_at
        if self.guards is not None:
            self.guards.tick(now)
        self.observer.poll_sync()
        self._record_replay_state(now)
        self._log_summaries(now)

    def _record_replay_state(self, now: float) -> None:
        """Record the peers' generations (at once) and sequence numbers (every few seconds)
        in a worker thread, so that their old packets stay replays after our restart."""
        assert self.protocol is not None
        state = self.protocol.replay_state()
        if self._replay_saving or state == self._replay_saved:
            return
        gens = {n: g for n, (g, _) in state.items()}
        if gens == {n: g for n, (g, _) in self._replay_saved.items()} and (
            now - self._replay_saved_at < REPLAY_SAVE_S
        ):
            return
        self._replay_saving, self._replay_saved_at = True, now

        async def save() -> None:
            try:
                await asyncio.to_thread(replaystate.save, self.state_dir, state)
                self._replay_saved = state
                if self._replay_error:
                    log.warning("recording the peers' sequence numbers works again")
                self._replay_error = ""
            except OSError as e:
                if not self._replay_error:  # not every 5 s of a full disk
                    log.error("cannot record the peers' sequence numbers: %s", e)
                self._replay_error = str(e)
            finally:
                self._replay_saving = False

        self._spawn_sync(save())

    def _arm(self) -> None:
        assert self.protocol is not None and self.loop is not None
        when = self.protocol.next_wakeup()
        if when == float("inf"):
            return
        if self._timer is not None:
            if abs(self._timer.when() - when) < 1e-6:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._wake)

    def _on_datagram(self, data: bytes, link: str, addr: tuple[str, int]) -> None:
        """One datagram in, its answer and events out; the timer then follows the core's next
        deadline (our answer moved it), whatever happens: a bug must not leave it behind."""
        assert self.protocol is not None
        now = self._now()
        try:
            out = self.protocol.receive(data, link, now, source=addr[0])
            bad = next((o for o in out if isinstance(o, Dropped)), None)
            peer = bad is None and self.protocol.sender not in (None, self.node)
            forged = bad is not None and bad.reason in AUTH_BAD
            if self.guards is not None and (peer or forged):
                self.guards.packet(addr[0], peer, now)
            if bad is not None and forged:
                claimed = claimed_sender(data, self.cfg.ha.nodes)
                if claimed is not None:
                    self._log_forged(claimed, addr[0], bad.reason, now)
            self._handle(out, now)
            self._periodic(now)
        except Exception:
            log.exception("error handling a datagram (heartbeats continue)")
        self._arm()

    def _send_status(self) -> None:
        """A status at once (our holdings or our deadtime changed), besides the keepalives."""
        assert self.protocol is not None
        now = self._now()
        self._handle(self.protocol.send_status(now), now)

    def _wire_format(self) -> WireFormat:
        return "classic" if self.cfg.ha.msgfmt is MsgFmt.CLASSIC else "netstring"

    def _handle(self, out: list[Output], now: float) -> None:
        """Send what the protocol returned and log or act on its events, in order."""
        self.observer.on_membership(out)
        if any(isinstance(o, FAILOVER_NEWS) for o in out):
            self._schedule_reconsider()
        # Every datagram first, in the protocol's sequence order: a reaction below may send a
        # message of its own (the Heartbeat-peer wiring), whose number comes after these.
        for o in out:
            if isinstance(o, Transmit):
                self._transmit(o, now)
        for o in out:
            if isinstance(o, Transmit):
                continue
            if isinstance(o, Dropped):
                self._log_bad(o.reason, o.src or "?", o.detail, now)
            else:
                line = describe(o, self.cfg.ha.warntime_ms)
                if line is not None:
                    log.log(line[0], line[1], *line[2])
                self._react(o)

    def _transmit(self, t: Transmit, now: float) -> None:
        self.media.send(t.payload)
        if t.mtype == "status":
            # The heartbeat path is alive (Heartbeat tickles on its own status through an
            # internal loopback, so media that do not echo, like mcast loop 0, do not matter).
            if self.watchdog is not None:
                self.watchdog.tickle()
            self.notifier.watchdog(now)

    def _react(self, ev: Output) -> None:
        if isinstance(ev, OwnStatusHeard) and self.watchdog is not None:
            self.watchdog.tickle()  # our own heartbeat came back: we are alive and heard
        elif isinstance(ev, CommUp):
            self.notifier.ready(f"up: comm up on {self.node}")
            if self.guards is not None:
                self.guards.comm_up()
        elif isinstance(ev, NodeDied) and ev.reason != "shutdown" and self.engine is not None:
            log.info("Resources being acquired from %s.", ev.node)
        self._hb_react(ev)


async def run_daemon(cfg: ClusterConfig, node: str, state_dir: Path, sync_root: str = "/") -> int:
    daemon = Daemon(cfg, node, state_dir, sync_root=sync_root)  # real agents: make_agent
    with contextlib.suppress(asyncio.CancelledError):
        return await daemon.run()
    return 0
