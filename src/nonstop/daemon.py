"""One node's daemon: wires the pure heartbeat protocol to sockets, clock, logs and the API.

Single asyncio process. The heartbeat path (receive, decide, send) runs straight from the socket
callback and from a timer armed at ``HeartbeatProtocol.next_wakeup()``; it never awaits anything.
Scripts, mail, disk and log writes run elsewhere (subprocesses, tasks, the log queue thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import time
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from nonstop import __version__
from nonstop.api import ControlServer
from nonstop.config.model import ClusterConfig, HaConfig, MsgFmt
from nonstop.coord.keeper import LeaseKeeper
from nonstop.coord.port import Coordinator
from nonstop.failover.decide import Action, Decision, decide, lease_wants
from nonstop.failover.engine import STOP_FAILED_RETRY_S, AgentFactory, FailoverEngine
from nonstop.failover.state import GroupState, encode_ad
from nonstop.failover.view import ClusterView, Guards, build_view, foreign_digests, holders
from nonstop.guards import GuardServices
from nonstop.heartbeat import replaystate
from nonstop.heartbeat.burst import BurstLimiter
from nonstop.heartbeat.codec import AUTH, UNKNOWN_KEY, WireFormat
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.eventlog import describe
from nonstop.heartbeat.events import (
    FAILOVER_NEWS,
    ClusterMessage,
    CommUp,
    Dropped,
    NodeDied,
    NodeReturned,
    Output,
    OwnStatusHeard,
    Send,
    StatusChanged,
    Transmit,
)
from nonstop.heartbeat.hbpeer import (
    HbOutput,
    HeartbeatPeer,
    LocalHold,
    Note,
    StandbyCancelled,
    StandbyRequested,
)
from nonstop.heartbeat.hbresource import RscSet, TakeoverArg
from nonstop.heartbeat.identity import load_uuid, next_generation
from nonstop.heartbeat.media import MediaSet
from nonstop.heartbeat.protocol import HeartbeatProtocol
from nonstop.heartbeat.states import NodeStatus
from nonstop.logs import BAD_INPUT, escape
from nonstop.observe.recorder import Recorder
from nonstop.resources.base import AgentContext, heartbeat_environment, make_agent
from nonstop.resources.mailto import mail_transport
from nonstop.sync.replicator import Replicator
from nonstop.systemd import SystemdNotifier
from nonstop.watchdog import Watchdog

log = logging.getLogger("nonstop")

PERIODIC_RECONSIDER_S = 1.0
REPLAY_SAVE_S = 5.0  # peers' sequence numbers are recorded this often (generations at once)


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


def _normal_priority() -> None:
    """Worker threads (netlink, files) run at normal priority even when the daemon is
    realtime: only the heartbeat path gets SCHED_RR."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


# mlockall(2) flags: MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT (Linux >= 4.4). Without ONFAULT the
# kernel backs and locks every mapping at once, as root beyond RLIMIT_MEMLOCK: the arenas and
# 8 MiB thread stacks Python reserves but never touches (VmLck = VmSize, 77 MB PSS measured, see
# docs/BENCHMARKS.md). With it a page is locked when first touched: what the heartbeat path uses
# can never be swapped out, what nobody uses costs nothing.
MLOCK_FLAGS = 1 | 2 | 4


def _return_startup_garbage() -> None:
    """Hand back to the kernel the heap that imports and parsing freed (about 2 MB glibc
    would keep), before mlockall pins it."""
    gc.collect()
    with contextlib.suppress(AttributeError, OSError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


def apply_process_settings(ha: HaConfig, loop: asyncio.AbstractEventLoop) -> None:
    """ha.cf ``realtime``/``rtprio`` and ``coredumps``, as Heartbeat applies them."""
    import resource
    from concurrent.futures import ThreadPoolExecutor

    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (hard if ha.coredumps else 0, hard))
    loop.set_default_executor(ThreadPoolExecutor(max_workers=8, initializer=_normal_priority))
    _return_startup_garbage()
    if not ha.realtime:
        return
    lowest = os.sched_get_priority_min(os.SCHED_RR)
    prio = ha.rtprio if ha.rtprio is not None and ha.rtprio > 0 else lowest
    try:
        # RESET_ON_FORK: scripts, the service they start and worker threads run at normal
        # priority, as Heartbeat's children do; only the heartbeat path is realtime.
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(prio))
        log.info("realtime: heartbeat thread runs SCHED_RR priority %d", prio)
    except OSError as e:
        log.warning("realtime: cannot set SCHED_RR priority %d: %s", prio, e.strerror)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(MLOCK_FLAGS) != 0:
        log.warning("Cannot lock ourselves into memory: %s", os.strerror(ctypes.get_errno()))


