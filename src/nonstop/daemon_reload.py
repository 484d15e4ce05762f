"""The daemon's reload: SIGHUP and ``nonstop reload`` re-read the configuration."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nonstop.config.model import ClusterConfig
from nonstop.daemon_base import DaemonBase

log = logging.getLogger("nonstop")


class ReloadWiring(DaemonBase):
    """Re-read ha.cf, haresources and authkeys; apply what can change live."""

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
