"""Chaos run (issue 12, item 6): random faults on a two-node cluster with a ping node and the SIP
client, for nonstop and for Heartbeat 3.0.6 under the same seeded schedule; invariants checked
every 10 ms from outside; docs/RELIABILITY.md written with the results.

    sudo python3 -m bench.chaos [--duration 600] [--seed 12] [--systems nonstop,heartbeat]
                                [--nonstop-config plain|ipfail] [--out docs/RELIABILITY.md]
    sudo python3 -m bench.chaos --quick --systems nonstop --out /tmp/x.md --json /tmp/x.json

Take the benchmark lock for a measured run: ``flock /tmp/nonstop-bench.lock python3 -m ...``.

The lab: the talk's cluster (vpbx1-1, vpbx1-2, VIP 198.18.0.10, kamailio for Asterisk) on one
switch, the SIP client (198.18.0.100) probing the VIP every 20 ms, and ``gw`` (198.18.0.3), a
host that only answers ping: the sites' router, named as the ping node. A node's uplink cut
drops its frames to and from gw and the client; the heartbeat path between the nodes stays.

Heartbeat runs with the ipfail lines real sites use (``ping``, ``respawn hacluster ipfail``,
``apiauth ipfail``). nonstop's config variant is selectable: ``plain`` (the talk's ha.cf) or
``ipfail`` (the same lines as Heartbeat's, which turn on nonstop's built-in ipfail).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.chaos_check import (
    AVAILABILITY_GOAL,
    DUAL_LIMIT_S,
    T1_S,
    Availability,
    Conditions,
    Injected,
    Sample,
    Violation,
    availability,
    blind_takeovers,
    detection_windows,
    dual_holders,
    fault_outage,
    spread,
)
from bench.machine import busy_percent, cpu_times, describe, loadavg
from bench.measure import LogWatcher
from bench.systems import (
    N1,
    N2,
    NODES,
    Cluster,
    HeartbeatCluster,
    NonstopCluster,
    keep_labs,
    other,
    started,
)
from nonstop.lab import CLIENT, VIP, Lab, LabError, LabProcess, cleanup_leftovers
from nonstop.lab.addrwatch import AddressWatch
from nonstop.lab.faults import CHAOS_KINDS, CHAOS_TITLES, ChaosFault, ChaosKind, chaos_schedule
from nonstop.lab.hbconfig import set_directives
from nonstop.lab.outage import Probe
from nonstop.lab.wait import wait_for

PING = "gw"
SAMPLE_S = 0.01
WORK_ROOT = Path("/var/tmp/nonstop-chaos")
IPFAIL = "/usr/libexec/heartbeat/ipfail"
# The lines a Heartbeat v1 site with ipfail has (issue 12), with the lab's ping node.
IPFAIL_DIRECTIVES: dict[str, str | None] = {
    "respawn": f"hacluster {IPFAIL}",
    "apiauth": "ipfail gid=haclient uid=hacluster",
}
# No answer and no single holder for this long: the harness reboots both nodes so that the
# rest of the run still measures something (reported as a recovery, never hidden).
STUCK_S = 30.0
# Log lines worth quoting in a violation's timeline.
LOG_WORDS = re.compile(r"is dead|Acquiring|Releasing|giving up|tak(e|ing) over|standby|split|"
                       r"now has status|: status|ping node|cannot|error|warn|crit|refus",
                       re.IGNORECASE)
LOG_LINES = 10  # per node and violation


Progress = Callable[[str], None]


def _ipfail_directives(lab: Lab) -> dict[str, str | None]:
    return {"ping": lab.ip(PING), **IPFAIL_DIRECTIVES}


class ChaosNonstop(NonstopCluster):
    """nonstop with the talk's ha.cf (``plain``) or with Heartbeat's ipfail lines added."""

    def __init__(self, lab: Lab, watcher: LogWatcher, variant: str) -> None:
        super().__init__(lab, watcher)
        self.name = f"nonstop ({variant} ha.cf)"
        if variant == "ipfail":
            for node in NODES:
                ha_cf = self.config_dir(node) / "ha.cf"
                ha_cf.write_text(set_directives(ha_cf.read_text(), _ipfail_directives(lab)))

    def start_all(self) -> None:
        """Refuse at once, with nonstop's own words, a config it would not run (the ipfail
        lines before issue 12 lands), instead of waiting for a service that never comes."""
        for node in NODES:
            done = subprocess.run(
                [sys.executable, "-m", "nonstop", "check", "--offline", "--config-dir",
                 str(self.config_dir(node)), "--node", node],
                capture_output=True, text=True, timeout=60, env=self.lab.child_env())
            if done.returncode != 0:
                said = (done.stdout + done.stderr).strip()
                raise LabError(f"nonstop refuses the {self.name} config of {node} "
                               f"({said.splitlines()[-1] if said else 'no output'}):\n{said}")
        super().start_all()

    def restart_daemon(self, node: str) -> None:
        """Start the daemon again after it was killed (its mail server still runs)."""
        self.daemons[node] = self.lab.start_box(
            node, [sys.executable, "-m", "nonstop", "run", "--config-dir",
                   str(self.config_dir(node)), "--state-dir", str(self.state_dir(node)),
                   "--node", node])


class ChaosHeartbeat(HeartbeatCluster):
    """Heartbeat 3.0.6 with ``ping`` and the ipfail ``respawn``/``apiauth`` lines."""

    def __init__(self, lab: Lab, watcher: LogWatcher) -> None:
        super().__init__(lab, watcher)
        self.name = "Heartbeat 3.0.6 (with ipfail)"
        for node in NODES:
            ha_cf = lab.host_dir(node) / "etc" / "ha.d" / "ha.cf"
            ha_cf.write_text(set_directives(ha_cf.read_text(), _ipfail_directives(lab)))

    def restart_daemon(self, node: str) -> None:
        """Start Heartbeat again after it was killed."""
        self.start(node)


def _deadtime(cluster: Cluster) -> float:
    path = cluster.lab.host_dir(N1) / "etc" / "ha.d" / "ha.cf"
    match = re.search(r"^\s*deadtime\s+(\d+(?:\.\d+)?)\s*$", path.read_text(), re.M)
    if match is None:
        raise LabError(f"no deadtime in {path}")
    return float(match.group(1))


class Sampler:
    """Reads which node holds the VIP every 10 ms, from outside the nodes, in a thread."""

    def __init__(self, lab: Lab) -> None:
        self._watches = {node: AddressWatch(lab.netns(node)) for node in NODES}
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-sampler", daemon=True)

    def start(self) -> None:
        """Begin sampling."""
        self._thread.start()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                held = frozenset(n for n, w in self._watches.items() if VIP in w.addresses())
            except (LabError, OSError) as exc:
                self.errors.append(f"{time.monotonic():.3f}: {exc}")
                if len(self.errors) > 100:
                    return
            else:
                self.samples.append(Sample(time.monotonic(), held))
            next_at += SAMPLE_S
            delay = next_at - time.monotonic()
            if delay < 0:  # late (a loaded machine): keep the period, do not burst
                next_at = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    def holders(self) -> frozenset[str]:
        """The latest sample's holders (empty before the first)."""
        return self.samples[-1].holders if self.samples else frozenset()

    def close(self) -> None:
        """Stop the thread and close the sockets."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        for watch in self._watches.values():
            watch.close()


@dataclass
class SystemRun:
    """What one system's chaos run produced."""

    key: str
    name: str
    t0: float = 0.0
    end: float = 0.0
    deadtime: float = 0.0
    injected: list[Injected] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    conditions: Conditions = field(default_factory=Conditions)
    events: list[tuple[float, str]] = field(default_factory=list)
    logs: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    answers: list[Probe] = field(default_factory=list)  # the answered probes
    violations: list[Violation] = field(default_factory=list)
    avail: Availability | None = None
    outages: dict[ChaosKind, list[tuple[float, bool]]] = field(default_factory=dict)
    probe_count: int = 0
    sampler_errors: list[str] = field(default_factory=list)
    failure: str = ""

    def rel(self, t: float) -> str:
        """A monotonic time as '+12.34 s' after the run's start."""
        return f"+{t - self.t0:.2f} s"


