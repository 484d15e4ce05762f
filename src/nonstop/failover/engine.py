"""The failover engine: carries out ``decide()``'s decisions with resource agents.

It decides nothing: what to do and when comes from ``decide()``, fed by the facts the engine
reports (``facts()``: states, epochs, running actions, failure times, pending requests).

Each group has at most one action (acquire, release, monitor restart) in flight, run as an
asyncio task so heartbeats never wait for a script. Resources start left to right and stop
right to left; a failed start releases the whole group and marks it failed here so the peer
takes it; a failed stop is retried and, if a resource may still be running, the group is
advertised as stop-failed so no peer takes it over while this node lives. Epochs and the
groups held are kept in the state directory so a restarted daemon knows its claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nonstop.config.errors import ConfigError, ConfigErrors
from nonstop.config.model import ClusterConfig, ResourceGroup, ResourceSpec
from nonstop.errors import InvalidValue
from nonstop.failover.decide import Action, Decision
from nonstop.failover.state import GroupAd, GroupState, NodeAd, check, haresources_digest
from nonstop.failover.statefile import GroupStateFile
from nonstop.failover.stopping import Reannounces, stop_all
from nonstop.failover.view import GroupInfo, LocalFacts
from nonstop.resources.base import Agent, AgentContext, ResourceError, ResourceState, build_agents
from nonstop.resources.watches import WatchedAddress
from nonstop.tasks import cancel_and_wait

log = logging.getLogger("nonstop.failover")

AgentFactory = Callable[[ResourceSpec, AgentContext], Agent]

STOP_RETRY_DELAY_S = 0.5
STOP_FAILED_RETRY_S = 5.0
MONITOR_RESTART_WINDOW_S = 60.0


@runtime_checkable
class ProbesAddress(Protocol):
    """An agent that can ask the link whether its address is free before adding it."""

    def probe_next_start(self, on: bool) -> None: ...

    async def probe_before_start(self) -> None: ...


@dataclass
class GroupRuntime:
    info: GroupInfo
    group: ResourceGroup
    agents: list[Agent]
    state: GroupState = GroupState.NONE
    epoch: int = 0
    task: asyncio.Task[None] | None = None
    failed_at: float | None = None
    failure: str = ""  # why the last start failed (the resource's error)
    needs_failback: bool = False
    found_incomplete: bool = False
    resource_states: list[str] = field(default_factory=list)
    last_reason: str = ""
    last_action: Action | None = None
    last_restart: dict[int, float] = field(default_factory=dict)
    # Resources that report "stopped" right after a successful start (the talk's master
    # script has no status action): their status says nothing, so they are not monitored.
    unmonitored: set[int] = field(default_factory=set)
    retry_at: float = 0.0
    # A decision that waits on peers: its reason, since when, and whether it was warned about.
    waiting: tuple[str, frozenset[str], float] | None = None
    wait_warned: bool = False
    # The address agents among ``agents`` (which never change): the once-a-second decision
    # asks for them, and isinstance against a runtime-checkable Protocol is slow.
    watched: list[WatchedAddress] = field(init=False)

    def __post_init__(self) -> None:
        self.watched = [a for a in self.agents if isinstance(a, WatchedAddress)]

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


class FailoverEngine:
    """Holds the resource groups of one node and carries out decisions."""

    def __init__(
        self,
        cfg: ClusterConfig,
        node: str,
        state_dir: Path,
        ctx: AgentContext,
        *,
        agent_factory: AgentFactory,
        clock: Callable[[], float],
        on_change: Callable[[], None],
        monitor_interval_s: float | None = None,
        stop_retry_delay_s: float = STOP_RETRY_DELAY_S,
        before_release: Callable[[bool, bool], Awaitable[str | None]] | None = None,
    ) -> None:
        self.cfg = cfg
        # A planned release (not a split brain's) calls it twice: ``(False, standby)`` before the
        # services stop (a reason returned keeps the group here, for a standby only), then
        # ``(True, False)`` once they have stopped, before the group is announced released (the
        # daemon's replication pushes the last changes, those written by the stop too).
        self.before_release = before_release
        # Why ``standby`` is refused now (the daemon's replication cannot push: the new holder
        # would overwrite this node's unsent changes), if it is.
        self.standby_refusal: Callable[[], str | None] | None = None
        self.stop_retry_delay_s = stop_retry_delay_s
        self.node = node
        self.state_file = state_dir / "groups.json"
        self.clock = clock
        self.on_change = on_change
        self.monitor_interval_s = monitor_interval_s
        self.digest = haresources_digest(cfg.groups)
        self.declines: set[int] = set()
        self.leaving = False  # release_all() ran: the declines are a shutdown's
        self.wants: set[int] = set()
        self.groups: list[GroupRuntime] = []
        self.seen_epochs: dict[int, int] = {}
        self._store = GroupStateFile(self.state_file, replicated=bool(cfg.ha.sync_config))
        saved = self._store.load()
        self.ended_holding = self._store.ended_holding  # see GroupStateFile.ended_holding
        problems: list[ConfigError] = []
        for i, g in enumerate(cfg.groups):
            agents, missing = build_agents(g.resources, agent_factory, ctx)
            problems += [ConfigError(g.loc, why) for why in missing]  # a script not there
            rt = GroupRuntime(GroupInfo(i, g.key, g.node), g, agents)
            rt.epoch = int(saved.get(g.key, {}).get("epoch", 0))
            self.seen_epochs[i] = max(rt.epoch, int(saved.get(g.key, {}).get("seen", 0)))
            rt.resource_states = ["unknown"] * len(agents)
            self.groups.append(rt)
        ConfigErrors.raise_if_any(problems)
        self._monitor_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ persistence

    def _save(self) -> None:
        """Persist epochs and states (off the event-loop thread, see GroupStateFile.save)."""
        self._store.save({
            rt.group.key: {
                "epoch": rt.epoch,
                "seen": self.seen_epochs.get(rt.info.index, 0),
                "state": rt.state.name,
            }
            for rt in self.groups
        })

    async def flush_state(self) -> None:
        """Wait until the last state change is on disk."""
        await self._store.flush()

    # ------------------------------------------------------------------ views

    def infos(self) -> tuple[GroupInfo, ...]:
        return tuple(rt.info for rt in self.groups)

    def local_ad(self) -> NodeAd:
        return NodeAd(
            {rt.info.index: GroupAd(rt.state, rt.epoch) for rt in self.groups},
            declines=frozenset(self.declines),
            wants=frozenset(self.wants),
            digest=self.digest,
            leaving=self.leaving,
        )

    def facts(self) -> LocalFacts:
        """What this node knows of its groups, for the cluster snapshot decide() reads."""
        return LocalFacts(
            ad=self.local_ad(),
            busy=frozenset(rt.info.index for rt in self.groups if rt.busy),
            needs_failback=frozenset(rt.info.index for rt in self.groups if rt.needs_failback),
            seen_epochs=dict(self.seen_epochs),
            start_failed_at={rt.info.index: rt.failed_at for rt in self.groups
                             if rt.state is GroupState.START_FAILED and rt.failed_at is not None},
            start_failure={rt.info.index: rt.failure for rt in self.groups
                           if rt.state is GroupState.START_FAILED and rt.failure},
            stop_retry_at={rt.info.index: rt.retry_at for rt in self.groups
                           if rt.state is GroupState.STOP_FAILED},
            incomplete=frozenset(rt.info.index for rt in self.groups if rt.found_incomplete),
        )

    def _set(self, rt: GroupRuntime, new: GroupState) -> None:
        if rt.state is new:
            return
        check(rt.state, new)
        rt.state = new
        self._save()
        self.on_change()

    # ------------------------------------------------------------------ start-up probe

    async def probe(self) -> None:
        """Find what this box still runs (a daemon killed while its box lived) before any
        decision: such a group is claimed again with its saved epoch, and decide() then
        keeps it or releases it to whoever took over since."""
        for rt in self.groups:
            states = [await a.status() for a in rt.agents]
            rt.resource_states = [s.value for s in states]
            running = [a.describe() for a, s in zip(rt.agents, states, strict=True)
                       if s is ResourceState.RUNNING]
            if running:
                log.critical(
                    "Resource group %s is active at start-up (%s running): claiming it again "
                    "with epoch %d until the cluster decides", rt.group.key, ", ".join(running),
                    rt.epoch)
                rt.found_incomplete = len(running) < len(rt.agents)
                self._set(rt, GroupState.HELD)

    # ------------------------------------------------------------------ decisions

    def apply(self, decisions: Iterable[Decision]) -> None:
        """Carry out decisions in order; each reason is logged when it changes (a wait at
        debug level unless it leaves the group down, anything else at info), kept for status."""
        raised = False
        for d in decisions:
            rt = self.groups[d.group]
            if d.reason != rt.last_reason:
                level = logging.DEBUG if d.action is Action.WAIT and not d.down else logging.INFO
                log.log(level, "decision: %s", d.reason)
            rt.last_reason, rt.last_action = d.reason, d.action
            self._note_wait(rt, d)
            if d.seen_epoch > self.seen_epochs.get(d.group, 0):
                self.seen_epochs[d.group] = d.seen_epoch
                raised = True
            self._execute(rt, d)
        if raised:
            self._save()

    def _note_wait(self, rt: GroupRuntime, d: Decision) -> None:
        """A wait on peers that outlasts deadtime is said once at warning level: the same
        reason for that long means the peer is not doing what we wait for."""
        if d.action in (Action.END_STANDBY, Action.END_TAKEOVER):
            return  # one-shot notes before the group's own decision
        if not d.waiting_on:
            rt.waiting, rt.wait_warned = None, False
            return
        now = self.clock()
        if rt.waiting is None or rt.waiting[0] != d.reason:
            rt.waiting, rt.wait_warned = (d.reason, d.waiting_on, now), False
            return
        waited = now - rt.waiting[2]
        if not rt.wait_warned and waited * 1000 > self.cfg.ha.deadtime_ms:
            rt.wait_warned = True
            log.warning("group %s has waited %.0f s for %s: %s", rt.group.key, waited,
                        ", ".join(sorted(d.waiting_on)), d.reason)

    def _execute(self, rt: GroupRuntime, d: Decision) -> None:
        i = rt.info.index
        if d.action is Action.END_STANDBY:
            self.declines.discard(i)
            self.on_change()
        elif d.action is Action.END_TAKEOVER:
            self.wants.discard(i)
            self.on_change()
        elif d.action is Action.FORGET_FAILURE:
            if rt.state is GroupState.START_FAILED:
                rt.failed_at = None
                self._set(rt, GroupState.NONE)
        elif rt.busy or d.action is Action.WAIT:
            return  # decide() never acts on a busy group; nothing runs twice at once
        elif d.action is Action.ACQUIRE:
            rt.needs_failback = d.needs_failback
            rt.found_incomplete = False
            self._spawn(rt, self._acquire(rt, d.epoch, probe=d.probe), acquiring=True)
        elif d.action is Action.RELEASE:
            rt.found_incomplete = False
            self._spawn(rt, self._release(rt, conflict=d.conflict), acquiring=False)
        elif d.action is Action.REANNOUNCE:
            self._reannounce(rt)

    def _spawn(self, rt: GroupRuntime, work: Coroutine[Any, Any, None], *,
               acquiring: bool) -> None:
        rt.task = asyncio.create_task(self._guarded(rt, work, acquiring=acquiring))
        rt.task.add_done_callback(lambda _t: self.on_change())

    async def _guarded(self, rt: GroupRuntime, work: Coroutine[Any, Any, None], *,
                       acquiring: bool) -> None:
        """Run an action; an unexpected error (a bug, a full disk) must not leave the group
        stuck half-started or half-stopped with nobody deciding again."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("group %s: unexpected error while %s", rt.group.key,
                          "acquiring" if acquiring else "releasing")
            if acquiring and rt.state in (GroupState.STARTING, GroupState.HELD):
                await self._give_up(rt)
            elif rt.state is GroupState.STOPPING:
                rt.retry_at = self.clock() + STOP_FAILED_RETRY_S
                self._set(rt, GroupState.STOP_FAILED)

    def held_addresses(self) -> list[WatchedAddress]:
        """The address agents of the groups held here (what the conflict watches watch)."""
        return [a for rt in self.groups if rt.state is GroupState.HELD for a in rt.watched]

    async def flush_notices(self, timeout_s: float) -> None:
        """Before the daemon exits: let agents that send notices in the background (MailTo's
        deferred mails) send them now, waiting at most ``timeout_s``."""
        drains = [drain() for rt in self.groups for agent in rt.agents
                  if callable(drain := getattr(agent, "drain", None))]
        if drains:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*drains), timeout_s)

    def stop_failed(self) -> list[str]:
        """Keys of the groups whose stop failed (a resource may still run)."""
        return [rt.group.key for rt in self.groups if rt.state is GroupState.STOP_FAILED]

    def _line(self, rt: GroupRuntime) -> str:
        return f"{rt.group.node} {' '.join(r.raw for r in rt.group.resources)}"

    async def _acquire(self, rt: GroupRuntime, epoch: int, *, probe: bool = False) -> None:
        for agent in rt.agents:
            if isinstance(agent, ProbesAddress):
                agent.probe_next_start(probe)
        rt.failure = ""
        rt.epoch = max(epoch, rt.epoch)
        i = rt.info.index
        self.seen_epochs[i] = max(self.seen_epochs.get(i, 0), rt.epoch)
        self._set(rt, GroupState.STARTING)
        log.info("Acquiring resource group: %s", self._line(rt))
        if probe and not await self._addresses_free(rt):
            return
        # Every resource's status check starts at once, and each start waits only for its
        # own check (and the starts to its left): the checks (a script each, a netlink query)
        # then overlap the starts instead of adding up, and a hand-off's clients wait for
        # them (issue 15). Starting one resource does not start another, so a check made
        # before the starts to its left still tells whether this one runs.
        checks = [asyncio.ensure_future(agent.status()) for agent in rt.agents]
        try:
            for i, agent in enumerate(rt.agents):
                if not await self._start_one(rt, i, agent, await checks[i]):
                    return
        finally:
            for check_task in checks:
                check_task.cancel()
            await asyncio.gather(*checks, return_exceptions=True)
        log.info("Resource group %s acquired (epoch %d).", rt.group.key, rt.epoch)
        self._set(rt, GroupState.HELD)

    async def _addresses_free(self, rt: GroupRuntime) -> bool:
        """A takeover from a lost node asks the link about every address before any resource
        starts: the talk's MailTo, left of its address, mailed 'Takeover in progress' and
        'Migrating resource away' for a peer that was only frozen, whose box still answered."""
        probing = [a for a in rt.agents if isinstance(a, ProbesAddress)]
        found = await asyncio.gather(*(a.probe_before_start() for a in probing),
                                     return_exceptions=True)
        error = next((e for e in found if isinstance(e, BaseException)), None)
        if error is None:
            return True
        rt.failure, rt.needs_failback, rt.failed_at = str(error), False, self.clock()
        log.error("%s", error)
        self._set(rt, GroupState.STOPPING)  # nothing to stop: the state machine's way there
        self._set(rt, GroupState.START_FAILED)
        return False

    async def _start_one(self, rt: GroupRuntime, i: int, agent: Agent,
                         found: ResourceState) -> bool:
        """Start resource ``i`` unless ``found`` running; False when the group was given up."""
        try:
            if found is ResourceState.RUNNING:
                rt.resource_states[i] = "running"
                return True
            log.info("Running %s start", agent.describe())
            await agent.start()
            rt.resource_states[i] = "running"
            if self.monitor_interval_s and await agent.status() is not ResourceState.RUNNING:
                if i not in rt.unmonitored:
                    log.info("monitor: %s does not report running after a successful start; "
                             "its status cannot be monitored", agent.describe())
                rt.unmonitored.add(i)
            return True
        except ResourceError as e:
            rt.resource_states[i] = "failed"
            rt.failure = str(e)
            log.error("%s", e)
            log.critical("Giving up resources due to failure of %s", agent.describe())
            await self._give_up(rt)
            return False

    async def _stop_all(self, rt: GroupRuntime, *, addresses_first: bool = False) -> list[Agent]:
        return await stop_all(rt.agents, rt.resource_states, self.stop_retry_delay_s,
                              addresses_first=addresses_first)

    async def _give_up(self, rt: GroupRuntime) -> None:
        """A start (or a monitor restart) failed: release the whole group and mark it failed
        here, so decide() sends it to another node."""
        self._set(rt, GroupState.STOPPING)
        failed = await self._stop_all(rt)
        rt.needs_failback = False
        if failed:
            rt.retry_at = self.clock() + STOP_FAILED_RETRY_S
            self._set(rt, GroupState.STOP_FAILED)
            return
        rt.failed_at = self.clock()
        self._set(rt, GroupState.START_FAILED)

    async def _release(self, rt: GroupRuntime, *, conflict: bool = False) -> None:
        hook = None if conflict else self.before_release
        if hook is not None:
            standby = rt.info.index in self.declines and not self.leaving
            why = await hook(False, standby)
            if why is not None and standby:
                self.declines.discard(rt.info.index)
                log.error("Standby of group %s refused, the group stays here: %s",
                          rt.group.key, why)
                return
        self._set(rt, GroupState.STOPPING)
        log.info("Releasing resource group: %s", self._line(rt))
        failed = await self._stop_all(rt, addresses_first=conflict)
        if hook is not None:
            await hook(True, False)
        rt.needs_failback = False
        if failed:
            names = ", ".join(a.describe() for a in failed)
            log.critical(
                "Resource STOP failure of %s: group %s stays marked stop-failed so that no "
                "other node takes it over while this one lives (retrying every %d s)",
                names, rt.group.key, STOP_FAILED_RETRY_S)
            rt.retry_at = self.clock() + STOP_FAILED_RETRY_S
            self._set(rt, GroupState.STOP_FAILED)
            return
        log.info("Resource group %s released.", rt.group.key)
        self._set(rt, GroupState.NONE)

    def _reannounce(self, rt: GroupRuntime) -> None:
        for agent in rt.agents:
            if isinstance(agent, Reannounces):
                agent.reannounce()

    # ------------------------------------------------------------------ monitoring

    def start_monitor(self) -> None:
        if self.monitor_interval_s and self._monitor_task is None:
            self._monitor_task = asyncio.create_task(self._monitor())

    async def set_monitor_interval(self, seconds: float | None) -> None:
        """A reloaded ``nonstop_monitor``: restart the monitor with the new interval (None
        stops it)."""
        await cancel_and_wait(self._monitor_task)
        self._monitor_task = None
        self.monitor_interval_s = seconds
        self.start_monitor()

    async def _monitor(self) -> None:
        assert self.monitor_interval_s is not None
        while True:
            await asyncio.sleep(self.monitor_interval_s)
            for rt in self.groups:  # a group found partly running waits for decide()
                if rt.state is GroupState.HELD and not rt.busy and not rt.found_incomplete:
                    self._spawn(rt, self._check_group(rt), acquiring=True)

    async def _check_group(self, rt: GroupRuntime) -> None:
        for i, agent in enumerate(rt.agents):
            if i in rt.unmonitored:
                continue
            st = await agent.status()
            rt.resource_states[i] = st.value
            if st is ResourceState.RUNNING:
                continue
            now = self.clock()
            last = rt.last_restart.get(i)
            recent = last is not None and now - last < MONITOR_RESTART_WINDOW_S
            if not recent:
                log.warning("monitor: %s of group %s is %s: restarting it once",
                            agent.describe(), rt.group.key, st.value)
                rt.last_restart[i] = now
                try:
                    await agent.start()
                    if await agent.status() is ResourceState.RUNNING:
                        rt.resource_states[i] = "running"
                        log.info("monitor: %s restarted", agent.describe())
                        continue
                    log.error("monitor: %s still not running after its restart",
                              agent.describe())
                except ResourceError as e:
                    log.error("monitor: restart failed: %s", e)
            else:
                log.error("monitor: %s failed again within %d s of its restart",
                          agent.describe(), MONITOR_RESTART_WINDOW_S)
            log.critical("monitor: moving group %s to another node", rt.group.key)
            await self._give_up(rt)
            return

    # ------------------------------------------------------------------ admin and shutdown

    def select(self, which: str) -> set[int]:
        if which == "all":
            return {rt.info.index for rt in self.groups}
        if which == "local":
            return {rt.info.index for rt in self.groups if rt.group.node == self.node}
        if which in ("foreign", "failback"):
            return {rt.info.index for rt in self.groups if rt.group.node != self.node}
        raise InvalidValue(f"expected all, local or foreign, not {which!r}")

    def standby(self, which: str) -> list[str]:
        """``nonstop standby``: give the selected groups we hold to another node."""
        sel = self.select(which)
        why = self.standby_refusal() if self.standby_refusal is not None else None
        if why is not None and any(self.groups[i].state is GroupState.HELD for i in sel):
            raise InvalidValue(f"standby refused: {why}")
        self.declines |= sel
        self.wants -= sel
        log.info("Going standby [%s].", which)
        self.on_change()
        return [self.groups[i].group.key for i in sorted(sel)]

    def cancel_standby(self, which: str) -> None:
        """The standby of the selected groups could not be done (a Heartbeat peer did not
        agree in time): they stay here, as Heartbeat cancels its standby request."""
        self.declines -= self.select(which)
        self.on_change()

    def takeover(self, which: str) -> list[str]:
        """``nonstop takeover``: ask for the selected groups (mirror of standby)."""
        sel = self.select(which)
        self.wants |= {i for i in sel if self.groups[i].state is not GroupState.HELD}
        self.declines -= sel
        for rt in (self.groups[i] for i in sel if self.groups[i].state is GroupState.START_FAILED):
            rt.failed_at = None  # asked after its start failed here: the cause is fixed, retry
            self._set(rt, GroupState.NONE)
        log.info("Taking over [%s].", which)
        self.on_change()
        return [self.groups[i].group.key for i in sorted(sel)]

    async def release_all(self) -> None:
        """Graceful shutdown: decline everything, wait for running actions, release what we
        hold (right to left)."""
        log.info("Giving up all HA resources.")
        self.leaving = True
        self.declines |= {rt.info.index for rt in self.groups}
        self.wants.clear()
        self.on_change()
        await cancel_and_wait(self._monitor_task)
        for rt in self.groups:
            if rt.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await rt.task
        for rt in self.groups:
            if rt.state.may_run:
                self._spawn(rt, self._release(rt), acquiring=False)
        waiting = [rt.task for rt in self.groups if rt.task is not None and not rt.task.done()]
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        if not self.stop_failed():
            log.info("All HA resources relinquished.")
        await self.flush_state()

    def snapshot(self, holders: dict[int, str]) -> list[dict[str, Any]]:
        return [
            {
                "key": rt.group.key,
                "preferred_node": rt.group.node,
                "holder": holders.get(rt.info.index),
                "local_state": rt.state.name.lower(),
                # The group's counter as this node knows it: a node that never held the group
                # shows the holder's (the highest seen), not its own 0 beside "held by".
                "epoch": max(rt.epoch, self.seen_epochs.get(rt.info.index, 0)),
                "action": rt.last_action.value if rt.last_action else None,
                "reason": rt.last_reason,
                "waiting": None if rt.waiting is None else {
                    "on": sorted(rt.waiting[1]),
                    "since_s": round(self.clock() - rt.waiting[2], 3),
                },
                "resources": [
                    {"resource": a.describe(), "state": s}
                    for a, s in zip(rt.agents, rt.resource_states, strict=True)
                ],
            }
            for rt in self.groups
        ]
