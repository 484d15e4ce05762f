"""nonstop's planned hand-offs (issue 15): how long the client waits when the service moves
on purpose, with the talk's files in the failover suite's lab.

* planned: ``nonstop standby`` in the active node's box (as in the failover suite);
* sigterm: the active node's daemon gets SIGTERM (a reboot or ``systemctl stop``): it releases,
  tells the peer, and leaves; it is started again as the standby afterwards;
* failback: ``auto_failback on``: the preferred node (vpbx1-1) crashes, the other node takes
  over, and when vpbx1-1 is back and active it is handed the group back: the outage measured
  is that take-back's, from the last answer of vpbx1-2 to the first of vpbx1-1.

Also the milestones from the logs for each (old node starts releasing, new node starts
acquiring, first answer), so a regression shows where it happened.

    sudo python3 -m bench.run --suites handoff --out docs/HANDOFF-BENCHMARKS.md
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from typing import ClassVar

from bench.framework import BenchContext, SuiteResult, Table, median, spread
from bench.measure import longest_silence
from bench.suite_failover import _trial
from bench.systems import (
    HA_DIRECTIVES,
    N1,
    N2,
    NonstopCluster,
    other,
    running_cluster,
    steady,
)
from nonstop.lab import LabError

AIMS = {"planned": 0.05, "sigterm": 0.05, "failback": 0.1}
TITLES = {
    "planned": "planned switchover (`nonstop standby`)",
    "sigterm": "SIGTERM to the active node's daemon",
    "failback": "auto_failback take-back (preferred node back)",
}


# The client probes every 5 ms here, not every 20 ms as in the failover suite: a hand-off's
# gap is a few tens of ms, and a 20 ms probe rounds it up to the next multiple of 20 ms (the
# run before this one: five SIGTERM trials at 40 ms and five at 60 ms made a 51 ms median).
PROBE_INTERVAL_S = 0.005


class HandoffNonstop(NonstopCluster):
    """The talk's files, the client probing every PROBE_INTERVAL_S."""

    probe_interval_s = PROBE_INTERVAL_S


class FailbackNonstop(HandoffNonstop):
    """The talk's files with ``auto_failback on``."""

    name = "nonstop (auto_failback on)"
    ha_directives: ClassVar[Mapping[str, str | None]] = {**HA_DIRECTIVES, "auto_failback": "on"}


def _sigterm(cluster: NonstopCluster) -> tuple[float, dict[str, float]]:
    active = cluster.wait_settled(60.0)
    peer = other(active)
    proc = cluster.daemons.pop(active)
    t = time.monotonic()
    proc.signal(signal.SIGTERM)
    first = cluster.probes.wait_answer(peer, t, 30.0)
    assert first.answered is not None
    outage = longest_silence(cluster.probes.refresh(), t, first.answered)
    marks = _marks(cluster, active, peer, t, first.answered)
    proc.wait(30.0)
    again = time.monotonic()
    cluster.start(active)
    cluster.watcher.wait(*cluster.joined_pattern(active), again, 60.0)
    steady(again, cluster.steady_s)
    return outage, marks


def _failback(cluster: NonstopCluster) -> tuple[float, dict[str, float]]:
    """vpbx1-1 (preferred) crashes, vpbx1-2 takes over, vpbx1-1 boots again and is handed the
    group back (after a graceful leave it is handed back the same way: the leaving node says
    so in its status, ``nsleave``)."""
    if cluster.wait_settled(60.0) != N1:
        raise LabError(f"{cluster.name}: the group is not on its preferred node {N1}")
    cluster.daemons.pop(N1, None)
    t = cluster.crash(N1)
    cluster.probes.wait_answer(N2, t, 30.0)
    steady(t, cluster.steady_s)
    back = time.monotonic()
    cluster.start(N1)
    first = cluster.probes.wait_answer(N1, back, 60.0)
    assert first.answered is not None
    outage = longest_silence(cluster.probes.refresh(), back, first.answered)
    # The take-back starts when vpbx1-2 starts releasing; milestones count from there.
    start = cluster.watcher.first(N2, cluster.release_pattern, back) or back
    marks = _marks(cluster, N2, N1, start, first.answered)
    steady(first.answered, cluster.steady_s)
    return outage, marks