class Harness:
    """Injects a schedule's faults into a running cluster and records what it did."""

    def __init__(self, cluster: Cluster, run: SystemRun, progress: Progress) -> None:
        self.cluster = cluster
        self.lab = cluster.lab
        self.run = run
        self.progress = progress
        self.sampler = Sampler(self.lab)
        self._hogs: list[LabProcess] = []
        self._stopped: list[int] = []

    def event(self, text: str) -> float:
        """Record a harness action now; return its time."""
        t = time.monotonic()
        self.run.events.append((t, text))
        return t

    def _target(self, fault: ChaosFault) -> str:
        held = self.sampler.holders()
        active = next(iter(held)) if len(held) == 1 else NODES[fault.pick]
        return active if fault.role == "active" else other(active)

    def _stuck(self, now: float) -> str:
        """Why the cluster looks stuck for good (empty when it does not)."""
        since = now - STUCK_S
        if now - self.run.t0 < STUCK_S:
            return ""
        recent = [s for s in self.sampler.samples[-int(STUCK_S / SAMPLE_S):] if s.t >= since]
        if recent and all(len(s.holders) == 2 for s in recent):
            return f"two holders for {STUCK_S:.0f} s"
        if self.cluster.probes.first_answer(None, since) is None:
            return f"no SIP answer for {STUCK_S:.0f} s"
        return ""

    def execute(self, schedule: Sequence[ChaosFault], duration: float) -> None:
        """Run the schedule, then let the cluster settle until ``duration`` is over."""
        self.sampler.start()
        t0 = self.run.t0 = time.monotonic()
        try:
            for i, fault in enumerate(schedule, 1):
                self._wait_until(t0 + fault.at)
                self.inject(i, fault)
            self._wait_until(t0 + duration)
        finally:
            self._cleanup()
            self.run.end = time.monotonic()
            self.sampler.close()
            self.run.samples = self.sampler.samples
            self.run.sampler_errors = self.sampler.errors

    def _wait_until(self, deadline: float) -> None:
        while True:
            now = time.monotonic()
            why = self._stuck(now)
            if why:
                self._recover(why)
            if now >= deadline:
                return
            time.sleep(min(0.5, deadline - now))

    def _recover(self, why: str) -> None:
        self.event(f"harness recovery ({why}): both nodes rebooted")
        self.progress(f"{self.cluster.name}: {why}, rebooting both nodes")
        self.cluster.restart_all()
        self.event("harness recovery done")

    def inject(self, index: int, fault: ChaosFault) -> None:
        """Inject one fault, hold it for its duration, lift it."""
        node = self._target(fault)
        conds = self.run.conditions
        at = self.event(f"#{index} inject {fault.describe()} -> {node}")
        note = ""
        kind = fault.kind
        if kind == "kill":
            pids = self.cluster.daemon_pids(node)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            conds.change(at, add=[("killed", node)])
            note = f"{len(pids)} process(es) killed" if pids else "no daemon was running"
            with contextlib.suppress(LabError):
                wait_for(lambda: not self._box_running(node), 10.0, what=f"{node}'s box to end")
        elif kind == "stop":
            self._stopped = self.cluster.daemon_pids(node)
            for pid in self._stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            conds.change(at, add=[("stopped", node)])
            note = f"{len(self._stopped)} process(es) stopped"
        elif kind == "crash":
            self.cluster.crash(node)
            conds.change(at, add=[("down", node)])
        elif kind == "cable":
            self.lab.link_down(node)
            conds.change(at, add=[("cable", node)])
        elif kind == "uplink":
            self.lab.isolate(node, PING)
            self.lab.isolate(node, CLIENT)
            conds.change(at, add=[("uplink", node)])
        elif kind == "loss":
            self.lab.set_loss(node, fault.percent, fault.direction)
            conds.change(at, add=[("loss", node)])
        elif kind == "cpuhog":
            self._hogs = [self.lab.spawn(node, ["sh", "-c", "while :; do :; done"],
                                         name="cpuhog") for _ in range(os.cpu_count() or 1)]
            conds.change(at, add=[("hog", node)])
            note = f"{len(self._hogs)} busy loop(s)"
        time.sleep(max(0.0, at + fault.duration - time.monotonic()))
        end = self._lift(kind, node)
        self.run.injected.append(Injected(fault, node, at, end, note))
        self.progress(f"{self.cluster.name} #{index} {fault.describe()} on {node}"
                      + (f" ({note})" if note else ""))

    def _box_running(self, node: str) -> bool:
        try:
            self.lab.box(node)
        except LabError:
            return False
        return True

    def _lift(self, kind: ChaosKind, node: str) -> float:
        conds = self.run.conditions
        t = time.monotonic()
        if kind == "kill":
            self.event(f"restart the daemon on {node}")
            t = time.monotonic()
            if not self._box_running(node):
                _restart_daemon(self.cluster, node)
            conds.change(t, remove=[("killed", node)])
        elif kind == "stop":
            for pid in self._stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            self._stopped = []
            conds.change(t, remove=[("stopped", node)])
        elif kind == "crash":
            self.event(f"reboot {node}")
            t = time.monotonic()
            self.lab.link_up(node)
            self.cluster.start(node)
            conds.change(t, remove=[("down", node)])
        elif kind == "cable":
            self.lab.link_up(node)
            conds.change(t, remove=[("cable", node)])
        elif kind == "uplink":
            self.lab.unisolate(node, PING)
            self.lab.unisolate(node, CLIENT)
            conds.change(t, remove=[("uplink", node)])
        elif kind == "loss":
            self.lab.set_loss(node, 0, "both")
            conds.change(t, remove=[("loss", node)])
        elif kind == "cpuhog":
            for hog in self._hogs:
                hog.stop(timeout=5.0)
            self._hogs = []
            conds.change(t, remove=[("hog", node)])
        self.event(f"lifted {kind} on {node}")
        return t

    def _cleanup(self) -> None:
        # A failure mid-fault must not leave a daemon stopped or a hog spinning.
        for pid in self._stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for hog in self._hogs:
            with contextlib.suppress(LabError):
                hog.stop(timeout=5.0)