class Daemon:
    """Runs one node until SIGTERM/SIGINT (graceful leave) or ``request_stop()``."""

    def __init__(
        self,
        cfg: ClusterConfig,
        node: str,
        state_dir: Path,
        *,
        agent_factory: AgentFactory = make_agent,
        sync_root: str = "/",
        coordinator: Coordinator | None = None,
    ) -> None:
        self.cfg = cfg
        self.sync_root = sync_root
        self.node = node
        self.state_dir = state_dir
        self.loop: asyncio.AbstractEventLoop | None = None
        self.protocol: HeartbeatProtocol | None = None
        self.media = MediaSet(cfg.ha.media, self._on_datagram)
        self.loadavg = LoadAvg()
        self.burst = BurstLimiter()
        self.started_wall = time.time()
        self.started = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stop = asyncio.Event()
        self._force_stop = asyncio.Event()
        self._last_periodic = 0.0
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
        self._pushed_for_release = False
        self._sync_tasks: set[asyncio.Task[None]] = set()
        self._replay_saved: replaystate.State = {}
        self._replay_saved_at = 0.0
        self._replay_saving = False
        self.notifier = SystemdNotifier()
        self._reload_lock = asyncio.Lock()
        self._reload_tasks: set[asyncio.Task[dict[str, Any]]] = set()
        self.observer = Recorder(cfg, node, state_dir, thread_init=_normal_priority)
        self._coordinator = coordinator  # nonstop_etcd's store (None: the etcd gateway)
        self.keeper: LeaseKeeper | None = None
        # Ping nodes, respawn clients, fencing, own-key check (issue 12); made in run().
        self.guards: GuardServices | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ha = self.cfg.ha
        uuid = load_uuid(self.state_dir, ha.uuidfrom, self.node)
        gen = next_generation(self.state_dir, ha.hbgenmethod)
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
            if self.engine is not None:
                await self.engine.probe()
                self._probed = True
                self.engine.start_monitor()
                self._schedule_reconsider()
            if self.cfg.ha.sync_config:
                await self._start_replication(self.cfg.ha.sync_config)
            await self._stop.wait()
            await self.guards.stop()  # respawn clients first, as Heartbeat's shutdown does
            if self.engine is not None:
                if self.hb_peer is not None:
                    self._hb_out(self.hb_peer.shutdown(), self._now())
                await self._release_for_shutdown()
            if self.keeper is not None:
                await self.keeper.close()
            await self._leave()
            if self.replicator is not None:
                await self.replicator.stop()
            if self.watchdog is not None:
                self.watchdog.close()
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

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("nonstop shutdown in progress. (%d)", os.getpid())
            self.notifier.stopping("releasing resources and leaving the cluster")
            self._stop.set()
        elif not self._force_stop.is_set():
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

    async def _start_replication(self, config_path: str) -> None:
        """ha.cf ``nonstop_sync``: receive always; push while this node holds a group."""
        from nonstop.sync.node import open_node

        try:
            node = await asyncio.to_thread(
                partial(open_node, root=self.sync_root),
                config_path, self.node, str(self.state_dir / "sync"),
            )
            replicator = Replicator(node)
            await replicator.start()
        except Exception as e:  # a broken csync2.cfg or a busy port must not stop the HA daemon
            log.error("replication disabled: %s", e)
            return
        self.replicator = replicator
        self.observer.watch_sync(replicator)
        log.info("replication: serving and watching with %s", config_path)
        self._replication_follows()

    def _replication_follows(self) -> None:
        """Active while we hold a group: push continuously, force-sync on becoming active."""
        if self.replicator is None or self.engine is None:
            return
        active = any(
            g.state is GroupState.HELD for g in self.engine.local_ad().groups.values()
        )
        if active == self._was_active:
            return
        self._was_active = active
        self._pushed_for_release = False
        self.replicator.set_active(active)
        if active:
            log.info("replication: active (this node holds the group): force-sync as the "
                     "master script does on takeover")
            self._spawn_sync(self._force_sync("takeover"))
        else:
            log.info("replication: standby, receiving only")

    def _spawn_sync(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._sync_tasks.add(task)
        task.add_done_callback(self._sync_tasks.discard)

    async def _force_sync(self, why: str) -> None:
        assert self.replicator is not None
        try:
            report = await asyncio.wait_for(self.replicator.force_sync(), timeout=30)
        except TimeoutError:
            log.warning("replication: force-sync on %s still running after 30 s", why)
            return
        except Exception as e:  # a peer or disk problem is reported, never fatal
            log.error("replication: force-sync on %s failed: %s", why, e)
            return
        if report.problems:
            for p in report.problems[:20]:
                log.warning("replication (%s): %s", why, p)
        else:
            log.info("replication: force-sync on %s done (%s)", why,
                     ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing")

    async def _before_release(self) -> None:
        """A release starts while the services still run: push the last changes first, bounded
        so a dead or slow peer cannot hold the group; once, however many groups go."""
        if self.replicator is not None and self._was_active and not self._pushed_for_release:
            self._pushed_for_release = True
            log.info("replication: pushing the last changes before releasing")
            await self._force_sync("release")

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
            logger=logging.getLogger("nonstop.resources"),
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
                raise OSError(f"nonstop_etcd needs the httpx package (pip install "
                              f"'nonstop[etcd]' or apt-get install python3-httpx): "
                              f"{e}") from None
            coord = EtcdGateway(self.cfg.ha.etcd, timing.rpc_timeout_s)
        book = LeaseBook(self.node, timing, {i.index: i.key for i in self.engine.infos()})
        prefix = self.cfg.ha.etcd.key_prefix(self.cfg.ha.cluster)
        log.info("etcd: leases under %s, TTL %d s", prefix, timing.ttl_s)
        return LeaseKeeper(coord, book, prefix, self._schedule_reconsider)

    # ------------------------------------------------------------------ failover

    def _schedule_reconsider(self) -> None:
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
            self.observer.on_decisions(decisions, self.engine.infos())
            self.engine.apply(decisions)
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
        fields = encode_ad(self.engine.local_ad())
        if self.guards is not None:
            fields += tuple(self.guards.status_fields(self._now()))
        if self.protocol.set_status_fields(fields) and self.loop is not None:
            self._send_status()

    # ------------------------------------------------------------------ Heartbeat peer

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
        elif (isinstance(ev, NodeReturned) and ev.node == hb.peer and ev.kind == "restart") or (
                isinstance(ev, StatusChanged) and ev.node == hb.peer
                and ev.old is NodeStatus.DEAD):
            hb.peer_restarted()

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
            now = self._now()
            self._handle(self.protocol.tick(now), now)
            if now - self._last_periodic >= PERIODIC_RECONSIDER_S:
                # Time alone changes some decisions (a start failure ages, a failed stop is
                # retried, a group that was busy is free again): decide again every second.
                self._last_periodic = now
                self._schedule_reconsider()
                if self.guards is not None:
                    self.guards.tick(now)
                self._record_replay_state(now)
                summary = BAD_INPUT.summary(now)
                if summary:
                    log.warning("%s", summary)
        except Exception:
            log.exception("error in the heartbeat timer (heartbeats continue)")
        finally:
            self._arm()

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
            except OSError as e:
                log.error("cannot record the peers' sequence numbers: %s", e)
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
        assert self.protocol is not None
        now = self._now()
        out = self.protocol.receive(data, link, now, source=addr[0])
        if self.guards is not None:
            bad = next((o for o in out if isinstance(o, Dropped)), None)
            if bad is None or bad.reason in (AUTH, UNKNOWN_KEY):
                self.guards.packet(addr[0], bad is None, now)
        self._handle(out, now)
        self._arm()

    def _log_bad(self, reason: str, source: str, detail: str, now: float) -> None:
        if not self.cfg.ha.log_badpack:
            return
        # Once per burst per (reason, source), within the process's global budget (spoofed
        # sources cannot flood the log), and nothing remote unescaped (no forged lines).
        say, suppressed = self.burst.should_log(reason, source, now)
        if say and BAD_INPUT.admit(reason, source, now):
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("dropped packet from %s: %s: %s%s", escape(source), reason,
                        escape(detail, 200), more)

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
        for o in out:
            if isinstance(o, Transmit):
                self._transmit(o, now)
            elif isinstance(o, Dropped):
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

    # ------------------------------------------------------------------ reload

    def _reload_on_signal(self) -> None:
        """SIGHUP, as Heartbeat and every init script's reload use it."""
        log.info("Signal SIGHUP received: re-reading the configuration")
        self.observer.on_command("reload", {"peer": "SIGHUP"})
        task = asyncio.create_task(self.reload())
        self._reload_tasks.add(task)
        task.add_done_callback(self._reload_tasks.discard)

    async def reload(self) -> dict[str, Any]:
        """Re-read ha.cf, haresources and authkeys; apply what can change live (see
        nonstop.config.reload) or, if the new files have any error, keep the running
        configuration and log every error. The files are read off the event loop."""
        from nonstop.config.loader import check_cluster_config
        from nonstop.config.reload import plan_reload

        async with self._reload_lock:
            self.notifier.reloading()
            parsed = await asyncio.to_thread(check_cluster_config, self.cfg.directory, self.node)
            if parsed.value is None:
                for err in parsed.errors:
                    log.error("reload: %s", err)
                log.error("reload refused: %d error(s); still running on the previous "
                          "configuration", len(parsed.errors))
                self.notifier.reloaded("running; the last reload was refused")
                refused = {"ok": False, "error": "configuration has errors: nothing changed",
                           "errors": [str(e) for e in parsed.errors]}
                self.observer.on_reload(refused)
                return refused
            plan = plan_reload(self.cfg, parsed.value)
            for w in parsed.warnings:
                log.warning("reload: %s", w)
            await self._apply_reload(plan.config)
            for line in plan.applied:
                log.info("reload: applied %s", line)
            for line in plan.deferred:
                log.warning("reload: not applied now: %s", line)
            log.info("reload: done: %d change(s) applied, %d left for the next start",
                     len(plan.applied), len(plan.deferred))
            self.notifier.reloaded("running; configuration reloaded")
            done = {"ok": True, "applied": list(plan.applied), "deferred": list(plan.deferred)}
            self.observer.on_reload(done)
            return done

    async def _apply_reload(self, cfg: ClusterConfig) -> None:
        old = self.cfg
        self.cfg = cfg
        if self.protocol is not None:  # timings, keys and format apply from now on
            self.protocol.reconfigure(cfg.ha, cfg.authkeys, self._wire_format())
        if self.guards is not None:
            self.guards.reconfigure(cfg.ha)
        # Every reload reopens the log files (also a way to follow a rotation by hand).
        from nonstop.logs import reconfigure

        await asyncio.to_thread(reconfigure, cfg.ha)
        if self.engine is not None and cfg.ha.monitor_interval_ms != old.ha.monitor_interval_ms:
            ms = cfg.ha.monitor_interval_ms
            if self._probed:
                await self.engine.set_monitor_interval(ms / 1000.0 if ms else None)
            else:  # the monitor starts after the probe, with the new interval
                self.engine.monitor_interval_s = ms / 1000.0 if ms else None
        if cfg.ha.sync_config != old.ha.sync_config:
            if self.replicator is not None:
                await self.replicator.stop()
                self.replicator = None
                self._was_active = False
            if cfg.ha.sync_config:
                await self._start_replication(cfg.ha.sync_config)
        if self.protocol is not None and cfg.ha.deadtime_ms != old.ha.deadtime_ms:
            # Peers time us out with the deadtime we send: tell them now.
            self._send_status()
        self._arm()

    # ------------------------------------------------------------------ API

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
                    "generation": n.generation,
                    "links": {k: ("up" if v else "dead") for k, v in n.links.items()},
                }
                for n in view.nodes
            ],
            "groups": self.engine.snapshot(holders(self._cluster_view())) if self.engine else [],
            "sync": self.replicator.status() if self.replicator else None,
            "etcd": self.keeper.status(now) if self.keeper else None,
            **(self.guards.status(now) if self.guards is not None else {}),
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
            try:
                keys = (self.engine.standby if cmd == "standby" else self.engine.takeover)(which)
            except ValueError as e:
                return {"ok": False, "error": str(e)}
            if cmd == "takeover" and self.hb_peer is not None:
                # A Heartbeat node gives a group only by going standby: ask it to.
                self._hb_out(self.hb_peer.takeover(TakeoverArg(which)), self._now())
            return {"ok": True, "groups": keys}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


async def run_daemon(cfg: ClusterConfig, node: str, state_dir: Path, sync_root: str = "/") -> int:
    daemon = Daemon(cfg, node, state_dir, sync_root=sync_root)  # real agents: make_agent
    with contextlib.suppress(asyncio.CancelledError):
        return await daemon.run()
    return 0
