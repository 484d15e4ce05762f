"""The daemon's reload: SIGHUP and ``nonstop reload`` re-read the configuration."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from nonstop.config.errors import ConfigError, Location
from nonstop.config.model import ClusterConfig, Parsed
from nonstop.daemon_base import DaemonBase

if TYPE_CHECKING:
    from nonstop.config.reload import ReloadPlan, SyncFiles
    from nonstop.sync.node import Node

log = logging.getLogger("nonstop")
# How long a restart of replication waits for a force-sync under way (each gives up after 30 s).
FORCE_SYNC_WAIT_S = 35.0


def read_sync_files(path: str, me: str) -> SyncFiles:
    """The csync2.cfg at ``path`` and the keys of ``me``'s groups, checked as replication's
    start checks them (a ConfigError names file:line)."""
    from nonstop.config.csync2 import load_csync2, load_key
    from nonstop.config.reload import SyncFiles

    cfg = load_csync2(path)
    groups = cfg.groups_for(me)
    if not groups:
        raise ConfigError(Location(path), f"host '{me}' is not a member of any group")
    return SyncFiles(cfg, {g.name: load_key(g) for g in groups})


def running_sync_files(node: Node) -> SyncFiles:
    """What a running replication node uses: its csync2.cfg and its groups' keys (a key is
    read at its first use: one not read yet is the file's now, which the node would use)."""
    from nonstop.config.reload import SyncFiles

    keys: dict[str, bytes] = {}
    for g in node.groups:
        try:
            keys[g.group.name] = g.key
        except ConfigError:  # its key file is gone or broken now: any new key is a change
            keys[g.group.name] = b""
    return SyncFiles(node.opts.config, keys)


class ReloadWiring(DaemonBase):
    """Re-read ha.cf, haresources, authkeys and the csync2.cfg ``nonstop_sync`` names; apply
    what can change live."""

    # ------------------------------------------------------------------ reload

    def _reload_on_signal(self) -> None:
        """SIGHUP, as Heartbeat and every init script's reload use it."""
        log.info("Signal SIGHUP received: re-reading the configuration")
        self.observer.on_command("reload", {"peer": "SIGHUP"})
        task = asyncio.create_task(self.reload())
        self._reload_tasks.add(task)
        task.add_done_callback(self._reload_tasks.discard)

    def _read_files(self) -> tuple[Parsed[ClusterConfig], SyncFiles | None, SyncFiles | None]:
        """The configuration directory, the csync2.cfg its ha.cf names (if any, read again)
        and what replication runs with now (None: not running). In a worker thread: it reads
        files, and the running node may read a key file for the first time."""
        from nonstop.config.loader import check_cluster_config
        from nonstop.preflight import run_refuses

        parsed = check_cluster_config(self.cfg.directory, self.node)
        if parsed.value is not None and (refused := run_refuses(parsed.value)):
            return Parsed(None, (*parsed.errors, *refused), parsed.warnings), None, None
        path = parsed.value.ha.sync_config if parsed.value is not None else None
        if not path:
            return parsed, None, None
        try:
            new_sync = read_sync_files(path, self.node)
        except ConfigError as e:  # refused whole, as an error of ha.cf is
            return Parsed(None, (*parsed.errors, e), parsed.warnings), None, None
        replicator = self.replicator
        if replicator is None and not self._probed:
            return parsed, None, None  # checked; replication starts after the probe, with it
        running = running_sync_files(replicator.node) if replicator is not None else None
        return parsed, new_sync, running

    async def reload(self) -> dict[str, Any]:
        """Re-read ha.cf, haresources, authkeys and csync2.cfg; apply what can change live
        (see nonstop.config.reload) or, if the new files have any error, keep the running
        configuration and log every error. The files are read off the event loop."""
        from nonstop.config.reload import plan_reload

        async with self._reload_lock:
            self.notifier.reloading()
            parsed, new_sync, running_sync = await asyncio.to_thread(self._read_files)
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
            plan = plan_reload(self.cfg, parsed.value, running_sync, new_sync)
            for w in parsed.warnings:
                log.warning("reload: %s", w)
            deferred = list(plan.deferred)
            await self._apply_reload(plan)
            if plan.restart_sync and plan.config.ha.sync_config and self.replicator is None:
                deferred.append("replication: it did not start (the reason is logged): it is "
                                "tried again at the next reload or start")
            for line in plan.applied:
                log.info("reload: applied %s", line)
            for line in deferred:
                log.warning("reload: not applied now: %s", line)
            log.info("reload: done: %d change(s) applied, %d left for the next start",
                     len(plan.applied), len(deferred))
            self.notifier.reloaded("running; configuration reloaded")
            done = {"ok": True, "applied": list(plan.applied), "deferred": deferred}
            self.observer.on_reload(done)
            return done

    async def _apply_reload(self, plan: ReloadPlan) -> None:
        cfg, old = plan.config, self.cfg
        self.cfg = cfg
        if self.protocol is not None:  # timings, keys and format apply from now on
            self.protocol.reconfigure(cfg.ha, cfg.authkeys, self._wire_format())
        if self.guards is not None:
            new_keys = (cfg.authkeys.active, cfg.authkeys.keys) != (old.authkeys.active,
                                                                    old.authkeys.keys)
            self.guards.reconfigure(cfg.ha, keys_changed=new_keys)
        # Every reload reopens the log files (also a way to follow a rotation by hand).
        from nonstop.logs import reconfigure

        await asyncio.to_thread(reconfigure, cfg.ha)
        if self.engine is not None and cfg.ha.monitor_interval_ms != old.ha.monitor_interval_ms:
            ms = cfg.ha.monitor_interval_ms
            if self._probed:
                await self.engine.set_monitor_interval(ms / 1000.0 if ms else None)
            else:  # the monitor starts after the probe, with the new interval
                self.engine.monitor_interval_s = ms / 1000.0 if ms else None
        if plan.restart_sync:  # heartbeats and resources go on meanwhile
            await self._stop_replication()
            if cfg.ha.sync_config:
                await self._start_replication(cfg.ha.sync_config)
        if self.protocol is not None and cfg.ha.deadtime_ms != old.ha.deadtime_ms:
            # Peers time us out with the deadtime we send: tell them now.
            self._send_status()
        self._arm()

    async def _stop_replication(self) -> None:
        """Stop replication for a restart. A force-sync under way (a takeover's, or the last
        push before a release) finishes first, bounded: cut, it would leave the peers half
        forced, and run on beside the new replicator on sessions stop() closes. Then stop()
        ends the background push (what it sent is committed on the peer, the rest stays dirty
        and is pushed again) and the sessions receiving from the peers, each undoing what it
        left uncommitted, as at shutdown; a session still undoing holds the receiving lock,
        so the new receiver's start-up cleanup leaves its files alone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FORCE_SYNC_WAIT_S
        if self._sync_tasks:
            log.info("replication: restarting once the force-sync under way is done")
        while self._sync_tasks and loop.time() < deadline:  # one may begin meanwhile (a release)
            await asyncio.wait(list(self._sync_tasks), timeout=deadline - loop.time())
        replicator, self.replicator = self.replicator, None
        self._was_active = False
        late = list(self._sync_tasks)  # still running after the bound: cut
        for task in late:
            task.cancel()
        if late:
            log.warning("replication: a force-sync still running after %.0f s was cut for the "
                        "restart", FORCE_SYNC_WAIT_S)
            await asyncio.wait(late)
        if replicator is not None:
            await replicator.stop()