def _restart_daemon(cluster: Cluster, node: str) -> None:
    if not isinstance(cluster, ChaosNonstop | ChaosHeartbeat):
        raise TypeError(f"{cluster.name} cannot restart a daemon alone")
    cluster.restart_daemon(node)


def _make_cluster(key: str, lab: Lab, watcher: LogWatcher, variant: str) -> Cluster:
    if key == "nonstop":
        return ChaosNonstop(lab, watcher, variant)
    if key == "heartbeat":
        return ChaosHeartbeat(lab, watcher)
    raise ValueError(f"unknown system {key!r} (nonstop, heartbeat)")


@contextlib.contextmanager
def _cluster(key: str, workdir: Path, variant: str, quick: bool,
             watcher: LogWatcher) -> Iterator[Cluster]:
    with Lab((N1, N2, PING), workdir=workdir / key, keep_workdir=keep_labs()) as lab, \
            started(lab, _make_cluster(key, lab, watcher, variant), quick) as cluster:
        yield cluster


def run_system(key: str, schedule: Sequence[ChaosFault], duration: float, *, workdir: Path,
               variant: str, quick: bool, progress: Progress) -> SystemRun:
    """One system through the whole schedule; the checks done on what was recorded."""
    run = SystemRun(key, key)
    watcher = LogWatcher()
    try:
        with _cluster(key, workdir, variant, quick, watcher) as cluster:
            run.name = cluster.name
            run.deadtime = _deadtime(cluster)
            progress(f"{cluster.name}: serving, chaos for {duration:.0f} s")
            harness = Harness(cluster, run, progress)
            try:
                harness.execute(schedule, duration)
            finally:
                probes = cluster.probes.refresh()
                run.probe_count = len(probes)
                run.answers = [p for p in probes if p.answered is not None]
                for node in NODES:
                    run.logs[node] = watcher.stamped(node)
    except LabError as exc:
        run.failure = str(exc)
        progress(f"FAILED {key}: {str(exc).splitlines()[0]}")
    except Exception as exc:
        # A bug of the harness: what was recorded up to it is still worth a report.
        run.failure = f"harness error: {exc!r}\n{traceback.format_exc()}"
        progress(f"FAILED {key}: harness error {exc!r}")
    finally:
        watcher.close()
    if run.samples:
        check(run)
    return run


