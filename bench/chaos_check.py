"""The invariants of a chaos run, checked from outside (pure: samples and probes in, verdicts out).

Inputs, all on CLOCK_MONOTONIC:

* samples: every 10 ms, which nodes had the virtual IP configured (read over netlink);
* conditions: which faults were in force, as the harness injected and lifted them;
* probes: the SIP client's record (OPTIONS every 20 ms to the virtual IP).

Invariants (issue 12, item 6):

1. never two holders of the VIP among nodes that hear each other for more than 1 s; two nodes
   hear each other unless a cable of one of them is pulled or one of their boxes is down (a
   stopped daemon, loss or a hog do not cut the wire: the nodes still hear each other);
2. never a takeover (a node starting to hold the VIP) by a node that reaches no ping node while
   its peer does; a node reaches the ping node unless its cable is pulled, its uplink is cut
   or its box is down;
3. service answered at the VIP at least 99 % of the run outside the detection windows: the
   deadtime after each fault that needs detecting (daemon killed or stopped, box crashed, cable
   pulled or plugged back, uplink cut or restored). The client counts as unserved during every
   gap between two answers longer than SIP's T1 (0.5 s: a phone's first retransmission).
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nonstop.lab.faults import ChaosFault, ChaosKind
from nonstop.lab.outage import Probe

DUAL_LIMIT_S = 1.0
T1_S = 0.5
AVAILABILITY_GOAL = 0.99
# Faults whose effect on the cluster must first be detected (window at injection)...
DETECTED_AT_START: frozenset[ChaosKind] = frozenset({"kill", "stop", "crash", "cable", "uplink"})
# ...and those whose end must be detected as well (the nodes meet again).
DETECTED_AT_END: frozenset[ChaosKind] = frozenset({"cable", "uplink"})

Condition = tuple[str, str]  # (what, node): ("cable", n), ("uplink", n), ("down", n)...


@dataclass(frozen=True)
class Sample:
    """Which nodes held the VIP at ``t``."""

    t: float
    holders: frozenset[str]


@dataclass(frozen=True)
class Injected:
    """A fault as injected: the schedule's entry, the node it hit, when (monotonic)."""

    fault: ChaosFault
    node: str
    at: float
    end: float
    note: str = ""


@dataclass
class Conditions:
    """The faults in force over time, as the harness changed them."""

    times: list[float] = field(default_factory=list)
    states: list[frozenset[Condition]] = field(default_factory=list)

    def change(self, t: float, add: Iterable[Condition] = (),
               remove: Iterable[Condition] = ()) -> None:
        """Record that at ``t`` the conditions ``add`` began and ``remove`` ended."""
        current = self.states[-1] if self.states else frozenset()
        self.times.append(t)
        self.states.append((current - frozenset(remove)) | frozenset(add))

    def at(self, t: float) -> frozenset[Condition]:
        """The conditions in force at ``t``."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.states[i] if i >= 0 else frozenset()


def hear(a: str, b: str, conds: frozenset[Condition]) -> bool:
    """Whether nodes ``a`` and ``b`` hear each other under ``conds``."""
    return not any((what, n) in conds for what in ("cable", "down") for n in (a, b))


def reaches_ping(node: str, conds: frozenset[Condition]) -> bool:
    """Whether ``node`` reaches the ping node under ``conds``."""
    return not any((what, node) in conds for what in ("cable", "uplink", "down"))


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which, from ``start`` to ``end``, and what was seen."""

    invariant: str
    start: float
    end: float
    detail: str


def dual_holders(samples: Sequence[Sample], conditions: Conditions, nodes: tuple[str, str],
                 ) -> list[Violation]:
    """Invariant 1: runs of samples with both nodes holding while they hear each other, longer
    than :data:`DUAL_LIMIT_S` (a run ends at the first sample where that no longer holds)."""
    found: list[Violation] = []
    start: float | None = None
    for sample in samples:
        bad = (len(sample.holders) >= 2 and hear(*nodes, conditions.at(sample.t)))
        if bad and start is None:
            start = sample.t
        elif not bad and start is not None:
            if sample.t - start > DUAL_LIMIT_S:
                found.append(Violation("two holders that hear each other", start, sample.t,
                                       f"{sample.t - start:.2f} s"))
            start = None
    if start is not None and samples and samples[-1].t - start > DUAL_LIMIT_S:
        found.append(Violation("two holders that hear each other", start, samples[-1].t,
                               f"{samples[-1].t - start:.2f} s, still at the end of the run"))
    return found


