"""Sub-second failover (issue 15): nonstop's shipped sub-second profile beside keepalived at
``advert_int 0.1``, in the same lab as the failover suite.

* crash and link down of the active node: the client's SIP outage (as in suite_failover);
* random loss on the heartbeat link (both nodes' switch ports drop that share of what the
  node sends: the lab has one link, heartbeats and SIP share it) for a while, with no real
  fault: every takeover in that window is a false one; both systems run at the same time,
  each in its own lab, so they see the same minutes of the machine;
* a busy machine: CPU hogs (busy loops at normal priority, two per node, in the nodes'
  namespaces) on both nodes of both systems at once; again every takeover is false.

nonstop runs ``nonstop/talk/subsecond/ha.cf``'s timing (authenticated: the talk's sha1
authkeys); keepalived runs VRRPv3 (VRRPv2 adverts are whole seconds) without authentication
(as the failover suite), advert_int 0.1 s, so it declares the master gone after 3 x 0.1 s + skew.

    sudo python3 -m bench.run --suites tight --out docs/TIGHT-BENCHMARKS.md
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from bench.framework import BenchContext, SuiteResult, Table, median, ratio, spread
from bench.suite_failover import FAULT_TITLES, _trial
from bench.systems import (
    HA_DIRECTIVES,
    NODES,
    Cluster,
    KeepalivedCluster,
    NonstopCluster,
    running_cluster,
)
from nonstop.lab import LabError, LabProcess
from nonstop.talk import talk_file

PROFILE = "subsecond/ha.cf"
TIMING = ("keepalive", "deadtime", "warntime")
# Set by the profile beside its timing; the bench runs them too when present.
EXTRA = ("nonstop_address_probe",)
KEEPALIVED_ADVERT = "0.1"
FAULTS = ("crash", "linkdown")
# (loss %, seconds): the 10 minutes at 20 %, and 50 % for a shorter while.
LOSS_WINDOWS = ((20, 600.0), (50, 120.0))
QUICK_LOSS_WINDOWS = ((20, 4.0), (50, 3.0))
HOG_S, QUICK_HOG_S = 60.0, 4.0
HOGS_PER_NODE = 2
AIM_S = 0.35


def profile_directives() -> dict[str, str | None]:
    """The timing directives of the shipped profile and the failover settings it adds (what the
    bench runs is what is shipped)."""
    found: dict[str, str | None] = {}
    for line in talk_file(PROFILE).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0] in TIMING + EXTRA:
            found[words[0]] = words[1]
    missing = [d for d in TIMING if d not in found]
    if missing:
        raise LabError(f"{PROFILE} sets no {', '.join(missing)}")
    return found


class TightNonstop(NonstopCluster):
    """nonstop with the sub-second profile's timing."""

    name = "nonstop (sub-second profile)"
    ha_directives: ClassVar[Mapping[str, str | None]] = {**HA_DIRECTIVES,
                                                         **profile_directives()}


class FastKeepalived(KeepalivedCluster):
    """keepalived with 0.1 s adverts."""

    name = f"keepalived 2.2.7 (advert_int {KEEPALIVED_ADVERT})"
    advert_int = KEEPALIVED_ADVERT
    vrrp_version = 3  # VRRPv2 adverts are whole seconds


SYSTEMS: dict[str, type[Cluster]] = {"nonstop": TightNonstop, "keepalived": FastKeepalived}
# A takeover in a window without a fault is a false one; nonstop also logs every death it
# declares (of the standby too, which moves nothing but is as wrong).
DEATH = "is dead"