def check(run: SystemRun) -> None:
    """Evaluate the invariants and the outages of a finished run."""
    probes = run.answers
    run.outages = {}
    nodes = (N1, N2)
    run.violations = sorted(dual_holders(run.samples, run.conditions, nodes)
                            + blind_takeovers(run.samples, run.conditions, nodes),
                            key=lambda v: v.start)
    windows = detection_windows(run.injected, run.deadtime)
    run.avail = availability(probes, run.t0, run.end, windows)
    for i, item in enumerate(run.injected):
        until = run.injected[i + 1].at if i + 1 < len(run.injected) else run.end
        run.outages.setdefault(item.fault.kind, []).append(fault_outage(probes, item.at, until))


# -- the report -----------------------------------------------------------------------------------

def _holders_text(held: frozenset[str]) -> str:
    return "{" + ", ".join(sorted(held)) + "}" if held else "nobody"


def holder_story(run: SystemRun, start: float, end: float) -> str:
    """Who held the VIP from ``start`` to ``end``, with how long (but for the last), e.g.
    'vpbx1-1 (2.1 s) -> both (0.4 s) -> vpbx1-2'."""
    steps: list[tuple[float, frozenset[str]]] = []
    for s in run.samples:
        if start <= s.t <= end and (not steps or steps[-1][1] != s.holders):
            steps.append((s.t, s.holders))
    parts = []
    for i, (t, held) in enumerate(steps):
        name = "both" if len(held) == 2 else (next(iter(held)) if held else "nobody")
        last = steps[i + 1][0] if i + 1 < len(steps) else end
        parts.append(name if i == len(steps) - 1 else f"{name} ({last - t:.1f} s)")
    if len(parts) > 9:
        parts = [*parts[:4], f"... {len(parts) - 8} more ...", *parts[-4:]]
    return " -> ".join(parts) or "-"