def _marks(cluster: NonstopCluster, old: str, new: str, t: float,
           answered: float) -> dict[str, float]:
    marks: dict[str, float] = {}
    released = cluster.watcher.first(old, cluster.release_pattern, t)
    if released is not None:
        marks["old node starts releasing"] = released - t
    acquiring = cluster.watcher.first(new, cluster.acquire_pattern, t)
    if acquiring is not None:
        marks["new node starts acquiring"] = acquiring - t
    marks["first answer from the new node"] = answered - t
    return marks


def run(ctx: BenchContext) -> SuiteResult:
    outages: dict[str, list[float]] = {}
    marks: dict[tuple[str, str], list[float]] = {}
    failures: list[str] = []

    def keep(kind: str, outage: float, got: dict[str, float]) -> None:
        outages.setdefault(kind, []).append(outage)
        for step, value in got.items():
            marks.setdefault((kind, step), []).append(value)
        ctx.progress(f"nonstop {kind} {len(outages[kind])}/{ctx.trials}: {outage:.3f} s")

    for kind in ("planned", "sigterm", "failback"):
        system = FailbackNonstop if kind == "failback" else HandoffNonstop
        try:
            with running_cluster("nonstop", ctx.workdir / kind, quick=ctx.quick,
                                 system=system) as cluster:
                assert isinstance(cluster, NonstopCluster)
                for i in range(1, ctx.trials + 1):
                    try:
                        if kind == "planned":
                            trial = _trial(cluster, "planned")
                            keep(kind, trial.outage, trial.milestones)
                        elif kind == "sigterm":
                            keep(kind, *_sigterm(cluster))
                        else:
                            keep(kind, *_failback(cluster))
                    except LabError as exc:
                        failures.append(f"{kind} trial {i}: {exc}\n{cluster.log_tails(15)}")
                        ctx.progress(f"FAILED nonstop {kind} {i}")
                        cluster.restart_all()
        except LabError as exc:
            failures.append(f"{kind}: {exc}")
    rows: list[list[str | float | int | None]] = []
    for kind, title in TITLES.items():
        v = outages.get(kind, [])
        verdict = ("meets" if median(v) < AIMS[kind] else "misses") if v else "-"
        rows.append([title, f"{spread(v, 's')} (n={len(v)})" if v else "-",
                     f"< {AIMS[kind]} s: {verdict}"])
    mrows: list[list[str | float | int | None]] = [
        [TITLES[kind], step, spread(v, "s")] for (kind, step), v in marks.items()]
    result = SuiteResult("Hand-offs: planned switchover, SIGTERM, auto_failback (issue 15)")
    result.tables.append(Table(
        "Client-visible SIP downtime of a hand-off (nonstop)", ["hand-off", "min / median / max",
                                                                 "aim (median)"], rows,
        note=f"Longest gap between SIP answers (OPTIONS every {PROBE_INTERVAL_S * 1000:.0f} ms, "
             "the failover suite's client probes every 20 ms), so a gap is seen in steps of "
             f"about {PROBE_INTERVAL_S * 1000:.0f} ms. The talk's files; auto_failback on for "
             "the take-back."))
    result.tables.append(Table(
        "Where the time goes (from the logs; from the command, the signal, or for the take-back "
        "from the moment vpbx1-2 starts releasing)", ["hand-off", "milestone",
                                                      "min / median / max"], mrows))
    result.notes.append(
        "The take-back follows a crash of vpbx1-1. After a graceful leave (SIGTERM) of the "
        "preferred node the group is handed back too when it returns: its last status says it "
        "is leaving (nsleave=1), so the peer's takeover is one that must fail back.")
    result.notes.extend(f"Failure: {f}" for f in failures)
    return result
