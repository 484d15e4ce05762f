"""The daemon's replication wiring: ha.cf ``nonstop_sync`` follows who holds the groups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import partial
from typing import Any

from nonstop.daemon_base import DaemonBase
from nonstop.failover.state import GroupState
from nonstop.sync.replicator import Replicator

log = logging.getLogger("nonstop")


class ReplicationWiring(DaemonBase):
    """Push while this node holds a group, force-sync at takeover and release."""

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
        self.replicator.node.push_refusal = self._push_refusal
        if active:
            if self.replicator.server is not None and self.replicator.server.end_sessions():
                log.info("replication: ended the sessions still receiving from the peers")
            log.info("replication: active (this node holds the group): force-sync as the "
                     "master script does on takeover")
            self._spawn_sync(self._force_sync("takeover"))
        else:
            log.info("replication: standby, receiving only")

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

    async def _before_release(self) -> None:
        """A release starts while the services still run: push the last changes first, bounded
        so a dead or slow peer cannot hold the group; once, however many groups go."""
        if self.replicator is not None and self._was_active and not self._pushed_for_release:
            self._pushed_for_release = True
            log.info("replication: pushing the last changes before releasing")
            task = self._spawn_sync(self._force_sync("release"))
            try:
                await asyncio.wait({task})  # a restart cancelling it must not stop the release
            except asyncio.CancelledError:
                task.cancel()
                raise