def timeline(run: SystemRun, v: Violation) -> list[str]:
    """The story of one violation: the fault before it, holders seen, answers, log lines."""
    lines: list[str] = []
    before = [i for i in run.injected if i.at <= v.start + 0.01]
    fault = before[-1] if before else None
    lo = (fault.at if fault else v.start) - 0.5
    hi = v.end + 1.0
    if fault is not None:
        index = run.injected.index(fault) + 1
        lines.append(f"fault #{index}: {fault.fault.describe()}, hit {fault.node}, injected "
                     f"{run.rel(fault.at)}, lifted {run.rel(fault.end)}"
                     + (f" ({fault.note})" if fault.note else ""))
    changes: list[str] = []
    last: frozenset[str] | None = None
    for s in run.samples:
        if s.t < lo or s.t > hi:
            continue
        if s.holders != last:
            changes.append(f"{run.rel(s.t)} {_holders_text(s.holders)}")
            last = s.holders
    if len(changes) > 14:
        changes = [*changes[:7], f"... {len(changes) - 14} more ...", *changes[-7:]]
    lines.append("VIP holders seen: " + " -> ".join(changes))
    counts: dict[str, int] = {}
    for p in run.answers:
        if p.answered is not None and v.start - 0.5 <= p.answered <= v.end + 0.5:
            counts[p.node or "?"] = counts.get(p.node or "?", 0) + 1
    answered = ", ".join(f"{n} x{c}" for n, c in sorted(counts.items())) or "none"
    lines.append(f"SIP answers from {run.rel(v.start - 0.5)} to {run.rel(v.end + 0.5)}: "
                 f"{answered}")
    for t, text in run.events:
        if lo <= t <= hi and not text.startswith("#"):
            lines.append(f"harness {run.rel(t)}: {text}")
    for node in NODES:
        quoted = [(t, line) for t, line in run.logs.get(node, [])
                  if max(lo, v.start - 3.0) <= t <= hi and LOG_WORDS.search(line)]
        for t, line in quoted[:LOG_LINES]:
            lines.append(f"{node} log {run.rel(t)}: {line.strip()[:160]}")
    return lines


