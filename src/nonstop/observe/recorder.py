"""The recorder: the one object the daemon tells what happens (issue 14).

Every ``on_*`` method runs on the event loop, does a little bookkeeping and returns: the record
goes to a queue (the history writer thread), to a ring of recent records (the status page, the
notifiers) and to the metrics. Nothing here waits on a disk, a program or a socket, so calling
it from the heartbeat path costs microseconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nonstop.config.model import ClusterConfig
from nonstop.failover.decide import Action, Decision, GroupInfo
from nonstop.heartbeat.events import (
    CommUp,
    LateHeartbeat,
    LinkChanged,
    NodeDied,
    NodeReturned,
    Send,
    SilenceWarning,
    StatusChanged,
)
from nonstop.heartbeat.states import NodeStatus
from nonstop.observe.agents import AgentFactory, timed_factory
from nonstop.observe.events import Record, Scalar, clip
from nonstop.observe.store import HistoryFile, HistoryWriter, history_dir, read_records

if TYPE_CHECKING:
    from nonstop.observe.metrics import Metrics

log = logging.getLogger("nonstop.observe")

T = TypeVar("T")
RECENT = 1000  # records kept in memory for the page and the notifiers
SYNC_RECORD_S = 60.0  # replication's pushes and receptions: one record each at most this often

StatusFn = Callable[[], dict[str, Any]]


class Recorder:
    """History, metrics and notifications of one node. ``start()`` before the first record
    (it reads where the sequence stands), ``close()`` last."""

    def __init__(self, cfg: ClusterConfig, node: str, state_dir: Path, *,
                 wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic,
                 thread_init: Callable[[], None] = lambda: None,
                 segment_bytes: int | None = None, metrics: bool | None = None) -> None:
        self.cfg = cfg
        self.node = node
        self.state_dir = state_dir
        self.wall = wall
        self.mono = mono
        # The metrics are loaded only where they are served
        # (``metrics``: None = as ha.cf says).
        self.metrics: Metrics | None = None
        if metrics or (metrics is None and cfg.ha.metrics_address is not None):
            from nonstop.observe.metrics import Metrics

            self.metrics = Metrics()
        self.seq = 0
        self.written = 0  # the last sequence number the writer handled
        self.recent: collections.deque[Record] = collections.deque(maxlen=RECENT)
        file = (HistoryFile(history_dir(state_dir)) if segment_bytes is None
                else HistoryFile(history_dir(state_dir), segment_bytes))
        self.writer = HistoryWriter(file, self._written_from_thread, thread_init)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[], None]] = []
        self._decided: dict[int, str] = {}
        self._groups: dict[str, dict[str, Any]] = {}
        self._starting: dict[str, float] = {}
        self._replicator: Any = None
        self._sync_seen: dict[str, int] = {}
        self._sync_conflicts_seen: frozenset[str] = frozenset()  # the last push's conflicts
        # Pushes and receptions are summed and recorded at most once per SYNC_RECORD_S: one a
        # push filled a 1 MiB history in tens of minutes on a live PBX (3 pushes a second),
        # and took the group events with it.
        self._sync_sums = {"pushed": [0, 0], "received": [0, 0]}  # count, bytes
        self._sync_recorded_at = float("-inf")
        self._sync_failing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._services: list[Any] = []
        self.started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self, status: StatusFn | None = None) -> None:
        """Open the history (numbering continues where the last run stopped), then the
        notifiers and, with ``nonstop_metrics``, the page and metrics server."""
        self._loop = asyncio.get_running_loop()
        # At start, before the heartbeat sockets open: reading the tail of at most 512 KiB here
        # costs the start a few milliseconds and the daemon no extra thread.
        self.seq = self.writer.file.open()
        self.written = self.seq
        self.writer.start()
        self.started = True
        from nonstop.observe.notify import Notifier

        for program in self.cfg.ha.notify_programs:
            notifier = Notifier(program, self, self.state_dir / "notify")
            await notifier.start()
            self._services.append(notifier)
        if (self.cfg.ha.metrics_address is not None and status is not None
                and self.metrics is not None):
            from nonstop.observe.web import WebServer

            web = WebServer(self.cfg.ha.metrics_address, self, self.metrics, status)
            try:
                await web.start()
            except OSError as e:  # a busy port must not stop the HA daemon
                log.error("status page and metrics disabled: cannot listen on %s:%d: %s",
                          *self.cfg.ha.metrics_address, e.strerror or e)
            else:
                self._services.append(web)
                log.info("status page and metrics on %s", web.url)
        self.record("daemon_start", node=self.node,
                    reason=f"nonstop started on {self.node} (pid {os.getpid()})")

    async def close(self) -> None:
        if not self.started:
            return
        self.record("daemon_stop", node=self.node, reason=f"nonstop on {self.node} stopping")
        for task in list(self._tasks):
            task.cancel()
        for service in reversed(self._services):
            await service.close()
        await asyncio.to_thread(self.writer.close)
        self.started = False

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ records

    def record(self, kind: str, *, node: str = "", group: str = "", reason: str = "",
               **data: Scalar) -> Record | None:
        """Number the event, keep it, and hand it to the writer thread (never blocks)."""
        if not self.started:
            return None
        self.seq += 1
        rec = Record(self.seq, self.wall(), self.mono(), self.node, kind, node, group,
                     clip(reason), {k: clip(v) if isinstance(v, str) else v
                                    for k, v in data.items()})
        self.recent.append(rec)
        if self.metrics is not None:
            self.metrics.events.labels(kind).inc()
        self.writer.put(rec)
        return rec

    def _written_from_thread(self, seq: int) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._written, seq)

    def _written(self, seq: int) -> None:
        self.written = max(self.written, seq)
        for wake in self._listeners:
            wake()

    def in_worker(self, run: Callable[[], T]) -> Awaitable[T]:
        """Run a small blocking job (a file, the metrics text) in the history writer thread."""
        return self.writer.call(run)

    def listen(self, wake: Callable[[], None]) -> None:
        """``wake()`` is called on the loop whenever records reached the history file."""
        self._listeners.append(wake)

    def recent_after(self, after: int, limit: int = 200) -> list[Record]:
        """Records above ``after`` from memory (the status page's timeline)."""
        return [r for r in self.recent if r.seq > after][:limit]

    async def written_after(self, after: int, limit: int = 100) -> list[Record]:
        """Written records above ``after``, oldest first: from memory when it still holds
        them, else from the history file (a notifier catching up after a restart)."""
        upto = self.written
        if after >= upto:
            return []
        if self.recent and self.recent[0].seq <= after + 1:
            return [r for r in self.recent if after < r.seq <= upto][:limit]
        found = await self.in_worker(partial(read_records, history_dir(self.state_dir), after))
        return [r for r in found if r.seq <= upto][:limit]

    # ------------------------------------------------------------------ membership

    def on_membership(self, events: Iterable[object]) -> None:
        """What the heartbeat core reported (called for every batch: most are sends)."""
        for ev in events:
            if isinstance(ev, Send):
                continue
            if isinstance(ev, NodeDied):
                if ev.reason == "shutdown":
                    why = f"{ev.node} left the cluster (shutdown notice)"
                else:
                    why = (f"{ev.node} is dead: no heartbeat for {ev.silence_ms} ms "
                           f"(deadtime {ev.limit_ms} ms)")
                self.record("node_dead", node=ev.node, reason=why, cause=ev.reason,
                            silence_ms=ev.silence_ms)
            elif isinstance(ev, StatusChanged):
                self._status_changed(ev)
            elif isinstance(ev, LinkChanged):
                state = "up" if ev.up else "dead"
                self.record(f"link_{state}", node=ev.node, reason=f"link {ev.link} to "
                            f"{ev.node} is {state}", link=ev.link)
            elif isinstance(ev, LateHeartbeat):
                self.record("node_late", node=ev.node, reason=f"late heartbeat from {ev.node}: "
                            f"interval {ev.interval_ms} ms", interval_ms=ev.interval_ms)
            elif isinstance(ev, SilenceWarning):
                self.record("node_silent", node=ev.node, reason=f"no heartbeat from {ev.node} "
                            f"for {ev.silence_ms} ms (warntime)", silence_ms=ev.silence_ms)
            elif isinstance(ev, NodeReturned):
                how = ("after a partition (same generation)" if ev.kind == "partition"
                       else "restarted (new generation)")
                self.record("node_back", node=ev.node, reason=f"{ev.node} is back: {how}",
                            cause=ev.kind)
            elif isinstance(ev, CommUp):
                self.record("comm_up", node=self.node,
                            reason="every node heard or declared dead: comm up")

    def _status_changed(self, ev: StatusChanged) -> None:
        if self.metrics is not None:
            self.metrics.node_changes.labels(ev.node, ev.new.value).inc()
        if ev.new is NodeStatus.DEAD and not ev.local:
            return  # said by node_dead, with its reason
        first = ev.old in (NodeStatus.INIT, NodeStatus.DEAD) and not ev.local
        self.record("node_up" if first else "node_status", node=ev.node,
                    reason=f"{'local' if ev.local else ev.node} status "
                    f"{ev.old.value} -> {ev.new.value}", status=ev.new.value)

    # ------------------------------------------------------------------ failover

    def on_decisions(self, decisions: Sequence[Decision], groups: Sequence[GroupInfo]) -> None:
        """decide()'s result: a record whenever a group's reason changes."""
        keys = {g.index: g.key for g in groups}
        for d in decisions:
            if self._decided.get(d.group) == d.reason:
                continue
            self._decided[d.group] = d.reason
            settled = d.conflict or d.action is Action.REANNOUNCE
            self.record("split_settled" if settled else "decision", node=self.node,
                        group=keys.get(d.group, str(d.group)), reason=d.reason,
                        action=d.action.value, epoch=d.epoch or None)

    def on_groups(self, snapshot: Sequence[dict[str, Any]]) -> None:
        """The groups as ``status --json`` shows them; a record for each change of local
        state or of holder, with the takeover's duration once a group is held."""
        now = self.mono()
        for g in snapshot:
            key = str(g["key"])
            before = self._groups.get(key, {"local_state": "none", "holder": None})
            self._groups[key] = {"local_state": g["local_state"], "holder": g["holder"]}
            old, new = before["local_state"], g["local_state"]
            if old != new:
                self._group_state(key, old, new, now, int(g.get("epoch") or 0))
            if before["holder"] != g["holder"]:
                holder = g["holder"]
                self.record("group_holder", node=holder or "", group=key,
                            reason=f"group {key} is held by {holder}" if holder
                            else f"nobody holds group {key}")

    def _group_state(self, key: str, old: str, new: str, now: float, epoch: int) -> None:
        if new == "starting":
            self._starting[key] = now
            self.record("group_starting", node=self.node, group=key,
                        reason=f"acquiring group {key} (epoch {epoch})", epoch=epoch)
        elif new == "held":
            since = self._starting.pop(key, None)
            took = None if since is None else now - since
            if took is not None and self.metrics is not None:
                self.metrics.takeovers.labels(key).inc()
                self.metrics.takeover_seconds.labels(key).observe(took)
            how = "claimed again at start-up" if old == "none" else "acquired"
            self.record("group_acquired", node=self.node, group=key,
                        reason=f"group {key} {how} (epoch {epoch})", epoch=epoch,
                        duration_ms=None if took is None else round(took * 1000))
        elif new == "stopping":
            self._starting[key] = now
            self.record("group_releasing", node=self.node, group=key,
                        reason=f"releasing group {key}")
        elif new == "none" and old == "stopping":
            since = self._starting.pop(key, None)
            self.record("group_released", node=self.node, group=key,
                        reason=f"group {key} released",
                        duration_ms=None if since is None else round((now - since) * 1000))
        elif new in ("start_failed", "stop_failed"):
            self._starting.pop(key, None)
            what = "start" if new == "start_failed" else "stop"
            if self.metrics is not None:
                self.metrics.group_failures.labels(key, what).inc()
            self.record("group_failed", node=self.node, group=key, result=new,
                        reason=f"group {key}: {what} failed")

    def timed(self, factory: AgentFactory) -> AgentFactory:
        """The daemon's agent factory, with agents that report their actions here."""
        return timed_factory(factory, self.cfg.groups, self)

    def on_resource(self, *, group: str, resource: str, action: str, ok: bool,
                    duration_s: float, result: str) -> None:
        if self.metrics is not None:
            self.metrics.action_seconds.labels(resource, action).observe(duration_s)
            if not ok:
                self.metrics.action_failures.labels(resource, action).inc()
        verb = {"start": "started", "stop": "stopped"}.get(action)
        if action == "monitor":
            text = f"{resource} found {result}"
        else:
            text = f"{resource} {verb}" if ok else f"{resource} {action} failed: {result}"
        self.record(f"resource_{action}", node=self.node, group=group, reason=text,
                    resource=resource, action=action, result="ok" if ok else result,
                    duration_ms=round(duration_s * 1000))

    # ------------------------------------------------------------------ commands

    def on_command(self, cmd: str, request: dict[str, Any]) -> None:
        """An operator's request through the control socket (who asked: its peer
        credentials), or a signal."""
        who = str(request.get("peer") or "unknown")
        which = request.get("which")
        what = f"{cmd} {which}" if which else cmd
        self.record("command", node=self.node, reason=f"{what} requested", who=who,
                    action=cmd)

    def on_reload(self, reply: dict[str, Any]) -> None:
        """A reload's outcome (who asked is in the command record just before)."""
        if reply.get("ok"):
            applied = list(reply.get("applied") or [])
            deferred = list(reply.get("deferred") or [])
            text = (f"configuration reloaded: {len(applied)} change(s) applied, "
                    f"{len(deferred)} at the next start")
            if applied:
                text += ": " + "; ".join(applied)
        else:
            text = f"reload refused: {reply.get('error')}"
        self.record("reload", node=self.node, reason=text,
                    result="ok" if reply.get("ok") else "refused")

    # ------------------------------------------------------------------ replication

    def watch_sync(self, replicator: Any) -> None:
        """Follow a replicator: its pushes (a report each) and what its server receives."""
        self._replicator = replicator
        self._sync_seen = dict(getattr(replicator.server, "stats", None) or {})
        replicator.on_report = self.on_sync_report
        node = getattr(replicator, "node", None)
        if node is not None:
            node.on_overwritten = self.on_sync_overwritten

    def on_sync_overwritten(self, peer: str, names: list[str]) -> None:
        """A peer's forced push (its takeover's force-sync) replaced changes made here that
        had not reached it: after a power cut, what the operator must know first, and a log
        line per file said it five times over with status keeping only the last."""
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        self.record("sync_overwritten", node=peer, reason=(
            f"{peer}'s forced push overwrote {len(names)} change(s) made here that it lacked: "
            f"{shown}; each old version is kept in the group's backup directory, if it has one"),
            count=len(names))

    def on_sync_report(self, report: Any) -> None:
        # A retry every 5 s meets the same unresolved conflicts: each is recorded (and
        # counted) when it first appears, not every 5 s (a 1 MiB history lost its older events
        # within hours), whatever else comes and goes beside it.
        new = [c for c in report.conflicts if c not in self._sync_conflicts_seen]
        self._sync_conflicts_seen = frozenset(report.conflicts)
        conflicts = len(new)
        if conflicts:
            if self.metrics is not None:
                self.metrics.sync_conflicts.inc(conflicts)
            self.record("sync_conflict", node=self.node, reason=f"{conflicts} conflict(s) "
                        "while pushing: " + "; ".join(new[:3]), count=conflicts)
        # As replication's own log: a conflict is no failure (a notify hook paged for one).
        failing = bool(report.failures())
        if failing != self._sync_failing:
            self._sync_failing = failing
            if failing:
                self.record("sync_failed", node=self.node,
                            reason=f"replication failed: {report.problems[-1]}")
            else:
                self.record("sync_recovered", node=self.node, reason="replication works again")
        if report.sent_names:
            pushed = self._sync_sums["pushed"]
            pushed[0] += len(report.sent_names)
            pushed[1] += report.bytes_sent
        self._record_sync_sums()

    def _record_sync_sums(self) -> None:
        """The pushes and receptions summed since the last record, once SYNC_RECORD_S has
        passed (at once after a quiet spell)."""
        now = self.mono()
        if now - self._sync_recorded_at < SYNC_RECORD_S:
            return
        (pushed, sent), (got, _) = self._sync_sums["pushed"], self._sync_sums["received"]
        if not pushed and not got:
            return
        since = "" if self._sync_recorded_at == float("-inf") else \
            f" in the last {now - self._sync_recorded_at:.0f} s"
        if pushed:
            self.record("sync_pushed", node=self.node, reason=f"pushed {pushed} change(s) to "
                        f"the peers{since}", count=pushed, bytes=sent)
        if got:
            self.record("sync_received", node=self.node, reason=f"received {got} change(s) "
                        f"from a peer{since}", count=got)
        self._sync_sums = {"pushed": [0, 0], "received": [0, 0]}
        self._sync_recorded_at = now

    def poll_sync(self) -> None:
        """Changes received by this node's sync server since the last call (its counters).

        The daemon calls it from its once-a-second periodic work, which runs in a keepalive
        tick anyway: a timer of its own would wake an idle node once more a second."""
        if self._replicator is None:
            return
        server = getattr(self._replicator, "server", None)
        stats: dict[str, int] = dict(getattr(server, "stats", None) or {})
        got = stats.get("changes_received", 0) - self._sync_seen.get("changes_received", 0)
        if got > 0:
            self._sync_sums["received"][0] += got
        self._sync_seen = stats
        self._record_sync_sums()