@dataclass
class Samples:
    outage: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    # (system, window) -> (takeovers, deaths declared or None, seconds)
    windows: dict[tuple[str, str], tuple[int, int | None, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _count(cluster: Cluster, pattern: str, since: float) -> int:
    rx = re.compile(pattern)
    return sum(1 for node in NODES for line in cluster.watcher.lines(node, since)
               if rx.search(line))


def _window(clusters: dict[str, Cluster], label: str, seconds: float, samples: Samples,
            ctx: BenchContext) -> None:
    """Let ``seconds`` pass with the fault in force, then count what each system did."""
    for c in clusters.values():
        c.wait_settled(60.0)
    t = time.monotonic()
    # The window's length is the fault being injected, not a wait for a state.
    time.sleep(seconds)
    for key, c in clusters.items():
        takeovers = _count(c, c.acquire_pattern, t)
        deaths = _count(c, DEATH, t) if c.detects_death else None
        samples.windows[(key, label)] = (takeovers, deaths, seconds)
        extra = f", {deaths} death(s) declared" if deaths is not None else ""
        ctx.progress(f"{c.name} {label}: {takeovers} takeover(s){extra} in {seconds:.0f} s")


@contextlib.contextmanager
def _hogs(clusters: dict[str, Cluster]) -> Iterator[None]:
    procs: list[LabProcess] = []
    try:
        for c in clusters.values():
            for node in NODES:
                for _ in range(HOGS_PER_NODE):
                    procs.append(c.lab.spawn(node, [sys.executable, "-c", "while True: pass"],
                                             name="hog"))
        yield
    finally:
        for p in procs:
            p.stop(timeout=5.0)


def _recover(c: Cluster, key: str, label: str, samples: Samples) -> None:
    """After a window: one holder serving again, or both nodes restarted (noted)."""
    try:
        c.wait_settled(30.0)
    except LabError as exc:
        samples.failures.append(f"{c.name} after {label}: {exc}")
        c.restart_all()


def _faults(key: str, c: Cluster, ctx: BenchContext, samples: Samples) -> None:
    for fault in FAULTS:
        for i in range(1, ctx.trials + 1):
            try:
                trial = _trial(c, fault)
            except LabError as exc:
                samples.failures.append(f"{c.name} {fault} trial {i}: {exc}\n{c.log_tails(15)}")
                ctx.progress(f"FAILED {c.name} {fault} {i}")
                _recover(c, key, fault, samples)
                continue
            samples.outage.setdefault((key, fault), []).append(trial.outage)
            ctx.progress(f"{c.name} {fault} {i}/{ctx.trials}: {trial.outage:.3f} s")


def _tables(samples: Samples, systems: tuple[str, ...]) -> list[Table]:
    names = [SYSTEMS[k].name for k in systems]
    rows: list[list[str | float | int | None]] = []
    for fault in FAULTS:
        row: list[str | float | int | None] = [FAULT_TITLES[fault]]
        for key in systems:
            v = samples.outage.get((key, fault), [])
            row.append(f"{spread(v, 's')} (n={len(v)})" if v else "-")
        if len(systems) == 2:
            row.append(ratio(samples.outage.get((systems[0], fault), []),
                             samples.outage.get((systems[1], fault), [])))
        v = samples.outage.get(("nonstop", fault), [])
        row.append(("meets" if median(v) < AIM_S else "misses") if v else "-")
        rows.append(row)
    cols = ["fault", *names, *(["nonstop / keepalived"] if len(systems) == 2 else []),
            f"nonstop: median < {AIM_S} s"]
    outage = Table("Sub-second profile: client-visible SIP downtime", cols, rows,
                   note="As in the failover suite: longest gap between SIP answers (OPTIONS "
                        "every 20 ms). nonstop's heartbeats are signed (sha1), keepalived's "
                        "adverts are not.")
    wrows: list[list[str | float | int | None]] = []
    labels = sorted({label for (_k, label) in samples.windows},
                    key=lambda s: (not s.startswith("loss"), s))
    for label in labels:
        row2: list[str | float | int | None] = [label]
        for key in systems:
            got = samples.windows.get((key, label))
            if got is None:
                row2.append("-")
                continue
            takeovers, deaths, seconds = got
            cell = f"{takeovers} in {seconds / 60:.1f} min"
            if deaths is not None:
                cell += f" ({deaths} death(s) declared)"
            row2.append(cell)
        wrows.append(row2)
    windows = Table("Sub-second profile: false takeovers (no node failed)",
                    ["condition", *names], wrows,
                    note="Takeovers (nonstop: \"Acquiring resource group\"; keepalived: "
                         "\"Entering MASTER STATE\") logged by either node while the condition "
                         "held; both systems ran at the same time, each in its own lab. Loss: "
                         "each node's switch port drops that share of the frames the node "
                         f"sends. CPU hog: {HOGS_PER_NODE} busy loops per node on both nodes "
                         "of both systems (2 cores in all).")
    return [outage, windows]


def run(ctx: BenchContext, *, systems: tuple[str, ...] = ("nonstop", "keepalived"),
        ) -> SuiteResult:
    """Outages with the tight timing, then loss and CPU-hog windows counting false takeovers."""
    samples = Samples()
    losses = QUICK_LOSS_WINDOWS if ctx.quick else LOSS_WINDOWS
    hog_s = QUICK_HOG_S if ctx.quick else HOG_S
    try:
        with contextlib.ExitStack() as stack:
            clusters = {key: stack.enter_context(running_cluster(
                key, ctx.workdir, quick=ctx.quick, system=SYSTEMS[key])) for key in systems}
            for key, c in clusters.items():
                _faults(key, c, ctx, samples)
            for percent, seconds in losses:
                label = f"loss {percent} % on the heartbeat link"
                for c in clusters.values():
                    for node in NODES:
                        c.lab.set_loss(node, percent, "out")
                try:
                    _window(clusters, label, seconds, samples, ctx)
                finally:
                    for c in clusters.values():
                        c.lab.clear_faults()
                for key, c in clusters.items():
                    _recover(c, key, label, samples)
            with _hogs(clusters):
                _window(clusters, "CPU hog on both nodes", hog_s, samples, ctx)
            for key, c in clusters.items():
                _recover(c, key, "CPU hog", samples)
    except LabError as exc:
        samples.failures.append(str(exc))
        ctx.progress(f"FAILED: {str(exc).splitlines()[0]}")
    result = SuiteResult("Sub-second failover: the tight profile beside keepalived (issue 15)")
    result.tables.extend(_tables(samples, systems))
    prof = profile_directives()
    result.notes.append("nonstop's timing: " + ", ".join(f"{k} {prof[k]}" for k in TIMING + EXTRA
                                                   if k in prof)
                        + f" (src/nonstop/talk/{PROFILE}); keepalived: VRRPv3, "
                        f"advert_int {KEEPALIVED_ADVERT}, nopreempt, no authentication.")
    result.notes.extend(f"Failure: {f}" for f in samples.failures)
    return result
