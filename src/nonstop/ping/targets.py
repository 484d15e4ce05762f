"""Ping nodes and ping groups: the pure up/dead state machine (spec §1.3 ``ping``, ``deadping``).

Heartbeat treats each ``ping <ip>`` as a pseudo-node named by its address, and each
``ping_group <name> <ip>...`` as one pseudo-node named ``<name>`` that is heard whenever any of its
members answers. A pseudo-node is declared dead after ``deadping`` without an answer, exactly as a
node after ``deadtime``; before its first answer the limit is ``initdead`` when one is given (the
whole cluster starts with the longer limit), else ``deadping``. Its status is ``ping`` while it
answers (``cl_status nodestatus`` prints ``ping``), ``dead`` after the timeout, ``init`` before
either. The link of a pseudo-node is named like the node, so Heartbeat logs
``Link 192.168.1.1:192.168.1.1 up.``.

Pure: times come in as ``now`` (seconds, monotonic at the edge); nothing here sends a packet.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nonstop.errors import InvalidValue, NonstopError


class PingStatus(enum.Enum):
    """A ping node's status, as ``cl_status nodestatus`` prints it."""

    INIT = "init"  # configured, never answered, not yet timed out
    PING = "ping"  # answering
    DEAD = "dead"  # no answer for deadping (initdead before the first answer)


class IllegalPingTransition(NonstopError, RuntimeError):
    """The tracker was driven into a transition its table does not allow (a bug)."""


#: Allowed transitions; a ping node never goes back to init.
TRANSITIONS: dict[PingStatus, frozenset[PingStatus]] = {
    PingStatus.INIT: frozenset({PingStatus.PING, PingStatus.DEAD}),
    PingStatus.PING: frozenset({PingStatus.DEAD}),
    PingStatus.DEAD: frozenset({PingStatus.PING}),
}


@dataclass(frozen=True)
class PingTarget:
    """One ``ping`` address or one ``ping_group``: what is pinged and the name it goes by."""

    name: str
    members: tuple[ipaddress.IPv4Address, ...]
    group: bool

    @classmethod
    def node(cls, ip: str | ipaddress.IPv4Address) -> PingTarget:
        """A ``ping <ip>`` pseudo-node; ValueError for something that is not an IPv4 address."""
        addr = ipaddress.IPv4Address(ip)
        return cls(str(addr), (addr,), group=False)

    @classmethod
    def ping_group(cls, name: str, ips: Sequence[str | ipaddress.IPv4Address]) -> PingTarget:
        """A ``ping_group <name> <ip>...``; ValueError without members or with a bad address."""
        if not name or any(c.isspace() for c in name):
            raise InvalidValue(f"bad ping group name {name!r}")
        if not ips:
            raise InvalidValue(f"ping group {name} has no members")
        members = tuple(dict.fromkeys(ipaddress.IPv4Address(ip) for ip in ips))
        return cls(name, members, group=True)

    @property
    def kind(self) -> str:
        """``group`` or ``node``."""
        return "group" if self.group else "node"


@dataclass(frozen=True)
class PingLate:
    """An answer came more than ``warntime`` after the one before it (Heartbeat warns)."""

    target: str
    interval_ms: int
    over_deadtime: bool  # the gap exceeded the cluster's deadtime: Heartbeat says CRIT

    @property
    def lines(self) -> tuple[tuple[int, str], ...]:
        """Heartbeat 3.0.6's line for it."""
        text = f"Late heartbeat: Node {self.target}: interval {self.interval_ms} ms"
        if self.over_deadtime:
            return ((logging.CRITICAL, f"{text} (> deadtime)"),)
        return ((logging.WARNING, text),)


@dataclass(frozen=True)
class PingChanged:
    """A ping node changed status; ``lines`` are Heartbeat's log lines for it, in its order."""

    target: str
    old: PingStatus
    new: PingStatus
    silence_ms: int | None  # for a death: how long nothing was heard (since start if never)
    late: PingLate | None = None  # for a return: the late answer that brought it back

    @property
    def lines(self) -> tuple[tuple[int, str], ...]:
        """(logging level, text) pairs, worded and ordered as Heartbeat 3.0.6 logs them.

        On a return after more than deadtime Heartbeat also logs a spurious second
        ``node X: is dead`` right after the late line; that one is left out here, since a
        script counting deaths would count one that did not happen.
        """
        link = f"Link {self.target}:{self.target}"
        if self.new is PingStatus.PING:
            late = self.late.lines if self.late is not None else ()
            return ((logging.INFO, f"{link} up."), *late,
                    (logging.INFO, f"Status update for node {self.target}: status ping"))
        return ((logging.WARNING, f"node {self.target}: is dead"),
                (logging.INFO, f"{link} dead."))


PingEvent = PingChanged | PingLate


@dataclass(frozen=True)
class PingTargetView:
    """One ping node in a snapshot."""

    name: str
    kind: str
    members: tuple[str, ...]
    status: PingStatus
    last_reply_age_s: float | None  # None: never answered
    answering: tuple[str, ...]  # members heard within deadping

    def as_dict(self) -> dict[str, Any]:
        """The documented status keys of one ping node."""
        return {
            "name": self.name,
            "kind": self.kind,
            "members": list(self.members),
            "status": self.status.value,
            "last_reply_s": (None if self.last_reply_age_s is None
                             else round(self.last_reply_age_s, 3)),
            "answering": list(self.answering),
        }