def blind_takeovers(samples: Sequence[Sample], conditions: Conditions,
                    nodes: tuple[str, str]) -> list[Violation]:
    """Invariant 2: a node starts holding the VIP while it reaches no ping node and its peer
    does."""
    found: list[Violation] = []
    for prev, cur in itertools.pairwise(samples):
        for node in cur.holders - prev.holders:
            if node not in nodes:
                continue
            peer = nodes[1] if node == nodes[0] else nodes[0]
            conds = conditions.at(cur.t)
            if not reaches_ping(node, conds) and reaches_ping(peer, conds):
                found.append(Violation(
                    "takeover by a node that reaches no ping node while its peer does",
                    cur.t, cur.t, f"{node} took the VIP; in force: {_fmt_conds(conds)}"))
    return found


def _fmt_conds(conds: frozenset[Condition]) -> str:
    return ", ".join(f"{what} {node}" for what, node in sorted(conds)) or "nothing"


def merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, non-overlapping union of the intervals."""
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _overlap(a: tuple[float, float], spans: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(a[1], hi) - max(a[0], lo)) for lo, hi in spans)


def detection_windows(injected: Iterable[Injected], deadtime: float,
                      ) -> list[tuple[float, float]]:
    """The deadtime after each fault (and each end of a fault) that needs detecting."""
    spans: list[tuple[float, float]] = []
    for item in injected:
        if item.fault.kind in DETECTED_AT_START:
            spans.append((item.at, item.at + deadtime))
        if item.fault.kind in DETECTED_AT_END:
            spans.append((item.end, item.end + deadtime))
    return merge(spans)


@dataclass(frozen=True)
class Availability:
    """Service at the VIP over a run, outside the detection windows."""

    counted_s: float      # run length minus the windows
    unserved_s: float     # gaps longer than T1 outside the windows
    gaps: tuple[tuple[float, float, float], ...]  # those gaps: start, end, seconds counted

    @property
    def ratio(self) -> float:
        """Share of the counted time the client was served."""
        return 1.0 - self.unserved_s / self.counted_s if self.counted_s > 0 else 0.0


def availability(probes: Sequence[Probe], start: float, end: float,
                 windows: Sequence[tuple[float, float]]) -> Availability:
    """Unserved time: every gap between consecutive answers (and from ``start`` / to ``end``)
    longer than :data:`T1_S`, less its part inside the windows."""
    answers = sorted(p.answered for p in probes
                     if p.answered is not None and start <= p.answered <= end)
    points = [start, *answers, end]
    inside = [(max(lo, start), min(hi, end)) for lo, hi in windows if hi > start and lo < end]
    counted = (end - start) - sum(hi - lo for lo, hi in inside)
    gaps: list[tuple[float, float, float]] = []
    unserved = 0.0
    for a, b in itertools.pairwise(points):
        if b - a > T1_S:
            outside = (b - a) - _overlap((a, b), inside)
            if outside > 0:
                gaps.append((a, b, outside))
                unserved += outside
    return Availability(counted, unserved, tuple(gaps))


def fault_outage(probes: Sequence[Probe], at: float, until: float) -> tuple[float, bool]:
    """The client-visible outage of a fault injected at ``at``: the longest time without an
    answer from the fault up to ``until`` (the next fault or the end of the run), starting at
    the last answer before ``at`` (at ``at`` itself when the client had already gone unserved
    for more than T1: that earlier silence belongs to what came before) and ending at
    ``until`` if no answer came after the last one; True with it when no answer came at all
    after ``at`` before ``until``."""
    answers = sorted(p.answered for p in probes if p.answered is not None)
    i = bisect.bisect_right(answers, at)
    before = answers[i - 1] if i > 0 and at - answers[i - 1] <= T1_S else at
    after = [a for a in answers[i:] if a <= until]
    points = [before, *after, until]
    return max(b - a for a, b in itertools.pairwise(points)), not after


def spread(values: Sequence[float]) -> str:
    """'min / median / max s' (one value alone; '-' for none)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return (f"{min(values):.2f} / {statistics.median(values):.2f} / "
            f"{max(values):.2f} s")
