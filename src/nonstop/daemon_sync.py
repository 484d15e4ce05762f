"""The daemon's replication wiring: ha.cf ``nonstop_sync`` follows who holds the groups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import partial
from typing import Any

from nonstop.daemon_base import DaemonBase
from nonstop.failover.rivals import Rivals
from nonstop.failover.state import GroupState
from nonstop.guards import peers_cut_off
from nonstop.heartbeat.states import NodeStatus
from nonstop.sync.context import DEAD_PEERS_ENV
from nonstop.sync.replicator import Replicator

log = logging.getLogger("nonstop")

# A hand-off's last push runs while the group's services are down: bounded, a slow or refusing
# peer costs at most this much downtime. The one before the stop (a standby's check) has the
# services still running, as the release push had before.
HANDOFF_PUSH_S = 10.0
PRE_STOP_PUSH_S = 30.0
UNSENT_NAMED = 5  # names in a log line or an error, the rest counted
FIX_FIRST = ("Fix replication first (nonstop status); stopping this node's daemon hands over "
             "anyway")


class ReplicationWiring(DaemonBase):
    """Push while this node holds a group, force-sync at takeover and release."""

    _handoffs = 0  # planned releases between their services' stop and their announcement
    # Why replication, configured, is not running (a broken csync2.cfg, a busy port): status.
    _sync_error: str | None = None
    # Peers seen running a group while this node held it (a split brain's loser).
    _rivals = Rivals()

    async def _start_replication(self, config_path: str) -> None:
        """ha.cf ``nonstop_sync``: receive always; push while this node holds a group."""
        from nonstop.sync.node import open_node

        try:
            node = await asyncio.to_thread(
                partial(open_node, root=self.sync_root),
                config_path, self.node, str(self.state_dir / "sync"),
            )
            if self.replicator is not None:  # a reload started it while this one read
                node.close()
                return
            replicator = Replicator(node)
            # The last run ended holding a group: its last changes may never have left (once:
            # a reload that restarts replication later is not that start).
            ended_holding = self.engine is not None and self.engine.ended_holding
            if self.engine is not None:
                self.engine.ended_holding = False
            await replicator.start(scan_unsent=ended_holding)
        except Exception as e:  # a broken csync2.cfg or a busy port must not stop the HA daemon
            log.error("replication disabled: %s", e)
            self._sync_error = str(e)
            return
        self._sync_error = None
        self.replicator = replicator
        self.observer.watch_sync(replicator)
        log.info("replication: serving and watching with %s", config_path)
        self._replication_follows()

    def _replication_follows(self) -> None:
        """Active while we hold a group, or hand it over: push continuously, force-sync on
        becoming active; pushes skip the peers heartbeats declare dead."""
        if self.replicator is None or self.engine is None:
            return
        self.engine.standby_refusal = self._standby_refusal
        self._follow_membership(self.replicator)
        states = {g.state for g in self.engine.local_ad().groups.values()}
        if not states & {GroupState.HELD, GroupState.STOPPING}:
            # No release can be under way: a count left over (a stop that raised, a restart
            # of replication between the two hooks) made a later conflict release or a failed
            # start's give-up look planned, and turned replication active (a review).
            self._handoffs = 0
        # A planned release goes on pushing while the services stop: what they write on the
        # way out is in the last push (_before_release).
        active = GroupState.HELD in states or (
            self._handoffs > 0 and GroupState.STOPPING in states)
        if active != self._was_active:
            self._turn(self.replicator, active)
        self._force_after_rivals(self.replicator)

    def _turn(self, replicator: Replicator, active: bool) -> None:
        self._was_active = active
        replicator.set_active(active)
        replicator.node.push_refusal = self._push_refusal
        if active:
            if replicator.server is not None and replicator.server.end_sessions():
                log.info("replication: ended the sessions still receiving from the peers")
            log.info("replication: active (this node holds the group): force-sync as the "
                     "master script does on takeover")
            self._spawn_sync(self._force_sync("takeover"))
        else:
            log.info("replication: standby, receiving only")

    def _force_after_rivals(self, replicator: Replicator) -> None:
        """A healed split brain: once the loser's services have stopped, force this node's
        tree onto it again. What they wrote after the force-sync of the heal (Asterisk logs
        until its resource script is stopped at the loser's release) was changed on both
        sides and stayed in conflict; the loser's versions are kept in its backup directory,
        as at the takeover. A planned hand-off never gets here: the old holder's services stop
        before this node holds the group."""
        assert self.engine is not None
        local = self.engine.local_ad().groups
        mine = {g for g, ad in local.items() if ad.state is GroupState.HELD}
        if not mine:  # nothing held here: no rival, and no view to build
            self._rivals = Rivals()
            return
        held = {i.index: i.key for i in self.engine.infos() if i.index in mine}
        view = self._cluster_view()
        peers = {n: view.ads.get(n) for n in view.alive if n != view.local}
        self._rivals, stopped = self._rivals.after(held, peers)
        if not stopped or not self._was_active:
            return
        for why in stopped.values():
            log.info("replication: %s: forcing this node's %s onto it again, as at the "
                     "takeover (its versions kept in its backup directory)", why,
                     ", ".join(replicator.force_paths))
        self._spawn_sync(self._force_sync(f"the release of {', '.join(sorted(stopped))}"))

    def _follow_membership(self, replicator: Replicator) -> None:
        """Tell the replicator which ha.cf peers are dead now (a csync2 host outside ha.cf is
        never judged): its pushes do not wait on them."""
        # Membership's view alone: a whole cluster view also reads the guards' inputs (the
        # carrier, the routes over netlink while a peer is dead), twice per decision.
        if self.protocol is None:
            return
        alive = {n.name for n in self.protocol.view(self._now()).nodes
                 if n.status in (NodeStatus.UP, NodeStatus.ACTIVE)}
        replicator.set_dead(frozenset(
            h.name for g in replicator.node.groups for h in g.group.peers(self.node)
            if h.name in self.cfg.ha.nodes and h.name not in alive))

    def _script_news(self) -> dict[str, str]:
        """What a resource script's `nonstop sync` learns as it starts: the peers the
        heartbeats declared dead (a takeover's master script then does not wait 3 s on the
        crashed node's box)."""
        if self.protocol is None:
            return {}
        dead = sorted(n.name for n in self.protocol.view(self._now()).nodes
                      if n.status is NodeStatus.DEAD and n.name != self.node)
        return {DEAD_PEERS_ENV: " ".join(dead)}

    def _push_refusal(self, peer: str) -> str | None:
        """Why a push from ``peer`` is refused now, if it is: while we hold a group, a cluster
        node that claims no group but ours must not overwrite our files (a split brain's loser
        releasing, or still claiming our group in the keepalive before it settles; its master
        script's `sync -fr` at release; a push it planned before we took over and sent after
        the heal). A peer that holds another group pushes as before, under the conflict
        checks; a csync2 host outside ha.cf too."""
        if not self._was_active or peer not in self.cfg.ha.nodes or self.engine is None:
            return None
        view = self._cluster_view()
        ad = view.ads.get(peer) if peer in view.alive else None
        mine = {i for i, g in self.engine.local_ad().groups.items() if g.state.claims}
        if ad is not None and {i for i, g in ad.groups.items() if g.state.claims} - mine:
            return None  # it holds a group we do not: its files are its own
        return (f"{self.node} holds a group and {peer} none that {self.node} does not hold: "
                f"{self.node} takes no pushes from it; its files are replicated from "
                f"{self.node}")

    def _spawn_sync(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A force-sync runs as one of ``_sync_tasks``: a restart of replication (reload)
        lets those finish before it stops the replicator they push with."""
        task = asyncio.create_task(coro)
        self._sync_tasks.add(task)
        task.add_done_callback(self._sync_tasks.discard)
        return task

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

    def _standby_refusal(self) -> str | None:
        """Why ``nonstop standby`` must not hand the groups over now: the peers lack changes of
        this node that replication could not give them, and the new holder's takeover
        force-sync would overwrite them here."""
        why = self.replicator.failing() if self.replicator and self._was_active else None
        # Only what the nodes that could take the group over lack: a csync2 host outside
        # ha.cf (a backup box) being down is no reason to keep the group here (a review).
        if why is None or not self.replicator or not self.replicator.unsent(self._takers()):
            return None
        return (f"replication from {self.node} is failing ({why}): the new holder's takeover "
                f"force-sync would overwrite here what it could not send. {FIX_FIRST}")

    def _takers(self) -> list[str]:
        """The other ha.cf nodes: those a group can go to."""
        return [n for n in self.cfg.ha.nodes if n != self.node]

    async def _before_release(self, stopped: bool, may_refuse: bool) -> str | None:
        """A planned release (not a split brain's): before the services stop (``stopped``
        False), keep pushing through the stop and, for a standby (``may_refuse``), push what is
        waiting and say why the group should stay if that fails; once they have stopped, push
        what changed, what they wrote on their way out too, before the group is announced
        released. Each push is bounded and skipped, without a scan, when nothing changed; the
        last one is skipped when no node that can take the group can be reached: the route to
        each goes over an interface without carrier (this node's cable pulled)."""
        if stopped and self._handoffs and (self.replicator is None or not self._was_active):
            self._handoffs -= 1  # replication restarted meanwhile: nothing to push, but done
            return None
        if self.replicator is None or not self._was_active:
            return None
        if not stopped:
            self._handoffs += 1
            if not may_refuse:
                return None
            why = await self._push_waiting(PRE_STOP_PUSH_S)
            if why is None:
                return None
            self._handoffs -= 1
            refusal = (f"replication from {self.node} failed ({why}); the new holder's "
                       f"takeover force-sync would overwrite them here. {FIX_FIRST}")
            # `nonstop standby` has already answered: the refusal must be readable where the
            # operator looks next, not only in the log (`nonstop status`, the history).
            self.replicator.note_standby_refused(refusal)
            self.observer.record("standby_refused", node=self.node,
                                 reason=f"standby refused, the group stays here: {refusal}")
            return refusal
        try:
            # Read at once (a netlink dump, /etc/hosts), as the takeover guard reads the
            # carrier: no await before the push is spawned, which a restart waits for.
            takers = set(self.replicator.live()) & set(self._takers())
            cut = peers_cut_off(self.replicator.addresses(takers))
            # The services are down: only what changed, no force-sync's scan (1 s of gap).
            why = None if cut else await self._push_waiting(HANDOFF_PUSH_S, force=False)
        finally:
            self._handoffs = max(0, self._handoffs - 1)
            if not self._stop.is_set():
                self._replication_follows()
        if cut is not None:
            # A pulled cable (ipfail gives the group away): the push could only wait out its
            # bound, with the services down; a trial measured 10 s more outage.
            log.warning("replication: no last push before handing over: %s; the new holder's "
                        "takeover force-sync replaces here what changed since the last push "
                        "(each replaced version kept in the group's backup directory, if it "
                        "has one)", cut)
        elif why is not None:
            log.critical("replication: the last push before handing over failed: %s; the new "
                         "holder's takeover force-sync replaces them here (each replaced "
                         "version kept in the group's backup directory, if it has one)", why)
        return None

    async def _push_waiting(self, bound: float, force: bool = True) -> str | None:
        """Push what is waiting (with the release's force-sync), within ``bound`` seconds;
        None if the live peers have it all, else what they lack and why."""
        replicator = self.replicator
        assert replicator is not None
        problems: list[str] = []

        async def push() -> None:
            try:
                async with asyncio.timeout(bound):
                    report = await replicator.push_pending(force)
            except TimeoutError:
                problems.append(f"the push did not finish within {bound:.0f} s")
                return
            except Exception as e:  # a peer or disk problem is reported, never fatal
                problems.append(f"{type(e).__name__}: {e}")
                return
            if report is None:
                return
            problems.extend(report.problems)
            log.info("replication: pushed the last changes before releasing (%s)",
                     ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
                     or "nothing new")

        task = self._spawn_sync(push())
        try:
            await asyncio.wait({task})  # a restart cancelling it must not stop the release
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not problems:
            return None
        takers = self._takers()
        unsent = await asyncio.to_thread(replicator.unsent, takers)
        if not unsent:
            return None  # the nodes that can take the group have it all (another host failed)
        more = ", ..." if len(unsent) > UNSENT_NAMED else ""
        return (f"{problems[-1]}: {len(unsent)} change(s) made here are not on "
                f"{', '.join(sorted(set(replicator.live()) & set(takers)))} "
                f"({', '.join(unsent[:UNSENT_NAMED])}{more})")