@dataclass(frozen=True)
class PingView:
    """Every ping node at one instant: what decide() and status read."""

    targets: tuple[PingTargetView, ...]

    @property
    def reachable(self) -> frozenset[str]:
        """Names of the ping nodes/groups that answer (status ``ping``)."""
        return frozenset(t.name for t in self.targets if t.status is PingStatus.PING)

    @property
    def count(self) -> int:
        """How many ping nodes/groups answer: what a node advertises to its peers for ipfail."""
        return len(self.reachable)

    def as_dict(self) -> dict[str, Any]:
        """Status keys: ``ping_nodes`` (list), ``ping_reachable`` and ``ping_total`` (ints)."""
        return {
            "ping_nodes": [t.as_dict() for t in self.targets],
            "ping_reachable": self.count,
            "ping_total": len(self.targets),
        }


class _State:
    __slots__ = ("heard", "last", "status", "target")

    def __init__(self, target: PingTarget) -> None:
        self.target = target
        self.status = PingStatus.INIT
        self.last: float | None = None  # last answer from any member
        self.heard: dict[ipaddress.IPv4Address, float] = {}


class PingTracker:
    """Ping nodes' states from echo replies and the passing of time.

    ``reply(addr, now)`` for each echo reply from ``addr``; ``tick(now)`` at least at
    :meth:`next_wakeup`. Both return the events to log (``.lines``) and act on: status
    changes (:class:`PingChanged`) and, from ``reply``, late answers (:class:`PingLate`).
    """

    def __init__(self, targets: Iterable[PingTarget], *, deadping_ms: int, now: float,
                 initdead_ms: int | None = None, deadtime_ms: int | None = None,
                 warntime_ms: int | None = None) -> None:
        self._states: dict[str, _State] = {}
        for target in targets:
            if target.name in self._states:
                raise InvalidValue(f"ping node {target.name} configured twice")
            self._states[target.name] = _State(target)
        if deadping_ms <= 0:
            raise InvalidValue("deadping must be > 0")
        self.deadping_ms = deadping_ms
        self.initdead_ms = max(initdead_ms or 0, deadping_ms)
        # Late answers are judged against the cluster's warntime and deadtime, not deadping
        # (as Heartbeat does: a 1.6 s gap with deadping 1 s and deadtime 2 s is only WARN).
        self.deadtime_ms = deadping_ms if deadtime_ms is None else deadtime_ms
        self.warntime_ms = self.deadtime_ms // 2 if warntime_ms is None else warntime_ms
        self._start = now
        self._by_addr: dict[ipaddress.IPv4Address, list[_State]] = {}
        for state in self._states.values():
            for member in state.target.members:
                self._by_addr.setdefault(member, []).append(state)

    @property
    def addresses(self) -> tuple[ipaddress.IPv4Address, ...]:
        """Every address to ping, once each, in configuration order."""
        return tuple(self._by_addr)

    def _limit_s(self, state: _State) -> float:
        return (self.deadping_ms if state.last is not None else self.initdead_ms) / 1000

    def _dead_at(self, state: _State) -> float:
        return (state.last if state.last is not None else self._start) + self._limit_s(state)

    def next_wakeup(self) -> float:
        """The earliest time a ping node can time out (infinity when none can)."""
        times = [self._dead_at(s) for s in self._states.values()
                 if s.status is not PingStatus.DEAD]
        return min(times, default=float("inf"))

    def _move(self, state: _State, new: PingStatus, silence_ms: int | None,
              late: PingLate | None = None) -> PingChanged:
        old = state.status
        if new not in TRANSITIONS[old]:
            raise IllegalPingTransition(f"ping node {state.target.name}: {old.value} -> "
                                        f"{new.value}")
        state.status = new
        return PingChanged(state.target.name, old, new, silence_ms, late)

    def reply(self, addr: str | ipaddress.IPv4Address, now: float) -> list[PingEvent]:
        """An echo reply from ``addr`` arrived; replies from other addresses are ignored."""
        try:
            ip = ipaddress.IPv4Address(addr)
        except ValueError:
            return []
        events: list[PingEvent] = []
        for state in self._by_addr.get(ip, []):
            state.heard[ip] = now
            previous = state.last
            state.last = now if previous is None else max(previous, now)
            # Heartbeat measures the first gap from its own start, so a ping node that is slow
            # to answer at all is late too.
            gap = round((now - (self._start if previous is None else previous)) * 1000)
            late = None
            if gap > self.warntime_ms:
                late = PingLate(state.target.name, gap, gap > self.deadtime_ms)
            if state.status is not PingStatus.PING:
                events.append(self._move(state, PingStatus.PING, None, late))
            elif late is not None:
                events.append(late)
        return events

    def tick(self, now: float) -> list[PingChanged]:
        """Declare dead every ping node silent for longer than its limit."""
        events: list[PingChanged] = []
        for state in self._states.values():
            if state.status is PingStatus.DEAD or now <= self._dead_at(state):
                continue
            since = state.last if state.last is not None else self._start
            events.append(self._move(state, PingStatus.DEAD, round((now - since) * 1000)))
        return events

    def view(self, now: float) -> PingView:
        """A snapshot for decide() and status."""
        limit = self.deadping_ms / 1000
        views = []
        for state in self._states.values():
            answering = tuple(str(ip) for ip in state.target.members
                              if ip in state.heard and now - state.heard[ip] <= limit)
            views.append(PingTargetView(
                name=state.target.name,
                kind=state.target.kind,
                members=tuple(str(ip) for ip in state.target.members),
                status=state.status,
                last_reply_age_s=None if state.last is None else max(0.0, now - state.last),
                answering=answering,
            ))
        return PingView(tuple(views))