def render(runs: Sequence[SystemRun], *, command: str, seed: int, duration: float, quick: bool,
           variant: str, started: datetime.datetime, machine: list[tuple[str, str]],
           load_before: str, load_after: str, busy: float) -> str:
    """docs/RELIABILITY.md."""
    out = ["# Reliability: a chaos run", ""]
    mode = "QUICK mode (every fault once, shortest durations)" if quick else \
        f"{duration / 60:.0f} minutes of faults per system"
    out += [f"Generated by `bench/chaos.py`; do not edit by hand. Run {started:%Y-%m-%d %H:%M} "
            f"UTC, seed {seed}, {mode}, nonstop config variant `{variant}`.", "",
            "Repeat with (as root, from the repository root, nothing else measuring):", "",
            "```", f"flock /tmp/nonstop-bench.lock {command}", "```", ""]
    out += ["## Machine", "", "| item | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in machine]
    out += [f"| load average before / after | {load_before} / {load_after} |",
            f"| whole-machine CPU busy during the run | {busy:.0f} % |", ""]
    out += ["## What was done", "", (__doc__ or "").split("\n\n", 3)[3].strip(), "",
            METHOD, ""]
    out += ["## Summary", "", "| | " + " | ".join(r.name for r in runs) + " |",
            "|---|" + "---|" * len(runs)]

    def row(label: str, cells: list[str]) -> None:
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    row("faults injected", [str(len(r.injected)) for r in runs])
    row("invariant samples (every 10 ms)", [str(len(r.samples)) for r in runs])
    row(f"two holders that hear each other > {DUAL_LIMIT_S:.0f} s",
        [str(sum(v.invariant.startswith("two") for v in r.violations)) for r in runs])
    row("takeovers by a node that reaches no ping node while its peer does",
        [str(sum(v.invariant.startswith("takeover") for v in r.violations)) for r in runs])
    row(f"service outside detection windows (goal {AVAILABILITY_GOAL:.0%})",
        [(f"{r.avail.ratio:.2%} ({'meets' if r.avail.ratio >= AVAILABILITY_GOAL else 'MISSES'})"
          if r.avail else "-") for r in runs])
    row("harness recoveries (both nodes rebooted)",
        [str(sum("harness recovery (" in e for _, e in r.events)) for r in runs])
    out.append("")
    out += ["## Client-visible outage per fault kind", "",
            "Longest time between two SIP answers from the fault's injection up to the next "
            "fault: min / median / max (n); \"none after\" counts faults after which no answer "
            "came before the next fault.", "",
            "| fault | " + " | ".join(r.name for r in runs) + " |",
            "|---|" + "---|" * len(runs)]
    for kind in CHAOS_KINDS:
        cells = []
        for r in runs:
            values = r.outages.get(kind, [])
            text = f"{spread([v for v, _ in values])} (n={len(values)})" if values else "-"
            blank = sum(1 for _, none in values if none)
            cells.append(text + (f"; {blank} none after" if blank else ""))
        row(CHAOS_TITLES[kind], cells)
    out.append("")
    for r in runs:
        out += _render_system(r)
    return "\n".join(out).rstrip() + "\n"


def _render_system(r: SystemRun) -> list[str]:
    out: list[str] = []
    out += [f"## {r.name}", ""]
    if r.failure:
        out += ["**The run failed:**", "", "```", r.failure.strip()[:3000], "```", ""]
    if r.sampler_errors:
        out += [f"Sampler errors: {len(r.sampler_errors)}, first: {r.sampler_errors[0]}", ""]
    if r.avail is not None:
        out += [f"Run of {r.end - r.t0:.0f} s, {r.probe_count} SIP probes, "
                f"{len(r.samples)} samples of the VIP's holders; deadtime {r.deadtime:g} s; "
                f"{r.avail.counted_s:.0f} s counted outside detection windows, "
                f"{r.avail.unserved_s:.1f} s of it unserved (gaps over {T1_S} s).", ""]
    out += ["### Faults injected", "",
            "Holders: who had the VIP from the injection up to the next fault.", "",
            "| # | at | fault | node | note | outage | holders |",
            "|---|---|---|---|---|---|---|"]
    seen: dict[ChaosKind, int] = {}
    for i, item in enumerate(r.injected, 1):
        k = seen.get(item.fault.kind, 0)
        seen[item.fault.kind] = k + 1
        values = r.outages.get(item.fault.kind, [])
        outage = (f"{values[k][0]:.2f} s" + (" (none after)" if values[k][1] else "")
                  if k < len(values) else "-")
        until = r.injected[i].at if i < len(r.injected) else r.end
        out.append(f"| {i} | {r.rel(item.at)} | {item.fault.describe()} | {item.node} | "
                   f"{item.note or ''} | {outage} | {holder_story(r, item.at, until)} |")
    out.append("")
    if r.avail is not None and r.avail.gaps:
        gaps = sorted(r.avail.gaps, key=lambda g: -g[2])[:10]
        out += ["### Longest unserved gaps (seconds counted: outside detection windows)",
                ""]
        by_time = {p.answered: p.node for p in r.answers}
        out += [f"* {r.rel(a)} to {r.rel(b)}: {b - a:.2f} s, {counted:.2f} s counted; "
                f"answered before by {by_time.get(a) or '-'}, after by "
                f"{by_time.get(b) or '-'}; VIP: {holder_story(r, a, b)}"
                for a, b, counted in sorted(gaps)]
        out.append("")
    out += ["### Invariant violations", ""]
    if not r.violations:
        out += ["None.", ""]
    for v in r.violations:
        span = f"{r.rel(v.start)} to {r.rel(v.end)}" if v.end > v.start else r.rel(v.start)
        out += [f"* **{v.invariant}**, {span}: {v.detail}", "", "  ```"]
        out += [f"  {line}" for line in timeline(r, v)]
        out += ["  ```", ""]
    recoveries = [(t, e) for t, e in r.events if e.startswith("harness recovery (")]
    if recoveries:
        out += ["### Harness recoveries", ""]
        out += [f"* {r.rel(t)}: {e}" for t, e in recoveries]
        out.append("")
    return out


METHOD = f"""\
* The faults (each lasts its drawn duration, then is lifted; the next comes 8-15 s later):
  SIGKILL of the daemon's processes, restarted 1-3 s later; SIGSTOP of them for 1-4 s, then
  SIGCONT; the active box crashed (every process killed, VIP gone) and booted 3-8 s later;
  a node's cable pulled (its switch port down) for 3-10 s; a node's uplink cut (its frames to
  and from gw and the client dropped, the heartbeat path kept) for 4-15 s; 30-50 % loss on a
  node's switch port in one or both directions for 4-15 s; one busy loop per core on a node
  for 4-15 s. Each fault hits the node that holds the VIP or the other one, as the seeded
  schedule says (resolved when it comes, so both systems get the same schedule).
* In the lab a daemon's resources run in its box, so killing the daemon also ends the kamailio
  it started; the address stays configured, as it would on a real machine.
* Invariants, checked on samples taken every {SAMPLE_S * 1000:.0f} ms over netlink from outside
  the nodes: see bench/chaos_check.py. Two nodes hear each other unless a cable is pulled or a
  box is down; a node reaches the ping node unless its cable is pulled, its uplink is cut or
  its box is down. A stopped daemon still counts as heard (the wire is fine).
* Service: the client is unserved during every gap between answers longer than {T1_S} s (a
  phone's first retransmission); the deadtime after each fault that needs detecting (and after
  a cable or uplink comes back) is left out of the count.
* If a system stays with no answer, or two holders, for {STUCK_S:.0f} s, the harness reboots
  both nodes and says so above: the rest of the run still measures something."""


# -- entry point ---------------------------------------------------------------------------------

def _render_again(parser: argparse.ArgumentParser, raw_path: Path, out: Path) -> int:
    """``--render-from``: the checks of this tree on what an earlier run recorded."""
    try:
        with raw_path.open("rb") as fh:
            # Our own file, named by the operator (never a download).
            raw = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        parser.error(f"cannot read {raw_path}: {exc}")
    for run in raw["runs"]:
        if run.samples:
            check(run)
    out.write_text(render(raw["runs"], **raw["context"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python3 -m bench.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0,
                        help="seconds of faults per system (default 600)")
    parser.add_argument("--quick", action="store_true",
                        help="every fault kind once, shortest durations (CI; ~30 s a system)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--systems", default="nonstop,heartbeat",
                        help="comma-separated: nonstop, heartbeat (default both)")
    parser.add_argument("--nonstop-config", choices=("plain", "ipfail"), default="plain",
                        help="nonstop's ha.cf: the talk's (plain) or with Heartbeat's ipfail "
                             "lines (its built-in ipfail)")
    parser.add_argument("--out", type=Path, default=Path("docs/RELIABILITY.md"))
    parser.add_argument("--json", type=Path, default=None,
                        help="also write a machine-readable summary here")
    parser.add_argument("--raw", type=Path, default=None,
                        help="also keep everything recorded (pickle), to render again later")
    parser.add_argument("--render-from", type=Path, default=None, metavar="RAW",
                        help="no run: check again what a --raw file of an earlier run "
                             "recorded and write --out")
    ns = parser.parse_args(argv)
    if ns.render_from is not None:
        return _render_again(parser, ns.render_from, ns.out)
    if os.geteuid() != 0:
        parser.error("the chaos run builds network namespaces: run as root")
    if ns.duration <= 0:
        parser.error("--duration must be positive")
    systems = [s.strip() for s in ns.systems.split(",") if s.strip()]
    for key in systems:
        if key not in ("nonstop", "heartbeat"):
            parser.error(f"unknown system {key!r}: choose from nonstop, heartbeat")
    schedule = chaos_schedule(ns.seed, ns.duration, quick=ns.quick)
    duration = schedule[-1].end + 3.0 if ns.quick else ns.duration
    cleanup_leftovers()
    workdir = WORK_ROOT / str(os.getpid())
    workdir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    t_start = time.monotonic()
    before = cpu_times()
    load_before = loadavg()
    machine = describe()

    def progress(msg: str) -> None:
        print(f"[chaos] {msg}  (+{time.monotonic() - t_start:.0f} s)", file=sys.stderr,
              flush=True)

    runs = [run_system(key, schedule, duration, workdir=workdir, variant=ns.nonstop_config,
                       quick=ns.quick, progress=progress) for key in systems]
    command = "python3 -m bench.chaos" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    context: dict[str, object] = dict(
        command=command, seed=ns.seed, duration=duration, quick=ns.quick,
        variant=ns.nonstop_config, started=started, machine=machine, load_before=load_before,
        load_after=loadavg(), busy=busy_percent(before, cpu_times()))
    if ns.raw is not None:
        with ns.raw.open("wb") as fh:
            pickle.dump({"runs": runs, "context": context}, fh)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(render(runs, **context))  # type: ignore[arg-type]
    if ns.json is not None:
        ns.json.write_text(json.dumps([summary(r) for r in runs], indent=1))
    progress(f"wrote {ns.out}")
    failed = [r for r in runs if r.failure or not r.samples]
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def summary(run: SystemRun) -> dict[str, object]:
    """What a test needs to know of a run."""
    gaps = [b.t - a.t for a, b in itertools.pairwise(run.samples)]
    held = sum(1 for s in run.samples if s.holders)
    return {
        "system": run.key,
        "failure": run.failure,
        "seconds": run.end - run.t0,
        "kinds": sorted({i.fault.kind for i in run.injected}),
        "injected": [{"kind": i.fault.kind, "role": i.fault.role, "node": i.node,
                      "at": i.at - run.t0,
                      "end": i.end - run.t0, "note": i.note} for i in run.injected],
        "samples": len(run.samples),
        "longest_sample_gap": max(gaps, default=0.0),
        "sampler_errors": len(run.sampler_errors),
        "held_share": held / len(run.samples) if run.samples else 0.0,
        "probes": run.probe_count,
        "answers": len(run.answers),
        "availability": run.avail.ratio if run.avail else None,
        "violations": [{"invariant": v.invariant, "start": v.start - run.t0,
                        "end": v.end - run.t0, "detail": v.detail} for v in run.violations],
        "outages": {k: [v for v, _ in vs] for k, vs in run.outages.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
